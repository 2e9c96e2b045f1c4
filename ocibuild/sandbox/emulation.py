"""How this machine runs a platform's binaries: natively, with the 32-bit personality, through a
binfmt_misc QEMU handler, or through ``proot -q qemu-<arch>-static``; and the check a build
makes before its first step so that an impossible platform fails early with the fix."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from ocibuild.errors import SandboxError
from ocibuild.oci.platform import Platform, host_platform

from ocibuild.sandbox import binfmt

# host architecture -> the 32-bit one its CPU runs natively, under the PER_LINUX32 personality.
NATIVE_32 = {"amd64": "386", "arm64": "arm"}


@dataclass(frozen=True)
class Emulation:
    """One answer of `plan`.

    `how` is "native", "personality32", "binfmt" or "proot-qemu". For "binfmt", `interpreter`
    is set when a matching handler lacks the F flag: that path must then exist inside the
    rootfs, so the sandbox binds the host's file there for the run. For "proot-qemu", `qemu` is the
    qemu-*-static to pass to ``proot -q``.
    """

    how: str
    platform: Platform
    interpreter: str = ""
    qemu: str = ""

    def describe(self) -> str:
        if self.how == "native":
            return f"{self.platform} runs natively"
        if self.how == "personality32":
            return f"{self.platform} runs natively with the 32-bit personality"
        if self.how == "binfmt":
            return f"{self.platform} runs through QEMU registered with binfmt_misc"
        return f"{self.platform} runs through proot -q {self.qemu}"


def plan(platform: Platform, host: Platform | None = None) -> Emulation:
    """How `platform` runs here; raises SandboxError naming the platform and the fix."""
    host = (host or host_platform()).normalize()
    target = platform.normalize()
    if target.os != "linux":
        raise SandboxError(f"cannot run RUN steps for {target}: only linux images can run RUN")
    if target.architecture == host.architecture:
        return Emulation("native", target)
    handler = binfmt.handler_for(target)
    if handler is not None:
        return Emulation("binfmt", target, "" if handler.fixed else handler.interpreter)
    if NATIVE_32.get(host.architecture) == target.architecture:
        return Emulation("personality32", target)
    qemu = binfmt.qemu_name(target)
    static = shutil.which(f"qemu-{qemu}-static") if qemu else None
    if static and shutil.which("proot"):
        return Emulation("proot-qemu", target, qemu=static)
    raise SandboxError(_missing(target, host, qemu))


def _missing(target: Platform, host: Platform, qemu: str | None) -> str:
    if qemu is None:
        return f"cannot run RUN steps for {target} on this {host} machine: QEMU has no emulator for it"
    return (f"cannot run RUN steps for {target} on this {host} machine: no binfmt_misc handler "
            f"runs qemu-{qemu}, and proot with qemu-{qemu}-static is not installed; fix: "
            f"`sudo ocibuild binfmt --install {target.architecture}` (after "
            f"`apt-get install qemu-user-static`)")


def check_platforms(platforms: list[Platform]) -> list[Emulation]:
    """Before a build: how each platform runs; raises one SandboxError naming every one that cannot."""
    plans, problems = [], []
    for platform in platforms:
        try:
            plans.append(plan(platform))
        except SandboxError as e:
            problems.append(e.message)
    if problems:
        raise SandboxError("; ".join(problems))
    return plans
