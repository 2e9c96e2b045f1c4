"""OCI image layouts as tar archives (``oci-archive``), and ``open_source`` for any local image.

An OCI archive is an image layout in a tar: ``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``.
``write_oci_archive`` streams blobs from any ImageSource into a deterministic tar;
``OciArchive`` reads one in place, as an ImageSource, without extracting it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO, Iterable

from ocibuild.errors import InvalidDocument, NotFound
from ocibuild.oci import MAX_DOCUMENT_SIZE, Descriptor, Digest, Index, Manifest, verify
from ocibuild.store.blobs import VerifyingReader
from ocibuild.store.docker_archive import DockerArchive, write_docker_archive
from ocibuild.store.layout import INDEX_FILE, LAYOUT_BYTES, LAYOUT_FILE, OciLayout, check_layout_file
from ocibuild.store.source import (ImageSource, document_descriptor, is_document, load_document, parse_index_file,
                                   resolve_in, walk)
from ocibuild.store.tarfiles import MemberStream, TarMembers, TarOutput, blob_member

__all__ = ["write_oci_archive", "OciArchiveWriter", "OciArchive", "open_source", "reachable_blobs",
           "write_docker_archive", "DockerArchive"]  # the docker ones re-exported: one import for all archives


def reachable_blobs(src: ImageSource, descriptors: Iterable[Descriptor]) -> dict[str, Descriptor]:
    """Every blob reachable from ``descriptors`` that ``src`` holds, by digest.

    Foreign layers (with ``urls``) that the source does not hold are left out, as registries do.
    """
    out: dict[str, Descriptor] = {}
    for top in descriptors:
        for d in walk(src, top):
            if d.digest not in out and not (d.urls and not src.has_blob(d.digest)):
                out[d.digest] = d
    return out


def write_oci_archive(src: ImageSource, descriptors: list[Descriptor], out_path: str | os.PathLike[str],
                      *, epoch: int = 0) -> None:
    """Write ``descriptors`` (the index.json entries, names included) and all they reach as an OCI tar.

    Deterministic (see OciArchiveWriter), written to a temp file beside ``out_path`` and
    renamed; "-" streams to stdout.
    """
    with OciArchiveWriter(out_path, epoch=epoch) as archive:
        archive.finish(src, descriptors)


class OciArchiveWriter:
    """An OCI tar whose first image's layers may be written while the build makes them.

    The members come in one order, however the archive was written, so the same image always
    gives the same bytes: ``blobs/``, ``blobs/sha256/``, the first image's layers in manifest
    order (each once), the other algorithms' directories, every other blob by name, then
    ``index.json`` and ``oci-layout``. Members have mtime ``epoch``, owner 0:0 without names,
    modes 0644/0755.

    While the build runs, ``stream_layer`` hands out the next layer's member (one at a time)
    so that a layer goes to the archive as it is compressed, not copied from the store after.
    ``finish`` checks what was written against the image and rewrites from the first layer that
    is not the one expected (the archive is truncated there), so a layer streamed for an image
    that did not end up first costs time, never correctness. Leaving the ``with`` block
    without ``finish`` (an error) removes the temp file.
    """

    def __init__(self, out_path: str | os.PathLike[str], *, epoch: int = 0):
        self.path = out_path
        self._out = TarOutput(out_path, epoch=epoch)
        self._layers: list[tuple[str, int]] = []  # (digest, start) of the layers written, in order
        self._streaming = threading.Lock()
        self._finished = False

    def __enter__(self) -> "OciArchiveWriter":
        self._out.__enter__()
        self._out.add_dir("blobs")
        self._out.add_dir("blobs/sha256")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            self._out.abort()

    def stream_layer(self, src: ImageSource, preceding: list[Descriptor]):
        """A context manager: the member for the layer that follows ``preceding`` (written from
        ``src`` first where they are not yet), or None when that cannot be the next member now."""
        if self._finished or not self._streaming.acquire(blocking=False):
            return contextlib.nullcontext()
        try:
            member = self._place(src, preceding)
        except BaseException:
            self._streaming.release()
            raise
        if member is None:
            self._streaming.release()
            return contextlib.nullcontext()
        return self._streamed(member)

    def _place(self, src: ImageSource, preceding: list[Descriptor]) -> MemberStream | None:
        wanted = list({d.digest: d for d in preceding}.values())
        written = [digest for digest, _ in self._layers]
        if [d.digest for d in wanted[:len(written)]] != written:
            return None
        if not all(src.has_blob(d.digest) for d in wanted[len(written):]):
            return None  # a foreign layer (urls, not at hand) is left out, by finish too
        for d in wanted[len(written):]:
            self._add_layer(src, d)
        return self._out.open_member()

    @contextlib.contextmanager
    def _streamed(self, member: MemberStream):
        """Yields the member; once the caller finished it, it counts as the next layer."""
        try:
            with member:
                yield member
            if member.digest is not None:
                self._layers.append((member.digest, member.start))
        finally:
            self._streaming.release()

    def _add_layer(self, src: ImageSource, desc: Descriptor) -> None:
        self._layers.append((desc.digest, self._out.end))
        self._out.add_blob(src, desc)

    def finish(self, src: ImageSource, descriptors: list[Descriptor]) -> None:
        """Write the rest: what ``descriptors`` reach from ``src``, index.json, oci-layout; rename."""
        blobs = reachable_blobs(src, descriptors)
        first = [d for d in _first_image_layers(src, descriptors) if d.digest in blobs]
        kept = 0
        while kept < min(len(first), len(self._layers)) and self._layers[kept][0] == first[kept].digest:
            kept += 1
        if kept < len(self._layers):
            self._out.truncate(self._layers[kept][1])
            del self._layers[kept:]
        for d in first[kept:]:
            self._add_layer(src, d)
        for algorithm in sorted({d.digest.algorithm for d in blobs.values()} - {"sha256"}):
            self._out.add_dir(f"blobs/{algorithm}")
        done = {d.digest for d in first}
        for digest in sorted(set(blobs) - done, key=blob_member):
            self._out.add_blob(src, blobs[digest])
        self._out.add_bytes(INDEX_FILE, Index(manifests=tuple(descriptors)).to_json())
        self._out.add_bytes(LAYOUT_FILE, LAYOUT_BYTES)
        self._out.__exit__(None, None, None)
        self._finished = True


def _first_image_layers(src: ImageSource, descriptors: list[Descriptor]) -> list[Descriptor]:
    """The layers of the first manifest reachable from ``descriptors``, in order, each once."""
    desc = descriptors[0] if descriptors else None
    for _ in range(16):  # how deep walk() lets indexes nest
        if desc is None or not is_document(desc):
            return []
        doc = load_document(src, desc)
        if isinstance(doc, Manifest):
            return list({d.digest: d for d in doc.layers}.values())
        desc = doc.manifests[0] if doc.manifests else None
    return []


class OciArchive:
    """An ImageSource over an OCI layout tar, read in place. Close it (or use ``with``) when done."""

    def __init__(self, path: str | os.PathLike[str] | TarMembers):
        self.members = path if isinstance(path, TarMembers) else TarMembers(path)
        self.path = self.members.path
        try:
            if not (self.members.has(LAYOUT_FILE) and self.members.has(INDEX_FILE)):
                raise NotFound(f"read OCI archive {self.path}: no {LAYOUT_FILE} and {INDEX_FILE}; "
                               "not an OCI image layout archive")
            check_layout_file(self.members.read(LAYOUT_FILE, limit=4096), f"{self.path}:{LAYOUT_FILE}")
            self._index = self._read_index()
        except BaseException:
            self.members.close()
            raise

    def __repr__(self) -> str:
        return f"OciArchive({str(self.path)!r})"

    def _read_index(self) -> Index:
        return parse_index_file(self.members.read(INDEX_FILE, limit=MAX_DOCUMENT_SIZE),
                                f"{self.path}:{INDEX_FILE}")

    def index(self) -> Index:
        return self._index

    def has_blob(self, digest: str) -> bool:
        return self.members.has(blob_member(digest))

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        data = self.members.read(self._blob(digest), limit)
        verify(data, digest, what=f"read {self.path}: blob")
        return data

    def open_blob(self, digest: str) -> BinaryIO:
        name = self._blob(digest)
        return VerifyingReader(self.members.open(name), Digest(digest), self.members.size(name),
                               what=f"read {self.path}: blob")

    def _blob(self, digest: str) -> str:
        name = blob_member(digest)
        if not self.members.has(name):
            raise NotFound(f"read OCI archive {self.path}: no blob {digest}")
        return name

    def resolve(self, ref: str | None) -> Descriptor:
        return resolve_in(self._index, ref, f"OCI archive {self.path}",
                          by_digest=lambda d: document_descriptor(self, d))

    def close(self) -> None:
        self.members.close()

    def __enter__(self) -> "OciArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(path: str | os.PathLike[str]) -> OciLayout | OciArchive | DockerArchive:
    """The image source at ``path``: an OCI layout directory, an OCI archive or a ``docker save`` tar.

    A tar holding both views (what ``docker save`` writes since Docker 25, and what
    ``write_docker_archive`` writes) is read as OCI: it keeps the original manifests and digests.
    """
    p = Path(path)
    if p.is_dir():
        if (p / LAYOUT_FILE).is_file():
            return OciLayout(p)
        raise NotFound(f"open image {p}: a directory without an {LAYOUT_FILE} file is not an OCI image layout")
    if not p.exists():
        raise NotFound(f"open image {p}: no such file or directory")
    members = TarMembers(p)
    if members.has(LAYOUT_FILE) and members.has(INDEX_FILE):
        return OciArchive(members)
    if members.has("manifest.json"):
        return DockerArchive(members)
    members.close()
    raise InvalidDocument(f"open image {p}: a tar with neither {LAYOUT_FILE} + {INDEX_FILE} (an OCI archive) "
                          "nor manifest.json (a docker save archive)")
