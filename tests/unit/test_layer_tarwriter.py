"""ocibuild.layer.tarwriter: deterministic PAX tars that tarfile and GNU tar read back."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from blake3 import blake3

from ocibuild.errors import ContextError
from ocibuild.layer.entry import Kind, TarEntry, check_path, sort_entries
from ocibuild.layer.tarwriter import file_digest, write_tar

LONG = "deep/" + "d" * 120 + "/" + "f" * 140
UNICODE = "données/naïve-ファイル.txt"


def tar_bytes(entries) -> bytes:
    out = io.BytesIO()
    write_tar(entries, out)
    return out.getvalue()


def sample(tmp_path) -> list[TarEntry]:
    src = tmp_path / "big.bin"
    src.write_bytes(hashlib.shake_128(b"seed").digest(3 << 20) + b"tail")
    return [
        TarEntry("deep", Kind.DIR, 0o755, mtime=1_700_000_000),
        TarEntry(LONG, Kind.FILE, 0o644, data=b"long name\n"),
        TarEntry("données", Kind.DIR, 0o700),
        TarEntry(UNICODE, Kind.FILE, 0o4755, uid=1000, gid=1000, data=b"x" * 513),
        TarEntry("link", Kind.SYMLINK, 0o777, linkname="/" + "t" * 150),
        TarEntry("ulink", Kind.SYMLINK, 0o777, linkname="données/naïve"),
        TarEntry("hard", Kind.HARDLINK, 0o644, linkname=UNICODE),
        TarEntry("null", Kind.CHAR, 0o666, devmajor=1, devminor=3),
        TarEntry("loop0", Kind.BLOCK, 0o660, devmajor=7, devminor=0),
        TarEntry("pipe", Kind.FIFO, 0o600),
        TarEntry("bigid", Kind.FILE, 0o600, uid=3_000_000, gid=4_000_000, mtime=-1),
        TarEntry("caps", Kind.FILE, 0o755, xattrs={"security.capability": b"\x01\x00\x00\x02\xff",
                                                    "user.note": "é".encode()}),
        TarEntry("big.bin", Kind.FILE, 0o644, size=(3 << 20) + 4, source=str(src)),
        TarEntry("empty", Kind.FILE, 0o644),
    ]


def test_same_entries_give_the_same_bytes(tmp_path):
    entries = sample(tmp_path)
    assert tar_bytes(entries) == tar_bytes(sample(tmp_path))


def test_round_trip_through_tarfile(tmp_path):
    entries = sample(tmp_path)
    data = tar_bytes(entries)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
        assert list(members) == [e.path for e in entries]
        long = members[LONG]
        assert long.isfile() and tar.extractfile(long).read() == b"long name\n"
        uni = members[UNICODE]
        assert uni.mode == 0o4755 and (uni.uid, uni.gid) == (1000, 1000) and uni.size == 513
        assert uni.uname == "" and uni.gname == ""
        assert members["deep"].isdir() and members["deep"].mtime == 1_700_000_000
        assert members["link"].linkname == "/" + "t" * 150
        assert members["ulink"].linkname == "données/naïve"
        assert members["hard"].islnk() and members["hard"].linkname == UNICODE
        assert (members["null"].devmajor, members["null"].devminor) == (1, 3) and members["null"].ischr()
        assert members["loop0"].isblk() and members["pipe"].isfifo()
        assert (members["bigid"].uid, members["bigid"].gid, members["bigid"].mtime) == (3_000_000, 4_000_000, -1)
        caps = members["caps"].pax_headers
        assert caps["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == b"\x01\x00\x00\x02\xff"
        assert caps["SCHILY.xattr.user.note"] == "é"
        assert hashlib.sha256(tar.extractfile(members["big.bin"]).read()).digest() == \
            hashlib.sha256((tmp_path / "big.bin").read_bytes()).digest()
        for m in members.values():
            assert not {"atime", "ctime"} & set(m.pax_headers)


def test_format_details(tmp_path):
    data = tar_bytes([TarEntry("d", Kind.DIR, 0o755), TarEntry("d/f", Kind.FILE, 0o644, data=b"a")])
    assert data[:2] == b"d/"            # directories end in "/" as Docker writes them
    assert data[257:265] == b"ustar\x0000"
    assert data[265:329] == bytes(64)   # empty uname and gname
    assert len(data) == 3 * 512 + 1024  # two headers, one data block, two end blocks
    assert data[-1024:] == bytes(1024)


@pytest.mark.needs_tool("tar")
def test_gnu_tar_lists_long_and_unicode_names(tmp_path):
    path = tmp_path / "layer.tar"
    path.write_bytes(tar_bytes(sample(tmp_path)))
    env = dict(os.environ, LC_ALL="C.UTF-8")
    listing = subprocess.run(["tar", "-tvf", str(path)], capture_output=True, check=True, env=env).stdout
    text = listing.decode()
    assert LONG in text and UNICODE in text and "t" * 150 in text and "link to " + UNICODE in text
    names = subprocess.run(["tar", "-tf", str(path)], capture_output=True, check=True, env=env).stdout.decode()
    assert names.splitlines()[:2] == ["deep/", LONG]


def test_sort_entries_walks_like_docker():
    paths = ["b", "a.txt", "a/z", "a", "a/b/c", "a-b", "A", "é", "z"]
    ordered = [e.path for e in sort_entries(TarEntry(p, Kind.FILE, 0o644) for p in paths)]
    assert ordered == ["A", "a", "a/b/c", "a/z", "a-b", "a.txt", "b", "z", "é"]


def test_a_file_that_grew_is_refused(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"12345")
    with pytest.raises(ContextError, match="'f' changed"):
        tar_bytes([TarEntry("f", Kind.FILE, 0o644, size=4, source=str(src))])


def test_a_file_that_shrank_is_refused(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"x" * (200 << 10))
    with pytest.raises(ContextError, match="expected 307200 bytes, found 204800"):
        tar_bytes([TarEntry("f", Kind.FILE, 0o644, size=300 << 10, source=str(src))])


def test_a_big_file_that_grew_is_refused(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"x" * (3 << 20))
    with pytest.raises(ContextError, match="found more"):
        tar_bytes([TarEntry("f", Kind.FILE, 0o644, size=2 << 20, source=str(src))])


@pytest.mark.parametrize("size", [1, 511, 512, (1 << 20) - 1024, (1 << 20) - 512, 1 << 20, (1 << 20) + 1, 3 << 20])
def test_contents_across_buffer_edges_match_tarfile(tmp_path, size):
    # The reused 1 MiB buffer fills up at every possible place relative to headers and contents.
    entries = []
    for i, n in enumerate((size, 700, size)):
        src = tmp_path / f"f{i}"
        src.write_bytes(bytes([i + 1]) * n)
        entries.append(TarEntry(f"f{i}", Kind.FILE, 0o644, size=n, source=str(src)))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(entries))) as tar:
        assert [tar.extractfile(m).read() for m in tar] == [(tmp_path / f"f{i}").read_bytes() for i in range(3)]


@pytest.mark.parametrize("size", [1, (1 << 20) - 512, 1 << 20, 3 << 20])
def test_file_digests_are_the_blake3_of_what_was_read(tmp_path, size):
    """The cache keys COPY by these (builder/cachekeys.py): they must equal a plain read's."""
    entries = []
    for i, n in enumerate((size, 700, size)):
        src = tmp_path / f"f{i}"
        src.write_bytes(os.urandom(n))
        entries.append(TarEntry(f"f{i}", Kind.FILE, 0o644, size=n, source=str(src)))
    entries.append(TarEntry("inline", Kind.FILE, 0o644, data=b"not a file"))
    digests: dict[str, str] = {}
    write_tar(entries, io.BytesIO(), digests)
    assert digests == {e.source: blake3(Path(e.source).read_bytes()).hexdigest() for e in entries[:3]}
    assert digests == {e.source: file_digest(e.source) for e in entries[:3]}


@pytest.mark.parametrize("size", [(1 << 20) - 1024, (1 << 20) - 512, 1 << 20, 2 << 20])
def test_growth_by_one_byte_at_buffer_edges_is_refused(tmp_path, size):
    src = tmp_path / "f"
    src.write_bytes(b"x" * (size + 1))
    with pytest.raises(ContextError, match="found more"):
        tar_bytes([TarEntry("f", Kind.FILE, 0o644, size=size, source=str(src))])


def test_a_missing_source_is_a_context_error(tmp_path):
    with pytest.raises(ContextError, match="cannot read 'f'"):
        tar_bytes([TarEntry("f", Kind.FILE, 0o644, size=1, source=str(tmp_path / "gone"))])


def test_a_source_replaced_by_a_symlink_is_not_followed(tmp_path):
    (tmp_path / "secret").write_bytes(b"s")
    os.symlink(tmp_path / "secret", tmp_path / "f")
    with pytest.raises(ContextError):
        tar_bytes([TarEntry("f", Kind.FILE, 0o644, size=1, source=str(tmp_path / "f"))])


@pytest.mark.parametrize("bad", ["", "/abs", "a/", "./a", "a/../b", "a//b", "..", "a/."])
def test_unnormalised_paths_are_refused(bad):
    with pytest.raises(ValueError):
        check_path(bad)
    with pytest.raises(ValueError):
        tar_bytes([TarEntry(bad, Kind.FILE, 0o644)])


@pytest.mark.parametrize("good", ["a", "a/b", ".hidden", "a/.b", "a..b", "...", "a/..b"])
def test_normalised_paths_pass(good):
    assert check_path(good) == good


def test_names_of_exactly_100_bytes_need_no_pax_header():
    name = "n" * 100
    data = tar_bytes([TarEntry(name, Kind.FILE, 0o644)])
    assert data[:100] == name.encode() and len(data) == 512 + 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == [name]


def test_many_entries_are_fast_enough():
    import time
    entries = [TarEntry(f"pkg{i // 1000:02d}/mod/file{i:05d}.txt", Kind.FILE, 0o644, data=b"x" * 100)
               for i in range(50_000)]
    start = time.perf_counter()
    write_tar(entries, io.BytesIO())
    assert time.perf_counter() - start < 5  # ~0.2 s on the reference machine; generous for CI noise


def test_pax_record_lengths_are_self_consistent():
    # lengths near a power of ten are where a naive length computation goes wrong
    for n in range(85, 105):
        entry = TarEntry("f", Kind.FILE, 0o644, xattrs={"user.x": b"v" * n})
        with tarfile.open(fileobj=io.BytesIO(tar_bytes([entry]))) as tar:
            assert tar.getmembers()[0].pax_headers["SCHILY.xattr.user.x"] == "v" * n


def test_gnu_tar_extracts_what_we_wrote(tmp_path, require):
    require("tar")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "layer.tar").write_bytes(tar_bytes([TarEntry("d", Kind.DIR, 0o755),
                                                   TarEntry("d/" + "x" * 130, Kind.FILE, 0o640, data=b"hi")]))
    subprocess.run(["tar", "-xf", str(tmp_path / "layer.tar"), "-C", str(out)], check=True)
    assert (out / "d" / ("x" * 130)).read_bytes() == b"hi"
    shutil.rmtree(out)
