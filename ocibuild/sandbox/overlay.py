"""Whether the namespace sandboxes can give a RUN step an overlayfs, and overlay housekeeping.

With an overlay, a RUN step's changes land in a fresh upper directory over read-only lower
ones, so the layer costs what changed rather than a copy and a scan of the whole rootfs. As
root the kernel's overlayfs keeps its metadata in `trusted.overlay.*`; in a user namespace
(Linux 5.11+) it mounts with `userxattr` and uses `user.overlay.*`. proot cannot mount
anything, so its runs use the copy-and-compare path.

The sandbox probe (`choose.probe`, one helper process per kind) also tries an overlay, in the
temporary directory (where a build's scratch space lives): the mount itself, and that a
deletion and a directory made again show up in the upper directory as a whiteout and an opaque
directory, as the layer code reads them (`check`).
`OCIBUILD_NO_OVERLAY=1` turns overlays off (to compare both paths, or to work around a kernel).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import Iterator

DISABLE_ENV = "OCIBUILD_NO_OVERLAY"


def disabled() -> str | None:
    """Why overlays are off by request, or None."""
    return f"{DISABLE_ENV} is set" if os.environ.get(DISABLE_ENV, "") not in ("", "0") else None


@contextlib.contextmanager
def probe_dir() -> Iterator[str]:
    """A directory for the sandbox probe's overlay test (see `_child.probe`), removed after."""
    d = tempfile.mkdtemp(prefix=".ocibuild-overlay-probe-")
    try:
        for sub in ("l/d/x", "u", "w", "m"):
            os.makedirs(os.path.join(d, sub))
        open(os.path.join(d, "l", "f"), "w").close()
        yield d
    finally:
        remove(d)


def check(probe: str, kind: str) -> tuple[str | None, str]:
    """(flavour, "") when the probe's overlay test in `probe` left what the layer code reads."""
    return _check_upper(os.path.join(probe, "u"), "user" if kind == "userns" else "trusted")


def _check_upper(upper: str, flavour: str) -> tuple[str | None, str]:
    try:
        st = os.lstat(os.path.join(upper, "f"))
    except OSError:
        st = None
    if st is None or not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
        return None, "overlayfs wrote no whiteout device for a deleted file"
    try:
        opaque = os.getxattr(os.path.join(upper, "d"), f"{flavour}.overlay.opaque")
    except OSError:
        opaque = b""
    if opaque != b"y":
        return None, f"overlayfs did not mark a directory made again with {flavour}.overlay.opaque"
    return flavour, ""


def remove(path: str) -> None:
    """Remove a tree holding an overlay work directory, best effort: overlayfs leaves
    `work/work` mode 000, which an unprivileged owner must open before it can empty it.
    For small trees (work directories, the probe's), since it walks them twice."""
    for top, dirs, _ in os.walk(path):
        for name in dirs:
            try:
                os.chmod(os.path.join(top, name), 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
