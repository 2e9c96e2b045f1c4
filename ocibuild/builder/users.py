"""User and group names resolved from a stage's /etc/passwd and /etc/group, as Docker does."""

from __future__ import annotations

from ocibuild.builder.tree import Tree
from ocibuild.errors import BuildError

MAX_ID = 2**32 - 2  # uid_t; 2**32-1 is the kernel's "no id"


def resolve_owner(spec: str, tree: Tree) -> tuple[int, int]:
    """`--chown` / USER value -> (uid, gid).

    Numbers are taken as they are; names are looked up in the stage's files. A user without a
    group gets their primary group from /etc/passwd when named, else the same number as the uid.
    """
    user, sep, group = spec.partition(":")
    if not user:
        raise BuildError(f"invalid user {spec!r}")
    uid, primary_gid = _lookup_user(user, tree)
    if sep and group:
        gid = _lookup_group(group, tree)
    else:
        gid = primary_gid if primary_gid is not None else uid
    return uid, gid


def _number(value: str) -> int | None:
    if value.isdigit():
        n = int(value)
        if n > MAX_ID:
            raise BuildError(f"id {value} is out of range")
        return n
    return None


def _lookup_user(name: str, tree: Tree) -> tuple[int, int | None]:
    n = _number(name)
    if n is not None:
        return n, None
    for fields in _records(tree, "etc/passwd", "user", name):
        if len(fields) >= 4 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    raise BuildError(f"unable to find user {name}: no matching entries in passwd file")


def _lookup_group(name: str, tree: Tree) -> int:
    n = _number(name)
    if n is not None:
        return n
    for fields in _records(tree, "etc/group", "group", name):
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise BuildError(f"unable to find group {name}: no matching entries in group file")


def _records(tree: Tree, path: str, what: str, name: str) -> list[list[str]]:
    data = tree.read(path)
    if data is None:
        kind = "passwd" if what == "user" else "group"
        raise BuildError(f"unable to find {what} {name}: no /{path} ({kind} file) in the image")
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines() if line and line[0] != "#"]
