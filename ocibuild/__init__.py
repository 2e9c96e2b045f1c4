"""ocibuild: build OCI images from Dockerfiles for many platforms, without a Docker daemon.

The Python API::

    import ocibuild
    result = ocibuild.build("examples/hello", platforms=["linux/amd64", "linux/arm64"],
                            outputs=["type=oci,dest=hello.tar"], tags=["example/hello:1.0"])
    print(result.digest)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["build", "__version__"]


def build(context: str = ".", **kwargs):
    """Build the Dockerfile in ``context``; see ``ocibuild.api.build`` for the keyword arguments."""
    from ocibuild.api import build as _build

    return _build(context, **kwargs)
