"""Base images for FROM and `COPY --from`: found, verified into the blob store, and unpacked once.

An image's layers are unpacked into `<cache>/rootfs/<chain id>/` the first time a build
needs its filesystem, with the safe extractor, and reused by later builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ocibuild.builder.state import ImageState, oci_layer
from ocibuild.builder.tree import Tree
from ocibuild.errors import StoreError
from ocibuild.layer.decompress import open_layer
from ocibuild.layer.extract import apply_layer
from ocibuild.layer.tree import entry_from_stat, scan
from ocibuild.oci import Descriptor, Digest, Platform
from ocibuild.store.blobs import BlobStore
from ocibuild.store.source import ImageSource, load_config, manifest_for


def chain_id(diff_ids: list[str]) -> str:
    """OCI ChainID: the identity of a stack of layers, independent of their compression."""
    chain = ""
    for diff_id in diff_ids:
        chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def load_image(source: ImageSource, desc: Descriptor, platform: Platform, blobs: BlobStore,
               cache: Path) -> ImageState:
    """The image for ``platform`` from ``source``: its blobs copied (verified) into ``blobs``."""
    _, manifest = manifest_for(source, desc, platform)
    config = load_config(source, manifest.config)
    for d in (manifest.config, *manifest.layers):
        if not blobs.has(d.digest):
            with source.open_blob(d.digest) as stream:
                blobs.ingest(stream, d.digest, d.size)
    layers = tuple(oci_layer(d) for d in manifest.layers)
    root = unpacked(blobs, layers, [str(x) for x in config.diff_ids], cache)
    tree = Tree() if root is None else tree_from_dir(str(root / "rootfs"), json.loads((root / "owners.json").read_text()))
    return ImageState(config.platform if config.architecture else platform, config, layers, tree,
                      unpacked=(root, len(layers)) if root is not None else None)


def unpacked(blobs: BlobStore, layers: tuple[Descriptor, ...], diff_ids: list[str], cache: Path) -> Path | None:
    """`<cache>/rootfs/<chain id>/` holding `rootfs/` and `owners.json`, unpacked on first use."""
    if not layers:
        return None
    root = cache / "rootfs" / Digest(chain_id(diff_ids)).encoded
    if not (root / "owners.json").exists():
        _unpack(blobs, layers, root)
    return root


def _unpack(blobs: BlobStore, layers: tuple[Descriptor, ...], root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root.parent))
    try:
        (tmp / "rootfs").mkdir()
        owners: dict = {}
        for layer in layers:
            with blobs.open(layer.digest) as raw, open_layer(raw, layer.media_type) as stream:
                apply_layer(str(tmp / "rootfs"), stream, layer=str(layer.digest), owners=owners)
        (tmp / "owners.json").write_text(json.dumps(plain_owners(owners)))
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "owners.json").exists():  # another build won the race only if it finished
                raise StoreError(f"cannot store the unpacked image at {root}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def plain_owners(owners: dict) -> dict:
    """Owners as JSON: path -> [uid, gid, mode] (device nodes a rootless unpack skipped are dropped)."""
    return {path: [o.uid, o.gid, o.mode] for path, o in owners.items() if o.kind is None}


def tree_from_dir(rootfs: str, owners: dict) -> Tree:
    """The tree of an unpacked rootfs, with the owners the unpacker could not set recorded in ``owners``."""
    tree = Tree()
    for rel, info in scan(rootfs):
        entry = entry_from_stat(rel, os.path.join(rootfs, rel), info)
        recorded = owners.get(rel)
        if recorded is not None:
            entry.uid, entry.gid, entry.mode = recorded
        tree.put(entry)
    return tree
