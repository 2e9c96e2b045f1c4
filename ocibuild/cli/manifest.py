"""`ocibuild manifest create|annotate|inspect|push|rm`: manifest lists as `docker manifest` makes them.

Lists are put together locally (under the cache dir) and only reach the registry on `push`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ocibuild.cli.common import add_debug, run_verb
from ocibuild.errors import NotFound
from ocibuild.manifests import ListStore, Remote, lists, parse_ref, tag_reference

COMMANDS = ("create", "annotate", "inspect", "push", "rm")


def add_parser(sub) -> None:
    p = sub.add_parser("manifest", help="create, annotate and push manifest lists (as `docker manifest`)",
                       description="Manage manifest lists: put one together locally, then push it.")
    verbs = p.add_subparsers(dest="manifest_command", metavar="COMMAND", required=True)
    c = verbs.add_parser("create", help="create a local manifest list from images in a registry")
    c.add_argument("list", metavar="MANIFEST_LIST")
    c.add_argument("images", metavar="MANIFEST", nargs="+", help="image (tag or digest) to add")
    c.add_argument("-a", "--amend", action="store_true", help="add to an existing local list")
    a = verbs.add_parser("annotate", help="set the platform of an image in a local manifest list")
    a.add_argument("list", metavar="MANIFEST_LIST")
    a.add_argument("image", metavar="MANIFEST")
    a.add_argument("--os", default="", help="operating system")
    a.add_argument("--arch", default="", help="architecture")
    a.add_argument("--variant", default="", help="architecture variant")
    a.add_argument("--os-version", default="", help="operating system version")
    a.add_argument("--os-features", action="append", metavar="FEATURES", help="OS features (comma-separated)")
    i = verbs.add_parser("inspect", help="show a local manifest list, or a manifest or list in a registry")
    i.add_argument("list", metavar="MANIFEST_LIST | MANIFEST")
    i.add_argument("image", metavar="MANIFEST", nargs="?", help="one image of a local list")
    i.add_argument("-v", "--verbose", action="store_true", help="each image with its manifest")
    u = verbs.add_parser("push", help="push a local manifest list to its registry")
    u.add_argument("list", metavar="MANIFEST_LIST")
    u.add_argument("-p", "--purge", action="store_true", help="remove the local list after a successful push")
    r = verbs.add_parser("rm", help="delete local manifest lists")
    r.add_argument("lists", metavar="MANIFEST_LIST", nargs="+")
    for q in (c, a, i, u, r):
        if q in (c, i, u):
            q.add_argument("--insecure", action="store_true", help="allow plain HTTP and unverified TLS")
        q.add_argument("--cache-dir", help="where local lists live (default: $OCIBUILD_CACHE_DIR or "
                       "~/.cache/ocibuild)")
        add_debug(q)


def run(args) -> int:
    return {"create": _create, "annotate": _annotate, "inspect": _inspect, "push": _push,
            "rm": _rm}[args.manifest_command](args, ListStore(args.cache_dir))


def _create(args, store: ListStore) -> int:
    list_ref = tag_reference(args.list, "manifest create")
    images = [parse_ref(text, "manifest create") for text in args.images]
    with Remote(insecure=args.insecure) as remote:
        lists.create(store, remote, list_ref, images, amend=args.amend)
    print(f"Created manifest list {list_ref}")
    return 0


def _annotate(args, store: ListStore) -> int:
    features = None
    if args.os_features is not None:
        features = tuple(f.strip() for v in args.os_features for f in v.split(",") if f.strip())
    change = lists.PlatformChange(args.os, args.arch, args.variant, args.os_version, features)
    lists.annotate(store, tag_reference(args.list, "manifest annotate"),
                   parse_ref(args.image, "manifest annotate"), change)
    return 0


def _inspect(args, store: ListStore) -> int:
    ref = parse_ref(args.list, "manifest inspect")
    if store.exists(ref):
        if args.image:
            out: object = store.get(ref, parse_ref(args.image, "manifest inspect")).to_dict()
        elif args.verbose:
            out = [e.to_dict() for e in store.entries(ref)]
        else:
            out = lists.local_index(store.entries(ref)).to_dict()
    elif args.image:
        raise NotFound(f"no such manifest list: {ref}")
    else:
        with Remote(insecure=args.insecure) as remote:
            out = lists.inspect_remote(remote, ref, verbose=args.verbose)
    print(json.dumps(out, indent=3))
    return 0


def _push(args, store: ListStore) -> int:
    with Remote(insecure=args.insecure) as remote:
        pushed = lists.push(store, remote, tag_reference(args.list, "manifest push"), purge=args.purge)
    print(pushed.digest)
    return 0


def _rm(args, store: ListStore) -> int:
    missing = []
    for text in args.lists:
        try:
            store.remove(tag_reference(text, "manifest rm"))
        except NotFound:
            missing.append(text)
    if missing:
        raise NotFound(f"no such manifest list: {', '.join(missing)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`ocibuild manifest ARGV...` on its own (tests, and before the verb is registered in cli/__init__)."""
    parser = argparse.ArgumentParser(prog="ocibuild")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["manifest", *(sys.argv[1:] if argv is None else argv)])
    return run_verb(run, args)
