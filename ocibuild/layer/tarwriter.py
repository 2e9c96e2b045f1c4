"""Write `TarEntry`s as a deterministic tar stream.

The same entries always give the same bytes, on any machine:

- POSIX ustar headers; a PAX extended header ('x') precedes a member only when a field does not
  fit ustar: a path or link name over 100 bytes or not ASCII, ids over 2097151, sizes of 8 GiB
  and more, times outside 0..8^11-1, and xattrs (as ``SCHILY.xattr.<name>`` records, as Docker
  and BuildKit write them). PAX records are sorted by key.
- Empty uname/gname, no atime/ctime, integer mtimes, directory names ending in "/" (as Docker's
  archive writer does), and the archive ends with two zero blocks (1024 bytes, as Go writes,
  not tarfile's 10 KiB record padding).
- Members are written in the order given; `sort_entries` gives the walk order Docker uses.

Headers are formatted here rather than with `tarfile.TarInfo.tobuf`, which is about 4x slower
per member and fills uname/gname from the host user database.

File contents are streamed through one reused 1 MiB buffer (`os.readv` into a memoryview) that
also gathers the headers, so nothing is held in memory beyond it. `out.write` receives
memoryviews of that buffer, reused as soon as it returns: `out` must consume or copy them
(files, BytesIO and `LayerWriter` do). On request each source file's BLAKE3 digest is taken
from the same reads (`file_digests`): the build cache keys COPY by them (builder/cachekeys.py),
and a first build then reads its context once, not twice.
"""

from __future__ import annotations

import os
import posixpath
import zlib
from typing import BinaryIO, Iterable

from blake3 import blake3

from ocibuild.errors import ContextError
from ocibuild.layer.entry import Kind, TarEntry, check_path, sort_entries

__all__ = ["write_tar", "sort_entries"]

BLOCK = 512
_ZEROS = bytes(BLOCK * 2)
_BUFFER = 1 << 20  # headers and contents are gathered here and handed to `out` when it is full

_TYPEFLAG = {Kind.FILE: b"0", Kind.HARDLINK: b"1", Kind.SYMLINK: b"2", Kind.CHAR: b"3",
             Kind.BLOCK: b"4", Kind.DIR: b"5", Kind.FIFO: b"6"}
_MAX_ID = 0o7777777          # 7 octal digits
_MAX_SIZE = 0o77777777777    # 11 octal digits
_TAIL = b"ustar\x0000" + bytes(64)  # magic, version, empty uname and gname


def write_tar(entries: Iterable[TarEntry], out: BinaryIO, file_digests: dict[str, str] | None = None) -> None:
    """Write `entries`, in the order given, as one complete tar stream to `out`.

    Does not close or flush `out`. Raises ContextError when a FILE's `source` cannot be read or
    its length differs from `size` (it changed during the build); the stream is then incomplete.
    Raises ValueError for an entry that breaks the `TarEntry` contract (a caller bug).
    `file_digests`, when given, receives `file_digest` of every `source` read, by source path.
    """
    writer = _Writer(out, file_digests)
    for entry in entries:
        writer.add(entry)
    writer.put(_ZEROS)
    writer.flush()


class _Writer:
    """One reused buffer that headers and file contents are gathered in; one per stream.

    Contents are read straight into the buffer (os.readv), so no bytes object is made per read:
    fresh 1 MiB objects cost a page fault per 4 KiB, which showed in profiles of the 1 GiB benchmark.
    """

    def __init__(self, out: BinaryIO, digests: dict[str, str] | None = None):
        self.out = out
        self.buf = memoryview(bytearray(_BUFFER))
        self.used = 0
        self.digests = digests
        self.hash = None  # the digest of the file being read, when digests are asked for

    def flush(self) -> None:
        if self.used:
            self.out.write(self.buf[:self.used])
            self.used = 0

    def put(self, data: bytes) -> None:
        if self.used + len(data) > _BUFFER:
            self.flush()
            if len(data) > _BUFFER:
                self.out.write(data)
                return
        self.buf[self.used:self.used + len(data)] = data
        self.used += len(data)

    def add(self, entry: TarEntry) -> None:
        kind = entry.kind
        size = 0
        if kind is Kind.FILE:
            size = len(entry.data) if entry.data is not None else entry.size
            if entry.data is not None and entry.size not in (0, size):
                raise ValueError(f"{entry.path!r}: size {entry.size} but {size} bytes of data")
            if entry.data is None and entry.source is None and size:
                raise ValueError(f"{entry.path!r}: size {size} but no source and no data")
        self.put(_headers(entry, size))
        if size:
            if entry.data is not None:
                self.put(entry.data)
            else:
                self._copy(entry, size)
            if size % BLOCK:
                self.put(_ZEROS[:BLOCK - size % BLOCK])

    def _copy(self, entry: TarEntry, size: int) -> None:
        """Append `size` bytes of `entry.source`; refuse a file that is not `size` bytes long."""
        try:
            fd = os.open(entry.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise ContextError(f"cannot read {entry.path!r} ({entry.source}): {e.strerror}") from None
        self.hash = None if self.digests is None else blake3()
        try:
            got = self._read(fd, size)
        except OSError as e:
            raise ContextError(f"cannot read {entry.path!r} ({entry.source}): {e.strerror}") from None
        finally:
            os.close(fd)
        if got != size:
            raise ContextError(f"{entry.path!r} changed while the layer was written: "
                               f"expected {size} bytes, found {'more' if got > size else got}")
        if self.hash is not None:
            self.digests[entry.source] = self.hash.hexdigest()

    def _read(self, fd: int, size: int) -> int:
        """Append up to `size` bytes of `fd`; returns the count read, size + 1 if the file holds more."""
        got = room = n = 0
        while got < size:
            if self.used == _BUFFER:
                self.flush()
            # Asking for one byte more than is left answers "did it grow?" in the same call
            # (a regular file reads short only at its end); that extra byte is never kept.
            room = min(_BUFFER - self.used, size - got + 1)
            n = os.readv(fd, [self.buf[self.used:self.used + room]])
            if n == 0:
                return got
            if got + n > size:
                return size + 1
            if self.hash is not None:
                self.hash.update(self.buf[self.used:self.used + n])
            self.used += n
            got += n
        if n == room - 1:  # the last read asked for the extra byte and stopped short: the end
            return got
        if self.used == _BUFFER:
            self.flush()
        return size + 1 if os.readv(fd, [self.buf[self.used:self.used + 1]]) else got


def file_digest(path: str) -> str:
    """BLAKE3 of a file's content, as `write_tar` takes it for `file_digests` (hex)."""
    h = blake3()
    with open(path, "rb") as f:
        while chunk := f.read(_BUFFER):
            h.update(chunk)
    return h.hexdigest()


def _headers(entry: TarEntry, size: int) -> bytes:
    """The ustar header of `entry`, preceded by a PAX header when a field needs one."""
    path = check_path(entry.path)
    if entry.kind is Kind.DIR:
        path += "/"
    name = path.encode("utf-8", "surrogateescape")
    link = entry.linkname.encode("utf-8", "surrogateescape") if entry.linkname else b""
    uid, gid, mtime = entry.uid, entry.gid, entry.mtime
    if (len(name) <= 100 and len(link) <= 100 and name.isascii() and link.isascii() and not entry.xattrs
            and 0 <= uid <= _MAX_ID and 0 <= gid <= _MAX_ID and size <= _MAX_SIZE and 0 <= mtime <= _MAX_SIZE
            and not entry.devmajor and not entry.devminor):
        return _ustar(name, entry.mode & 0o7777, uid, gid, size, mtime, _TYPEFLAG[entry.kind], link, 0, 0)
    if not (0 <= entry.devmajor <= _MAX_ID and 0 <= entry.devminor <= _MAX_ID):
        raise ValueError(f"{entry.path!r}: device numbers {entry.devmajor},{entry.devminor} do not fit a tar header")
    pax: dict[str, bytes] = {}
    if len(name) > 100 or not name.isascii():
        pax["path"] = name
        name = _ascii(name)
    if len(link) > 100 or not link.isascii():
        pax["linkpath"] = link
        link = _ascii(link)
    for key, value, limit in (("uid", uid, _MAX_ID), ("gid", gid, _MAX_ID), ("size", size, _MAX_SIZE),
                              ("mtime", mtime, _MAX_SIZE)):
        if not 0 <= value <= limit:
            pax[key] = str(value).encode()
    for key, value in entry.xattrs.items():
        pax["SCHILY.xattr." + key] = value
    header = _ustar(name, entry.mode & 0o7777, _fit(uid, _MAX_ID), _fit(gid, _MAX_ID), _fit(size, _MAX_SIZE),
                    _fit(mtime, _MAX_SIZE), _TYPEFLAG[entry.kind], link, entry.devmajor, entry.devminor)
    return _pax_header(path, pax) + header


# Fields in order: name, mode, uid, gid, size, mtime, checksum (eight spaces while summing),
# typeflag, linkname, magic "ustar\0" + version "00", uname, gname (empty), devmajor, devminor,
# prefix (unused: long names go to PAX) and padding to 512.
_USTAR = (b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%sustar\x0000" + bytes(64)
          + b"%07o\0%07o\0" + bytes(167))


def _ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
           link: bytes, devmajor: int, devminor: int) -> bytes:
    """One 512-byte ustar header. Every number must fit its field; name and link are ASCII.

    The checksum is the byte sum of the header. Every byte is ASCII, so that sum is at most
    512 * 127 = 65024, below Adler-32's modulus 65521: Adler-32's low half (1 + byte sum) gives
    it exactly, in C, several times faster than `sum()` over the bytes.
    """
    header = _USTAR % (name.ljust(100, b"\0"), mode, uid, gid, size, mtime, typeflag,
                       link.ljust(100, b"\0"), devmajor, devminor)
    checksum = (zlib.adler32(header) & 0xFFFF) - 1
    return b"%s%06o\0 %s" % (header[:148], checksum, header[156:])


def _fit(value: int, limit: int) -> int:
    return value if 0 <= value <= limit else 0


def _ascii(raw: bytes) -> bytes:
    """The ustar-field stand-in for a name carried by PAX: ASCII only, cut to 100 bytes (as Go does)."""
    return bytes(b for b in raw if b < 0x80)[:100]


def _pax_header(path: str, records: dict[str, bytes]) -> bytes:
    """A PAX extended header member carrying `records`, named like Go's archive/tar names it."""
    body = b"".join(_pax_record(k, records[k]) for k in sorted(records))
    head, tail = posixpath.split(path.rstrip("/"))
    name = _ascii(posixpath.join(head, "PaxHeaders.0", tail).encode("utf-8", "surrogateescape"))
    padding = bytes(-len(body) % BLOCK)
    return _ustar(name, 0o644, 0, 0, len(body), 0, b"x", b"", 0, 0) + body + padding


def _pax_record(key: str, value: bytes) -> bytes:
    """'<length> <key>=<value>\\n' where <length> counts the whole record, its own digits included."""
    payload = b" %s=%s\n" % (key.encode("utf-8", "surrogateescape"), value)
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return str(length).encode() + payload
