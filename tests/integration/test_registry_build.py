"""The CLI against a real registry: `build --push`, FROM a pushed image, push-by-digest with
metadata, `pull -o`, `push` of an OCI tar, `login`; what lands is read back with skopeo."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from ocibuild.cli import main
from support.validate import validate_docker_archive, validate_oci_archive

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


def skopeo_raw(ref: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True).stdout
    return json.loads(out)


def repo(registry, name: str) -> str:
    return f"{registry.host}/{name}-{uuid.uuid4().hex[:8]}"


def test_build_push_then_build_from_it(plain_registry, tmp_path, require):
    require("skopeo")
    base = repo(plain_registry, "hello")
    assert main(["build", "-q", "--platform", "linux/amd64,linux/arm64", "-t", f"{base}:1", "--push",
                 str(HELLO)]) == 0
    index = skopeo_raw(f"{base}:1")
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}:1\nCOPY --from={base}:1 /srv/platform/arch.txt /again\n")
    root = tmp_path / "root"
    assert main(["build", "-q", "--platform", "linux/arm64", "-o", f"type=local,dest={root}", str(ctx)]) == 0
    assert (root / "again").read_text() == "aarch64\n"
    assert (root / "srv" / "app" / "hello.sh").exists()


def test_push_by_digest_writes_metadata_and_no_tag(plain_registry, tmp_path, require):
    require("skopeo")
    name = repo(plain_registry, "bydigest")
    meta = tmp_path / "m.json"
    assert main(["build", "-q", "--platform", "linux/arm64", "--metadata-file", str(meta),
                 "-o", f"type=registry,name={name},push-by-digest=true", str(HELLO)]) == 0
    data = json.loads(meta.read_text())
    digest = data["containerimage.digest"]
    assert skopeo_raw(f"{name}@{digest}")["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    tags = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{name}"],
                          capture_output=True, text=True)
    assert tags.returncode != 0 or json.loads(tags.stdout)["Tags"] == []
    assert data["image.name"] == f"{name}"


def test_pull_to_files_and_push_an_archive(plain_registry, tmp_path, require):
    require("skopeo", "umoci", "oci-image-tool")
    src = repo(plain_registry, "src")
    assert main(["build", "-q", "--platform", "linux/amd64,linux/arm/v7", "-t", f"{src}:v1", "--push",
                 str(HELLO)]) == 0
    oci, docker = tmp_path / "pulled.tar", tmp_path / "pulled-docker.tar"
    assert main(["pull", "--platform", "linux/arm/v7", f"{src}:v1", "-o", f"type=oci,dest={oci}"]) == 0
    validate_oci_archive(oci)
    assert main(["pull", "--platform", "linux/amd64", f"{src}:v1", "-o", f"type=docker,dest={docker}"]) == 0
    validate_docker_archive(docker)

    built = tmp_path / "built.tar"
    assert main(["build", "-q", "--platform", "linux/amd64,linux/arm64", "-o", f"type=oci,dest={built}",
                 str(HELLO)]) == 0
    dst = repo(plain_registry, "dst")
    assert main(["push", str(built), f"{dst}:2"]) == 0
    assert len(skopeo_raw(f"{dst}:2")["manifests"]) == 2


def test_login_then_push_to_an_authenticated_registry(htpasswd_registry, tmp_path, monkeypatch, capsys):
    from conftest import USERS  # noqa: PLC0415 - the session's users live with the fixtures

    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(USERS["alice"] + "\n"))
    host = htpasswd_registry.host
    assert main(["login", host, "-u", "alice", "--password-stdin", "--insecure-registry", host]) == 0
    assert "Login Succeeded" in capsys.readouterr().out
    config = json.loads((tmp_path / "docker-config" / "config.json").read_text())
    assert host in config["auths"]
    name = f"{host}/private"
    assert main(["build", "-q", "-t", f"{name}:1", "--push", "--insecure-registry", host, str(HELLO)]) == 0
    assert main(["logout", host]) == 0
    assert main(["build", "-q", "-t", f"{name}:2", "--push", "--insecure-registry", host, str(HELLO)]) == 1
    err = capsys.readouterr().err
    assert "ERROR:" in err and USERS["alice"] not in err


def test_build_from_what_skopeo_pushed(plain_registry, tmp_path, require):
    """Interoperability the other way: skopeo puts the image in the registry, ocibuild builds FROM it."""
    require("skopeo", "binfmt:arm64")
    from ocibuild.layerspec import build as build_base
    from ocibuild.layerspec import load_spec

    layout = tmp_path / "busybox"
    build_base(load_spec(REPO / "layers" / "busybox.yaml"), layout, cache=Path("/var/tmp/ocibuild-debcache"))
    name = repo(plain_registry, "busybox")
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest",
                    f"docker://{name}:1"], check=True, capture_output=True)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}:1\nRUN uname -m > /arch\n")
    root = tmp_path / "root"
    assert main(["build", "-q", "--platform", "linux/arm64", "-o", f"type=local,dest={root}", str(ctx)]) == 0
    assert (root / "arch").read_text() == "aarch64\n"
