"""The little the frontend needs to know about ``RUN --mount=`` values.

A mount is a CSV list of ``key=value`` fields (``type=cache,target=/root/.cache``). The
builder interprets the fields; the frontend only needs ``from=`` (a stage dependency) and
BuildKit's expansion rule: every value is expanded against the stage, but ``from`` must not
contain a variable, because the stage graph is fixed before any stage runs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from ocibuild.errors import DockerfileError

__all__ = ["check_mount", "expand_mount", "mount_fields", "mount_from"]


def mount_fields(spec: str) -> list[tuple[str, str | None]]:
    """``[(key, value-or-None), ...]`` in order; keys lower-cased as BuildKit does."""
    try:
        rows = list(csv.reader(io.StringIO(spec), skipinitialspace=False, strict=True))
    except csv.Error as exc:
        raise DockerfileError(f"failed to parse csv mounts: {exc}") from None
    fields = rows[0] if rows else []
    out: list[tuple[str, str | None]] = []
    for field in fields:
        key, eq, value = field.partition("=")
        out.append((key.lower(), value if eq else None))
    return out


def mount_from(spec: str) -> str | None:
    """The ``from=`` value of a mount, or None."""
    for key, value in mount_fields(spec):
        if key == "from" and value is not None:
            return value
    return None


def check_mount(spec: str) -> None:
    """Refuse what BuildKit refuses when parsing: a variable in ``from``."""
    source = mount_from(spec)
    if source is not None:
        idx = source.find("$")
        if idx != -1 and idx != len(source) - 1:
            raise DockerfileError("'from' doesn't support variable expansion, define alias stage instead")


def expand_mount(spec: str, expand: Callable[[str], str]) -> str:
    """The mount with every value expanded, written back as CSV."""
    fields = []
    for key, value in mount_fields(spec):
        fields.append(key if value is None else f"{key}={expand(value)}")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()
