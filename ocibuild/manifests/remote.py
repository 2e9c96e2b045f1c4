"""Registry access shared by ``manifest`` and ``imagetools``: one Transport per registry host.

Documents are fetched through ``RepositoryClient.get_manifest`` (verified against the digest
asked for and the registry's ``Docker-Content-Digest``); image configs through
``open_blob`` (verified while read). Nothing here downloads a layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocibuild.errors import InvalidDocument, InvalidInput
from ocibuild.oci import (MAX_DOCUMENT_SIZE, Descriptor, ImageConfig, Index, Manifest, Platform, Reference,
                          parse_document)
from ocibuild.registry import RepositoryClient, TLSOptions, Transport, TransportOptions, api_host


@dataclass(frozen=True)
class Fetched:
    """A document as the registry served it: its reference, descriptor, exact bytes and parsed form."""

    ref: Reference
    descriptor: Descriptor
    raw: bytes
    document: Manifest | Index

    @property
    def is_index(self) -> bool:
        return isinstance(self.document, Index)


@dataclass
class Remote:
    """Clients for any repository; repositories on one registry share a Transport (connections, tokens).

    ``insecure`` marks every registry this command talks to as insecure (plain HTTP allowed,
    certificates not verified), as ``docker manifest --insecure`` does. Credentials come from
    config.json (``registry.auth.lookup``) unless ``options`` carries some.
    """

    insecure: bool = False
    options: TransportOptions | None = None
    _transports: dict[str, Transport] = field(default_factory=dict, repr=False)

    def _options(self) -> TransportOptions:
        if self.options is not None:
            return self.options
        return TransportOptions(tls=TLSOptions(insecure=self.insecure))

    def client(self, ref: Reference) -> RepositoryClient:
        host = api_host(ref.registry)
        if host not in self._transports:
            self._transports[host] = Transport(host, self._options())
        return RepositoryClient.for_reference(ref, transport=self._transports[host])

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fetch(self, ref: Reference) -> Fetched:
        """The manifest or index ``ref`` names (by digest when it has one, else by tag), verified."""
        desc, raw = self.client(ref).get_manifest(str(ref.digest or ref.tag))
        return Fetched(ref, desc, raw, parse_document(raw, desc.media_type))

    def fetch_child(self, ref: Reference, desc: Descriptor) -> Fetched:
        """A child of an index in ``ref``'s repository, checked against its descriptor (size too)."""
        fetched = self.fetch(ref.with_digest(desc.digest))
        if fetched.descriptor.size != desc.size:
            raise InvalidDocument(f"get manifest {ref.name}@{desc.digest}: {fetched.descriptor.size} bytes, "
                                  f"the index says {desc.size}")
        return fetched

    def image_platform(self, ref: Reference, manifest: Manifest) -> Platform | None:
        """The platform recorded in the image's config blob (normalised), or None when it names none."""
        config = manifest.config
        if config.size > MAX_DOCUMENT_SIZE:
            raise InvalidDocument(f"read config {config.digest} of {ref}: {config.size} bytes exceeds the "
                                  f"{MAX_DOCUMENT_SIZE}-byte limit")
        with self.client(ref).open_blob(config.digest, config.size) as f:
            data = f.read()
        try:
            image = ImageConfig.from_json(data)
        except InvalidDocument as e:
            raise InvalidDocument(f"read config {config.digest} of {ref}: {e.message}") from None
        if not image.os or not image.architecture:
            return None
        found = Platform(image.os, image.architecture, image.variant, image.os_version,
                         tuple(image.extra.get("os.features") or ()))
        return found.normalize()


def parse_ref(text: str, what: str) -> Reference:
    """``text`` as a Reference; the error names what the reference was for."""
    try:
        return Reference.parse(text)
    except InvalidInput as e:
        raise type(e)(f"{what}: {e.message}") from None


def tag_reference(text: str, what: str) -> Reference:
    """``text`` as a Reference to push to: a tag (``latest`` when none), never a digest."""
    ref = parse_ref(text, what)
    if ref.digest is not None:
        raise InvalidInput(f"{what}: {text!r} names a digest; name it by tag")
    return ref


__all__ = ["Fetched", "Remote", "parse_ref", "tag_reference"]
