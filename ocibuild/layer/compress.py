"""Compress a layer tar and compute its digest, diff_id and size in the same single pass.

`LayerWriter` takes the uncompressed tar bytes. They are hashed (the diff_id) on the calling
thread (gzip) or a feeder thread (zstd, none); compression runs on worker threads; the compressed
bytes are hashed (the digest), counted and written to `dest` on the compressor's output thread.
hashlib, ISA-L and zstd release the GIL on large buffers, so the stages overlap on separate cores.

Reproducibility - the same tar gives the same blob on any machine, whatever its core count:

- gzip goes through `ocibuild.layer.gzipblocks`, pigz-style: the stream is cut into blocks of
  `GZIP_BLOCK` bytes at fixed offsets, each compressed by ISA-L on its own with the previous
  block's last 32 KiB as dictionary, and the pieces joined into one deflate stream. The bytes are
  those ``isal.igzip_threaded`` writes for the same cuts (python-isal 1.9; our earlier writer
  used it directly and tests compare against it); they depend on the block size, never on the
  thread count or the caller's write sizes. The gzip header has mtime 0, no file name, OS 255.
  ISA-L picks a CPU-specific deflate kernel at run time; we know of no promise that they emit
  identical bytes on every x86-64 generation or on arm64 (we could only test one machine), so
  "bit-identical everywhere" holds for a given ISA-L build and CPU family.
- zstd goes through ``zstandard`` with nbWorkers >= 1. Measured (zstandard 0.25): the output is
  identical for 1, 2, 4, 8 workers and for any write sizes; only nbWorkers=0 (single-threaded
  mode) differs. So we always run in multi-threaded mode, with as many workers as cores.
- No compression: the blob is the tar; digest == diff_id.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Iterable

import zstandard
from isal import isal_zlib

from ocibuild.errors import InvalidOption
from ocibuild.layer.entry import TarEntry
from ocibuild.layer.gzipblocks import BLOCK as GZIP_BLOCK, GzipBlocks
from ocibuild.layer.tarwriter import write_tar

# ISA-L has levels 0-3; buildah (Go compress/gzip) uses zlib's level 6. Measured on the 1 GiB
# benchmark tar (bench/benchkit big_layout: half random, half log text), blob size against
# `gzip -6`'s 667.1 MB: level 0 +27%, level 1 +3.0%, level 2 +3.0%, level 3 +2.5% at 2.5x the CPU
# of level 1. Level 1 keeps us within 5% of buildah at the lowest cost. (On pure log text no
# ISA-L level comes within 5% of gzip -6: +15% at level 1, +12.5% at level 3; ask for zstd.)
GZIP_DEFAULT_LEVEL = 1
ZSTD_DEFAULT_LEVEL = 3
_FEED_QUEUE = 16  # chunks (up to 1 MiB each) between the reading thread and the feeder (zstd)
_MAX_THREADS = 8  # more buys nothing: hashing the diff_id (one stream, one core) is the next bottleneck


class Compression(Enum):
    """How a layer blob is compressed; the value is its OCI media type."""

    GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    NONE = "application/vnd.oci.image.layer.v1.tar"

    @property
    def media_type(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """What a manifest and an image config need to know about a written layer."""

    digest: str     # "sha256:<hex>" of the blob as written (compressed)
    diff_id: str    # "sha256:<hex>" of the uncompressed tar
    size: int       # bytes written to dest
    media_type: str


def build_layer(entries: Iterable[TarEntry], dest: BinaryIO, compression: Compression,
                level: int | None = None) -> LayerBlob:
    """Write `entries` (in the order given: sort them first) as a compressed layer to `dest`.

    `dest` is written, not closed. Raises ContextError if a source file changed meanwhile.
    """
    with LayerWriter(dest, compression, level) as writer:
        write_tar(entries, writer)
    return writer.result


class LayerWriter:
    """A write-only binary file object: uncompressed tar in, compressed blob out to `dest`.

    Closing it (or leaving its `with` block) finishes the compressed stream and makes `result`
    available; it does not close `dest`. Leaving the `with` block by an exception still stops the
    worker threads, but the blob in `dest` is then incomplete and must be discarded. Exceptions
    raised by `dest.write` (on a worker thread) come back from a later `write` or `close`.
    `write` copies what it is given before returning, so callers may reuse their buffers.
    """

    def __init__(self, dest: BinaryIO, compression: Compression, level: int | None = None):
        self._compression = compression
        self._sink = _HashingSink(dest)
        self._result: LayerBlob | None = None
        if compression is Compression.GZIP:
            # The diff_id is hashed block by block on the caller's thread, compression and the
            # digest of its output on GzipBlocks' threads.
            self._diff = hashlib.sha256()
            self._stream = GzipBlocks(self._sink, _gzip_level(level), _threads(), self._diff.update)
        else:
            self._diff = self._sink.sha if compression is Compression.NONE else hashlib.sha256()
            self._stream = _Fed(_compressor(compression, level, self._sink),
                                None if compression is Compression.NONE else self._diff)

    def write(self, data) -> int:
        """Take ``data`` for hashing and compression (copied: the caller may reuse its buffer)."""
        if self._result is not None:
            raise ValueError("write to a closed LayerWriter")
        return self._stream.write(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Nothing to do: data is pushed to the compressor as it comes."""

    def close(self) -> None:
        """Finish the stream (idempotent) and fix `result`."""
        if self._result is None:
            self._stream.close()
            self._result = LayerBlob(digest="sha256:" + self._sink.sha.hexdigest(),
                                     diff_id="sha256:" + self._diff.hexdigest(),
                                     size=self._sink.size, media_type=self._compression.media_type)

    @property
    def closed(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> LayerBlob:
        if self._result is None:
            raise ValueError("LayerWriter.result is known only after close()")
        return self._result

    def __enter__(self) -> "LayerWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # stop the threads; the caller discards the partial blob
            self._stream.abort()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass


class _Fed:
    """zstd or no compression behind a feeder thread, which also hashes the diff_id when given."""

    def __init__(self, compressor, diff):
        self._compressor, self._diff = compressor, diff
        self._feeder = _Feeder(self._feed)

    def write(self, data) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._feeder.put(chunk)
        return len(chunk)

    def _feed(self, chunk: bytes) -> None:
        if self._diff is not None:
            self._diff.update(chunk)
        self._compressor.write(chunk)

    def close(self) -> None:
        self._feeder.close()
        self._compressor.close()

    def abort(self) -> None:
        try:
            self._feeder.close()
        finally:
            self._compressor.close()


class _Feeder:
    """A thread that calls ``fn`` on each queued chunk, in order; its errors surface in put/close."""

    _DONE = object()

    def __init__(self, fn):
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=_FEED_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="layer-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not self._DONE:
            if self._error is None:
                try:
                    self._fn(chunk)
                except BaseException as e:  # noqa: BLE001 - handed to the writing thread
                    self._error = e

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._DONE)
            self._thread.join()
        if self._error is not None:
            raise self._error


class _HashingSink:
    """Hashes, counts and forwards the compressed bytes (runs on the compressor's output thread)."""

    def __init__(self, dest: BinaryIO):
        self.dest = dest
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.dest.write(data)
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.size += n
        return n

    def flush(self) -> None:
        pass


def _threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_THREADS))


def _compressor(compression: Compression, level: int | None, sink: _HashingSink):
    if compression is Compression.ZSTD:
        level = ZSTD_DEFAULT_LEVEL if level is None else level
        if not -7 <= level <= 22:
            raise InvalidOption(f"zstd compression level must be between -7 and 22, not {level}")
        # The frame checksum (XXH64, as Go's klauspost/zstd writes by default) lets readers
        # detect corruption in stored (incompressible) blocks, which zstd does not otherwise check.
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=_threads(), write_checksum=True)
        return zstandard.ZstdCompressor(compression_params=params).stream_writer(sink, closefd=False)
    return _Passthrough(sink)


def _gzip_level(level: int | None) -> int:
    """ISA-L's level for a gzip level: 0-3 as is, 4-9 (zlib's scale) as ISA-L's best, 3."""
    if level is None:
        return GZIP_DEFAULT_LEVEL
    if not 0 <= level <= 9:
        raise InvalidOption(f"gzip compression level must be between 0 and 9, not {level}")
    return min(level, isal_zlib.ISAL_BEST_COMPRESSION)


class _Passthrough:
    def __init__(self, sink: _HashingSink):
        self.write, self.close = sink.write, lambda: None
