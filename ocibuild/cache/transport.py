"""Carrying cache records and their layers to and from registries and directories.

The cache artifact (``type=registry`` and ``type=local``) is an OCI 1.1 artifact: an image
manifest any registry stores and skopeo, crane or oras copy like an image::

    {"schemaVersion": 2,
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.ocibuild.cache.v1+json",
     "config": {"mediaType": "application/vnd.ocibuild.cache.config.v1+json", ...},
     "layers": [<the layer blobs the records use, each once, descriptors as the build wrote them>]}

    config: {"diffIDs": ["sha256:..."],          diffIDs[i] is the uncompressed digest of layers[i]
             "records": {"<key>": {"created": "...", "layer": 0}, ...}}     (see inline.py)

Both documents are canonical JSON (sorted keys), so the same records give the same digests
and exporting an unchanged cache again changes nothing. Keys are the builder's; a record
without ``layer`` is a step that changed only the config.

- ``type=local,dest=DIR``: an OCI layout; index.json names the manifest with
  ``org.opencontainers.image.ref.name`` = ``tag=`` (default ``latest``). Blobs are hardlinked
  from the store when possible. A new export replaces that index entry atomically and leaves
  the blobs of earlier exports, as buildx does.
- ``type=registry,ref=R``: layer blobs (only those the registry lacks), config, then the
  manifest to R's tag: the tag moves only once everything it names is there.
- ``--cache-from`` a registry image (``reg/app:1.2``, or any image in a local layout) reads
  the inline cache of each platform asked for (inline.py) and fetches layers from there.

Imports verify everything: documents by digest (as every ImageSource does), blobs while they
are written to the store. Every failure, whatever its cause, is raised as one CacheError
naming the location, so the builder can warn and build without the cache.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Callable, Iterable

from ocibuild.cache.inline import INLINE_KEY, decode_records, encode_records
from ocibuild.cache.records import Record
from ocibuild.cache.spec import CacheSpec
from ocibuild.errors import CacheError, InvalidDocument, InvalidInput, NotFound, OcibuildError
from ocibuild.oci import MAX_DOCUMENT_SIZE, Descriptor, Manifest, MediaType, Platform, Reference, canonical_json, verify
from ocibuild.registry import RepositoryClient, TransportOptions, open_image
from ocibuild.store.blobs import CHUNK, BlobStore
from ocibuild.store.layout import OciLayout
from ocibuild.store.source import ImageSource, blob_path, load_config, load_document, manifest_for

CACHE_ARTIFACT = "application/vnd.ocibuild.cache.v1+json"
CACHE_CONFIG = "application/vnd.ocibuild.cache.config.v1+json"
BUILDKIT_CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"  # named in the error, not read
DEFAULT_TAG = "latest"
PUSH_WORKERS = 4

Options = Callable[[str], TransportOptions]


def _default_options(host: str) -> TransportOptions:
    return TransportOptions()


# -- the artifact -------------------------------------------------------------------------


def cache_artifact(records: dict[str, Record]) -> tuple[Manifest, bytes]:
    """The cache manifest and its config's bytes for ``records`` (deterministic)."""
    layers: dict[str, tuple[Descriptor, str]] = {}
    for key in sorted(records):
        r = records[key]
        if r.layer is not None:
            if r.diff_id is None:
                raise ValueError(f"cache record {key[:12]}: a layer without its diff_id")
            layers.setdefault(r.layer.digest, (r.layer, str(r.diff_id)))
    descriptors = [d for d, _ in layers.values()]
    body = encode_records(records, descriptors)
    config = canonical_json({"diffIDs": [diff_id for _, diff_id in layers.values()], **body})
    manifest = Manifest(config=Descriptor.for_bytes(CACHE_CONFIG, config), layers=tuple(descriptors),
                        artifact_type=CACHE_ARTIFACT)
    return manifest, config


def read_artifact(manifest: Manifest, config: bytes) -> dict[str, Record]:
    """The records of a cache artifact whose (verified) config bytes are ``config``."""
    try:
        value = json.loads(config)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidDocument(f"cache config {manifest.config.digest} is not JSON: {e}") from None
    diff_ids = value.get("diffIDs") if isinstance(value, dict) else None
    if not isinstance(diff_ids, list):
        raise InvalidDocument(f"cache config {manifest.config.digest}: no 'diffIDs' list")
    try:
        return decode_records(value, manifest.layers, diff_ids)
    except InvalidDocument as e:
        raise InvalidDocument(f"cache config {manifest.config.digest}: {e.message}") from None


# -- export -------------------------------------------------------------------------------


def export_cache(spec: CacheSpec, records: dict[str, Record], blobs: BlobStore, *,
                 options: Options = _default_options) -> Descriptor:
    """Write ``records`` and their layers (read from ``blobs``) where ``spec`` says; returns the manifest.

    Idempotent. CacheError on any failure (``ignore-error`` is the caller's to honour);
    ValueError for ``type=inline``, which travels in the image (see inline.inline_cache).
    """
    if spec.type not in ("local", "registry"):
        raise ValueError(f"export_cache: type={spec.type} is not exported separately")
    manifest, config = cache_artifact(records)
    try:
        if spec.type == "local":
            return _export_local(OciLayout(spec.path), spec.attrs.get("tag") or DEFAULT_TAG, manifest, config, blobs)
        return _export_registry(_push_reference(spec.ref), manifest, config, blobs, options)
    except (OcibuildError, OSError) as e:
        raise CacheError(f"export cache to {_where(spec)}: {_reason(e)}") from e


def _export_local(layout: OciLayout, tag: str, manifest: Manifest, config: bytes, blobs: BlobStore) -> Descriptor:
    layout.create()
    for d in manifest.layers:
        if not layout.blobs.has(d.digest) and not layout.blobs.link(d.digest, blobs.path(d.digest), d.size):
            with blobs.open(d.digest) as f:
                layout.blobs.ingest(f, d.digest, d.size)
    layout.put_blob(config, CACHE_CONFIG)
    desc = layout.put_document(manifest).with_(artifact_type=CACHE_ARTIFACT)
    layout.tag(desc, tag)  # blobs first, then the one atomic index.json update
    return desc


def _push_reference(text: str) -> Reference:
    ref = Reference.parse(text)
    if ref.digest is not None:
        raise InvalidInput("a cache is pushed to a tag, not a digest")
    return ref


def _export_registry(ref: Reference, manifest: Manifest, config: bytes, blobs: BlobStore,
                     options: Options) -> Descriptor:
    client = RepositoryClient.for_reference(ref, options(ref.registry))
    try:
        uploads = [(d, _opener(blobs, d)) for d in manifest.layers]
        uploads.append((manifest.config, lambda: io.BytesIO(config)))
        _push_blobs(client, uploads)
        return client.push_manifest(manifest.to_json(), manifest.media_type, ref.tag).with_(
            artifact_type=CACHE_ARTIFACT)
    finally:
        client.transport.close()


def _opener(blobs: BlobStore, d: Descriptor) -> Callable[[], BinaryIO]:
    return lambda: blobs.open(d.digest)


def _push_blobs(client: RepositoryClient, uploads: list[tuple[Descriptor, Callable[[], BinaryIO]]]) -> None:
    """Push (HEAD first) ``PUSH_WORKERS`` at a time; the first error is raised once all finished."""
    with ThreadPoolExecutor(max_workers=PUSH_WORKERS, thread_name_prefix="cache-push") as pool:
        futures = [pool.submit(client.push_blob, d, opener) for d, opener in uploads]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]


# -- import -------------------------------------------------------------------------------


class ImportedCache:
    """Records read from one ``--cache-from``, and the place their layers are fetched from. Thread-safe."""

    def __init__(self, where: str, source: ImageSource, records: dict[str, Record]):
        self.where, self._source, self.records = where, source, records

    def __repr__(self) -> str:
        return f"ImportedCache({self.where!r}, {len(self.records)} records)"

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def fetch(self, record: Record, blobs: BlobStore) -> None:
        """Make ``record``'s layer present in ``blobs``, verified; nothing to do when it is there.

        CacheError when the blob is missing, corrupt or cannot be fetched.
        """
        d = record.layer
        if d is None or blobs.has(d.digest):
            return
        try:
            _fetch(self._source, d, blobs)
        except (OcibuildError, OSError) as e:
            raise CacheError(f"fetch layer {d.digest} from cache {self.where}: {_reason(e)}") from e


def _fetch(source: ImageSource, d: Descriptor, blobs: BlobStore) -> None:
    path = blob_path(source, d.digest)
    if path is not None:
        with source.open_blob(d.digest) as f:
            while f.read(CHUNK):
                pass  # read to the end: the reader raises DigestMismatch unless the file is intact
        if blobs.link(d.digest, path, d.size):
            return  # verified, and shared with the cache directory rather than copied
    with source.open_blob(d.digest) as f:
        blobs.ingest(f, d.digest, d.size)


def import_cache(spec: CacheSpec, *, platforms: Iterable[Platform],
                 options: Options = _default_options) -> ImportedCache:
    """Read the cache ``spec`` names: a cache artifact, or an image's inline cache for ``platforms``.

    Only documents are read here; layers are fetched on demand by ``ImportedCache.fetch``.
    CacheError, naming the location, for anything that keeps the cache from being used.
    """
    where = _where(spec)
    try:
        source, top = _open(spec, options)
        return ImportedCache(where, source, _read(source, top, list(platforms)))
    except (OcibuildError, OSError) as e:
        raise CacheError(f"import cache from {where}: {_reason(e)}") from e


def _open(spec: CacheSpec, options: Options) -> tuple[ImageSource, Descriptor]:
    if spec.type == "registry":
        ref = Reference.parse(spec.ref)
        source = open_image(ref, options=options(ref.registry))
        return source, source.top()
    if spec.type == "local":
        layout = OciLayout(spec.path)
        if not layout.exists():
            raise NotFound("no OCI layout there")
        return layout, layout.resolve(spec.attrs.get("digest") or spec.attrs.get("tag") or DEFAULT_TAG)
    raise InvalidDocument(f"type={spec.type} cannot be imported; name the image instead (--cache-from reg/app:1)")


def _read(source: ImageSource, top: Descriptor, platforms: list[Platform]) -> dict[str, Record]:
    doc = load_document(source, top)
    if isinstance(doc, Manifest) and not _is_image(doc):
        _check_artifact(doc)
        config = source.read_blob(doc.config.digest, limit=MAX_DOCUMENT_SIZE)
        verify(config, doc.config.digest, doc.config.size, what="read cache config")
        return read_artifact(doc, config)
    return _read_inline(source, top, platforms)


def _is_image(doc: Manifest) -> bool:
    kind = MediaType.lookup(doc.config.media_type)
    return kind is not None and kind.is_config


def _check_artifact(doc: Manifest) -> None:
    if doc.config.media_type == BUILDKIT_CACHE_CONFIG:
        raise InvalidDocument("this is a BuildKit cache, which ocibuild cannot read")
    if doc.artifact_type != CACHE_ARTIFACT or doc.config.media_type != CACHE_CONFIG:
        found = doc.artifact_type or doc.config.media_type
        raise InvalidDocument(f"not an ocibuild cache: artifact type {found!r}, expected {CACHE_ARTIFACT!r}")


def _read_inline(source: ImageSource, top: Descriptor, platforms: list[Platform]) -> dict[str, Record]:
    """The inline caches of ``platforms``' images (a platform the image lacks contributes nothing)."""
    records: dict[str, Record] = {}
    seen, found = set(), False
    for platform in platforms:
        try:
            desc, manifest = manifest_for(source, top, platform)
        except NotFound:
            continue
        if desc.digest in seen:
            continue  # a single-platform image answers for every platform
        seen.add(desc.digest)
        config = load_config(source, manifest.config)
        if INLINE_KEY in config.extra:
            found = True
            try:
                records.update(decode_records(config.extra[INLINE_KEY], manifest.layers, config.diff_ids))
            except InvalidDocument as e:
                raise InvalidDocument(f"inline cache of {platform} ({manifest.config.digest}): {e.message}") from None
    if not found:
        shown = ", ".join(str(p) for p in platforms)
        raise NotFound(f"the image has no ocibuild inline cache for {shown} (built without --cache-to type=inline?)")
    return records


# -- messages -----------------------------------------------------------------------------


def _where(spec: CacheSpec) -> str:
    if spec.type == "local":
        name = spec.attrs.get("digest") or f"tag {spec.attrs.get('tag') or DEFAULT_TAG}"
        return f"{spec.path} ({name})"
    return spec.ref or f"type={spec.type}"


def _reason(e: OcibuildError | OSError) -> str:
    return (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
