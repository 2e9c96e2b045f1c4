"""Images the benchmarks start from, made once and cached like the datasets.

Each is an OCI layout (an image tagged ``latest``) under ``<cache>/images/<name>-<key>/``,
where the key hashes whatever the image is made from, so a changed spec or generator
gives a new directory instead of a stale image. Made in a temporary directory and
renamed into place when complete, like the datasets.

    busybox   python -m ocibuild.layerspec layers/ --only busybox (7 platforms, from Debian .debs)
    files20k  FROM busybox + COPY of the files20k dataset (20,000 small files), linux/amd64
    big       FROM scratch + COPY of the big dataset (1 GiB), linux/amd64; also kept as an OCI tar

Making them needs ocibuild; benchmarks that use them do not run with a broken ocibuild.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import datasets
from .tools import REPO

DEB_CACHE = Path(os.environ.get("OCIBUILD_DEB_CACHE", "/var/tmp/ocibuild-debcache"))


@dataclass(frozen=True)
class Image:
    """A cached base image: an OCI layout holding one image tagged `latest` (and `archive`, its tar)."""

    name: str
    layout: Path
    archive: Path | None = None

    @property
    def ref(self) -> str:
        return f"{self.layout}:latest"


def ensure(cache_dir: Path, name: str, log: Callable[[str], None] = print) -> Image:
    """Return base image `name`, making it (and what it is made from) unless cached. Idempotent."""
    return _MAKERS[name](cache_dir, log)


def _busybox(cache_dir: Path, log) -> Image:
    spec = REPO / "layers" / "busybox.yaml"
    home = _home(cache_dir, "busybox", spec.read_bytes())
    if not home.exists():
        log(f"making base image busybox from {spec} (once)")

        def make(tmp: Path) -> None:
            _check([str(REPO / ".venv/bin/python"), "-m", "ocibuild.layerspec", str(REPO / "layers"), str(tmp),
                    "--only", "busybox", "--cache", str(DEB_CACHE)])
            (tmp / "busybox").rename(tmp / "layout")
        _make(home, make)
    return Image("busybox", home / "layout")


def _built(name: str, dataset: str, dockerfile: str, bases: tuple[str, ...] = (), tar: bool = False):
    """A maker that builds `dockerfile` over `dataset` with ocibuild into a layout (and a tar)."""
    def maker(cache_dir: Path, log) -> Image:
        ds = datasets.ensure(cache_dir, dataset, datasets.LAYOUTS[dataset](), log=log)
        from_images = [ensure(cache_dir, b, log) for b in bases]
        key = "\n".join([dockerfile, str(datasets.GENERATOR_VERSION), *(str(i.layout) for i in from_images)])
        home = _home(cache_dir, name, key.encode())
        archive = home / "image.tar" if tar else None
        if not home.exists():
            log(f"making base image {name}: ocibuild build of {dockerfile.strip()!r} over {ds.context} (once)")

            def make(tmp: Path) -> None:
                (tmp / "Dockerfile").write_text(dockerfile)
                contexts = [f"--build-context={i.name}=oci-layout://{i.ref}" for i in from_images]
                build = [str(REPO / ".venv/bin/python"), "-m", "ocibuild", "build", "--progress", "plain",
                         "--platform", "linux/amd64", "-t", f"bench/{name}:latest", *contexts,
                         "-f", str(tmp / "Dockerfile")]
                env = {**os.environ, "OCIBUILD_CACHE_DIR": str(tmp / "cache")}
                _check(build + ["--output", f"type=oci,dest={tmp / 'layout'},tar=false", str(ds.context)], env)
                if tar:  # the same image as a tar, for tools that take oci-archive: (made from the layout)
                    with tarfile.open(tmp / "image.tar", "w") as t:
                        for entry in sorted(os.listdir(tmp / "layout")):
                            t.add(tmp / "layout" / entry, arcname=entry)
                shutil.rmtree(tmp / "cache")
            _make(home, make)
        return Image(name, home / "layout", archive)
    return maker


def _home(cache_dir: Path, name: str, key: bytes) -> Path:
    return cache_dir / "images" / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}"


def _make(home: Path, make: Callable[[Path], None]) -> None:
    tmp = home.with_name(f"{home.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    make(tmp)
    os.rename(tmp, home)


def _check(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"making a base image failed: {' '.join(argv)}\n{done.stderr[-3000:]}")


_MAKERS: dict[str, Callable[[Path, Callable[[str], None]], Image]] = {
    "busybox": _busybox,
    "files20k": _built("files20k", "files20k", "FROM busybox\nCOPY . /files/\n", bases=("busybox",)),
    "big": _built("big", "big", "FROM scratch\nCOPY . /data/\n", tar=True),
}
