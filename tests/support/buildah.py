"""buildah as the independent reference builder (root, chroot isolation, vfs storage).

Every `Buildah` owns a private storage root (``--root``/``--runroot``), so pytest-xdist workers
never share containers/storage state and the machine's own /var/lib/containers is never touched.

Flags, and why (checked with buildah 1.28.2 on Debian 12, as root, no daemon, no network):
- ``--storage-driver vfs``: works inside containers without overlayfs or fuse;
- ``--isolation chroot``: RUN without an OCI runtime or user namespaces (our fixtures have none,
  but the harness must not depend on that);
- ``--layers=false``: no cache between cases, each build starts clean;
- ``--format oci``: OCI media types, as ``docker buildx build --output type=oci`` writes;
- ``--identity-label=false``: otherwise buildah adds the label ``io.buildah.version``;
- ``--pull=never``: only ``FROM scratch`` and earlier stages; never reach for a registry;
- ``--timestamp 0``: reproducible output (mtimes are ignored by the comparisons anyway).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

BUILD_FLAGS = ("--isolation", "chroot", "--layers=false", "--format", "oci",
               "--identity-label=false", "--pull=never", "--timestamp", "0")


class BuildahError(AssertionError):
    """A buildah command failed; the message holds the command and its output."""


@dataclass
class Buildah:
    root: Path
    runroot: Path = field(default=None)  # type: ignore[assignment]
    program: str = "buildah"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.runroot = Path(self.runroot or self.root.with_name(self.root.name + "-run"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, cwd: Path | None = None) -> str:
        """Run ``buildah <global flags> args``; return stdout, raise BuildahError on failure."""
        command = [self.program, "--root", str(self.root), "--runroot", str(self.runroot),
                   "--storage-driver", "vfs", *args]
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "TMPDIR": str(self.root.parent)}
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600)
        if done.returncode != 0:
            raise BuildahError(f"{' '.join(command)}\nexit {done.returncode}\n"
                               f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")
        return done.stdout

    def bud(self, context: Path, dockerfile: Path, tag: str, platform: str = "linux/amd64",
            build_args: Mapping[str, str] | None = None, target: str | None = None,
            build_contexts: Mapping[str, Path] | None = None, extra: Sequence[str] = ()) -> None:
        """Build `dockerfile` with `context` for one platform into image `tag`."""
        args = ["bud", *BUILD_FLAGS, "--platform", platform, "-f", str(dockerfile), "-t", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        for name, path in (build_contexts or {}).items():
            args += ["--build-context", f"{name}={path}"]
        if target:
            args += ["--target", target]
        self.run(*args, *extra, str(context))

    def push(self, image: str, destination: str) -> None:
        """Push `image` to a containers-transport destination (``oci-archive:/x.tar`` ...)."""
        self.run("push", "--quiet", image, destination)

    def build_archive(self, out: Path, context: Path, dockerfile: Path, platform: str,
                      **options) -> Path:
        """Build one platform and write it as an OCI archive at `out` (single manifest)."""
        tag = "localhost/case-" + out.stem.lower().replace("_", "-")
        self.bud(context, dockerfile, tag, platform, **options)
        self.push(tag, f"oci-archive:{out}")
        self.run("rmi", "--force", tag)
        return out

    def manifest(self, name: str, images: Sequence[str]) -> None:
        """Create manifest list `name` from local `images` (for multi-platform test inputs)."""
        self.run("manifest", "create", name)
        for image in images:
            self.run("manifest", "add", name, image)

    def manifest_push(self, name: str, destination: str) -> None:
        self.run("manifest", "push", "--all", "--quiet", name, destination)


def as_buildkit_config(config: dict) -> dict:
    """buildah's image config with its known, documented departures from BuildKit undone.

    - FROM scratch: BuildKit starts from WorkingDir "/" (and PATH in Env, which buildah sets too);
      buildah leaves WorkingDir empty until a WORKDIR instruction.
    """
    return {**config, "WorkingDir": config.get("WorkingDir") or "/"}
