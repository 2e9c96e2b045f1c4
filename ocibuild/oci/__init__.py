"""The pure OCI data model: standard library only, no I/O."""

from ocibuild.oci.canonical import canonical_json
from ocibuild.oci.config import DEFAULT_PATH, ContainerConfig, History, ImageConfig, rfc3339
from ocibuild.oci.descriptor import CREATED, IMAGE_NAME, REF_NAME, Descriptor
from ocibuild.oci.digest import Digest, verify
from ocibuild.oci.manifest import MAX_DOCUMENT_SIZE, Index, Manifest, parse_document
from ocibuild.oci.mediatype import TO_DOCKER, MediaType
from ocibuild.oci.platform import Platform, host_platform, parse_platforms
from ocibuild.oci.reference import Reference

__all__ = [
    "canonical_json", "DEFAULT_PATH", "ContainerConfig", "History", "ImageConfig", "rfc3339",
    "CREATED", "IMAGE_NAME", "REF_NAME", "Descriptor", "Digest", "verify", "MAX_DOCUMENT_SIZE",
    "Index", "Manifest", "parse_document", "TO_DOCKER", "MediaType", "Platform", "host_platform",
    "parse_platforms", "Reference",
]
