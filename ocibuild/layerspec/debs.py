"""Debian packages of any architecture: resolve with apt, download once, read without installing.

    resolve(requests, cache)   (package, arch, pin) -> `Deb` (version, file name, SHA256)
    fetch(debs, cache)         -> the .deb files, downloaded with `apt-get download` when missing
    read_members(path, want)   the package's files (data.tar) via `dpkg-deb --fsys-tarfile`

Foreign architectures need ``dpkg --add-architecture <arch>`` and ``apt-get update`` first
(scripts/add-foreign-archs.sh); nothing is installed and no root is needed afterwards.

The cache directory holds ``<package>_<version>_<arch>.deb`` files named as in the archive's
pool, checked against apt's SHA256 before every use, so a version bump downloads once and a
damaged file is fetched again. It also remembers apt's answers: with Debian's container
setting ``Dir::Cache::pkgcache ""`` every apt call parses all package lists again (6 s here
with seven architectures), so answers are stored in ``resolved/<key>.json``, where the key
covers the request and the stat of apt's lists and configuration: any ``apt-get update`` or
change of sources or pins starts afresh. Several processes may share the cache: files are
written under temporary names and renamed into place.
"""

from __future__ import annotations

import fnmatch
import contextlib
import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from ocibuild.errors import BuildError
from ocibuild.store.layout import atomic_write

APT_STATE = ("/var/lib/apt/lists", "/var/lib/dpkg/arch", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
             "/etc/apt/preferences", "/etc/apt/preferences.d", "/etc/apt/apt.conf.d")
_FIELDS = {"Package": "package", "Version": "version", "Architecture": "arch", "Filename": "filename",
           "SHA256": "sha256", "Source": "source"}


@dataclass(frozen=True)
class Deb:
    """One binary package as apt's lists describe it."""

    package: str
    version: str        # "1:1.35.0-4+deb12u1+b1"
    arch: str           # Debian architecture ("arm64", or "all")
    filename: str       # pool path: "pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_arm64.deb"
    sha256: str
    source: str = ""    # "busybox (1:1.35.0-4+deb12u1)", or "" when the source is the package itself

    @property
    def source_version(self) -> str:
        """The source package's version (a binNMU's "+b1" is the binary's alone)."""
        if "(" in self.source:
            return self.source.partition("(")[2].rstrip(") ")
        return self.version

    @property
    def upstream(self) -> str:
        """The upstream version: no epoch, no Debian revision ("1:1.35.0-4+deb12u1" -> "1.35.0")."""
        version = self.source_version.partition(":")[2] or self.source_version
        return version.rpartition("-")[0] or version

    @property
    def cache_name(self) -> str:
        return os.path.basename(self.filename)


def resolve(requests: list[tuple[str, str, str | None]], cache: Path) -> list[Deb]:
    """The `Deb` apt would download for each ``(package, arch, version or None)``, in order.

    Raises BuildError naming the request apt cannot find (a missing foreign architecture
    is the usual cause, and the message says how to add it).
    """
    specs = [f"{name}:{arch}" + (f"={version}" if version else "") for name, arch, version in requests]
    memo = cache / "resolved" / f"{_apt_state_key(specs)}.json"
    try:
        return [Deb(**d) for d in json.loads(memo.read_text())]
    except (OSError, ValueError, TypeError):
        pass
    debs = []
    found = _apt_cache_show(specs)   # one call for all: each call costs seconds (see above)
    for spec, (name, arch, version) in zip(specs, requests):
        match = [d for d in found if d.package == name and d.arch in (arch, "all")
                 and (version is None or d.version == version)]
        if not match:
            raise BuildError(f"resolve {spec}: apt knows no such package; for a foreign architecture run "
                             f"scripts/add-foreign-archs.sh {arch} (dpkg --add-architecture + apt-get update)")
        debs.append(match[0])
    with contextlib.suppress(OSError):  # only a memo: the next run asks apt again
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps([asdict(d) for d in debs], indent=1).encode())
    return debs


def fetch(debs: list[Deb], cache: Path) -> list[Path]:
    """The verified .deb file of each `Deb`, downloading the missing ones in one apt-get call."""
    paths = [cache / deb.cache_name for deb in debs]
    missing = [deb for deb, path in zip(debs, paths) if not _verified(path, deb.sha256)]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            os.chmod(tmp, 0o755)  # apt drops to the _apt user to download when it can
            _run(["apt-get", "-q", "download"] + [f"{d.package}:{d.arch}={d.version}" for d in missing],
                 f"download {', '.join(f'{d.package}:{d.arch}' for d in missing)}", cwd=tmp)
            for deb in missing:
                got = _downloaded(Path(tmp), deb)
                if not _verified(got, deb.sha256):
                    raise BuildError(f"download {deb.package}:{deb.arch}={deb.version}: SHA256 differs from apt's lists")
                os.replace(got, cache / deb.cache_name)
    return paths


def read_members(deb_path: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, tarfile.TarInfo, bytes]]:
    """Yield ``(layer path, member, content)`` for each member of the package's data whose
    normalised path ("bin/busybox") `want` accepts, streaming `dpkg-deb --fsys-tarfile`.
    Raises BuildError when dpkg-deb fails or its output is not a tar."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    broken = None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                path = "/".join(p for p in member.name.split("/") if p not in ("", "."))
                if path and want(path):
                    body = tar.extractfile(member).read() if member.isreg() else b""
                    yield path, member, body
    except tarfile.TarError as e:
        broken = str(e)
    finally:
        proc.stdout.close()   # an early close of the generator ends dpkg-deb with SIGPIPE
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        status = proc.wait()
    if status != 0 or broken:
        raise BuildError(f"read {deb_path.name}: " + (f"dpkg-deb: {err}" if err else f"not a valid data archive: {broken}"))


def matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """A test for layer paths against glob patterns (fnmatch, "*" also crosses "/")."""
    return lambda path: any(fnmatch.fnmatchcase(path, p) for p in patterns)


# ---------------------------------------------------------------------------- apt plumbing

def _apt_cache_show(specs: list[str]) -> list[Deb]:
    out = _run(["apt-cache", "show", "--no-all-versions"] + specs, f"resolve {' '.join(specs)}",
               allow_failure=True)
    found = []
    for stanza in out.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if sep and key in _FIELDS:
                fields[_FIELDS[key]] = value.strip()
        if {"package", "version", "arch", "filename", "sha256"} <= set(fields):
            found.append(Deb(**fields))
    return found


def _apt_state_key(specs: list[str]) -> str:
    """A hash of the request and of the stat of every file that can change apt's answer."""
    h = hashlib.sha256("\0".join(specs).encode())
    for top in APT_STATE:
        for path in sorted(_files(Path(top))):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode())
    return h.hexdigest()[:32]


def _files(top: Path) -> Iterator[Path]:
    if top.is_dir():
        yield from (p for p in top.iterdir() if p.is_file() and p.name != "lock")
    elif top.exists():
        yield top


def _run(argv: list[str], what: str, *, cwd: str | None = None, allow_failure: bool = False) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    except OSError as e:
        raise BuildError(f"{what}: cannot run {argv[0]}: {e.strerror}") from None
    if proc.returncode != 0 and not allow_failure:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("E:")] or proc.stderr.splitlines()
        raise BuildError(f"{what}: {argv[0]} failed: {' '.join(errors[-3:]) or f'exit status {proc.returncode}'}")
    return proc.stdout


def _downloaded(directory: Path, deb: Deb) -> Path:
    """apt-get download names files with the epoch's ":" URL-encoded; find ours by prefix and arch."""
    for path in directory.iterdir():
        if path.name.startswith(f"{deb.package}_") and path.name.endswith(f"_{deb.arch}.deb"):
            return path
    raise BuildError(f"download {deb.package}:{deb.arch}={deb.version}: apt-get download wrote no file")


def _verified(path: Path, sha256: str) -> bool:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha256
    except OSError:
        return False
