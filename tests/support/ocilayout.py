"""An independent reader of OCI image layouts and OCI archives (standard library only).

It deliberately shares no code with ocibuild: the tests use it to judge ocibuild's output, so a
bug in ocibuild's reader must not be able to hide the same bug in ocibuild's writer.

`Layout.open(path)` accepts an image-layout directory or a tar of one (an "OCI archive").
`images(layout)` walks index.json, following nested image indexes (buildx and buildah both write
index.json -> one descriptor per tag -> image index -> one manifest per platform), and returns one
`PlatformImage` per manifest. Reads are not verified here; `support.validate` does that.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
})
REF_NAME = "org.opencontainers.image.ref.name"


def platform_string(platform: dict) -> str:
    """`{"os": "linux", "architecture": "arm", "variant": "v7"}` -> ``"linux/arm/v7"``."""
    parts = [platform.get("os", ""), platform.get("architecture", ""), platform.get("variant", "")]
    return "/".join(p for p in parts if p)


def normalize_platform(text: str) -> str:
    """The normal form BuildKit uses: ``linux/arm`` -> ``linux/arm/v7``, ``linux/arm64/v8`` -> ``linux/arm64``."""
    parts = text.split("/")
    if parts[1:] == ["arm"]:
        parts.append("v7")
    if parts[1:] == ["arm64", "v8"]:
        parts = parts[:2]
    return "/".join(parts)


def blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


class Layout:
    """Read-only access to the files of a layout directory or OCI archive, by relative name."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if not self.path.is_dir():
            self._tar = tarfile.open(self.path, "r:*")
            for member in self._tar.getmembers():
                self._members[_clean(member.name)] = member

    @classmethod
    def open(cls, path: Path | str) -> "Layout":
        return cls(Path(path))

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> "Layout":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> list[str]:
        """Every regular file, as a relative POSIX path (``blobs/sha256/...``, ``index.json``)."""
        if self._tar is not None:
            return sorted(n for n, m in self._members.items() if m.isfile())
        return sorted(p.relative_to(self.path).as_posix()
                      for p in self.path.rglob("*") if p.is_file())

    def exists(self, name: str) -> bool:
        if self._tar is not None:
            return name in self._members and self._members[name].isfile()
        return (self.path / name).is_file()

    def open_file(self, name: str) -> BinaryIO:
        """A stream of file `name`; the caller closes it. Raises FileNotFoundError if absent."""
        if self._tar is None:
            return open(self.path / name, "rb")
        member = self._members.get(name)
        stream = self._tar.extractfile(member) if member is not None and member.isfile() else None
        if stream is None:
            raise FileNotFoundError(f"{self.path}: no file {name!r} in the archive")
        return stream

    def read(self, name: str) -> bytes:
        with self.open_file(name) as stream:
            return stream.read()

    def read_json(self, name: str) -> dict:
        return json.loads(self.read(name))

    def blob(self, digest: str) -> bytes:
        return self.read(blob_path(digest))

    def blob_json(self, digest: str) -> dict:
        return json.loads(self.blob(digest))

    def open_blob(self, digest: str) -> BinaryIO:
        return self.open_file(blob_path(digest))

    def extract_to(self, dest: Path) -> Path:
        """Copy the layout's regular files to directory `dest` (for tools that need a directory)."""
        for name in self.names():
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"{self.path}: unsafe member name {name!r}")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.open_file(name) as src, open(target, "wb") as out:
                _copy(src, out)
        return dest


@dataclass(frozen=True)
class PlatformImage:
    """One manifest reachable from index.json, with its platform and how it was reached."""

    platform: str                   # normal form, "linux/arm/v7"
    descriptor: dict                # the descriptor that points at the manifest
    manifest: dict
    config: dict
    ref_name: str | None            # ref name of the top-level descriptor in index.json
    top: dict                       # that top-level descriptor
    chain: tuple[str, ...] = field(default=())  # digests from the top descriptor down to the manifest

    @property
    def digest(self) -> str:
        return self.descriptor["digest"]

    @property
    def nested(self) -> bool:
        """True when the manifest sits under an image index rather than directly in index.json."""
        return len(self.chain) > 1


def images(layout: Layout) -> list[PlatformImage]:
    """Every image manifest reachable from index.json, in document order."""
    found: list[PlatformImage] = []
    for top in layout.read_json("index.json").get("manifests", []):
        ref = (top.get("annotations") or {}).get(REF_NAME)
        found.extend(_walk(layout, top, top, ref, ()))
    return found


def _walk(layout: Layout, desc: dict, top: dict, ref: str | None,
          chain: tuple[str, ...]) -> Iterator[PlatformImage]:
    chain = chain + (desc["digest"],)
    document = layout.blob_json(desc["digest"])
    media_type = desc.get("mediaType") or document.get("mediaType")
    if media_type in INDEX_TYPES or "manifests" in document:
        for child in document.get("manifests", []):
            yield from _walk(layout, child, top, ref, chain)
        return
    config = layout.blob_json(document["config"]["digest"])
    platform = desc.get("platform") or {k: config.get(k, "") for k in ("os", "architecture", "variant")}
    yield PlatformImage(normalize_platform(platform_string(platform)), desc, document, config,
                        ref, top, chain)


def select(layout: Layout, platform: str | None = None) -> PlatformImage:
    """The one image for `platform` (or the only image, when `platform` is None)."""
    found = images(layout)
    if platform is not None:
        wanted = normalize_platform(platform)
        found = [image for image in found if image.platform == wanted]
    if len(found) != 1:
        shown = [image.platform for image in images(layout)]
        raise LookupError(f"{layout.path}: expected one image for {platform or 'any platform'}, "
                          f"found {len(found)} (platforms present: {shown})")
    return found[0]


def decompressed(stream: BinaryIO) -> BinaryIO:
    """`stream` (gzip, zstd or plain tar, told apart by magic bytes) as an uncompressed stream."""
    buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
    magic = buffered.peek(4)[:4]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered)
    if magic == b"\x28\xb5\x2f\xfd":
        import zstandard  # only needed for zstd layers

        return zstandard.ZstdDecompressor().stream_reader(buffered)
    return buffered


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _copy(src: BinaryIO, out: BinaryIO) -> None:
    while chunk := src.read(1 << 20):
        out.write(chunk)


__all__ = ["Layout", "PlatformImage", "images", "select", "platform_string", "normalize_platform",
           "blob_path", "decompressed", "INDEX_TYPES", "MANIFEST_TYPES", "CONFIG_TYPES", "LAYER_TYPES", "REF_NAME"]
