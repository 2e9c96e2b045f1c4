"""User-namespace id maps: which on-disk ids the ids inside a rootless sandbox land on.

In a user namespace, root inside is the caller outside. When `newuidmap`/`newgidmap` exist and
/etc/subuid and /etc/subgid grant the caller ranges, in-container ids 1.. are mapped onto those
ranges in file order, so ``chown 1000 f`` inside leaves ``f`` owned on disk by
``subuid_start + 999``. Whoever writes a layer from such a rootfs must map every on-disk id back
with `IdMap.to_container` (0 for the caller, ``on_disk - start + 1`` within the first range).
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
from dataclasses import dataclass

from ocibuild.errors import SandboxError

OVERFLOW_ID = 65534  # what the kernel shows for an id outside every map ("nobody")


@dataclass(frozen=True)
class IdRange:
    """`count` ids from `inside` in the namespace are `outside` ... on the host."""

    inside: int
    outside: int
    count: int


@dataclass(frozen=True)
class IdMap:
    """One direction of a user namespace's map (uids or gids); empty means the identity."""

    ranges: tuple[IdRange, ...] = ()

    @property
    def identity(self) -> bool:
        return not self.ranges

    def to_container(self, on_disk: int) -> int:
        """The id a file owned by `on_disk` has inside the sandbox (65534 when unmapped)."""
        if self.identity:
            return on_disk
        for r in self.ranges:
            if r.outside <= on_disk < r.outside + r.count:
                return r.inside + on_disk - r.outside
        return OVERFLOW_ID

    def to_host(self, inside: int) -> int | None:
        """The on-disk id of in-container id `inside`, or None when the map does not cover it."""
        if self.identity:
            return inside
        for r in self.ranges:
            if r.inside <= inside < r.inside + r.count:
                return r.outside + inside - r.inside
        return None

    def lines(self) -> list[str]:
        """The map as /proc/<pid>/uid_map lines."""
        return [f"{r.inside} {r.outside} {r.count}" for r in self.ranges]


@dataclass(frozen=True)
class IdMaps:
    """Both maps of one user namespace, plus whether setgroups(2) is allowed inside."""

    uid: IdMap = IdMap()
    gid: IdMap = IdMap()

    @property
    def identity(self) -> bool:
        """True when on-disk ids are the image's ids (the root sandbox)."""
        return self.uid.identity and self.gid.identity

    @property
    def setgroups(self) -> bool:
        # With a single-id gid map the kernel requires setgroups to be denied before writing it.
        return self.gid.identity or len(self.gid.ranges) > 1


def subordinate_ranges(path: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges /etc/subuid or /etc/subgid grants to `uid` (by name or number)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    ranges = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in (name, str(uid)) and fields[1].isdigit() and fields[2].isdigit():
            ranges.append((int(fields[1]), int(fields[2])))
    return ranges


def rootless_maps(uid: int, gid: int, *, use_subids: bool = True) -> IdMaps:
    """The maps a rootless sandbox of `uid`/`gid` gets: root -> caller, 1.. -> the subordinate ranges.

    Subordinate ranges are used only when both newuidmap and newgidmap are installed and both
    files grant ranges; otherwise only root is mapped (a RUN step then cannot switch user).
    """
    uids, gids = [IdRange(0, uid, 1)], [IdRange(0, gid, 1)]
    sub_u = subordinate_ranges("/etc/subuid", uid) if use_subids else []
    sub_g = subordinate_ranges("/etc/subgid", uid) if use_subids else []
    if sub_u and sub_g and shutil.which("newuidmap") and shutil.which("newgidmap"):
        uids += _chain(sub_u)
        gids += _chain(sub_g)
    return IdMaps(IdMap(tuple(uids)), IdMap(tuple(gids)))


def _chain(ranges: list[tuple[int, int]]) -> list[IdRange]:
    inside, out = 1, []
    for start, count in ranges:
        out.append(IdRange(inside, start, count))
        inside += count
    return out


def apply_maps(pid: int, maps: IdMaps) -> None:
    """Write `maps` for process `pid`, which has just entered a new user namespace.

    Ranges need the setuid helpers newuidmap/newgidmap; a single id is written directly (and
    setgroups is denied first, as the kernel requires of an unprivileged writer).
    """
    try:
        if len(maps.uid.ranges) > 1:
            _helper("newuidmap", pid, maps.uid)
            _helper("newgidmap", pid, maps.gid)
            return
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write("\n".join(maps.uid.lines()) + "\n")
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write("\n".join(maps.gid.lines()) + "\n")
    except OSError as e:
        raise SandboxError(f"write the user namespace id map of process {pid}: {e.strerror}") from e


def _helper(tool: str, pid: int, idmap: IdMap) -> None:
    args = [str(n) for r in idmap.ranges for n in (r.inside, r.outside, r.count)]
    proc = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SandboxError(f"{tool} {pid} {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
