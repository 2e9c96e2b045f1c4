"""Snapshots of a rootfs: the metadata of every path, cheap enough to take before each RUN step.

A `Snapshot` records, per layer path, what one lstat says (type and mode, owner, size, mtime,
ctime, inode, device numbers) plus a symlink's target. It reads no file content and no xattrs:
`diff` (in `diff`) compares a later walk of the same tree with it, and a path whose record is
unchanged is taken to be unchanged.

Why that is sound: every change to an inode - content, chmod, chown, xattrs (file
capabilities), link count - sets its ctime to the current time, and nothing in user space can
set a ctime back. Replacing a path gives it another inode. So equal (inode, ctime) means the
same, untouched inode; mtime, size, mode and owner are compared as well because they are free.
The one gap is the clock's resolution: before Linux 6.13 the kernel stamps changes with a
clock that advances in ticks (1-10 ms), and a change in the tick of the lstat would keep its
ctime. `snapshot` therefore returns only once that clock has moved past the newest ctime it
recorded (at most one tick; a second on a filesystem that stores whole seconds). This is git's
"racy clean" problem, solved by waiting rather than by reading content.

Sockets are left out (a layer cannot hold them), as `tree.scan` leaves them out.
"""

from __future__ import annotations

import ctypes
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple

from ocibuild.errors import BuildError
from ocibuild.layer.extract import Owner

# The clock the kernel stamps inode times with (Linux's CLOCK_REALTIME_COARSE is 5; Python
# does not name it). Elsewhere the precise clock, which is never behind it.
_FS_CLOCK = 5 if os.uname().sysname == "Linux" else time.CLOCK_REALTIME
_SECOND = 1_000_000_000
_S_IFMT, _S_IFLNK = 0o170000, stat.S_IFLNK
_new = tuple.__new__


class Meta(NamedTuple):
    """What a snapshot knows of one path. Two equal Metas mean an unchanged path."""

    mode: int        # st_mode: type and permission bits
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    rdev: int
    target: str      # a symlink's target, else ""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@dataclass(frozen=True)
class Snapshot:
    """The state of `root` when `snapshot` walked it. Immutable; holds no open files."""

    root: str
    records: dict[str, Meta]                  # layer path ("usr/bin/x") -> its metadata
    owners: dict[str, Owner] = field(default_factory=dict)  # copy of the rootless owners map
    excluded: frozenset[str] = frozenset()    # layer paths not walked (nor anything below)
    newest_ctime_ns: int = 0                  # an inode born later than this is not in `records`

    def same_inode(self, path: str, st: os.stat_result, host_path: str) -> bool:
        """True when the inode now at `path` (lstat `st`) is the one recorded there.

        Inode numbers are reused at once (ext4 hands a file deleted and made again its old
        number), so an equal number is confirmed by the birth time where the kernel and the
        filesystem report one: an inode born after the snapshot is a new one.
        """
        was = self.records.get(path)
        if was is None or was.ino != st.st_ino or stat.S_IFMT(was.mode) != stat.S_IFMT(st.st_mode):
            return False
        born = birth_ns(host_path)
        return born is None or born <= self.newest_ctime_ns


def snapshot(rootfs: str, *, owners: dict[str, Owner] | None = None, exclude: Iterable[str] = ()) -> Snapshot:
    """Record the metadata of every path below `rootfs` (the root itself is not recorded).

    `owners` is the map a rootless `apply_layer` filled (what the layers asked for where the
    disk could not hold it); the snapshot keeps a copy, so `diff` knows the owners of the tree
    as it was. Paths in `exclude` (layer paths, e.g. a sandbox's placeholder files) and what is
    below them are not walked. Reads metadata only; returns once any later change to a recorded
    inode is guaranteed a newer ctime (see the module docstring). Raises BuildError when a
    directory cannot be listed; a path that vanishes during the walk is left out.
    """
    excluded = normalise_paths(exclude)
    records: dict[str, Meta] = {}
    newest = 0
    for path, host, st in walk(rootfs, excluded):
        records[path] = meta_of(st, host)
        if st.st_ctime_ns > newest:
            newest = st.st_ctime_ns
    if records:
        _settle(newest)
    return Snapshot(rootfs, records, dict(owners or {}), excluded, newest)


def meta_of(st: os.stat_result, host_path: str) -> Meta:
    """The `Meta` of a path whose lstat is `st` (reads the target of a symlink)."""
    mode = st.st_mode
    target = ""
    if mode & _S_IFMT == _S_IFLNK:
        try:
            target = os.readlink(host_path)
        except OSError:
            target = "\0unreadable"  # never equal to a real target, so the path counts as changed
    # tuple.__new__ skips NamedTuple's Python-level constructor (measured: 20k records 21 -> 14 ms).
    return _new(Meta, (mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                       st.st_ino, st.st_dev, st.st_rdev, target))


def walk(root: str, excluded: frozenset[str] = frozenset()) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield ``(layer path, host path, lstat)`` for everything below `root`, in no fixed order.

    Symlinks are not followed, sockets are skipped, and a path in `excluded` is neither yielded
    nor walked into. Iterative, so a deep tree cannot exhaust the Python stack.
    """
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            listing = os.scandir(directory)
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError as e:
            raise BuildError(f"scan {root}: cannot list {prefix.rstrip('/') or '.'!r}: {e.strerror}") from None
        with listing:
            for item in listing:
                path = prefix + item.name
                if path in excluded:
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise BuildError(f"scan {root}: cannot stat {path!r}: {e.strerror}") from None
                mode = st.st_mode
                if stat.S_ISSOCK(mode):
                    continue
                yield path, item.path, st
                if stat.S_ISDIR(mode):
                    stack.append((item.path, path + "/"))


def normalise_paths(paths: Iterable[str]) -> frozenset[str]:
    """Layer paths as `walk` matches them: "/etc/hosts", "./etc/hosts/" -> "etc/hosts"."""
    out = set()
    for path in paths:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"exclude path {path!r} contains '..'")
        if parts:
            out.add("/".join(parts))
    return frozenset(out)


def _settle(newest_ctime_ns: int) -> None:
    """Wait until a change stamped now would get a ctime later than `newest_ctime_ns`.

    A newest ctime of whole seconds means a filesystem that stores whole seconds (on one that
    stores nanoseconds, the chance is one in 10^9): there, wait for the next second.
    """
    limit = newest_ctime_ns + (_SECOND - 1 if newest_ctime_ns % _SECOND == 0 else 0)
    while (now := time.clock_gettime_ns(_FS_CLOCK)) <= limit:
        time.sleep(max(limit - now + 1, 200_000) / _SECOND)


# statx(2) through ctypes: os.stat has no birth time on Linux before Python 3.15.
_AT_FDCWD, _AT_SYMLINK_NOFOLLOW, _STATX_BTIME = -100, 0x100, 0x800
_STATX_SIZE, _BTIME_OFFSET = 256, 80   # struct statx; stx_btime = {s64 tv_sec; u32 tv_nsec}
try:
    _statx = ctypes.CDLL(None, use_errno=True).statx
    _statx.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
except (AttributeError, OSError):
    _statx = None


def birth_ns(host_path: str) -> int | None:
    """The birth time of `host_path` (not following a symlink) in ns, None when unknown."""
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if _statx(_AT_FDCWD, os.fsencode(host_path), _AT_SYMLINK_NOFOLLOW, _STATX_BTIME, buf) != 0:
        return None
    mask = int.from_bytes(buf.raw[0:4], "little")
    if not mask & _STATX_BTIME:
        return None
    seconds = int.from_bytes(buf.raw[_BTIME_OFFSET:_BTIME_OFFSET + 8], "little", signed=True)
    nanos = int.from_bytes(buf.raw[_BTIME_OFFSET + 8:_BTIME_OFFSET + 12], "little")
    return seconds * _SECOND + nanos
