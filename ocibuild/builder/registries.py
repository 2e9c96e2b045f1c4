"""How a build reaches registries: per-host transport options from the build's flags, pulls for
FROM, pushes for `--push` / `type=registry` outputs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from ocibuild.oci import Descriptor, Platform, Reference

if TYPE_CHECKING:
    from ocibuild.registry import TransportOptions
    from ocibuild.store.blobs import BlobStore
    from ocibuild.store.source import ImageSource

# ocibuild.registry (and requests, urllib3, oras behind it) is imported when a registry is
# used: a build from local images or a cached rebuild must not pay a fifth of a second for it.


@dataclass(frozen=True)
class RegistryAccess:
    """`--insecure-registry HOST` (plain HTTP or unverified TLS allowed) and `--tls-ca FILE`."""

    insecure: frozenset[str] = field(default_factory=frozenset)
    ca_file: str | None = None

    def options(self, host: str) -> TransportOptions:
        from ocibuild.registry import TLSOptions, TransportOptions  # noqa: PLC0415 - see the top
        return TransportOptions(tls=TLSOptions(insecure=host in self.insecure, ca_file=self.ca_file))

    def pull(self, ref: Reference, platform: Platform, blobs: BlobStore) -> tuple[ImageSource, Descriptor]:
        """The image for ``platform``: its config and layers fetched (verified) into ``blobs``."""
        from ocibuild.registry import pull_image  # noqa: PLC0415 - see the top
        return pull_image(ref, platform, blobs, options=self.options(ref.registry))

    def push(self, source: ImageSource, desc: Descriptor, refs: Iterable[Reference], *,
             by_digest: bool = False) -> list[str]:
        """Push ``desc`` to every repository named in ``refs`` (tags last); returns `name@digest`s.

        Later repositories of the same registry mount blobs from the first one pushed there.
        """
        from ocibuild.registry import push_image  # noqa: PLC0415 - see the top
        by_repo: dict[str, list[Reference]] = {}
        for ref in refs:
            by_repo.setdefault(ref.name, []).append(ref)
        pushed: list[str] = []
        first_on: dict[str, str] = {}
        for name, group in by_repo.items():
            ref = group[0]
            pushed_desc = push_image(source, desc, ref, tags=[r.tag for r in group[1:] if r.tag],
                                     by_digest=by_digest, options=self.options(ref.registry),
                                     mount_from=first_on.get(ref.registry))
            first_on.setdefault(ref.registry, ref.repository)
            pushed.append(f"{name}@{pushed_desc.digest}")
        return pushed
