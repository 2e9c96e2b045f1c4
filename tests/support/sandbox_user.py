"""Run the sandbox as an unprivileged user, from a test that runs as root.

`ensure_user()` creates ``ocibuild-test`` (idempotently) with a /etc/subuid and /etc/subgid
range. The venv and its Python live under /root, which that user cannot read, so
`UserRunner` copies the ocibuild package (only what the sandbox imports: standard library
code) and `sandbox_runner.py` into a world-readable temporary directory and runs them with a
Python the user can execute (this one when its files are readable, else /usr/bin/python3).
"""

from __future__ import annotations

import fcntl
import json
import sys
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "ocibuild-test"
SUB_COUNT = 65536
REPO = Path(__file__).resolve().parents[2]
PACKAGE_PARTS = ("__init__.py", "errors.py", "oci", "sandbox")


@dataclass(frozen=True)
class TestUser:
    name: str
    uid: int
    gid: int
    subuid: int     # first subordinate uid (in-container uid 1)
    subgid: int


def ensure_user() -> TestUser:
    """The unprivileged test user with subordinate id ranges; created when missing. Needs root.

    Serialised with a lock: pytest-xdist workers may ask at the same time."""
    with open("/run/lock/ocibuild-test-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry = pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(USER)
        subuid = _ensure_range("/etc/subuid")
        subgid = _ensure_range("/etc/subgid")
    return TestUser(USER, entry.pw_uid, entry.pw_gid, subuid, subgid)


def _ensure_range(path: str) -> int:
    """The start of USER's range in `path`, adding one after every existing range if it has none."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        lines = []
    ranges = [line.split(":") for line in lines if line.count(":") == 2]
    for name, start, _ in ranges:
        if name == USER:
            return int(start)
    end = max([100000] + [int(s) + int(c) for _, s, c in ranges if s.isdigit() and c.isdigit()])
    start = max(end, 200000)
    with open(path, "a") as f:
        f.write(f"{USER}:{start}:{SUB_COUNT}\n")
    return start


def _python_for(uid: int) -> str:
    """A Python `uid` can run: ours if every directory on its way is world-searchable."""
    real = Path(os.path.realpath(shutil.which("python3") or "/usr/bin/python3"))
    ours = Path(os.path.realpath(sys.executable))
    for candidate in (ours, real, Path("/usr/bin/python3")):
        if all(p.stat().st_mode & stat.S_IXOTH for p in candidate.parents) and candidate.exists():
            return str(candidate)
    raise RuntimeError("no Python interpreter readable by an unprivileged user")


class UserRunner:
    """Copies the package once, then runs sandbox requests as the test user."""

    def __init__(self, user: TestUser):
        self.user = user
        self.dir = Path(tempfile.mkdtemp(prefix="ocibuild-sandbox-user-"))
        os.chmod(self.dir, 0o755)
        pkg = self.dir / "ocibuild"
        pkg.mkdir()
        for part in PACKAGE_PARTS:
            src = REPO / "ocibuild" / part
            if src.is_dir():
                shutil.copytree(src, pkg / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, pkg / part)
        shutil.copy2(Path(__file__).with_name("sandbox_runner.py"), self.dir / "sandbox_runner.py")
        subprocess.run(["chmod", "-R", "a+rX", str(self.dir)], check=True)
        self.python = _python_for(user.uid)

    def run(self, request: dict) -> dict:
        argv = ["runuser", "-u", self.user.name, "--", "env", "-i", f"PYTHONPATH={self.dir}",
                "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp",
                self.python, "-B", str(self.dir / "sandbox_runner.py")]
        proc = subprocess.run(argv, input=json.dumps(request), capture_output=True, text=True, cwd="/")
        if proc.returncode != 0:
            raise RuntimeError(f"sandbox runner as {self.user.name} failed: {proc.stderr}")
        return json.loads(proc.stdout)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
