"""Push and pull against the reference registry (docker-registry 2.8): plain HTTP, TLS, htpasswd, tokens.

What ocibuild pushed is read back by skopeo byte-exactly; what skopeo pushed is pulled by
ocibuild, verified, and usable through the ImageSource helpers the builder uses.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import USERS, build_image, options, repo_name
from ocibuild.cli import main as cli
from ocibuild.errors import AuthError, NotFound, RegistryNotFound, RegistryUnavailable
from ocibuild.oci import Platform, Reference
from ocibuild.registry import (RegistrySource, RepositoryClient, TLSOptions, TransportOptions, open_image,
                               pull_image, push_image)
from ocibuild.store import BlobStore, OciLayout, copy, load_config, manifest_for, walk
from support.validate import validate_oci_layout

pytestmark = [pytest.mark.needs_registry, pytest.mark.needs_tool("skopeo")]
REPO = Path(__file__).resolve().parents[2]


def skopeo(*args: str) -> bytes:
    result = subprocess.run(["skopeo", *args], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def raw(ref: str, *flags: str) -> bytes:
    return skopeo("inspect", "--raw", *flags, f"docker://{ref}")


def assert_registry_has_exact(ref: Reference, layout: OciLayout, top, *flags: str) -> None:
    """skopeo reads every pushed document byte-exactly, by tag and by digest."""
    assert raw(str(ref), *flags) == layout.read_blob(top.digest)
    for d in walk(layout, top):
        if d.kind is not None and (d.kind.is_manifest or d.kind.is_index):
            assert raw(f"{ref.name}@{d.digest}", *flags) == layout.read_blob(d.digest)


def test_push_index_to_plain_registry_is_read_back_exactly(plain_registry, make_image):
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"))
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:v1")
    pushed = push_image(layout, top, ref, tags=["latest"])
    assert (pushed.digest, pushed.size, pushed.media_type) == (top.digest, top.size, top.media_type)
    assert_registry_has_exact(ref, layout, top, "--tls-verify=false")
    assert raw(str(ref.with_tag("latest")), "--tls-verify=false") == layout.read_blob(top.digest)
    assert sorted(RepositoryClient.for_reference(ref).list_tags()) == ["latest", "v1"]


def test_push_by_digest_creates_no_tag(plain_registry, make_image):
    layout, top = make_image()
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:ignored")
    push_image(layout, top, ref, by_digest=True)
    assert raw(f"{ref.name}@{top.digest}", "--tls-verify=false") == layout.read_blob(top.digest)
    with pytest.raises(RegistryNotFound):
        RepositoryClient.for_reference(ref).get_manifest("ignored")


def test_tls_registry_with_ca_file(tls_registry, make_image, tmp_path):
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"))
    ref = Reference.parse(f"{tls_registry.host}/{repo_name()}:v1")
    push_image(layout, top, ref, options=options(ca=tls_registry.ca.cert_path))
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(tls_registry.ca.cert_path.read_bytes())
    assert_registry_has_exact(ref, layout, top, "--cert-dir", str(cert_dir))
    source, desc = pull_image(ref, Platform.parse("linux/arm64"), BlobStore(tmp_path / "store"),
                              options=options(ca=tls_registry.ca.cert_path))
    assert desc.digest == top.digest


def test_tls_registry_trusted_through_certs_d(tls_registry, make_image, tmp_path):
    layout, top = make_image()
    certs_d = tmp_path / "certs.d"
    (certs_d / tls_registry.host).mkdir(parents=True)
    (certs_d / tls_registry.host / "ca.crt").write_bytes(tls_registry.ca.cert_path.read_bytes())
    ref = Reference.parse(f"{tls_registry.host}/{repo_name()}:v1")
    push_image(layout, top, ref, options=TransportOptions(tls=TLSOptions(certs_dir=certs_d)))
    assert RepositoryClient.for_reference(ref, TransportOptions(tls=TLSOptions(certs_dir=certs_d))) \
        .get_manifest("v1")[0].digest == top.digest


def test_tls_registry_untrusted_is_refused_not_downgraded(tls_registry, make_image):
    layout, top = make_image()
    ref = Reference.parse(f"{tls_registry.host}/{repo_name()}:v1")
    with pytest.raises(RegistryUnavailable, match="TLS with .* failed: certificate verify failed"):
        push_image(layout, top, ref)


def test_tls_registry_marked_insecure_skips_verification(tls_registry, make_image):
    layout, top = make_image()
    ref = Reference.parse(f"{tls_registry.host}/{repo_name()}:v1")
    push_image(layout, top, ref, options=TransportOptions(tls=TLSOptions(insecure=True)))
    client = RepositoryClient.for_reference(ref, TransportOptions(tls=TLSOptions(insecure=True)))
    assert client.transport.base.startswith("https://")
    assert client.get_manifest("v1")[0].digest == top.digest


def test_htpasswd_registry(htpasswd_registry, make_image, tmp_path):
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"))
    ref = Reference.parse(f"{htpasswd_registry.host}/{repo_name()}:v1")
    alice = ("alice", USERS["alice"])
    push_image(layout, top, ref, options=options(creds=alice))
    assert_registry_has_exact(ref, layout, top, "--tls-verify=false", "--creds", ":".join(alice))
    source, desc = pull_image(ref, Platform.parse("linux/amd64"), BlobStore(tmp_path / "s"),
                              options=options(creds=alice))
    assert desc.digest == top.digest


def test_htpasswd_registry_refuses_missing_and_wrong_credentials(htpasswd_registry, make_image, monkeypatch,
                                                                  tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    layout, top = make_image()
    ref = Reference.parse(f"{htpasswd_registry.host}/{repo_name()}:v1")
    with pytest.raises(AuthError, match="requires a login"):
        push_image(layout, top, ref)
    with pytest.raises(AuthError, match="refused") as info:
        push_image(layout, top, ref, options=options(creds=("alice", "wrong-password-123")))
    assert "wrong-password-123" not in str(info.value)


def test_token_server_flow(token_registry, make_image, tmp_path):
    server = token_registry.token_server
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"))
    repo = repo_name("tok")
    ref = Reference.parse(f"{token_registry.host}/{repo}:v1")
    push_image(layout, top, ref, options=options(creds=("alice", USERS["alice"])))
    assert ("alice", [f"repository:{repo}:pull,push"]) in server.log
    creds = f"alice:{USERS['alice']}"
    assert_registry_has_exact(ref, layout, top, "--tls-verify=false", "--creds", creds)
    reader = options(creds=("reader", USERS["reader"]))
    source, desc = pull_image(ref, Platform.parse("linux/arm64"), BlobStore(tmp_path / "s"), options=reader)
    assert desc.digest == top.digest
    other = Reference.parse(f"{token_registry.host}/{repo_name('tok')}:v1")
    with pytest.raises(AuthError, match="refused the credentials or the access"):
        push_image(layout, top, other, options=reader)
    with pytest.raises(AuthError, match="token server .* refused the stored credentials"):
        push_image(layout, top, other, options=options(creds=("alice", "not-her-password")))


def test_token_registry_cross_repository_mount(token_registry, make_image):
    layout, top = make_image()
    alice = options(creds=("alice", USERS["alice"]))
    first = Reference.parse(f"{token_registry.host}/{repo_name('tok')}:v1")
    push_image(layout, top, first, options=alice)
    second = Reference.parse(f"{token_registry.host}/{repo_name('tok')}:v1")
    source = open_image(first, options=alice)
    push_image(source, source.top(), second, options=alice)
    log = token_registry.token_server.log
    assert any(f"repository:{first.repository}:pull" in scopes and f"repository:{second.repository}:pull,push"
               in scopes for _, scopes in log)


def test_mount_from_another_repository(proxy, make_image):
    layout, top = make_image()
    first = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, first)
    proxy.reset()
    second = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, second, mount_from=first.repository)
    posts = [p for m, p in proxy.requests if m == "POST"]
    assert len(posts) == 3  # config and two layers, each mounted
    assert not [p for m, p in proxy.requests if m in ("PATCH",) or (m == "PUT" and "/blobs/" in p)]
    assert raw(str(second), "--tls-verify=false") == layout.read_blob(top.digest)


def test_chunked_upload(proxy, make_image):
    layout, top = make_image(layer_size=300_000)
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref, chunk_size=64 * 1024)
    assert proxy.methods().count("PATCH") >= 4
    assert_registry_has_exact(ref, layout, top, "--tls-verify=false")
    manifest = json.loads(layout.read_blob(top.digest))
    for layer in manifest["layers"]:
        out = skopeo("inspect", "--tls-verify=false", f"docker://{ref}")
        assert layer["digest"] in json.loads(out)["Layers"]


def test_skopeo_copy_then_pull_with_the_builder_helpers(plain_registry, tmp_path):
    layout, top = build_image(tmp_path / "src", platforms=("linux/amd64", "linux/arm64"), tag="v1")
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:v1")
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout.path}:v1",
           f"docker://{ref}")
    source = open_image(ref)
    desc = source.resolve(None)
    assert desc.digest == top.digest
    chosen, manifest = manifest_for(source, desc, Platform.parse("linux/arm64"))
    assert load_config(source, manifest.config).architecture == "arm64"
    dest = OciLayout(tmp_path / "copy")
    assert copy(source, dest, desc) == len(walk(layout, top))
    for d in walk(layout, top):
        assert dest.read_blob(d.digest) == layout.read_blob(d.digest)


def test_pull_fetches_only_what_is_missing(proxy, make_image, tmp_path):
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"), layers=3)
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref)
    store = BlobStore(tmp_path / "store")
    proxy.reset()
    source, desc = pull_image(ref, Platform.parse("linux/amd64"), store)
    blob_gets = [p for m, p in proxy.requests if m == "GET" and "/blobs/" in p]
    assert len(blob_gets) == 4  # config + 3 layers, nothing of arm64
    proxy.reset()
    source, desc = pull_image(ref, Platform.parse("linux/amd64"), store)
    assert not [p for m, p in proxy.requests if "/blobs/" in p]
    _, manifest = manifest_for(source, desc, Platform.parse("linux/amd64"))
    assert all(store.has(d.digest) for d in (manifest.config, *manifest.layers))


def test_missing_tag_and_repository(plain_registry):
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:nope")
    with pytest.raises(NotFound, match="get manifest .*:nope: registry answered 404"):
        open_image(ref).top()


def test_pushed_hello_image_validates_after_a_round_trip(plain_registry, tmp_path, monkeypatch, require):
    require("umoci", "oci-image-tool")
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "cache"))
    built = tmp_path / "built"
    assert cli(["build", "--progress", "plain", "-o", f"type=oci,dest={built},tar=false", "-t", "hello:1",
                str(REPO / "examples" / "hello")]) == 0
    layout = OciLayout(built)
    top = layout.resolve(None)
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:1")
    push_image(layout, top, ref)
    back = tmp_path / "back"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{ref}", f"oci:{back}:1")
    validate_oci_layout(back)
    assert OciLayout(back).resolve("1").digest == top.digest


def test_registry_source_reads_child_manifests_by_digest(plain_registry, make_image):
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"))
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:v1")
    push_image(layout, top, ref)
    source = RegistrySource(RepositoryClient.for_reference(ref), ref)
    for d in walk(source, source.top()):
        assert source.read_blob(d.digest) == layout.read_blob(d.digest)
        assert source.has_blob(d.digest)


def test_builder_load_image_from_a_registry(proxy, make_image, tmp_path):
    """The integration the builder will use: pull_image, then base.load_image reads only local blobs."""
    from ocibuild.builder.base import load_image
    from ocibuild.store import ImageSource
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"))
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref)
    blobs = BlobStore(tmp_path / "store")
    source, desc = pull_image(ref, Platform.parse("linux/arm64"), blobs)
    assert isinstance(source, ImageSource)
    proxy.reset()
    state = load_image(source, desc, Platform.parse("linux/arm64"), blobs, tmp_path / "cache")
    assert proxy.requests == []  # everything came from the BlobStore
    assert state.config.architecture == "arm64" and len(state.layers) == 2
