"""Whole root filesystems from debootstrap, one cached layer per Debian architecture.

    fetch_release(spec)                      the mirror's Release file: Date, Version, digest
    cached_layer(spec, arch, release, ...)   -> (LayerBlob, path of the blob in the cache)

A layer is made the first time only: ``debootstrap --foreign`` on the host (downloads and
unpacks; no foreign code runs), then ``chroot <dir> /debootstrap/debootstrap --second-stage``
(under QEMU through binfmt_misc for a foreign architecture), both with SOURCE_DATE_EPOCH set;
then `layer.tree.scan` + `entry_from_stat` with mtimes clamped to the epoch, the spec's
`cleanup` left out, and ocibuild's deterministic tar writer and compressor. That needs root.

The cache holds ``<cache>/rootfs/<suite>-<arch>-<key>.layer`` and its ``.json`` (digest,
diff_id, size, media type). The key covers the `rootfs:` section, the architecture, the epoch,
the compression and the SHA256 of the mirror's Release file, so a point release (the only
time a stable suite's Release changes) or any spec change builds afresh, and an unchanged
mirror is never asked for more than its Release file. A blob is checked against its digest
before every use; a damaged one is built again. One lock per key keeps two processes from
building the same rootfs twice; debootstrap runs in a temporary directory beside the cache.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import json
import os
import platform as host_platform
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from ocibuild.errors import BuildError, InvalidInput
from ocibuild.layer.compress import Compression, LayerBlob, build_layer
from ocibuild.layer.entry import Kind, TarEntry, sort_entries
from ocibuild.layer.tree import entry_from_stat, scan
from ocibuild.layerspec.debs import matcher
from ocibuild.layerspec.spec import PathSpec, RootfsSpec
from ocibuild.store.layout import atomic_write

CACHE_FORMAT = 1      # bump when the way a rootfs becomes a layer changes
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Debian architecture -> the name of its qemu-user binfmt handler (qemu-<name>)
QEMU = {"amd64": "x86_64", "i386": "i386", "arm64": "aarch64", "armhf": "arm", "armel": "arm",
        "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64el": "mips64el"}
_HOST = {"x86_64": ("amd64", "i386"), "aarch64": ("arm64",)}   # what the host runs natively
# A fixed environment: nothing of the caller's locale, TZ or proxies leaks into the rootfs.
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
        "DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true", "HOME": "/root"}
Log = Callable[[str], None]


@dataclass(frozen=True)
class Release:
    """What a suite's Release file says, and its digest (the mirror state the cache is keyed by)."""

    date: int        # Date: as seconds since 1970
    version: str     # Version: ("12.11"); the date as YYYYMMDD when the suite has none
    sha256: str

    def values(self, suite: str, arch: str) -> dict[str, str]:
        """The placeholders of a rootfs spec (spec.ROOTFS_PLACEHOLDERS)."""
        return {"version": self.version, "suite": suite, "release_date": _day(self.date), "debian_arch": arch}


def fetch_release(rootfs: RootfsSpec) -> Release:
    """Download and parse ``<mirror>/dists/<suite>/Release``. Raises BuildError naming the URL."""
    url = f"{rootfs.mirror}/dists/{rootfs.suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            body = answer.read()
    except (urllib.error.URLError, OSError) as e:
        raise BuildError(f"fetch {url}: {getattr(e, 'reason', None) or e}") from None
    fields = dict(re.findall(r"^(Date|Version): (.+)$", body.decode("utf-8", "replace"), re.M))
    try:
        date = int(email.utils.parsedate_to_datetime(fields["Date"]).timestamp())
    except (KeyError, TypeError, ValueError):
        raise BuildError(f"fetch {url}: no valid Date: field; is this a Debian mirror?") from None
    return Release(date, (fields.get("Version") or _day(date)).strip(), hashlib.sha256(body).hexdigest())


def _day(seconds: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(seconds))


def cached_layer(rootfs: RootfsSpec, paths: tuple[PathSpec, ...], arch: str, release: Release, epoch: int,
                 compression: Compression, cache: Path, log: Log | None = None) -> tuple[LayerBlob, Path]:
    """The layer of `rootfs` plus the spec's own `paths` for `arch`, from the cache or built (and
    cached) now. Raises BuildError (not root, a tool or binfmt handler missing, debootstrap
    failed), InvalidInput (a path whose parent the rootfs lacks)."""
    doc = {"format": CACHE_FORMAT, "rootfs": asdict(rootfs), "arch": arch, "epoch": epoch,
           "compression": compression.name, "release": release.sha256,
           "paths": [(p.path, p.kind.value, p.mode, p.uid, p.gid, p.content.hex(), p.target) for p in paths]}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]
    top = cache / "rootfs"
    blob_path, meta_path = top / f"{rootfs.suite}-{arch}-{key}.layer", top / f"{rootfs.suite}-{arch}-{key}.json"
    top.mkdir(parents=True, exist_ok=True)
    with _locked(top / f".{key}.lock"):
        blob = _cached(blob_path, meta_path)
        if blob is None:
            if log:
                log(f"debootstrap {rootfs.suite} {arch} (not cached; minutes, more under QEMU) -> {blob_path}")
            blob = _build(rootfs, paths, arch, epoch, compression, top, blob_path)
            atomic_write(meta_path, json.dumps(asdict(blob), indent=1).encode())
    return blob, blob_path


def _cached(blob_path: Path, meta_path: Path) -> LayerBlob | None:
    """The cached layer when its record reads and its blob matches the digest, else None."""
    try:
        blob = LayerBlob(**json.loads(meta_path.read_text()))
        with open(blob_path, "rb") as f:
            ok = f"sha256:{hashlib.file_digest(f, 'sha256').hexdigest()}" == blob.digest
    except (OSError, ValueError, TypeError):
        return None
    return blob if ok else None


def _build(rootfs: RootfsSpec, paths: tuple[PathSpec, ...], arch: str, epoch: int, compression: Compression,
           top: Path, dest: Path) -> LayerBlob:
    """debootstrap into a temporary directory under `top`, then write its layer to `dest`."""
    _check_can_build(rootfs, arch)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=top))
    target, partial = work / "root", work / "layer"
    try:
        _debootstrap(rootfs, arch, target, epoch, work / "debootstrap.log")
        with open(partial, "wb") as out:
            blob = build_layer(_with_paths(_entries(target, rootfs, epoch), paths, epoch), out, compression)
        os.replace(partial, dest)
        return blob
    finally:
        if _unmount_below(target):   # never delete through a mount that would not go
            raise BuildError(f"debootstrap {arch}: mounts remain below {target}; unmount them and remove {work}")
        shutil.rmtree(work, ignore_errors=True)


def _check_can_build(rootfs: RootfsSpec, arch: str) -> None:
    """Fail before any work with what is missing: root, debootstrap, a QEMU handler."""
    what = f"debootstrap {rootfs.suite} {arch}"
    if os.geteuid() != 0:
        raise BuildError(f"{what}: needs root (debootstrap unpacks as root and chroots), running as uid "
                         f"{os.geteuid()}: run as root, e.g. `sudo make layers`; or build the other specs with --only")
    if shutil.which("debootstrap") is None:
        raise BuildError(f"{what}: debootstrap is not installed: run scripts/install-deps.sh (apt-get install debootstrap)")
    if arch in _HOST.get(host_platform.machine(), ()):
        return
    entry = BINFMT / f"qemu-{QEMU.get(arch, arch)}"
    try:
        state = entry.read_text().split("\n", 1)[0]
    except OSError:
        raise BuildError(f"{what}: {arch} programs cannot run here: no binfmt_misc handler {entry}; "
                         f"run scripts/setup-binfmt.sh as root (needs qemu-user-static)") from None
    if state != "enabled":
        raise BuildError(f"{what}: the binfmt_misc handler {entry} is {state}; enable it (echo 1 > {entry})")


def _debootstrap(rootfs: RootfsSpec, arch: str, target: Path, epoch: int, log: Path) -> None:
    """Both stages of debootstrap into `target`; BuildError with the log's tail on failure."""
    env = {**_ENV, "SOURCE_DATE_EPOCH": str(epoch)}
    first = ["debootstrap", "--foreign", f"--arch={arch}", f"--components={','.join(rootfs.components)}"]
    first += [f"--variant={rootfs.variant}"] if rootfs.variant != "-" else []
    first += [f"--{key}={','.join(names)}" for key, names in (("include", rootfs.include), ("exclude", rootfs.exclude))
              if names]
    _run(first + [rootfs.suite, str(target), rootfs.mirror], env, log, f"debootstrap {arch} (first stage)")
    interpreter = _interpreter_for(arch, target)
    try:
        _run(["chroot", str(target), "/debootstrap/debootstrap", "--second-stage"], env, log,
             f"debootstrap {arch} (second stage, in a chroot)")
    finally:
        if interpreter is not None:
            interpreter.unlink(missing_ok=True)


def _interpreter_for(arch: str, target: Path) -> Path | None:
    """Copy QEMU into the rootfs when its handler lacks the F flag (the kernel then opens the
    interpreter by path inside the chroot); returns the copy to remove afterwards."""
    entry = BINFMT / f"qemu-{QEMU.get(arch, arch)}"
    if arch in _HOST.get(host_platform.machine(), ()) or not entry.exists():
        return None
    text = entry.read_text()
    flags, path = re.search(r"^flags: *(\S*)", text, re.M), re.search(r"^interpreter (\S+)", text, re.M)
    if path is None or (flags and "F" in flags.group(1)):
        return None
    copy = target / path.group(1).lstrip("/")
    if os.path.lexists(copy):   # the rootfs's own: not ours to copy over or remove
        return None
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path.group(1), copy)
    return copy


def _run(argv: list[str], env: dict[str, str], log: Path, what: str) -> None:
    with open(log, "ab") as out:
        status = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if status != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise BuildError(f"{what}: exit status {status}: " + " | ".join(tail))


def _entries(target: Path, rootfs: RootfsSpec, epoch: int) -> list[TarEntry]:
    """The layer entries of the tree at `target`, in walk order: cleanup globs pruned, files to
    empty emptied, mtimes clamped to `epoch`, hard links kept."""
    removed, emptied, hardlinks = matcher(rootfs.remove), set(rootfs.empty), {}
    entries = []
    for rel, st in scan(str(target), include=lambda path, _: "prune" if removed(path) else True):
        entry = entry_from_stat(rel, str(target / rel), st, mtime_clamp=epoch, hardlinks=hardlinks)
        if rel in emptied and entry.kind is Kind.FILE:
            entry.size, entry.source, entry.data = 0, None, b""
        entries.append(entry)
    return entries


def _with_paths(entries: list[TarEntry], paths: tuple[PathSpec, ...], epoch: int) -> list[TarEntry]:
    """`entries` with the spec's own directories, files and symlinks put in (replacing the
    tree's); each one's parent must be a directory of the tree."""
    by_path = {entry.path: entry for entry in entries}
    for p in paths:
        parent = by_path.get(p.path.rpartition("/")[0]) if "/" in p.path else None
        if "/" in p.path and getattr(parent, "kind", None) is not Kind.DIR:
            raise InvalidInput(f"{'/' + p.path}: its parent is not a directory of the rootfs")
        if getattr(by_path.get(p.path), "kind", None) is Kind.DIR and p.kind is not Kind.DIR:
            raise InvalidInput(f"{'/' + p.path}: a directory of the rootfs; it cannot become a {p.kind.value}")
        by_path[p.path] = TarEntry(path=p.path, kind=p.kind, mode=p.mode, uid=p.uid, gid=p.gid, mtime=epoch,
                                   linkname=p.target, data=p.content if p.kind is Kind.FILE else None)
    return sort_entries(by_path.values())


def _unmount_below(target: Path) -> list[str]:
    """Unmount what the second stage left mounted at or below `target` (proc, sys; deepest
    first, lazily); return the mount points that remain."""
    def mounts() -> list[str]:
        points = [line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        return sorted((p for p in points if p == str(target) or p.startswith(f"{target}/")), key=len, reverse=True)
    for point in mounts():
        subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
