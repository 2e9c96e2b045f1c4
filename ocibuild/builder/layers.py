"""Turning planned entries into layer blobs in the store, once per distinct content.

A multi-platform `FROM scratch` + `COPY` produces the same layer for every platform; the
signature of the entries (metadata plus the identity of each source file) lets the
build compress it once. The signature is cheap: it never reads file contents.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable

from ocibuild.errors import ContextError
from ocibuild.layer.compress import Compression, LayerWriter
from ocibuild.layer.entry import TarEntry
from ocibuild.layer.tarwriter import write_tar
from ocibuild.oci import Descriptor, Digest
from ocibuild.store.blobs import BlobStore


def signature(entries: list[TarEntry]) -> str:
    """A digest of everything that decides a layer's bytes, without reading file contents."""
    h = hashlib.sha256()
    for e in entries:
        h.update(repr((e.path, e.kind.name, e.mode, e.uid, e.gid, e.mtime, e.size, e.linkname,
                       e.devmajor, e.devminor, sorted(e.xattrs.items()))).encode())
        if e.data is not None:
            h.update(hashlib.sha256(e.data).digest())
        elif e.source is not None:
            h.update(_source_identity(e.source, e.source_id))
    return h.hexdigest()


def _source_identity(path: str, known: tuple[int, ...] | None) -> bytes:
    """`path` and its stat identity: `known` (`TarEntry.source_id`, the scan's), else stat it now.
    A context of thousands of files is not stated again while its hashing threads hold the GIL."""
    if known is None:
        try:
            s = os.stat(path)
        except OSError as e:
            raise ContextError(f"cannot read {path}: {e.strerror}") from None
        known = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
    return "\0".join((path, *map(str, known))).encode()


class _Counting:
    """Passes writes through and reports the uncompressed bytes, for the progress display."""

    def __init__(self, inner, report: Callable[[int], None]):
        self._inner, self._report = inner, report

    def write(self, data) -> int:
        n = self._inner.write(data)
        self._report(len(data))
        return n


class LayerMaker:
    def __init__(self, blobs: BlobStore, compression: Compression, level: int | None):
        self.blobs = blobs
        self.compression = compression
        self.level = level
        self._memo: dict[str, tuple[Descriptor, Digest, dict[str, str] | None]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def make(self, entries: list[TarEntry], report: Callable[[int], None] = lambda n: None,
             tee=None, file_digests: dict[str, str] | None = None) -> tuple[Descriptor, Digest]:
        """(layer descriptor, diff_id) for these entries, written to the store once.

        ``tee``: a member of the output archive (MemberStream) that the compressed bytes go to
        as well, named once the layer is in the store. Unused when the layer was made before.
        ``file_digests``: receives the digests of the source files read (tarwriter.write_tar),
        or, for a layer made before, those its first writing took if it was asked for them."""
        key = signature(entries)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                self._memo[key] = self._write(entries, report, tee, file_digests is not None)
            desc, diff_id, digests = self._memo[key]
        if file_digests is not None and digests:
            file_digests.update(digests)
        return desc, diff_id

    def _write(self, entries: list[TarEntry], report, tee, digest_files: bool):
        digests = {} if digest_files else None
        with self.blobs.writer(hash=False) as out:
            with LayerWriter(out if tee is None else _Tee(out, tee), self.compression, self.level) as layer:
                write_tar(entries, _Counting(layer, report), digests)
            blob = layer.result
            out.commit(blob.digest, blob.size)
        desc = Descriptor(blob.media_type, Digest(blob.digest), blob.size)
        if tee is not None:
            tee.finish(desc)
        return desc, Digest(blob.diff_id), digests


class _Tee:
    """Compressed layer bytes to the store and to the output archive at once."""

    def __init__(self, *outs):
        self._outs = outs

    def write(self, data) -> int:
        for out in self._outs:
            out.write(data)
        return len(data) if not isinstance(data, memoryview) else data.nbytes
