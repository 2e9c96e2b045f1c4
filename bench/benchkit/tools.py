"""The tools under comparison, and how one command is timed and measured.

Each tool turns (Dockerfile, context) into an OCI image tar at a given path,
from a cold tool state: buildah gets a fresh --root/--runroot and ocibuild a
fresh OCIBUILD_CACHE_DIR, inside a scratch directory that the runner deletes
after every run. Tools never delete the scratch directory themselves. A rebuild
(`cache=True`, a second build into the same scratch) finds the first build's state.

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
from typing import TYPE_CHECKING, Mapping, Protocol

if TYPE_CHECKING:
    from .bases import Image

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
    baseline: frozenset[str] = frozenset()  # steps whose time is subtracted: a run can measure a difference
    untimed: dict[str, float] = field(default_factory=dict)  # side builds' wall times, reported, not counted

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps.values())

    @property
    def seconds(self) -> float:
        return sum(-s.seconds if k in self.baseline else s.seconds for k, s in self.steps.items())

    @property
    def cpu_seconds(self) -> float:
        return sum(-s.cpu_seconds if k in self.baseline else s.cpu_seconds for k, s in self.steps.items())

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

    def build(self, dockerfile: Path, context: Path, out: Path, scratch: Path, extra: tuple[str, ...],
              platforms: tuple[str, ...] = (), bases: Mapping[str, Image] = {}, cache: bool = False) -> Run:
        """Build and write an OCI tar to `out`, keeping all tool state under `scratch`.

        `platforms`: build for these (one image index for several). `bases`: images the
        Dockerfile's FROM names, made available under those names, untimed (once per
        scratch: a second build into the same scratch finds them there). `cache`: use and
        fill the tool's build cache in `scratch` (buildah `--layers=true`; ocibuild always
        caches, in its cache dir under `scratch`).
        """

    def push(self, image: Image, dest: str, scratch: Path, insecure: str) -> Run:
        """Push `image` (every blob, its manifest, the tag) to `dest` (host/repo:tag)."""

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

    def build(self, dockerfile: Path, context: Path, out: Path, scratch: Path, extra: tuple[str, ...],
              platforms: tuple[str, ...] = (), bases: Mapping[str, Image] = {}, run: Run | None = None,
              prefix: str = "", cache: bool = False) -> Run:
        base = [self.binary, "--root", str(scratch / "root"), "--runroot", str(scratch / "runroot"),
                "--storage-driver", "vfs"]
        env = _env(TMPDIR=scratch / "tmp")  # push stages an OCI dir in $TMPDIR before it tars it
        run = run or Run(self.name)
        seeded = (scratch / "root").exists()  # a second build into the same store finds its bases there
        for name, image in ({} if seeded else bases).items():
            failed = _seed_store(base, scratch, name, image, platforms or ("linux/amd64",), env)
            if failed:
                run.steps[f"{prefix}seed"] = failed
                return run
        if len(platforms) > 1:  # bud --manifest, then push the list and every instance
            target, push = ["--platform", ",".join(platforms), "--manifest", "bench"], ["manifest", "push", "--all"]
        else:
            target, push = [*(["--platform", platforms[0]] if platforms else []), "-t", "bench"], ["push"]
        run.steps[f"{prefix}bud"] = measure(
            base + ["bud", "--isolation", "chroot", f"--layers={str(cache).lower()}", *extra, *target,
                    "-f", str(dockerfile), str(context)], log_stem=scratch / f"{prefix}bud", env=env)
        if run.ok:
            run.steps[f"{prefix}push"] = measure(base + [*push, *self.push_flags, "bench", f"oci-archive:{out}"],
                                                 log_stem=scratch / f"{prefix}push", env=env)
        return run

    def push(self, image: Image, dest: str, scratch: Path, insecure: str) -> Run:
        """The reference for pushes is skopeo (buildah push needs the image in its store first)."""
        env = _env(TMPDIR=scratch / "tmp")  # skopeo unpacks an oci-archive into $TMPDIR before copying
        run = Run("skopeo")
        run.steps["push"] = measure(["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{image.archive}",
                                     f"docker://{dest}"], log_stem=scratch / "skopeo", env=env)
        return run

    def cleanup(self, scratch: Path) -> None:
        """Remove buildah's containers (unmounting anything a RUN left mounted)."""
        base = [self.binary, "--root", str(scratch / "root"), "--runroot", str(scratch / "runroot"),
                "--storage-driver", "vfs"]
        subprocess.run(base + ["rm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def version(self) -> str:
        return _version([self.binary, "--version"])


class Ocibuild:
    """`python -m ocibuild build ... --output type=oci,dest=OUT` from the repo's venv.

    Bytecode is cached in `pycache` (PYTHONPYCACHEPREFIX), whatever PYTHONDONTWRITEBYTECODE
    says: an installed ocibuild has its .pyc files, so compiling its ~100 modules on every run
    (about 0.3 s of CPU here) would measure the checkout, not the tool.
    """

    name = "ocibuild"

    def __init__(self, compression: Compression, python: Path = REPO / ".venv/bin/python",
                 pycache: Path | None = None):
        self.python = python
        self.pycache = pycache
        self.flags = (["--compression", compression.format] if compression.format else []) + (
            ["--compression-level", str(compression.level)] if compression.level is not None else [])

    def build(self, dockerfile: Path, context: Path, out: Path, scratch: Path, extra: tuple[str, ...],
              platforms: tuple[str, ...] = (), bases: Mapping[str, Image] = {}, run: Run | None = None,
              prefix: str = "", cache: bool = False) -> Run:
        env = self._env(OCIBUILD_CACHE_DIR=scratch / "cache", TMPDIR=scratch / "tmp")
        target = ["--platform", ",".join(platforms)] if platforms else []
        target += [f"--build-context={name}=oci-layout://{image.ref}" for name, image in bases.items()]
        argv = [str(self.python), "-m", "ocibuild", "build", *self.flags, *extra, *target, "-f", str(dockerfile),
                "--output", f"type=oci,dest={out}", str(context)]
        run = run or Run(self.name)
        run.steps[f"{prefix}build"] = measure(argv, log_stem=scratch / f"{prefix}build", env=env, cwd=REPO)
        return run

    def push(self, image: Image, dest: str, scratch: Path, insecure: str) -> Run:
        env = self._env(OCIBUILD_CACHE_DIR=scratch / "cache", TMPDIR=scratch / "tmp")
        run = Run(self.name)
        run.steps["push"] = measure([str(self.python), "-m", "ocibuild", "push", "--insecure-registry", insecure,
                                     str(image.layout), dest], log_stem=scratch / "push", env=env, cwd=REPO)
        return run

    def cleanup(self, scratch: Path) -> None:
        pass

    def _env(self, **paths: Path) -> dict[str, str]:
        if not self.pycache:
            return _env(**paths)
        env = _env(PYTHONPYCACHEPREFIX=self.pycache, **paths)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def version(self) -> str:
        return _version(["git", "-C", str(REPO), "describe", "--always", "--dirty"])


def _seed_store(base: list[str], scratch: Path, name: str, image: Image, platforms: tuple[str, ...],
                env: dict[str, str]) -> Step | None:
    """Put base image `name` into a buildah store as localhost/NAME:latest (untimed).

    skopeo 1.9 cannot copy an image index into containers-storage ("does not support
    copying multiple images as a group"), so each platform goes in as its own image and,
    for several platforms, `buildah manifest add` joins them into a list named NAME, which
    bud --platform resolves per platform exactly as it would a pulled multi-arch image.
    Returns the failed command, if one failed.
    """
    argvs = []
    store = f"containers-storage:[vfs@{scratch / 'root'}+{scratch / 'runroot'}]"
    many = len(platforms) > 1
    for p in platforms:
        os_, arch, *variant = p.split("/")
        override = ["--override-os", os_, "--override-arch", arch] + (
            ["--override-variant", variant[0]] if variant else [])
        dest = f"localhost/{name}-{p.replace('/', '-')}:latest" if many else f"localhost/{name}:latest"
        argvs.append(["skopeo", "copy", "-q", *override, f"oci:{image.ref}", f"{store}{dest}"])
    if many:
        argvs.append(base + ["manifest", "create", f"localhost/{name}:latest"])
        argvs += [base + ["manifest", "add", f"localhost/{name}:latest",
                          f"containers-storage:localhost/{name}-{p.replace('/', '-')}:latest"] for p in platforms]
    for argv in argvs:
        step = measure(argv, log_stem=scratch / f"seed-{name}", env=env)
        if step.returncode != 0:
            return step
    return None


def _env(**paths: Path) -> dict[str, str]:
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **{k: str(v) for k, v in paths.items()}}


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"unknown ({e})"
