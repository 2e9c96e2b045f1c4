"""`ocibuild images`: the images kept in the local image store."""

from __future__ import annotations

from ocibuild.cli.common import add_debug
from ocibuild.store.images import ImageStore


def add_parser(sub) -> None:
    p = sub.add_parser("images", help="list the images in the local image store")
    p.add_argument("--digests", action="store_true", help="show full digests")
    p.add_argument("--cache-dir", help="ocibuild's cache and image store")
    add_debug(p)


def run(args) -> int:
    store = ImageStore(args.cache_dir) if args.cache_dir else ImageStore()
    rows = [("NAME", "DIGEST", "MEDIA TYPE")]
    for name, desc in store.list():
        digest = str(desc.digest) if args.digests else desc.digest.short()
        kind = "index" if desc.kind is not None and desc.kind.is_index else "manifest"
        rows.append((name, digest, kind))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip())
    return 0
