"""BlobStore: atomic writes, verified reads, a full disk."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import subprocess
import threading

import pytest

import ocibuild.store.blobs as blobs_mod
from ocibuild.errors import DigestMismatch, InvalidDocument, NotFound, StoreError
from ocibuild.oci import Digest
from ocibuild.store import BlobStore


def sha(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def leftovers(store: BlobStore) -> list[str]:
    return [p.name for p in store.dir.rglob(".partial-*")]


def test_writer_commits_hashes_and_makes_read_only(tmp_path):
    store = BlobStore(tmp_path)
    with store.writer() as w:
        w.write(b"hello ")
        w.write(memoryview(b"world"))
    assert w.digest == sha(b"hello world") and w.size == 11
    assert w.descriptor_fields == {"digest": sha(b"hello world"), "size": 11}
    assert w.descriptor("application/octet-stream").size == 11
    path = store.path(w.digest)
    assert path == tmp_path / "blobs" / "sha256" / w.digest.encoded
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.read_bytes(w.digest) == b"hello world"
    assert store.size(w.digest) == 11 and store.has(w.digest)
    assert leftovers(store) == []


def test_put_bytes_is_idempotent_and_large_writes_are_buffered(tmp_path):
    store = BlobStore(tmp_path)
    data = os.urandom(3 * blobs_mod.CHUNK + 17)
    assert store.put_bytes(data) == store.put_bytes(data) == sha(data)
    assert store.read_bytes(sha(data)) == data
    assert list(store.digests()) == [sha(data)]


def test_exception_mid_write_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.write(b"x" * (blobs_mod.CHUNK + 1))  # some of it already on disk
            raise RuntimeError("compressor died")
    assert leftovers(store) == [] and list(store.digests()) == []


def test_expected_digest_and_size_are_verified(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(DigestMismatch, match=str(sha(b"good"))):
        with store.writer(expected=sha(b"good")) as w:
            w.write(b"evil")
    with pytest.raises(DigestMismatch, match="expected 10 bytes, got 4"):
        with store.writer(size=10) as w:
            w.write(b"good")
    with pytest.raises(DigestMismatch, match="more than the expected 2 bytes"):
        with store.writer(size=2) as w:
            w.write(b"good")
    assert leftovers(store) == [] and list(store.digests()) == []


def test_abandoned_writer_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    w = store.writer()
    w.write(b"half")
    w.close()
    assert leftovers(store) == []


def test_unhashed_writer_trusts_the_callers_digest(tmp_path):
    store = BlobStore(tmp_path)
    with store.writer(hash=False) as w:
        w.write(b"compressed")
        w.commit(sha(b"compressed"), 10)
    assert store.read_bytes(sha(b"compressed")) == b"compressed"
    with pytest.raises(DigestMismatch, match="expected 3 bytes"):
        with store.writer(hash=False) as w:
            w.write(b"abcd")
            w.commit(sha(b"abcd"), 3)
    with pytest.raises(StoreError, match="commit"):
        with store.writer(hash=False) as w:
            w.write(b"forgot")
    assert leftovers(store) == []


def test_tampered_blob_fails_verified_reads(tmp_path):
    store = BlobStore(tmp_path)
    d = store.put_bytes(b"original content")
    path = store.path(d)
    path.chmod(0o644)
    path.write_bytes(b"tampered content")
    with pytest.raises(DigestMismatch, match="content hashes to"):
        store.read_bytes(d)
    with store.open(d) as f, pytest.raises(DigestMismatch):
        f.read()
    with store.open(d) as f, pytest.raises(DigestMismatch):  # also when stopping at the size
        f.read(len(b"tampered content"))
    path.write_bytes(b"original")  # truncated
    with store.open(d) as f, pytest.raises(DigestMismatch):
        f.read()


def test_open_verifies_in_chunks(tmp_path):
    store = BlobStore(tmp_path)
    data = os.urandom(100_000)
    d = store.put_bytes(data)
    out = io.BytesIO()
    with store.open(d) as f:
        while chunk := f.read(4096):
            out.write(chunk)
        assert f.verified
    assert out.getvalue() == data


def test_read_limit_and_missing_blobs(tmp_path):
    store = BlobStore(tmp_path)
    d = store.put_bytes(b"0123456789")
    with pytest.raises(InvalidDocument, match="limit"):
        store.read_bytes(d, limit=5)
    missing = sha(b"missing")
    with pytest.raises(NotFound):
        store.open(missing)
    with pytest.raises(NotFound):
        store.read_bytes(missing)
    assert store.delete(d) is True and store.delete(d) is False and not store.has(d)


def test_ingest_verifies_and_skips_present_blobs(tmp_path):
    store = BlobStore(tmp_path)
    data = b"layer" * 1000
    assert store.ingest(io.BytesIO(data), sha(data), len(data)) == sha(data)
    with pytest.raises(DigestMismatch):
        store.ingest(io.BytesIO(b"wrong"), sha(b"right"), 5)

    class Unreadable(io.RawIOBase):
        def read(self, n=-1):
            raise AssertionError("a present blob is not read again")

    assert store.ingest(Unreadable(), sha(data), len(data)) == sha(data)
    assert leftovers(store) == []


def test_enospc_while_writing_is_a_store_error_and_leaves_nothing(tmp_path, monkeypatch):
    store = BlobStore(tmp_path)
    kept = store.put_bytes(b"already stored")
    calls = []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    monkeypatch.setattr(blobs_mod, "_write", full)
    expected = sha(b"y" * (3 * blobs_mod.CHUNK))
    with pytest.raises(StoreError, match=f"store blob {expected}.*No space left on device"):
        with store.writer(expected) as w:
            for _ in range(3):
                w.write(b"y" * blobs_mod.CHUNK)
    assert leftovers(store) == []
    assert list(store.digests()) == [kept] and store.read_bytes(kept) == b"already stored"


@pytest.mark.needs_root
@pytest.mark.ci_skip_ok("mounting a tmpfs needs root with CAP_SYS_ADMIN; the monkeypatched ENOSPC test covers the logic")
def test_enospc_on_a_real_full_filesystem(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = BlobStore(mnt)
        kept = store.put_bytes(b"small blob")
        big = os.urandom(2 * 1024 * 1024)
        with pytest.raises(StoreError, match="No space left on device"):
            store.put_bytes(big)
        with pytest.raises(StoreError, match="No space left on device"):
            store.ingest(io.BytesIO(big), sha(big), len(big))
        assert leftovers(store) == []
        assert list(store.digests()) == [kept] and store.read_bytes(kept) == b"small blob"
        assert store.put_bytes(b"fits again") == sha(b"fits again")  # space was given back
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_concurrent_writers_of_the_same_blob(tmp_path):
    store = BlobStore(tmp_path)
    a, b = store.writer(), store.writer()
    a.write(b"same")
    b.write(b"same")
    assert a.commit() == b.commit() == sha(b"same")
    a.close()
    b.close()
    assert store.read_bytes(sha(b"same")) == b"same" and leftovers(store) == []


def test_link_shares_the_inode(tmp_path):
    one, two = BlobStore(tmp_path / "one"), BlobStore(tmp_path / "two")
    d = one.put_bytes(b"shared")
    assert two.link(d, one.path(d), 6)
    assert two.path(d).stat().st_ino == one.path(d).stat().st_ino
    assert not two.link(sha(b"x"), tmp_path / "nonexistent")
    assert two.read_bytes(d) == b"shared"


def test_mixed_small_and_large_writes(tmp_path):
    store = BlobStore(tmp_path)
    parts = [b"a" * 512, os.urandom(2 * blobs_mod.CHUNK), b"b" * 7, os.urandom(blobs_mod.CHUNK - 3), b"c"]
    with store.writer() as w:
        for p in parts:
            assert w.write(p) == len(p)
        assert w.tell() == sum(map(len, parts))
    assert store.read_bytes(w.digest) == b"".join(parts)


def test_unhashed_writer_may_rely_on_expected(tmp_path):
    store = BlobStore(tmp_path)
    with store.writer(sha(b"known"), 5, hash=False) as w:
        w.write(b"known")
        w.commit()
    assert w.digest == sha(b"known")
    with pytest.raises(DigestMismatch):
        with store.writer(sha(b"known"), hash=False) as w:
            w.write(b"other")
            w.commit(sha(b"other"), 5)


def test_a_large_blob_is_synced_as_it_is_written(tmp_path, monkeypatch):
    # Every SYNC_CHUNK handed to the kernel asks the syncer thread for an fdatasync; a failed
    # one fails the commit (the final fsync would not report the same error again).
    from ocibuild.store import blobs as blobs_mod
    synced = []
    monkeypatch.setattr(blobs_mod, "SYNC_CHUNK", 1 << 20)
    monkeypatch.setattr(blobs_mod.os, "fdatasync", lambda fd: synced.append(os.fstat(fd).st_size))
    store = blobs_mod.BlobStore(tmp_path)
    with store.writer() as w:
        for size in (100, 300 << 10, 5, 2 << 20, 70 << 10, 1 << 20, 9) * 3:
            w.write(b"x" * size)
    assert synced and synced == sorted(synced) and synced[-1] <= w.size
    assert store.has(w.digest)

    failed = threading.Event()

    def fail(fd):
        failed.set()
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(blobs_mod.os, "fdatasync", fail)
    with pytest.raises(StoreError, match="Input/output error"), store.writer() as w:
        w.write(b"y" * (3 << 20))
        assert failed.wait(10)
    assert not any(p.name.startswith(".partial-") for p in (tmp_path / "blobs" / "sha256").iterdir())
