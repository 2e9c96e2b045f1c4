"""The cache directory and the local image store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocibuild.errors import NotFound
from ocibuild.oci import IMAGE_NAME, REF_NAME, Platform, Reference
from ocibuild.store import ImageStore, OciLayout, cache_dir, manifest_for
from test_store_support import put_image, put_multi, run


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OCIBUILD_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "ocibuild"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert cache_dir() == tmp_path / "home" / ".cache" / "ocibuild"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ocibuild"
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    assert not (tmp_path / "explicit").exists()  # computing the path creates nothing


def test_default_root_is_the_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "c"))
    assert ImageStore().root == tmp_path / "c"


def test_save_lookup_list_remove(tmp_path):
    (tmp_path / "buildcache").mkdir()  # other subsystems share the cache root
    store = ImageStore(tmp_path)
    assert store.lookup("hello:dev") is None and store.list() == []
    image = put_multi(store.layout)
    saved = store.save(Reference.parse("hello:dev"), image)
    assert saved.annotations == {REF_NAME: "docker.io/library/hello:dev", IMAGE_NAME: "docker.io/library/hello:dev"}
    assert store.lookup("docker.io/library/hello:dev") == saved
    assert store.lookup("hello:other") is None
    other = put_image(store.layout, "linux/arm64")
    store.save("ghcr.io/me/tool", other)
    assert [name for name, _ in store.list()] == ["docker.io/library/hello:dev", "ghcr.io/me/tool:latest"]
    store.save("hello:dev", other)  # retag: replaces
    assert store.lookup("hello:dev").digest == other.digest and len(store.list()) == 2
    assert store.remove("hello:dev").digest == other.digest
    with pytest.raises(NotFound, match="no such image"):
        store.remove("hello:dev")
    assert store.blobs.has(image.digest)  # names go, blobs stay for a later gc


def test_import_from_another_source_hardlinks(tmp_path):
    src = OciLayout(tmp_path / "src")
    image = put_multi(src)
    store = ImageStore(tmp_path / "store")
    store.import_from(src, image, "app:1")
    assert store.blobs.path(image.digest).stat().st_ino == src.blobs.path(image.digest).stat().st_ino
    desc, _ = manifest_for(store.layout, store.lookup("app:1"), Platform.parse("linux/arm64"))
    assert desc.platform == Platform.parse("linux/arm64")


@pytest.mark.needs_tool("skopeo")
def test_skopeo_reads_the_store_by_full_name(tmp_path):
    store = ImageStore(tmp_path)
    store.save("hello:dev", put_image(store.layout, "linux/amd64"))
    out = json.loads(run("skopeo", "inspect", f"oci:{Path(tmp_path)}:docker.io/library/hello:dev"))
    assert out["Architecture"] == "amd64"
