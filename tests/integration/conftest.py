"""Fixtures for registry tests: reference registries per session, a fault proxy per test, test images.

Session registries (each started on first use, on 127.0.0.1, stopped at session end):
``plain_registry`` (HTTP), ``tls_registry`` (HTTPS with a test CA), ``htpasswd_registry``
(Basic auth, user ``alice``) and ``token_registry`` (bearer tokens from a TokenServer; ``alice``
may pull and push, ``reader`` may only pull). ``proxy``: a FaultProxy in front of
``plain_registry``, new for each test. ``make_image``: a small OCI layout built with ocibuild.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from ocibuild.oci import Descriptor, ImageConfig, Index, Manifest, MediaType, Platform
from ocibuild.registry import RetryPolicy, TLSOptions, TransportOptions
from ocibuild.registry.auth import Credentials
from ocibuild.store.layout import OciLayout
from support.proxy import FaultProxy
from support.registry import Registry, start_registry
from support.require import require
from support.tokenserver import TokenServer

USERS = {"alice": "alice-Secret-9f3e", "reader": "reader-Secret-77aa"}


def _registry(tmp_path_factory, name: str, **kw) -> Registry:
    require("registry")
    return start_registry(tmp_path_factory.mktemp(name), **kw)


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory):
    registry = _registry(tmp_path_factory, "plain")
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    registry = _registry(tmp_path_factory, "tls", tls=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory):
    registry = _registry(tmp_path_factory, "htpasswd", users={"alice": USERS["alice"]})
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    require("registry")
    folder = tmp_path_factory.mktemp("token")
    server = TokenServer(folder, USERS, {"alice": {"pull", "push"}, "reader": {"pull"}})
    registry = start_registry(folder / "registry", users=USERS, token_server=server)
    yield registry
    registry.stop()


@pytest.fixture
def proxy(plain_registry):
    p = FaultProxy(plain_registry.host)
    yield p
    p.stop()


@pytest.fixture
def sleeps():
    """A list the fast retry policy appends its waits to (instead of sleeping)."""
    return []


@pytest.fixture
def fast(sleeps):
    """TransportOptions whose retries record their waits rather than sleep them."""
    return TransportOptions(retry=RetryPolicy(attempts=4, sleep=sleeps.append))


def options(*, ca: Path | None = None, creds: tuple[str, str] | None = None, **kw) -> TransportOptions:
    return TransportOptions(tls=TLSOptions(ca_file=str(ca) if ca else None),
                            credentials=Credentials(*creds) if creds else None, **kw)


def repo_name(prefix: str = "test") -> str:
    """A repository name no other test (or xdist worker) uses."""
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def _layer(seed: str, size: int) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = os.urandom(size)  # incompressible: the compressed layer is about ``size`` bytes
        info = tarfile.TarInfo(f"{seed}.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return data.getvalue()


def build_image(folder: Path, platforms=("linux/amd64",), layer_size: int = 2048, tag: str = "v1",
                layers: int = 2) -> tuple[OciLayout, Descriptor]:
    """An OCI layout holding one image (an index when several platforms) tagged ``tag``."""
    layout = OciLayout(folder).create()
    manifests = []
    for p in platforms:
        platform = Platform.parse(p)
        config = ImageConfig.for_platform(platform)
        layer_descs = []
        for i in range(layers):
            raw = _layer(f"{p}-{i}", layer_size)
            blob = gzip.compress(raw, mtime=0)
            layer_descs.append(layout.put_blob(blob, MediaType.OCI_LAYER_GZIP))
            config = config.add_layer(Descriptor.for_bytes("x", raw).digest)
        config_desc = layout.put_document(config)
        manifest = Manifest(config=config_desc, layers=tuple(layer_descs))
        manifests.append(layout.put_document(manifest).with_(platform=platform))
    if len(manifests) == 1:
        top = manifests[0].with_(platform=None)
    else:
        top = layout.put_document(Index(manifests=tuple(manifests)))
    layout.tag(top, tag)
    return layout, top


@pytest.fixture
def make_image(tmp_path):
    counter = iter(range(1000))

    def make(**kw) -> tuple[OciLayout, Descriptor]:
        return build_image(tmp_path / f"image{next(counter)}", **kw)

    return make
