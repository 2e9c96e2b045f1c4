"""`rootfs:` specs without root or network: debootstrap replaced by a fake that makes a small
tree, the mirror a file:// directory. What is checked: the cleanup, clamped times and hard
links in the layer, the tags and labels from the Release file, the cache (hit, damage, a new
Release), and the messages naming what is missing. The real thing runs in tests/e2e."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import yaml

from ocibuild.errors import BuildError, InvalidInput
from ocibuild.layerspec import build, load_spec, rootfs
from support.ocilayout import Layout, decompressed, images
from support.validate import validate_oci_layout

RELEASE_DATE = 1747699200       # Tue, 20 May 2025 00:00:00 UTC
RELEASE = "Origin: Debian\nVersion: 12.99\nCodename: bookworm\nDate: Tue, 20 May 2025 00:00:00 UTC\n"
SPEC = {
    "name": "deb", "tags": ["{suite}", "{version}", "{suite}-{release_date}", "latest"], "epoch": "release",
    "platforms": {"linux/amd64": "amd64", "linux/arm64": "arm64"},
    "rootfs": {"tool": "debootstrap", "suite": "bookworm", "mirror": "MIRROR", "include": ["ca-certificates"],
               "cleanup": ["/var/log/*.log", "/var/lib/apt/lists/*", "/dev/*", {"empty": "/etc/machine-id"}]},
    "files": {"/etc/apt/apt.conf.d/clean": {"content": "x\n"}, "/etc/machine-id": {"content": "mine\n"}},
    "symlinks": {"/usr/bin/tool": ["/usr/bin/alias"]},
    "config": {"cmd": ["bash"], "labels": {"v": "{version} {debian_arch}"}},
}


@pytest.fixture
def mirror(tmp_path) -> Path:
    (tmp_path / "mirror" / "dists" / "bookworm").mkdir(parents=True)
    (tmp_path / "mirror" / "dists" / "bookworm" / "Release").write_text(RELEASE)
    return tmp_path / "mirror"


@pytest.fixture
def spec(tmp_path, mirror):
    doc = yaml.safe_dump(SPEC).replace("MIRROR", f"file://{mirror}")
    (tmp_path / "deb.yaml").write_text(doc)
    return load_spec(tmp_path / "deb.yaml")


@pytest.fixture
def runs(monkeypatch) -> list[str]:
    """Replace root's work by a fake tree; returns the architectures 'debootstrapped'."""
    done = []

    def fake(spec, arch, target, epoch, log):
        assert epoch == RELEASE_DATE and spec.include == ("ca-certificates",)
        for d in ("etc/apt/apt.conf.d", "dev", "var/log/apt", "var/lib/apt/lists/partial", "usr/bin"):
            (target / d).mkdir(parents=True, exist_ok=True)
        (target / "usr/bin/tool").write_text(arch)
        os.link(target / "usr/bin/tool", target / "usr/bin/tool2")
        os.utime(target / "usr/bin/tool", (1000, 1000))                      # older than the epoch: kept
        (target / "etc/machine-id").write_text("0123456789abcdef\n")
        (target / "var/log/dpkg.log").write_text("now\n")
        (target / "var/lib/apt/lists/x_Packages").write_text("big\n")
        os.mkfifo(target / "dev/fifo")
        done.append(arch)

    monkeypatch.setattr(rootfs, "_check_can_build", lambda spec, arch: None)
    monkeypatch.setattr(rootfs, "_debootstrap", fake)
    return done


def members(layout_path: Path, image) -> dict[str, tarfile.TarInfo]:
    (layer,) = image.manifest["layers"]
    with Layout.open(layout_path) as layout, layout.open_blob(layer["digest"]) as blob, \
            tarfile.open(fileobj=decompressed(blob), mode="r|") as tar:
        return {m.name.rstrip("/"): m for m in tar}


def test_layer_cleanup_times_tags_and_labels(spec, runs, tmp_path):
    built = build(spec, tmp_path / "out", cache=tmp_path / "cache")
    assert runs == ["amd64", "arm64"]
    assert built.tags == ("bookworm", "12.99", "bookworm-20250520", "latest")
    validate_oci_layout(built.layout)
    with Layout.open(built.layout) as layout:
        found = images(layout)[:2]
    for image, arch in zip(found, ("amd64", "arm64")):
        got = members(built.layout, image)
        assert "var/log/dpkg.log" not in got and "var/lib/apt/lists/x_Packages" not in got
        assert "var/lib/apt/lists/partial" not in got and "dev/fifo" not in got   # pruned with what it holds
        assert {"var/log/apt", "var/lib/apt/lists", "dev"} <= set(got)
        assert got["etc/apt/apt.conf.d/clean"].size == 2 and got["etc/apt/apt.conf.d/clean"].mtime == RELEASE_DATE
        assert got["etc/machine-id"].size == 5 and got["usr/bin/alias"].linkname == "/usr/bin/tool"   # the spec's
        assert got["usr/bin/tool2"].islnk() and got["usr/bin/tool2"].linkname == "usr/bin/tool"
        assert got["usr/bin/tool"].mtime == 1000 and got["etc"].mtime == RELEASE_DATE
        assert max(m.mtime for m in got.values()) == RELEASE_DATE
        assert image.config["created"] == "2025-05-20T00:00:00Z"
        assert image.config["config"]["Labels"] == {"v": f"12.99 {arch}"}
        assert "debootstrap --variant=minbase bookworm" in image.config["history"][0]["created_by"]


def test_cleanup_empties_and_spec_paths_need_a_parent(spec, runs, tmp_path):
    from dataclasses import replace
    plain = replace(spec, paths=())
    with Layout.open(build(plain, tmp_path / "out", cache=tmp_path / "cache").layout) as layout:
        image = images(layout)[0]
    assert members(tmp_path / "out", image)["etc/machine-id"].size == 0
    orphan = replace(spec, paths=tuple(replace(p, path="nowhere/x") for p in spec.paths[:1]))
    with pytest.raises(InvalidInput, match=r"deb.yaml: /nowhere/x: its parent is not a directory of the rootfs"):
        build(orphan, tmp_path / "out2", cache=tmp_path / "cache")


def test_the_cache_is_used_checked_and_keyed_by_the_release(spec, runs, tmp_path, mirror):
    first = build(spec, tmp_path / "a", cache=tmp_path / "cache")
    again = build(spec, tmp_path / "b", cache=tmp_path / "cache")
    assert runs == ["amd64", "arm64"] and again.index == first.index
    (damaged,) = (tmp_path / "cache" / "rootfs").glob("bookworm-arm64-*.layer")
    damaged.write_bytes(b"damaged")
    assert build(spec, tmp_path / "c", cache=tmp_path / "cache").index == first.index
    assert runs == ["amd64", "arm64", "arm64"]
    (mirror / "dists" / "bookworm" / "Release").write_text(RELEASE.replace("12.99", "12.100"))
    assert build(spec, tmp_path / "d", cache=tmp_path / "cache").tags[1] == "12.100"
    assert runs == ["amd64", "arm64", "arm64", "amd64", "arm64"]


def test_an_unreachable_mirror_is_named(spec, runs, tmp_path, mirror):
    (mirror / "dists" / "bookworm" / "Release").unlink()
    with pytest.raises(BuildError, match=r"fetch file://.*/dists/bookworm/Release: "):
        build(spec, tmp_path / "out", cache=tmp_path / "cache")
    assert runs == []


def test_what_is_missing_is_named(monkeypatch, spec):
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(BuildError, match=r"debootstrap bookworm arm64: needs root .* running as uid 1000"):
        rootfs._check_can_build(spec.rootfs, "arm64")
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootfs.shutil, "which", lambda name: None)
    with pytest.raises(BuildError, match=r"debootstrap is not installed: run scripts/install-deps.sh"):
        rootfs._check_can_build(spec.rootfs, "arm64")
    monkeypatch.setattr(rootfs.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(rootfs.host_platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(rootfs, "BINFMT", Path("/nonexistent"))
    with pytest.raises(BuildError, match=r"arm64 programs cannot run here: no binfmt_misc handler "
                                         r"/nonexistent/qemu-aarch64; run scripts/setup-binfmt.sh"):
        rootfs._check_can_build(spec.rootfs, "arm64")
    rootfs._check_can_build(spec.rootfs, "amd64")   # the host's own: no handler needed
