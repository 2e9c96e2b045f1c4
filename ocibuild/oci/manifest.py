"""Image manifests and image indexes, OCI and Docker schema 2.

Documents are parsed from bytes with ``parse_document`` and serialised with ``to_json``;
a parsed document keeps the bytes it came from (``raw``), because a digest covers
exact bytes and re-serialising someone else's document would change it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ocibuild.errors import InvalidDocument
from ocibuild.oci.canonical import canonical_json
from ocibuild.oci.descriptor import Descriptor
from ocibuild.oci.mediatype import MediaType
from ocibuild.oci.platform import Platform

MAX_DOCUMENT_SIZE = 4 * 1024 * 1024  # manifests and configs larger than this are refused, as containerd does


class _Document:
    """What manifests and indexes share: the optional fields, serialisation and their descriptor."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": str(self.media_type), **self._body()}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    def to_json(self) -> bytes:
        return self.raw if self.raw is not None else canonical_json(self.to_dict())

    def descriptor(self, **kw: Any) -> Descriptor:
        return Descriptor.for_bytes(self.media_type, self.to_json(), **kw)


@dataclass(frozen=True)
class Manifest(_Document):
    """An image manifest: the config and layers of one image (or an artifact's blobs)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = MediaType.OCI_MANIFEST.value
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def _body(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "layers": [layer.to_dict() for layer in self.layers]}


@dataclass(frozen=True)
class Index(_Document):
    """An image index: manifests, one per platform (or other descriptors)."""

    manifests: tuple[Descriptor, ...]
    media_type: str = MediaType.OCI_INDEX.value
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def _body(self) -> dict[str, Any]:
        return {"manifests": [m.to_dict() for m in self.manifests]}

    def select(self, want: Platform) -> Descriptor | None:
        """The best manifest for ``want``: an exact match first, then compatible variants."""
        for candidate in want.compatible():
            for d in self.manifests:
                if d.platform is not None and d.platform.matches(candidate):
                    return d
        return None

    def platforms(self) -> list[Platform]:
        return [d.platform for d in self.manifests if d.platform is not None]


def parse_document(data: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index (OCI or Docker schema 2), refusing ambiguous or oversized documents."""
    if len(data) > MAX_DOCUMENT_SIZE:
        raise InvalidDocument(f"document of {len(data)} bytes exceeds the {MAX_DOCUMENT_SIZE}-byte limit")
    doc = _load_object(data)
    if "manifests" in doc and "layers" in doc:
        raise InvalidDocument("document has both 'manifests' and 'layers': refusing an ambiguous document")
    declared = doc.get("mediaType")
    if declared and content_type and _base_type(content_type) not in (declared, "application/json"):
        raise InvalidDocument(f"document mediaType {declared!r} contradicts its content type {content_type!r}")
    kind = MediaType.lookup(declared or (content_type and _base_type(content_type)))
    if doc.get("schemaVersion") != 2:
        raise InvalidDocument(f"unsupported schemaVersion {doc.get('schemaVersion')!r}")
    if (kind is not None and kind.is_index) or (kind is None and "manifests" in doc):
        return _parse_index(doc, data, declared or MediaType.OCI_INDEX.value)
    if (kind is not None and kind.is_manifest) or (kind is None and "config" in doc):
        return _parse_manifest(doc, data, declared or MediaType.OCI_MANIFEST.value)
    raise InvalidDocument(f"not an image manifest or index (mediaType {declared!r})")


def _load_object(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidDocument(f"document is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidDocument("document is not a JSON object")
    return doc


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip()


def _parse_index(doc: dict, raw: bytes, media_type: str) -> Index:
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidDocument("index 'manifests' is not a list")
    return Index(
        manifests=tuple(Descriptor.from_dict(m) for m in manifests),
        media_type=media_type,
        annotations=dict(doc.get("annotations") or {}),
        subject=Descriptor.from_dict(doc["subject"]) if doc.get("subject") else None,
        artifact_type=doc.get("artifactType", "") or "",
        raw=raw,
    )


def _parse_manifest(doc: dict, raw: bytes, media_type: str) -> Manifest:
    if "config" not in doc:
        raise InvalidDocument("manifest has no 'config'")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidDocument("manifest 'layers' is not a list")
    return Manifest(
        config=Descriptor.from_dict(doc["config"]),
        layers=tuple(Descriptor.from_dict(layer) for layer in layers),
        media_type=media_type,
        annotations=dict(doc.get("annotations") or {}),
        subject=Descriptor.from_dict(doc["subject"]) if doc.get("subject") else None,
        artifact_type=doc.get("artifactType", "") or "",
        raw=raw,
    )
