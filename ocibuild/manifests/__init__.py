"""Manifest lists and image indexes on registries: ``ocibuild manifest`` and ``ocibuild imagetools``.

    remote.py      Remote: clients sharing one Transport per registry; verified fetches; config platform
    liststore.py   ListStore: local manifest lists under <cache_dir>/manifests until pushed
    indexes.py     the index over some descriptors: media type, merging, --annotation
    transfer.py    ensure_document: a manifest from another repository made present (blob mounts)
    lists.py       docker manifest create / annotate / push / inspect
    imagetools.py  buildx imagetools create: resolve sources, combine, push under every tag

Depends on oci, store (the cache dir) and registry only.
"""

from ocibuild.manifests import imagetools, lists
from ocibuild.manifests.indexes import index_media_type, make_index, merge, parse_annotations
from ocibuild.manifests.liststore import ListEntry, ListStore, escape, unescape
from ocibuild.manifests.remote import Fetched, Remote, parse_ref, tag_reference
from ocibuild.manifests.transfer import ensure_document

__all__ = ["imagetools", "lists", "index_media_type", "make_index", "merge", "parse_annotations", "ListEntry",
           "ListStore", "escape", "unescape", "Fetched", "Remote", "parse_ref", "tag_reference",
           "ensure_document"]
