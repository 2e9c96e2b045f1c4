"""ocibuild.layer.extract: OCI layer semantics (whiteouts, replacement, metadata, rootless)."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile

import pytest

from ocibuild.errors import ContentError
from ocibuild.layer.compress import Compression, build_layer
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.extract import Owner, apply_layer, extract_layers
from ocibuild.layer.tree import entry_from_stat, scan

LAYER = "sha256:" + "cd" * 32
T0 = 1_500_000_000


def member(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, linkname="", uid=0, gid=0, mtime=T0, **extra):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, linkname, len(data)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    for key, value in extra.items():
        setattr(info, key, value)
    return info, data


def F(name, data=b"data", **kw):
    return member(name, data=data, **kw)


def D(name, mode=0o755, **kw):
    return member(name, tarfile.DIRTYPE, mode=mode, **kw)


def L(name, target):
    return member(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def H(name, target):
    return member(name, tarfile.LNKTYPE, linkname=target)


def WH(name):
    return member(name)


def tar(*members) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data else None)
    out.seek(0)
    return out


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    return root


def apply(root, *members, **kw):
    apply_layer(str(root), tar(*members), layer=LAYER, **kw)


def listing(root):
    return sorted(rel for rel, _ in scan(str(root)))


def test_basic_tree(rootfs):
    apply(rootfs, D("etc", mode=0o750, mtime=T0 + 1), F("etc/passwd", b"root:x:0:0\n", mode=0o4755, mtime=T0 + 2),
          L("etc/link", "passwd"), H("etc/hard", "etc/passwd"), member("run", tarfile.FIFOTYPE, mode=0o640),
          F("usr/bin/tool", b"#!", mode=0o755))
    assert (rootfs / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE((rootfs / "etc/passwd").stat().st_mode) == 0o4755
    assert (rootfs / "etc/passwd").stat().st_mtime == T0 + 2
    assert (rootfs / "etc").stat().st_mtime == T0 + 1       # set after its content was added
    assert stat.S_IMODE((rootfs / "etc").stat().st_mode) == 0o750
    assert os.readlink(rootfs / "etc/link") == "passwd"
    assert (rootfs / "etc/hard").stat().st_ino == (rootfs / "etc/passwd").stat().st_ino
    assert stat.S_ISFIFO((rootfs / "run").lstat().st_mode) and stat.S_IMODE((rootfs / "run").lstat().st_mode) == 0o640
    assert stat.S_IMODE((rootfs / "usr").stat().st_mode) == 0o755   # a missing parent: 0755


@pytest.mark.needs_root
def test_owners_and_devices_as_root(rootfs):
    apply(rootfs, F("f", uid=1234, gid=5678, mode=0o2755), L("l", "f"),
          member("null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3))
    st = (rootfs / "f").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o2755)  # setgid survives chown
    null = (rootfs / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3


def test_whiteouts_remove_lower_entries(rootfs):
    apply(rootfs, D("a"), F("a/f"), D("a/d"), F("a/d/x"), F("keep"))
    apply(rootfs, WH("a/.wh.f"), WH("a/.wh.d"), WH(".wh.missing"), WH("nodir/.wh.x"))
    assert listing(rootfs) == ["a", "keep"]


def test_whiteout_does_not_hide_entries_of_its_own_layer(rootfs):
    apply(rootfs, F("a", b"lower"), F("b", b"lower"))
    apply(rootfs, F("a", b"upper"), WH(".wh.a"), WH(".wh.b"), F("b", b"upper"))
    assert (rootfs / "a").read_bytes() == b"upper" and (rootfs / "b").read_bytes() == b"upper"


def test_whiteout_of_a_directory_keeps_what_this_layer_put_in_it(rootfs):
    apply(rootfs, D("d"), F("d/old"))
    apply(rootfs, F("d/new"), WH(".wh.d"))
    assert listing(rootfs) == ["d", "d/new"]


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_directory_wherever_the_marker_is(rootfs, marker_first):
    apply(rootfs, D("d"), F("d/old"), D("d/sub"), F("d/sub/old"), F("other"))
    marker = WH("d/.wh..wh..opq")
    new = [D("d"), F("d/new"), D("d/sub"), F("d/sub/new")]
    apply(rootfs, *([marker] + new if marker_first else new + [marker]))
    assert listing(rootfs) == ["d", "d/new", "d/sub", "d/sub/new", "other"]


def test_opaque_marker_at_the_root(rootfs):
    apply(rootfs, F("old"), D("dir"))
    apply(rootfs, F("new"), WH(".wh..wh..opq"))
    assert listing(rootfs) == ["new"]


def test_aufs_metadata_is_skipped(rootfs):
    apply(rootfs, D(".wh..wh.plnk"), F("f"))
    apply(rootfs, WH(".wh..wh.aufs"))
    assert listing(rootfs) == ["f"]


def test_replacements(rootfs):
    apply(rootfs, D("dir2file"), F("dir2file/x"), F("file2dir"), D("keep", mode=0o700), F("keep/x"))
    apply(rootfs, F("dir2file", b"f"), D("file2dir"), D("keep", mode=0o755, mtime=T0 + 5))
    assert (rootfs / "dir2file").read_bytes() == b"f"
    assert (rootfs / "file2dir").is_dir()
    assert (rootfs / "keep/x").exists()                     # a directory over a directory merges
    assert stat.S_IMODE((rootfs / "keep").stat().st_mode) == 0o755 and (rootfs / "keep").stat().st_mtime == T0 + 5


def test_hardlink_to_a_lower_layer_file(rootfs):
    apply(rootfs, F("bin/busybox", b"bb"))
    apply(rootfs, H("bin/sh", "/bin/busybox"))
    assert (rootfs / "bin/sh").read_bytes() == b"bb" and (rootfs / "bin/busybox").stat().st_nlink == 2


def test_hardlink_to_itself_is_refused(rootfs):
    apply(rootfs, F("f"))
    with pytest.raises(ContentError, match="hardlink to itself"):
        apply(rootfs, H("f", "f"))
    assert (rootfs / "f").exists()


def test_xattrs_are_applied(rootfs, tmp_path):
    probe = tmp_path / "probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.x", b"1")
    except OSError:
        pytest.skip("no user xattrs on this filesystem")
    apply(rootfs, F("f", pax_headers={"SCHILY.xattr.user.origin": "ctx"}))
    assert os.getxattr(rootfs / "f", "user.origin") == b"ctx"


def test_rootless_records_owners_and_keeps_the_tree_writable(rootfs):
    owners: dict[str, Owner] = {}
    apply(rootfs, D("d", mode=0o500, uid=10, gid=20), F("d/f", mode=0o400, uid=10), L("d/l", "f"),
          H("d/h", "d/f"), F("implicit/x", mode=0o4700), member("dev/null", tarfile.CHRTYPE, mode=0o666,
                                                                devmajor=1, devminor=3),
          rootless=True, owners=owners)
    assert owners["d"] == Owner(10, 20, 0o500)
    assert owners["d/f"] == Owner(10, 0, 0o400) and owners["d/h"] == owners["d/f"]
    assert owners["d/l"] == Owner(0, 0, 0o777)
    assert owners["implicit"] == Owner(0, 0, 0o755) and owners["implicit/x"].mode == 0o4700
    assert owners["dev/null"] == Owner(0, 0, 0o666, Kind.CHAR, 1, 3)
    assert not os.path.lexists(rootfs / "dev/null")           # device nodes are not made
    assert stat.S_IMODE((rootfs / "d").stat().st_mode) == 0o700      # u+rwx added
    assert stat.S_IMODE((rootfs / "d/f").stat().st_mode) == 0o600    # u+rw added
    assert (rootfs / "d").stat().st_uid == os.geteuid()             # no chown
    apply(rootfs, WH(".wh.d"), F("implicit/x", mode=0o644), rootless=True, owners=owners)
    assert not any(p == "d" or p.startswith("d/") for p in owners)
    assert owners["implicit/x"] == Owner(0, 0, 0o644)


def test_not_a_tar_is_a_content_error(rootfs):
    with pytest.raises(ContentError, match=f"layer {LAYER}"):
        apply_layer(str(rootfs), io.BytesIO(b"\x01" * 2048), layer=LAYER)


def test_unsupported_member_type_is_a_content_error(rootfs):
    with pytest.raises(ContentError, match="unsupported tar member type"):
        apply(rootfs, member("x", b"V"))


def test_missing_rootfs_is_a_build_error(tmp_path):
    from ocibuild.errors import BuildError
    with pytest.raises(BuildError, match=LAYER):
        apply_layer(str(tmp_path / "nope"), tar(F("a")), layer=LAYER)


@pytest.mark.parametrize("compression", list(Compression))
def test_extract_layers_reads_every_compression(tmp_path, rootfs, compression):
    blobs = []
    for i, entries in enumerate([[TarEntry("a", Kind.FILE, 0o644, data=b"1"), TarEntry("b", Kind.FILE, 0o644)],
                                 [TarEntry(".wh.b", Kind.FILE, 0o644), TarEntry("c", Kind.DIR, 0o755)]]):
        path = tmp_path / f"layer{i}"
        with open(path, "wb") as f:
            result = build_layer(entries, f, compression)
        blobs.append((lambda p=path: open(p, "rb"), result.digest))
    extract_layers(str(rootfs), blobs)
    assert listing(rootfs) == ["a", "c"]


def test_round_trip_scan_build_extract(tmp_path, rootfs):
    src = tmp_path / "src"
    (src / "d/e").mkdir(parents=True)
    (src / "d/e/f").write_bytes(os.urandom(100_000))
    (src / "g").write_text("g")
    os.chmod(src / "g", 0o4711)
    os.link(src / "g", src / "d/g2")
    os.symlink("../g", src / "d/ln")
    hardlinks: dict = {}
    entries = [entry_from_stat(rel, os.path.join(src, rel), st, hardlinks=hardlinks) for rel, st in scan(str(src))]
    blob = io.BytesIO()
    build_layer(entries, blob, Compression.GZIP)
    blob.seek(0)
    extract_layers(str(rootfs), [(lambda: contextlib.nullcontext(blob), "sha256:rt")])
    assert listing(rootfs) == listing(src)
    for rel in ("d/e/f", "g", "d/g2"):
        assert (rootfs / rel).read_bytes() == (src / rel).read_bytes()
        assert (rootfs / rel).stat().st_mode == (src / rel).stat().st_mode
        assert int((rootfs / rel).stat().st_mtime) == int((src / rel).stat().st_mtime)
    assert os.readlink(rootfs / "d/ln") == "../g"
    assert (rootfs / "d/g2").stat().st_ino == (rootfs / "g").stat().st_ino
