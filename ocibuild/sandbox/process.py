"""Caller-side plumbing shared by every sandbox: the host files a run sees, the output pump, and
the error for a failed command."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import tempfile
from typing import Callable

from ocibuild.errors import RunFailed, SandboxError

from ocibuild.sandbox.spec import DEFAULT_PATH, MOUNT_TYPES, NETWORKS, Mount, OutputSink, RunSpec

TAIL_BYTES, TAIL_LINES = 16384, 20


class HostFiles:
    """Private copies of the host's /etc/resolv.conf and /etc/hosts, bound over the rootfs's.

    Copies, so that a RUN step that rewrites them changes neither the host nor the image (Docker
    discards such writes too). A context manager: the temporary directory goes on exit.
    """

    def __init__(self, hostname: str):
        self.hostname = hostname
        self.dir = ""

    def __enter__(self) -> list[Mount]:
        self.dir = tempfile.mkdtemp(prefix="ocibuild-run-")
        os.chmod(self.dir, 0o755)  # a RUN step as a non-root user must still read them
        hosts = _read("/etc/hosts") or "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        if self.hostname and not hosts.endswith("\n"):
            hosts += "\n"
        if self.hostname:
            hosts += f"127.0.0.1\t{self.hostname}\n"
        mounts = []
        for name, text in (("resolv.conf", _read("/etc/resolv.conf")), ("hosts", hosts)):
            path = os.path.join(self.dir, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(path, 0o644)
            mounts.append(Mount("bind", f"/etc/{name}", path))
        return mounts

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def environment(spec: RunSpec) -> list[str]:
    """The env list with Docker's PATH when the image sets none."""
    if any(item.startswith("PATH=") for item in spec.env):
        return list(spec.env)
    return [*spec.env, f"PATH={DEFAULT_PATH}"]


class Pump:
    """Reads a helper's stdout and stderr (and its control socket's JSON lines) until all close.

    Output goes to `sink` as it comes; the last bytes of stderr are kept for `tail()`. Control
    messages go to `on_message`; an {"op": "error"} message is remembered as `error`.
    """

    def __init__(self, sink: OutputSink | None, on_message: Callable[[dict], None] | None = None):
        self.sink = sink
        self.on_message = on_message
        self.error = ""
        self.messages: list[dict] = []
        self._stderr = bytearray()
        self._ctl = b""

    def run(self, streams: dict[str, int]) -> None:
        """`streams` maps "stdout", "stderr" and optionally "ctl" to readable file descriptors."""
        with selectors.DefaultSelector() as sel:
            for name, fd in streams.items():
                sel.register(fd, selectors.EVENT_READ, name)
            while sel.get_map():
                for key, _ in sel.select():
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                    elif key.data == "ctl":
                        self._control(data)
                    else:
                        self._output(key.data, data)

    def _output(self, stream: str, data: bytes) -> None:
        if stream == "stderr":
            self._stderr += data
            del self._stderr[:-TAIL_BYTES]
        if self.sink is not None:
            self.sink(stream, data)

    def _control(self, data: bytes) -> None:
        self._ctl += data
        while b"\n" in self._ctl:
            line, self._ctl = self._ctl.split(b"\n", 1)
            message = json.loads(line)
            self.messages.append(message)
            if message.get("op") == "error" and not self.error:
                self.error = message.get("message", "")
            if self.on_message is not None:
                self.on_message(message)

    def tail(self) -> str:
        lines = self._stderr.decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-TAIL_LINES:])


def check_exit(argv: list[str], code: int, pump: Pump) -> None:
    """Raise SandboxError for a setup failure, RunFailed for a non-zero exit; else return."""
    if pump.error:
        hint = ""
        if "Exec format error" in pump.error:
            hint = " (a binary for another architecture: register QEMU with `sudo ocibuild binfmt --install`)"
        raise SandboxError(f"run {shown(argv)}: {pump.error}{hint}")
    if code != 0:
        raise RunFailed(f"process {shown(argv)} did not complete successfully: exit code: {code}",
                        exit_code=code, stderr_tail=pump.tail())


def shown(argv: list[str]) -> str:
    """The command as BuildKit quotes it in messages."""
    return '"' + " ".join(argv).replace('"', '\\"') + '"'


def validate(spec: RunSpec) -> None:
    """Refuse a spec no sandbox could run, before anything starts."""
    if not spec.argv:
        raise SandboxError("run: empty command")
    if not os.path.isdir(spec.rootfs):
        raise SandboxError(f"run: the rootfs {spec.rootfs} is not a directory")
    if spec.network not in NETWORKS:
        raise SandboxError(f"run: unknown network mode {spec.network!r} (default, none, host)")
    for mnt in spec.mounts:
        if mnt.type not in MOUNT_TYPES or not mnt.target.startswith("/"):
            raise SandboxError(f"run: unsupported mount {mnt.type} on {mnt.target!r}")
        if mnt.type == "bind" and not os.path.exists(mnt.source):
            raise SandboxError(f"run: bind mount source {mnt.source} does not exist")
