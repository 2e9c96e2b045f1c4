"""`ocibuild inspect PATH`: what an OCI layout, OCI tar or `docker load` tar holds."""

from __future__ import annotations

import json
import sys

from ocibuild.cli.common import add_debug
from ocibuild.oci import Index, Manifest
from ocibuild.store.archive import open_source
from ocibuild.store.source import load_config, load_document


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show the index, platforms, digests and configs of an image file",
                       description="Inspect an OCI layout directory, an OCI tar or a docker-load tar.")
    p.add_argument("path", help="OCI layout directory, OCI archive or docker archive")
    p.add_argument("--ref", help="tag or digest inside the layout (default: the only image)")
    p.add_argument("--raw", action="store_true", help="print the top-level document as JSON")
    add_debug(p)


def run(args) -> int:
    source = open_source(args.path)
    desc = source.resolve(args.ref)
    doc = load_document(source, desc)
    if args.raw:
        sys.stdout.buffer.write(doc.to_json() + b"\n")
        return 0
    out = [f"Name:      {args.path}", f"MediaType: {desc.media_type}", f"Digest:    {desc.digest}",
           f"Size:      {desc.size}"]
    for key, value in sorted(desc.annotations.items()):
        out.append(f"Annotation {key}: {value}")
    children = doc.manifests if isinstance(doc, Index) else (desc,)
    out.append("")
    out.append("Manifests:" if isinstance(doc, Index) else "Manifest:")
    for child in children:
        out.extend("  " + line for line in _describe(source, child))
        out.append("")
    print("\n".join(out).rstrip())
    return 0


def _describe(source, desc) -> list[str]:
    lines = [f"Digest:    {desc.digest}", f"MediaType: {desc.media_type}"]
    if desc.platform is not None:
        lines.append(f"Platform:  {desc.platform}")
    doc = load_document(source, desc)
    if not isinstance(doc, Manifest):
        return lines + [f"(nested index with {len(doc.manifests)} entries)"]
    total = sum(layer.size for layer in doc.layers)
    lines.append(f"Layers:    {len(doc.layers)} ({total} bytes)")
    for layer in doc.layers:
        lines.append(f"  {layer.digest}  {layer.size:>12}  {layer.media_type}")
    config = load_config(source, doc.config)
    lines.append(f"Config:    {doc.config.digest}")
    summary = config.config.to_dict()
    if config.created:
        lines.append(f"  Created:    {config.created}")
    for key in ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
                "Labels", "StopSignal"):
        if key in summary:
            lines.append(f"  {key + ':':<11} {json.dumps(summary[key], sort_keys=True)}")
    return lines
