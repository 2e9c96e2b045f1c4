"""Hostile layer tars: nothing may happen outside the rootfs, whatever the tar says.

Every test builds its tar with tarfile, applies it to `rootfs`, and checks that `victim`, a
directory next to the rootfs (reachable as "../victim" or by its absolute path), is untouched:
same entries, modes, owners, link counts, times and contents.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ocibuild.errors import ContentError, UnsafeLayer
from ocibuild.layer.extract import apply_layer

LAYER = "sha256:" + "ab" * 32


def member(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, linkname, len(data)
    info.mtime = 1_600_000_000
    return info, data


def F(name, data=b"evil", mode=0o644):
    return member(name, data=data, mode=mode)


def D(name, mode=0o755):
    return member(name, tarfile.DIRTYPE, mode=mode)


def L(name, target):
    return member(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def H(name, target):
    return member(name, tarfile.LNKTYPE, linkname=target)


def tar(*members) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data else None)
    out.seek(0)
    return out


def snapshot(top: Path) -> dict:
    """Everything observable about the tree at `top`, not following symlinks."""
    found = {}
    for dirpath, dirs, files in os.walk(top):
        for name in [*dirs, *files, "."] if dirpath == str(top) else [*dirs, *files]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            body = os.readlink(path) if os.path.islink(path) else \
                Path(path).read_bytes() if os.path.isfile(path) else None
            found[os.path.relpath(path, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink,
                                                 st.st_mtime_ns, st.st_size, body)
    return found


class Box:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.rootfs = tmp / "rootfs"
        self.victim = tmp / "victim"
        self.rootfs.mkdir()
        self.victim.mkdir()
        (self.victim / "keep").write_bytes(b"precious")
        (self.victim / "sub").mkdir()
        self.V = str(self.victim)   # the victim's absolute host path, as an attacker would write it
        self.before = self.outside()

    def outside(self) -> dict:
        return {k: v for k, v in snapshot(self.tmp).items() if k != "rootfs" and not k.startswith("rootfs/")}

    def apply(self, *members, **kw):
        apply_layer(str(self.rootfs), tar(*members), layer=LAYER, **kw)

    def in_root(self, path: str) -> Path:
        return self.rootfs / path.lstrip("/")

    def check(self):
        assert self.outside() == self.before, "something outside the rootfs changed"


@pytest.fixture
def box(tmp_path):
    return Box(tmp_path)


@pytest.mark.parametrize("name", ["../victim/keep", "../../../../../../../victim/keep", "a/../../victim/keep",
                                  "./../victim/keep"])
def test_dotdot_names_are_clamped_to_the_rootfs(box, name):
    box.apply(F(name))
    assert (box.rootfs / "victim/keep").read_bytes() == b"evil"
    box.check()


def test_absolute_names_land_inside(box):
    box.apply(F(box.V + "/keep"))
    assert box.in_root(box.V + "/keep").read_bytes() == b"evil"
    box.check()


def test_file_through_absolute_symlink(box):
    box.apply(L("link", box.V), F("link/keep"))
    assert box.in_root(box.V + "/keep").read_bytes() == b"evil"
    assert os.readlink(box.rootfs / "link") == box.V
    box.check()


def test_file_through_relative_symlink_escaping_upwards(box):
    box.apply(L("link", "../victim"), F("link/keep"))
    assert (box.rootfs / "victim/keep").read_bytes() == b"evil"
    box.check()


def test_file_through_symlink_chain(box):
    box.apply(L("a", "b"), L("b", box.V), F("a/keep"))
    assert box.in_root(box.V + "/keep").read_bytes() == b"evil"
    box.check()


def test_file_through_chain_of_relative_links_in_subdirectories(box):
    box.apply(D("d"), L("d/l1", "../l2"), L("l2", "../../../victim"), F("d/l1/keep"))
    assert (box.rootfs / "victim/keep").read_bytes() == b"evil"
    box.check()


def test_symlink_from_a_lower_layer(box):
    box.apply(L("link", box.V))
    box.apply(F("link/keep"), D("link/sub", mode=0o777))
    assert box.in_root(box.V + "/keep").read_bytes() == b"evil"
    assert box.in_root(box.V + "/sub").stat().st_mode & 0o777 == 0o777
    box.check()


def test_absolute_target_full_of_dotdots(box):
    box.apply(L("l", "/../../../../victim"), F("l/keep"))
    assert (box.rootfs / "victim/keep").read_bytes() == b"evil"
    box.check()


def test_symlink_loop_is_refused(box):
    with pytest.raises(UnsafeLayer, match=f"layer {LAYER}: 'a/x': too many levels of symbolic links"):
        box.apply(L("a", "b"), L("b", "a"), F("a/x"))
    box.check()


def test_endless_symlink_chain_is_refused(box):
    links = [L(f"l{i}", f"l{i + 1}") for i in range(300)]
    with pytest.raises(UnsafeLayer, match="too many levels"):
        box.apply(*links, D("l300"), F("l0/x"))
    box.check()


def test_self_referencing_absolute_link_is_refused(box):
    with pytest.raises(UnsafeLayer):
        box.apply(L("etc", "/etc"), F("etc/passwd"))
    box.check()


@pytest.mark.parametrize("target", ["../victim/keep", "../../../victim/keep", "/VICTIM/keep"])
def test_hardlink_to_outside_finds_nothing(box, target):
    with pytest.raises(ContentError, match="does not exist"):
        box.apply(H("h", target.replace("/VICTIM", box.V)))
    assert not (box.rootfs / "h").exists()
    box.check()


def test_hardlink_through_symlinked_directory_stays_inside(box):
    box.apply(F(box.V + "/keep", b"decoy"))  # the same path, inside the rootfs
    box.apply(L("dir", box.V), H("h", "dir/keep"))
    assert os.stat(box.rootfs / "h").st_ino == os.stat(box.in_root(box.V + "/keep")).st_ino
    assert (box.rootfs / "h").read_bytes() == b"decoy"
    box.check()


def test_hardlink_to_a_symlink_links_the_symlink_itself(box):
    box.apply(L("s", box.V + "/keep"), H("h", "s"))
    assert os.path.islink(box.rootfs / "h") and os.readlink(box.rootfs / "h") == box.V + "/keep"
    box.check()


def test_hardlink_to_a_directory_is_refused(box):
    with pytest.raises(ContentError, match="is a directory"):
        box.apply(D("d"), H("h", "d"))
    box.check()


@pytest.mark.parametrize("target", ["", "/", ".", "../.."])
def test_hardlink_to_the_root_is_refused(box, target):
    with pytest.raises(ContentError, match="root directory"):
        box.apply(H("h", target))
    box.check()


@pytest.mark.parametrize("name", [".wh...", "sub/.wh...", ".wh..", ".wh.", "sub/.wh."])
def test_malformed_whiteouts_are_refused(box, name):
    with pytest.raises(UnsafeLayer, match=f"layer {LAYER}: .*malformed whiteout"):
        box.apply(D("sub"), F(name, b""))
    box.check()


def test_whiteout_name_used_as_a_directory_is_refused(box):
    with pytest.raises(UnsafeLayer, match="whiteout name used as a directory"):
        box.apply(F(".wh.x/y"))
    box.check()


def test_whiteout_through_symlink_to_outside(box):
    box.apply(L("link", str(box.tmp)))
    box.apply(F("link/.wh.victim", b""))
    box.check()


def test_whiteout_with_dotdot_name(box):
    box.apply(F("../.wh.victim", b""), F("../../.wh.rootfs", b""))
    box.check()
    assert box.rootfs.is_dir()


def test_whiteout_through_link_to_parent(box):
    box.apply(L("up", ".."), D("victim"))
    box.apply(F("up/.wh.victim", b""))
    assert not (box.rootfs / "victim").exists()
    box.check()


def test_whiteout_of_a_symlink_removes_only_the_link(box):
    box.apply(L("link", box.V), D("d"), L("d/out", box.V))
    box.apply(F(".wh.link", b""), F(".wh.d", b""))
    assert not os.path.lexists(box.rootfs / "link") and not os.path.lexists(box.rootfs / "d")
    box.check()


def test_opaque_marker_through_symlink(box):
    box.apply(L("link", box.V))
    box.apply(F("link/.wh..wh..opq", b""))
    box.check()


def test_opaque_directory_holding_a_link_to_outside(box):
    box.apply(D("d"), L("d/out", box.V), L("d/out2", "../../victim"))
    box.apply(D("d"), F("d/.wh..wh..opq", b""))
    assert os.listdir(box.rootfs / "d") == []
    box.check()


@pytest.mark.parametrize("first,second", [("a", "a"), ("./a", "a"), ("/a", "a"), ("a/../a", "./a")])
def test_duplicate_entries_are_refused(box, first, second):
    with pytest.raises(UnsafeLayer, match=f"layer {LAYER}: '{second}': the layer has two entries"):
        box.apply(F(first), F(second))
    box.check()


def test_duplicate_directory_entries_are_refused(box):
    with pytest.raises(UnsafeLayer):
        box.apply(D("d"), F("d/x"), D("d/"))
    box.check()


def test_file_replacing_a_symlink_to_outside_does_not_write_through(box):
    box.apply(L("link", box.V + "/keep"))
    box.apply(F("link", b"new", mode=0o600))
    assert not os.path.islink(box.rootfs / "link") and (box.rootfs / "link").read_bytes() == b"new"
    box.check()


def test_directory_replacing_a_symlink_to_outside(box):
    box.apply(L("link", box.V))
    box.apply(D("link", mode=0o700))
    assert (box.rootfs / "link").is_dir() and not os.path.islink(box.rootfs / "link")
    assert (box.rootfs / "link").stat().st_mode & 0o777 == 0o700
    box.check()


def test_file_replacing_a_directory_holding_a_link_to_outside(box):
    box.apply(D("d"), L("d/out", box.V), F("d/f"))
    box.apply(F("d", b"now a file"))
    assert (box.rootfs / "d").read_bytes() == b"now a file"
    box.check()


def test_file_below_a_file_is_refused(box):
    with pytest.raises(ContentError, match="'f' is not a directory"):
        box.apply(F("f"), F("f/x"))
    box.check()


def test_root_entry_does_not_touch_the_rootfs_itself(box):
    mode = box.rootfs.stat().st_mode
    box.apply(D(".", mode=0o777), D("/", mode=0o777), F("ok"))
    assert box.rootfs.stat().st_mode == mode
    box.check()


def test_symlink_swap_between_layers_cannot_redirect_a_directory(box):
    box.apply(D("d"), F("d/f", b"one"))
    box.apply(L("d", box.V))         # the directory becomes a link to outside
    box.apply(F("d/f", b"two"), F("d/.wh.keep", b""))
    assert box.in_root(box.V + "/f").read_bytes() == b"two"
    box.check()


def test_rootless_extraction_is_contained_too(box):
    owners = {}
    box.apply(L("link", box.V), F("link/keep", mode=0o4755), D("link/sub", mode=0o000),
              rootless=True, owners=owners)
    assert owners[box.V.lstrip("/") + "/keep"].mode == 0o4755
    box.check()


def test_truncated_tar_is_a_content_error(box):
    data = tar(F("a", b"x" * 5000)).getvalue()[:1500]
    with pytest.raises(ContentError, match=LAYER):
        apply_layer(str(box.rootfs), io.BytesIO(data), layer=LAYER)
    box.check()
