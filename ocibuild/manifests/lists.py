"""``docker manifest`` semantics: lists put together locally (``ListStore``), then pushed.

    create    fetch each image's manifest (verified) and its config's platform; store them
    annotate  change an entry's platform (normalised as containerd does: arm64/v8 -> arm64)
    inspect   the index a push would put, or each entry (``--verbose``); else from the registry
    push      make every image present in the list's repository, put the index under its tag
    rm        forget local lists

As with Docker, an image named in ``create`` must be a single image (a manifest), not an
index, and must live on the same registry as the list: ``push`` mounts its blobs into the
list's repository (cross-repository blob mount) and puts its manifest there by digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from ocibuild.errors import InvalidInput, InvalidPlatform
from ocibuild.oci import Descriptor, Index, Platform, Reference
from ocibuild.manifests.indexes import make_index
from ocibuild.manifests.liststore import ListEntry, ListStore
from ocibuild.manifests.remote import Remote
from ocibuild.manifests.transfer import ensure_document


def describe_image(remote: Remote, ref: Reference) -> ListEntry:
    """What ``create`` records for one image: its manifest (refusing an index) and the config's platform."""
    fetched = remote.fetch(ref)
    if fetched.is_index:
        raise InvalidInput(f"{ref} is a manifest list (index), not an image: name one of its images "
                           "by digest, or combine indexes with `ocibuild imagetools create`")
    platform = remote.image_platform(ref, fetched.document)
    return ListEntry(ref, fetched.descriptor.with_(platform=platform), fetched.raw)


def create(store: ListStore, remote: Remote, list_ref: Reference, images: Iterable[Reference], *,
           amend: bool = False) -> list[ListEntry]:
    """Create (or with ``amend`` extend) the local list; entries are written only after all were fetched."""
    if store.exists(list_ref) and not amend:
        raise InvalidInput(f"manifest list {list_ref} exists already: refusing to amend it without --amend")
    entries = []
    for ref in images:
        if ref.registry != list_ref.registry:
            raise InvalidInput(f"{ref}: an image must be on the registry of its list ({list_ref.registry}), "
                               f"not {ref.registry}")
        entries.append(describe_image(remote, ref))
    for entry in entries:
        store.save(list_ref, entry)
    return entries


@dataclass(frozen=True)
class PlatformChange:
    """What ``annotate`` was asked to change; empty fields are left as they are."""

    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] | None = None


def annotated_platform(current: Platform | None, change: PlatformChange) -> Platform:
    """``current`` with ``change`` applied, normalised (``--arch aarch64 --variant v8`` -> linux/arm64).

    A new architecture without a variant drops the old variant (an amd64 ``v3`` means nothing
    on arm64). InvalidPlatform for an unknown OS or architecture, as Docker refuses them.
    """
    base = current or Platform("", "")
    os = change.os or base.os
    arch = change.architecture or base.architecture
    if not os or not arch:
        raise InvalidPlatform(f"incomplete platform {os or '?'}/{arch or '?'}: give --os and --arch")
    variant = change.variant or ("" if change.architecture and change.architecture != base.architecture
                                 else base.variant)
    normal = Platform.normalized(os, arch, variant)
    features = base.os_features if change.os_features is None else tuple(change.os_features)
    return Platform(normal.os, normal.architecture, normal.variant,
                    change.os_version or base.os_version, features)


def annotate(store: ListStore, list_ref: Reference, image_ref: Reference, change: PlatformChange) -> ListEntry:
    """Set the platform of ``image_ref``'s entry in the local list; returns the new entry."""
    entry = store.get(list_ref, image_ref)
    try:
        platform = annotated_platform(entry.descriptor.platform, change)
    except InvalidPlatform as e:
        raise InvalidPlatform(f"annotate {entry.ref} in {list_ref}: {e.message}") from None
    updated = ListEntry(entry.ref, entry.descriptor.with_(platform=platform), entry.raw)
    store.save(list_ref, updated)
    return updated


def local_index(entries: list[ListEntry]) -> Index:
    """The index ``push`` puts for these entries (see ``indexes`` for the media type)."""
    children = [Descriptor(e.descriptor.media_type, e.descriptor.digest, e.descriptor.size,
                           platform=e.descriptor.platform) for e in entries]
    return make_index(children)


def push(store: ListStore, remote: Remote, list_ref: Reference, *, purge: bool = False) -> Descriptor:
    """Put every image into the list's repository, then the index under the list's tag; returns its descriptor.

    Every entry needs an OS and an architecture (as Docker demands). With ``purge`` the local
    list is removed once the index is in the registry.
    """
    entries = store.entries(list_ref)
    if not entries:
        raise InvalidInput(f"manifest list {list_ref} is empty")
    for e in entries:
        p = e.descriptor.platform
        if p is None or not p.os or not p.architecture:
            raise InvalidInput(f"push {list_ref}: {e.ref} has no OS and architecture; set them with "
                               "`ocibuild manifest annotate`")
        if e.ref.registry != list_ref.registry:
            raise InvalidInput(f"push {list_ref}: {e.ref} is on another registry ({e.ref.registry})")
    for e in entries:
        ensure_document(remote, e.ref, list_ref, e.descriptor, e.raw)
    index = local_index(entries)
    pushed = remote.client(list_ref).push_manifest(index.to_json(), index.media_type, list_ref.tag)
    if purge:
        store.remove(list_ref)
    return pushed


def inspect_remote(remote: Remote, ref: Reference, *, verbose: bool = False) -> object:
    """What ``docker manifest inspect`` prints for a registry reference (JSON-able).

    Plain: the document as parsed JSON. Verbose: Docker's ``ImageManifest`` shape, one object
    for an image, a list with one per child (platform from the index) for an index.
    """
    fetched = remote.fetch(ref)
    if not verbose:
        return json.loads(fetched.raw)
    if not fetched.is_index:
        return ListEntry(ref, fetched.descriptor, fetched.raw).to_dict()
    out = []
    for child in fetched.document.manifests:
        got = remote.fetch_child(ref, child)
        out.append(ListEntry(ref.with_digest(child.digest), child, got.raw).to_dict())
    return out


__all__ = ["describe_image", "create", "PlatformChange", "annotated_platform", "annotate",
           "local_index", "push", "inspect_remote"]
