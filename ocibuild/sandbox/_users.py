"""Resolve a Dockerfile USER ("name", "uid", "uid:gid", "name:group") from the image's own files.

Standard library only (run inside the sandbox helper, after pivot_root, so /etc is the image's).
Follows runc's user.GetExecUser, which BuildKit uses: a numeric uid need not exist in
/etc/passwd (its group is then 0 and its home "/"), a name must; supplementary groups are the
/etc/group entries that list the user, unless a group was given explicitly.
"""

from __future__ import annotations



class UnknownUser(Exception):
    """The user or group is not in the image's /etc/passwd or /etc/group."""


class ExecUser:
    """Who the command runs as. A plain class: importing dataclasses would cost the helper ~25 ms."""

    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: tuple[int, ...], home: str):
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


def _entries(path: str, width: int) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    rows = [line.split(":") for line in lines if line and not line.startswith("#")]
    return [row + [""] * (width - len(row)) for row in rows if len(row) >= 3]


def resolve_user(spec: str, etc: str = "/etc") -> ExecUser:
    """The ids for `spec` ("" means root); raises UnknownUser with Docker's wording."""
    name, _, group = (spec or "0").partition(":")
    passwd = _entries(f"{etc}/passwd", 7)
    entry = next((row for row in passwd if row[0] == name or (name.isdigit() and row[2] == name)), None)
    if entry is None and not name.isdigit():
        raise UnknownUser(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(name) if entry is None else int(entry[2])
    gid = 0 if entry is None else int(entry[3] or 0)
    home = (entry[5] if entry is not None else "") or "/"
    groups_db = _entries(f"{etc}/group", 4)
    if group:
        row = next((r for r in groups_db if r[0] == group or (group.isdigit() and r[2] == group)), None)
        if row is None and not group.isdigit():
            raise UnknownUser(f"unable to find group {group}: no matching entries in group file")
        gid = int(group) if row is None else int(row[2])
        return ExecUser(uid, gid, (gid,), home)
    user_name = entry[0] if entry is not None else None
    extra = [int(r[2]) for r in groups_db if user_name and user_name in r[3].split(",") and r[2].isdigit()]
    return ExecUser(uid, gid, tuple(dict.fromkeys([gid, *extra])), home)
