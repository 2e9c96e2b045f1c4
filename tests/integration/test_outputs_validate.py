"""The validators of `support.validate` accept buildah's layouts and archives, and catch damage.

buildah is the independent writer here: if the validators reject its output, or accept a copy
with a corrupted blob or a wrong size, the validators — not ocibuild — are wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from support.buildah import Buildah
from support.ocilayout import Layout, blob_path, images
from support.validate import (ValidationError, validate_docker_archive, validate_oci_archive,
                              validate_oci_layout)

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool("buildah", "skopeo", "umoci",
                                                             "oci-image-tool")]
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
COPY . /data/
COPY hello.txt /arch/$TARGETARCH.txt
ENV GREETING=hello
CMD ["/hello"]
"""


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """buildah-made inputs: a single-image layout and archive, a 3-platform index, a docker tar."""
    work = tmp_path_factory.mktemp("buildah-outputs")
    context = work / "context"
    (context / "sub" / "empty").mkdir(parents=True)
    (context / "hello.txt").write_text("hello\n")
    (context / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (context / "sub" / "run.sh").chmod(0o755)
    (context / "link").symlink_to("hello.txt")
    (work / "Dockerfile").write_text(DOCKERFILE)
    buildah = Buildah(work / "root")
    for platform in PLATFORMS:
        tag = "localhost/v-" + platform.replace("/", "-")
        buildah.bud(context, work / "Dockerfile", tag, platform)
    single = "localhost/v-linux-amd64"
    out = {"layout": work / "layout", "archive": work / "single.tar",
           "index_layout": work / "index", "index_archive": work / "index.tar",
           "docker": work / "docker.tar"}
    buildah.push(single, f"oci:{out['layout']}:1.0")
    buildah.push(single, f"oci-archive:{out['archive']}:1.0")
    buildah.push(single, f"docker-archive:{out['docker']}:example/v:1.0")
    buildah.manifest("localhost/v-list", ["localhost/v-" + p.replace("/", "-") for p in PLATFORMS])
    buildah.manifest_push("localhost/v-list", f"oci:{out['index_layout']}:1.0")
    buildah.manifest_push("localhost/v-list", f"oci-archive:{out['index_archive']}:1.0")
    return out


def test_single_image_layout_and_archive(outputs):
    for report in (validate_oci_layout(outputs["layout"]), validate_oci_archive(outputs["archive"])):
        assert report.platforms == ["linux/amd64"]
        assert report.tools_run == ["skopeo", "umoci", "oci-image-tool"]
        assert report.blobs_checked == 3


def test_nested_index_layout_and_archive(outputs):
    """buildah, like buildx, nests the index: index.json -> index -> one manifest per platform."""
    with Layout.open(outputs["index_layout"]) as layout:
        assert all(image.nested for image in images(layout))
    for report in (validate_oci_layout(outputs["index_layout"]),
                   validate_oci_archive(outputs["index_archive"])):
        assert sorted(report.platforms) == sorted(PLATFORMS)
        assert report.blobs_checked == 1 + 3 * 3


def test_docker_archive(outputs):
    report = validate_docker_archive(outputs["docker"])
    assert report.platforms == ["linux/amd64"] and report.tools_run == ["skopeo"]


def _copy(outputs, tmp_path: Path, key: str = "index_layout") -> Path:
    return Path(shutil.copytree(outputs[key], tmp_path / "copy"))


def _first_layer(layout_dir: Path) -> dict:
    with Layout.open(layout_dir) as layout:
        return images(layout)[0].manifest["layers"][0]


def _problems(function, path: Path) -> str:
    with pytest.raises(ValidationError) as caught:
        function(path)
    return "\n".join(caught.value.problems)


def test_corrupted_layer_blob_is_reported(outputs, tmp_path):
    layout = _copy(outputs, tmp_path)
    blob = layout / blob_path(_first_layer(layout)["digest"])
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert "hashes to sha256:" in _problems(validate_oci_layout, layout)


def test_wrong_size_in_descriptor_is_reported(outputs, tmp_path):
    layout = _copy(outputs, tmp_path, "layout")
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["size"] += 1
    (layout / "index.json").write_text(json.dumps(index))
    assert "descriptor says" in _problems(validate_oci_layout, layout)


def test_missing_blob_is_reported(outputs, tmp_path):
    layout = _copy(outputs, tmp_path)
    (layout / blob_path(_first_layer(layout)["digest"])).unlink()
    assert "is missing" in _problems(validate_oci_layout, layout)


def test_wrong_diff_id_is_reported(outputs, tmp_path):
    """A layer re-compressed consistently (digest and size fixed up) but a config left stale."""
    layout = _copy(outputs, tmp_path, "layout")
    layer = _first_layer(layout)
    old = layout / blob_path(layer["digest"])
    raw = gzip.decompress(old.read_bytes()) + b"\0" * 1024  # one more zero block: new diff_id
    new_blob = gzip.compress(raw)
    new_digest = "sha256:" + hashlib.sha256(new_blob).hexdigest()
    (layout / blob_path(new_digest)).write_bytes(new_blob)
    old.unlink()
    _rewrite_manifest(layout, lambda m: m["layers"][0].update(digest=new_digest, size=len(new_blob)))
    assert "diff_ids" in _problems(validate_oci_layout, layout)


def test_missing_media_type_is_reported(outputs, tmp_path):
    layout = _copy(outputs, tmp_path, "layout")
    _rewrite_manifest(layout, lambda m: m.pop("mediaType"))
    assert "mediaType" in _problems(validate_oci_layout, layout)


def test_corrupted_archive_is_reported(outputs, tmp_path):
    layout = _copy(outputs, tmp_path)
    blob = layout / blob_path(_first_layer(layout)["digest"])
    blob.write_bytes(blob.read_bytes()[:-1])
    archive = tmp_path / "bad.tar"
    shutil.make_archive(str(archive.with_suffix("")), "tar", layout)
    assert "descriptor says" in _problems(validate_oci_archive, archive)


def _rewrite_manifest(layout: Path, change) -> None:
    """Apply `change` to the single manifest and fix up index.json's descriptor."""
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    path = layout / blob_path(desc["digest"])
    manifest = json.loads(path.read_text())
    change(manifest)
    data = json.dumps(manifest).encode()
    path.unlink()
    desc["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
    desc["size"] = len(data)
    (layout / blob_path(desc["digest"])).write_bytes(data)
    (layout / "index.json").write_text(json.dumps(index))
