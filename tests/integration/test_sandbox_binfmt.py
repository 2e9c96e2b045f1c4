"""binfmt_misc status/install/uninstall, the platform plan, `choose`, and a handler without the
F flag (its interpreter is bound into the rootfs for the run and gone afterwards)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocibuild.errors import RunFailed, SandboxError
from ocibuild.oci.platform import Platform, host_platform
from ocibuild.sandbox import binfmt, check_platforms, choose, emulation, plan
from ocibuild.sandbox.process import Pump, check_exit
from support.require import require
from support.sandbox_modes import *  # noqa: F401,F403 - fixtures: mode, step, sandbox_dir, ...

# One xdist worker for everything that reads or changes binfmt_misc (test_sandbox_cross too).
pytestmark = pytest.mark.xdist_group("sandbox-binfmt")
# Architectures nobody registers here by default, for the install/uninstall round trip.
SPARE_ARCHES = ("mips64le", "mips64", "mipsle", "loong64")


def test_status_lists_the_registered_handlers():
    require("binfmt:arm64")
    handlers = {h.name: h for h in binfmt.status()}
    arm64 = next(h for h in handlers.values() if h.qemu == "aarch64" and h.enabled)
    assert arm64.interpreter and os.path.exists(arm64.interpreter)
    assert arm64.fixed == ("F" in arm64.flags)


def test_install_and_uninstall_round_trip():
    require("root")
    spare = next((a for a in SPARE_ARCHES if not binfmt.handlers_for(Platform.parse(a))
                  and Path(f"/usr/lib/binfmt.d/qemu-{binfmt.QEMU_NAMES[a]}.conf").exists()), None)
    assert spare, "every spare architecture already has a handler"
    added = binfmt.install([spare])
    try:
        name = f"ocibuild-qemu-{binfmt.QEMU_NAMES[spare]}"
        assert added == [name]
        ours = next(h for h in binfmt.status() if h.name == name)
        assert ours.enabled and ours.fixed and ours.ours
        assert binfmt.install([spare]) == []  # idempotent
        assert plan(Platform.parse(spare)).how == "binfmt"
    finally:
        removed = binfmt.uninstall()
    assert name in removed
    assert all(h.name != name for h in binfmt.status())
    assert any(h.qemu == "aarch64" for h in binfmt.status())  # the system's entries stay


def test_plan_for_each_kind_of_platform():
    require("binfmt:arm64")
    assert host_platform().architecture == "amd64"
    assert plan(Platform.parse("linux/amd64")).how == "native"
    assert plan(Platform.parse("linux/386")).how == "personality32"
    assert plan(Platform.parse("linux/arm64")).how == "binfmt"
    assert [p.how for p in check_platforms([Platform.parse("linux/arm64"), Platform.parse("linux/arm/v7")])] \
        == ["binfmt", "binfmt"]


def test_impossible_platform_fails_early_with_the_fix(monkeypatch):
    monkeypatch.setattr(binfmt, "handlers_for", lambda platform: [])
    monkeypatch.setattr(emulation.shutil, "which", lambda name: None)
    with pytest.raises(SandboxError) as info:
        check_platforms([Platform.parse("linux/amd64"), Platform.parse("linux/arm64")])
    message = str(info.value)
    assert "linux/arm64" in message and "sudo ocibuild binfmt --install arm64" in message
    assert message.startswith("cannot run RUN steps for linux/arm64 on this linux/amd64 machine")


def test_choose():
    require("root")
    assert choose().name == "root"
    assert choose("proot").name == "proot"
    with pytest.raises(SandboxError, match="unknown sandbox"):
        choose("docker")


def test_choose_as_an_unprivileged_user(user_runner, sandbox_dir):
    answer = user_runner.run({"kind": "root", "spec": {"rootfs": str(sandbox_dir), "argv": ["true"]}})
    assert answer["error_type"] == "SandboxError" and "needs root" in answer["error"]
    answer = user_runner.run({"kind": "auto", "spec": {"rootfs": "/nonexistent", "argv": ["true"]}})
    assert answer["why"].startswith("rootless") and "not a directory" in answer["error"]


def test_userns_without_subordinate_ids_cannot_switch_user(user_runner, test_user, sandbox_dir):
    from support import sandbox_rootfs
    rootfs = sandbox_rootfs.fresh_copy("amd64", Path(sandbox_dir) / "single-map", (test_user.uid, test_user.gid))
    spec = {"rootfs": str(rootfs), "argv": ["/bin/sh", "-c", "id -u; touch /x"]}
    answer = user_runner.run({"kind": "userns", "spec": spec, "use_subids": False})
    assert answer["ok"], answer["error"]
    assert answer["stdout"] == "0\n" and (rootfs / "x").stat().st_uid == test_user.uid
    answer = user_runner.run({"kind": "userns", "spec": {**spec, "user": "nobody"}, "use_subids": False})
    assert "switch to user nobody" in answer["error"] and "/etc/subuid" in answer["error"]


def test_exec_format_error_names_the_fix():
    pump = Pump(None)
    pump.error = "exec /bin/sh: Exec format error"
    with pytest.raises(SandboxError, match="binfmt --install"):
        check_exit(["/bin/sh"], 125, pump)
    with pytest.raises(RunFailed) as info:
        check_exit(["false"], 1, Pump(None))
    assert info.value.exit_code == 1


@pytest.fixture
def s390x_without_fix_flag():
    """Register QEMU for s390x again, without F, under our name. binfmt_misc tries the newest
    entry first, so this one serves s390x until removed, whatever the system registered."""
    require("root", "binfmt:s390x")
    name = "ocibuild-qemu-s390x"
    line = binfmt._entry(Platform.parse("linux/s390x"), "s390x")
    fields = line.split(":")
    fields[-1] = fields[-1].replace("F", "")
    (binfmt.BINFMT_DIR / "register").write_text(":".join(fields))
    try:
        yield next(h for h in binfmt.status() if h.name == name)
    finally:
        (binfmt.BINFMT_DIR / name).write_text("-1")


@pytest.mark.parametrize("mode", ["root", "userns"], indirect=True)
def test_handler_without_fix_flag_gets_its_interpreter_bound(step, s390x_without_fix_flag):
    handler = s390x_without_fix_flag
    assert not handler.fixed
    assert plan(Platform.parse("linux/s390x")).interpreter == handler.interpreter
    rootfs = step.rootfs("s390x")
    before = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    answer = step.run(rootfs, ["/bin/sh", "-c", "uname -m"], platform="linux/s390x")
    assert answer.ok, answer.error
    assert answer.stdout == "s390x\n"
    assert sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*")) == before  # interpreter gone
