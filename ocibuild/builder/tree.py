"""A stage's filesystem as an in-memory tree of tar entries.

COPY-only builds never need a root filesystem on disk: the tree knows every path's metadata
and where its bytes live (a host file or inline data), which is all that COPY destination
resolution, `--chown` name lookup, `COPY --from` and the rootfs outputs need.
Paths are relative POSIX paths without a leading slash; the root directory is "".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from ocibuild.errors import BuildError
from ocibuild.layer.entry import Kind, TarEntry

MAX_SYMLINKS = 40  # as Linux's path resolution


def clean(path: str) -> str:
    """Normalise an in-image path to tree form: "/a/./b/../c/" -> "a/c"; ".." never leaves the root."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def parent(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> list[str]:
    """The directories above ``path``, outermost first, excluding the root: "a/b/c" -> ["a", "a/b"]."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class Tree:
    """Path -> TarEntry, with a child index so subtrees can be walked without scanning everything."""

    def __init__(self, entries: Iterable[TarEntry] = ()):
        self._nodes: dict[str, TarEntry] = {}
        self._children: dict[str, set[str]] = {"": set()}
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, path: str) -> bool:
        return path == "" or path in self._nodes

    def get(self, path: str) -> TarEntry | None:
        return self._nodes.get(path)

    def is_dir(self, path: str) -> bool:
        node = self._nodes.get(path)
        return path == "" or (node is not None and node.kind is Kind.DIR)

    def copy(self) -> "Tree":
        other = Tree()
        other._nodes = dict(self._nodes)
        other._children = {k: set(v) for k, v in self._children.items()}
        return other

    def put(self, entry: TarEntry) -> None:
        """Add or replace an entry; a non-directory replacing a directory removes its subtree."""
        path = entry.path
        old = self._nodes.get(path)
        if old is not None and old.kind is Kind.DIR and entry.kind is not Kind.DIR:
            self.remove(path)
        self._add_parents(path)
        self._nodes[path] = entry
        self._children.setdefault(parent(path), set()).add(path)
        if entry.kind is Kind.DIR:
            self._children.setdefault(path, set())

    def _add_parents(self, path: str) -> None:
        """Create the missing directories above ``path`` (0755). A node's parents are always
        there, so the walk up stops at the first one present: mostly right away, when a COPY
        puts thousands of entries parents first."""
        missing = []
        d = parent(path)
        while d and d not in self._nodes:
            missing.append(d)
            d = parent(d)
        for d in reversed(missing):
            self._nodes[d] = TarEntry(path=d, kind=Kind.DIR, mode=0o755)
            self._children.setdefault(parent(d), set()).add(d)

    def children(self, path: str) -> list[str]:
        """The paths directly below ``path``, in no fixed order."""
        return list(self._children.get(path, ()))

    def remove(self, path: str) -> None:
        for child in list(self._children.pop(path, ())):
            self.remove(child)
        self._nodes.pop(path, None)
        self._children.get(parent(path), set()).discard(path)

    def walk(self, path: str = "") -> Iterator[TarEntry]:
        """Entries strictly below ``path``, parents before children, siblings in byte order."""
        for child in sorted(self._children.get(path, ()), key=lambda p: p.encode()):
            node = self._nodes[child]
            yield node
            if node.kind is Kind.DIR:
                yield from self.walk(child)

    def resolve(self, path: str, *, follow_final: bool = True) -> str:
        """Resolve symlinks as if the tree were "/": the result never leaves the tree."""
        done: list[str] = []
        todo = clean(path).split("/")[::-1] if clean(path) else []
        hops = 0
        while todo:
            name = todo.pop()
            current = "/".join(done + [name])
            node = self._nodes.get(current)
            if node is not None and node.kind is Kind.SYMLINK and (todo or follow_final):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise BuildError(f"too many levels of symbolic links resolving /{path}")
                base = "" if node.linkname.startswith("/") else "/".join(done)
                target = clean(f"{base}/{node.linkname}")
                todo.extend(reversed(target.split("/")) if target else [])
                done = []
                continue
            done.append(name)
        return "/".join(done)

    def read(self, path: str) -> bytes | None:
        """Content of a regular file (following symlinks), or None when there is none."""
        node = self._nodes.get(self.resolve(path))
        if node is None or node.kind is not Kind.FILE:
            return None
        if node.data is not None:
            return node.data
        if node.source is None:
            return b""
        with open(node.source, "rb") as f:
            return f.read()


def moved(entry: TarEntry, path: str, **changes) -> TarEntry:
    """A copy of ``entry`` at another path (hardlink targets are remapped by the caller)."""
    return replace(entry, path=path, **changes)
