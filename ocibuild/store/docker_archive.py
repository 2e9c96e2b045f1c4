"""``docker load`` archives: writing one for a single platform, and reading ``docker save`` output.

What ``write_docker_archive`` writes is what ``docker save`` writes since Docker 25: both a
docker archive and an OCI layout in one tar::

    blobs/sha256/<hex>   config, layers (as stored: gzip/zstd layers are fine for docker load), manifest
    manifest.json        [{"Config": "blobs/sha256/<hex>", "RepoTags": ["app:1"], "Layers": [...]}]
    repositories         {"app": {"1": "<hex of the top layer blob>"}} (legacy, read only by pre-1.10
                         loaders; Docker writes its top layer's file name there too, which for its
                         uncompressed layers is the diff_id)
    index.json           one entry per tag, annotated with the full name and the tag, as Docker does
    oci-layout

``DockerArchive`` reads any ``docker save`` output, including the old layout with
``<id>/layer.tar`` and ``<id>.json``, and presents it as an ImageSource by synthesising an
OCI manifest per image (kept in memory) and an index with one entry per RepoTag.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from typing import BinaryIO, Iterable

from ocibuild.errors import InvalidDocument, InvalidInput, InvalidReference, NotFound
from ocibuild.oci import (IMAGE_NAME, MAX_DOCUMENT_SIZE, REF_NAME, Descriptor, Digest, ImageConfig, Index, Manifest,
                          MediaType, Reference, verify)
from ocibuild.store.blobs import CHUNK, VerifyingReader
from ocibuild.store.layout import INDEX_FILE, LAYOUT_BYTES, LAYOUT_FILE
from ocibuild.store.source import ImageSource, document_descriptor, load_config, load_document, resolve_in
from ocibuild.store.tarfiles import TarMembers, TarOutput, blob_member

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
_BLOB_NAME = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]+)$")
_MAGIC = ((b"\x1f\x8b", MediaType.OCI_LAYER_GZIP), (b"\x28\xb5\x2f\xfd", MediaType.OCI_LAYER_ZSTD))


def write_docker_archive(src: ImageSource, manifest_desc: Descriptor, repo_tags: Iterable[str | Reference],
                         out_path: str | os.PathLike[str], *, epoch: int = 0) -> None:
    """Write one platform's image as a tar both ``docker load`` and OCI tools read.

    ``manifest_desc`` must be a manifest (choose one from an index with ``manifest_for``);
    ``repo_tags`` are references with a tag, written in Docker's short form. Deterministic
    and atomic like ``write_oci_archive``; "-" streams to stdout.
    """
    doc = load_document(src, manifest_desc)
    if not isinstance(doc, Manifest):
        raise InvalidInput(f"write docker archive: {manifest_desc.digest} is an index; docker load takes one "
                           "platform's manifest")
    config = load_config(src, doc.config)
    refs = [_tagged(t) for t in repo_tags]
    blobs = {d.digest: d for d in (doc.config, *doc.layers)}
    for d in doc.layers:
        if not src.has_blob(d.digest):
            raise NotFound(f"write docker archive: layer {d.digest} is not in the source"
                           + (" (a foreign layer)" if d.urls else ""))
    blobs[manifest_desc.digest] = manifest_desc
    with TarOutput(out_path, epoch=epoch) as out:
        out.add_dir("blobs")
        out.add_dir("blobs/sha256")
        for digest in sorted(blobs, key=blob_member):
            out.add_blob(src, blobs[digest])
        out.add_bytes(INDEX_FILE, _oci_index(manifest_desc, config, refs))
        out.add_bytes(MANIFEST_FILE, _docker_manifest(doc, refs))
        out.add_bytes(LAYOUT_FILE, LAYOUT_BYTES)
        if refs and doc.layers:
            out.add_bytes(REPOSITORIES_FILE, _repositories(doc, refs))


def _tagged(ref: str | Reference) -> Reference:
    parsed = ref if isinstance(ref, Reference) else Reference.parse(ref)
    if parsed.digest is not None or not parsed.tag:
        raise InvalidReference(f"write docker archive: {str(ref)!r}: docker load needs name:tag, not a digest")
    return parsed


def _json_line(obj: object) -> bytes:
    """Compact JSON with a newline, as Go's json.Encoder writes it (keys in the order given)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _docker_manifest(doc: Manifest, refs: list[Reference]) -> bytes:
    return _json_line([{
        "Config": blob_member(doc.config.digest),
        "RepoTags": [r.familiar() for r in refs],
        "Layers": [blob_member(d.digest) for d in doc.layers],
    }])


def _repositories(doc: Manifest, refs: list[Reference]) -> bytes:
    repos: dict[str, dict[str, str]] = {}
    for r in refs:
        repos.setdefault(r.with_tag("").familiar(), {})[r.tag] = doc.layers[-1].digest.encoded
    return _json_line(repos)


def _oci_index(manifest_desc: Descriptor, config: ImageConfig, refs: list[Reference]) -> bytes:
    base = Descriptor(manifest_desc.media_type, manifest_desc.digest, manifest_desc.size,
                      platform=manifest_desc.platform or config.platform)
    entries = [base.annotated(**{IMAGE_NAME: str(r), REF_NAME: r.tag}) for r in refs] or [base]
    return Index(manifests=tuple(entries)).to_json()


class DockerArchive:
    """A ``docker save`` tar as an ImageSource (manifests synthesised in memory). Close it when done."""

    def __init__(self, path: str | os.PathLike[str] | TarMembers):
        self.members = path if isinstance(path, TarMembers) else TarMembers(path)
        self.path = self.members.path
        self._files: dict[str, str] = {}  # digest -> member name
        self._docs: dict[str, bytes] = {}  # synthesised manifests
        try:
            self._index = self._load()
        except BaseException:
            self.members.close()
            raise

    def __repr__(self) -> str:
        return f"DockerArchive({str(self.path)!r})"

    def _load(self) -> Index:
        if not self.members.has(MANIFEST_FILE):
            raise NotFound(f"read docker archive {self.path}: no {MANIFEST_FILE} (archives older than "
                           "Docker 1.10 are not supported)")
        try:
            items = json.loads(self.members.read(MANIFEST_FILE, limit=16 * MAX_DOCUMENT_SIZE))
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidDocument(f"read {self.path}:{MANIFEST_FILE}: not valid JSON: {e}") from None
        if not isinstance(items, list):
            raise InvalidDocument(f"read {self.path}:{MANIFEST_FILE}: not a list")
        entries: list[Descriptor] = []
        for n, item in enumerate(items):
            entries += self._image(item, n)
        return Index(manifests=tuple(entries))

    def _image(self, item: object, n: int) -> list[Descriptor]:
        where = f"{self.path}:{MANIFEST_FILE}[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str) \
                or not isinstance(item.get("Layers"), list) or not all(isinstance(x, str) for x in item["Layers"]):
            raise InvalidDocument(f"read {where}: expected Config (a path) and Layers (a list of paths)")
        config_name = self._member_name(item["Config"])
        config_bytes = self.members.read(config_name, limit=MAX_DOCUMENT_SIZE)
        config_desc = Descriptor(MediaType.OCI_CONFIG.value, Digest.of(config_bytes), len(config_bytes))
        self._files[config_desc.digest] = config_name
        layers = tuple(self._layer(self._member_name(p)) for p in item["Layers"])
        manifest = Manifest(config=config_desc, layers=layers)
        data = manifest.to_json()
        desc = Descriptor.for_bytes(manifest.media_type, data, platform=_platform(config_bytes))
        self._docs[desc.digest] = data
        tags = item.get("RepoTags") or []
        return [self._named(desc, t, where) for t in tags if isinstance(t, str)] or [desc]

    def _member_name(self, name: str) -> str:
        name = name.removeprefix("./")
        if not self.members.has(name):
            raise NotFound(f"read docker archive {self.path}: {MANIFEST_FILE} names missing member {name!r}")
        return name

    def _layer(self, name: str) -> Descriptor:
        """A layer's descriptor: the digest is the blob name when it is one, else hashed from the content."""
        size = self.members.size(name)
        with self.members.open(name) as f:
            head = f.read(4)
            digest = _named_digest(name)
            if digest is None:
                hasher = hashlib.sha256(head)
                while chunk := f.read(CHUNK):
                    hasher.update(chunk)
                digest = Digest.from_hasher(hasher)
        media_type = next((t for magic, t in _MAGIC if head.startswith(magic)), MediaType.OCI_LAYER)
        self._files[digest] = name
        return Descriptor(media_type.value, digest, size)

    def _named(self, desc: Descriptor, tag: str, where: str) -> Descriptor:
        try:
            ref = Reference.parse(tag)
        except InvalidInput:
            raise InvalidDocument(f"read {where}: invalid RepoTag {tag!r}") from None
        return desc.annotated(**{IMAGE_NAME: str(ref), REF_NAME: ref.tag or tag})

    def index(self) -> Index:
        return self._index

    def has_blob(self, digest: str) -> bool:
        return digest in self._docs or digest in self._files

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        if digest in self._docs:
            data = self._docs[digest]
            if limit is not None and len(data) > limit:
                raise InvalidDocument(f"read {digest}: {len(data)} bytes exceeds the {limit}-byte limit")
            return data
        data = self.members.read(self._file(digest), limit)
        verify(data, digest, what=f"read {self.path}: blob")
        return data

    def open_blob(self, digest: str) -> BinaryIO:
        if digest in self._docs:
            return io.BytesIO(self._docs[digest])
        name = self._file(digest)
        return VerifyingReader(self.members.open(name), Digest(digest), self.members.size(name),
                               what=f"read {self.path}: blob")

    def _file(self, digest: str) -> str:
        try:
            return self._files[digest]
        except KeyError:
            raise NotFound(f"read docker archive {self.path}: no blob {digest}") from None

    def resolve(self, ref: str | None) -> Descriptor:
        return resolve_in(self._index, ref, f"docker archive {self.path}",
                          by_digest=lambda d: document_descriptor(self, d))

    def close(self) -> None:
        self.members.close()

    def __enter__(self) -> "DockerArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _named_digest(name: str) -> Digest | None:
    m = _BLOB_NAME.match(name)
    try:
        return Digest(f"{m.group(1)}:{m.group(2)}") if m else None
    except InvalidInput:
        return None


def _platform(config_bytes: bytes):
    try:
        config = ImageConfig.from_json(config_bytes)
    except InvalidDocument:
        return None
    return config.platform if config.os and config.architecture else None


__all__ = ["write_docker_archive", "DockerArchive", "MANIFEST_FILE", "REPOSITORIES_FILE"]
