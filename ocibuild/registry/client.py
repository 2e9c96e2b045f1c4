"""A client for one repository of one registry (distribution-spec v2 API).

Documents (manifests and indexes) are fetched with an Accept header for the OCI and Docker
schema 2 types, bounded to MAX_DOCUMENT_SIZE, and verified: against the digest asked for,
and against the ``Docker-Content-Digest`` the registry sends, so a tag can never silently
resolve to bytes other than the ones the registry vouches for. ``parse_document`` refuses a
document whose ``mediaType`` contradicts its Content-Type. Pushed documents are sent byte-exact
with their own media type. Blob transfer lives in ``blobs.py``.
"""

from __future__ import annotations

from typing import BinaryIO, Callable

from ocibuild.errors import DigestMismatch, InvalidDocument, InvalidInput
from ocibuild.oci import MAX_DOCUMENT_SIZE, Descriptor, Digest, MediaType, Reference, parse_document
from ocibuild.registry import blobs
from ocibuild.registry.transport import Transport, TransportOptions

MANIFEST_TYPES = (MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST,
                  MediaType.DOCKER_MANIFEST_LIST)
ACCEPT = ", ".join(str(t) for t in MANIFEST_TYPES)
DOCKER_HUB_API = "registry-1.docker.io"
TAGS_PAGE = 1000
MAX_TAG_PAGES = 1000


def api_host(registry: str) -> str:
    """The host serving the API of ``registry`` (Docker Hub's name is not its API host)."""
    return DOCKER_HUB_API if registry in ("docker.io", "index.docker.io") else registry


def as_digest(ref: str) -> Digest | None:
    """``ref`` as a Digest when it is one, else None (it is a tag)."""
    if ":" not in ref:
        return None
    try:
        return Digest(ref)
    except InvalidInput:
        return None


class RepositoryClient:
    """``<host>/<repository>``; thread-safe (the Transport is shared by parallel transfers)."""

    def __init__(self, transport: Transport, repository: str):
        self.transport = transport
        self.repository = repository
        self.pull_scope = (f"repository:{repository}:pull",)
        self.push_scope = (f"repository:{repository}:pull,push",)

    @classmethod
    def for_reference(cls, ref: Reference, options: TransportOptions | None = None,
                      transport: Transport | None = None) -> "RepositoryClient":
        """A client for ``ref``'s repository; pass ``transport`` to share connections and tokens."""
        return cls(transport or Transport(api_host(ref.registry), options), ref.repository)

    def __repr__(self) -> str:
        return f"RepositoryClient({self.name!r})"

    @property
    def name(self) -> str:
        return f"{self.transport.host}/{self.repository}"

    def _path(self, kind: str, ref: str = "") -> str:
        return f"/v2/{self.repository}/{kind}/{ref}"

    # -- documents -------------------------------------------------------------------------

    def get_manifest(self, ref: str) -> tuple[Descriptor, bytes]:
        """The manifest or index ``ref`` (a tag or a digest) names, verified, and its exact bytes."""
        digest = as_digest(ref)
        what = f"get manifest {self.name}{'@' if digest else ':'}{ref}"
        response = self.transport.request("GET", self._path("manifests", ref), what=what, scopes=self.pull_scope,
                                          headers={"Accept": ACCEPT}, stream=True)
        with response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_DOCUMENT_SIZE:
                raise InvalidDocument(f"{what}: {declared} bytes exceeds the {MAX_DOCUMENT_SIZE}-byte document limit")
            data = blobs.read_bounded(response, MAX_DOCUMENT_SIZE, what)
            content_type = response.headers.get("Content-Type", "")
            claimed = response.headers.get("Docker-Content-Digest")
        actual = _verify_document(data, digest, claimed, what)
        try:
            doc = parse_document(data, content_type or None)
        except InvalidDocument as e:
            raise InvalidDocument(f"{what}: {e.message}") from None
        return Descriptor(str(doc.media_type), actual, len(data)), data

    def head_manifest(self, ref: str) -> Descriptor | None:
        """The descriptor the registry reports for ``ref`` without fetching it; None when absent.

        Unverified (nothing was read): use it to decide whether to push, not to trust content.
        """
        what = f"check manifest {self.name}:{ref}"
        response = self.transport.request("HEAD", self._path("manifests", ref), what=what, scopes=self.pull_scope,
                                          headers={"Accept": ACCEPT}, allow=(404,))
        response.close()
        claimed = response.headers.get("Docker-Content-Digest")
        if response.status_code == 404 or not claimed:
            return None
        size = response.headers.get("Content-Length", "0")
        return Descriptor(response.headers.get("Content-Type", ""), Digest(claimed),
                          int(size) if size.isdigit() else 0)

    def push_manifest(self, data: bytes, media_type: str, ref: str) -> Descriptor:
        """PUT ``data`` byte-exact as ``ref`` (a tag, or its own digest); returns its descriptor."""
        desc = Descriptor.for_bytes(str(media_type), data)
        if (digest := as_digest(ref)) is not None and digest != desc.digest:
            raise DigestMismatch(f"push manifest {self.name}@{ref}: the bytes hash to {desc.digest}")
        what = f"push manifest {self.name}{'@' if digest else ':'}{ref}"
        response = self.transport.request("PUT", self._path("manifests", ref), what=what, scopes=self.push_scope,
                                          headers={"Content-Type": str(media_type)}, body=data, ok=(200, 201))
        response.close()
        claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed != desc.digest:
            raise DigestMismatch(f"{what}: registry stored {claimed}, we sent {desc.digest}")
        return desc

    def list_tags(self) -> list[str]:
        """Every tag of the repository, following ``Link`` pagination (bounded)."""
        tags: list[str] = []
        url: str | None = self._path("tags", "list")
        params: dict | None = {"n": TAGS_PAGE}
        for _ in range(MAX_TAG_PAGES):
            response = self.transport.request("GET", url, what=f"list tags of {self.name}",
                                              scopes=self.pull_scope, params=params)
            with response:
                try:
                    tags += response.json().get("tags") or []
                except (ValueError, AttributeError):
                    raise InvalidDocument(f"list tags of {self.name}: the answer is not a tag list") from None
                url = response.links.get("next", {}).get("url")
            if not url:
                return tags
            params = None  # the Link URL carries its own query
        raise InvalidDocument(f"list tags of {self.name}: more than {MAX_TAG_PAGES} pages")

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        """HEAD the blob: True when the repository has (or can serve) it."""
        response = self.transport.request("HEAD", self._path("blobs", digest), what=f"check blob {digest} in "
                                          f"{self.name}", scopes=self.pull_scope, allow=(404,))
        response.close()
        return response.status_code == 200

    def fetch_blob(self, desc: Descriptor, writer: BinaryIO) -> int:
        """Stream the blob into ``writer`` (see blobs.fetch_blob); returns the bytes written."""
        return blobs.fetch_blob(self, desc, writer)

    def open_blob(self, digest: str, size: int | None = None) -> BinaryIO:
        """The blob as a verified, resuming stream (see blobs.BlobBody); the caller closes it."""
        return blobs.open_blob(self, Digest(digest), size)

    def push_blob(self, desc: Descriptor, opener: Callable[[], BinaryIO], *, mount_from: str | None = None,
                  chunk_size: int = blobs.CHUNK_UPLOAD_THRESHOLD) -> str:
        """Upload a blob unless there (see blobs.push_blob); returns "exists", "mounted" or "uploaded"."""
        return blobs.push_blob(self, desc, opener, mount_from=mount_from, chunk_size=chunk_size)


def _verify_document(data: bytes, asked: Digest | None, claimed: str | None, what: str) -> Digest:
    """The digest of ``data``, checked against the digest asked for and the registry's claim."""
    algorithm = asked.algorithm if asked else "sha256"
    claimed_digest = None
    if claimed:
        try:
            claimed_digest = Digest(claimed)
        except InvalidInput:
            raise DigestMismatch(f"{what}: registry sent an invalid Docker-Content-Digest {claimed!r}") from None
        algorithm = asked.algorithm if asked else claimed_digest.algorithm
    actual = Digest.of(data, algorithm)
    if asked is not None and actual != asked:
        raise DigestMismatch(f"{what}: content hashes to {actual}, not the {asked} asked for")
    if claimed_digest is not None and claimed_digest.algorithm == algorithm and claimed_digest != actual:
        raise DigestMismatch(f"{what}: registry claims Docker-Content-Digest {claimed_digest} but the content "
                             f"hashes to {actual}")
    return actual
