"""The first OCI tar output gets the first platform's new layers as they are compressed
(store/archive.py OciArchiveWriter), and is byte for byte what a copy from the store gives."""

from __future__ import annotations

import json
import tarfile

import pytest

import ocibuild
from ocibuild.errors import OcibuildError
from ocibuild.store.tarfiles import TarOutput

# Every layer differs between the platforms: a layer both make is made once, by either
# platform's thread, and when arm64's comes first amd64 finds it made and it is copied.
DOCKERFILE = """\
FROM scratch AS base
ARG TARGETARCH
COPY ${TARGETARCH}.txt /base.txt

FROM scratch AS other
ARG TARGETARCH
COPY ${TARGETARCH}.txt /other.txt

FROM base
ARG TARGETARCH
COPY --from=other /other.txt /copied.txt
COPY ${TARGETARCH}.txt /arch.txt
"""


@pytest.fixture
def ctx(tmp_path):
    root = tmp_path / "ctx"
    root.mkdir()
    for name, text in (("a.txt", "a\n"), ("amd64.txt", "x86\n"), ("arm64.txt", "arm\n"), ("Dockerfile", DOCKERFILE)):
        (root / name).write_text(text)
    return root


@pytest.fixture
def copied(monkeypatch) -> list[str]:
    """The digests written into archives by copying from the store (not streamed)."""
    seen: list[str] = []
    add_blob = TarOutput.add_blob

    def spy(self, source, desc):
        seen.append(str(desc.digest))
        return add_blob(self, source, desc)

    monkeypatch.setattr(TarOutput, "add_blob", spy)
    return seen


def layers(tar_path, platform: str) -> list[str]:
    with tarfile.open(tar_path) as tar:
        def doc(digest):
            return json.load(tar.extractfile("blobs/sha256/" + digest.split(":")[1]))
        index = doc(json.load(tar.extractfile("index.json"))["manifests"][0]["digest"])
        manifests = index.get("manifests", [])
        found = next(m for m in manifests if m["platform"]["architecture"] == platform.split("/")[1])
        return [d["digest"] for d in doc(found["digest"])["layers"]]


def test_new_layers_of_the_first_platform_are_streamed_and_a_cached_build_writes_the_same_bytes(
        ctx, tmp_path, copied):
    cache, platforms = str(tmp_path / "cache"), "linux/amd64,linux/arm64"
    ocibuild.build(str(ctx), platforms=platforms, cache_dir=cache, outputs=[f"type=oci,dest={tmp_path / 'a.tar'}"])
    first, second = layers(tmp_path / "a.tar", "linux/amd64"), layers(tmp_path / "a.tar", "linux/arm64")
    assert len(first) == 3 and not set(first) & set(copied), "the amd64 layers were copied, not streamed"
    assert set(second) <= set(copied)  # arm64's layers: copied after the build
    with tarfile.open(tmp_path / "a.tar") as tar:  # the first image's layers lead the archive
        assert tar.getnames()[2:5] == ["blobs/sha256/" + d.split(":")[1] for d in first]

    copied.clear()
    ocibuild.build(str(ctx), platforms=platforms, cache_dir=cache, outputs=[f"type=oci,dest={tmp_path / 'b.tar'}"])
    assert set(first) <= set(copied)  # every step cached: nothing made, everything copied
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_a_failed_build_leaves_no_archive_and_no_temp_file(ctx, tmp_path):
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\nCOPY missing /m\n")  # a.txt: streamed
    with pytest.raises(OcibuildError, match="Dockerfile:3"):
        ocibuild.build(str(ctx), cache_dir=str(tmp_path / "cache"), outputs=[f"type=oci,dest={tmp_path / 'out.tar'}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ctx"]
