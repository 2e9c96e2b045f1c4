"""Fold an overlayfs upper directory into a plain directory tree, by moving its files.

When a stage's filesystem must be one directory again (a layer applied on top, a `--mount
from=` reading it, a RUN without overlay), the upper directories of its RUN steps are folded
into a private copy of the lower tree, bottom first. Moving rather than copying keeps what a
rootless caller could not recreate (files owned by subordinate ids) and costs no data copy;
the upper directory is spent afterwards. Whiteouts remove, opaque directories replace, other
directories merge (taking the upper's metadata), everything else replaces.

overlayfs' own xattrs are removed where the caller may (best effort: a rootless caller cannot
touch those of files owned by a subordinate id; readers drop them with `image_xattrs`).
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Callable

from ocibuild.layer.overlay import is_whiteout

Moved = Callable[[str, str], None]  # (layer path, new host path) of each non-directory moved


def fold(upper: str, root: str, flavour: str, *, moved: Moved | None = None) -> list[str]:
    """Move the content of `upper` into `root` with overlay semantics; return the layer paths
    of merged directories whose owner could not be given (rootless), for the caller to record.
    `moved` is told where each moved non-directory now lives."""
    unowned: list[str] = []
    _fold_dir(upper, root, "", flavour, moved, unowned)
    return unowned


def _fold_dir(src: str, dst: str, prefix: str, flavour: str, moved: Moved | None, unowned: list[str]) -> None:
    for name in sorted(os.listdir(src)):
        s, d, path = os.path.join(src, name), os.path.join(dst, name), prefix + name
        st = os.lstat(s)
        if is_whiteout(st):
            _remove(d)
            continue
        try:
            there = os.lstat(d)
        except FileNotFoundError:
            there = None
        merge = stat.S_ISDIR(st.st_mode) and there is not None and stat.S_ISDIR(there.st_mode) \
            and not _opaque(s, flavour)
        if merge:
            _fold_dir(s, d, path + "/", flavour, moved, unowned)
            if not _take_metadata(st, d):
                unowned.append(path)
            continue
        if there is not None:
            _remove(d)
        os.rename(s, d)
        _clean(d, path, flavour, moved)


def _take_metadata(st: os.stat_result, d: str) -> bool:
    """Give the directory `d` the upper directory's metadata; False when its owner could not be."""
    owned = True
    try:
        os.lchown(d, st.st_uid, st.st_gid)
    except PermissionError:
        owned = os.lstat(d)[stat.ST_UID:stat.ST_GID + 1] == (st.st_uid, st.st_gid)
    os.chmod(d, stat.S_IMODE(st.st_mode) | (0 if os.geteuid() == 0 else 0o700))
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return owned


def _clean(host: str, path: str, flavour: str, moved: Moved | None) -> None:
    """Strip overlay xattrs from a moved tree and report where its non-directories went."""
    st = os.lstat(host)
    _strip(host, flavour)
    if not stat.S_ISDIR(st.st_mode):
        if moved is not None:
            moved(path, host)
        return
    for name in os.listdir(host):
        _clean(os.path.join(host, name), f"{path}/{name}", flavour, moved)


def _strip(host: str, flavour: str) -> None:
    own = f"{flavour}.overlay."
    try:
        names = os.listxattr(host, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(own) and not name.startswith(own + "overlay."):
            try:
                os.removexattr(host, name, follow_symlinks=False)
            except OSError:
                pass


def _opaque(host: str, flavour: str) -> bool:
    try:
        return os.getxattr(host, f"{flavour}.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(host: str) -> None:
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(host)
    else:
        os.unlink(host)
