"""Foreign platforms in each sandbox mode: binfmt_misc QEMU (root, userns), proot -q (proot), and
386 on amd64 natively with the 32-bit personality."""

from __future__ import annotations

import os

import pytest

from ocibuild.oci.platform import host_platform
from ocibuild.sandbox import binfmt
from support.require import require
from support.sandbox_modes import *  # noqa: F401,F403 - fixtures: mode, step, sandbox_dir, ...

# One xdist worker for everything that reads or changes binfmt_misc (test_sandbox_binfmt too).
pytestmark = [pytest.mark.skipif(host_platform().architecture != "amd64",
                                 reason="the expectations below are for an amd64 host"),
              pytest.mark.xdist_group("sandbox-binfmt")]

# OCI platform -> (OCI architecture of the busybox package, what `uname -m` prints)
PLATFORMS = {
    "linux/arm64": ("arm64", "aarch64"),
    "linux/arm/v7": ("arm", "armv7l"),
    "linux/386": ("386", "i686"),
    "linux/ppc64le": ("ppc64le", "ppc64le"),
    "linux/s390x": ("s390x", "s390x"),
}


def _requirements(mode: str, arch: str) -> None:
    if arch == "386":
        return
    qemu = binfmt.QEMU_NAMES[arch]
    require(f"qemu-{qemu}-static" if mode == "proot" else f"binfmt:{arch}")


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_foreign_platform_runs(step, platform):
    arch, machine = PLATFORMS[platform]
    _requirements(step.mode, arch)
    rootfs = step.rootfs(arch)
    before = sorted(os.listdir(rootfs))
    answer = step.run(rootfs, ["/bin/sh", "-c", "uname -m; echo $((6 * 7)) > /answer; cat /answer"],
                      platform=platform)
    assert answer.ok, answer.error
    assert answer.stdout.split() == [machine, "42"]
    assert sorted(os.listdir(rootfs)) == sorted(before + ["answer"])
