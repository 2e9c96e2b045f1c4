"""The namespace sandboxes: as root, and rootless in a user namespace. Both start `_child.py`
afresh for each run and differ only in the user namespace and its id maps."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys

from ocibuild.errors import SandboxError
from ocibuild.oci.platform import Platform

from ocibuild.sandbox import emulation
from ocibuild.sandbox.ids import IdMaps, apply_maps
from ocibuild.sandbox.process import HostFiles, Pump, check_exit, environment, validate
from ocibuild.sandbox.spec import Mount, RunResult, RunSpec

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")


class NamespaceSandbox:
    """Runs each step in fresh mount, pid, uts and ipc namespaces (plus net for --network=none),
    pivoted into the rootfs. With `userns`, first in a user namespace whose maps are `ids`.

    A foreign platform that no binfmt handler serves is handed to `fallback` (a proot sandbox
    with ``-q qemu-*-static``) when one is given.
    """

    def __init__(self, name: str, why: str, *, userns: bool, ids: IdMaps = IdMaps(),
                 fallback=None, python: str = sys.executable, overlay: str | None = None):
        self.name, self.why = name, why
        self.userns = userns
        self.overlay = overlay  # the Overlay flavour this sandbox mounts, None when it cannot
        self._ids = ids
        self.fallback = fallback
        self.python = python

    @property
    def ids(self) -> IdMaps:
        return self._ids

    def overlay_for(self, platform: Platform) -> str | None:
        if self.overlay is None or emulation.plan(platform).how == "proot-qemu":
            return None
        return self.overlay

    def can_run(self, platform: Platform) -> str | None:
        try:
            plan = emulation.plan(platform)
        except SandboxError as e:
            return e.message
        if plan.how == "proot-qemu" and self.fallback is None:
            return f"{plan.describe()}, but proot is not available to the {self.name} sandbox"
        return None

    def run(self, spec: RunSpec) -> RunResult:
        """See `Sandbox.run`. Output goes to `spec.output` as it comes."""
        validate(spec)
        plan = emulation.plan(spec.platform)
        if plan.how == "proot-qemu":
            if self.fallback is None:
                raise SandboxError(f"run for {spec.platform}: {plan.describe()}, which needs proot")
            if spec.overlay is not None:
                raise SandboxError(f"run for {spec.platform}: proot cannot mount an overlay")
            return self.fallback.run(spec)
        if spec.overlay is not None and spec.overlay.flavour != self.overlay:
            raise SandboxError(f"run: the {self.name} sandbox cannot mount a {spec.overlay.flavour} overlay")
        with HostFiles(spec.hostname) as host_mounts:
            mounts = host_mounts + list(spec.mounts)
            if plan.interpreter:
                mounts.append(Mount("bind", plan.interpreter, os.path.realpath(plan.interpreter), readonly=True))
            try:
                code, pump = self._launch(self._config(spec, mounts, plan), spec)
            finally:
                if spec.overlay is not None:
                    _empty_workdir(spec.overlay.work)
        if pump.error.startswith("switch to user") and self.userns and len(self._ids.uid.ranges) == 1:
            pump.error += ("; this rootless sandbox maps only root: give the caller a range in "
                           "/etc/subuid and /etc/subgid and install newuidmap (package uidmap)")
        check_exit(spec.argv, code, pump)
        return RunResult(code, pump.tail(), self._ids)

    def _config(self, spec: RunSpec, mounts: list[Mount], plan: emulation.Emulation) -> dict:
        return {
            "rootfs": os.path.realpath(spec.rootfs), "argv": list(spec.argv), "env": environment(spec),
            "cwd": spec.cwd, "user": spec.user, "network": spec.network, "hostname": spec.hostname,
            "mounts": [dataclasses.asdict(m) for m in mounts], "userns": self.userns,
            "setgroups": self._ids.setgroups, "personality32": plan.how == "personality32",
            "overlay": dataclasses.asdict(spec.overlay) if spec.overlay is not None else None,
        }

    def _launch(self, config: dict, spec: RunSpec) -> tuple[int, Pump]:
        ours, theirs = socket.socketpair()
        with ours:
            proc = subprocess.Popen([self.python, "-S", "-E", "-s", CHILD, str(theirs.fileno())],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=[theirs.fileno()], env={}, cwd="/")
            theirs.close()

            def on_message(message: dict) -> None:
                if message.get("op") == "map":
                    apply_maps(proc.pid, self._ids)
                    ours.sendall(b"go\n")

            pump = Pump(spec.output, on_message)
            try:
                ours.sendall((json.dumps(config) + "\n").encode())
                pump.run({"stdout": proc.stdout.fileno(), "stderr": proc.stderr.fileno(), "ctl": ours.fileno()})
                code = proc.wait()
            except BaseException:
                _stop(proc)
                raise
            finally:
                proc.stdout.close()
                proc.stderr.close()
        return code, pump


def _empty_workdir(work: str) -> None:
    """overlayfs' work directory is of no use once the mount is gone; its `work/` is mode 000."""
    inner = os.path.join(work, "work")
    if os.path.isdir(inner):
        os.chmod(inner, 0o700)
        shutil.rmtree(inner, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """Ask the helper to stop (it kills the command and removes its placeholders), then insist."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
