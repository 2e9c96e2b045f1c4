"""End-to-end tests: real base images from layers/, real packages from the Debian mirror.

Every module here sets ``pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]``: one
xdist worker runs them (the session fixture is built once), beside the rest of the suite in
`make test`; `make e2e` (pytest -m e2e) runs them alone.

The `debian` fixture builds layers/debian.yaml once per session. Its layers come from the
layerspec cache (/var/tmp/ocibuild-debcache, or $OCIBUILD_TEST_DEB_CACHE), where the first run
debootstraps them: about 5 minutes for amd64 and arm64 (arm64 under QEMU); later runs only
fetch the mirror's Release file and copy the cached blobs (about a second).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocibuild.layerspec import build, load_spec
from support.require import require

REPO = Path(__file__).resolve().parents[2]
DEB_CACHE = Path(os.environ.get("OCIBUILD_TEST_DEB_CACHE", "/var/tmp/ocibuild-debcache"))


@pytest.fixture(scope="session")
def debian(tmp_path_factory):
    """The `Built` debian base (an OCI layout with linux/amd64 and linux/arm64)."""
    require("root", "binfmt:arm64", "debootstrap", "chroot")
    return build(load_spec(REPO / "layers" / "debian.yaml"), tmp_path_factory.mktemp("layers") / "debian",
                 cache=DEB_CACHE)


@pytest.fixture
def debian_context(debian) -> str:
    """The ``--build-context`` value that makes ``FROM debian`` use the built base."""
    return f"debian=oci-layout://{debian.layout}:latest"
