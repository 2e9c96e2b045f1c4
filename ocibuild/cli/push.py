"""`ocibuild push`: an OCI layout or archive (every platform), or a local image, to a registry."""

from __future__ import annotations

import os

from ocibuild.cli.common import add_debug, add_registry_flags, registry_access
from ocibuild.errors import NotFound
from ocibuild.oci import Reference
from ocibuild.store.archive import open_source
from ocibuild.store.images import ImageStore


def add_parser(sub) -> None:
    p = sub.add_parser("push", help="push an OCI layout/tar or a local image to a registry",
                       description="ocibuild push app.tar registry.example/team/app:1.2  |  ocibuild push NAME")
    p.add_argument("source", help="an OCI layout directory or OCI/docker tar, or a local image name")
    p.add_argument("name", nargs="?", help="where to push (default: the local image's own name)")
    p.add_argument("--ref", help="tag or digest inside the layout (default: its only image)")
    p.add_argument("--push-by-digest", action="store_true", help="push without a tag")
    p.add_argument("--cache-dir", help="ocibuild's cache and image store")
    add_registry_flags(p)
    add_debug(p)


def run(args) -> int:
    if os.path.exists(args.source):
        source = open_source(args.source)
        desc = source.resolve(args.ref)
        if not args.name:
            raise NotFound(f"push {args.source}: name the destination, e.g. registry.example/team/app:1.2")
        target = Reference.parse(args.name)
    else:
        store = ImageStore(args.cache_dir) if args.cache_dir else ImageStore()
        local = Reference.parse(args.source)
        desc = store.lookup(local)
        if desc is None:
            raise NotFound(f"push {local.familiar()}: no such image in the local store and no such file")
        source, target = store.layout, Reference.parse(args.name) if args.name else local
    for pushed in registry_access(args).push(source, desc, [target], by_digest=args.push_by_digest):
        print(pushed)
    return 0
