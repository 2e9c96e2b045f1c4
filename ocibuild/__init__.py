"""ocibuild: build OCI images from Dockerfiles for many platforms, without a Docker daemon."""

__version__ = "0.1.0"
