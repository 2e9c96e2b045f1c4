"""Making a manifest (or index) that lives in one repository present in another, without pulling layers.

``docker manifest push`` and ``buildx imagetools create`` both need every child of the
index they put to exist in the target repository (a registry refuses an index whose
children it does not have). For a child from another repository:

- on the same registry, its blobs are cross-repository mounted (``POST ?mount=&from=``,
  which ``RepositoryClient.push_blob`` tries after a HEAD): no layer bytes move;
- when the registry declines the mount, or the source is on another registry, the blob is
  streamed from the source straight into the upload (verified as it is read), never stored;
- then the manifest is put by digest, byte-exact with its own media type.

A nested index has its children made present first. Idempotent: whatever the target has
already is only HEADed.
"""

from __future__ import annotations

from ocibuild.errors import InvalidDocument
from ocibuild.oci import Descriptor, Index, Reference, parse_document, verify
from ocibuild.manifests.remote import Remote


def same_repository(a: Reference, b: Reference) -> bool:
    return a.registry == b.registry and a.repository == b.repository


def ensure_document(remote: Remote, source: Reference, target: Reference, desc: Descriptor,
                    raw: bytes | None = None, depth: int = 0) -> str:
    """Make the document ``desc`` from ``source``'s repository present by digest in ``target``'s.

    ``raw``: its exact bytes when the caller has them (verified here), else fetched. Returns
    "same repository", "exists" or "pushed".
    """
    if same_repository(source, target):
        return "same repository"
    client = remote.client(target)
    if client.head_manifest(desc.digest) is not None:
        return "exists"
    if raw is None:
        fetched = remote.fetch_child(source, desc)
        raw = fetched.raw
    verify(raw, desc.digest, desc.size, what=f"copy manifest {source.name}@{desc.digest}")
    doc = parse_document(raw, desc.media_type or None)
    if isinstance(doc, Index):
        if depth > 8:
            raise InvalidDocument(f"copy {source.name}@{desc.digest}: indexes nested more than 8 deep")
        for child in doc.manifests:
            ensure_document(remote, source, target, child, None, depth + 1)
    else:
        for blob in (doc.config, *doc.layers):
            _ensure_blob(remote, source, target, blob)
    client.push_manifest(raw, desc.media_type or str(doc.media_type), desc.digest)
    return "pushed"


def _ensure_blob(remote: Remote, source: Reference, target: Reference, blob: Descriptor) -> str:
    source_client = remote.client(source)
    if blob.urls and not source_client.blob_exists(blob.digest):
        return "foreign"  # a non-distributable layer: registries do not expect it
    mount_from = source.repository if source.registry == target.registry else None
    return remote.client(target).push_blob(blob, lambda: source_client.open_blob(blob.digest, blob.size),
                                           mount_from=mount_from)


__all__ = ["ensure_document", "same_repository"]
