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
from ocibuild.layer.tarwriter import file_digest
from ocibuild.store.layout import atomic_write

HASH_WORKERS = 4  # file hashing overlaps reads with hashing (both release the GIL)
LARGE_FILE = 128 << 10  # files at least this big are hashed on the worker threads
FILE_DIGEST = "blake3"  # of file contents (tarwriter.file_digest); in the memo's name, so a change rehashes


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


@dataclasses.dataclass(frozen=True)
class ContextFiles:
    """What a COPY/ADD or bind mount reads from a context directory, and its digest if remembered."""

    fs: ContextFS
    files: list[tuple[str, os.stat_result | None]]  # (relpath, lstat), None: where a pattern starts
    memo: Path        # where the digest is remembered, named by the files' stat identity
    known: str | None


class ContentKeys:
    """Digests of what COPY/ADD and bind mounts read from a directory on this machine.

    Hashing a large context costs a full read; the result is remembered under a signature
    of the files' stat identity (inode, size, mtime, ctime), so an unchanged checkout is not
    read again, while a fresh one (new inodes and times, same content) gets the same digest.
    A step that cannot be a cache hit writes its layer first and passes the digests the tar
    writer took of the files as it read them (stage.py), so a first build reads them once.
    The platforms of a build share one digest.
    """

    def __init__(self, cache: Path):
        self.root = cache / FOLDER / CONTEXT_DIGESTS
        self._digests: dict[str, Future[str]] = {}
        self._guard = threading.Lock()

    def of_patterns(self, fs: ContextFS, patterns: list[str]) -> ContextFiles:
        """Everything the patterns (with wildcards) select, and all below the selected directories."""
        files: list[tuple[str, os.stat_result | None]] = []
        for pattern in patterns:
            files.append((f"?{pattern}", None))  # where each pattern's files start
            for path in glob(fs, pattern, match_component):
                files.extend(_subtree(fs, fs.resolve(path)))
        return self._select(fs, files)

    def of_dir(self, fs: ContextFS, path: str) -> str:
        return self.digest(self._select(fs, list(_subtree(fs, fs.resolve(path.strip("/"))))))

    def _select(self, fs: ContextFS, files: list[tuple[str, os.stat_result | None]]) -> ContextFiles:
        signature = hashlib.sha256(FILE_DIGEST.encode())
        for rel, s in files:
            identity = (rel,) if s is None else (rel, s.st_mode, s.st_dev, s.st_ino, s.st_size,
                                                 s.st_mtime_ns, s.st_ctime_ns)
            signature.update(repr(identity).encode())
        memo = self.root / signature.hexdigest()[:2] / signature.hexdigest()
        try:
            known = memo.read_text().strip()
        except OSError:
            known = None
        return ContextFiles(fs, files, memo, known)

    def digest(self, selected: ContextFiles, read: dict[str, str] | None = None) -> str:
        """The digest of ``selected``: remembered, else computed once per build (and remembered).

        ``read``: digests of files already read (``tarwriter.file_digest``, by host path); the
        others are read here."""
        if selected.known is not None:
            return selected.known
        with self._guard:
            ours = selected.memo.name not in self._digests
            future = self._digests.setdefault(selected.memo.name, Future())
        if not ours:  # another platform's step is computing it
            return future.result()
        try:
            future.set_result(_hash(selected, read or {}))
        except BaseException as e:  # noqa: BLE001 - raised here, and by future.result() elsewhere
            future.set_exception(e)
            raise
        with contextlib.suppress(OSError):  # only a memo: without it the next build hashes again
            selected.memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(selected.memo, future.result().encode())
        return future.result()


def _hash(selected: ContextFiles, read: dict[str, str]) -> str:
    h = hashlib.sha256()
    try:
        for rel, content in _contents(selected.fs, selected.files, read):
            h.update(f"{rel}\0{content}\n".encode())
    except OSError as e:
        where = os.path.relpath(e.filename, selected.fs.root) if e.filename else "a file"
        raise ContextError(f"cannot read {where!r} in the build context: {e.strerror}") from None
    return h.hexdigest()


def _subtree(fs: ContextFS, path: str):
    """``(relpath, lstat)`` of ``path`` and, for a directory, everything below it."""
    if fs.lookup(path) is None:
        return
    yield path, os.lstat(fs.root + "/" + path if path else fs.root)
    yield from fs.scan(path)


def _contents(fs: ContextFS, files, read: dict[str, str]):
    """(relpath, what of it a copy keeps): type, permissions, and the content digest or link target."""
    def regular(s) -> bool:
        return s is not None and stat.S_ISREG(s.st_mode)

    def unread(rel, s) -> bool:
        return regular(s) and os.path.join(fs.root, rel) not in read

    # Large files on a few threads, in order (reading and hashing release the GIL); small ones
    # here, where handing them to a thread would cost more than hashing them.
    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        large = pool.map(file_digest, (os.path.join(fs.root, rel) for rel, s in files
                                       if unread(rel, s) and s.st_size >= LARGE_FILE))
        for rel, s in files:
            if s is None:
                yield rel, ""
            elif stat.S_ISLNK(s.st_mode):
                yield rel, f"link {os.readlink(os.path.join(fs.root, rel))}"
            else:
                host = os.path.join(fs.root, rel)
                digest = "" if not regular(s) else read[host] if host in read \
                    else next(large) if s.st_size >= LARGE_FILE else file_digest(host)
                yield rel, f"{stat.S_IFMT(s.st_mode):o} {stat.S_IMODE(s.st_mode):o} {digest}"
