"""Cleaning the cache directory, as `docker buildx prune` cleans BuildKit's (`ocibuild prune`).

By default: build cache records, unpacked base images, orphaned blobs and stale temp files
go, and with them every blob that nothing kept refers to (mark from the local images'
index.json, the manifest lists and the records kept; sweep the rest of ``blobs/``). Local
images and manifest lists are never touched. ``all`` adds the RUN cache mounts and the .deb
cache. ``keep_storage`` removes least recently used records and bases (and with ``all``
mounts and .debs) only until what remains of them takes at most that many bytes; ``until``
removes only those unused for that long. Garbage (orphans, stale temp files, unreadable
records) goes whatever the filters say.

Runs under the exclusive cache lock (cache/lock.py), so no build is using anything. The
order keeps the cache consistent if interrupted: records first (a record whose layer is gone
would be a cache miss, but none is left pointing at one), then directories, each renamed
out of the way before it is emptied (builder/base.py trusts a rootfs that has owners.json),
then blobs, then temp files.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ocibuild.cache.lock import Notify, prune_lock
from ocibuild.cache.records import RecordStore
from ocibuild.cache.usage import (BASES, DEBS, MOUNTS, ORPHANS, RECORDS, TEMP, Item, ListSource, Usage,
                                  scan)
from ocibuild.errors import InvalidOption, OcibuildError
from ocibuild.oci import Digest
from ocibuild.store.blobs import BlobStore


@dataclass(frozen=True)
class PruneOptions:
    all: bool = False                 # also cache mounts and the .deb cache
    keep_storage: int | None = None   # bytes of prunable cache to keep (least recently used goes first)
    until: float | None = None        # seconds: only what has not been used for this long


@dataclass
class Removed:
    item: Item
    freed: int                        # disk usage freed: the item and the blobs only it kept


@dataclass
class PruneResult:
    removed: list[Removed] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)   # what could not be removed, and why
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r.freed for r in self.removed)


def prune(cache: str | os.PathLike[str], opts: PruneOptions = PruneOptions(), *, lists: ListSource | None = None,
          on_wait: Notify | None = None, timeout: float | None = None) -> PruneResult:
    """Prune ``cache`` under its exclusive lock (waiting for running builds; see prune_lock)."""
    with prune_lock(cache, on_wait=on_wait, timeout=timeout):
        now = time.time()
        usage = scan(cache, lists, now=now)
        return execute(usage, plan(usage, opts, now))


@dataclass
class Plan:
    items: list[Removed]              # in deletion order
    blobs: dict[Digest, Item]         # blob -> the item its size is reported with


PRUNABLE = (RECORDS, BASES)
WITH_ALL = (MOUNTS, DEBS)
ORDER = (RECORDS, BASES, MOUNTS, DEBS, ORPHANS, TEMP)


def plan(usage: Usage, opts: PruneOptions, now: float) -> Plan:
    """What to remove; pure (reads nothing), so the choice can be tested without a disk."""
    kinds = PRUNABLE + (WITH_ALL if opts.all else ())
    candidates = [i for i in usage.of(*kinds) if not i.garbage]
    refs = Counter(d for i in usage.of(RECORDS) for d in set(i.blobs) if d not in usage.kept)
    chosen = _choose(candidates, refs, usage, opts, now)
    remaining = Counter(refs)
    removed, blobs = [], {}
    for item in chosen + [i for i in usage.items if i.garbage]:
        entry = Removed(item, item.own)
        for d in set(item.blobs) & set(refs):
            remaining[d] -= 1
            if remaining[d] == 0:  # the last record that needed this layer
                blobs[d] = item
                entry.freed += usage.blob_sizes.get(d, 0)
        if item.kind == ORPHANS:
            blobs[item.blobs[0]] = item
        removed.append(entry)
    removed.sort(key=lambda r: ORDER.index(r.item.kind))
    return Plan(removed, blobs)


def _choose(candidates: list[Item], refs: Counter, usage: Usage, opts: PruneOptions, now: float) -> list[Item]:
    eligible = [i for i in candidates if opts.until is None
                or (i.last_used is not None and now - i.last_used >= opts.until)]
    if opts.keep_storage is None:
        return eligible
    refs = Counter(refs)
    total = sum(i.own for i in candidates) + sum(usage.blob_sizes.get(d, 0) for d in refs)
    chosen = []
    for item in sorted(eligible, key=lambda i: i.last_used or 0.0):
        if total <= opts.keep_storage:
            break
        chosen.append(item)
        total -= item.own
        for d in set(item.blobs) & set(refs):
            refs[d] -= 1
            if refs[d] == 0:
                total -= usage.blob_sizes.get(d, 0)
    return chosen


def execute(usage: Usage, p: Plan) -> PruneResult:
    """Remove what ``p`` lists, in its order; failures are collected, not raised, so one file
    that cannot go (a root-owned file in a cache mount) does not stop the rest."""
    result = PruneResult()
    failed: set[int] = set()
    for entry in p.items:
        if entry.item.kind in (ORPHANS, TEMP):
            continue  # blobs once no record refers to them, temp files last
        if _remove_paths(entry.item, result):
            result.removed.append(entry)
        else:
            failed.add(id(entry.item))
    _remove_empty_shards(usage.root)
    if usage.complete:
        _sweep(BlobStore(usage.root), p, failed, result)
    else:
        result.warnings += usage.problems
        result.warnings.append("no blobs were removed: the blobs the local images need could not all be read")
        for entry in result.removed:
            entry.freed = entry.item.own
    for entry in p.items:
        if entry.item.kind == TEMP and _remove_paths(entry.item, result):
            result.removed.append(entry)
    return result


def _remove_empty_shards(root: Path) -> None:
    """records/<key[:2]>/ folders left empty (safe: no build can be writing one under the prune lock)."""
    for shard in RecordStore(root).root.glob("??"):
        try:
            shard.rmdir()
        except OSError:
            pass  # not empty


def _sweep(blobs: BlobStore, p: Plan, failed: set[int], result: PruneResult) -> None:
    """Delete the planned blobs, except those of an item that could not be removed."""
    by_item = {id(e.item): e for e in p.items}
    for digest, item in p.blobs.items():
        entry = by_item[id(item)]
        if id(item) in failed:
            continue
        try:
            blobs.delete(digest)
        except OcibuildError as e:
            result.failures.append(f"remove blob {digest}: {e}")
            entry.freed = entry.item.own if item.kind != ORPHANS else 0
            continue
        if item.kind == ORPHANS:
            result.removed.append(entry)


def _remove_paths(item: Item, result: PruneResult) -> bool:
    ok = True
    for path in item.paths:
        try:
            _remove(path)
        except OSError as e:
            result.failures.append(f"remove {item.kind} {item.name}: {path}: {e.strerror or e}")
            ok = False
    return ok


def _remove(path: Path) -> None:
    """Remove a file or a whole tree; a tree is first renamed to a ``.prune-`` name beside it, so an
    interrupted removal leaves a temp directory (pruned next time), never a half-emptied entry."""
    try:
        if not path.is_dir() or path.is_symlink():
            path.unlink()
            return
    except FileNotFoundError:
        return
    doomed = Path(tempfile.mkdtemp(prefix=".prune-", dir=path.parent))
    os.rename(path, doomed / path.name)
    shutil.rmtree(doomed, onerror=_writable_and_retry)


def _writable_and_retry(func, path: str, exc_info) -> None:
    """rmtree's error hook: a read-only directory (mode 0555 in an image) cannot lose its entries
    until it is made writable; anything else is raised."""
    error = exc_info[1]
    if isinstance(error, FileNotFoundError):
        return
    if not isinstance(error, PermissionError):
        raise error
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, 0o700)
        if func in (os.rmdir, os.unlink) or getattr(func, "__name__", "") in ("rmdir", "unlink"):
            func(path)
        else:  # scandir/open of a directory without read permission: make it readable, start again
            os.chmod(path, 0o700)
            shutil.rmtree(path, onerror=_writable_and_retry)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


# -- parsing the command line's values (here so the Python API reads them alike) ---------------

_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str, flag: str = "--keep-storage") -> int:
    """``10GB``, ``500MB``, ``1.5g``, ``1024``: binary multiples, as docker's RAMInBytes reads them."""
    m = _SIZE.match(text.strip())
    if not m:
        raise InvalidOption(f"invalid {flag} {text!r}: expected a size such as 10GB, 500MB or 1024")
    power = "kmgtp".index(m.group(2).lower()) + 1 if m.group(2) else 0
    return int(float(m.group(1)) * 1024 ** power)


def parse_duration(text: str, flag: str = "--filter until") -> float:
    """A Go duration (``24h``, ``1h30m``, ``90s``), as buildx's ``until`` filter takes it; seconds."""
    if text == "0":
        return 0.0
    if not text or _DURATION.sub("", text) != "":
        raise InvalidOption(f"invalid {flag} {text!r}: expected a duration such as 24h, 90m or 1h30m")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(text))


def parse_filters(filters: list[str]) -> float | None:
    """``--filter`` values; only ``until=DURATION`` (and buildx's older ``unused-for``) are understood."""
    until = None
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key.strip() not in ("until", "unused-for"):
            raise InvalidOption(f"invalid --filter {text!r}: ocibuild understands only until=DURATION (e.g. until=24h)")
        until = parse_duration(value.strip(), f"--filter {key.strip()}")
    return until


__all__ = ["prune", "plan", "execute", "PruneOptions", "PruneResult", "Removed", "Plan", "parse_size",
           "parse_duration", "parse_filters"]
