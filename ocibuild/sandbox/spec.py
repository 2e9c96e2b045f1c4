"""What to run (`RunSpec`, `Mount`), what came of it (`RunResult`), and the `Sandbox` protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from ocibuild.oci.platform import Platform, host_platform

from ocibuild.sandbox.ids import IdMaps

NETWORKS = ("default", "none", "host")
MOUNT_TYPES = ("bind", "tmpfs")
# Docker's PATH when the image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Called with ("stdout" | "stderr", bytes) as the command writes; must not block for long.
OutputSink = Callable[[str, bytes], None]


@dataclass(frozen=True)
class Mount:
    """A mount for the duration of one RUN.

    `type` is "bind" (`source` is a host path) or "tmpfs" (`source` unused). `target` is an
    absolute path inside the rootfs; a missing target is created for the run and removed after
    it. `options` are extra tmpfs options ("size=64m", "mode=1777").
    """

    type: str
    target: str
    source: str = ""
    readonly: bool = False
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Overlay:
    """An overlayfs the sandbox mounts at `RunSpec.rootfs` for one run (see `Sandbox.overlay_for`).

    `lower` lists read-only directories, topmost first; they are never written. The command's
    changes land in `upper` (overlayfs' own format: whiteouts are 0/0 character devices, an
    opaque directory carries `<flavour>.overlay.opaque`); `work` is overlayfs' scratch
    directory, on the filesystem of `upper`. `flavour` is "trusted" (as root) or "user" (in
    a user namespace, mounted with `userxattr`). The mount lives only as long as the run.
    """

    lower: tuple[str, ...]
    upper: str
    work: str
    flavour: str = "trusted"


@dataclass
class RunSpec:
    """One RUN step: `argv` run in the directory `rootfs`, as `user`, for `platform`.

    `argv` is the exec form, or the shell form already wrapped (`["/bin/sh", "-c", cmd]`) by the
    caller. `env` holds "K=V" strings (image Env plus build args); PATH defaults to Docker's and
    HOME to the user's home from /etc/passwd when absent. `user` is "", "name", "uid",
    "uid:gid", "name:group", resolved inside the rootfs. `network` is "default" (the host's
    network, as rootless BuildKit does), "host", or "none" (only a loopback interface). With
    `overlay`, `rootfs` is an empty directory the overlay is mounted on inside the sandbox.
    """

    rootfs: str
    argv: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    platform: Platform = field(default_factory=host_platform)
    network: str = "default"
    mounts: list[Mount] = field(default_factory=list)
    hostname: str = "buildkitsandbox"
    output: OutputSink | None = None
    overlay: Overlay | None = None   # mounted at `rootfs` (an empty directory) when set


@dataclass(frozen=True)
class RunResult:
    """How a command that exited 0 went: the last lines of its stderr, and the id maps in force.

    `ids` tells the layer writer how on-disk owners map to in-container owners (identity for the
    root sandbox; see `ocibuild.sandbox.ids` for the rootless case).
    """

    exit_code: int
    stderr_tail: str
    ids: IdMaps


class Sandbox(Protocol):
    """A way to run a RUN step. `why` is one sentence for the progress output."""

    name: str
    why: str

    def run(self, spec: RunSpec) -> RunResult:
        """Run `spec` to completion; raises RunFailed on a non-zero exit, SandboxError when it
        could not start. Leaves nothing of the host in the rootfs. Not thread-safe per rootfs."""
        ...

    def can_run(self, platform: Platform) -> str | None:
        """None when `platform` can run in this sandbox, else why not and how to fix it."""
        ...

    @property
    def ids(self) -> IdMaps:
        """The id maps this sandbox's runs use (see `RunResult.ids`)."""
        ...

    def overlay_for(self, platform: Platform) -> str | None:
        """The `Overlay.flavour` this sandbox can mount for a run of `platform`, or None when it
        cannot (proot; a foreign platform handed to proot; overlayfs refused here)."""
        ...
