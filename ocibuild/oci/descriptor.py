"""Content descriptors: what every reference between OCI documents is made of."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ocibuild.errors import InvalidDocument, InvalidInput
from ocibuild.oci.canonical import canonical_json
from ocibuild.oci.digest import Digest
from ocibuild.oci.mediatype import MediaType
from ocibuild.oci.platform import Platform

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"  # written beside REF_NAME by buildx's oci exporter
CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is (media type), its digest and size."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    @property
    def kind(self) -> MediaType | None:
        """The media type as a known MediaType, or None for types ocibuild does not interpret."""
        return MediaType.lookup(self.media_type)

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes, **kw: Any) -> "Descriptor":
        return cls(str(media_type), Digest.of(data), len(data), **kw)

    @classmethod
    def from_dict(cls, d: Any) -> "Descriptor":
        if not isinstance(d, dict):
            raise InvalidDocument(f"descriptor is not an object: {d!r}")
        try:
            size = d["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidDocument(f"descriptor {d.get('digest')}: invalid size {size!r}")
            return cls(
                media_type=str(d.get("mediaType", "")),
                digest=Digest(d["digest"]),
                size=size,
                platform=Platform.from_dict(d["platform"]) if d.get("platform") else None,
                annotations=dict(d.get("annotations") or {}),
                urls=tuple(d.get("urls") or ()),
                artifact_type=d.get("artifactType", "") or "",
            )
        except KeyError as e:
            raise InvalidDocument(f"descriptor lacks {e.args[0]!r}: {d!r}") from None
        except InvalidInput as e:
            raise InvalidDocument(f"invalid descriptor: {e.message}") from None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"mediaType": str(self.media_type), "digest": str(self.digest), "size": self.size}
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.urls:
            d["urls"] = list(self.urls)
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def with_(self, **changes: Any) -> "Descriptor":
        return replace(self, **changes)

    def annotated(self, **annotations: str) -> "Descriptor":
        return replace(self, annotations={**self.annotations, **annotations})
