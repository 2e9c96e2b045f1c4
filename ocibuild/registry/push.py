"""Pushing an image from any ImageSource to a registry.

Order, so that a failure at any point leaves the registry with nothing half-tagged:

1. every blob reachable from the descriptor (``store.source.walk``), a few in parallel, each
   HEADed first and mounted from ``mount_from`` when that repository is on the same registry;
2. the manifests and indexes, children before parents, each by its digest, byte-exact with its
   own media type (a registry refuses a manifest whose blobs or child manifests are missing);
3. the tags last, each only when it does not already name this digest.

A second push of the same image therefore sends only HEAD requests.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from ocibuild.oci import MAX_DOCUMENT_SIZE, Descriptor, Reference, parse_document, verify
from ocibuild.registry.blobs import CHUNK_UPLOAD_THRESHOLD
from ocibuild.registry.client import RepositoryClient
from ocibuild.registry.source import RegistrySource
from ocibuild.registry.transport import TransportOptions
from ocibuild.store.source import ImageSource, is_document, walk

PUSH_WORKERS = 4


def push_image(src: ImageSource, desc: Descriptor, ref: Reference, *, tags: Iterable[str] = (),
               by_digest: bool = False, options: TransportOptions | None = None,
               client: RepositoryClient | None = None, mount_from: str | None = None,
               workers: int = PUSH_WORKERS, chunk_size: int = CHUNK_UPLOAD_THRESHOLD) -> Descriptor:
    """Push the image ``desc`` of ``src`` to ``ref``'s repository; returns the pushed descriptor.

    Tags: ``ref.tag`` plus ``tags``; with ``by_digest`` none (``push-by-digest=true``: the
    image is reachable only as ``name@digest``). ``mount_from`` names a repository on the same
    registry to mount blobs from; a RegistrySource on the same registry is mounted from by
    default. Idempotent. The descriptor returned carries media type, digest and size only.
    """
    client = client or RepositoryClient.for_reference(ref, options)
    mount_from = mount_from or _same_registry_repository(src, client)
    order = walk(src, desc)
    _push_blobs(src, client, [d for d in order if not is_document(d)], mount_from, workers, chunk_size)
    for d in order:
        if is_document(d) and client.head_manifest(d.digest) is None:
            data, media_type = _document(src, d)
            client.push_manifest(data, media_type, d.digest)
    if not by_digest:
        names = list(dict.fromkeys(t for t in (ref.tag, *tags) if t))
        if names:
            data, media_type = _document(src, desc)
            for tag in names:
                current = client.head_manifest(tag)
                if current is None or current.digest != desc.digest:
                    client.push_manifest(data, media_type, tag)
    return Descriptor(desc.media_type, desc.digest, desc.size)


def _push_blobs(src: ImageSource, client: RepositoryClient, blobs: list[Descriptor], mount_from: str | None,
                workers: int, chunk_size: int) -> None:
    """Push blobs ``workers`` at a time; the first error is raised once the others finished."""
    def one(d: Descriptor) -> str:
        if d.urls and not src.has_blob(d.digest):
            return "foreign"  # non-distributable layer: registries do not expect it
        return client.push_blob(d, lambda: src.open_blob(d.digest), mount_from=mount_from, chunk_size=chunk_size)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="push") as pool:
        futures = [pool.submit(one, d) for d in blobs]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]


def _document(src: ImageSource, desc: Descriptor) -> tuple[bytes, str]:
    """A manifest's or index's exact bytes (verified by the source) and its media type."""
    data = src.read_blob(desc.digest, limit=MAX_DOCUMENT_SIZE)
    verify(data, desc.digest, desc.size, what="push document")  # never trust a source to have checked
    media_type = desc.media_type or str(parse_document(data).media_type)
    return data, media_type


def _same_registry_repository(src: ImageSource, client: RepositoryClient) -> str | None:
    if isinstance(src, RegistrySource) and src.client.transport.host == client.transport.host:
        return src.client.repository
    return None


def push_reference(src: ImageSource, desc: Descriptor, name: str, **kw) -> Descriptor:
    """``push_image`` with the destination given as text (``localhost:5000/app:1``)."""
    return push_image(src, desc, Reference.parse(name), **kw)


__all__ = ["push_image", "push_reference", "PUSH_WORKERS"]
