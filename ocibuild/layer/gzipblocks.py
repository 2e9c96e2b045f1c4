"""Parallel gzip in fixed blocks: the bytes ``isal.igzip_threaded`` writes, with fewer copies.

The stream is cut into blocks of `BLOCK` bytes at fixed offsets; each block is compressed by
ISA-L on its own (with the previous block's last 32 KiB as dictionary, ended by a sync flush) and
the pieces are joined, in order, into one gzip member with mtime 0 and OS 255. For the same
blocks this is byte for byte what ``igzip_threaded`` produces (a unit test holds us to it), so
the output depends on the block size only, never on the thread count or the caller's writes.

Why not ``igzip_threaded`` itself (measured on the 1 GiB benchmark, see bench/README.md): it
copies each block once more (``bytes(b)``), takes a new 1 MiB input buffer per block, and the
input had to be re-cut into blocks before it (two more copies); page faults on those fresh
buffers and the copies cost about 1.5 s of CPU per GiB. Here the caller's bytes are copied once,
into one of a few recycled block buffers, and the workers compress straight from those.

Threads: `workers` compressors take blocks from one queue; one output thread takes the results
in stream order, combines the CRCs and hands the compressed bytes to ``sink.write``. The caller's
thread fills blocks and passes each full block to ``observe`` (the diff_id hash) before handing
it on. ISA-L and hashlib release the GIL, so all of it runs in parallel.
"""

from __future__ import annotations

import ctypes
import queue
import struct
import threading
from typing import Callable

from isal import isal_zlib

BLOCK = 1 << 20  # part of the output format: changing it changes every digest
_WINDOW = 32 << 10  # deflate's dictionary: the previous block's tail
# Part of the output format too: a block whose samples do not compress is stored (see _deflate).
_SAMPLES, _SAMPLE = 4, 16 << 10
_STORED_MAX = 0xFFFF  # the largest stored deflate block
_STOP = None
# glibc's malloc serves blocks over its mmap threshold (128 KiB, raised only as far as the
# largest block freed so far) with a new mmap each, and gives heap memory back once 128 KiB sit
# free at the top. ISA-L's output buffer (1.1 MiB per block, shrunk to what it holds) thus came
# from a fresh mapping every time: a page fault per 4 KiB written, measured at about 1 s of
# system time per GiB of layer. With these, freed blocks are reused instead; memory stays
# bounded by the blocks in flight.
_MMAP_THRESHOLD = 8 << 20
_TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_malloc_tuned = False


def _tune_malloc() -> None:
    """Raise glibc's mmap and trim thresholds (once per process; nothing elsewhere)."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt; macOS)
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


class _Job:
    """One block on its way: the input buffer, then the compressed bytes (or the error)."""

    __slots__ = ("buffer", "length", "zdict", "done", "compressed", "crc", "error")

    def __init__(self, buffer: bytearray, length: int, zdict: bytes):
        self.buffer, self.length, self.zdict = buffer, length, zdict
        self.done = threading.Event()
        self.compressed, self.crc, self.error = b"", 0, None


class GzipBlocks:
    """A write-only stream: bytes in, one gzip member out to ``sink.write`` (on another thread).

    ``close()`` flushes the last block, waits for the output thread and writes the trailer; it
    does not close ``sink``. ``abort()`` stops the threads without finishing the stream. Errors
    of the workers or of ``sink.write`` come back from a later ``write`` or from ``close``.
    """

    def __init__(self, sink, level: int, workers: int, observe: Callable[[memoryview], None]):
        _tune_malloc()
        self._sink, self._observe = sink, observe
        self._error: BaseException | None = None
        # Enough buffers that every worker has one and the caller fills the next meanwhile.
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(2 * workers + 2):
            self._free.put(bytearray(BLOCK))
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Bounded: when the disk falls behind, the caller waits instead of piling up output.
        self._ordered: queue.Queue[_Job | None] = queue.Queue(maxsize=2 * workers + 2)
        self._block, self._fill, self._zdict = self._free.get(), 0, b""
        self._crc = self._size = 0
        self._closed = False
        # As igzip_threaded sizes it: deflate of random data grows a little (level 0: up to 2x).
        room = 2 * BLOCK + 500 if level == 0 else BLOCK + max(BLOCK // 10, 500)
        sink.write(struct.pack("BBBBIBB", 0x1F, 0x8B, 8, 0, 0, 0xFF, 4 if level == 0 else 0))
        self._workers = [threading.Thread(target=self._compress, args=(isal_zlib._ParallelCompress(room, level),),
                                          name="gzip-block", daemon=True) for _ in range(workers)]
        self._writer = threading.Thread(target=self._write_out, name="gzip-out", daemon=True)
        for t in (*self._workers, self._writer):
            t.start()

    def write(self, data) -> int:
        """Copy ``data`` into blocks; each full block is observed, then queued for compression."""
        view = memoryview(data).cast("B")
        total, start = len(view), 0
        while start < total:
            n = min(total - start, BLOCK - self._fill)
            self._block[self._fill:self._fill + n] = view[start:start + n]
            self._fill += n
            start += n
            if self._fill == BLOCK:
                self._submit()
        return total

    def _submit(self) -> None:
        if self._error is not None:
            raise self._error
        block = memoryview(self._block)[:self._fill]
        self._observe(block)
        job = _Job(self._block, self._fill, self._zdict)
        self._zdict = bytes(block[-_WINDOW:])  # copied: the buffer is recycled before the next block is done
        block.release()
        self._ordered.put(job)  # first, so the output thread learns the order before any worker finishes
        self._jobs.put(job)
        self._block, self._fill = self._free.get(), 0

    def _compress(self, compressor) -> None:
        while (job := self._jobs.get()) is not _STOP:
            try:
                if self._error is None:
                    with memoryview(job.buffer) as view:
                        job.compressed, job.crc = _deflate(compressor, view[:job.length], job.zdict)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                job.error = e
            finally:
                self._free.put(job.buffer)
                job.buffer = None
                job.done.set()

    def _write_out(self) -> None:
        while (job := self._ordered.get()) is not _STOP:
            job.done.wait()
            if self._error is not None:
                continue  # keep draining so nobody waits on a full queue
            try:
                if job.error is not None:
                    raise job.error
                self._crc = isal_zlib.crc32_combine(self._crc, job.crc, job.length)
                self._size += job.length
                self._sink.write(job.compressed)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                self._error = e
            job.compressed = b""

    def close(self) -> None:
        """Finish the member: last block, end-of-stream block, CRC and size (idempotent)."""
        if self._closed:
            return
        try:
            if self._fill:
                self._submit()
        finally:
            self._stop()
        if self._error is not None:
            raise self._error
        self._sink.write(isal_zlib.compress(b"", wbits=-15))  # an empty final block, as igzip_threaded ends
        self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))

    def abort(self) -> None:
        """Stop the threads; the output is incomplete."""
        if not self._closed:
            self._error = self._error or RuntimeError("gzip stream aborted")
            self._stop()

    def _stop(self) -> None:
        self._closed = True
        for _ in self._workers:
            self._jobs.put(_STOP)
        self._ordered.put(_STOP)
        for t in (*self._workers, self._writer):
            t.join()


def _deflate(compressor, block: memoryview, zdict) -> tuple[bytes, int]:
    """The block as deflate data ending on a byte boundary, and its CRC-32.

    Incompressible data (media, archives: half the bytes of the 1 GiB benchmark) costs ISA-L as
    much time as it takes to find that out, about 1 s per GB, and it then stores it anyway. So
    we look first: when none of a few samples spread over the block compresses, the block is
    written as stored deflate blocks, at the cost of a copy. The choice depends on the block's
    bytes only, so the output stays a function of the input.
    """
    if _incompressible(compressor, block):
        return _stored(block), isal_zlib.crc32(block)
    return compressor.compress_and_crc(block, zdict)


def _incompressible(compressor, block: memoryview) -> bool:
    if len(block) < _SAMPLES * _SAMPLE:
        return False
    step = len(block) // _SAMPLES
    for start in range(0, _SAMPLES * step, step):
        packed, _ = compressor.compress_and_crc(block[start:start + _SAMPLE], b"")
        if len(packed) * 50 < _SAMPLE * 49:  # saves 2% or more: worth compressing
            return False
    return True


def _stored(block: memoryview) -> bytes:
    """Stored deflate blocks (RFC 1951 3.2.4): a byte 0 (not final, type 00), LEN, ~LEN, the bytes.

    The stream is byte-aligned here: every compressed block ends with a sync flush.
    """
    parts = []
    for start in range(0, len(block), _STORED_MAX):
        piece = block[start:start + _STORED_MAX]
        parts.append(struct.pack("<BHH", 0, len(piece), 0xFFFF ^ len(piece)))
        parts.append(piece)
    return b"".join(parts)
