"""A directory seen as "/": path lookups that resolve symlinks inside it and can never leave it.

Every lookup walks the path one component at a time from a file descriptor of the root, opening
each directory with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's descriptor. A symlink
met on the way is read and resolved by hand: an absolute target restarts from the root, ".."
pops the walk's own stack (and stays put at the root). The kernel therefore never follows a
symlink for us, so neither a hostile symlink nor one swapped in behind our back can lead outside.
Callers then act on the final name relative to the returned directory descriptor (``dir_fd=``,
``O_NOFOLLOW``), never through a path string.

This is the containment umoci gets from its "unpriv" helpers and containerd from fs.RootPath,
done with descriptors instead of re-checked path strings.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from typing import Callable, Sequence

MAX_SYMLINKS = 255  # per lookup, as the kernel's own limit is 40 per path; generous but finite
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ScopeError(Exception):
    """A lookup failed for a reason the caller reports in its own words (see `reason`)."""

    def __init__(self, reason: str, path: str):
        super().__init__(f"{reason}: {path!r}")
        self.reason, self.path = reason, path


class Scope:
    """Lookups inside `root`. Use as a context manager or call `close()`; not thread-safe.

    `made(fd, path)` is called for each directory `lookup(create=True)` had to create, with a
    descriptor of it and its resolved path, so the caller can fix its mode and record it.
    """

    def __init__(self, root: str, made: Callable[[int, str], None] | None = None):
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._made = made
        self._last: tuple[tuple[str, ...], int, list[str]] | None = None  # the lookup cache

    def close(self) -> None:
        self.forget()
        os.close(self.fd)

    def __enter__(self) -> "Scope":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def forget(self) -> None:
        """Drop the lookup cache; call it after removing anything from the tree."""
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def lookup(self, parts: Sequence[str], *, create: bool = False) -> tuple[int, list[str]]:
        """Open the directory that `parts` names, resolved in scope; the caller closes the fd.

        Returns the descriptor and the resolved components (no symlinks, no "..": the directory's
        real place under the root). Missing directories are created (mode 0755 before `made`)
        when `create` is set, else FileNotFoundError is raised. Raises ScopeError when a
        component is neither a directory nor a symlink, or when symlinks nest too deep.
        """
        key = tuple(parts)
        if self._last is not None and self._last[0] == key:
            return os.dup(self._last[1]), list(self._last[2])
        fd, resolved = self._walk(parts, create)
        self.forget()
        self._last = (key, os.dup(fd), list(resolved))
        return fd, resolved

    def _walk(self, parts: Sequence[str], create: bool) -> tuple[int, list[str]]:
        stack, names = [os.dup(self.fd)], []
        todo = list(reversed(parts))
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if names:
                        os.close(stack.pop())
                        names.pop()
                    continue
                fd, target = self._step(stack[-1], part, names, create)
                if target is None:
                    stack.append(fd)
                    names.append(part)
                    continue
                links += 1
                if links > MAX_SYMLINKS:
                    raise ScopeError("too many levels of symbolic links", "/".join(names + [part]))
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                todo.extend(reversed(target.split("/")))
            return stack.pop(), names
        finally:
            for fd in stack:
                os.close(fd)

    def _step(self, dirfd: int, part: str, names: list[str], create: bool) -> tuple[int, str | None]:
        """Open directory `part` of `dirfd`: (fd, None), or (-1, target) when it is a symlink."""
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=dirfd), None
        except FileNotFoundError:
            if not create:
                raise
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not stat.S_ISLNK(os.stat(part, dir_fd=dirfd, follow_symlinks=False).st_mode):
                raise ScopeError("not a directory", "/".join(names + [part])) from None
            return -1, os.readlink(part, dir_fd=dirfd)
        os.mkdir(part, 0o755, dir_fd=dirfd)
        fd = os.open(part, _DIR_FLAGS, dir_fd=dirfd)
        if self._made is not None:
            self._made(fd, "/".join(names + [part]))
        return fd, None


def lstat_at(dirfd: int, name: str) -> os.stat_result | None:
    """lstat of `name` in `dirfd`, or None when there is nothing there."""
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(dirfd: int, name: str, info: os.stat_result) -> None:
    """Remove `name` (lstat `info`) from `dirfd`: a directory with everything in it, never
    following a symlink (shutil.rmtree's descriptor-based walk)."""
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dirfd)
    else:
        os.unlink(name, dir_fd=dirfd)
