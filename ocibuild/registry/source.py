"""A registry repository as an ImageSource, and pulling a base image into a BlobStore.

``RegistrySource(client, ref)`` answers the ImageSource protocol, so ``store.source``'s
``manifest_for``, ``load_config``, ``walk`` and ``copy`` work on a registry unchanged. Its
``index()`` is the one descriptor ``ref`` resolves to (annotated with the ref name). The
registry keeps manifests and blobs apart (``/manifests/`` vs ``/blobs/``) while ImageSource
reads by digest only, so the source remembers which digests are documents: every document
it fetched, and every child of those that is a manifest or index.

With a ``cache`` BlobStore the source is local-first: blobs already there are read from it
(verified) and never fetched; fetched documents are written to it, and ``prefetch`` downloads
blobs into it in parallel. ``blob_path`` then lets ``store.source.copy`` hardlink from it.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterable

from ocibuild.errors import InvalidDocument, RegistryNotFound
from ocibuild.oci import REF_NAME, Descriptor, Digest, Index, Platform, Reference, parse_document
from ocibuild.registry.client import RepositoryClient, as_digest
from ocibuild.registry.transport import TransportOptions
from ocibuild.store.blobs import BlobStore
from ocibuild.store.source import children, is_document, manifest_for

PULL_WORKERS = 4


class RegistrySource:
    """The image ``ref`` names in ``client``'s repository, as an ImageSource. Thread-safe."""

    def __init__(self, client: RepositoryClient, ref: Reference | str, *, cache: BlobStore | None = None):
        self.client = client
        self.ref = ref if isinstance(ref, Reference) else None
        self._ref_text = str(ref.digest or ref.tag) if isinstance(ref, Reference) else str(ref)
        self.cache = cache
        self._documents: dict[Digest, bytes] = {}
        self._sizes: dict[Digest, int] = {}  # blob sizes from the documents read so far
        self._known_documents: set[Digest] = set()  # children served from /manifests/, not /blobs/
        self._top: Descriptor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistrySource({self.client.name!r}, {self._ref_text!r})"

    # -- ImageSource -----------------------------------------------------------------------

    def index(self) -> Index:
        return Index(manifests=(self.top(),))

    def top(self) -> Descriptor:
        """The descriptor ``ref`` resolves to (fetched and verified once)."""
        if self._top is None:
            desc = self._fetch_document(self._ref_text)
            self._top = desc.annotated(**{REF_NAME: self._ref_text}) if as_digest(self._ref_text) is None else desc
        return self._top

    def resolve(self, ref: str | None) -> Descriptor:
        """None or this source's ref: the top descriptor; another tag or digest: fetched from the repository."""
        if ref is None or ref in ("", self._ref_text):
            return self.top()
        return self._fetch_document(ref)

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        digest = Digest(digest)
        with self._lock:
            doc = self._documents.get(digest)
        if doc is not None:
            return doc
        if self.cache is not None and self.cache.has(digest):
            return self.cache.read_bytes(digest, limit)
        if self._is_document(digest):
            return self._documents[self._fetch_document(digest).digest]
        size = self._sizes.get(digest)
        if limit is not None and size is not None and size > limit:
            raise InvalidDocument(f"read {self.client.name} blob {digest}: {size} bytes exceeds the "
                                  f"{limit}-byte limit")
        try:
            with self.client.open_blob(digest, size) as f:
                data = f.read(limit + 1) if limit is not None else f.read()
        except RegistryNotFound:
            return self._documents[self._fetch_document(digest).digest]  # a manifest we did not know of
        if limit is not None and len(data) > limit:
            raise InvalidDocument(f"read {self.client.name} blob {digest}: exceeds the {limit}-byte limit")
        return data

    def open_blob(self, digest: str) -> BinaryIO:
        digest = Digest(digest)
        if self.cache is not None and self.cache.has(digest):
            return self.cache.open(digest)
        if digest in self._documents or self._is_document(digest):
            return io.BytesIO(self.read_blob(digest))  # already verified
        return self.client.open_blob(digest, self._sizes.get(digest))

    def has_blob(self, digest: str) -> bool:
        digest = Digest(digest)
        if digest in self._documents or (self.cache is not None and self.cache.has(digest)):
            return True
        if self._is_document(digest):
            return self.client.head_manifest(digest) is not None
        return self.client.blob_exists(digest)

    def blob_path(self, digest: str) -> Path | None:
        """The cache's file for ``digest`` (so ``store.source.copy`` can hardlink), else None."""
        if self.cache is not None and self.cache.has(digest):
            return self.cache.path(digest)
        return None

    # -- pulling ---------------------------------------------------------------------------

    def prefetch(self, descriptors: Iterable[Descriptor], workers: int = PULL_WORKERS) -> int:
        """Download blobs missing from ``cache`` into it, ``workers`` at a time; returns how many.

        Each blob is verified before it is committed; the first failure is raised after the
        other transfers finished (nothing partial is left in the cache either way).
        """
        if self.cache is None:
            raise ValueError("prefetch needs a cache BlobStore")
        missing = list({d.digest: d for d in descriptors if not self.cache.has(d.digest)}.values())
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="pull") as pool:
            futures = [pool.submit(self._fetch_into_cache, d) for d in missing]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
        return len(missing)

    def _fetch_into_cache(self, desc: Descriptor) -> None:
        assert self.cache is not None
        if self.cache.has(desc.digest):
            return
        if desc.kind is not None and (desc.kind.is_index or desc.kind.is_manifest):
            self.read_blob(desc.digest)  # fetched, verified and cached as a document
            return
        with self.cache.writer(desc.digest, desc.size) as w:
            self.client.fetch_blob(desc, w)

    # -- documents -------------------------------------------------------------------------

    def _is_document(self, digest: Digest) -> bool:
        with self._lock:
            return digest in self._documents or digest in self._known_documents

    def _fetch_document(self, ref: str) -> Descriptor:
        desc, data = self.client.get_manifest(ref)
        doc = parse_document(data, desc.media_type)
        with self._lock:
            self._documents[desc.digest] = data
            for child in children(doc):
                if is_document(child):
                    self._known_documents.add(child.digest)
                else:
                    self._sizes[child.digest] = child.size
        if self.cache is not None:
            self.cache.put_bytes(data, desc.digest)
        return desc


def open_image(ref: Reference | str, *, options: TransportOptions | None = None,
               cache: BlobStore | None = None) -> RegistrySource:
    """A RegistrySource for ``ref`` (a Reference or text such as ``busybox:1.36``)."""
    ref = ref if isinstance(ref, Reference) else Reference.parse(ref)
    return RegistrySource(RepositoryClient.for_reference(ref, options), ref, cache=cache)


def pull_image(ref: Reference | str, platform: Platform, blobs: BlobStore, *,
               options: TransportOptions | None = None,
               workers: int = PULL_WORKERS) -> tuple[RegistrySource, Descriptor]:
    """Resolve ``ref``, pick ``platform``'s manifest, and fetch its config and layers into ``blobs``.

    Returns the source and the top-level descriptor (an index or a manifest), which is what
    ``builder.base.load_image(source, desc, platform, blobs, cache)`` takes: every blob it
    then asks for is already in ``blobs`` and is read from there. Blobs already in ``blobs``
    are not fetched again; the documents on the way are stored in ``blobs`` too.
    """
    source = open_image(ref, options=options, cache=blobs)
    top = source.top()
    _, manifest = manifest_for(source, top, platform)
    source.prefetch([manifest.config, *manifest.layers], workers)
    return source, top


__all__ = ["RegistrySource", "open_image", "pull_image", "PULL_WORKERS"]
