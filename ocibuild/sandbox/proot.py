"""The proot sandbox: the fallback where namespaces are refused (no user namespaces, a
seccomp-locked pod). ptrace-based, so weaker: no network isolation, no hostname, and a
read-only bind or a tmpfs is a temporary copy or directory. Foreign platforms always run
through ``proot -q qemu-<arch>-static``, since proot does not follow binfmt_misc reliably.

Ownership: run by root, files carry the ids the command gave them; run by anyone else, every
file written is owned on disk by the caller, shown as root inside (chown "succeeds" without
effect under ``-0``), so the layer must record them as root (`ids` maps the caller to 0).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

from ocibuild.errors import SandboxError
from ocibuild.oci.platform import Platform

from ocibuild.sandbox import binfmt, emulation
from ocibuild.sandbox._mounts import Placeholders, SetupError, resolve
from ocibuild.sandbox._users import UnknownUser, resolve_user
from ocibuild.sandbox.ids import IdMaps, rootless_maps
from ocibuild.sandbox.process import HostFiles, Pump, check_exit, environment, shown, validate
from ocibuild.sandbox.spec import RunResult, RunSpec


class ProotSandbox:
    name = "proot"

    def __init__(self, why: str = "proot (ptrace, no namespaces): slower, no network isolation", proot: str = "proot"):
        self.why = why
        self.proot = shutil.which(proot) or proot
        self._ids = IdMaps() if os.geteuid() == 0 else rootless_maps(os.geteuid(), os.getegid(), use_subids=False)

    @property
    def ids(self) -> IdMaps:
        return self._ids

    def overlay_for(self, platform: Platform) -> str | None:
        return None  # proot mounts nothing: RUN layers come from copy and compare

    def can_run(self, platform: Platform) -> str | None:
        try:
            self._emulator(platform)
        except SandboxError as e:
            return e.message
        return None

    def run(self, spec: RunSpec) -> RunResult:
        """See `Sandbox.run`; --network=none is refused (proot cannot isolate the network)."""
        validate(spec)
        if spec.overlay is not None:
            raise SandboxError("run: proot cannot mount an overlay")
        if spec.network == "none":
            raise SandboxError("run with --network=none: proot cannot isolate the network; "
                               "run as root or where user namespaces are allowed")
        prefix, emulate = self._emulator(spec.platform)
        rootfs = os.path.realpath(spec.rootfs)
        user = self._user(rootfs, spec.user)
        self._check_program(rootfs, spec)
        os.makedirs(resolve(rootfs, spec.cwd or "/"), 0o755, exist_ok=True)
        with HostFiles("") as host_mounts, _Scratch(spec) as scratch:
            binds = [("/dev", "/dev"), ("/proc", "/proc"), ("/sys", "/sys"), *scratch,
                     *[(m.source, m.target) for m in host_mounts + spec.mounts
                       if m.type == "bind" and not m.readonly]]
            argv = [*prefix, self.proot, *emulate, "-r", rootfs, "-w", spec.cwd or "/",
                    *(["-0"] if user.uid == 0 else ["-i", f"{user.uid}:{user.gid}"]),
                    *[a for source, target in binds for a in ("-b", f"{source}:{target}")], *spec.argv]
            holders = _placeholders(rootfs, binds)
            try:
                code, pump = _launch(argv, _env(environment(spec), user.home), spec)
            finally:
                holders.remove()
        check_exit(spec.argv, code, pump)
        return RunResult(code, pump.tail(), self._ids)

    def _emulator(self, platform: Platform) -> tuple[list[str], list[str]]:
        """What goes before proot, and which proot options, to run `platform`'s binaries."""
        plan = emulation.plan(platform)
        if plan.how == "native":
            return [], []
        if plan.how == "personality32":
            return ["setarch", "linux32"], []
        qemu = plan.qemu or shutil.which(f"qemu-{binfmt.qemu_name(platform)}-static")
        if not qemu:
            raise SandboxError(f"run for {platform} under proot: qemu-{binfmt.qemu_name(platform)}-static "
                               "is not installed (apt-get install qemu-user-static)")
        return [], ["-q", qemu]

    @staticmethod
    def _user(rootfs: str, user: str):
        try:
            return resolve_user(user, etc=resolve(rootfs, "/etc"))
        except UnknownUser as e:
            raise SandboxError(f"run as {user}: {e}") from None

    @staticmethod
    def _check_program(rootfs: str, spec: RunSpec) -> None:
        """proot's own exec failure is an exit code like any other, so look for the program first."""
        program = spec.argv[0]
        if "/" in program:
            if not os.path.lexists(resolve(rootfs, program)):
                raise SandboxError(f"run {shown(spec.argv)}: exec {program}: No such file or directory")
            return
        path = next((e[5:] for e in environment(spec) if e.startswith("PATH=")), "")
        for directory in filter(None, path.split(":")):
            if os.path.lexists(resolve(rootfs, f"{directory}/{program}")):
                return
        raise SandboxError(f'run {shown(spec.argv)}: exec: "{program}": executable file not found in $PATH')


class _Scratch:
    """Host directories standing in for what proot cannot mount: an empty one for each tmpfs,
    and a copy of each read-only bind's source, so that the source stays untouched (writes to
    the copy succeed and are discarded, as with BuildKit's `rw` bind mounts)."""

    def __init__(self, spec: RunSpec):
        self.mounts = [m for m in spec.mounts if m.type == "tmpfs" or m.readonly]
        self.dir = ""

    def __enter__(self) -> list[tuple[str, str]]:
        self.dir = tempfile.mkdtemp(prefix="ocibuild-proot-")
        binds = []
        for n, mnt in enumerate(self.mounts):
            path = os.path.join(self.dir, str(n))
            if mnt.type == "tmpfs":
                os.mkdir(path, 0o1777)
            elif os.path.isdir(mnt.source):
                shutil.copytree(mnt.source, path, symlinks=True)
            else:
                shutil.copy2(mnt.source, path)
            binds.append((path, mnt.target))
        return binds

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _placeholders(rootfs: str, binds: list[tuple[str, str]]) -> Placeholders:
    """Our own mount targets: proot would create missing ones on disk itself, and its removal
    afterwards would leave their directories' times changed."""
    holders = Placeholders(rootfs)
    try:
        for source, target in binds:
            holders.make(target, os.path.isdir(source))
    except (SetupError, OSError) as e:
        holders.remove()
        raise SandboxError(f"prepare the rootfs for proot: {e}") from e
    holders.seal()
    return holders


def _env(env: list[str], home: str) -> dict[str, str]:
    out = dict(item.partition("=")[::2] for item in env)
    out.setdefault("HOME", home)
    return out


def _launch(argv: list[str], env: dict[str, str], spec: RunSpec) -> tuple[int, Pump]:
    try:
        # A session of its own: killing proot alone would let its tracees run on, untraced.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd="/", start_new_session=True)
    except OSError as e:
        raise SandboxError(f"start {argv[0]}: {e.strerror}") from e
    pump = Pump(spec.output)
    try:
        pump.run({"stdout": proc.stdout.fileno(), "stderr": proc.stderr.fileno()})
        code = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return code, pump
