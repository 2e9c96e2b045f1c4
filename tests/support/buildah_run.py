"""buildah as the reference for Dockerfiles that RUN on the busybox base (fixtures/run/<case>).

    import_base(buildah, layout, platforms)                  once per storage root
    build_reference(buildah, case, prepared, platform, out)  -> out, an OCI archive
    load_reference(out, platform, base)                      -> (ImageTree, stubs dropped)
    once(folder, make)                                       make(folder) once per run
    ocibuild_command(case, prepared, out, layout)            -> argv
    compare_output(case, out, reference, "ocibuild")         -> problems, one line each

How buildah gets ``FROM busybox`` (checked with buildah 1.28.2 and skopeo 1.9.3):
- buildah 1.28's ``--build-context`` does not serve FROM: with ``--build-context
  busybox=oci-layout://DIR:latest`` and ``--pull=never``, ``FROM busybox`` fails with
  "busybox: image not known" (without --pull=never buildah goes to docker.io).
- So each platform of the layout is copied into the worker's own storage root, once, with
  ``skopeo copy --override-arch A [--override-variant V] oci:DIR:latest
  containers-storage:[vfs@ROOT+RUNROOT]localhost/busybox-<platform>``; before each build
  ``buildah tag`` points ``docker.io/library/busybox:latest`` — the name the short name
  ``busybox`` stands for, found locally under ``--pull=never`` — at that platform's copy (a
  storage name belongs to one image at a time, so the tag moves). The Dockerfile text is the
  same for both tools.

What buildah does that BuildKit does not, undone on buildah's side only (never on ocibuild's):
- `RUN_STUBS`: a RUN under buildah leaves the mount points of the files it bind-mounts
  (/etc/hostname, /etc/hosts, /etc/resolv.conf: empty 0755 root files) and an empty /run
  directory in the image when the base had none; BuildKit removes its mount stubs. They are
  dropped only when they are absent from the base and exactly what buildah leaves;
  `load_reference` returns what it dropped so that a test can prove the rule still bites.
- SHELL: buildah 1.28 honours SHELL for RUN only with ``--format docker`` (with ``--format oci``
  it warns and runs ``/bin/sh -c``); a Dockerfile that has a SHELL instruction is therefore
  built with ``--format docker``. The layers are the same and ``buildah push`` to an
  ``oci-archive:`` converts the manifest; the compared config fields do not include Shell.
- Capabilities: BuildKit runs RUN with containerd's default set, which has CAP_MKNOD; buildah
  1.28's default set (containers.conf) lacks it, so ``mknod`` fails with "Operation not
  permitted". Every buildah build gets ``--cap-add CAP_MKNOD``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from . import busybox, imagetree
from .buildah import Buildah, as_buildkit_config
from .cases import Case, Prepared, check_expectations
from .imagetree import Entry
from .ocilayout import normalize_platform
from .validate import validate_oci_archive

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "run"
BASE_NAME = "docker.io/library/busybox:latest"
_EMPTY = hashlib.sha256(b"").hexdigest()
RUN_STUBS = {
    "/etc/hostname": Entry("file", 0o755, 0, 0, _EMPTY, None),
    "/etc/hosts": Entry("file", 0o755, 0, 0, _EMPTY, None),
    "/etc/resolv.conf": Entry("file", 0o755, 0, 0, _EMPTY, None),
    "/run": Entry("dir", 0o755, 0, 0, None, None),
}
_SHELL = re.compile(r"^\s*SHELL\s", re.IGNORECASE | re.MULTILINE)


def _local_name(platform: str) -> str:
    return "localhost/busybox-" + normalize_platform(platform).replace("/", "-")


def import_base(buildah: Buildah, layout: Path, platforms) -> None:
    """Copy each of `platforms` from the busybox `layout` into `buildah`'s storage root."""
    store = f"containers-storage:[vfs@{buildah.root}+{buildah.runroot}]"
    for platform in sorted(set(platforms)):
        _os, arch, *variant = normalize_platform(platform).split("/")
        command = ["skopeo", "copy", "--quiet", "--override-os", _os, "--override-arch", arch]
        if variant:
            command += ["--override-variant", variant[0]]
        command += [f"oci:{layout}:{busybox.TAG}", f"{store}{_local_name(platform)}:latest"]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": str(buildah.root.parent)}, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}\nexit {done.returncode}\n{done.stderr}")


def build_reference(buildah: Buildah, case: Case, prepared: Prepared, platform: str,
                    out: Path) -> Path:
    """Build `platform` of `case` with buildah into the OCI archive `out`."""
    buildah.run("tag", f"{_local_name(platform)}:latest", BASE_NAME)
    extra = ["--cap-add", "CAP_MKNOD"]
    if _SHELL.search(prepared.dockerfile.read_text()):
        extra += ["--format", "docker"]
    return buildah.build_archive(out, prepared.context, prepared.dockerfile, platform,
                                 build_args=case.build_args, target=case.target,
                                 build_contexts=prepared.build_contexts, extra=extra)


def load_reference(out: Path, platform: str,
                   base: dict[str, Entry]) -> tuple[imagetree.ImageTree, list[str]]:
    """buildah's tree for `platform` in `out` with `RUN_STUBS` undone against the `base` tree,
    and the stub paths that were dropped."""
    tree = imagetree.load(out, platform)
    files, dropped = without_run_stubs(tree.files, base)
    return imagetree.ImageTree(tree.platform, files, tree.config, tree.image), dropped


def once(folder: Path, make: Callable[[Path], None]) -> Path:
    """Run `make(folder)` unless an earlier call, in any process, finished it; return `folder`.

    xdist workers share the run's temporary directory but not their buildah storage roots: the
    first worker to need a case builds it, the others wait on the lock and read its archives.
    A failed `make` leaves no marker, so the next caller tries again (and fails the same way).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".done").touch()
    return folder


def without_run_stubs(files: dict[str, Entry], base: dict[str, Entry]):
    """`files` without the mount stubs buildah leaves (see the module docstring)."""
    dropped = [path for path, stub in RUN_STUBS.items()
               if path not in base and files.get(path) == stub
               and not any(other.startswith(path + "/") for other in files)]
    return {path: entry for path, entry in files.items() if path not in dropped}, dropped


def ocibuild_command(case: Case, prepared: Prepared, out: Path, layout: Path) -> list[str]:
    """The ocibuild invocation (``docker buildx build`` flags), busybox from `layout`."""
    command = [sys.executable, "-m", "ocibuild", "build", "--platform", ",".join(case.platforms),
               "--build-context", busybox.build_context(layout)]
    for key, value in case.build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    if case.target:
        command += ["--target", case.target]
    for name, path in prepared.build_contexts.items():
        command += ["--build-context", f"{name}={path}"]
    return command + ["-f", str(prepared.dockerfile), "--output", f"type=oci,dest={out}",
                      str(prepared.context)]


def compare_output(case: Case, out: Path, reference: dict, name: str, out_is_buildah: bool = False) -> list[str]:
    """Validate the OCI archive `out`, check `case`'s expect: facts on each platform, and
    compare each platform's tree and config with the `reference` trees (buildah's).

    buildah's known config departures from BuildKit are undone on the reference only (and on
    `out` too when `out_is_buildah`, for the harness's own test).
    Raises ValidationError from the validators; returns the other problems, one line each.
    """
    report = validate_oci_archive(out)
    built = sorted(p for p in report.platforms if not p.startswith("unknown"))  # attestations
    if built != sorted(case.platforms):
        return [f"{out.name} holds platforms {built}, expected {sorted(case.platforms)}"]
    problems = []
    for platform in case.platforms:
        ours = imagetree.load(out, platform)
        problems += check_expectations(case, ours)
        if platform in reference:
            theirs = reference[platform]
            mine = as_buildkit_config(ours.config) if out_is_buildah else ours.config
            problems += [f"[{platform}] {line}" for line in
                         imagetree.diff_trees(theirs.files, ours.files, ("buildah", name))
                         + imagetree.diff_configs(as_buildkit_config(theirs.config), mine, ("buildah", name))]
    return problems
