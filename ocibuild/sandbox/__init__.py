"""Run one RUN step in a root filesystem directory: the only process and namespace code.

    sandbox = choose("auto")            # "root" | "userns" | "proot"; SandboxError when impossible
    check_platforms([Platform.parse("linux/arm64")])   # before the build: fail early, with the fix
    result = sandbox.run(RunSpec(rootfs, ["/bin/sh", "-c", "make"], env, cwd="/src", user="app"))

Three sandboxes: root (new mount/pid/uts/ipc(/net) namespaces, pivot_root), userns (the same
inside a user namespace, rootless, with the caller's subordinate ids when it has some), and
proot (ptrace, where namespaces are refused). Foreign platforms run through binfmt_misc QEMU
handlers (`binfmt`), or ``proot -q`` when none is registered; 386 on amd64 runs natively with
the 32-bit personality. After a run nothing of the host is left in the rootfs; `RunResult.ids`
says how on-disk owners map to in-container owners for the layer (see `ids`).
"""

from ocibuild.sandbox import binfmt
from ocibuild.sandbox._mounts import resolve as resolve_in_root
from ocibuild.sandbox.choose import choose, probe
from ocibuild.sandbox.emulation import Emulation, check_platforms, plan
from ocibuild.sandbox.ids import IdMap, IdMaps, IdRange
from ocibuild.sandbox.spec import Mount, OutputSink, RunResult, RunSpec, Sandbox

__all__ = ["binfmt", "resolve_in_root", "choose", "probe", "check_platforms", "plan", "Emulation", "IdMap", "IdMaps", "IdRange",
           "Mount", "OutputSink", "RunResult", "RunSpec", "Sandbox"]
