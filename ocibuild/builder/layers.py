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
            h.update(_source_identity(e.source))
    return h.hexdigest()


def _source_identity(path: str) -> bytes:
    try:
        s = os.stat(path)
    except OSError as e:
        raise ContextError(f"cannot read {path}: {e.strerror}") from None
    return f"{path}\0{s.st_dev}\0{s.st_ino}\0{s.st_size}\0{s.st_mtime_ns}\0{s.st_ctime_ns}".encode()


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
        self._memo: dict[str, tuple[Descriptor, Digest]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def make(self, entries: list[TarEntry], report: Callable[[int], None] = lambda n: None
             ) -> tuple[Descriptor, Digest, bool]:
        """(layer descriptor, diff_id, reused?) for these entries, written to the store once."""
        key = signature(entries)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._memo:
                return (*self._memo[key], True)
            result = self._write(entries, report)
            self._memo[key] = result
            return (*result, False)

    def _write(self, entries: list[TarEntry], report) -> tuple[Descriptor, Digest]:
        with self.blobs.writer(hash=False) as out:
            with LayerWriter(out, self.compression, self.level) as layer:
                write_tar(entries, _Counting(layer, report))
            blob = layer.result
            out.commit(blob.digest, blob.size)
        desc = Descriptor(blob.media_type, Digest(blob.digest), blob.size)
        return desc, Digest(blob.diff_id)
