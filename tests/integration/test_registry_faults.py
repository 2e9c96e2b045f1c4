"""The transport under injected faults (support.proxy.FaultProxy in front of the reference registry).

Retries must win where a retry helps (503 + Retry-After, a 500 on the first PUT, a connection
cut mid-blob: resumed with Range); content faults (a flipped byte, a wrong Docker-Content-Digest)
must fail naming the digest and leave nothing in the destination BlobStore.
"""

from __future__ import annotations

import pytest

from conftest import repo_name
from ocibuild.errors import DigestMismatch, InvalidDocument, RegistryError, RegistryUnavailable
from ocibuild.oci import MAX_DOCUMENT_SIZE, Platform, Reference
from ocibuild.registry import RepositoryClient, RetryPolicy, TransportOptions, pull_image, push_image
from ocibuild.store import BlobStore, manifest_for

pytestmark = pytest.mark.needs_registry
AMD64 = Platform.parse("linux/amd64")


def pushed(proxy, make_image, **kw):
    layout, top = make_image(**kw)
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref)
    proxy.reset()
    return layout, top, ref


def store_is_empty_of_blobs(store: BlobStore) -> bool:
    """No committed blob but documents, and no temp file left behind."""
    leftovers = [p for p in store.dir.rglob("*") if p.is_file() and p.name.startswith(".")]
    return not leftovers


def test_503_with_retry_after_is_retried(proxy, make_image, fast, sleeps):
    layout, top = make_image()
    proxy.faults.unavailable, proxy.faults.retry_after = 2, "1"
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref, options=fast)
    assert len(proxy.injected) == 2
    assert len([s for s in sleeps if s >= 1.0]) >= 2  # Retry-After honoured as a lower bound
    assert RepositoryClient.for_reference(ref).get_manifest("v1")[0].digest == top.digest


def test_retries_are_bounded(proxy, make_image, sleeps):
    proxy.faults.unavailable, proxy.faults.retry_after = 100, "120"
    policy = RetryPolicy(attempts=3, sleep=sleeps.append, max_retry_after=2.0)
    client = RepositoryClient.for_reference(Reference.parse(f"{proxy.host}/{repo_name()}:v1"),
                                            TransportOptions(retry=policy))
    with pytest.raises(RegistryUnavailable, match="registry answered 503") as info:
        client.get_manifest("v1")
    assert info.value.status == 503
    assert sleeps == [2.0, 2.0]  # Retry-After: 120 capped at max_retry_after
    assert proxy.methods().count("GET") <= 4  # the scheme probe plus three attempts


def test_500_on_first_put_restarts_the_upload(proxy, make_image, fast):
    layout, top = make_image(layers=1)
    proxy.faults.fail_puts = 1
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref, options=fast, workers=1)
    assert proxy.injected == ["500 PUT"]
    assert proxy.methods().count("POST") == 3  # two blobs, one of them twice (the session is restarted)
    assert RepositoryClient.for_reference(ref).get_manifest("v1")[0].digest == top.digest


def test_cut_connection_resumes_with_range(proxy, make_image, tmp_path, fast):
    layout, top, ref = pushed(proxy, make_image, layer_size=200_000, layers=1)
    _, manifest = manifest_for(layout, top, AMD64)
    layer = manifest.layers[0]
    proxy.faults.cut_blobs[layer.digest] = 70_000
    store = BlobStore(tmp_path / "store")
    pull_image(ref, AMD64, store, options=fast)
    assert proxy.injected == [f"cut {layer.digest}"]
    assert [p for m, p in proxy.requests if m == "GET" and p.endswith(layer.digest)] == \
        [f"/v2/{ref.repository}/blobs/{layer.digest}"] * 2
    assert proxy.ranges == ["bytes=70000-"]
    assert store.read_bytes(layer.digest) == layout.read_blob(layer.digest)


def test_flipped_byte_fails_and_stores_nothing(proxy, make_image, tmp_path):
    layout, top, ref = pushed(proxy, make_image, layers=1)
    _, manifest = manifest_for(layout, top, AMD64)
    layer = manifest.layers[0]
    proxy.faults.flip_blobs.add(layer.digest)
    store = BlobStore(tmp_path / "store")
    with pytest.raises(DigestMismatch) as info:
        pull_image(ref, AMD64, store)
    message = str(info.value)
    assert layer.digest in message and "content hashes to sha256:" in message and ref.repository in message
    assert not store.has(layer.digest)
    assert store_is_empty_of_blobs(store)


def test_wrong_docker_content_digest_on_a_tag_is_refused(proxy, make_image, tmp_path):
    layout, top, ref = pushed(proxy, make_image)
    proxy.faults.wrong_digest.add("/manifests/v1")
    store = BlobStore(tmp_path / "store")
    with pytest.raises(DigestMismatch) as info:
        pull_image(ref, AMD64, store)
    message = str(info.value)
    assert "sha256:" + "0" * 63 + "1" in message and top.digest in message
    assert "Docker-Content-Digest" in message
    assert list(store.digests()) == []


def test_wrong_docker_content_digest_on_a_blob_is_refused(proxy, make_image, tmp_path):
    layout, top, ref = pushed(proxy, make_image, layers=1)
    _, manifest = manifest_for(layout, top, AMD64)
    proxy.faults.wrong_digest.add(f"/blobs/{manifest.layers[0].digest}")
    store = BlobStore(tmp_path / "store")
    with pytest.raises(DigestMismatch, match=manifest.layers[0].digest):
        pull_image(ref, AMD64, store)
    assert not store.has(manifest.layers[0].digest)
    assert store_is_empty_of_blobs(store)


def test_second_push_only_checks_existence(proxy, make_image):
    layout, top = make_image(platforms=("linux/amd64", "linux/arm64"))
    ref = Reference.parse(f"{proxy.host}/{repo_name()}:v1")
    push_image(layout, top, ref, tags=["latest"])
    proxy.reset()
    push_image(layout, top, ref, tags=["latest"])
    methods = proxy.methods()
    assert set(methods) <= {"HEAD", "GET"}, methods
    assert [p for m, p in proxy.requests if m == "GET"] in ([], ["/v2/"])  # at most the scheme probe
    # 4 blobs (2 configs, 2 layers... per platform) + 3 documents + 2 tags, each HEADed once
    assert methods.count("HEAD") == 2 * 3 + 3 + 2


def test_connection_refused_is_unavailable(sleeps):
    from support.registry import free_port
    client = RepositoryClient.for_reference(Reference.parse(f"127.0.0.1:{free_port()}/x/y:v1"),
                                            TransportOptions(retry=RetryPolicy(attempts=2, sleep=sleeps.append)))
    with pytest.raises(RegistryUnavailable, match="connection to 127.0.0.1:.* failed: connection refused"):
        client.get_manifest("v1")
    assert len(sleeps) == 1


def test_content_type_contradicting_media_type_is_refused(proxy, make_image):
    layout, top, ref = pushed(proxy, make_image)
    proxy.faults.content_type["/manifests/v1"] = "application/vnd.docker.distribution.manifest.list.v2+json"
    with pytest.raises(InvalidDocument, match="contradicts its content type"):
        RepositoryClient.for_reference(ref).get_manifest("v1")


def test_oversized_manifest_is_refused(proxy, make_image):
    layout, top, ref = pushed(proxy, make_image)
    proxy.faults.bodies["/manifests/v1"] = b" " * (MAX_DOCUMENT_SIZE + 1)
    with pytest.raises(InvalidDocument, match=f"{MAX_DOCUMENT_SIZE + 1} bytes exceeds the {MAX_DOCUMENT_SIZE}-byte"):
        RepositoryClient.for_reference(ref).get_manifest("v1")


def test_registry_error_detail_is_reported(plain_registry):
    client = RepositoryClient.for_reference(Reference.parse(f"{plain_registry.host}/{repo_name()}:v1"))
    with pytest.raises(RegistryError, match="registry answered 400: MANIFEST_INVALID|registry answered 400: .*BLOB"):
        client.push_manifest(b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
                             b'"config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, '
                             b'"digest": "sha256:' + b"a" * 64 + b'"}, "layers": []}',
                             "application/vnd.oci.image.manifest.v1+json", "v1")
