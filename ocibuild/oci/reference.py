"""Image references (`registry/repo:tag@digest`) with Docker's normalisation.

`busybox` means `docker.io/library/busybox:latest`; `localhost:5000/app` keeps its registry;
the first path component names a registry only when it has a `.` or `:` or is `localhost`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ocibuild.errors import InvalidInput, InvalidReference
from ocibuild.oci.digest import Digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str = ""
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> "Reference":
        """Parse and normalise; a reference with neither tag nor digest gets `latest`."""
        ref = cls.parse_name(text)
        if not ref.tag and ref.digest is None:
            ref = replace(ref, tag=DEFAULT_TAG)
        return ref

    @classmethod
    def parse_name(cls, text: str) -> "Reference":
        """Parse and normalise without adding a default tag."""
        name, digest = _split_digest(text)
        name, tag = _split_tag(name, text)
        registry, repository = _split_registry(name)
        if not _PATH.match(repository):
            raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase "
                                   "alphanumerics separated by '.', '_', '__' or '-'")
        if len(repository) > MAX_NAME_LENGTH:
            raise InvalidReference(f"invalid reference {text!r}: repository name longer than {MAX_NAME_LENGTH}")
        if tag and not _TAG.match(tag):
            raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}")
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def familiar(self) -> str:
        """The short form Docker prints: `busybox:latest`, `me/app:1`, `ghcr.io/x/y:2`."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> "Reference":
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "Reference":
        return replace(self, digest=Digest(digest))


def _split_digest(text: str) -> tuple[str, Digest | None]:
    if "@" not in text:
        return text, None
    name, _, digest = text.partition("@")
    try:
        return name, Digest(digest)
    except InvalidInput:
        raise InvalidReference(f"invalid reference {text!r}: invalid digest {digest!r}") from None


def _split_tag(name: str, text: str) -> tuple[str, str]:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    if not name:
        raise InvalidReference(f"invalid reference {text!r}: empty name")
    return name, ""


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.match(first):
            raise InvalidReference(f"invalid reference {name!r}: invalid registry {first!r}")
        registry = DEFAULT_REGISTRY if first in _LEGACY_REGISTRIES else first
        repository = rest
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository
