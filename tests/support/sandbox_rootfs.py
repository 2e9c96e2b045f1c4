"""Busybox root filesystems for the sandbox tests, built from Debian's busybox-static packages.

`template(arch)` downloads ``busybox-static:<debian arch>`` once (cached under
/var/tmp/ocibuild-test-cache/busybox, keyed by version, under a lock so parallel workers share
it), unpacks it, adds applet links and a small /etc; `fresh_copy(arch, dest)` copies a template
for one test, which may then change it freely. Foreign architectures need
``dpkg --add-architecture`` once (scripts/install-deps.sh does it).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("OCIBUILD_TEST_CACHE", "/var/tmp/ocibuild-test-cache")) / "busybox"
# OCI architecture -> Debian architecture.
DEBIAN_ARCH = {"amd64": "amd64", "arm64": "arm64", "arm": "armhf", "386": "i386", "ppc64le": "ppc64el",
               "s390x": "s390x", "riscv64": "riscv64"}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"


def _run(*argv: str, **kw) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


MAX_AGE = 7 * 86400  # a cached .deb younger than this is used without asking apt (which is slow)


@functools.cache
def _versions() -> dict[str, str]:
    """Debian architecture -> candidate version, in one apt-cache call for all of them."""
    names = [f"busybox-static:{a}" for a in DEBIAN_ARCH.values()]
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True)
    versions, version = {}, ""
    for line in proc.stdout.splitlines():
        if line.startswith("Version:"):
            version = line.split(":", 1)[1].strip()
        elif line.startswith("Architecture:"):
            versions[line.split(":", 1)[1].strip()] = version
    return versions


def deb(arch: str) -> Path:
    """The cached .deb of busybox-static for OCI architecture `arch`, downloaded when missing."""
    deb_arch = DEBIAN_ARCH[arch]
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = sorted(CACHE.glob(f"busybox-static_*_{deb_arch}.deb"), key=lambda p: p.stat().st_mtime)
    if cached and time.time() - cached[-1].stat().st_mtime < MAX_AGE:
        return cached[-1]
    version = _versions().get(deb_arch)
    if version is None:
        raise RuntimeError(f"apt knows no busybox-static:{deb_arch} (run scripts/install-deps.sh)")
    path = CACHE / f"busybox-static_{version.replace(':', '%3a')}_{deb_arch}.deb"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                os.chmod(tmp, 0o755)  # apt's _apt user downloads into it
                _run("apt-get", "download", "-q", f"busybox-static:{deb_arch}", cwd=tmp)
                got = next(Path(tmp).glob("*.deb"))
                os.replace(got, path)
        os.utime(path)  # apt keeps the server's time; the age check wants when we last asked
    return path


def _applets() -> list[str]:
    """Applet paths ("bin/sh", "usr/bin/awk") from the host-architecture busybox (same version)."""
    host = template("amd64") / "bin" / "busybox"
    return _run(str(host), "--list-full").split()


def template(arch: str) -> Path:
    """A read-only-by-convention busybox rootfs for `arch`, built once per cache version."""
    source = deb(arch)
    root = CACHE / f"rootfs-{source.stem}"
    if (root / ".complete").exists():
        return root
    with open(CACHE / f".lock-{arch}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".complete").exists():
            _build(source, root, arch)
    return root


def _build(source: Path, root: Path, arch: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    _run("dpkg-deb", "-x", str(source), str(root))
    applets = _run(str(root / "bin" / "busybox"), "--list-full").split() if arch == "amd64" else _applets()
    for applet in applets:
        link = root / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    (root / ".complete").touch()


def fresh_copy(arch: str, dest: Path, owner: tuple[int, int] | None = None) -> Path:
    """A private copy of the `arch` template at `dest` (created), owned by `owner` if given."""
    src = template(arch)
    _run("cp", "-a", f"{src}/.", str(dest))
    (dest / ".complete").unlink()
    if owner is not None:
        _run("chown", "-R", "-h", f"{owner[0]}:{owner[1]}", str(dest))
    return dest
