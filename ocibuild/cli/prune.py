"""`ocibuild prune`: clean the cache directory, with `docker buildx prune`'s flags."""

from __future__ import annotations

import sys
import time

from ocibuild.cache.prune import PruneOptions, parse_filters, parse_size, prune
from ocibuild.cache.usage import ago, human_size
from ocibuild.cli.common import EXIT_ERROR, add_debug
from ocibuild.cli.du import print_table
from ocibuild.manifests.liststore import ListStore
from ocibuild.store.cachedir import cache_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help="remove build cache, unpacked bases and unreferenced blobs",
        description="Remove build cache records, unpacked base images, blobs nothing kept refers to and stale "
                    "temp files, as `docker buildx prune` does. Local images (-t) and manifest lists are never "
                    "touched. Waits for running builds on the same cache directory to finish first.")
    p.add_argument("-a", "--all", action="store_true", help="also remove RUN cache mounts and the .deb cache")
    p.add_argument("--keep-storage", metavar="SIZE",
                   help="keep the most recently used cache up to SIZE (10GB, 500MB; 1GB = 1024^3 bytes, as docker)")
    p.add_argument("--filter", action="append", default=[], metavar="until=DURATION",
                   help="only what has not been used for DURATION (24h, 90m, 1h30m)")
    p.add_argument("-f", "--force", action="store_true",
                   help="accepted for buildx compatibility: ocibuild never asks for confirmation")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up (exit 1, nothing removed) when running builds have not finished after SECONDS "
                        "(default: wait for them; 0: do not wait)")
    p.add_argument("--cache-dir", help="ocibuild's cache and image store (default: $OCIBUILD_CACHE_DIR "
                   "or ~/.cache/ocibuild)")
    add_debug(p)


def run(args) -> int:
    opts = PruneOptions(all=args.all, until=parse_filters(args.filter),
                        keep_storage=parse_size(args.keep_storage) if args.keep_storage is not None else None)
    root = args.cache_dir or cache_dir()
    result = prune(root, opts, lists=ListStore(root), timeout=args.timeout,
                   on_wait=lambda message: print(message, file=sys.stderr, flush=True))
    for warning in result.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    now = time.time()
    if result.removed:
        print_table([("KIND", "ID", "SIZE", "LAST USED")]
                    + [(r.item.kind, r.item.name, human_size(r.freed), ago(r.item.last_used, now))
                       for r in result.removed])
    print(f"Total:\t{human_size(result.total)} reclaimed")
    for failure in result.failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return EXIT_ERROR if result.failures else 0
