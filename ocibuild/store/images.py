"""The local image store: the images ``ocibuild build -t`` names and ``FROM`` can find offline.

It is one OCI layout at the cache root::

    <cache_dir>/oci-layout
    <cache_dir>/index.json      one entry per image, named by its full normalised reference
    <cache_dir>/blobs/sha256/   THE blob store of ocibuild (images, layers, build results)

An entry's ``org.opencontainers.image.ref.name`` (and ``io.containerd.image.name``) is the
full reference, ``docker.io/library/hello:dev``, not just the tag as in an exported layout:
one store holds many repositories, and the OCI ref.name grammar allows the full form. So
other tools read the store directly: ``skopeo inspect oci:<cache_dir>:docker.io/library/hello:dev``.
"""

from __future__ import annotations

import os

from ocibuild.errors import NotFound
from ocibuild.oci import REF_NAME, Descriptor, Reference
from ocibuild.store.blobs import BlobStore
from ocibuild.store.cachedir import cache_dir
from ocibuild.store.layout import OciLayout
from ocibuild.store.source import ImageSource, copy


class ImageStore:
    """Named local images over one OciLayout; safe for several processes at once (see OciLayout)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.layout = OciLayout(cache_dir() if root is None else root)
        self.root = self.layout.path

    def __repr__(self) -> str:
        return f"ImageStore({str(self.root)!r})"

    @property
    def blobs(self) -> BlobStore:
        return self.layout.blobs

    @staticmethod
    def name(ref: Reference | str) -> str:
        """The key of ``ref`` in the store: its full normalised form (``latest`` when untagged)."""
        return str(ref if isinstance(ref, Reference) else Reference.parse(ref))

    def save(self, ref: Reference | str, descriptor: Descriptor) -> Descriptor:
        """Name ``descriptor`` (whose blobs are already in ``self.blobs``) ``ref``, replacing an older image."""
        name = self.name(ref)
        return self.layout.tag(descriptor, name, image_name=name)

    def import_from(self, source: ImageSource, descriptor: Descriptor, ref: Reference | str) -> Descriptor:
        """Copy an image from another source (hardlinking where possible) and name it ``ref``."""
        copy(source, self.layout, descriptor)
        return self.save(ref, descriptor)

    def _entries(self) -> tuple[Descriptor, ...]:
        # The cache root may already hold other subsystems' files before the first image is saved.
        return self.layout.index().manifests if self.layout.exists() else ()

    def lookup(self, ref: Reference | str) -> Descriptor | None:
        name = self.name(ref)
        for d in self._entries():
            if d.annotations.get(REF_NAME) == name:
                return d
        return None

    def list(self) -> list[tuple[str, Descriptor]]:
        """Named images, sorted by name."""
        out = [(d.annotations.get(REF_NAME, ""), d) for d in self._entries()]
        return sorted(((n, d) for n, d in out if n), key=lambda item: item[0])

    def remove(self, ref: Reference | str) -> Descriptor:
        """Drop the name (blobs stay until a garbage collection); NotFound when there is no such image."""
        name = self.name(ref)
        try:
            return self.layout.untag(name)
        except NotFound:
            raise NotFound(f"remove image {name}: no such image in {self.root}") from None
