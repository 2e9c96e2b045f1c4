"""Pure parts of the overlay path: overlayfs' xattrs kept out of images, and a stage's tree
following a layer's entries (whiteouts, opaque directories, hardlinks) instead of a rescan."""

from __future__ import annotations

from ocibuild.builder.run import follow
from ocibuild.builder.tree import Tree
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.overlay import image_xattrs


def test_overlay_xattrs_dropped_and_escaped_names_restored():
    xattrs = {"trusted.overlay.origin": b"x", "trusted.overlay.opaque": b"y",
              "trusted.overlay.overlay.mine": b"kept", "security.capability": b"cap", "user.overlay.origin": b"u"}
    assert image_xattrs(xattrs, "trusted") == {"security.capability": b"cap", "trusted.overlay.mine": b"kept",
                                               "user.overlay.origin": b"u"}
    assert image_xattrs({"user.a": b"1"}, "user") == {"user.a": b"1"}


def _dir(path: str) -> TarEntry:
    return TarEntry(path=path, kind=Kind.DIR, mode=0o755)


def _file(path: str, **kw) -> TarEntry:
    return TarEntry(path=path, kind=Kind.FILE, **{"mode": 0o644, **kw})


def test_tree_follows_whiteouts_opaque_dirs_and_hardlinks():
    tree = Tree([_dir("a"), _file("a/x"), _dir("b"), _dir("b/old"), _file("b/old/y"), _file("b/z"), _file("c")])
    made = follow(tree, [
        _file(".wh.c", mode=0), _dir("a"), _file("a/.wh.x", mode=0),
        _dir("b"), _file("b/.wh..wh..opq", mode=0), _file("b/new", uid=7, size=3, source="/up/b/new"),
        TarEntry(path="b/link", kind=Kind.HARDLINK, mode=0o644, linkname="b/new"),
    ])
    assert sorted(e.path for e in tree.walk()) == ["a", "b", "b/link", "b/new"]
    link = tree.get("b/link")
    assert link.kind is Kind.FILE and link.uid == 7 and link.source == "/up/b/new"
    assert made == [link]
