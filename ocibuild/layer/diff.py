"""The layer a RUN step produced: compare a rootfs with its `Snapshot` (scan-and-compare).

This is the fallback that works on any filesystem; an overlayfs upper directory would give
the same answer without walking the lower tree. `diff(before, rootfs)` returns the entries of
the layer, in tar order, such that applying them onto the tree `before` recorded gives the
tree now at `rootfs` (metadata at the precision of a tar header: whole-second mtimes):

- a path whose `Meta` changed, or that is new, is emitted with its current metadata; file
  content is not read now (`source` names the host file; `write_tar` streams it later);
- a deleted path becomes a ``.wh.<name>`` whiteout, only at the top of what was deleted;
- a directory deleted and made again (another inode) is emitted with ``.wh..wh..opq`` inside
  it and its whole content, as Docker's and containerd's differs do; a path whose type
  changed simply replaces the old one (a tar member replaces what is below it);
- the parent directories of every emitted entry are emitted too, with their current metadata
  (Docker does so, and appliers that create missing parents 0755 would otherwise guess);
- names of one inode among the emitted files become one FILE (the first in tar order) and
  HARDLINKs to it, so hardlinks survive;
- owners: the disk's uid/gid go through `idmap` (host ids -> ids in the image, for a build in a
  user namespace). In a rootless build the rootfs was extracted with an `owners` map (see
  `extract`); for an inode the step did not replace, the map's uid/gid/mode stand unless the
  step changed them on disk. The map is updated to describe the tree after the step.

Whiteouts and opaque markers are empty regular files with mode 0 and mtime 0, so they carry no
time of the build.
"""

from __future__ import annotations

import stat
from typing import Callable, Iterable

from ocibuild.layer.entry import Kind, TarEntry, path_key
from ocibuild.layer.extract import OPAQUE, WHITEOUT, Owner
from ocibuild.layer.snapshot import Meta, Snapshot, meta_of, normalise_paths, walk
from ocibuild.layer.tree import entry_from_stat

IdMap = Callable[[int, int], "tuple[int, int]"]


def diff(before: Snapshot, rootfs: str, *, owners: dict[str, Owner] | None = None, idmap: IdMap | None = None,
         exclude: Iterable[str] = (), mtime_clamp: int | None = None) -> list[TarEntry]:
    """The layer that turns the tree `before` recorded into the tree now at `rootfs`, sorted.

    `exclude` names layer paths (e.g. placeholder files a sandbox mounted over) that never
    appear in the layer, neither as entries nor as whiteouts, nor does anything below them;
    the snapshot's own exclusions apply too. `owners` defaults to the snapshot's copy; when the
    caller passes its map it is updated in place (records of replaced or deleted paths dropped,
    changed owners and modes recorded) so the next step's snapshot starts from the truth.
    `idmap(uid, gid)` maps the disk's ids of every emitted path the owners map does not cover.
    `mtime_clamp` (SOURCE_DATE_EPOCH) lowers later mtimes to it. The result is ready for
    `write_tar`; the files it names must not change until then. Raises BuildError when the
    tree cannot be walked, ContextError when a symlink cannot be read.
    """
    excluded = before.excluded | normalise_paths(exclude)
    logical = before.owners if owners is None else owners
    after = {path: (host, st) for path, host, st in walk(rootfs, excluded)}
    changed, opaque = _changed(before, after)
    emitted = set(changed) | _opaque_content(after, opaque)
    whiteouts = _whiteouts(before, after, excluded)
    for path in list(emitted) + whiteouts:
        _add_parents(path, emitted)

    identity = _Identity(before, logical, idmap)
    entries: list[TarEntry] = []
    hardlinks: dict = {}
    for path in sorted(emitted, key=path_key):
        host, st = after[path]
        uid, gid, mode = identity.of(path, host, st)
        entries.append(entry_from_stat(path, host, st, uid=uid, gid=gid, mode=mode,
                                       mtime_clamp=mtime_clamp, hardlinks=hardlinks))
    entries += [marker(w) for w in whiteouts]
    entries += [marker(f"{path}/{OPAQUE}") for path in opaque]
    if owners is not None:
        identity.update(owners, after, emitted)
    return sorted(entries, key=tar_order)


def _changed(before: Snapshot, after: dict) -> tuple[list[str], list[str]]:
    """Paths whose metadata differ from the snapshot (or that are new), and among them the
    directories that were deleted and made again (opaque)."""
    changed, opaque = [], []
    old = before.records
    for path, (host, st) in after.items():
        was = old.get(path)
        if was is not None and _same(was, meta_of(st, host)):
            continue
        changed.append(path)
        if was is not None and was.is_dir and stat.S_ISDIR(st.st_mode) and not before.same_inode(path, st, host):
            opaque.append(path)
    return changed, opaque


def _same(was: Meta, now: Meta) -> bool:
    """Unchanged, as far as a layer can tell. A directory's ctime moves whenever an entry is added
    to or removed from it, which its own entries already show; a sandbox's mount placeholders,
    created and removed with the parent's mtime put back, must not drag /etc into every layer."""
    if was.is_dir and now.is_dir:
        return was._replace(ctime_ns=0) == now._replace(ctime_ns=0)
    return was == now


def _opaque_content(after: dict, opaque: list[str]) -> set[str]:
    """Everything now below an opaque directory: the marker hides the lower layers' content,
    so this layer must carry all of it, changed or not."""
    if not opaque:
        return set()
    roots = set(opaque)
    inside = set()
    for path in after:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in roots:
                inside.add(path)
                break
            parent = parent.rpartition("/")[0]
    return inside


def _whiteouts(before: Snapshot, after: dict, excluded: frozenset[str]) -> list[str]:
    """``.wh.`` paths for deleted paths whose parent is still the same directory.

    Below a deleted path, a path that is no longer a directory, or a directory made again
    (opaque), the removal is implied and a whiteout would be wrong or redundant.
    """
    found = []
    for path in before.records:
        if path in after or _is_excluded(path, excluded):
            continue
        parent, _, name = path.rpartition("/")
        if parent and not _same_directory(parent, before, after):
            continue
        found.append(f"{parent}/{WHITEOUT}{name}" if parent else WHITEOUT + name)
    return found


def _same_directory(path: str, before: Snapshot, after: dict) -> bool:
    """True when `path` is a directory both before and now, and the same one (same inode)."""
    now = after.get(path)
    return now is not None and stat.S_ISDIR(now[1].st_mode) and before.same_inode(path, now[1], now[0])


def _is_excluded(path: str, excluded: frozenset[str]) -> bool:
    while path:
        if path in excluded:
            return True
        path = path.rpartition("/")[0]
    return False


def _add_parents(path: str, emitted: set[str]) -> None:
    parent = path.rpartition("/")[0]
    while parent and parent not in emitted:
        emitted.add(parent)
        parent = parent.rpartition("/")[0]


def marker(path: str) -> TarEntry:
    """A whiteout or opaque marker: an empty file, mode 0, mtime 0 (no time of the build)."""
    return TarEntry(path=path, kind=Kind.FILE, mode=0)


def tar_order(entry: TarEntry) -> list[bytes]:
    """Walk order, with a directory's opaque marker first among its children (as containerd
    writes it), so a streaming reader knows the directory is opaque before its content."""
    key = path_key(entry.path)
    if key[-1] == OPAQUE.encode():
        key[-1] = b""
    return key


class _Identity:
    """Who owns an emitted path, and with which mode, in the image rather than on disk."""

    def __init__(self, before: Snapshot, owners: dict[str, Owner], idmap: IdMap | None):
        self.before, self.owners, self.idmap = before, owners, idmap
        self.resolved: dict[str, tuple[int, int, int]] = {}

    def of(self, path: str, host: str, st) -> tuple[int, int, int]:
        """(uid, gid, permission bits) of `path`, whose lstat now is `st`."""
        uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
        record = self.owners.get(path)
        if record is not None and not self.before.same_inode(path, st, host):
            record = None   # the record describes an inode the step replaced
        was = self.before.records.get(path)
        if record is not None and (was.uid, was.gid) == (uid, gid):
            uid, gid = record.uid, record.gid
        elif self.idmap is not None:
            uid, gid = self.idmap(uid, gid)
        if record is not None and stat.S_IMODE(was.mode) == mode:
            mode = record.mode
        self.resolved[path] = (uid, gid, mode)
        return uid, gid, mode

    def update(self, owners: dict[str, Owner], after: dict, emitted: set[str]) -> None:
        """Make `owners` describe the tree after the step (see `diff`).

        A record stays for an inode the step left in place, with the ids and mode resolved for
        it when it was emitted. A record of a path not on disk stays only for a device node a
        rootless extraction could not create, while every directory above it is still the same.
        """
        for path in list(owners):
            record = owners[path]
            now = after.get(path)
            if now is None:
                keep = record.kind is not None and path not in self.before.records and self._intact(path, after)
            else:
                keep = self.before.same_inode(path, now[1], now[0])
            if not keep:
                del owners[path]
            elif path in emitted:
                uid, gid, mode = self.resolved[path]
                owners[path] = Owner(uid, gid, mode, record.kind, record.devmajor, record.devminor)

    def _intact(self, path: str, after: dict) -> bool:
        parent = path.rpartition("/")[0]
        while parent:
            if not _same_directory(parent, self.before, after):
                return False
            parent = parent.rpartition("/")[0]
        return True
