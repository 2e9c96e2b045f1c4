"""Media types of OCI and Docker schema 2 documents and blobs.

Both families are read; ocibuild writes the OCI ones unless a Docker format is asked for.
"""

from __future__ import annotations

from enum import Enum


class MediaType(str, Enum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def lookup(cls, value: str | None) -> "MediaType | None":
        """The known media type for ``value``, or None for types ocibuild does not interpret."""
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def is_index(self) -> bool:
        return self in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST)

    @property
    def is_manifest(self) -> bool:
        return self in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)

    @property
    def is_config(self) -> bool:
        return self in (MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG)

    @property
    def is_layer(self) -> bool:
        return self.compression is not None

    @property
    def is_docker(self) -> bool:
        return self.value.startswith("application/vnd.docker.")

    @property
    def compression(self) -> str | None:
        """"gzip", "zstd" or "" (uncompressed) for layer types; None for everything else."""
        return _LAYER_COMPRESSION.get(self)


_LAYER_COMPRESSION = {
    MediaType.OCI_LAYER: "",
    MediaType.OCI_LAYER_GZIP: "gzip",
    MediaType.OCI_LAYER_ZSTD: "zstd",
    MediaType.OCI_LAYER_NONDIST: "",
    MediaType.OCI_LAYER_NONDIST_GZIP: "gzip",
    MediaType.OCI_LAYER_NONDIST_ZSTD: "zstd",
    MediaType.DOCKER_LAYER_GZIP: "gzip",
    MediaType.DOCKER_LAYER: "",
    MediaType.DOCKER_FOREIGN_LAYER: "gzip",
}

# Docker schema 2 twins of OCI types, used when writing a `docker load` archive or a Docker manifest.
TO_DOCKER = {
    MediaType.OCI_INDEX: MediaType.DOCKER_MANIFEST_LIST,
    MediaType.OCI_MANIFEST: MediaType.DOCKER_MANIFEST,
    MediaType.OCI_CONFIG: MediaType.DOCKER_CONFIG,
    MediaType.OCI_LAYER_GZIP: MediaType.DOCKER_LAYER_GZIP,
    MediaType.OCI_LAYER: MediaType.DOCKER_LAYER,
}
