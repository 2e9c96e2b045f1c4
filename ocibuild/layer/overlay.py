"""The layer a RUN step produced, read off the upper directory of the overlayfs it ran on.

The upper directory holds only what the step touched, in overlayfs' format; `upper_diff`
translates it into the entries `diff.diff` would give for the same change on a plain copy
(the tests compare the two byte for byte):

- a 0/0 character device is a whiteout (``.wh.<name>``);
- a directory marked ``<flavour>.overlay.opaque`` over a lower directory was deleted and made
  again: it gets ``.wh..wh..opq`` and its whole content (it is all in the upper directory);
- everything else in the upper directory was created or copied up. A copy-up is a change only
  if it shows one: a directory copied up because something below it changed is emitted as a
  parent of that change, or when its own mode, owner or mtime moved; a file opened for writing
  and left alone is compared with its lower self (metadata, xattrs, then content) and dropped;
- overlayfs' own xattrs (``<flavour>.overlay.*``) are not the image's: they are dropped, and
  the names overlayfs escaped (``<flavour>.overlay.overlay.x``) are given back.

Owners follow `diff`'s rules with copy-up standing for "the same inode": a copied-up path keeps
the rootless owners record of its lower self (overlayfs marks a copy-up with an ``origin``
xattr, except when it breaks a lower hardlink). The lower directories are never written.
Unlike the snapshot, the upper directory sees a change to a lower hardlinked file under the
changed name only (overlayfs breaks the link on copy-up), as Docker's overlay differ does.
"""

from __future__ import annotations

import filecmp
import os
import stat
from typing import Callable

from ocibuild.layer.diff import marker, tar_order
from ocibuild.layer.entry import TarEntry, path_key
from ocibuild.layer.extract import OPAQUE, WHITEOUT, Owner
from ocibuild.layer.snapshot import walk
from ocibuild.layer.tree import entry_from_stat, read_xattrs

IdMap = Callable[[int, int], "tuple[int, int]"]
Found = tuple[str, os.stat_result]  # (host path, lstat)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def image_xattrs(xattrs: dict[str, bytes], flavour: str) -> dict[str, bytes]:
    """`xattrs` as the image sees them: overlayfs' own removed, its escaped names restored."""
    own = f"{flavour}.overlay."
    if not any(name.startswith(own) for name in xattrs):
        return xattrs
    out = {}
    for name, value in xattrs.items():
        if name.startswith(own + "overlay."):
            out[own + name[len(own) + len("overlay."):]] = value
        elif not name.startswith(own):
            out[name] = value
    return dict(sorted(out.items()))


class LowerView:
    """The merged tree of read-only lower directories (topmost first), looked up path by path.

    Only the paths the upper directory names are looked up, so the cost follows the change.
    Every component is checked to be a real directory before the next is looked at, so no
    symlink in a lower directory is ever followed.
    """

    def __init__(self, lowers: list[str], flavour: str):
        self.lowers, self.flavour = lowers, flavour
        self._kinds: dict[tuple[int, str], str | None] = {}

    def lookup(self, path: str) -> Found | None:
        """(host path, lstat) of `path` in the merged lower tree, None when it has none."""
        parts = path.split("/")
        for i, layer in enumerate(self.lowers):
            reach, opaque = self._reach(i, parts)
            if reach == "hidden":
                return None
            if reach == "dir":
                host = os.path.join(layer, path)
                try:
                    st = os.lstat(host)
                except FileNotFoundError:
                    st = None
                if st is not None:
                    return None if is_whiteout(st) else (host, st)
            if opaque:
                return None
        return None

    def _reach(self, i: int, parts: list[str]) -> tuple[str, bool]:
        """Whether layer `i` has every parent of the path as a directory ("dir"), lacks one
        ("missing"), or has a non-directory or whiteout there ("hidden"); and whether one of
        those directories is opaque (hiding the layers below)."""
        opaque = False
        for k in range(1, len(parts)):
            kind = self._kind(i, "/".join(parts[:k]))
            if kind is None:
                return "missing", opaque
            if kind == "other":
                return "hidden", opaque
            opaque = opaque or kind == "opaque"
        return "dir", opaque

    def _kind(self, i: int, prefix: str) -> str | None:
        key = (i, prefix)
        if key not in self._kinds:
            host = os.path.join(self.lowers[i], prefix)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                kind = None
            else:
                kind = "other" if not stat.S_ISDIR(st.st_mode) else "opaque" if _opaque(host, self.flavour) else "dir"
            self._kinds[key] = kind
        return self._kinds[key]


def _opaque(host: str, flavour: str) -> bool:
    try:
        return os.getxattr(host, f"{flavour}.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def relink(upper: str, lower: LowerView) -> None:
    """Give back the hardlinks overlayfs broke on copy-up.

    overlayfs copies up the one name that was written to; the other names of a lower hardlink
    keep the old inode, where a plain directory (and the snapshot) would show the change under
    every name. For each such name still visible and untouched by the step, a link to the copy
    is made in `upper`, the parent's times kept, so the layer and the later steps see one inode.
    Parents missing from `upper` are copied up only as root (their owner must be kept).
    """
    indexes: dict[str, dict[int, list[str]]] = {}
    for path, host, st in list(walk(upper)):
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            continue
        was = lower.lookup(path)
        if was is None or was[1].st_nlink < 2 or not stat.S_ISREG(was[1].st_mode):
            continue
        root = was[0][: len(was[0]) - len(path) - 1]
        if root not in indexes:
            indexes[root] = _links(root)
        for other in indexes[root].get(was[1].st_ino, ()):
            if other != path and _visible(other, root, upper, lower):
                _link(host, upper, other, lower)


def _links(root: str) -> dict[int, list[str]]:
    """inode -> the names of the hardlinked regular files below `root`."""
    found: dict[int, list[str]] = {}
    for path, _, st in walk(root):
        if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            found.setdefault(st.st_ino, []).append(path)
    return found


def _visible(path: str, root: str, upper: str, lower: LowerView) -> bool:
    """`path` shows the lower file of `root` in the merged tree after the step."""
    parts = path.split("/")
    for k in range(1, len(parts) + 1):
        try:
            st = os.lstat(os.path.join(upper, *parts[:k]))
        except FileNotFoundError:
            break
        if k == len(parts) or not stat.S_ISDIR(st.st_mode) or _opaque(os.path.join(upper, *parts[:k]), lower.flavour):
            return False
    was = lower.lookup(path)
    return was is not None and was[0] == os.path.join(root, path)


def _link(source: str, upper: str, path: str, lower: LowerView) -> None:
    parent = path.rpartition("/")[0]
    host_parent = os.path.join(upper, parent)
    if not os.path.isdir(host_parent) and not _copy_up_dirs(upper, parent, lower):
        return
    st = os.lstat(host_parent)
    os.link(source, os.path.join(upper, path))
    os.utime(host_parent, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_up_dirs(upper: str, path: str, lower: LowerView) -> bool:
    """Make the directories of `path` in `upper` with their lower metadata (as root only)."""
    if os.geteuid() != 0 or lower.flavour != "trusted":
        return False
    done = ""
    for part in path.split("/"):
        done = f"{done}/{part}" if done else part
        host = os.path.join(upper, done)
        if os.path.isdir(host):
            continue
        was = lower.lookup(done)
        if was is None:
            return False
        st = was[1]
        os.mkdir(host)
        for name, value in image_xattrs(read_xattrs(was[0]), lower.flavour).items():
            os.setxattr(host, name, value, follow_symlinks=False)
        os.lchown(host, st.st_uid, st.st_gid)
        os.chmod(host, stat.S_IMODE(st.st_mode))
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True


def upper_diff(upper: str, lower: LowerView, *, owners: dict[str, Owner] | None = None,
               idmap: IdMap | None = None) -> list[TarEntry]:
    """The layer of the change recorded in `upper`, in tar order, mtimes not clamped.

    `owners` (the rootless owners map of the merged tree before the step) is updated in place
    to describe it after the step, as `diff.diff` does. File contents stay in `upper`.
    """
    found = {path: (host, st) for path, host, st in walk(upper)}
    scan = _Scan(found, lower)
    for path in sorted(found, key=path_key):
        scan.classify(path)
    emitted = scan.emitted
    for path in list(emitted) + scan.whiteouts + scan.opaque:
        parent = path.rpartition("/")[0]
        while parent and parent not in emitted:
            emitted.add(parent)
            parent = parent.rpartition("/")[0]
    identity = _Identity(scan, owners or {}, idmap, lower.flavour)
    entries, hardlinks = [], {}
    for path in sorted(emitted, key=path_key):
        host, st = found[path]
        uid, gid, mode = identity.of(path, host, st)
        entry = entry_from_stat(path, host, st, uid=uid, gid=gid, mode=mode, hardlinks=hardlinks)
        entry.xattrs = image_xattrs(entry.xattrs, lower.flavour)
        entries.append(entry)
    for path in scan.whiteouts:
        parent, _, name = path.rpartition("/")
        entries.append(marker(f"{parent}/{WHITEOUT}{name}" if parent else WHITEOUT + name))
    entries += [marker(f"{path}/{OPAQUE}") for path in scan.opaque]
    if owners is not None:
        identity.update(owners)
    return sorted(entries, key=tar_order)


class _Scan:
    """What each path of the upper directory is: whiteout, opaque, new, changed or a bare copy-up."""

    def __init__(self, found: dict[str, Found], lower: LowerView):
        self.found, self.lower = found, lower
        self.was: dict[str, Found | None] = {}   # the lower self of each upper path
        self.emitted: set[str] = set()
        self.whiteouts: list[str] = []
        self.opaque: list[str] = []
        self.hidden: set[str] = set()            # upper directories with no lower content below

    def classify(self, path: str) -> None:
        """Call parents first (tar order)."""
        host, st = self.found[path]
        if is_whiteout(st):
            self.whiteouts.append(path)
            return
        was = None if path.rpartition("/")[0] in self.hidden else self.lower.lookup(path)
        self.was[path] = was
        if not stat.S_ISDIR(st.st_mode):
            if _file_changed(host, st, was, self.lower.flavour):
                self.emitted.add(path)
            return
        if was is None or not stat.S_ISDIR(was[1].st_mode):
            self.hidden.add(path)
            self.emitted.add(path)
        elif _opaque(host, self.lower.flavour):
            self.hidden.add(path)
            self.opaque.append(path)
            self.emitted.add(path)
        elif _meta(st) != _meta(was[1]):
            self.emitted.add(path)

    def same_inode(self, path: str) -> bool:
        """The upper path is a copy-up of its lower self (diff's "same inode")."""
        was = self.was.get(path)
        if was is None:
            return False
        host, st = self.found[path]
        if stat.S_IFMT(st.st_mode) != stat.S_IFMT(was[1].st_mode):
            return False
        if stat.S_ISDIR(st.st_mode):
            return path not in self.hidden
        return was[1].st_nlink > 1 or _has_xattr(host, f"{self.lower.flavour}.overlay.origin")


def _meta(st: os.stat_result) -> tuple:
    return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns


def _file_changed(host: str, st: os.stat_result, was: Found | None, flavour: str) -> bool:
    """False only for a copy-up that changed nothing a layer records."""
    if was is None or st.st_nlink > 1:
        return True
    lower_host, lower = was
    if _meta(st) + (st.st_size, st.st_rdev) != _meta(lower) + (lower.st_size, lower.st_rdev):
        return True
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(host) != os.readlink(lower_host)
    if image_xattrs(read_xattrs(host), flavour) != read_xattrs(lower_host):
        return True
    return stat.S_ISREG(st.st_mode) and not filecmp.cmp(host, lower_host, shallow=False)


def _has_xattr(host: str, name: str) -> bool:
    try:
        os.getxattr(host, name, follow_symlinks=False)
        return True
    except OSError:
        return False


class _Identity:
    """Owner and mode in the image of each emitted path (the rules of `diff._Identity`)."""

    def __init__(self, scan: _Scan, owners: dict[str, Owner], idmap: IdMap | None, flavour: str):
        self.scan, self.owners, self.idmap = scan, owners, idmap
        self.resolved: dict[str, tuple[int, int, int]] = {}

    def of(self, path: str, host: str, st: os.stat_result) -> tuple[int, int, int]:
        uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
        record = self.owners.get(path)
        if record is not None and not self.scan.same_inode(path):
            record = None
        was = self.scan.was.get(path)
        if record is not None and (was[1].st_uid, was[1].st_gid) == (uid, gid):
            uid, gid = record.uid, record.gid
        elif self.idmap is not None:
            uid, gid = self.idmap(uid, gid)
        if record is not None and stat.S_IMODE(was[1].st_mode) == mode:
            mode = record.mode
        self.resolved[path] = (uid, gid, mode)
        return uid, gid, mode

    def update(self, owners: dict[str, Owner]) -> None:
        """Drop the records of paths the step removed or replaced; refresh those it emitted."""
        scan = self.scan
        cut = set(scan.whiteouts) | scan.hidden | {
            p for p, (_, st) in scan.found.items() if not stat.S_ISDIR(st.st_mode)}
        for path in list(owners):
            now = scan.found.get(path)
            if now is not None:
                keep = not is_whiteout(now[1]) and scan.same_inode(path)
            else:
                keep = not _below(path, cut)
            if not keep:
                del owners[path]
            elif path in self.resolved:
                uid, gid, mode = self.resolved[path]
                record = owners[path]
                owners[path] = Owner(uid, gid, mode, record.kind, record.devmajor, record.devminor)


def _below(path: str, cut: set[str]) -> bool:
    """A directory above `path` is in `cut`."""
    path = path.rpartition("/")[0]
    while path:
        if path in cut:
            return True
        path = path.rpartition("/")[0]
    return False
