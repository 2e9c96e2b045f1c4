"""Host directory trees -> `TarEntry`s: a lexical walk and the stat -> entry mapping.

`scan` walks like Go's filepath.Walk (which Docker's context and COPY code use): lstat only,
symlinks are never followed, each directory's names sorted bytewise, a directory yielded before
its content. Sockets are skipped, as Docker's archive writer skips them.

`entry_from_stat` turns one lstat result into a `TarEntry`, reading what the stat does not hold
(symlink target, device numbers, xattrs) and spotting hardlinks.
"""

from __future__ import annotations

import os
import stat
from typing import Callable, Iterator, Literal

from ocibuild.errors import ContextError
from ocibuild.layer.entry import Kind, TarEntry

Include = Callable[[str, bool], "bool | Literal['prune']"]

_KINDS = {stat.S_IFREG: Kind.FILE, stat.S_IFDIR: Kind.DIR, stat.S_IFLNK: Kind.SYMLINK,
          stat.S_IFCHR: Kind.CHAR, stat.S_IFBLK: Kind.BLOCK, stat.S_IFIFO: Kind.FIFO}
# Host-specific labels that would make layers differ between machines and mean nothing in an image.
_SKIPPED_XATTRS = ("security.selinux", "system.")


def scan(root: str, *, rel: str = "", include: Include | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(relpath, lstat)`` for everything strictly below ``root/rel``, in walk order.

    `relpath` is relative to `root` (so it starts with ``rel + "/"`` when `rel` is set). If
    ``root/rel`` is not a directory (or is a symlink), nothing is yielded. `include(relpath,
    is_dir)` decides per path: True yields it (and walks into a directory), False hides it but
    still walks into a directory (a later pattern may re-include its content), "prune" skips it
    and everything below. A path that vanishes during the walk is skipped; an unreadable
    directory raises ContextError.
    """
    start = os.path.join(root, rel) if rel else root
    try:
        if not stat.S_ISDIR(os.lstat(start).st_mode):
            return
    except FileNotFoundError:
        return
    except OSError as e:
        raise ContextError(f"cannot read {rel or '.'!r} in the build context: {e.strerror}") from None
    yield from _walk(start, f"{rel}/" if rel else "", include)


def _walk(directory: str, prefix: str, include: Include | None) -> Iterator[tuple[str, os.stat_result]]:
    for name, path, info in _listing(directory, prefix):
        relpath = prefix + name
        is_dir = stat.S_ISDIR(info.st_mode)
        verdict = include(relpath, is_dir) if include is not None else True
        if verdict == "prune":
            continue
        if verdict:
            yield relpath, info
        if is_dir:
            yield from _walk(path, relpath + "/", include)


def _listing(directory: str, prefix: str) -> list[tuple[str, str, os.stat_result]]:
    """The (name, host path, lstat) of each entry of `directory`, sorted bytewise, sockets left out."""
    try:
        with os.scandir(directory) as it:
            found = sorted(it, key=lambda d: os.fsencode(d.name))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ContextError(f"cannot list {prefix.rstrip('/') or '.'!r} in the build context: {e.strerror}") from None
    listing = []
    for item in found:
        try:
            info = item.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ContextError(f"cannot read {prefix + item.name!r} in the build context: {e.strerror}") from None
        if not stat.S_ISSOCK(info.st_mode):
            listing.append((item.name, item.path, info))
    return listing


def entry_from_stat(path_in_layer: str, host_path: str, st: os.stat_result, *, uid: int | None = None,
                    gid: int | None = None, mode: int | None = None, mtime_clamp: int | None = None,
                    hardlinks: dict | None = None, xattrs: bool = True) -> TarEntry:
    """The `TarEntry` for a host path whose lstat is `st`.

    Reads the symlink target, device numbers and (best effort: unsupported or unreadable xattrs
    are left out) the xattrs. When `hardlinks` is given it maps ``(st_dev, st_ino)`` to the layer
    path of the first non-directory seen with that inode; a later path with the same inode
    becomes a HARDLINK entry to it. `uid`, `gid`, `mode` (permission bits) replace the host's;
    `mtime_clamp` (SOURCE_DATE_EPOCH) lowers later mtimes to it and leaves earlier ones.
    ``xattrs=False`` leaves the xattrs out unread (one syscall per path saved) for a caller
    that drops them anyway. Raises ContextError for a socket or an unreadable symlink.
    """
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        raise ContextError(f"{path_in_layer!r}: sockets cannot be stored in a layer")
    mtime = st.st_mtime_ns // 1_000_000_000
    if mtime_clamp is not None and mtime > mtime_clamp:
        mtime = mtime_clamp
    entry = TarEntry(path=path_in_layer, kind=kind, mode=stat.S_IMODE(st.st_mode) if mode is None else mode,
                     uid=st.st_uid if uid is None else uid, gid=st.st_gid if gid is None else gid, mtime=mtime)
    if hardlinks is not None and kind is not Kind.DIR and st.st_nlink > 1:
        first = hardlinks.setdefault((st.st_dev, st.st_ino), path_in_layer)
        if first != path_in_layer:
            entry.kind, entry.linkname = Kind.HARDLINK, first
            return entry
    if kind is Kind.FILE:
        entry.size, entry.source = st.st_size, host_path
    elif kind is Kind.SYMLINK:
        try:
            entry.linkname = os.readlink(host_path)
        except OSError as e:
            raise ContextError(f"cannot read symlink {path_in_layer!r}: {e.strerror}") from None
    elif kind in (Kind.CHAR, Kind.BLOCK):
        entry.devmajor, entry.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if xattrs:
        entry.xattrs = read_xattrs(host_path)
    return entry


def read_xattrs(host_path: str) -> dict[str, bytes]:
    """The xattrs of `host_path` (not following a symlink), sorted by name; {} when unsupported."""
    try:
        names = os.listxattr(host_path, follow_symlinks=False)
    except OSError:
        return {}
    found = {}
    for name in sorted(names):
        if name.startswith(_SKIPPED_XATTRS):
            continue
        try:
            found[name] = os.getxattr(host_path, name, follow_symlinks=False)
        except OSError:
            continue
    return found
