"""`choose(kind)`: the best sandbox this process may use, or an error naming what is missing.

"auto" prefers root (euid 0 and namespaces allowed), then a user namespace (rootless), then
proot. The probes start the helper once per process and kind, and are cached; the same run
finds out whether RUN steps can use overlayfs (see `overlay`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from ocibuild.errors import SandboxError

from ocibuild.sandbox import overlay
from ocibuild.sandbox.ids import rootless_maps
from ocibuild.sandbox.spec import Sandbox

if TYPE_CHECKING:
    from ocibuild.sandbox.proot import ProotSandbox

# The sandboxes themselves (namespaces.py, proot.py and what they import) are loaded by the
# functions below, when a build first has a RUN step: a COPY-only build never needs them.

PROBE_NO_OVERLAY = 3  # _child.PROBE_NO_OVERLAY: namespaces work, overlayfs does not
KINDS = ("auto", "root", "userns", "proot")


def probe(kind: str) -> str | None:
    """None when namespaces of `kind` ("root" or "userns") work here, else the reason."""
    return _probe(kind, overlay.disabled() is None)[0]


def overlay_support(kind: str) -> tuple[str | None, str]:
    """(flavour, "") when a `kind` sandbox can run steps on overlayfs, else (None, why not)."""
    why_not = overlay.disabled()
    if why_not:
        return None, why_not
    return _probe(kind, True)[1:]


@functools.cache
def _probe(kind: str, with_overlay: bool) -> tuple[str | None, str | None, str]:
    """(why namespaces fail or None, overlay flavour or None, why no overlay): one helper run."""
    from ocibuild.sandbox.namespaces import CHILD  # loaded on first use: see the top of the module

    with overlay.probe_dir() as d:
        argv = [sys.executable, "-S", "-E", "-s", CHILD, "--probe", kind] + ([d] if with_overlay else [])
        proc = subprocess.run(argv, capture_output=True, text=True, env={}, cwd="/")
        reason = proc.stderr.strip()
        if proc.returncode == 0 and with_overlay:
            return (None, *overlay.check(d, kind))
        if proc.returncode in (0, PROBE_NO_OVERLAY):
            return None, None, f"overlayfs refused: {reason}" if reason else "not tried"
        return reason or f"the namespace probe exited {proc.returncode}", None, ""


def choose(kind: str = "auto") -> Sandbox:
    """The sandbox of `kind` ("auto", "root", "userns", "proot"); SandboxError when impossible."""
    if kind not in KINDS:
        raise SandboxError(f"unknown sandbox {kind!r}: expected one of {', '.join(KINDS)}")
    makers = {"root": _root, "userns": _userns, "proot": _proot}
    if kind != "auto":
        sandbox, why_not = makers[kind]()
        if sandbox is None:
            raise SandboxError(f"the {kind} sandbox is not available: {why_not}")
        return sandbox
    reasons = []
    for name in ("root", "userns", "proot") if os.geteuid() == 0 else ("userns", "proot"):
        sandbox, why_not = makers[name]()
        if sandbox is not None:
            return sandbox
        reasons.append(f"{name}: {why_not}")
    raise SandboxError("no way to run RUN steps here: " + "; ".join(reasons))


def _fallback() -> ProotSandbox | None:
    """proot, for a foreign platform that no binfmt_misc handler serves."""
    from ocibuild.sandbox.proot import ProotSandbox

    return ProotSandbox("proot -q: no binfmt_misc handler for this platform") if shutil.which("proot") else None


def _root() -> tuple[Sandbox | None, str]:
    if os.geteuid() != 0:
        return None, f"needs root (running as uid {os.geteuid()})"
    why_not = probe("root")
    if why_not:
        return None, f"namespaces are refused ({why_not})"
    flavour, why = _overlay("root", "as root, in new mount/pid/uts/ipc namespaces")
    from ocibuild.sandbox.namespaces import NamespaceSandbox

    return NamespaceSandbox("root", why, userns=False, fallback=_fallback(), overlay=flavour), ""


def _userns() -> tuple[Sandbox | None, str]:
    why_not = probe("userns")
    if why_not:
        return None, (f"user namespaces are refused ({why_not}; see sysctl "
                      "kernel.unprivileged_userns_clone and user.max_user_namespaces)")
    ids = rootless_maps(os.geteuid(), os.getegid())
    if len(ids.uid.ranges) > 1:
        sub = ids.uid.ranges[1]
        why = (f"rootless, in a user namespace (root = uid {os.geteuid()}, "
               f"ids 1-{sub.count} = {sub.outside}-{sub.outside + sub.count - 1})")
    else:
        why = ("rootless, in a user namespace that maps only root (no /etc/subuid range or no "
               "newuidmap): RUN steps cannot switch to another user")
    flavour, why = _overlay("userns", why)
    from ocibuild.sandbox.namespaces import NamespaceSandbox

    return NamespaceSandbox("userns", why, userns=True, ids=ids, fallback=_fallback(), overlay=flavour), ""


def _overlay(kind: str, why: str) -> tuple[str | None, str]:
    """The overlay flavour for `kind`, and `why` saying how RUN layers are taken."""
    flavour, why_not = overlay_support(kind)
    if flavour is None:
        return None, f"{why}; layers by copy and compare, without overlayfs: {why_not}"
    return flavour, f"{why}; layers from an overlayfs upper directory"


def _proot() -> tuple[Sandbox | None, str]:
    if not shutil.which("proot"):
        return None, "proot is not installed (apt-get install proot)"
    from ocibuild.sandbox.proot import ProotSandbox

    return ProotSandbox(), ""
