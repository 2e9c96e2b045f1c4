"""`ocibuild imagetools create|inspect`: indexes on a registry, as `docker buildx imagetools` does them."""

from __future__ import annotations

import argparse
import sys

from ocibuild.cli.common import add_debug, run_verb
from ocibuild.manifests import Remote, imagetools, parse_annotations, parse_ref, tag_reference
from ocibuild.oci import Index


def add_parser(sub) -> None:
    p = sub.add_parser("imagetools", help="create and inspect multi-platform images on a registry",
                       description="Work on images in a registry without pulling them (as buildx imagetools).")
    verbs = p.add_subparsers(dest="imagetools_command", metavar="COMMAND", required=True)
    c = verbs.add_parser("create", help="create an index from existing images or indexes")
    c.add_argument("sources", metavar="SOURCE", nargs="+", help="image or index (tag or digest)")
    c.add_argument("-t", "--tag", action="append", default=[], help="reference to push the index to (repeatable)")
    c.add_argument("--append", action="store_true", help="add to the index the first tag names now")
    c.add_argument("--dry-run", action="store_true", help="print the index instead of pushing it")
    c.add_argument("--annotation", action="append", default=[], metavar="[index:]KEY=VALUE",
                   help="index annotation (or manifest-descriptor:KEY=VALUE for every entry)")
    i = verbs.add_parser("inspect", help="show an image or index in a registry")
    i.add_argument("name", metavar="NAME")
    i.add_argument("--raw", action="store_true", help="print the document's exact bytes")
    for q in (c, i):
        q.add_argument("--insecure", action="store_true", help="allow plain HTTP and unverified TLS")
        add_debug(q)


def run(args) -> int:
    return {"create": _create, "inspect": _inspect}[args.imagetools_command](args)


def _create(args) -> int:
    tags = [tag_reference(t, "imagetools create -t") for t in args.tag]
    sources = [parse_ref(s, "imagetools create") for s in args.sources]
    index_annotations, descriptor_annotations = parse_annotations(args.annotation)
    with Remote(insecure=args.insecure) as remote:
        combined = imagetools.create(remote, sources, tags, append=args.append, dry_run=args.dry_run,
                                     annotations=index_annotations, descriptor_annotations=descriptor_annotations)
    if args.dry_run:
        sys.stdout.buffer.write(combined.raw + b"\n")
    else:
        print(combined.descriptor.digest)
    return 0


def _inspect(args) -> int:
    ref = parse_ref(args.name, "imagetools inspect")
    with Remote(insecure=args.insecure) as remote:
        fetched = remote.fetch(ref)
    if args.raw:
        sys.stdout.buffer.write(fetched.raw)  # exactly as served: piped to sha256sum it gives the digest
        sys.stdout.flush()
        return 0
    print("\n".join(summary(fetched)))
    return 0


def summary(fetched) -> list[str]:
    """buildx's readable form: the document, then each manifest of an index with its platform."""
    desc = fetched.descriptor
    lines = [f"Name:      {fetched.ref}", f"MediaType: {desc.media_type}", f"Digest:    {desc.digest}"]
    doc = fetched.document
    if doc.annotations:
        lines += ["Annotations:"] + [f"  {k}: {v}" for k, v in sorted(doc.annotations.items())]
    if isinstance(doc, Index):
        lines += ["", "Manifests:"]
        for child in doc.manifests:
            lines += [f"  Name:        {fetched.ref.with_digest(child.digest)}", f"  MediaType:   {child.media_type}"]
            if child.platform is not None:
                lines.append(f"  Platform:    {child.platform}")
            for k, v in sorted(child.annotations.items()):
                lines.append(f"  Annotations: {k}: {v}")
            lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def main(argv: list[str] | None = None) -> int:
    """`ocibuild imagetools ARGV...` on its own (tests, and before the verb is registered in cli/__init__)."""
    parser = argparse.ArgumentParser(prog="ocibuild")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    return run_verb(run, parser.parse_args(["imagetools", *(sys.argv[1:] if argv is None else argv)]))
