"""OCI image layouts as tar archives (``oci-archive``), and ``open_source`` for any local image.

An OCI archive is an image layout in a tar: ``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``.
``write_oci_archive`` streams blobs from any ImageSource into a deterministic tar;
``OciArchive`` reads one in place, as an ImageSource, without extracting it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterable

from ocibuild.errors import InvalidDocument, NotFound
from ocibuild.oci import MAX_DOCUMENT_SIZE, Descriptor, Digest, Index, verify
from ocibuild.store.blobs import VerifyingReader
from ocibuild.store.docker_archive import DockerArchive, write_docker_archive
from ocibuild.store.layout import INDEX_FILE, LAYOUT_BYTES, LAYOUT_FILE, OciLayout, check_layout_file
from ocibuild.store.source import ImageSource, document_descriptor, parse_index_file, resolve_in, walk
from ocibuild.store.tarfiles import TarMembers, TarOutput, blob_member

__all__ = ["write_oci_archive", "OciArchive", "open_source", "reachable_blobs",
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

    Deterministic: members sorted by name, mtime ``epoch``, owner 0:0 without names, modes
    0644/0755. Written to a temp file beside ``out_path`` and renamed; "-" streams to stdout.
    """
    blobs = reachable_blobs(src, descriptors)
    with TarOutput(out_path, epoch=epoch) as out:
        out.add_dir("blobs")
        for algorithm in sorted({d.digest.algorithm for d in blobs.values()} | {"sha256"}):
            out.add_dir(f"blobs/{algorithm}")
        for digest in sorted(blobs, key=blob_member):
            out.add_blob(src, blobs[digest])
        out.add_bytes(INDEX_FILE, Index(manifests=tuple(descriptors)).to_json())
        out.add_bytes(LAYOUT_FILE, LAYOUT_BYTES)


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
