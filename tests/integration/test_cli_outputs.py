"""`ocibuild build` end to end through the CLI: every output type, checked by tools nobody here wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ocibuild.cli import main
from support import imagetree
from support.validate import validate_docker_archive, validate_oci_archive, validate_oci_layout

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
THREE = "linux/amd64,linux/arm64,linux/arm/v7"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return tmp_path / "cache"


def build(*argv: str) -> int:
    return main(["build", "--progress", "plain", *argv])


def dockerfile(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(text)
    for name, content in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(content)
    return ctx


def test_oci_tar_three_platforms(tmp_path, require):
    require("skopeo", "umoci", "oci-image-tool")
    out = tmp_path / "hello.tar"
    assert build("--platform", THREE, "-t", "example/hello:1.0", "-o", f"type=oci,dest={out}", str(HELLO)) == 0
    validate_oci_archive(out)
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))
    (entry,) = index["manifests"]
    assert entry["annotations"] == {"io.containerd.image.name": "docker.io/example/hello:1.0",
                                    "org.opencontainers.image.ref.name": "1.0"}
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_oci_layout_directory(tmp_path, require):
    require("skopeo", "umoci", "oci-image-tool")
    out = tmp_path / "layout"
    assert build("--platform", THREE, "-t", "hello:1", "-o", f"type=oci,dest={out},tar=false", str(HELLO)) == 0
    validate_oci_layout(out)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{out}:1"], check=True, capture_output=True).stdout
    assert len(json.loads(raw)["manifests"]) == 3


def test_docker_archive_single_platform(tmp_path, require, capsys):
    require("skopeo")
    out = tmp_path / "docker.tar"
    assert build("--platform", "linux/arm64", "-t", "hello:dev", "-o", f"type=docker,dest={out}", str(HELLO)) == 0
    validate_docker_archive(out)
    with tarfile.open(out) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))
    assert manifest["RepoTags"] == ["hello:dev"]
    assert build("--platform", THREE, "-o", f"type=docker,dest={tmp_path / 'x.tar'}", str(HELLO)) == 1
    assert "does not currently support exporting manifest lists" in capsys.readouterr().err


def test_local_and_tar_outputs(tmp_path):
    assert build("-o", f"type=local,dest={tmp_path / 'root'}", str(HELLO)) == 0
    arch = (tmp_path / "root" / "srv" / "platform" / "arch.txt").read_text().strip()
    assert arch == {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine, arch)
    assert os.access(tmp_path / "root" / "srv" / "app" / "hello.sh", os.X_OK)
    assert not (tmp_path / "root" / "srv" / "app" / "notes.tmp").exists()  # .dockerignore
    assert build("--platform", "linux/amd64,linux/arm64", "-o", f"type=local,dest={tmp_path / 'multi'}",
                 str(HELLO)) == 0
    assert (tmp_path / "multi" / "linux_arm64" / "srv" / "platform" / "arch.txt").read_text() == "aarch64\n"
    assert build("-o", f"type=tar,dest={tmp_path / 'rootfs.tar'}", str(HELLO)) == 0
    with tarfile.open(tmp_path / "rootfs.tar") as tar:
        assert "srv/app/hello.sh" in tar.getnames()


def test_local_store_then_from_it(tmp_path, capsys, require):
    require("skopeo")
    assert build("-t", "hello:dev", str(HELLO)) == 0
    assert main(["images"]) == 0
    assert "docker.io/library/hello:dev" in capsys.readouterr().out
    ctx = dockerfile(tmp_path, "FROM hello:dev\nCOPY extra.txt /srv/extra.txt\n", {"extra.txt": "more\n"})
    out = tmp_path / "derived.tar"
    assert build("-o", f"type=oci,dest={out}", str(ctx)) == 0
    validate_oci_archive(out)
    assert build("-o", f"type=local,dest={tmp_path / 'root'}", str(ctx)) == 0
    assert (tmp_path / "root" / "srv" / "extra.txt").read_text() == "more\n"
    assert (tmp_path / "root" / "srv" / "app" / "hello.sh").exists()


def test_build_context_oci_layout_nested_index(tmp_path):
    layout = tmp_path / "base-layout"
    assert build("--platform", "linux/amd64,linux/arm64", "-t", "base:v1", "-o",
                 f"type=oci,dest={layout},tar=false", str(HELLO)) == 0
    ctx = dockerfile(tmp_path, "FROM base\nCOPY --from=base /srv/platform/arch.txt /copied-arch\n")
    root = tmp_path / "root"
    assert build("--platform", "linux/arm64", "--build-context", f"base=oci-layout://{layout}:v1",
                 "-o", f"type=local,dest={root}", str(ctx)) == 0
    assert (root / "copied-arch").read_text() == "aarch64\n"
    assert (root / "srv" / "app" / "hello.sh").exists()


def test_metadata_file_and_iidfile(tmp_path):
    meta, iid = tmp_path / "meta.json", tmp_path / "iid"
    out = tmp_path / "o.tar"
    assert build("--platform", THREE, "-t", "example/hello:1.0", "--metadata-file", str(meta),
                 "--iidfile", str(iid), "-o", f"type=oci,dest={out}", str(HELLO)) == 0
    data = json.loads(meta.read_text())
    assert data["containerimage.digest"] == iid.read_text()
    assert data["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert data["image.name"] == "docker.io/example/hello:1.0"


def test_reproducible_in_two_fresh_checkouts(tmp_path, monkeypatch):
    """SOURCE_DATE_EPOCH: two clones, two caches, two directories -> one index digest."""
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    epoch = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], check=True,
                           capture_output=True, text=True).stdout.strip()
    digests = []
    for n in (1, 2):
        clone = tmp_path / f"checkout-{n}" / ("deeper/" * n) / "repo"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
        os.utime(clone / "examples/hello/app/hello.sh", (int(epoch) + 1000 * n,) * 2)
        monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / f"cache-{n}"))
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        iid = tmp_path / f"iid-{n}"
        assert build("--platform", THREE, "--iidfile", str(iid), "-o", f"type=oci,dest={tmp_path}/o{n}.tar",
                     str(clone / "examples/hello")) == 0
        digests.append(iid.read_text())
    assert digests[0] == digests[1]
    assert (tmp_path / "o1.tar").read_bytes() == (tmp_path / "o2.tar").read_bytes()


def test_zstd_and_uncompressed(tmp_path, require):
    require("skopeo", "umoci", "oci-image-tool")
    for kind, media in (("zstd", "tar+zstd"), ("uncompressed", "v1.tar")):
        out = tmp_path / f"{kind}.tar"
        assert build("--compression", kind, "-o", f"type=oci,dest={out}", str(HELLO)) == 0
        validate_oci_archive(out, tools=("skopeo",)) if kind == "zstd" else validate_oci_archive(out)
        with tarfile.open(out) as tar:
            index = json.load(tar.extractfile("index.json"))
            manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
        assert all(layer["mediaType"].endswith(media) for layer in manifest["layers"])


@pytest.mark.parametrize("text,files,message", [
    ("FROM scratch\nCOPY a /a\nRUN echo hi\n", {"a": "x"},
     'ERROR: Dockerfile:3: RUN: run "/bin/sh -c echo hi": exec /bin/sh: No such file or directory\n'),
    ("FROM scratch\n\nCOPY app.bin /app\n", {},
     "ERROR: Dockerfile:3: COPY: no such file in the build context: \"app.bin\"\n"),
    ("FROM scratch\nCOPY --chown=alice a /a\n", {"a": "x"},
     "ERROR: Dockerfile:2: COPY: unable to find user alice: no /etc/passwd (passwd file) in the image\n"),
    ("FROM busybox\n", {},  # no machine here reaches Docker Hub: the error names the image and the host
     "ERROR: Dockerfile:1: FROM: get manifest registry-1.docker.io/library/busybox:latest: connection to "
     "registry-1.docker.io failed: "),
    ("FROM scratch\nFOO bar\n", {}, "ERROR: Dockerfile:2: unknown instruction: FOO\n"),
])
def test_errors_are_one_line_with_the_dockerfile_line(tmp_path, capsys, text, files, message):
    ctx = dockerfile(tmp_path, text, files)
    assert build("-o", f"type=oci,dest={tmp_path / 'o.tar'}", str(ctx)) == 1
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.splitlines()[-1].startswith(message.rstrip("\n"))
    assert "Traceback" not in err
    assert not (tmp_path / "o.tar").exists()


def test_debug_shows_traceback_and_quiet_prints_digest(tmp_path, capsys):
    ctx = dockerfile(tmp_path, "FROM scratch\nRUN true\n")
    assert build("--debug", str(ctx)) == 1
    assert "Traceback" in capsys.readouterr().err
    ctx = dockerfile(tmp_path, "FROM scratch\nCOPY Dockerfile /\n")
    assert main(["build", "-q", "-t", "q:1", str(ctx)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("sha256:") and err == ""


def test_inspect_reads_every_format(tmp_path, capsys):
    oci, layout, docker = tmp_path / "o.tar", tmp_path / "layout", tmp_path / "d.tar"
    assert build("--platform", "linux/amd64,linux/arm64", "-o", f"type=oci,dest={oci}", str(HELLO)) == 0
    assert build("--platform", "linux/amd64,linux/arm64", "-o", f"type=oci,dest={layout},tar=false",
                 str(HELLO)) == 0
    assert build("-t", "h:1", "-o", f"type=docker,dest={docker}", str(HELLO)) == 0
    capsys.readouterr()
    for path in (oci, layout):
        assert main(["inspect", str(path)]) == 0
        text = capsys.readouterr().out
        assert "Platform:  linux/amd64" in text and "Platform:  linux/arm64" in text
        assert '"WorkingDir": "/srv"' not in text and 'WorkingDir: "/srv"' in text
    assert main(["inspect", str(docker)]) == 0
    assert "Layers:    3" in capsys.readouterr().out
    assert main(["inspect", "--raw", str(oci)]) == 0
    assert len(json.loads(capsys.readouterr().out)["manifests"]) == 2


def test_python_api(tmp_path):
    import ocibuild

    result = ocibuild.build(str(HELLO), platforms="linux/amd64,linux/arm/v7", tags=["api:1"],
                            outputs=[f"type=oci,dest={tmp_path / 'api.tar'}"], source_date_epoch=0)
    assert set(result.manifests) == {"linux/amd64", "linux/arm/v7"}
    assert result.descriptor.media_type == "application/vnd.oci.image.index.v1+json"
    assert (tmp_path / "api.tar").exists()
    assert str(result.digest).startswith("sha256:")


def test_python_api_carries_a_cache_to_an_empty_cache_dir(tmp_path):
    import ocibuild

    class Steps:
        def __init__(self):
            self.cached = []

        def start(self, step, name): pass
        def advance(self, step, nbytes): pass
        def done(self, step, *, cached=False, error=None): self.cached.append(cached)
        def log(self, step, data): pass
        def info(self, message): pass
        def warn(self, message): raise AssertionError(message)

    first = ocibuild.build(str(HELLO), outputs=[f"type=oci,dest={tmp_path / 'a.tar'}"],
                           cache_dir=str(tmp_path / "c1"), cache_to=[f"type=local,dest={tmp_path / 'export'},mode=max"])
    steps = Steps()
    second = ocibuild.build(str(HELLO), outputs=[f"type=oci,dest={tmp_path / 'b.tar'}"], jobs=1,
                            cache_dir=str(tmp_path / "c2"), cache_from=[f"type=local,src={tmp_path / 'export'}"],
                            reporter=steps)
    assert second.digest == first.digest
    assert steps.cached and all(steps.cached)


def test_from_buildplatform_and_target_args(tmp_path):
    ctx = dockerfile(tmp_path, (
        "FROM --platform=$BUILDPLATFORM scratch AS tools\n"
        "ARG TARGETARCH\nARG BUILDARCH\n"
        "COPY --chmod=644 Dockerfile /built-on-${BUILDARCH}-for-${TARGETARCH}\n"
        "FROM scratch\nCOPY --from=tools / /\n"))
    assert build("--platform", "linux/arm64", "-o", f"type=local,dest={tmp_path / 'root'}", str(ctx)) == 0
    host = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    assert (tmp_path / "root" / f"built-on-{host}-for-arm64").exists()
    shutil.rmtree(tmp_path / "root")


def test_onbuild_triggers_run_in_the_child_and_are_consumed(tmp_path, capsys):
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text("FROM scratch\nONBUILD COPY trigger.txt /from-trigger\nONBUILD LABEL t=yes\n")
    assert build("-q", "-t", "onbase:1", str(base)) == 0
    ctx = dockerfile(tmp_path, "FROM onbase:1\nCOPY own.txt /own\n", {"trigger.txt": "t\n", "own.txt": "o\n"})
    out = tmp_path / "child.tar"
    assert build("-o", f"type=oci,dest={out}", str(ctx)) == 0
    assert "ONBUILD COPY trigger.txt /from-trigger" in capsys.readouterr().err
    tree = imagetree.load(out)
    assert {"/from-trigger", "/own"} <= set(tree.files)
    assert tree.config["Labels"] == {"t": "yes"}
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))
    assert "OnBuild" not in config["config"]
