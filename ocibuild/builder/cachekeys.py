"""Cache keys: what a step's result depends on, and nothing else, as one sha256.

A step's key covers the stage's chain so far (``ImageState.key``), the instruction after
expansion (without its line number: moving a step down the file does not change it), and
what the step can see beyond that: for COPY/ADD the names, types, modes, link targets and
contents of the files it reads (never their times or owners on the build machine, which a
fresh checkout changes); for RUN its environment, build args and `--mount` sources (a
secret by id only: its content must not be derivable from a key).

The chain key after a step is the chain before it, the instruction and the diff_id of the
layer it made: what the image now is, not how it was made. A step rerun (`--no-cache`, or a
changed input) that makes different bytes changes every key after it; one that makes the same
bytes (`COPY --from` a stage that changed elsewhere) leaves the steps after it cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ocibuild.builder.sources import ContextFS, glob
from ocibuild.cache import Record
from ocibuild.cache.records import CONTEXT_DIGESTS, FOLDER
from ocibuild.dockerfile.ignore import match_component
from ocibuild.errors import ContextError
from ocibuild.store.layout import atomic_write

HASH_WORKERS = 4  # file hashing overlaps reads with sha256 (both release the GIL)
LARGE_FILE = 128 << 10  # files at least this big are hashed on the worker threads


def digest_of(*parts) -> str:
    """sha256 of the parts as canonical JSON."""
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def instruction(instr) -> dict:
    """The expanded instruction as data, without where it sits in the file."""
    fields = dataclasses.asdict(instr)
    fields.pop("location", None)
    return {"name": instr.name, **fields}


def after(chain: str, instr: dict, record: Record) -> str:
    """The chain key once the step ``instr`` (``instruction()``) has produced ``record``."""
    return digest_of("after", chain, instr, str(record.diff_id or ""))


class ContentKeys:
    """Digests of what COPY/ADD and bind mounts read from a directory on this machine.

    Hashing a large context costs a full read; the result is remembered under a signature
    of the files' stat identity (inode, size, mtime, ctime), so an unchanged checkout is not
    read again, while a fresh one (new inodes and times, same content) gets the same digest.
    A digest not remembered is computed on a thread of its own when the files are large
    (``_mostly_large``): a step that cannot be a cache hit writes its layer meanwhile
    (stage.py). The platforms of a build share one hashing.
    """

    def __init__(self, cache: Path):
        self.root = cache / FOLDER / CONTEXT_DIGESTS
        self._hashing: dict[str, Future[str]] = {}
        self._guard = threading.Lock()

    def of_patterns(self, fs: ContextFS, patterns: list[str]) -> Future[str]:
        """Everything the patterns (with wildcards) select, and all below the selected directories."""
        files: list[tuple[str, os.stat_result | None]] = []
        for pattern in patterns:
            files.append((f"?{pattern}", None))  # where each pattern's files start
            for path in glob(fs, pattern, match_component):
                files.extend(_subtree(fs, fs.resolve(path)))
        return self._digest(fs, files)

    def of_dir(self, fs: ContextFS, path: str) -> str:
        return self._digest(fs, list(_subtree(fs, fs.resolve(path.strip("/"))))).result()

    def _digest(self, fs: ContextFS, files: list[tuple[str, os.stat_result | None]]) -> Future[str]:
        signature = hashlib.sha256()
        for rel, s in files:
            identity = (rel,) if s is None else (rel, s.st_mode, s.st_dev, s.st_ino, s.st_size,
                                                 s.st_mtime_ns, s.st_ctime_ns)
            signature.update(repr(identity).encode())
        remembered = self.root / signature.hexdigest()[:2] / signature.hexdigest()
        with self._guard:
            if (future := self._hashing.get(remembered.name)) is not None:
                return future
            future = self._hashing[remembered.name] = Future()
        try:
            future.set_result(remembered.read_text().strip())
        except OSError:
            if _mostly_large(files):
                threading.Thread(target=self._hash, args=(fs, files, remembered, future), name="context-hash",
                                 daemon=True).start()
            else:
                self._hash(fs, files, remembered, future)
        return future

    def _hash(self, fs: ContextFS, files, remembered: Path, future: Future[str]) -> None:
        try:
            h = hashlib.sha256()
            for rel, content in _contents(fs, files):
                h.update(f"{rel}\0{content}\n".encode())
        except OSError as e:
            where = os.path.relpath(e.filename, fs.root) if e.filename else "a file"
            future.set_exception(ContextError(f"cannot read {where!r} in the build context: {e.strerror}"))
            return
        except BaseException as e:  # noqa: BLE001 - raised again by future.result()
            future.set_exception(e)
            return
        future.set_result(h.hexdigest())
        with contextlib.suppress(OSError):  # only a memo: without it the next build hashes again
            remembered.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(remembered, h.hexdigest().encode())


def _mostly_large(files) -> bool:
    """Whether hashing ``files`` on a thread overlaps with the build's other work.

    Large files are hashed in C with the GIL released; small ones by Python, file by file,
    which on a thread fights the layer writer's own Python for the GIL (50,000 files of
    1-4 KiB built 35% slower that way). So: when the files average LARGE_FILE or more.
    """
    sizes = [s.st_size for _, s in files if s is not None and stat.S_ISREG(s.st_mode)]
    return bool(sizes) and sum(sizes) >= LARGE_FILE * len(sizes)


def _subtree(fs: ContextFS, path: str):
    """``(relpath, lstat)`` of ``path`` and, for a directory, everything below it."""
    if fs.lookup(path) is None:
        return
    yield path, os.lstat(fs.root + "/" + path if path else fs.root)
    yield from fs.scan(path)


def _contents(fs: ContextFS, files):
    """(relpath, what of it a copy keeps): type, permissions, and the content digest or link target."""
    def regular(s) -> bool:
        return s is not None and stat.S_ISREG(s.st_mode)

    # Large files on a few threads, in order (reading and hashing release the GIL); small ones
    # here, where handing them to a thread would cost more than hashing them.
    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        large = pool.map(_file_sha256, (os.path.join(fs.root, rel) for rel, s in files
                                        if regular(s) and s.st_size >= LARGE_FILE))
        for rel, s in files:
            if s is None:
                yield rel, ""
            elif stat.S_ISLNK(s.st_mode):
                yield rel, f"link {os.readlink(os.path.join(fs.root, rel))}"
            else:
                digest = "" if not regular(s) else next(large) if s.st_size >= LARGE_FILE \
                    else _file_sha256(os.path.join(fs.root, rel))
                yield rel, f"{stat.S_IFMT(s.st_mode):o} {stat.S_IMODE(s.st_mode):o} {digest}"


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
