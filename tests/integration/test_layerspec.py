"""layers/busybox.yaml built for seven platforms from Debian packages, judged independently.

The .deb files are cached across runs in /var/tmp/ocibuild-debcache (or $OCIBUILD_TEST_DEB_CACHE),
named by package version, so CI downloads each version once. The layouts are read back with
`support.ocilayout` (which shares no code with ocibuild) and validated by `support.validate`
(skopeo, umoci, oci-image-tool). Needs apt lists for the foreign architectures
(scripts/add-foreign-archs.sh); the chroot smoke tests need root and QEMU's binfmt handlers.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from ocibuild.layer.extract import apply_layer
from ocibuild.layerspec import build, load_spec
from ocibuild.layerspec.__main__ import main
from support.ocilayout import Layout, decompressed, images
from support.require import require, under_ci
from support.validate import validate_oci_layout

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "layers" / "busybox.yaml"
DEB_CACHE = Path(os.environ.get("OCIBUILD_TEST_DEB_CACHE", "/var/tmp/ocibuild-debcache"))
FOREIGN = ("arm64", "armhf", "armel", "i386", "ppc64el", "s390x")

# platform -> (ELF class 1=32/2=64 bit, data 1=little/2=big endian, e_machine, ARM hard-float)
ELF = {"linux/amd64": (2, 1, 62, None), "linux/arm64": (2, 1, 183, None), "linux/arm/v7": (1, 1, 40, True),
       "linux/arm/v5": (1, 1, 40, False), "linux/386": (1, 1, 3, None), "linux/ppc64le": (2, 1, 21, None),
       "linux/s390x": (2, 2, 22, None)}
# platform -> (binfmt condition or None when the host runs it natively, what `uname -m` prints)
UNAME = {"linux/amd64": (None, "x86_64"), "linux/386": (None, "x86_64"), "linux/arm64": ("binfmt:arm64", "aarch64"),
         "linux/arm/v7": ("binfmt:arm", "armv7l"), "linux/arm/v5": ("binfmt:arm", "armv7l"),
         "linux/ppc64le": ("binfmt:ppc64le", "ppc64le"), "linux/s390x": ("binfmt:s390x", "s390x")}
EF_ARM_ABI_FLOAT_HARD = 0x400


def require_apt_architectures() -> None:
    require("apt-get", "dpkg-deb")
    known = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    missing = [arch for arch in FOREIGN if arch not in known]
    if missing:
        why = f"dpkg lacks foreign architectures {missing}: run scripts/add-foreign-archs.sh (make deps)"
        pytest.fail(why, pytrace=False) if under_ci() else pytest.skip(why)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    require_apt_architectures()
    return build(load_spec(SPEC), tmp_path_factory.mktemp("layers") / "busybox", cache=DEB_CACHE)


def layer_members(layout: Layout, image) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """Every member of the image's only layer, read with the test suite's own reader."""
    (layer,) = image.manifest["layers"]
    out = {}
    with layout.open_blob(layer["digest"]) as blob, tarfile.open(fileobj=decompressed(blob), mode="r|") as tar:
        for member in tar:
            body = tar.extractfile(member).read() if member.isreg() else b""
            out[member.name.rstrip("/")] = (member, body)
    return out


def test_layout_is_valid_for_every_platform(built):
    report = validate_oci_layout(built.layout)
    assert sorted(report.platforms) == sorted(ELF) or set(ELF) <= set(report.platforms)
    assert set(report.tools_run) == {"skopeo", "umoci", "oci-image-tool"}


def test_index_tags_and_platforms(built):
    with Layout.open(built.layout) as layout:
        found = images(layout)
        tops = layout.read_json("index.json")["manifests"]
    upstream = built.packages[0].upstream
    assert [t["annotations"]["org.opencontainers.image.ref.name"] for t in tops] == [upstream, "latest"]
    assert {t["annotations"]["io.containerd.image.name"] for t in tops} == \
        {f"docker.io/library/busybox:{upstream}", "docker.io/library/busybox:latest"}
    assert len({t["digest"] for t in tops}) == 1   # both tags name the same image index
    assert [image.platform for image in found[:7]] == list(ELF)


def test_each_busybox_is_an_elf_for_its_machine(built):
    with Layout.open(built.layout) as layout:
        for image in images(layout)[:7]:
            member, body = layer_members(layout, image)["bin/busybox"]
            assert body[:4] == b"\x7fELF" and member.mode == 0o755, image.platform
            elf_class, data, machine, hard_float = ELF[image.platform]
            order = "little" if data == 1 else "big"
            assert (body[4], body[5], int.from_bytes(body[18:20], order)) == (elf_class, data, machine), image.platform
            if hard_float is not None:
                flags = int.from_bytes(body[36:40], order)   # e_flags of a 32-bit ELF header
                assert bool(flags & EF_ARM_ABI_FLOAT_HARD) is hard_float, image.platform


def test_applet_links_files_directories_and_times(built):
    with Layout.open(built.layout) as layout:
        for image in images(layout)[:7]:
            members = layer_members(layout, image)
            links = {name: m.linkname for name, (m, _) in members.items() if m.issym()}
            assert len(links) > 250 and set(links.values()) == {"/bin/busybox"}
            assert {"bin/sh", "bin/ls", "bin/cat", "usr/bin/env", "sbin/ifconfig", "usr/sbin/chroot"} <= set(links)
            passwd = members["etc/passwd"][1].decode()
            assert passwd.startswith("root:x:0:0:") and "\nnobody:x:65534:65534:" in passwd
            assert members["etc/group"][1].startswith(b"root:x:0:")
            modes = {name: members[name][0].mode for name in ("tmp", "root", "proc", "sys", "dev", "etc", "usr/bin")}
            assert modes == {"tmp": 0o1777, "root": 0o700, "proc": 0o555, "sys": 0o555, "dev": 0o755, "etc": 0o755,
                             "usr/bin": 0o755}
            assert not [n for n in members if n.startswith("usr/share")]   # only what `keep` names
            assert {m.mtime for m, _ in members.values()} == {_epoch(image.config["created"])}
            assert {(m.uid, m.gid) for m, _ in members.values()} == {(0, 0)}


def test_config_from_the_spec(built):
    with Layout.open(built.layout) as layout:
        for image, deb in zip(images(layout)[:7], built.packages):
            config = image.config["config"]
            assert config["Cmd"] == ["sh"]
            assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            assert config["Labels"]["io.ocibuild.debian.version"] == deb.version
            assert config["Labels"]["io.ocibuild.debian.architecture"] == deb.arch
            assert config["Labels"]["org.opencontainers.image.version"] == deb.upstream
            assert image.config["history"][0]["created_by"].endswith(f"busybox-static={deb.version}")


def test_same_digests_on_a_second_build(built, tmp_path):
    again = build(load_spec(SPEC), tmp_path / "busybox", cache=DEB_CACHE)
    assert again.index == built.index and again.manifests == built.manifests
    assert _files(again.layout) == _files(built.layout)


def test_module_main_builds_into_out_name(built, tmp_path):
    assert main([str(REPO / "layers"), str(tmp_path), "--cache", str(DEB_CACHE), "--only", "busybox"]) == 0
    assert _files(tmp_path / "busybox") == _files(built.layout)


def test_a_damaged_cached_package_is_fetched_again(built, tmp_path, monkeypatch):
    """Damage is found by apt's SHA256 and the exact version is asked for again. apt-get itself is
    replaced by a copy from the shared cache: a real call costs 10-20 s of apt parsing its lists."""
    from ocibuild.layerspec import debs
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in DEB_CACHE.glob("*.deb"):   # a copy: the damage must not reach the shared cache
        (cache / path.name).write_bytes(path.read_bytes())
    shutil.copytree(DEB_CACHE / "resolved", cache / "resolved")   # apt's answers, so apt-cache is not run
    deb = built.packages[0]
    (cache / deb.cache_name).write_bytes(b"not a package")
    asked = []

    def fake_apt(argv, what, *, cwd=None, allow_failure=False):
        assert argv[:3] == ["apt-get", "-q", "download"]
        asked.extend(argv[3:])
        name = deb.cache_name.replace("_", f"_{deb.version.partition(':')[0]}%3a", 1)   # as apt names it
        (Path(cwd) / name).write_bytes((DEB_CACHE / deb.cache_name).read_bytes())
        return ""

    monkeypatch.setattr(debs, "_run", fake_apt)
    again = build(load_spec(SPEC), tmp_path / "busybox", cache=cache)
    assert asked == [f"{deb.package}:{deb.arch}={deb.version}"]
    assert again.index == built.index and (cache / deb.cache_name).read_bytes()[:8] == b"!<arch>\n"


@pytest.mark.parametrize("platform", list(UNAME))
def test_busybox_runs_in_a_chroot(built, tmp_path, platform):
    condition, machine = UNAME[platform]
    require("root", *([condition] if condition else []))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with Layout.open(built.layout) as layout:
        (image,) = [i for i in images(layout)[:7] if i.platform == platform]
        (layer,) = image.manifest["layers"]
        with layout.open_blob(layer["digest"]) as blob:
            apply_layer(str(rootfs), decompressed(blob), layer=layer["digest"])
    assert stat.S_IMODE(os.lstat(rootfs / "tmp").st_mode) == 0o1777
    run = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", "uname -m; ls /bin | wc -l"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    uname, count = run.stdout.split()
    assert uname == machine and int(count) > 50


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _epoch(rfc3339: str) -> int:
    import calendar
    import time
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))
