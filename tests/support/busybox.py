"""The busybox base of layers/busybox.yaml, built once as an OCI layout for tests that RUN.

    layout = build_layout(tmp / "busybox")        # every platform of the spec, tags 1.35.0, latest
    build_context(layout)   -> "busybox=oci-layout:///tmp/.../busybox:latest"   (for ocibuild)
    base_files(layout, "linux/arm64") -> {path: Entry}  (the base tree, read with `imagetree`)

The layout is built by ocibuild's own `layerspec` from the Debian packages cached in
`DEB_CACHE` (no network once the cache is filled), the same way tests/integration/
test_run_build.py builds it; it takes about a second. Its index.json holds one nested index
per tag, so `base_files` picks the images under the ``latest`` tag.
"""

from __future__ import annotations

from pathlib import Path

from ocibuild.layerspec import build as build_base
from ocibuild.layerspec import load_spec

from .imagetree import Entry, apply_layers
from .ocilayout import Layout, images, normalize_platform

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "layers" / "busybox.yaml"
DEB_CACHE = Path("/var/tmp/ocibuild-debcache")
NAME = "busybox"
TAG = "latest"


def build_layout(dest: Path) -> Path:
    """Build the busybox layout at `dest` (which must not exist yet); return `dest`."""
    build_base(load_spec(SPEC), dest, cache=DEB_CACHE)
    return dest


def build_context(layout: Path) -> str:
    """The ``--build-context`` value that makes ``FROM busybox`` use `layout`."""
    return f"{NAME}=oci-layout://{layout}:{TAG}"


def base_files(layout: Path, platform: str) -> dict[str, Entry]:
    """The base image's tree for `platform`, computed with `imagetree` (not with ocibuild)."""
    wanted = normalize_platform(platform)
    with Layout.open(layout) as opened:
        found = [image for image in images(opened)
                 if image.ref_name == TAG and image.platform == wanted]
        if len(found) != 1:
            raise LookupError(f"{layout}: {len(found)} images for {platform} under tag {TAG}")
        return apply_layers(opened.open_blob(layer["digest"])
                            for layer in found[0].manifest["layers"])
