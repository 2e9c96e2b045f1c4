"""The tools under comparison, and how one command is timed and measured.

Each tool turns (Dockerfile, context) into an OCI image tar at a given path,
from a cold tool state: buildah gets a fresh --root/--runroot and ocibuild a
fresh OCIBUILD_CACHE_DIR, inside a scratch directory that the runner deletes
after every run. Tools never delete the scratch directory themselves.

Peak RSS comes from os.wait4 on the child: Linux reports the largest resident
set of the child and of every descendant it reaped, which is the peak of any
single process of the tool (not a sum over processes).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    """One measured command."""

    argv: list[str]
    returncode: int
    seconds: float
    maxrss_kib: int
    user_seconds: float  # of the child and its reaped descendants
    system_seconds: float
    stderr_path: Path

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds

    def stderr_tail(self, lines: int = 25) -> str:
        text = self.stderr_path.read_text(errors="replace").rstrip().splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Run:
    """One build by one tool: its steps, timed back to back."""

    tool: str
    steps: dict[str, Step] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps.values())

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps.values())

    @property
    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds for s in self.steps.values())

    @property
    def maxrss_kib(self) -> int:
        return max(s.maxrss_kib for s in self.steps.values())

    def failed_step(self) -> Step | None:
        return next((s for s in self.steps.values() if s.returncode != 0), None)


@dataclass(frozen=True)
class Compression:
    """What the user asked for on the command line; None means each tool's default."""

    format: str | None = None  # gzip, zstd or uncompressed
    level: int | None = None


def measure(argv: list[str], *, log_stem: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Step:
    """Run `argv` to completion; return its wall time, CPU time, exit code and peak RSS.

    stdout and stderr go to `<log_stem>.out` / `.err`, so a chatty tool costs no
    pipe handling in the measurement.
    """
    err_path = log_stem.with_suffix(".err")
    with open(log_stem.with_suffix(".out"), "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped already: keep Popen from waiting again
    return Step(argv, proc.returncode, seconds, usage.ru_maxrss, usage.ru_utime, usage.ru_stime, err_path)


class Tool(Protocol):
    name: str

    def build(self, dockerfile: Path, context: Path, out: Path, scratch: Path,
              extra: tuple[str, ...]) -> Run:
        """Build and write an OCI tar to `out`, keeping all tool state under `scratch`."""

    def cleanup(self, scratch: Path) -> None:
        """Undo what rmtree cannot (mounts); the runner deletes `scratch` afterwards."""

    def version(self) -> str:
        """A version string for the results file."""


class Buildah:
    """`buildah bud` into a private vfs store, then `buildah push` to an oci-archive.

    Global flags (--root, --runroot, --storage-driver) must come before the
    verb and must be repeated on push, or push looks in the default store.
    `--layers=false` needs the `=`: it is a boolean flag, and `--layers false`
    makes "false" a positional argument ("accepts at most 1 arg(s)").
    """

    name = "buildah"

    def __init__(self, compression: Compression, binary: str = "buildah"):
        self.binary = binary
        self.push_flags = self._push_flags(compression)

    @staticmethod
    def _push_flags(c: Compression) -> list[str]:
        if c.format == "uncompressed":
            return ["--disable-compression"]
        flags = ["--compression-format", c.format] if c.format else []
        return flags + (["--compression-level", str(c.level)] if c.level is not None else [])

    def build(self, dockerfile: Path, context: Path, out: Path, scratch: Path,
              extra: tuple[str, ...]) -> Run:
        base = [self.binary, "--root", str(scratch / "root"), "--runroot", str(scratch / "runroot"),
                "--storage-driver", "vfs"]
        env = _env(TMPDIR=scratch / "tmp")  # push stages an OCI dir in $TMPDIR before it tars it
        run = Run(self.name)
        run.steps["bud"] = measure(
            base + ["bud", "--isolation", "chroot", "--layers=false", *extra, "-t", "bench",
                    "-f", str(dockerfile), str(context)], log_stem=scratch / "bud", env=env)
        if run.ok:
            run.steps["push"] = measure(base + ["push", *self.push_flags, "bench", f"oci-archive:{out}"],
                                        log_stem=scratch / "push", env=env)
        return run

    def cleanup(self, scratch: Path) -> None:
        """Remove buildah's containers (unmounting anything a RUN left mounted)."""
        base = [self.binary, "--root", str(scratch / "root"), "--runroot", str(scratch / "runroot"),
                "--storage-driver", "vfs"]
        subprocess.run(base + ["rm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def version(self) -> str:
        return _version([self.binary, "--version"])


class Ocibuild:
    """`python -m ocibuild build ... --output type=oci,dest=OUT` from the repo's venv."""

    name = "ocibuild"

    def __init__(self, compression: Compression, python: Path = REPO / ".venv/bin/python"):
        self.python = python
        self.flags = (["--compression", compression.format] if compression.format else []) + (
            ["--compression-level", str(compression.level)] if compression.level is not None else [])

    def build(self, dockerfile: Path, context: Path, out: Path, scratch: Path,
              extra: tuple[str, ...]) -> Run:
        env = _env(OCIBUILD_CACHE_DIR=scratch / "cache", TMPDIR=scratch / "tmp")
        argv = [str(self.python), "-m", "ocibuild", "build", *self.flags, *extra, "-f", str(dockerfile),
                "--output", f"type=oci,dest={out}", str(context)]
        run = Run(self.name)
        run.steps["build"] = measure(argv, log_stem=scratch / "build", env=env, cwd=REPO)
        return run

    def cleanup(self, scratch: Path) -> None:
        pass

    def version(self) -> str:
        return _version(["git", "-C", str(REPO), "describe", "--always", "--dirty"])


def _env(**paths: Path) -> dict[str, str]:
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **{k: str(v) for k, v in paths.items()}}


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"unknown ({e})"
