"""`require(...)`: a test's prerequisites, skipped locally but failed under CI.

A developer without skopeo or root should still be able to run the rest of the suite, so a
missing prerequisite skips the test. CI runs on a machine that `make deps` provisioned, so there
a missing prerequisite is a broken setup and must fail loudly (CI=true: a skip is a failure).

Names understood by `require`: any program on PATH (``"skopeo"``, ``"umoci"``, ...), plus the
conditions in `CONDITIONS`: ``root``, ``binfmt`` (QEMU registered for every foreign architecture
we build: arm64 and arm), ``binfmt:<arch>`` for one of them, and ``registry`` (a local
`docker-registry` binary that a test may start on 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# The QEMU handler name that Debian's qemu-user-static registers for each OCI architecture.
QEMU_HANDLERS = {"arm64": "qemu-aarch64", "arm": "qemu-arm", "amd64": "qemu-x86_64",
                 "ppc64le": "qemu-ppc64le", "s390x": "qemu-s390x", "riscv64": "qemu-riscv64"}


def under_ci() -> bool:
    """True when running under CI (``CI=true``), where a missing prerequisite is a failure."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (running as uid %d)" % os.geteuid()


def _binfmt(arch: str) -> str | None:
    handler = QEMU_HANDLERS.get(arch)
    if handler is None:
        return f"no QEMU handler known for architecture {arch!r}"
    entry = BINFMT_DIR / handler
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return f"binfmt_misc has no {handler} entry ({entry}); run `make deps` as root"
    return None if enabled else f"binfmt_misc entry {entry} is disabled"


def _all_binfmt() -> str | None:
    missing = [why for why in (_binfmt("arm64"), _binfmt("arm")) if why]
    return "; ".join(missing) or None


def _registry() -> str | None:
    return None if shutil.which("docker-registry") else "docker-registry is not installed (make deps)"


CONDITIONS: dict[str, Callable[[], str | None]] = {
    "root": _root,
    "binfmt": _all_binfmt,
    "registry": _registry,
}


def missing(name: str) -> str | None:
    """Why `name` is unavailable here, or None when it is available. Pure: never skips."""
    if name in CONDITIONS:
        return CONDITIONS[name]()
    if name.startswith("binfmt:"):
        return _binfmt(name.split(":", 1)[1])
    return None if shutil.which(name) else f"{name} is not on PATH (make deps installs it)"


def require(*names: str) -> None:
    """Skip the calling test (fail it under CI=true) unless every prerequisite in `names` holds."""
    reasons = [why for why in map(missing, names) if why]
    if not reasons:
        return
    message = "; ".join(reasons)
    if under_ci():
        pytest.fail(f"prerequisite missing under CI=true (a skip counts as a failure): {message}",
                    pytrace=False)
    pytest.skip(message)
