"""Reading layer blobs: the uncompressed tar stream of a gzip, zstd or plain layer.

The compression comes from the media type when there is a trustworthy one, else from the
magic bytes. Corrupt or truncated compressed data raises ContentError when read.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import zstandard
from isal import igzip_threaded, isal_zlib
from isal.igzip import BadGzipFile

from ocibuild.errors import ContentError
from ocibuild.layer.compress import GZIP_BLOCK, Compression

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def open_layer(fileobj: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """The uncompressed tar stream of a layer blob read from `fileobj`.

    The compression comes from an OCI layer media type (``...tar``, ``...tar+gzip``,
    ``...tar+zstd``, non-distributable variants included); without one, or for Docker's
    ``rootfs.diff.tar.gzip`` (which in practice is also used for plain tars), it is detected from
    the magic bytes. The caller closes the returned stream; that does not close `fileobj`.
    Corrupt compressed data raises ContentError when read; an unknown media type raises
    ContentError at once.
    """
    kind = _kind_of(media_type) if media_type and media_type != _DOCKER_LAYER else None
    if kind is None:
        head, fileobj = _peek(fileobj, 4)
        kind = (Compression.GZIP if head.startswith(_GZIP_MAGIC)
                else Compression.ZSTD if head.startswith(_ZSTD_MAGIC) else Compression.NONE)
        if kind is Compression.NONE:
            return fileobj
    if kind is Compression.GZIP:
        inner = igzip_threaded.open(fileobj, "rb", threads=1, block_size=GZIP_BLOCK)
    elif kind is Compression.ZSTD:
        inner = _ZstdFrames(fileobj)
    else:
        return io.BufferedReader(_Prefixed(b"", fileobj), buffer_size=GZIP_BLOCK)
    return io.BufferedReader(_Decoded(inner), buffer_size=GZIP_BLOCK)


def _kind_of(media_type: str) -> Compression:
    base = media_type.replace(".nondistributable", "")
    for kind in Compression:
        if base == kind.media_type:
            return kind
    raise ContentError(f"unsupported layer media type {media_type!r}")


def _peek(fileobj: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    """The first `n` bytes of `fileobj` and a stream that still starts with them."""
    head = b""
    while len(head) < n and (chunk := fileobj.read(n - len(head))):
        head += chunk
    return head, io.BufferedReader(_Prefixed(head, fileobj), buffer_size=GZIP_BLOCK)


class _Prefixed(io.RawIOBase):
    """`prefix`, then the rest of `fileobj` (which it does not close)."""

    def __init__(self, prefix: bytes, fileobj: BinaryIO):
        self._prefix, self._file = memoryview(prefix), fileobj

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        if hasattr(self._file, "readinto"):
            return self._file.readinto(buffer)
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _Decoded(io.RawIOBase):
    """A decompressing reader whose decoding errors surface as ContentError."""

    def __init__(self, inner):
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._inner.readinto(buffer)
        except (EOFError, isal_zlib.error, BadGzipFile, zstandard.ZstdError) as e:
            raise ContentError(f"layer is not valid compressed data: {e}") from None

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class _ZstdFrames(io.RawIOBase):
    """Decompresses concatenated zstd frames; input that ends inside a frame is a ContentError.

    zstandard's own stream_reader reports a truncated frame as a clean end of stream.
    Input is fed in small chunks to bound the memory one chunk can expand to.
    """

    _INPUT = 128 << 10

    def __init__(self, fileobj: BinaryIO):
        self._file = fileobj
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = None
        self._out = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out:
            if self._eof:
                return 0
            self._fill()
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _fill(self) -> None:
        data = self._file.read(self._INPUT)
        if not data:
            if self._frame is not None:
                raise ContentError("layer is not valid compressed data: zstd stream ends inside a frame")
            self._eof = True
            return
        out = []
        while data:
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            out.append(self._frame.decompress(data))
            data = b""
            if self._frame.eof:
                data, self._frame = self._frame.unused_data, None
        self._out = memoryview(b"".join(out))
