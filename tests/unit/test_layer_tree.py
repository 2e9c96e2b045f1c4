"""ocibuild.layer.tree: the lexical walk and stat -> TarEntry."""

from __future__ import annotations

import os
import socket

import pytest

from ocibuild.errors import ContextError
from ocibuild.layer.entry import Kind
from ocibuild.layer.tree import entry_from_stat, scan


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ctx"
    for d in ("a/b", "a-b", "B", "z/deep/er"):
        (root / d).mkdir(parents=True)
    for f in ("a.txt", "a/z", "a/b/c", "a-b/x", "B/y", "z/deep/er/f", "é"):
        (root / f).write_text(f)
    os.symlink("/etc", root / "a/link-to-etc")
    os.symlink("a", root / "link-to-a")
    return root


def walk(root, **kw):
    return [rel for rel, _ in scan(str(root), **kw)]


def test_scan_is_lexical_parents_first_and_never_follows_symlinks(tree):
    assert walk(tree) == ["B", "B/y", "a", "a/b", "a/b/c", "a/link-to-etc", "a/z", "a-b", "a-b/x", "a.txt",
                          "link-to-a", "z", "z/deep", "z/deep/er", "z/deep/er/f", "é"]


def test_scan_below_a_subdirectory(tree):
    assert walk(tree, rel="z") == ["z/deep", "z/deep/er", "z/deep/er/f"]
    assert walk(tree, rel="link-to-a") == []   # a symlink is not walked into
    assert walk(tree, rel="a.txt") == [] and walk(tree, rel="missing") == []


def test_scan_include_hook_hides_and_prunes(tree):
    seen = []

    def include(rel, is_dir):
        seen.append((rel, is_dir))
        if rel == "a":
            return False      # hidden, but its content is still visited
        if rel == "z":
            return "prune"    # nothing below is visited
        return not rel.endswith(".txt")

    assert walk(tree, include=include) == ["B", "B/y", "a/b", "a/b/c", "a/link-to-etc", "a/z", "a-b", "a-b/x",
                                           "link-to-a", "é"]
    assert ("a", True) in seen and ("a/link-to-etc", False) in seen
    assert not any(rel.startswith("z/") for rel, _ in seen)


def test_scan_skips_sockets(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        (tmp_path / "f").write_text("x")
        assert walk(tmp_path) == ["f"]
        with pytest.raises(ContextError, match="sockets"):
            entry_from_stat("s", str(tmp_path / "s"), os.lstat(tmp_path / "s"))
    finally:
        sock.close()


def entries(root, **kw):
    return {rel: entry_from_stat(rel, os.path.join(root, rel), st, **kw) for rel, st in scan(str(root))}


def test_entry_kinds_and_fields(tree):
    os.chmod(tree / "a/z", 0o4751)
    os.utime(tree / "a/z", (0, 1_600_000_000.7))
    found = entries(tree)
    z = found["a/z"]
    assert (z.kind, z.mode, z.size, z.mtime, z.source) == (Kind.FILE, 0o4751, 3, 1_600_000_000, str(tree / "a/z"))
    assert found["a"].kind is Kind.DIR and found["a"].size == 0
    assert found["a/link-to-etc"].kind is Kind.SYMLINK and found["a/link-to-etc"].linkname == "/etc"
    st = os.lstat(tree / "a/z")
    assert (z.uid, z.gid) == (st.st_uid, st.st_gid)


def test_devices_and_fifos(tmp_path):
    os.mkfifo(tmp_path / "p")
    fifo = entry_from_stat("p", str(tmp_path / "p"), os.lstat(tmp_path / "p"))
    assert fifo.kind is Kind.FIFO
    null = entry_from_stat("dev/null", "/dev/null", os.lstat("/dev/null"))
    assert (null.kind, null.devmajor, null.devminor) == (Kind.CHAR, 1, 3)


def test_hardlinks_become_links_to_the_first_path(tmp_path):
    (tmp_path / "a").write_text("same")
    os.link(tmp_path / "a", tmp_path / "b")
    os.link(tmp_path / "a", tmp_path / "c")
    found = entries(tmp_path, hardlinks={})
    assert found["a"].kind is Kind.FILE and found["a"].size == 4
    for name in ("b", "c"):
        assert (found[name].kind, found[name].linkname, found[name].size, found[name].source) == \
            (Kind.HARDLINK, "a", 0, None)
    without = entries(tmp_path)   # no dict: every path is a file of its own
    assert {e.kind for e in without.values()} == {Kind.FILE}


def test_overrides_and_mtime_clamp(tmp_path):
    (tmp_path / "old").write_text("o")
    (tmp_path / "new").write_text("n")
    os.utime(tmp_path / "old", (100, 100))
    os.utime(tmp_path / "new", (5_000_000_000, 5_000_000_000))
    found = entries(tmp_path, uid=1000, gid=2000, mode=0o600, mtime_clamp=1_000_000)
    assert (found["old"].uid, found["old"].gid, found["old"].mode) == (1000, 2000, 0o600)
    assert found["old"].mtime == 100            # older than the clamp: kept
    assert found["new"].mtime == 1_000_000      # newer: clamped


def test_xattrs_are_read_best_effort(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    try:
        os.setxattr(path, "user.origin", b"ctx")
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    assert entries(tmp_path)["f"].xattrs == {"user.origin": b"ctx"}


def test_unreadable_directory_is_a_context_error(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()

    def denied(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(ContextError, match="Permission denied"):
        walk(tmp_path)
