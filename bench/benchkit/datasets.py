"""Deterministic benchmark datasets, generated once and cached on disk.

A dataset is a directory tree made by a seeded generator: the same name and
GENERATOR_VERSION always give the same bytes, names and mtimes, so results from
different days and machines compare. Generation happens in a temporary
directory that is renamed into place only when complete; a directory that
holds ``dataset.json`` is therefore whole and is reused as is.

Layout under the cache directory::

    datasets/<name>-v<GENERATOR_VERSION>/dataset.json   files, bytes, generation seconds
    datasets/<name>-v<GENERATOR_VERSION>/context/        the build context

Content comes in two kinds. ``random`` bytes come from SHAKE-128 seeded with the
file's path, so they are incompressible like media or already-compressed files.
``text`` is generated log output (access-log lines, JSON records, periodic
stats) with varying numbers, ids and timestamps; gzip -6 packs it about 4:1,
close to what real log and text files give.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GENERATOR_VERSION = 1
MTIME = 1_700_000_000  # every file and directory gets this mtime: metadata is deterministic too
GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class FileSpec:
    """One file to generate: where, how big, which content and from which seed."""

    relpath: str
    size: int
    kind: str  # "random" or "text"


@dataclass(frozen=True)
class Dataset:
    """A generated context on disk, as described by its dataset.json."""

    name: str
    context: Path
    files: int
    bytes: int
    generate_seconds: float
    generated_now: bool


# ---------------------------------------------------------------- layouts


def big_layout(total: int, files: int = 2000, seed: str = "big") -> list[FileSpec]:
    """Half the bytes random, half text, in `files` files of log-normal sizes.

    The file count stays the same at every `total`, so scaling the dataset
    changes only the byte count (what --scale wants to isolate).
    """
    rng = random.Random(seed)
    specs = []
    for kind, count, ext in (("random", files // 2, "bin"), ("text", files - files // 2, "log")):
        weights = [rng.lognormvariate(0.0, 1.0) for _ in range(count)]
        sizes = _apportion(total // 2 if kind == "random" else total - total // 2, weights)
        for i, size in enumerate(sizes):
            n = len(specs)
            path = f"d{n % 10:02d}/s{n // 10 % 10:02d}/{kind}-{i:04d}.{ext}"
            specs.append(FileSpec(path, size, kind))
    return specs


def small_layout(dirs: int = 50, subdirs: int = 10, per_dir: int = 100, seed: str = "small") -> list[FileSpec]:
    """`dirs` x `subdirs` x `per_dir` text files of 1-4 KiB each."""
    rng = random.Random(seed)
    return [
        FileSpec(f"pkg{d:02d}/mod{s:02d}/file{f:03d}.txt", rng.randint(1024, 4096), "text")
        for d in range(dirs)
        for s in range(subdirs)
        for f in range(per_dir)
    ]


def files20k_layout(dirs: int = 20, per_dir: int = 1000, seed: str = "files20k") -> list[FileSpec]:
    """20,000 text files of 64-512 bytes: a base image with many files and few bytes."""
    rng = random.Random(seed)
    return [FileSpec(f"f{d:02d}/n{f:04d}.txt", rng.randint(64, 512), "text")
            for d in range(dirs) for f in range(per_dir)]


LAYOUTS: dict[str, Callable[[], list[FileSpec]]] = {
    "big": lambda: big_layout(GiB),
    "big-256m": lambda: big_layout(GiB // 4),  # same 2,000 files, a quarter of the bytes
    "small": lambda: small_layout(),
    "files20k": lambda: files20k_layout(),
    "small-200": lambda: small_layout(dirs=2, subdirs=5, per_dir=20, seed="small-200"),  # 200 files, ~0.5 MiB
    "empty": lambda: [],  # an empty build context, for benchmarks whose work is in RUN or in a base image
}


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split `total` bytes in proportion to `weights`; the sizes sum to exactly `total`."""
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[-1] += total - sum(sizes)
    return sizes


# ---------------------------------------------------------------- content

_LEVELS = ("INFO",) * 12 + ("DEBUG",) * 6 + ("WARN",) * 2 + ("ERROR",)
_MODULES = ("http.server", "db.pool", "auth.session", "cache.redis", "worker.queue",
            "api.v2.orders", "api.v2.users", "scheduler", "storage.s3", "metrics")
_PATHS = ("/api/v2/orders", "/api/v2/users/me", "/healthz", "/static/app.js",
          "/api/v2/cart/items", "/login", "/api/v2/search", "/metrics")
_METHODS = ("GET",) * 6 + ("POST", "POST", "PUT", "DELETE")
_STATUS = (200, 200, 200, 201, 204, 304, 404, 500)


def text_bytes(seed: str, size: int) -> bytes:
    """`size` bytes of log-like text; the same seed always gives the same bytes."""
    rng = random.Random(seed)
    bits, choice = rng.getrandbits, rng.choice
    sec, ms = MTIME - rng.randrange(10**7), 0
    prefix = _stamp(sec)
    out, length = [], 0
    while length < size:
        x = bits(64)
        ms += x & 63
        if ms >= 1000:
            sec, ms = sec + ms // 1000, ms % 1000
            prefix = _stamp(sec)
        k, y = (x >> 6) % 10, x >> 10
        if k < 6:
            line = (f'{prefix}.{ms:03d}Z {choice(_LEVELS):5} [{choice(_MODULES)}] 10.{y & 255}.{y >> 8 & 255}.'
                    f'{y >> 16 & 255} "{choice(_METHODS)} {choice(_PATHS)}?id={(y >> 24) % 1000000}" '
                    f'{choice(_STATUS)} {(y >> 44) % 40000} {bits(18) / 1000:.2f}ms req={bits(64):016x}\n')
        elif k < 9:
            line = (f'{{"ts":"{prefix}.{ms:03d}Z","level":"{choice(_LEVELS).lower()}","logger":'
                    f'"{choice(_MODULES)}","msg":"processed batch","batch":{y % 100000},"items":'
                    f'{(y >> 20) % 500},"elapsed_ms":{(y >> 30) % 100000 / 10:.1f},"user_id":{bits(24)}}}\n')
        else:
            line = (f"{prefix}.{ms:03d}Z {choice(_LEVELS):5} [{choice(_MODULES)}] pool stats: active={y & 63} "
                    f"idle={y >> 6 & 63} waiting={y >> 12 & 7} max=64 lifetime={(y >> 15) % 3600}s\n")
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]


def _stamp(sec: int) -> str:
    t = time.gmtime(sec)
    return f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def random_bytes(seed: str, size: int) -> bytes:
    """`size` incompressible bytes, deterministic in `seed`."""
    return hashlib.shake_128(seed.encode()).digest(size)


def _write_files(root: str, specs: list[FileSpec]) -> int:
    """Worker: write `specs` under `root`; returns the bytes written."""
    written = 0
    for spec in specs:
        path = os.path.join(root, spec.relpath)
        seed = f"{GENERATOR_VERSION}:{spec.relpath}"
        data = random_bytes(seed, spec.size) if spec.kind == "random" else text_bytes(seed, spec.size)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (MTIME, MTIME))
        written += len(data)
    return written


# ---------------------------------------------------------------- cache


def ensure(cache_dir: Path, name: str, layout: list[FileSpec], log=print) -> Dataset:
    """Return dataset `name`, generating it under `cache_dir` unless already there.

    Idempotent; safe to interrupt (a half-made tree is never mistaken for a whole one).
    """
    home = cache_dir / "datasets" / f"{name}-v{GENERATOR_VERSION}"
    meta = home / "dataset.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        return Dataset(name, home / "context", info["files"], info["bytes"], info["generate_seconds"], False)
    log(f"generating dataset {name}: {len(layout):,} files, {sum(s.size for s in layout) / MiB:,.0f} MiB "
        f"into {home} (once; reused afterwards)")
    tmp = home.with_name(f"{home.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    total = _generate(tmp / "context", layout)
    seconds = round(time.perf_counter() - start, 2)
    info = {"name": name, "generator_version": GENERATOR_VERSION, "files": len(layout), "bytes": total,
            "generate_seconds": seconds}
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    os.rename(tmp, home)
    log(f"generated {name} in {seconds:.1f} s")
    return Dataset(name, home / "context", len(layout), total, seconds, True)


def _generate(context: Path, layout: list[FileSpec]) -> int:
    dirs = sorted({os.path.dirname(s.relpath) for s in layout})
    context.mkdir(parents=True)  # even when empty
    for d in dirs:
        (context / d).mkdir(parents=True, exist_ok=True)
    chunks = [layout[i::64] for i in range(64)]  # interleaved: each chunk gets a mix of big and small files
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        total = sum(pool.map(_write_files, [str(context)] * len(chunks), chunks))
    for d in {str(p) for d in dirs for p in Path(d).parents} | set(dirs):  # utime does not touch the parent
        os.utime(context / d, (MTIME, MTIME))
    os.utime(context, (MTIME, MTIME))
    return total


def warm(context: Path) -> None:
    """Read every file (of a tree, or one file) once so both tools start from the same warm page cache."""
    buf = bytearray(MiB)
    walk = [("", [], [str(context)])] if context.is_file() else os.walk(context)
    for dirpath, _dirs, files in walk:
        for name in files:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
