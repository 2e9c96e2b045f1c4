"""The data model of a layer: one `TarEntry` per tar member, in layer coordinates.

A `TarEntry` says what a member *is* (path, kind, owner, mode, time, link target, device
numbers, xattrs) and where its bytes come from (`source`, a host file opened only when the
tar is written, or `data`, bytes held in memory). It never holds an open file.

Paths are relative POSIX paths inside the layer: no leading "/" or "./", no trailing "/",
no "." or ".." components, never empty (the layer root has no entry). `check_path` enforces
that; the tar writer calls it for every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    """What a tar member is. HARDLINK is a second name for an earlier member of the same layer."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


@dataclass(slots=True)
class TarEntry:
    """One member of a layer tar.

    `mode` holds permission bits only (07777, setuid/setgid/sticky included), never type bits.
    `mtime` is whole seconds. `size` is meaningful for FILE only. `linkname` is the target of a
    SYMLINK as stored, or for a HARDLINK the layer path of the member it links to.
    A FILE's content is `data` when set, else the bytes of the host file `source` (which must
    still be `size` bytes long when the tar is written), else empty. `source_id`, when set, is
    ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of `source` as it was scanned, by a
    reader that knows it stays so while the build uses it (the build context): what tells two
    layers apart without stating the file again.
    """

    path: str
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    source: str | None = None
    data: bytes | None = None
    source_id: tuple[int, ...] | None = field(default=None, compare=False, repr=False)


def check_path(path: str) -> str:
    """Return `path` if it is a valid layer path (see the module docstring), else raise ValueError.

    A bad path here is a bug in the caller, not bad user input: callers normalise first.
    """
    if not path or path[0] == "/" or path[-1] == "/" or "//" in path:
        raise ValueError(f"not a normalised layer path: {path!r}")
    if path[0] == "." or "/." in path:  # only then can a component be "." or ".."
        for part in path.split("/"):
            if part in (".", ".."):
                raise ValueError(f"not a normalised layer path: {path!r}")
    return path


def path_key(path: str) -> list[bytes]:
    """Sort key ordering paths as a lexical directory walk does: by components, bytewise."""
    return path.encode("utf-8", "surrogateescape").split(b"/")


def sort_entries(entries) -> list[TarEntry]:
    """Entries in walk order: a parent before its children, siblings in byte order.

    This is the order of Go's filepath.Walk over the same tree (which Docker's tar writer uses),
    so `write_tar(sort_entries(...))` lays members out as `docker build` would.
    """
    return sorted(entries, key=lambda e: path_key(e.path))
