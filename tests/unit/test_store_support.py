"""Helpers shared by the store tests: small real images (gzip tar layers, configs, manifests, indexes)."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile

from ocibuild.oci import (Descriptor, ImageConfig, Index, Manifest, MediaType, Platform, canonical_json)
from ocibuild.oci.config import ContainerConfig
from ocibuild.store import OciLayout


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def put_layer(layout: OciLayout, files: dict[str, bytes], compress: bool = True) -> tuple[Descriptor, str]:
    raw = layer_tar(files)
    diff_id = Descriptor.for_bytes("", raw).digest
    if compress:
        return layout.put_blob(gzip_bytes(raw), MediaType.OCI_LAYER_GZIP.value), diff_id
    return layout.put_blob(raw, MediaType.OCI_LAYER.value), diff_id


def put_image(layout: OciLayout, platform: str, *, compress: bool = True) -> Descriptor:
    """A single-platform image: a shared base layer plus a platform-specific one; returns its manifest desc."""
    p = Platform.parse(platform)
    base, base_id = put_layer(layout, {"etc/os-release": b"ID=test\n"}, compress)
    top, top_id = put_layer(layout, {"app/arch": str(p).encode() + b"\n"}, compress)
    config = ImageConfig.for_platform(p).with_config(env=("PATH=/bin",), cmd=("/app/run",))
    config = config.add_layer(base_id).add_layer(top_id)
    config = config.add_history("ADD base", empty_layer=False).add_history("ADD app", empty_layer=False)
    config_desc = layout.put_document(config)
    manifest = Manifest(config=config_desc, layers=(base, top))
    return layout.put_document(manifest).with_(platform=p)


def put_multi(layout: OciLayout, platforms=("linux/amd64", "linux/arm64"), **kw) -> Descriptor:
    manifests = tuple(put_image(layout, p, **kw) for p in platforms)
    return layout.put_document(Index(manifests=manifests))


def run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc.stdout


def test_support_builds_a_two_platform_image(tmp_path):
    layout = OciLayout(tmp_path)
    desc = put_multi(layout)
    assert desc.kind is MediaType.OCI_INDEX
    assert canonical_json({"a": 1}) == b'{"a":1}'
    assert ContainerConfig().to_dict() == {}
