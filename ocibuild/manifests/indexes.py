"""Putting an index together from descriptors: which media type, merging duplicates, annotations.

The media type follows buildx (``imagetools.Combine``): a Docker manifest list when every
child is a Docker schema 2 document, an OCI index otherwise. A Docker list is a Docker
schema 2 document and only ever points at Docker schema 2 manifests; an OCI index may point at
either. Annotations exist only on OCI indexes, so asking for some makes the index OCI (buildx
drops them silently instead; we would rather keep what was asked for).

``docker manifest push`` differs: distribution's ``manifestlist.FromDescriptors`` always writes
a Docker manifest list, even over OCI manifests, which strict OCI clients refuse. ocibuild
applies the rule above to both commands, which gives Docker's result for Docker images.
"""

from __future__ import annotations

from typing import Iterable

from ocibuild.errors import InvalidOption
from ocibuild.oci import Descriptor, Index, MediaType

INDEX_PREFIX = "index:"
DESCRIPTOR_PREFIX = "manifest-descriptor:"
# buildx annotation types that need new manifests or a platform qualifier
_REFUSED = ("manifest:", "manifest[", "index[", "index-descriptor:", "index-descriptor[", "manifest-descriptor[", "[")


def index_media_type(children: Iterable[Descriptor], annotated: bool = False) -> MediaType:
    """Docker manifest list when every child is a Docker type and no annotation is wanted; else OCI."""
    kinds = [d.kind for d in children]
    if not annotated and kinds and all(k is not None and k.is_docker for k in kinds):
        return MediaType.DOCKER_MANIFEST_LIST
    return MediaType.OCI_INDEX


def merge(descriptors: Iterable[Descriptor]) -> list[Descriptor]:
    """Descriptors in first-seen order, one per digest; a later duplicate adds its platform and annotations.

    As buildx's ``addDesc``: the same manifest named twice (by tag and by digest, or in two
    source indexes) is listed once.
    """
    out: dict[str, Descriptor] = {}
    for d in descriptors:
        old = out.get(d.digest)
        if old is None:
            out[d.digest] = d
            continue
        out[d.digest] = old.with_(media_type=old.media_type or d.media_type,
                                  platform=d.platform or old.platform,
                                  annotations={**old.annotations, **d.annotations})
    return list(out.values())


def parse_annotations(values: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--annotation`` values -> (index annotations, annotations for every manifest descriptor).

    ``key=value`` and ``index:key=value`` annotate the index; ``manifest-descriptor:key=value``
    every entry of it. Other buildx types (``manifest:``, platform-qualified keys) are refused:
    they would need new manifests, and ``imagetools create`` only writes an index.
    """
    index: dict[str, str] = {}
    descriptors: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise InvalidOption(f"invalid --annotation {value!r}: expected [index:]KEY=VALUE")
        if key.startswith(DESCRIPTOR_PREFIX):
            target, key = descriptors, key[len(DESCRIPTOR_PREFIX):]
        else:
            target, key = index, key.removeprefix(INDEX_PREFIX)
        if not key or key.startswith(_REFUSED):
            raise InvalidOption(f"invalid --annotation {value!r}: only index: and manifest-descriptor: "
                                "annotations (without a platform) can be set by imagetools create")
        target[key] = text
    return index, descriptors


def make_index(children: Iterable[Descriptor], annotations: dict[str, str] | None = None) -> Index:
    """The index over ``children`` (merged, see ``merge``), its media type chosen by ``index_media_type``."""
    manifests = merge(children)
    media_type = index_media_type(manifests, annotated=bool(annotations))
    return Index(manifests=tuple(manifests), media_type=media_type.value, annotations=dict(annotations or {}))


__all__ = ["index_media_type", "merge", "parse_annotations", "make_index"]
