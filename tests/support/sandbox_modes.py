"""Fixtures that run a sandbox step in each of the three modes with one interface.

`mode` is "root" (this process, as root), "userns" (as the unprivileged ``ocibuild-test`` user
through `sandbox_user.UserRunner`), or "proot" (this process, ``choose("proot")``). Import the
fixtures into a test module with ``from support.sandbox_modes import *``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from support import sandbox_rootfs
from support.require import require
from support.sandbox_user import TestUser, UserRunner, ensure_user

MODES = ("root", "userns", "proot")

__all__ = ["MODES", "Answer", "sandbox_dir", "test_user", "user_runner", "mode", "step"]


@dataclass
class Answer:
    ok: bool
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stderr_tail: str = ""
    error_type: str = ""
    error: str = ""
    uids: list = field(default_factory=list)
    gids: list = field(default_factory=list)
    why: str = ""

    def to_container_uid(self, on_disk: int) -> int:
        for inside, outside, count in self.uids or [[0, 0, 1 << 32]]:
            if outside <= on_disk < outside + count:
                return inside + on_disk - outside
        return 65534


def _in_process(kind: str, spec: dict) -> Answer:
    from ocibuild.errors import OcibuildError, RunFailed
    from ocibuild.oci.platform import Platform
    from ocibuild.sandbox import Mount, RunSpec, choose

    fields = dict(spec)
    if "platform" in fields:
        fields["platform"] = Platform.parse(fields["platform"])
    fields["mounts"] = [Mount(**m) for m in fields.get("mounts", [])]
    chunks = {"stdout": [], "stderr": []}
    fields["output"] = lambda stream, data: chunks[stream].append(data)
    answer = Answer(False, None)
    try:
        sandbox = choose(kind)
        answer.why = sandbox.why
        answer.uids = [[r.inside, r.outside, r.count] for r in sandbox.ids.uid.ranges]
        result = sandbox.run(RunSpec(**fields))
        answer.ok, answer.exit_code, answer.stderr_tail = True, result.exit_code, result.stderr_tail
    except RunFailed as e:
        answer.exit_code, answer.stderr_tail, answer.error_type, answer.error = \
            e.exit_code, e.stderr_tail, "RunFailed", str(e)
    except OcibuildError as e:
        answer.error_type, answer.error = type(e).__name__, str(e)
    answer.stdout = b"".join(chunks["stdout"]).decode()
    answer.stderr = b"".join(chunks["stderr"]).decode()
    return answer


@pytest.fixture(scope="session")
def sandbox_dir():
    """A world-searchable scratch directory (pytest's own tmp is private to root)."""
    require("root")
    path = Path(tempfile.mkdtemp(prefix="ocibuild-sandbox-tests-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def test_user() -> TestUser:
    require("root", "useradd", "runuser", "newuidmap", "newgidmap")
    return ensure_user()


@pytest.fixture(scope="session")
def user_runner(test_user):
    runner = UserRunner(test_user)
    yield runner
    runner.close()


@pytest.fixture(params=MODES)
def mode(request) -> str:
    require("root")
    if request.param == "proot":
        require("proot")
    return request.param


@pytest.fixture
def step(mode, sandbox_dir, request):
    """`step.rootfs(arch)` makes a fresh busybox rootfs owned right for the mode; `step.run(
    rootfs, argv, **spec)` runs it and returns an `Answer`."""
    return _Step(mode, sandbox_dir, request)


class _Step:
    def __init__(self, mode: str, base: Path, request):
        self.mode, self.base, self.request = mode, base, request
        self.user = request.getfixturevalue("test_user") if mode == "userns" else None

    def rootfs(self, arch: str = "amd64") -> Path:
        dest = Path(tempfile.mkdtemp(prefix=f"rootfs-{arch}-", dir=self.base))
        os.chmod(dest, 0o755)
        owner = (self.user.uid, self.user.gid) if self.user else None
        return sandbox_rootfs.fresh_copy(arch, dest, owner)

    def run(self, rootfs: Path, argv: list[str], **spec) -> Answer:
        use_subids = spec.pop("use_subids", True)
        spec = {"rootfs": str(rootfs), "argv": argv, **spec}
        if self.mode == "userns":
            runner = self.request.getfixturevalue("user_runner")
            answer = runner.run({"kind": "userns", "spec": spec, "use_subids": use_subids})
            defaults = asdict(Answer(False, None))
            return Answer(**{k: answer.get(k) or defaults[k] for k in defaults})
        return _in_process(self.mode, spec)
