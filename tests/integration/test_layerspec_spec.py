"""layers/*.yaml validation: every error names the file and the key (no apt, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ocibuild.errors import InvalidInput
from ocibuild.layer.compress import Compression
from ocibuild.layer.entry import Kind
from ocibuild.layerspec import load_spec, load_specs
from ocibuild.oci import Platform

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"name": "tiny", "platforms": {"linux/arm64": "arm64"},
           "packages": [{"name": "busybox-static", "keep": ["/bin/busybox"]}]}


def write_spec(tmp_path: Path, doc, name="tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_the_busybox_spec_loads():
    spec = load_spec(REPO / "layers" / "busybox.yaml")
    assert [str(p) for p, _ in spec.platforms] == ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v5",
                                                   "linux/386", "linux/ppc64le", "linux/s390x"]
    assert [arch for _, arch in spec.platforms] == ["amd64", "arm64", "armhf", "armel", "i386", "ppc64el", "s390x"]
    by_path = {p.path: p for p in spec.paths}
    assert by_path["tmp"].mode == 0o1777 and by_path["bin/sh"].target == "/bin/busybox"
    assert spec.epoch is None and spec.compression is Compression.GZIP and spec.config.cmd == ("sh",)
    assert [s.name for s in load_specs(REPO / "layers")] == ["busybox", "debian"]


def test_defaults(tmp_path):
    spec = load_spec(write_spec(tmp_path, MINIMAL))
    assert spec.tags == ("latest",) and spec.platforms == ((Platform("linux", "arm64"), "arm64"),)
    assert spec.packages[0].keep == ("bin/busybox",) and spec.packages[0].version is None


@pytest.mark.parametrize("change, message", [
    ({"nme": "x"}, "nme: unknown key"),
    ({"name": "Busy Box"}, "name: 'Busy Box' is not a valid image name"),
    ({"platforms": {"linux/arm/v9": "armhf"}}, "platforms.linux/arm/v9: invalid platform"),
    ({"platforms": {"linux/arm64": 64}}, "platforms.linux/arm64: expected a Debian architecture"),
    ({"platforms": {}}, "platforms: at least one platform"),
    ({"packages": [{"name": "busybox-static", "keep": "/bin/busybox"}]}, "packages[0].keep: expected a list"),
    ({"packages": [{"name": "busybox-static", "keep": ["/bin/../etc"]}]}, "packages[0].keep[0]: not an absolute path"),
    ({"packages": [{"name": "busybox-static", "keep": [], "pin": 1}]}, "packages[0].pin: unknown key"),
    ({"directories": {"/tmp": {"mode": 1777}}}, "directories./tmp.mode: write modes as quoted octal strings"),
    ({"directories": {"/tmp": {"mode": "17777"}}}, "directories./tmp.mode: '17777' is more than permission bits"),
    ({"files": {"/etc/x": {"content": 5}}}, "files./etc/x.content: expected a string"),
    ({"files": {"/etc/x": {"uid": -1}}}, "files./etc/x.uid: expected a numeric id"),
    ({"files": {"/etc/x": {}}, "symlinks": {"/y": ["/etc/x"]}}, "etc/x: given twice"),
    ({"tags": ["{upstreem}"]}, "tags[0]: bad placeholder"),
    ({"config": {"labels": {"v": "{nope}"}}}, "config.labels.v: bad placeholder"),
    ({"config": {"cmd": "sh"}}, "config.cmd: expected a list of strings"),
    ({"config": {"entrypoint": ["x"], "stopsignal": "TERM"}}, "config.stopsignal: unknown key"),
    ({"epoch": "yesterday"}, "epoch: expected seconds since 1970"),
    ({"compression": "bzip2"}, "compression: expected one of gzip, zstd, none"),
])
def test_errors_name_the_file_and_the_key(tmp_path, change, message):
    path = write_spec(tmp_path, {**MINIMAL, **change})
    with pytest.raises(InvalidInput) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_missing_keys_and_bad_yaml(tmp_path):
    with pytest.raises(InvalidInput, match=r"tiny.yaml: packages: missing"):
        load_spec(write_spec(tmp_path, {k: v for k, v in MINIMAL.items() if k != "packages"}))
    with pytest.raises(InvalidInput, match=r"tiny.yaml: not valid YAML"):
        load_spec(write_spec(tmp_path, "name: [unclosed"))
    with pytest.raises(InvalidInput, match=r"tiny.yaml: expected a mapping"):
        load_spec(write_spec(tmp_path, "- a list"))


def test_two_specs_may_not_share_a_name(tmp_path):
    write_spec(tmp_path, MINIMAL, "a.yaml")
    write_spec(tmp_path, MINIMAL, "b.yaml")
    with pytest.raises(InvalidInput, match=r"b.yaml: name: 'tiny' is also the name in .*a.yaml"):
        load_specs(tmp_path)


def test_paths_kinds_and_modes(tmp_path):
    spec = load_spec(write_spec(tmp_path, {**MINIMAL, "directories": {"/var/tmp/": {"mode": "0o1777", "uid": 5}},
                                           "files": {"/etc/motd": {"content": "hi\n", "mode": "0600"}},
                                           "symlinks": {"../lib": ["/lib64"]}, "epoch": 0}))
    got = {p.path: (p.kind, p.mode, p.uid, p.content, p.target) for p in spec.paths}
    assert got == {"var/tmp": (Kind.DIR, 0o1777, 5, b"", ""), "etc/motd": (Kind.FILE, 0o600, 0, b"hi\n", ""),
                   "lib64": (Kind.SYMLINK, 0o777, 0, b"", "../lib")}
    assert spec.epoch == 0


ROOTFS = {"name": "deb", "platforms": {"linux/arm64": "arm64"},
          "rootfs": {"tool": "debootstrap", "suite": "bookworm", "mirror": "http://deb.debian.org/debian/"}}


def test_the_debian_spec_loads():
    spec = load_spec(REPO / "layers" / "debian.yaml")
    assert [str(p) for p, _ in spec.platforms] == ["linux/amd64", "linux/arm64"] and spec.packages == ()
    assert spec.epoch is None and spec.tags == ("{suite}", "{version}", "latest") and spec.config.cmd == ("bash",)
    assert spec.rootfs.variant == "minbase" and spec.rootfs.suite == "bookworm" and spec.rootfs.include == ("ca-certificates",)
    assert {"var/lib/apt/lists/*", "var/cache/ldconfig/aux-cache", "etc/resolv.conf", "dev/*"} <= set(spec.rootfs.remove)
    assert spec.rootfs.empty == ("etc/machine-id",)
    assert {p.path for p in spec.paths} >= {"etc/apt/apt.conf.d/docker-clean", "usr/sbin/policy-rc.d"}


def test_rootfs_defaults(tmp_path):
    spec = load_spec(write_spec(tmp_path, ROOTFS))
    assert spec.rootfs.mirror == "http://deb.debian.org/debian" and spec.rootfs.components == ("main",)
    assert spec.rootfs.variant == "minbase" and spec.epoch is None and spec.paths == ()


@pytest.mark.parametrize("change, message", [
    ({"packages": MINIMAL["packages"]}, "rootfs: give either `packages:` or `rootfs:`, not both"),
    ({"files": {"/etc/x": {"mode": 644}}}, "files./etc/x.mode: write modes as quoted octal strings"),
    ({"epoch": "changelog"}, "epoch: expected seconds since 1970 or \"release\""),
    ({"tags": ["{upstream}"]}, "tags[0]: bad placeholder"),
    ({"rootfs": {"tool": "mmdebstrap", "suite": "bookworm", "mirror": "http://m"}}, "rootfs.tool: expected debootstrap"),
    ({"rootfs": {"tool": "debootstrap", "suite": "bookworm"}}, "rootfs.mirror: missing"),
    ({"rootfs": {**ROOTFS["rootfs"], "mirror": "deb.debian.org"}}, "rootfs.mirror: expected an http(s):// or file:// URL"),
    ({"rootfs": {**ROOTFS["rootfs"], "variant": "tiny"}}, "rootfs.variant: expected one of"),
    ({"rootfs": {**ROOTFS["rootfs"], "include": ["jq;rm"]}}, "rootfs.include[0]: 'jq;rm' is not a Debian package"),
    ({"rootfs": {**ROOTFS["rootfs"], "cleanup": ["/var/../etc"]}}, "rootfs.cleanup[0]: not an absolute path"),
    ({"rootfs": {**ROOTFS["rootfs"], "cleanup": [{"truncate": "/x"}]}}, "rootfs.cleanup[0].truncate: unknown key"),
    ({"rootfs": {**ROOTFS["rootfs"], "snapshot": "2025"}}, "rootfs.snapshot: unknown key"),
])
def test_rootfs_errors_name_the_file_and_the_key(tmp_path, change, message):
    path = write_spec(tmp_path, {**ROOTFS, **change})
    with pytest.raises(InvalidInput) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
