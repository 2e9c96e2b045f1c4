"""Tar plumbing shared by the OCI and docker archives: a safe indexed reader and a deterministic writer.

TarMembers indexes an archive once and then reads members in place (``extractfile`` is
random access in an uncompressed tar); it refuses archives whose member names are absolute
or climb out with ``..``, and resolves links only within the archive.

TarOutput writes members with fixed metadata (mtime = a given epoch, uid/gid 0, empty
owner names, modes 0644/0755, PAX format) so that the same content always gives the same
bytes; it writes to a temp file beside the target and renames it on success ("-": stdout).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import posixpath
import sys
import tarfile
import threading
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from ocibuild.errors import DigestMismatch, InvalidDocument, NotFound
from ocibuild.oci import Descriptor
from ocibuild.store.blobs import store_error
from ocibuild.store.source import ImageSource, blob_path

_MAX_LINK_DEPTH = 8


def safe_name(name: str, archive: object) -> str:
    """A member name made relative and normal ("./a//b" -> "a/b"); refuses absolute and ".." names."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise InvalidDocument(f"read archive {archive}: refusing member name {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidDocument(f"read archive {archive}: refusing member name {name!r} (it climbs out with '..')")
    return "/".join(parts)


class TarMembers:
    """The regular files of a tar archive by normalised name, read without extracting.

    Members may be read from several threads at once (a push uploads four blobs at a time):
    tarfile's member streams share one file object, seeked before every read, so each read
    holds a lock."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._tar = tarfile.open(self.path, "r:*")
        except (tarfile.TarError, EOFError) as e:
            raise InvalidDocument(f"read archive {self.path}: not a tar archive ({e})") from None
        except OSError as e:
            raise store_error(f"read archive {self.path}", e) from None
        try:
            self._files = self._index()
        except BaseException:
            self._tar.close()
            raise

    def _index(self) -> dict[str, tarfile.TarInfo]:
        files: dict[str, tarfile.TarInfo] = {}
        links: dict[str, str] = {}
        try:
            for m in self._tar:
                name = safe_name(m.name, self.path)
                if m.isreg():
                    if name in files or name in links:
                        raise InvalidDocument(f"read archive {self.path}: member {name!r} appears twice")
                    files[name] = m
                elif m.issym():
                    links[name] = posixpath.join(posixpath.dirname(name), m.linkname)
                elif m.islnk():
                    links[name] = m.linkname
        except (tarfile.TarError, EOFError) as e:
            raise InvalidDocument(f"read archive {self.path}: {e}") from None
        except OSError as e:
            raise store_error(f"read archive {self.path}", e) from None
        for name, target in links.items():
            files.setdefault(name, self._follow(target, files, links))
        return files

    def _follow(self, target: str, files: dict, links: dict) -> tarfile.TarInfo:
        for _ in range(_MAX_LINK_DEPTH):
            if target.startswith("/"):
                raise InvalidDocument(f"read archive {self.path}: refusing link to absolute path {target!r}")
            name = posixpath.normpath(target)
            if name == ".." or name.startswith("../"):
                raise InvalidDocument(f"read archive {self.path}: refusing link that leaves the archive ({target!r})")
            if name in files:
                return files[name]
            if name not in links:
                raise InvalidDocument(f"read archive {self.path}: link to missing member {target!r}")
            target = links[name]
        raise InvalidDocument(f"read archive {self.path}: links nested too deep")

    def __repr__(self) -> str:
        return f"TarMembers({str(self.path)!r})"

    def names(self) -> list[str]:
        return sorted(self._files)

    def has(self, name: str) -> bool:
        return name in self._files

    def size(self, name: str) -> int:
        return self._member(name).size

    def _member(self, name: str) -> tarfile.TarInfo:
        try:
            return self._files[name]
        except KeyError:
            raise NotFound(f"read archive {self.path}: no member {name!r}") from None

    def open(self, name: str) -> BinaryIO:
        """The member as a stream (the caller closes it; closing does not close the archive)."""
        member = self._member(name)
        try:
            f = self._tar.extractfile(member)
        except (tarfile.TarError, OSError) as e:
            raise InvalidDocument(f"read archive {self.path}: member {name!r}: {e}") from None
        assert f is not None  # regular files always have data
        return _Locked(f, self._lock)

    def read(self, name: str, limit: int | None = None) -> bytes:
        size = self.size(name)
        if limit is not None and size > limit:
            raise InvalidDocument(f"read archive {self.path}: member {name!r} has {size} bytes, over the "
                                  f"{limit}-byte limit")
        with self.open(name) as f:
            try:
                return f.read()
            except (tarfile.TarError, OSError) as e:
                raise InvalidDocument(f"read archive {self.path}: member {name!r}: {e}") from None

    def close(self) -> None:
        self._tar.close()


class _Locked(io.RawIOBase):
    """A member stream whose reads (seek and read of the shared archive file) run one at a time."""

    def __init__(self, f, lock: threading.Lock):
        self._f, self._lock = f, lock

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        with self._lock:
            return self._f.readinto(b)

    def read(self, size: int = -1) -> bytes:
        with self._lock:
            return self._f.read(size)

    def close(self) -> None:
        self._f.close()
        super().close()


def blob_member(digest: str) -> str:
    """Where a blob lives in an OCI layout: ``blobs/<algorithm>/<hex>``."""
    algorithm, encoded = digest.split(":", 1)
    return f"blobs/{algorithm}/{encoded}"


class TarOutput:
    """A deterministic tar being written to ``out_path`` (or stdout for "-"); a context manager.

    On success the temp file is renamed over ``out_path`` (not fsynced: see __exit__); on error it is removed
    and ``out_path`` is untouched. Streaming to stdout cannot be taken back: a failure
    there leaves a truncated stream (the consumer sees the missing end-of-archive).
    """

    def __init__(self, out_path: str | os.PathLike[str], *, epoch: int = 0):
        self.out_path = out_path
        self.epoch = int(epoch)
        self._temp: Path | None = None
        self._file: BinaryIO | None = None
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> "TarOutput":
        try:
            if str(self.out_path) == "-":
                self._tar = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT)
                return self
            target = Path(self.out_path)
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
            self._temp = Path(temp)
            self._file = os.fdopen(fd, "wb")
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        except OSError as e:
            self._abort()
            raise store_error(f"write archive {self.out_path}", e) from None
        return self

    def _info(self, name: str, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = self.epoch
        info.mode = 0o755 if directory else 0o644
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add_dir(self, name: str) -> None:
        self._add(self._info(name.rstrip("/"), directory=True), None)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._add(self._info(name, size=len(data)), io.BytesIO(data))

    def add_blob(self, source: ImageSource, desc: Descriptor) -> None:
        """Stream a blob from ``source`` as ``blobs/<alg>/<hex>``, verified against ``desc``."""
        path = blob_path(source, desc.digest)
        if path is not None and self._file is not None:
            self._add_blob_file(path, desc)
            return
        with source.open_blob(desc.digest) as f:
            self._add(self._info(blob_member(desc.digest), size=desc.size), f)
            if f.read(1):
                raise DigestMismatch(f"write archive {self.out_path}: blob {desc.digest} is longer than the "
                                     f"{desc.size} bytes its descriptor says")

    def _add_blob_file(self, path: Path, desc: Descriptor) -> None:
        """The fast path for a blob kept as a file: the kernel copies it (copy_file_range) while
        another thread hashes the same, page-cached bytes to verify them."""
        assert self._tar is not None and self._file is not None
        info = self._info(blob_member(desc.digest), size=desc.size)
        try:
            with open(path, "rb") as src:
                if os.fstat(src.fileno()).st_size != desc.size:
                    raise DigestMismatch(f"write archive {self.out_path}: blob {desc.digest} does not have "
                                         f"the {desc.size} bytes its descriptor says")
                self._tar.addfile(info)
                self._file.flush()
                with ThreadPoolExecutor(1) as pool:
                    hashed = pool.submit(_hash_file, path, desc.digest)
                    _copy_range(src.fileno(), self._file.fileno(), desc.size)
                    actual = hashed.result()
        except OSError as e:
            raise store_error(f"write archive {self.out_path}: add {info.name}", e) from None
        if actual != desc.digest:
            raise DigestMismatch(f"write archive {self.out_path}: blob {desc.digest} hashes to {actual}")
        blocks, remainder = divmod(desc.size, tarfile.BLOCKSIZE)
        if remainder:
            self._file.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))
            blocks += 1
        self._tar.offset += blocks * tarfile.BLOCKSIZE

    @property
    def end(self) -> int:
        """Where the next member starts."""
        assert self._tar is not None
        return self._tar.offset

    def truncate(self, offset: int) -> None:
        """Drop every member from ``offset`` (a former ``end``) on."""
        assert self._tar is not None and self._file is not None
        try:
            self._file.flush()
            self._file.truncate(offset)
            self._file.seek(offset)
        except OSError as e:
            raise store_error(f"write archive {self.out_path}", e) from None
        self._tar.offset = offset

    def open_member(self) -> "MemberStream | None":
        """A blob member to be written before its digest is known; None when streaming to stdout."""
        return MemberStream(self) if self._file is not None else None

    def _add(self, info: tarfile.TarInfo, f: BinaryIO | None) -> None:
        assert self._tar is not None
        try:
            self._tar.addfile(info, f)
        except OSError as e:
            raise store_error(f"write archive {self.out_path}: add {info.name}", e) from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            assert self._tar is not None
            self._tar.close()
            if self._file is None:
                sys.stdout.buffer.flush()
                return
            # No fsync: an output is rebuilt by running the build again, and the rename below
            # already keeps a half-written archive from ever carrying the final name.
            self._file.flush()
            os.fchmod(self._file.fileno(), 0o644)
            self._file.close()
            assert self._temp is not None
            os.replace(self._temp, self.out_path)
            self._temp = None
        except OSError as e:
            self._abort()
            raise store_error(f"write archive {self.out_path}", e) from None

    def abort(self) -> None:
        """Remove the temp file: the archive is not written."""
        self._abort()

    def _abort(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        if self._temp is not None:
            try:
                self._temp.unlink()
            except FileNotFoundError:
                pass
            self._temp = None


class MemberStream:
    """The bytes of a blob member as they are made, its header written once they are all there.

    A zero header holds the place; ``finish`` writes the real one (name ``blobs/<alg>/<hex>``,
    the size) over it: byte for byte what ``add_blob`` would have written. ``discard`` (or
    leaving a ``with`` block without ``finish``) truncates the archive back to where it began.
    """

    def __init__(self, out: TarOutput):
        self._out, self.start, self.size = out, out.end, 0
        self.digest: str | None = None  # set by a successful finish
        self._closed = False
        self._write(bytes(tarfile.BLOCKSIZE))

    def _write(self, data) -> None:
        try:
            self._out._file.write(data)
        except OSError as e:
            raise store_error(f"write archive {self._out.out_path}", e) from None

    def write(self, data) -> int:
        self._write(data)
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.size += n
        return n

    def finish(self, desc: Descriptor) -> bool:
        """Name the member after ``desc``; False (and discarded) when it cannot be (see ``discard``)."""
        out = self._out
        header = out._info(blob_member(desc.digest), size=self.size).tobuf(out._tar.format, out._tar.encoding,
                                                                           out._tar.errors)
        if self.size != desc.size or len(header) != tarfile.BLOCKSIZE:  # 8 GiB and up takes a PAX header
            self.discard()
            return False
        self._write(tarfile.NUL * (-self.size % tarfile.BLOCKSIZE))
        try:
            out._file.flush()
            os.pwrite(out._file.fileno(), header, self.start)
        except OSError as e:
            raise store_error(f"write archive {out.out_path}", e) from None
        out._tar.offset = self.start + tarfile.BLOCKSIZE + self.size + (-self.size % tarfile.BLOCKSIZE)
        self.digest, self._closed = str(desc.digest), True
        return True

    def discard(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.truncate(self.start)

    def __enter__(self) -> "MemberStream":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _copy_range(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy ``size`` bytes between file positions inside the kernel (sendfile when the
    filesystems refuse copy_file_range)."""
    left = size
    while left:
        try:
            n = os.copy_file_range(src_fd, dst_fd, min(left, 1 << 30))
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            n = os.sendfile(dst_fd, src_fd, None, min(left, 1 << 30))
        if n == 0:
            raise OSError(errno.EIO, "blob file shorter than expected")
        left -= n


def _hash_file(path: Path, digest: str) -> str:
    algorithm = digest.split(":", 1)[0]
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"
