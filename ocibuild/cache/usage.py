"""What the cache directory holds, by kind, with the disk space each part takes (`ocibuild du`).

    <cache>/index.json, oci-layout     the local image store (store/images.py)
    <cache>/blobs/sha256/              every blob: images, build results, pulled base layers
    <cache>/buildcache/records/        build cache records (cache/records.py)
    <cache>/rootfs/<chain id>/         unpacked base images (builder/base.py)
    <cache>/mounts/<id hash>/          RUN --mount=type=cache directories (builder/mounts.py)
    <cache>/manifests/<list>/          manifest lists (manifests/liststore.py)
    <cache>/debs/                      layerspec's .deb downloads

Blobs are shared, so each is counted once, with the first kind that refers to it: local
images, then manifest lists, then build cache records (most recently used first); blobs
nothing refers to are "orphaned". A record's size is therefore its file plus the layers only
build cache refers to: what pruning it can free. Sizes are disk usage (st_blocks, as du
counts) with every inode counted once, so hard-linked blobs are not counted twice.

Scanning takes no lock and tolerates files vanishing under it (a concurrent prune).
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from ocibuild.cache.records import CONTEXT_DIGESTS, FOLDER, STEP_INDEX, RecordStore
from ocibuild.errors import OcibuildError
from ocibuild.oci import REF_NAME, Descriptor, Digest, Reference
from ocibuild.store.blobs import TEMP_PREFIX, BlobStore
from ocibuild.store.layout import OciLayout
from ocibuild.store.source import walk

RECORDS, BASES, MOUNTS = "build cache", "unpacked bases", "cache mounts"
IMAGES, LISTS, DEBS = "local images", "manifest lists", ".deb cache"
ORPHANS, TEMP = "orphaned blobs", "temp files"
KINDS = (RECORDS, BASES, MOUNTS, IMAGES, LISTS, DEBS, ORPHANS, TEMP)

# Leftovers of interrupted writes: blob and record temp files, unpacks, prunes, index.json updates.
TEMP_PREFIXES = (TEMP_PREFIX, ".unpack-", ".prune-", ".index.json.")
# A temp file untouched this long belongs to no running writer. `pull` and `tag` write without
# the build lock, so a fresh one may be in use even while prune holds the cache.
STALE_AFTER = 600.0


@dataclass
class Item:
    """One removable (or protected) thing in the cache."""

    kind: str
    name: str                        # what `du --verbose` and `prune` print
    paths: tuple[Path, ...] = ()     # what removing the item deletes (blobs aside)
    own: int = 0                     # disk usage of ``paths``
    blobs: tuple[Digest, ...] = ()   # blobs it refers to
    size: int = 0                    # ``own`` plus the blobs counted with it (see the module docstring)
    last_used: float | None = None   # seconds since the epoch; None when not known
    garbage: bool = False            # useless whatever the filters say: orphans, stale temp files, bad records


@dataclass
class Usage:
    root: Path
    items: list[Item]
    blob_sizes: dict[Digest, int]    # disk usage of every blob present
    kept: frozenset[Digest]          # blobs local images and manifest lists refer to
    problems: list[str] = field(default_factory=list)  # what could not be read (warnings)
    complete: bool = True            # False: an image could not be walked, so blobs must not be swept

    def of(self, *kinds: str) -> list[Item]:
        return [i for i in self.items if i.kind in kinds]

    def total(self, kinds: Iterable[str] = KINDS) -> int:
        wanted = set(kinds)
        return sum(i.size for i in self.items if i.kind in wanted)


class ListSource(Protocol):
    """What usage needs of manifests/liststore.ListStore (which `cache` may not import)."""

    root: Path

    def lists(self) -> list[str]: ...

    def folder(self, list_ref: Reference) -> Path: ...

    def entries(self, list_ref: Reference) -> Sequence: ...  # items with a ``.descriptor``


class DiskCounter:
    """du's arithmetic: st_blocks * 512, each (device, inode) once across everything counted."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def file(self, st: os.stat_result) -> int:
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            return 0
        self.seen.add(key)
        return st.st_blocks * 512

    def tree(self, path: Path) -> tuple[int, float]:
        """Disk usage of ``path`` (a file or a whole directory, not following links) and its newest mtime."""
        try:
            st = os.lstat(path)
        except OSError:
            return 0, 0.0
        total, newest = self.file(st), st.st_mtime
        if stat.S_ISDIR(st.st_mode):
            try:
                entries = list(os.scandir(path))
            except OSError:  # unreadable (a rootfs dir of mode 000): count what can be seen
                return total, newest
            for entry in entries:
                size, mtime = self.tree(Path(entry.path))
                total, newest = total + size, max(newest, mtime)
        return total, newest


def scan(cache: str | os.PathLike[str], lists: ListSource | None = None, *, now: float | None = None) -> Usage:
    """Everything in ``cache``, as Items. ``lists``: the manifest list store, whose blobs are kept."""
    root, disk = Path(cache), DiskCounter()
    now = time.time() if now is None else now
    blobs = BlobStore(root)
    sizes = {d: _blob_size(disk, blobs.path(d)) for d in blobs.digests()}
    usage = Usage(root, [], sizes, frozenset())
    claimed: set[Digest] = set()
    images = _images(root, usage)
    list_items = _lists(root, lists, disk, usage)
    usage.kept = frozenset(d for i in images + list_items for d in i.blobs)
    records = _records(root, disk)
    for item in images + list_items + records:
        _claim(item, sizes, claimed)
    usage.items = (records + _context_digests(root, disk) + _dirs(root / "rootfs", BASES, disk, newest=False)
                   + _dirs(root / "mounts", MOUNTS, disk, newest=True) + images + list_items
                   + _dirs(root / "debs", DEBS, disk, newest=True) + _orphans(blobs, sizes, claimed)
                   + _temps(root, disk, now))
    return usage


def _blob_size(disk: DiskCounter, path: Path) -> int:
    try:
        return disk.file(os.lstat(path))
    except OSError:
        return 0


def _claim(item: Item, sizes: dict[Digest, int], claimed: set[Digest]) -> None:
    """Add to ``item.size`` the blobs no earlier item has counted."""
    for d in item.blobs:
        if d not in claimed:
            claimed.add(d)
            item.size += sizes.get(d, 0)


def _images(root: Path, usage: Usage) -> list[Item]:
    """One item per index.json entry (named or not), its blobs all those it reaches."""
    layout = OciLayout(root)
    if not layout.exists():
        return []
    try:
        entries = layout.index().manifests
    except OcibuildError as e:
        usage.problems.append(f"read the image store's index.json: {e}")
        usage.complete = False
        return []
    items = []
    for desc in sorted(entries, key=lambda d: d.annotations.get(REF_NAME, "")):
        name = desc.annotations.get(REF_NAME) or f"(untagged) {desc.digest}"
        items.append(Item(IMAGES, name, blobs=_reachable(layout, desc, name, usage)))
    return items


def _reachable(layout: OciLayout, desc: Descriptor, name: str, usage: Usage) -> tuple[Digest, ...]:
    try:
        return tuple(d.digest for d in walk(layout, desc))
    except OcibuildError as e:  # a missing or corrupt manifest hides what else the image needs
        usage.problems.append(f"local image {name}: {e}")
        usage.complete = False
        return (desc.digest,)


def _lists(root: Path, lists: ListSource | None, disk: DiskCounter, usage: Usage) -> list[Item]:
    if lists is None:  # sized, but their blobs unknown: harmless, lists keep their manifests' bytes
        return _dirs(root / "manifests", LISTS, disk, newest=True)
    items = []
    for name in lists.lists():
        try:
            ref = Reference.parse(name)
            folder = lists.folder(ref)
            blobs = tuple(e.descriptor.digest for e in lists.entries(ref))
        except OcibuildError as e:
            usage.problems.append(f"manifest list {name}: {e}")
            continue
        own, used = disk.tree(folder)
        items.append(Item(LISTS, name, (folder,), own, blobs, own, used))
    return items


def _records(root: Path, disk: DiskCounter) -> list[Item]:
    """Most recently used first, so shared layers are counted with the record that will be kept longest."""
    store, items = RecordStore(root), []
    for key, used, record in store.items():
        path = store.root / key[:2] / f"{key}.json"
        own = _blob_size(disk, path)
        if record is None:
            items.append(Item(RECORDS, f"{key[:12]} (unreadable)", (path,), own, (), own, used, garbage=True))
            continue
        blobs = (record.layer.digest,) if record.layer is not None else ()
        items.append(Item(RECORDS, key[:12], (path,), own, blobs, own, used))
    return sorted(items, key=lambda i: -(i.last_used or 0))


def _context_digests(root: Path, disk: DiskCounter) -> list[Item]:
    """The build cache's memo of context digests and its step index: one item, used when last written to."""
    folders = tuple(f for f in (root / FOLDER / CONTEXT_DIGESTS, root / FOLDER / STEP_INDEX) if f.is_dir())
    if not folders:
        return []
    sizes, times = zip(*(disk.tree(f) for f in folders))
    return [Item(RECORDS, "context digests", folders, sum(sizes), (), sum(sizes), max(times))]


def _dirs(folder: Path, kind: str, disk: DiskCounter, *, newest: bool) -> list[Item]:
    """One item per entry of ``folder`` (dot files aside), a ``<name>.lock`` beside it included.

    Last use: the newest mtime inside for folders a step writes into (cache mounts), the
    entry's own mtime for unpacked bases (their files carry the image's times).
    """
    try:
        entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")
                          and not e.name.endswith(".lock")), key=lambda e: e.name)
    except OSError:
        return []
    items = []
    for entry in entries:
        path = Path(entry.path)
        own, mtime = disk.tree(path)
        paths = (path,)
        lock = path.with_name(path.name + ".lock")
        if lock.exists():
            own += disk.tree(lock)[0]
            paths += (lock,)
        used = mtime if newest else _mtime(path)
        items.append(Item(kind, entry.name[:12] if kind == BASES else entry.name, paths, own, (), own, used))
    return items


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _orphans(blobs: BlobStore, sizes: dict[Digest, int], claimed: set[Digest]) -> list[Item]:
    return [Item(ORPHANS, d.short(), (blobs.path(d),), size, (d,), size, _mtime(blobs.path(d)), garbage=True)
            for d, size in sorted(sizes.items()) if d not in claimed]


def _temps(root: Path, disk: DiskCounter, now: float) -> list[Item]:
    """Leftovers of interrupted writes; garbage (for prune) once untouched for STALE_AFTER."""
    folders = [root, root / "rootfs", root / "mounts", *_subdirs(root / "blobs"),
               *_subdirs(RecordStore(root).root)]
    items = []
    for folder in folders:
        try:
            entries = sorted(e.name for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIXES))
        except OSError:
            continue
        for name in entries:
            path = folder / name
            own, used = disk.tree(path)
            items.append(Item(TEMP, str(path.relative_to(root)), (path,), own, (), own, used,
                              garbage=now - used >= STALE_AFTER))
    return items


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def human_size(n: float) -> str:
    """Sizes as docker and buildx print them (go-units HumanSize): decimal units, 4 significant digits."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.4g}{units[i]}"


def ago(when: float | None, now: float | None = None) -> str:
    """"3 minutes ago", as buildx du prints last use; "-" when not known."""
    if when is None:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - when))
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            n = seconds // length
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now" if seconds < 2 else f"{seconds} seconds ago"


__all__ = ["Item", "Usage", "ListSource", "DiskCounter", "scan", "human_size", "ago", "KINDS", "RECORDS", "BASES",
           "MOUNTS", "IMAGES", "LISTS", "DEBS", "ORPHANS", "TEMP", "STALE_AFTER"]
