"""`apt-get install` under RUN on the debian base of layers/, for linux/amd64 and linux/arm64
(arm64 under QEMU), with packages from the real Debian mirror; results read with the test
suite's own readers (support.ocilayout, support.imagetree), not with ocibuild's code."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from ocibuild.cli import main
from support import imagetree
from support.ocilayout import Layout, decompressed, images, select
from support.validate import validate_oci_archive, validate_oci_layout

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ELF_MACHINE = {"linux/amd64": 62, "linux/arm64": 183}   # e_machine: EM_X86_64, EM_AARCH64
DOCKERFILE = """\
FROM debian
RUN apt-get update && apt-get install -y --no-install-recommends jq && rm -rf /var/lib/apt/lists/*
RUN jq --version > /jq-version
"""


def content(archive: Path, platform: str, path: str) -> bytes:
    """A regular file's bytes in one platform's image: the topmost layer that holds it."""
    with Layout.open(archive) as layout:
        for layer in reversed(select(layout, platform).manifest["layers"]):
            with layout.open_blob(layer["digest"]) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as tar:
                for member in tar:
                    if "/" + member.name.removeprefix("./") == path and member.isfile():
                        return tar.extractfile(member).read()
    raise AssertionError(f"{path} not found in {platform}")


def elf_machine(body: bytes) -> int:
    assert body[:4] == b"\x7fELF" and body[5] == 1, "not a little-endian ELF file"
    return int.from_bytes(body[18:20], "little")


def test_the_debian_base(debian):
    # Structure and skopeo only: umoci unpacking 150 MB per platform and tag costs minutes here
    # (the writer is the same as busybox's, which tests/integration validates with every tool).
    report = validate_oci_layout(debian.layout, tools=("skopeo",))
    assert set(report.platforms) == set(ELF_MACHINE)
    assert debian.tags[0] == "bookworm" and debian.tags[1].startswith("12.") and debian.tags[2] == "latest"
    with Layout.open(debian.layout) as layout:
        for image in images(layout)[:2]:
            files = imagetree.apply_layers(layout.open_blob(layer["digest"]) for layer in image.manifest["layers"])
            assert files["/usr/bin/apt-get"].type == "file" and files["/bin"].linkname == "usr/bin"
            assert not [p for p in files if p.startswith(("/dev/", "/var/lib/apt/lists/", "/var/cache/apt/archives/"))
                        and files[p].type != "dir" and not p.endswith("/lock")]
            assert "/etc/hostname" not in files and "/etc/resolv.conf" not in files
            assert image.config["config"]["Cmd"] == ["bash"]


def test_apt_get_install_jq_on_amd64_and_arm64(debian_context, tmp_path, monkeypatch):
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "cache"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    out = tmp_path / "out.tar"
    assert main(["build", "--progress", "plain", "--platform", ",".join(ELF_MACHINE), "--build-context",
                 debian_context, "-o", f"type=oci,dest={out}", str(ctx)]) == 0
    validate_oci_archive(out, tools=("skopeo", "oci-image-tool"))   # umoci: see test_the_debian_base
    for platform, machine in ELF_MACHINE.items():
        files = imagetree.load(out, platform).files
        assert files["/usr/bin/jq"].type == "file" and files["/usr/bin/jq"].mode == 0o755, platform
        assert elf_machine(content(out, platform, "/usr/bin/jq")) == machine, platform
        assert content(out, platform, "/jq-version") == b"jq-1.6\n", platform
        assert not [p for p in files if p.startswith("/var/lib/apt/lists/") and files[p].type == "file"
                    and not p.endswith("/lock")], platform
        # docker-clean (layers/debian.yaml) keeps apt's 80 MB of caches and the .debs out of the layer
        assert not [p for p in files if p.endswith((".bin", ".deb")) and p.startswith("/var/cache/apt/")], platform
