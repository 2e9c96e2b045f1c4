"""A content-addressed blob store: ``<root>/blobs/<algorithm>/<hex>``, the shape of an OCI layout.

Writes follow umoci's ``cas/dir`` and go-containerregistry's ``layout``: bytes go to a temp file
in the blob's own directory (same filesystem, so the final rename is atomic), are hashed while
written, fsynced, verified, made read-only (0444) and renamed into place. A blob path therefore
either does not exist or holds complete content; a failed or abandoned write leaves nothing.

Reads are verified: ``open`` hashes while reading and raises DigestMismatch when the content
runs out (or reaches its recorded size) without matching its name.

Several processes may write the same store at once: each writes its own temp file and the
rename of identical content is idempotent.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from ocibuild.errors import DigestMismatch, InvalidDocument, NotFound, StoreError
from ocibuild.oci import Descriptor, Digest, verify
from ocibuild.store.syncer import Syncer

CHUNK = 1 << 20  # copy and write-buffer size
# Writes this large skip the buffer: a compressed layer arrives in pieces of 100 KiB to 1 MiB,
# and gathering them cost a copy and a growing bytearray for no fewer system calls worth having.
DIRECT_WRITE = 64 << 10
# A blob is fsynced before it is renamed into place. Left to the end, that fsync waits for the
# whole blob to reach the disk; a large blob is therefore fdatasynced every SYNC_CHUNK as it is
# written, on a thread of its own (Syncer), and the final fsync finds little left to do.
SYNC_CHUNK = 32 << 20
TEMP_PREFIX = ".partial-"  # temp files live beside the blobs; listings skip dot files
BLOB_MODE = 0o444

_write = os.write  # indirection so tests can simulate a full disk without patching os globally


def store_error(what: str, e: OSError) -> StoreError:
    """Translate an OSError at the edge: ``what: cause``; a missing file becomes NotFound."""
    cause = e.strerror or str(e)
    if e.errno == errno.ENOENT:
        return NotFound(f"{what}: {cause}")
    return StoreError(f"{what}: {cause}")


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``<root>/blobs``. Creating the object touches nothing on disk."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.dir = self.root / "blobs"

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        d = Digest(digest)
        return self.dir / d.algorithm / d.encoded

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except OSError as e:
            raise store_error(f"stat blob {digest}", e) from None

    def writer(self, expected: str | None = None, size: int | None = None, *, hash: bool = True) -> "BlobWriter":
        """A new BlobWriter (see there); ``expected``/``size`` are verified on commit when given."""
        return BlobWriter(self, Digest(expected) if expected is not None else None, size, hash=hash)

    def put_bytes(self, data: bytes, expected: str | None = None) -> Digest:
        """Store ``data`` (idempotent) and return its digest."""
        with self.writer(expected, len(data)) as w:
            w.write(data)
        return w.digest

    def ingest(self, stream: BinaryIO, expected: str, size: int | None = None) -> Digest:
        """Copy ``stream`` into the store, verifying it against ``expected`` (and ``size``).

        Returns at once, without reading ``stream``, when the blob is already present.
        The caller keeps ownership of ``stream`` (it is not closed).
        """
        expected = Digest(expected)
        if self.has(expected):
            return expected
        with self.writer(expected, size) as w:
            try:
                while chunk := stream.read(CHUNK):
                    w.write(chunk)
            except OSError as e:
                raise store_error(f"ingest blob {expected}: read source", e) from None
        return expected

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading; the content is verified as it is read (see VerifyingReader)."""
        digest = Digest(digest)
        try:
            f = open(self.path(digest), "rb", buffering=0)
        except OSError as e:
            raise store_error(f"open blob {digest} in {self.root}", e) from None
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError as e:
            f.close()
            raise store_error(f"open blob {digest}", e) from None
        return VerifyingReader(f, digest, size)

    def read_bytes(self, digest: str, limit: int | None = None) -> bytes:
        """The whole blob, verified; refuses blobs larger than ``limit`` before reading them."""
        digest = Digest(digest)
        if limit is not None and (size := self.size(digest)) > limit:
            raise InvalidDocument(f"read blob {digest}: {size} bytes exceeds the {limit}-byte limit")
        try:
            data = self.path(digest).read_bytes()
        except OSError as e:
            raise store_error(f"read blob {digest} in {self.root}", e) from None
        verify(data, digest, what="read blob")
        return data

    def delete(self, digest: str) -> bool:
        """Remove a blob; returns False when it was not there (idempotent)."""
        path = self.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise store_error(f"delete blob {digest}", e) from None
        fsync_dir(path.parent)
        return True

    def digests(self) -> Iterator[Digest]:
        """Every stored blob (temp files and foreign names are skipped), in no particular order."""
        if not self.dir.is_dir():
            return
        for alg_dir in self.dir.iterdir():
            if not alg_dir.is_dir():
                continue
            for entry in alg_dir.iterdir():
                if entry.name.startswith("."):
                    continue
                try:
                    yield Digest(f"{alg_dir.name}:{entry.name}")
                except ValueError:
                    continue

    def link(self, digest: str, source: Path, size: int | None = None) -> bool:
        """Hardlink ``source`` (a committed blob of another store) in as ``digest``.

        Blobs are immutable and read-only, so sharing the inode is safe. The content is not
        rehashed: it was verified when the other store committed it, and every read verifies
        again. Returns False (and changes nothing) when a link is impossible (another
        filesystem, protected_hardlinks, ...) so the caller falls back to a copy.
        """
        target = self.path(digest)
        try:
            if size is not None and source.stat().st_size != size:
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
        except FileExistsError:
            return True
        except OSError:
            return False
        fsync_dir(target.parent)
        return True

    def _place(self, temp: Path, digest: Digest, size: int) -> None:
        """Rename a finished temp file into place; keep an existing complete copy instead."""
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if target.stat().st_size == size:
                temp.unlink()
                return
        except FileNotFoundError:
            pass
        os.replace(temp, target)
        fsync_dir(target.parent)


class BlobWriter(io.RawIOBase):
    """A writable binary file that becomes a blob on commit.

    Use it as a context manager: a normal exit commits (fsync, verify against ``expected`` and
    ``size`` when given, make read-only, rename into place), an exception discards the temp
    file. After the commit ``.digest``, ``.size`` and ``.descriptor_fields`` are set.
    ``close()`` without a commit discards too, so an abandoned writer leaves nothing.

    With ``hash=False`` nothing is hashed: for callers that already hash what they write
    (the layer compressor computes the compressed digest itself). They must call
    ``commit(digest, size)`` before leaving the ``with`` block; **the caller vouches for the
    digest** (only the size is checked) and a wrong one stores content under a false name,
    which verified reads will later refuse.
    """

    def __init__(self, store: BlobStore, expected: Digest | None, size: int | None, *, hash: bool = True):
        super().__init__()
        self._store, self._expected, self._expected_size = store, expected, size
        self._hasher = (expected.hasher() if expected else hashlib.sha256()) if hash else None
        self._fd, self._temp = -1, None
        self._buf = bytearray()
        self._written = 0
        self._on_disk = 0  # bytes handed to the kernel (_written counts the buffer too)
        self._synced = 0  # bytes handed to the kernel when the syncer was last asked to sync
        self._syncer: Syncer | None = None
        self.digest: Digest | None = None
        self.size: int | None = None
        alg_dir = store.dir / (expected.algorithm if expected else "sha256")
        try:
            alg_dir.mkdir(parents=True, exist_ok=True)
            self._fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=alg_dir)
        except OSError as e:
            raise store_error(f"store blob {self._name()}: create temp file in {alg_dir}", e) from None
        self._temp = Path(name)

    def _name(self) -> str:
        return str(self._expected) if self._expected else "(digest not yet known)"

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        if self._temp is None:
            raise ValueError("write to a committed or discarded blob writer")
        view = memoryview(data).cast("B")
        n = len(view)
        if self._expected_size is not None and self._written + n > self._expected_size:
            raise DigestMismatch(f"store blob {self._name()}: more than the expected {self._expected_size} bytes")
        if self._hasher is not None:
            self._hasher.update(view)
        if n >= DIRECT_WRITE:
            self._flush_buffer()
            self._write_all(view)  # large writes go straight through, without a copy
        else:
            self._buf += view
            if len(self._buf) >= CHUNK:
                self._flush_buffer()
        self._written += n
        return n

    def tell(self) -> int:
        return self._written

    @property
    def descriptor_fields(self) -> dict:
        """``{"digest": ..., "size": ...}``, ready for ``Descriptor(media_type, **fields)``."""
        if self.digest is None:
            raise StoreError("blob writer: not committed yet")
        return {"digest": self.digest, "size": self.size}

    def descriptor(self, media_type: str, **kw) -> Descriptor:
        return Descriptor(str(media_type), **self.descriptor_fields, **kw)

    def commit(self, digest: str | None = None, size: int | None = None) -> Digest:
        """Finish the blob and rename it into place; idempotent when already committed.

        ``digest``/``size`` are required with ``hash=False`` and otherwise checked like ``expected``.
        """
        if self.digest is not None:
            return self.digest
        if self._temp is None:
            raise StoreError("blob writer: already discarded")
        try:
            final = self._finish(Digest(digest) if digest is not None else None, size)
        except BaseException:
            self._discard()
            raise
        self.digest, self.size = final, self._written
        return final

    def _finish(self, claimed: Digest | None, size: int | None) -> Digest:
        what = f"store blob {claimed or self._name()}"
        try:
            self._flush_buffer()
            self._stop_syncer()
            os.fsync(self._fd)
            os.fchmod(self._fd, BLOB_MODE)
            fd, self._fd = self._fd, -1
            os.close(fd)
        except OSError as e:
            raise store_error(what, e) from None
        for want in (size, self._expected_size):
            if want is not None and want != self._written:
                raise DigestMismatch(f"{what}: expected {want} bytes, got {self._written}")
        if self._hasher is None:
            claimed = claimed or self._expected
            if claimed is None:
                raise StoreError("store blob: commit(digest, size) is required for a writer made with hash=False")
            actual = claimed
        else:
            actual = Digest.from_hasher(self._hasher)
        for want in (claimed, self._expected):
            if want is not None and want != actual:
                raise DigestMismatch(f"store blob {want}: content hashes to {actual}")
        try:
            self._store._place(self._temp, actual, self._written)
        except OSError as e:
            raise store_error(f"store blob {actual}", e) from None
        self._temp = None
        return actual

    def _flush_buffer(self) -> None:
        if self._buf:
            self._write_all(self._buf)
            self._buf.clear()

    def _write_all(self, data) -> None:
        offset = 0
        try:
            while offset < len(data):
                offset += _write(self._fd, data[offset:] if offset else data)
            end = self._on_disk = self._on_disk + len(data)
            if end - self._synced >= SYNC_CHUNK:
                self._syncer = self._syncer or Syncer(self._fd)
                self._syncer.request()
                self._synced = end
        except OSError as e:
            self._discard()
            raise store_error(f"store blob {self._name()}: write after {self._written} bytes", e) from None

    def _stop_syncer(self) -> None:
        """Wait for the syncer; raise what it met (the final fsync would not report it again)."""
        syncer, self._syncer = self._syncer, None
        if syncer is not None and (error := syncer.stop()) is not None:
            raise error

    def _discard(self) -> None:
        try:
            self._stop_syncer()
        except OSError:
            pass  # discarded anyway
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._temp is not None:
            try:
                self._temp.unlink()
            except FileNotFoundError:
                pass
            self._temp = None

    def close(self) -> None:
        """Discard the blob unless committed (an abandoned writer leaves nothing behind)."""
        if self.digest is None:
            self._discard()
        super().close()

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._hasher is None and self.digest is None:
                    raise StoreError("store blob: commit(digest, size) was not called on a writer made "
                                     "with hash=False; the blob was discarded")
                self.commit()
        finally:
            self.close()


class VerifyingReader(io.RawIOBase):
    """Reads a blob and checks it against its digest while doing so.

    The check runs when ``size`` bytes have been read and again at end of file, so a reader
    that stops after exactly ``size`` bytes (tarfile does) is verified too. A reader closed
    before that has read unverified bytes; callers that act on content read it to the end.
    Closing this closes the wrapped file.
    """

    def __init__(self, f: BinaryIO, digest: Digest, size: int | None, *, what: str = "read blob"):
        super().__init__()
        self._f, self.digest, self.expected_size, self._what = f, digest, size, what
        self._hasher = digest.hasher()
        self._count = 0
        self.verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        try:
            n = self._f.readinto(view) if hasattr(self._f, "readinto") else _read_into(self._f, view)
        except OSError as e:
            raise store_error(f"{self._what} {self.digest}", e) from None
        if n is None:
            return None  # type: ignore[return-value]
        self._hasher.update(view[:n])
        self._count += n
        if self.expected_size is not None and self._count > self.expected_size:
            raise DigestMismatch(f"{self._what} {self.digest}: more than the expected {self.expected_size} bytes")
        if n == 0 or self._count == self.expected_size:
            self._check()
        return n

    def _check(self) -> None:
        if self.verified:
            return
        actual = Digest.from_hasher(self._hasher)
        if actual != self.digest:
            raise DigestMismatch(f"{self._what} {self.digest}: content hashes to {actual}")
        self.verified = True

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def _read_into(f: BinaryIO, view: memoryview) -> int:
    data = f.read(len(view))
    view[: len(data)] = data
    return len(data)
