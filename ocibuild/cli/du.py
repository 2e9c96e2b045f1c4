"""`ocibuild du`: what the cache directory holds, by kind, as `docker buildx du` shows BuildKit's."""

from __future__ import annotations

import sys
import time

from ocibuild.cache.usage import BASES, DEBS, KINDS, MOUNTS, ORPHANS, RECORDS, TEMP, Usage, ago, human_size, scan
from ocibuild.cli.common import add_debug
from ocibuild.manifests.liststore import ListStore
from ocibuild.store.cachedir import cache_dir

RECLAIMABLE = (RECORDS, BASES, ORPHANS, TEMP)   # what `ocibuild prune` removes
RECLAIMABLE_ALL = RECLAIMABLE + (MOUNTS, DEBS)  # and `ocibuild prune --all`


def add_parser(sub) -> None:
    p = sub.add_parser("du", help="show what the cache directory holds and its disk usage",
                       description="Disk usage of ocibuild's cache directory by kind (build cache, unpacked "
                                   "bases, cache mounts, local images, ...), as `docker buildx du` shows it.")
    p.add_argument("--verbose", action="store_true", help="one line per item, not only per kind")
    p.add_argument("--cache-dir", help="ocibuild's cache and image store (default: $OCIBUILD_CACHE_DIR "
                   "or ~/.cache/ocibuild)")
    add_debug(p)


def run(args) -> int:
    root = args.cache_dir or cache_dir()
    now = time.time()
    usage = scan(root, ListStore(root), now=now)
    for problem in usage.problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    rows = _items(usage, now) if args.verbose else _kinds(usage, now)
    print_table(rows)
    print()
    print(f"Reclaimable:\t{human_size(usage.total(RECLAIMABLE))}\t(ocibuild prune; "
          f"{human_size(usage.total(RECLAIMABLE_ALL))} with --all)")
    print(f"Total:\t\t{human_size(usage.total())}")
    return 0


def _kinds(usage: Usage, now: float) -> list[tuple[str, ...]]:
    rows = [("KIND", "COUNT", "SIZE", "LAST USED")]
    for kind in KINDS:
        items = usage.of(kind)
        used = [i.last_used for i in items if i.last_used is not None]
        rows.append((kind, str(len(items)), human_size(sum(i.size for i in items)),
                     ago(max(used), now) if used else "-"))
    return rows


def _items(usage: Usage, now: float) -> list[tuple[str, ...]]:
    rows = [("KIND", "ID", "SIZE", "LAST USED")]
    for kind in KINDS:
        rows += [(kind, i.name, human_size(i.size), ago(i.last_used, now)) for i in usage.of(kind)]
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; numbers (COUNT, SIZE) right-aligned."""
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {i for i, title in enumerate(rows[0]) if title in ("COUNT", "SIZE")}
    for row in rows:
        cells = [c.rjust(width[i]) if i in right else c.ljust(width[i]) for i, c in enumerate(row)]
        print("  ".join(cells).rstrip())
