"""ADD: COPY plus the unpacking of local tar archives (plain, gzip, bzip2, xz or zstd).

An archive is recognised by its content, as Docker does, not by its name; it is unpacked
with the same containment rules as an image layer, into a scratch directory whose tree is
then copied like a directory source. URLs need network access and are refused for now.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import replace

from ocibuild.builder.base import plain_owners, tree_from_dir
from ocibuild.builder.copy import CopyRequest, plan_copy
from ocibuild.builder.sources import WILDCARDS, ContextFS, TreeFS
from ocibuild.builder.tree import Tree, clean
from ocibuild.errors import ContentError, NotSupported
from ocibuild.layer.decompress import open_layer
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.extract import apply_layer

URL_PREFIXES = ("http://", "https://", "git@", "git://")


def plan_add(req: CopyRequest, tree: Tree, match, scratch: str) -> list[TarEntry]:
    for src in req.sources:
        if src.startswith(URL_PREFIXES):
            raise NotSupported(f"ADD from a URL ({src}) needs network access and is not supported yet")
    archives = [s for s in req.sources if _archive_path(req, s)]
    plain = [s for s in req.sources if s not in archives]
    out: dict[str, TarEntry] = {}
    if plain or req.inline:
        out.update((e.path, e) for e in plan_copy(replace(req, sources=plain), tree, match))
    for src in archives:
        unpacked = _unpack(_archive_path(req, src), scratch)
        sub = replace(req, sources=[""], dest=req.dest.rstrip("/") + "/", fs=TreeFS(unpacked),
                      origin=f"archive {src!r}", from_context=False, inline=[])
        out.update((e.path, e) for e in plan_copy(sub, tree, match))
    return [out[p] for p in sorted(out, key=lambda p: p.split("/"))]


def _archive_path(req: CopyRequest, src: str) -> str | None:
    """The host path of ``src`` when it is a local tar archive in the context, else None."""
    if not isinstance(req.fs, ContextFS) or any(c in src for c in WILDCARDS):
        return None
    path = req.fs.resolve(clean(src))
    entry = req.fs.lookup(path)
    if entry is None or entry.kind is not Kind.FILE or entry.source is None:
        return None
    return entry.source if _is_tar(entry.source) else None


def _is_tar(path: str) -> bool:
    try:
        with open(path, "rb") as raw, open_layer(raw) as stream:
            head = stream.read(512)
    except (OSError, ContentError, EOFError, ValueError):
        return False
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.TarError:
        return False
    return True


def _unpack(path: str, scratch: str) -> Tree:
    target = tempfile.mkdtemp(prefix="add-", dir=scratch)
    owners: dict = {}
    with open(path, "rb") as raw, open_layer(raw) as stream:
        apply_layer(target, stream, layer=os.path.basename(path), owners=owners)
    return tree_from_dir(target, plain_owners(owners))
