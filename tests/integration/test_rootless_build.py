"""Whole builds as an unprivileged user: RUN in a user namespace (subordinate ids) and under proot,
COPY-only builds, cross-platform RUN through QEMU. The claims of docs/rootless-ci.md, proven.

The test runs as root, creates the user `ocibuild-test` (with /etc/subuid and /etc/subgid
ranges) and runs `python -m ocibuild build` as that user with `runuser`. The venv lives under
/root, which the user cannot read, so ocibuild and the venv's site-packages are copied into a
world-readable directory first and run with a Python the user can execute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest

from ocibuild.layerspec import build as build_base
from ocibuild.layerspec import load_spec
from support import imagetree
from support.sandbox_user import _python_for, ensure_user
from support.validate import validate_oci_archive

REPO = Path(__file__).resolve().parents[2]
DEB_CACHE = Path("/var/tmp/ocibuild-debcache")


@pytest.fixture(scope="module")
def user_env(require):
    require("root")
    user = ensure_user()
    top = Path(tempfile.mkdtemp(prefix="ocibuild-rootless-"))
    shutil.copytree(sysconfig.get_paths()["purelib"], top / "site", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "ocibuild*", "__editable__*"))
    shutil.copytree(REPO / "ocibuild", top / "site" / "ocibuild", ignore=shutil.ignore_patterns("__pycache__"))
    build_base(load_spec(REPO / "layers" / "busybox.yaml"), top / "busybox", cache=DEB_CACHE)
    work = top / "work"
    work.mkdir()
    subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
    os.chown(work, user.uid, user.gid)
    yield user, top, _python_for(user.uid)
    shutil.rmtree(top, ignore_errors=True)


def run_as_user(user_env, ctx: Path, *argv: str) -> subprocess.CompletedProcess:
    user, top, python = user_env
    cmd = ["runuser", "-u", user.name, "--", "env", "-i", f"PYTHONPATH={top / 'site'}",
           "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", f"HOME={top / 'work'}",
           f"OCIBUILD_CACHE_DIR={top / 'work' / 'cache'}", python, "-B", "-m", "ocibuild", "build",
           "--progress", "plain", "--build-context", f"busybox=oci-layout://{top / 'busybox'}:latest", *argv, str(ctx)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd="/")


def make_context(user_env, name: str, dockerfile: str) -> Path:
    user, top, _ = user_env
    ctx = top / "work" / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "file.txt").write_text("from the context\n")
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(ctx)], check=True)
    return ctx


RUN_DOCKERFILE = ("FROM busybox\nCOPY --chown=7:8 file.txt /copied\n"
                  "RUN id -u > /whoami && uname -m > /arch && echo x > /owned && chown 1000:1000 /owned\n")


def test_userns_build_keeps_in_container_owners(user_env, require):
    require("skopeo", "umoci", "oci-image-tool", "binfmt:arm64")
    ctx = make_context(user_env, "userns", RUN_DOCKERFILE)
    out = user_env[1] / "work" / "userns.tar"
    proc = run_as_user(user_env, ctx, "--platform", "linux/amd64,linux/arm64", "-o", f"type=oci,dest={out}")
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: userns" in proc.stderr
    assert "layers from an overlayfs upper directory" in proc.stderr  # kernel overlay, unprivileged
    validate_oci_archive(out)
    for platform in ("linux/amd64", "linux/arm64"):
        files = imagetree.load(out, platform).files
        assert (files["/owned"].uid, files["/owned"].gid) == (1000, 1000)
        assert (files["/copied"].uid, files["/copied"].gid) == (7, 8)
        assert files["/bin/busybox"].uid == 0 and files["/etc/passwd"].uid == 0


def test_proot_build_records_root(user_env, require):
    require("skopeo")
    ctx = make_context(user_env, "proot", RUN_DOCKERFILE)
    out = user_env[1] / "work" / "proot.tar"
    proc = run_as_user(user_env, ctx, "--sandbox", "proot", "-o", f"type=oci,dest={out}")
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: proot" in proc.stderr
    files = imagetree.load(out, "linux/amd64").files
    assert "/whoami" in files and files["/owned"].uid == 0 and files["/copied"].uid == 7


def test_copy_only_build_needs_no_sandbox(user_env, require):
    require("skopeo", "umoci", "oci-image-tool")
    ctx = make_context(user_env, "copyonly", "FROM busybox\nCOPY file.txt /srv/\nUSER 1000\n")
    out = user_env[1] / "work" / "copy.tar"
    proc = run_as_user(user_env, ctx, "--platform", "linux/amd64,linux/arm/v7", "-o", f"type=oci,dest={out}")
    assert proc.returncode == 0, proc.stderr
    assert "sandbox:" not in proc.stderr
    validate_oci_archive(out)
