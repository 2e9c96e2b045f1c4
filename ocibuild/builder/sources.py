"""Where COPY and ADD read from: the build context, or another stage's or image's tree.

Both are seen through one small protocol, ``SourceFS``. The context is read lazily (only the
paths an instruction names are scanned) and never outside its root: a symlink whose target
leaves the context is copied as a link, never followed.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator
from typing import Protocol

from ocibuild.builder.tree import Tree, clean
from ocibuild.errors import ContextError
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.tree import entry_from_stat, scan

WILDCARDS = "*?["


class SourceFS(Protocol):
    def lookup(self, path: str) -> TarEntry | None: ...
    def list_dir(self, path: str) -> list[str]: ...
    def resolve(self, path: str, *, follow_final: bool = True) -> str: ...
    def walk(self, path: str) -> Iterator[TarEntry]: ...


class TreeFS:
    """A stage's or image's tree as a copy source."""

    def __init__(self, tree: Tree):
        self.tree = tree

    def lookup(self, path: str) -> TarEntry | None:
        if path == "":
            return TarEntry(path="", kind=Kind.DIR, mode=0o755)
        return self.tree.get(path)

    def list_dir(self, path: str) -> list[str]:
        return [e.path.rpartition("/")[2] for e in self.tree.walk(path) if e.path.rpartition("/")[0] == path]

    def resolve(self, path: str, *, follow_final: bool = True) -> str:
        return self.tree.resolve(path, follow_final=follow_final)

    def walk(self, path: str) -> Iterator[TarEntry]:
        return self.tree.walk(path)


class ContextFS:
    """A directory on the host seen through an exclusion predicate (.dockerignore).

    Its entries carry no xattrs: files from a build context never bring theirs into a layer
    (copy.py), so reading them would only cost a syscall per path. Its files carry the stat
    of the scan as their `source_id`: the context is taken not to change during the build.
    """

    def __init__(self, root: str, excluded: Callable[[str], bool] | None = None,
                 may_reinclude: Callable[[str], bool] | None = None):
        self.root = os.path.realpath(root)
        self._prefix = os.path.join(self.root, "")  # root + "/", computed once: joined for every path
        self._excluded = excluded or (lambda p: False)
        self._may_reinclude = may_reinclude or (lambda p: False)
        self._hardlinks: dict = {}
        self._scans: dict[str, list[tuple[str, os.stat_result]]] = {}

    def _host(self, path: str) -> str:
        return self._prefix + path if path else self.root

    def lookup(self, path: str) -> TarEntry | None:
        if path and self._excluded(path):
            return None
        try:
            info = os.lstat(self._host(path))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ContextError(f"cannot read {path or '.'!r} in the build context: {e.strerror}") from None
        return self._entry(path, info)

    def list_dir(self, path: str) -> list[str]:
        try:
            names = os.listdir(self._host(path))
        except (NotADirectoryError, FileNotFoundError):
            return []
        return sorted(n for n in names if not self._excluded(f"{path}/{n}" if path else n))

    def resolve(self, path: str, *, follow_final: bool = True) -> str:
        """Resolve symlinks inside the context; a link whose target leaves it stays unresolved."""
        done: list[str] = []
        todo = [p for p in clean(path).split("/") if p][::-1]
        for _ in range(40 * 8):
            if not todo:
                return "/".join(done)
            name = todo.pop()
            current = "/".join(done + [name])
            host = self._host(current)
            if os.path.islink(host) and (todo or follow_final):
                target = os.readlink(host)
                joined = posixpath.normpath(posixpath.join("/".join(done), target))
                if target.startswith("/") or joined == ".." or joined.startswith("../"):
                    if todo:  # a directory outside the context: nothing below it can be read
                        raise ContextError(f"{path!r} leads outside the build context through {current!r}")
                    return current
                todo.extend(p for p in reversed(clean(joined).split("/")) if p)
                done = []
                continue
            done.append(name)
        raise ContextError(f"too many levels of symbolic links in the build context resolving {path!r}")

    def walk(self, path: str) -> Iterator[TarEntry]:
        hardlinks: dict = {}
        for rel, info in self.scan(path):
            yield self._entry(rel, info, hardlinks)

    def _entry(self, path: str, info: os.stat_result, hardlinks: dict | None = None) -> TarEntry:
        entry = entry_from_stat(path, self._host(path), info, hardlinks=hardlinks, xattrs=False)
        if entry.kind is Kind.FILE:
            entry.source_id = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        return entry

    def scan(self, path: str) -> list[tuple[str, os.stat_result]]:
        """``(relpath, lstat)`` of everything below ``path`` that .dockerignore leaves in. Read
        once per build: the cache key and the layer of a COPY both need it (the context is
        taken not to change while it is built from)."""
        def include(rel: str, is_dir: bool):
            if not self._excluded(rel):
                return True
            return "prune" if not (is_dir and self._may_reinclude(rel)) else False

        if path not in self._scans:
            self._scans[path] = list(scan(self.root, rel=path, include=include))
        return self._scans[path]


def glob(fs: SourceFS, pattern: str, match: Callable[[str, str], bool]) -> list[str]:
    """Paths of ``fs`` matching ``pattern`` component by component (`*` never crosses `/`)."""
    parts = [p for p in clean(pattern).split("/") if p]
    found = [""]
    for part in parts:
        nxt: list[str] = []
        for base in found:
            here = fs.resolve(base) if base else ""
            if not any(c in part for c in WILDCARDS):
                names = [part] if fs.lookup(f"{here}/{part}" if here else part) else []
            else:
                names = [n for n in fs.list_dir(here) if match(part, n)]
            nxt.extend(f"{base}/{n}" if base else n for n in names)
        found = nxt
    return sorted(found, key=lambda p: p.encode())
