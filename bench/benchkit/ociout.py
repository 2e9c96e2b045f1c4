"""Read the layer descriptors out of an OCI image tar (an OCI layout, tarred).

Only what the benchmark needs: follow index.json through nested indexes to the
manifests and sum their layers' sizes. Tar headers are read, layer data is not,
so this takes well under a second even for a gigabyte of layers.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

_INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json"}


@dataclass(frozen=True)
class Layers:
    """The layers of every manifest in an archive."""

    manifests: int
    count: int
    bytes: int
    media_types: tuple[str, ...]


class NotAnImage(Exception):
    """The file is not an OCI image tar that this reader understands."""


def layers_of(archive: Path) -> Layers:
    """Sum the layer blobs of `archive`; raises NotAnImage if it cannot."""
    try:
        with tarfile.open(archive) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            return _walk(tar, members)
    except (OSError, tarfile.TarError, KeyError, ValueError) as e:
        raise NotAnImage(f"reading {archive}: {e}") from e


def _walk(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> Layers:
    def read(name: str) -> dict:
        f = tar.extractfile(members[name])
        if f is None:
            raise KeyError(name)
        return json.loads(f.read())

    pending = list(read("index.json")["manifests"])
    manifests, layers = 0, []
    while pending:
        desc = pending.pop()
        alg, hexpart = desc["digest"].split(":", 1)
        doc = read(f"blobs/{alg}/{hexpart}")
        if desc.get("mediaType", doc.get("mediaType")) in _INDEX_TYPES:
            pending.extend(doc["manifests"])
        else:
            manifests += 1
            layers.extend(doc["layers"])
    return Layers(manifests, len(layers), sum(int(d["size"]) for d in layers),
                  tuple(sorted({d["mediaType"] for d in layers})))
