"""Content digests as the OCI image spec defines them (`algorithm ":" encoded`)."""

from __future__ import annotations

import hashlib
import re

from ocibuild.errors import DigestMismatch, InvalidInput

_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# Registered algorithms and the length of their lowercase hex encoding.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


class Digest(str):
    """A validated digest string such as ``sha256:9f86d0...``.

    A ``str`` subclass so it serialises and compares like the plain strings other
    tools use; construction validates the grammar and, for registered algorithms, the encoding.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> "Digest":
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str) or not _GRAMMAR.match(value):
            raise InvalidInput(f"invalid digest: {value!r}")
        algorithm, encoded = value.split(":", 1)
        length = _HEX_LENGTH.get(algorithm)
        if length is None:
            raise InvalidInput(f"unsupported digest algorithm: {value!r}")
        if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
            raise InvalidInput(f"invalid {algorithm} digest: {value!r}")
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def encoded(self) -> str:
        return self.split(":", 1)[1]

    def short(self) -> str:
        """The first 12 hex characters, as tools print image IDs."""
        return self.encoded[:12]

    def hasher(self) -> "hashlib._Hash":
        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> "Digest":
        return cls(f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}")

    @classmethod
    def from_hasher(cls, hasher: "hashlib._Hash") -> "Digest":
        return cls(f"{hasher.name}:{hasher.hexdigest()}")


def verify(data: bytes, digest: str, size: int | None = None, *, what: str = "content") -> None:
    """Raise DigestMismatch unless ``data`` hashes to ``digest`` (and has ``size`` bytes, when given)."""
    expected = Digest(digest)
    if size is not None and len(data) != size:
        raise DigestMismatch(f"{what} {expected}: expected {size} bytes, got {len(data)}")
    actual = Digest.of(data, expected.algorithm)
    if actual != expected:
        raise DigestMismatch(f"{what} {expected}: content hashes to {actual}")
