"""``docker buildx imagetools create``: an index put together on the registry, no layer downloaded.

    resolve   each source (tag or digest): a manifest contributes itself, with the platform of
              its config; an index contributes all its manifests, with the platforms it lists
    combine   one index over them (duplicates merged, see ``indexes``), or the single source
              index's own bytes when it is the only source and nothing is added (buildx's
              "carbon copy", which keeps its digest)
    push      for every ``-t``: children made present in that repository (``transfer``), then
              the index under the tag

``append`` puts the index the first tag names now (if any) in front of the sources, as
buildx's ``--append`` does. ``create(..., dry_run=True)`` resolves and combines only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ocibuild.errors import InvalidInput, RegistryNotFound
from ocibuild.oci import Descriptor, Index, Reference
from ocibuild.manifests.indexes import make_index
from ocibuild.manifests.remote import Fetched, Remote
from ocibuild.manifests.transfer import ensure_document


@dataclass(frozen=True)
class Source:
    """A manifest to list: where it lives, its descriptor (with platform) and, when fetched, its bytes."""

    ref: Reference
    descriptor: Descriptor
    raw: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Combined:
    """The index to push (exact bytes) and the manifests it lists, with where each comes from."""

    descriptor: Descriptor
    raw: bytes
    sources: tuple[Source, ...]


def resolve(remote: Remote, ref: Reference) -> tuple[Fetched, list[Source]]:
    """The document ``ref`` names and the manifests it contributes."""
    fetched = remote.fetch(ref)
    if isinstance(fetched.document, Index):
        return fetched, [Source(ref, d) for d in fetched.document.manifests]
    desc = fetched.descriptor
    platform = remote.image_platform(ref, fetched.document)
    if platform is None:
        raise InvalidInput(f"{ref}: its config names no OS and architecture, so it cannot be listed by platform")
    return fetched, [Source(ref, desc.with_(platform=platform), fetched.raw)]


def combine(resolved: list[tuple[Fetched, list[Source]]], annotations: dict[str, str] | None = None,
            descriptor_annotations: dict[str, str] | None = None) -> Combined:
    """One index over every source (see the module docstring for the carbon-copy case)."""
    if not resolved:
        raise InvalidInput("imagetools create: no source image given")
    if len(resolved) == 1 and resolved[0][0].is_index and not annotations and not descriptor_annotations:
        fetched, sources = resolved[0]
        return Combined(fetched.descriptor, fetched.raw, tuple(sources))
    sources = [s for _, group in resolved for s in group]
    children = [s.descriptor.annotated(**descriptor_annotations) if descriptor_annotations else s.descriptor
                for s in sources]
    index = make_index(children, annotations)
    return Combined(index.descriptor(), index.to_json(), tuple(sources))


def create(remote: Remote, sources: Iterable[Reference], tags: list[Reference], *, append: bool = False,
           dry_run: bool = False, annotations: dict[str, str] | None = None,
           descriptor_annotations: dict[str, str] | None = None) -> Combined:
    """Resolve, combine and (unless ``dry_run``) push under every tag; returns what was (or would be) pushed."""
    if not tags and not dry_run:
        raise InvalidInput("imagetools create: give at least one -t/--tag (or --dry-run)")
    resolved = []
    if append:
        if not tags:
            raise InvalidInput("imagetools create --append: needs a -t/--tag to append to")
        try:
            resolved.append(resolve(remote, tags[0]))
        except RegistryNotFound:
            pass  # nothing there yet: --append adds to nothing
    resolved += [resolve(remote, ref) for ref in sources]
    combined = combine(resolved, annotations, descriptor_annotations)
    if not dry_run:
        for tag in tags:
            push(remote, combined, tag)
    return combined


def push(remote: Remote, combined: Combined, tag: Reference) -> Descriptor:
    """Make every listed manifest present in ``tag``'s repository, then put the index under the tag."""
    seen: set[str] = set()
    for s in combined.sources:
        if s.descriptor.digest not in seen:
            seen.add(s.descriptor.digest)
            ensure_document(remote, s.ref, tag, s.descriptor, s.raw)
    return remote.client(tag).push_manifest(combined.raw, combined.descriptor.media_type, tag.tag or "latest")


__all__ = ["Source", "Combined", "resolve", "combine", "create", "push"]
