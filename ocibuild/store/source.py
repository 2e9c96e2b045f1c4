"""Where images are read from: the ImageSource protocol and plain functions over any source.

An ImageSource is a top-level list of descriptors (an OCI layout's index.json, a docker
archive's synthesised index) plus verified blob access. OciLayout, OciArchive and
DockerArchive implement it; so can a registry client. Everything else - loading documents
within their size limit, walking an image, choosing a platform - is written once, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Protocol, runtime_checkable

from ocibuild.errors import InvalidDocument, InvalidInput, NotFound
from ocibuild.oci import (IMAGE_NAME, MAX_DOCUMENT_SIZE, REF_NAME, Descriptor, Digest, ImageConfig, Index, MediaType,
                          Manifest, Platform, Reference, parse_document, verify)

if TYPE_CHECKING:
    from ocibuild.store.layout import OciLayout


@runtime_checkable
class ImageSource(Protocol):
    def index(self) -> Index:
        """The top-level descriptors (index.json)."""

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        """A whole blob, verified against its digest; refuses blobs larger than ``limit``."""

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob as a stream, verified while read (DigestMismatch at the end). The caller closes it."""

    def has_blob(self, digest: str) -> bool: ...

    def resolve(self, ref: str | None) -> Descriptor:
        """The top-level descriptor named ``ref`` (a tag, a full name or a digest); None: the only one."""


def parse_index_file(data: bytes, where: str) -> Index:
    """A layout's index.json (from a directory or an archive); errors name ``where``."""
    try:
        doc = parse_document(data, MediaType.OCI_INDEX.value)
    except InvalidDocument as e:
        raise InvalidDocument(f"read {where}: {e.message}") from None
    if not isinstance(doc, Index):
        raise InvalidDocument(f"read {where}: not an image index")
    return doc


def load_document(source: ImageSource, desc: Descriptor) -> Manifest | Index:
    """Read, verify (digest and size) and parse the manifest or index ``desc`` points at."""
    if desc.size > MAX_DOCUMENT_SIZE:
        raise InvalidDocument(f"load {desc.digest}: {desc.size} bytes exceeds the {MAX_DOCUMENT_SIZE}-byte "
                              "document limit")
    data = source.read_blob(desc.digest, limit=MAX_DOCUMENT_SIZE)
    verify(data, desc.digest, desc.size, what="load document")
    try:
        return parse_document(data, desc.media_type or None)
    except InvalidDocument as e:
        raise InvalidDocument(f"load {desc.digest}: {e.message}") from None


def load_config(source: ImageSource, desc: Descriptor) -> ImageConfig:
    """Read, verify and parse an image config."""
    if desc.size > MAX_DOCUMENT_SIZE:
        raise InvalidDocument(f"load config {desc.digest}: {desc.size} bytes exceeds the "
                              f"{MAX_DOCUMENT_SIZE}-byte limit")
    data = source.read_blob(desc.digest, limit=MAX_DOCUMENT_SIZE)
    verify(data, desc.digest, desc.size, what="load config")
    try:
        return ImageConfig.from_json(data)
    except InvalidDocument as e:
        raise InvalidDocument(f"load config {desc.digest}: {e.message}") from None


def is_document(desc: Descriptor) -> bool:
    """True for descriptors of manifests and indexes (the ones with children)."""
    kind = desc.kind
    return kind is not None and (kind.is_index or kind.is_manifest)


def children(doc: Manifest | Index) -> list[Descriptor]:
    """The descriptors a document refers to, in document order (the subject is not a child)."""
    if isinstance(doc, Index):
        return list(doc.manifests)
    return [doc.config, *doc.layers]


def walk(source: ImageSource, desc: Descriptor) -> list[Descriptor]:
    """Every descriptor reachable from ``desc`` (included), children before parents, each digest once."""
    out: list[Descriptor] = []
    seen: set[str] = set()

    def visit(d: Descriptor, depth: int) -> None:
        if d.digest in seen:
            return
        if depth > 16:
            raise InvalidDocument(f"walk {desc.digest}: indexes nested more than 16 deep")
        seen.add(d.digest)
        if is_document(d):
            for child in children(load_document(source, d)):
                visit(child, depth + 1)
        out.append(d)

    visit(desc, 0)
    return out


def manifest_for(source: ImageSource, desc: Descriptor, platform: Platform) -> tuple[Descriptor, Manifest]:
    """The manifest for ``platform``, following nested indexes (index.json -> index -> manifests).

    A manifest given directly is returned as it is (a single-platform image; the caller decides
    whether its config's platform will do). NotFound lists the platforms that are there.
    """
    found = _find_manifest(source, desc, platform, 0)
    if isinstance(found, tuple):
        return found
    shown = ", ".join(sorted({str(p) for p in found})) or "none"
    raise NotFound(f"select platform {platform} in {desc.digest}: no matching manifest (available: {shown})")


def _find_manifest(source: ImageSource, desc: Descriptor, want: Platform,
                   depth: int) -> tuple[Descriptor, Manifest] | list[Platform]:
    """The match, or the platforms seen on the way (for the error message)."""
    if depth > 16:
        raise InvalidDocument(f"select platform {want}: indexes nested more than 16 deep")
    doc = load_document(source, desc)
    if isinstance(doc, Manifest):
        return desc, doc
    chosen = doc.select(want)
    if chosen is not None:
        return _find_manifest(source, chosen, want, depth + 1)
    seen = [p for p in doc.platforms() if p.os != "unknown"]
    for child in doc.manifests:
        if child.platform is None and child.kind is not None and child.kind.is_index:
            found = _find_manifest(source, child, want, depth + 1)
            if isinstance(found, tuple):
                return found
            seen += found
    return seen


def descriptor_names(desc: Descriptor) -> list[str]:
    """The names a top-level descriptor answers to: its ref.name and its full image name."""
    return [n for n in (desc.annotations.get(REF_NAME), desc.annotations.get(IMAGE_NAME)) if n]


def resolve_in(index: Index, ref: str | None, where: str,
               by_digest: Callable[[Digest], Descriptor | None] | None = None) -> Descriptor:
    """Shared ``resolve``: None -> the only descriptor; a digest; an exact ref.name; a full image name.

    ``by_digest`` finds a digest that is a blob but no top-level entry (a child manifest).
    """
    entries = index.manifests
    if ref is None or ref == "":
        if len(entries) == 1:
            return entries[0]
        raise NotFound(f"resolve image in {where}: {_listing(entries)}; name one")
    digest = _as_digest(ref)
    if digest is not None:
        for d in entries:
            if d.digest == digest:
                return d
        found = by_digest(digest) if by_digest else None
        if found is not None:
            return found
        raise NotFound(f"resolve {ref} in {where}: no such manifest or index")
    for key in (REF_NAME, IMAGE_NAME):
        matches = [d for d in entries if d.annotations.get(key) == ref]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NotFound(f"resolve {ref!r} in {where}: the name is ambiguous ({len(matches)} entries)")
    wanted = _normalised(ref)
    if wanted is not None:
        for d in entries:
            if wanted in {_normalised(n) for n in descriptor_names(d)}:
                return d
    raise NotFound(f"resolve {ref!r} in {where}: no such name; {_listing(entries)}")


def _listing(entries: tuple[Descriptor, ...]) -> str:
    if not entries:
        return "it holds no images"
    names = sorted({descriptor_names(d)[0] if descriptor_names(d) else str(d.digest) for d in entries})
    return f"it holds {len(entries)} entries: " + ", ".join(names)


def _as_digest(ref: str) -> Digest | None:
    if ":" not in ref or "/" in ref:
        return None
    try:
        return Digest(ref)
    except InvalidInput:
        return None


def _normalised(name: str) -> str | None:
    try:
        return str(Reference.parse(name))
    except InvalidInput:
        return None


def document_descriptor(source: ImageSource, digest: Digest) -> Descriptor | None:
    """A descriptor for a blob known only by digest, when it is a manifest or index."""
    if not source.has_blob(digest):
        return None
    data = source.read_blob(digest, limit=MAX_DOCUMENT_SIZE)
    try:
        doc = parse_document(data)
    except InvalidDocument:
        return None
    return Descriptor(str(doc.media_type), digest, len(data))


def copy(src: ImageSource, dst: "OciLayout", desc: Descriptor, *, link: bool = True) -> int:
    """Copy every blob reachable from ``desc`` into ``dst``, children before parents; returns blobs added.

    Blobs already in ``dst`` are skipped. When ``src`` keeps blobs as files on the same
    filesystem they are hardlinked (blobs are immutable and read-only; see BlobStore.link),
    otherwise copied with verification. Foreign layers (with ``urls``) missing from ``src`` are
    skipped, as registries do. Does not touch ``dst``'s index.json: tag or add afterwards.
    """
    dst.create()
    added = 0
    for d in walk(src, desc):
        if dst.blobs.has(d.digest):
            continue
        if d.urls and not src.has_blob(d.digest):
            continue
        path = blob_path(src, d.digest) if link else None
        if path is None or not dst.blobs.link(d.digest, path, d.size):
            with src.open_blob(d.digest) as f:
                dst.blobs.ingest(f, d.digest, d.size)
        added += 1
    return added


def blob_path(source: ImageSource, digest: str) -> Path | None:
    """The file holding a blob when the source keeps blobs as files (for hardlinking), else None."""
    get = getattr(source, "blob_path", None)
    return get(digest) if get is not None else None


__all__ = ["ImageSource", "load_document", "load_config", "walk", "manifest_for", "children", "is_document",
           "resolve_in", "descriptor_names", "document_descriptor", "blob_path", "copy"]
