"""OciLayout: creation, tags, atomic and concurrent index.json updates, sources, walking, copying."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os

import pytest

from ocibuild.errors import DigestMismatch, InvalidDocument, InvalidInput, NotFound, StoreError
from ocibuild.oci import (IMAGE_NAME, MAX_DOCUMENT_SIZE, REF_NAME, Descriptor, Index, Manifest, MediaType,
                          Platform)
from ocibuild.store import ImageSource, OciLayout, copy, load_config, load_document, manifest_for, walk
from ocibuild.store.layout import LOCK_FILE
from support.validate import validate_oci_layout
from test_store_support import put_image, put_multi, run


def test_layout_is_created_on_first_write(tmp_path):
    layout = OciLayout(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert layout.index().manifests == ()
    layout.put_blob(b"{}", MediaType.OCI_EMPTY.value)
    assert json.loads((tmp_path / "out" / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((tmp_path / "out" / "index.json").read_bytes())["manifests"] == []
    assert layout.exists() and isinstance(layout, ImageSource)


def test_a_directory_that_is_not_a_layout_is_refused(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(NotFound, match="not an OCI image layout"):
        OciLayout(tmp_path).index()
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    with pytest.raises(InvalidDocument, match="imageLayoutVersion"):
        OciLayout(tmp_path).index()


def test_tag_replace_untag(tmp_path):
    layout = OciLayout(tmp_path)
    amd = put_image(layout, "linux/amd64")
    arm = put_image(layout, "linux/arm64")
    layout.tag(amd, "v1", image_name="docker.io/library/app:v1")
    layout.tag(amd, "latest")
    layout.tag(arm, "v1", image_name="docker.io/library/app:v1")  # replaces in place
    entries = layout.index().manifests
    assert [(d.digest, d.annotations[REF_NAME]) for d in entries] == [(arm.digest, "v1"), (amd.digest, "latest")]
    assert entries[0].annotations[IMAGE_NAME] == "docker.io/library/app:v1"
    assert IMAGE_NAME not in entries[1].annotations
    assert layout.untag("latest").digest == amd.digest
    with pytest.raises(NotFound):
        layout.untag("latest")
    with pytest.raises(InvalidInput):
        layout.tag(amd, "bad name")
    assert list(tmp_path.glob(".index.json.*")) == [] and not (tmp_path / LOCK_FILE).exists()


def test_blobs_come_before_index_json(tmp_path):
    layout = OciLayout(tmp_path)
    ghost = Descriptor.for_bytes(MediaType.OCI_MANIFEST.value, b"never stored")
    with pytest.raises(NotFound, match="not in OCI layout"):
        layout.tag(ghost, "ghost")
    with pytest.raises(NotFound):
        layout.add(ghost)


def test_add_is_idempotent(tmp_path):
    layout = OciLayout(tmp_path)
    d = put_image(layout, "linux/amd64")
    layout.add(d)
    layout.add(d)
    assert layout.index().manifests == (d,)


def test_resolve(tmp_path):
    layout = OciLayout(tmp_path)
    index = put_multi(layout)
    single = put_image(layout, "linux/s390x")
    with pytest.raises(NotFound, match="holds no images"):
        layout.resolve(None)
    layout.tag(index, "multi", image_name="docker.io/library/app:multi")
    assert layout.resolve(None).digest == index.digest
    layout.tag(single, "one")
    with pytest.raises(NotFound, match="multi, one"):
        layout.resolve(None)
    assert layout.resolve("one").digest == single.digest
    assert layout.resolve("docker.io/library/app:multi").digest == index.digest
    assert layout.resolve("app:multi").digest == index.digest  # normalised like docker
    assert layout.resolve(index.digest).digest == index.digest
    child = load_document(layout, index).manifests[0]
    assert layout.resolve(child.digest).digest == child.digest  # not top-level, found as a blob
    with pytest.raises(NotFound, match="no such name"):
        layout.resolve("two")


def test_update_of_index_json_is_atomic(tmp_path, monkeypatch):
    layout = OciLayout(tmp_path)
    d = put_image(layout, "linux/amd64")
    layout.tag(d, "keep")
    before = (tmp_path / "index.json").read_bytes()
    real_write = os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / ".index.json.")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreError, match="update .*index.json: No space left"):
        layout.tag(d, "lost")
    monkeypatch.undo()
    assert (tmp_path / "index.json").read_bytes() == before
    assert list(tmp_path.glob(".index.json.*")) == []


def _tag_many(path: str, worker: int, count: int) -> None:
    layout = OciLayout(path)
    d = put_image(layout, "linux/amd64")
    for i in range(count):
        layout.tag(d, f"w{worker}-{i}")


def test_concurrent_taggers_lose_no_tag(tmp_path):
    workers, count = 6, 15
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tag_many, args=(str(tmp_path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = {d.annotations[REF_NAME] for d in OciLayout(tmp_path).index().manifests}
    assert names == {f"w{w}-{i}" for w in range(workers) for i in range(count)}
    assert not (tmp_path / LOCK_FILE).exists()


def test_walk_lists_children_before_parents_once(tmp_path):
    layout = OciLayout(tmp_path)
    index = put_multi(layout)
    order = walk(layout, index)
    assert order[-1].digest == index.digest
    digests = [d.digest for d in order]
    assert len(digests) == len(set(digests)) == 1 + 2 * (1 + 1) + 1 + 2  # index, 2x(manifest, config), 3 layers
    position = {d: i for i, d in enumerate(digests)}
    for d in order:
        if d.kind in (MediaType.OCI_MANIFEST, MediaType.OCI_INDEX):
            doc = load_document(layout, d)
            kids = doc.manifests if isinstance(doc, Index) else (doc.config, *doc.layers)
            assert all(position[k.digest] < position[d.digest] for k in kids)


def test_manifest_for_follows_nested_indexes(tmp_path):
    layout = OciLayout(tmp_path)
    inner = put_multi(layout, ("linux/amd64", "linux/arm/v7"))
    outer = layout.put_document(Index(manifests=(inner,)))  # index.json -> index -> index -> manifests
    desc, manifest = manifest_for(layout, outer, Platform.parse("linux/arm/v7"))
    assert isinstance(manifest, Manifest) and desc.platform == Platform.parse("linux/arm/v7")
    assert load_config(layout, manifest.config).architecture == "arm"
    with pytest.raises(NotFound, match=r"linux/s390x.*available: linux/amd64, linux/arm/v7"):
        manifest_for(layout, outer, Platform.parse("linux/s390x"))
    single = put_image(layout, "linux/ppc64le")
    assert manifest_for(layout, single, Platform.parse("linux/amd64"))[0] == single


def test_load_document_checks_size_and_digest(tmp_path):
    layout = OciLayout(tmp_path)
    d = put_image(layout, "linux/amd64")
    with pytest.raises(DigestMismatch):
        load_document(layout, d.with_(size=d.size + 1))
    with pytest.raises(InvalidDocument, match="limit"):
        load_document(layout, d.with_(size=MAX_DOCUMENT_SIZE + 1))
    huge = layout.put_blob(b" " * (MAX_DOCUMENT_SIZE + 1), MediaType.OCI_MANIFEST.value)
    with pytest.raises(InvalidDocument, match="limit"):
        load_document(layout, huge.with_(size=10))


def test_copy_hardlinks_and_skips_present_blobs(tmp_path):
    src, dst = OciLayout(tmp_path / "src"), OciLayout(tmp_path / "dst")
    index = put_multi(src)
    assert copy(src, dst, index) == 8
    assert copy(src, dst, index) == 0
    for d in walk(src, index):
        assert dst.blobs.path(d.digest).stat().st_ino == src.blobs.path(d.digest).stat().st_ino
    dst.tag(index, "copied")
    assert [d.digest for d in walk(dst, dst.resolve("copied"))] == [d.digest for d in walk(src, index)]


def test_copy_falls_back_to_a_verified_copy(tmp_path, monkeypatch):
    src, dst = OciLayout(tmp_path / "src"), OciLayout(tmp_path / "dst")
    index = put_multi(src)

    def cross_device(a, b):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", cross_device)
    layer = load_document(src, load_document(src, index).manifests[0]).layers[1]
    path = src.blobs.path(layer.digest)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    with pytest.raises(DigestMismatch):
        copy(src, dst, index)
    assert not dst.blobs.has(layer.digest) and not dst.blobs.has(index.digest)


@pytest.mark.needs_tool("skopeo")
def test_skopeo_reads_the_layout(tmp_path):
    layout = OciLayout(tmp_path)
    layout.tag(put_multi(layout), "multi", image_name="docker.io/library/app:multi")
    layout.tag(put_image(layout, "linux/arm64"), "single")
    out = json.loads(run("skopeo", "inspect", "--override-arch", "arm64", f"oci:{tmp_path}:multi"))
    assert out["Architecture"] == "arm64" and len(out["Layers"]) == 2
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{tmp_path}:multi"))
    assert len(raw["manifests"]) == 2
    assert json.loads(run("skopeo", "inspect", f"oci:{tmp_path}:single"))["Architecture"] == "arm64"


@pytest.mark.needs_tool("skopeo", "umoci", "oci-image-tool")
def test_the_shared_validator_accepts_the_layout(tmp_path):
    layout = OciLayout(tmp_path)
    layout.tag(put_multi(layout), "multi", image_name="docker.io/library/app:multi")
    layout.tag(put_image(layout, "linux/s390x"), "v1")
    (tmp_path / LOCK_FILE).write_text("")  # a lock file left by a crash must not make it invalid
    report = validate_oci_layout(tmp_path)
    assert sorted(report.platforms) == ["linux/amd64", "linux/arm64", "linux/s390x"]
