"""The build cache's transport (ocibuild/cache/transport.py, inline.py) against real registries and skopeo.

Round trips through ``type=local`` and ``type=registry`` (records equal, layers fetched and
verified into an empty store), skopeo copying the registry artifact both ways, the inline
cache of a pushed multi-platform image, and every unreadable cache raising CacheError.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import repo_name
from ocibuild.cache.inline import INLINE_KEY, inline_cache
from ocibuild.cache.records import Record
from ocibuild.cache.spec import CacheSpec
from ocibuild.cache.transport import (BUILDKIT_CACHE_CONFIG, CACHE_ARTIFACT, CACHE_CONFIG, cache_artifact,
                                      export_cache, import_cache)
from ocibuild.errors import CacheError
from ocibuild.oci import REF_NAME, Descriptor, Digest, ImageConfig, Index, Manifest, MediaType, Platform, \
    Reference, canonical_json
from ocibuild.registry import RepositoryClient, RetryPolicy, TransportOptions, push_image
from ocibuild.store import BlobStore, OciLayout

pytestmark = [pytest.mark.needs_registry]
CREATED = "2024-05-01T10:00:00Z"
AMD64, ARM64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def add_layer(store: BlobStore | OciLayout, seed: str) -> tuple[Descriptor, Digest]:
    """A small gzip layer (its bytes depend on ``seed``) stored in ``store``: descriptor and diff_id."""
    raw = seed.encode() * 300 + os.urandom(64)
    blob = gzip.compress(raw, mtime=0)
    blobs = store.blobs if isinstance(store, OciLayout) else store
    desc = Descriptor(MediaType.OCI_LAYER_GZIP.value, blobs.put_bytes(blob), len(blob))
    return desc, Digest.of(raw)


def make_records(store: BlobStore, prefix: str = "step", layers: int = 2) -> dict[str, Record]:
    """Records as a build leaves them: some steps with layers, one sharing a layer, one config-only."""
    records = {}
    for i in range(layers):
        desc, diff_id = add_layer(store, f"{prefix}-{i}")
        records[key(f"{prefix}-{i}")] = Record(CREATED, desc, diff_id)
    records[key(f"{prefix}-same")] = records[key(f"{prefix}-0")]  # two keys, one layer: sent once
    records[key(f"{prefix}-env")] = Record(CREATED)
    return records


def fetch_all(imported, records: dict[str, Record], tmp_path: Path) -> BlobStore:
    """Fetch every record's layer into a fresh store and read each back (a verified read)."""
    empty = BlobStore(tmp_path / f"fresh-{os.urandom(4).hex()}")
    for k in records:
        imported.fetch(imported.get(k), empty)
    for r in records.values():
        if r.layer is not None:
            assert empty.read_bytes(r.layer.digest)
    return empty


def registry_options(host: str) -> TransportOptions:
    return TransportOptions(retry=RetryPolicy(attempts=1))


def skopeo(*args: str) -> None:
    result = subprocess.run(["skopeo", *args], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()


def raw_manifest(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, check=True, timeout=60).stdout


def local(path: Path, export: bool, extra: str = "") -> CacheSpec:
    return CacheSpec.parse(f"type=local,{'dest' if export else 'src'}={path}{extra}", export=export)


def registry(ref: str, export: bool) -> CacheSpec:
    return CacheSpec.parse(f"type=registry,ref={ref}", export=export)


# -- the format -----------------------------------------------------------------------------


def test_artifact_is_deterministic_and_lists_each_layer_once(tmp_path):
    records = make_records(BlobStore(tmp_path / "store"))
    manifest, config = cache_artifact(records)
    assert cache_artifact(dict(reversed(records.items()))) == (manifest, config)
    doc = json.loads(manifest.to_json())
    assert doc["artifactType"] == CACHE_ARTIFACT and doc["config"]["mediaType"] == CACHE_CONFIG
    assert doc["mediaType"] == MediaType.OCI_MANIFEST.value and doc["schemaVersion"] == 2
    assert len(doc["layers"]) == 2
    body = json.loads(config)
    assert config == canonical_json(body)
    assert body["records"][key("step-same")] == body["records"][key("step-0")]
    assert body["records"][key("step-env")] == {"created": CREATED}
    assert body["diffIDs"] == [str(records[key(f"step-{i}")].diff_id) for i in range(2)]


def test_inline_cache_leaves_out_layers_the_image_does_not_carry(tmp_path):
    store = BlobStore(tmp_path)
    records = make_records(store)
    image_layers = [records[key("step-1")].layer]
    value = inline_cache(records, image_layers)
    assert value == {"records": {key("step-1"): {"created": CREATED, "layer": 0},
                                 key("step-env"): {"created": CREATED}}}


# -- type=local -----------------------------------------------------------------------------


def test_local_round_trip(tmp_path):
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    dest = tmp_path / "cache"
    desc = export_cache(local(dest, True), records, store)
    assert desc.artifact_type == CACHE_ARTIFACT
    layout = OciLayout(dest)
    [entry] = layout.index().manifests
    assert (entry.digest, entry.annotations[REF_NAME], entry.artifact_type) == (desc.digest, "latest", CACHE_ARTIFACT)
    layer = records[key("step-0")].layer
    assert layout.blobs.path(layer.digest).stat().st_ino == store.path(layer.digest).stat().st_ino  # linked

    imported = import_cache(local(dest, False), platforms=[AMD64])
    assert imported.records == records
    fresh = fetch_all(imported, records, tmp_path)
    assert sorted(fresh.digests()) == sorted({r.layer.digest for r in records.values() if r.layer})


def test_local_reexport_replaces_the_entry_and_keeps_old_blobs(tmp_path):
    store = BlobStore(tmp_path / "store")
    dest = tmp_path / "cache"
    first = export_cache(local(dest, True), make_records(store, "a"), store)
    second_records = make_records(store, "b")
    second = export_cache(local(dest, True), second_records, store)
    tagged = export_cache(local(dest, True, ",tag=v2"), second_records, store)
    assert tagged.digest == second.digest
    layout = OciLayout(dest)
    names = {d.annotations[REF_NAME]: d.digest for d in layout.index().manifests}
    assert names == {"latest": second.digest, "v2": second.digest}
    assert layout.blobs.has(first.digest)  # earlier exports' blobs stay, as with buildx
    assert import_cache(local(dest, False, ",tag=v2"), platforms=[]).records == second_records


def test_local_missing_or_corrupt_raises_cache_error(tmp_path):
    with pytest.raises(CacheError, match=str(tmp_path / "nowhere")):
        import_cache(local(tmp_path / "nowhere", False), platforms=[AMD64])
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    dest = tmp_path / "cache"
    desc = export_cache(local(dest, True), records, store)
    with pytest.raises(CacheError, match="no such name"):
        import_cache(local(dest, False, ",tag=other"), platforms=[AMD64])

    layout = OciLayout(dest)
    config_path = layout.blobs.path(json.loads(layout.read_blob(desc.digest))["config"]["digest"])
    _overwrite(config_path, b'{"records": {}, "diffIDs": []}')
    with pytest.raises(CacheError, match="hashes to"):
        import_cache(local(dest, False), platforms=[AMD64])


def test_local_corrupt_or_missing_layer_fails_fetch_only(tmp_path):
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    dest = tmp_path / "cache"
    export_cache(local(dest, True), records, store)
    layout = OciLayout(dest)
    corrupt, missing = records[key("step-0")], records[key("step-1")]
    path = layout.blobs.path(corrupt.layer.digest)
    path.unlink()  # it was hardlinked from the store: replace the file, do not write through the link
    path.write_bytes(b"not the layer")
    layout.blobs.path(missing.layer.digest).unlink()

    imported = import_cache(local(dest, False), platforms=[AMD64])
    fresh = BlobStore(tmp_path / "fresh")
    with pytest.raises(CacheError, match=f"fetch layer {corrupt.layer.digest}.*hashes to"):
        imported.fetch(corrupt, fresh)
    with pytest.raises(CacheError, match=f"fetch layer {missing.layer.digest}"):
        imported.fetch(missing, fresh)
    assert list(fresh.digests()) == []
    imported.fetch(records[key("step-env")], fresh)  # no layer: nothing to do


def test_export_of_a_blob_the_store_lacks_raises_cache_error(tmp_path, plain_registry):
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    gone = records[key("step-1")].layer.digest
    store.delete(gone)
    with pytest.raises(CacheError, match=f"export cache to {tmp_path / 'cache'}.*{gone}"):
        export_cache(local(tmp_path / "cache", True), records, store)
    ref = f"{plain_registry.host}/{repo_name()}:cache"
    with pytest.raises(CacheError, match=f"export cache to {ref}"):
        export_cache(registry(ref, True), records, store, options=registry_options)
    with pytest.raises(CacheError, match="not a digest"):
        export_cache(registry(f"{plain_registry.host}/x@sha256:{'0' * 64}", True), {}, store)


def _overwrite(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


# -- type=registry --------------------------------------------------------------------------


def test_registry_round_trip(plain_registry, tmp_path):
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    ref = f"{plain_registry.host}/{repo_name()}:buildcache"
    desc = export_cache(registry(ref, True), records, store, options=registry_options)
    assert export_cache(registry(ref, True), records, store, options=registry_options) == desc  # idempotent
    assert Digest.of(raw_manifest(ref)) == desc.digest

    imported = import_cache(registry(ref, False), platforms=[AMD64], options=registry_options)
    assert imported.records == records
    fetch_all(imported, records, tmp_path)


def test_registry_empty_cache_round_trips(plain_registry, tmp_path):
    store = BlobStore(tmp_path / "store")
    ref = f"{plain_registry.host}/{repo_name()}:buildcache"
    records = {key("env"): Record(CREATED)}
    export_cache(registry(ref, True), records, store)
    assert import_cache(registry(ref, False), platforms=[AMD64]).records == records


@pytest.mark.needs_tool("skopeo")
def test_skopeo_copies_the_registry_cache_both_ways(plain_registry, tmp_path):
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    name = f"{plain_registry.host}/{repo_name()}"
    desc = export_cache(registry(f"{name}:buildcache", True), records, store)
    copied = tmp_path / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{name}:buildcache", f"oci:{copied}:latest")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{copied}:latest", f"docker://{name}:back")
    assert Digest.of(raw_manifest(f"{name}:back")) == desc.digest  # byte-exact, config and layers kept

    for spec in (registry(f"{name}:back", False), local(copied, False)):
        imported = import_cache(spec, platforms=[AMD64])
        assert imported.records == records
        fetch_all(imported, records, tmp_path)

    # and the layout ocibuild writes is one skopeo reads
    dest = tmp_path / "cache"
    export_cache(local(dest, True), records, store)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{dest}:latest", f"docker://{name}:fromlocal")
    assert Digest.of(raw_manifest(f"{name}:fromlocal")) == desc.digest


def test_registry_missing_and_foreign_caches_raise_cache_error(plain_registry, tmp_path):
    ref = f"{plain_registry.host}/{repo_name()}"
    with pytest.raises(CacheError, match=f"import cache from {ref}:absent"):
        import_cache(registry(f"{ref}:absent", False), platforms=[AMD64], options=registry_options)
    client = RepositoryClient.for_reference(Reference.parse(ref))
    cases = {
        "other": ("application/vnd.example.config+json", b"{}", "application/vnd.example+json",
                  "not an ocibuild cache"),
        "buildkit": (BUILDKIT_CACHE_CONFIG, b"{}", "", "BuildKit cache"),
        "notjson": (CACHE_CONFIG, b"{not json", CACHE_ARTIFACT, "is not JSON"),
        "norecords": (CACHE_CONFIG, b'{"diffIDs": []}', CACHE_ARTIFACT, "no 'records'"),
        "badlayer": (CACHE_CONFIG, canonical_json({"diffIDs": [], "records": {key("x"): {"created": CREATED,
                                                                                       "layer": 3}}}),
                     CACHE_ARTIFACT, "layer 3 is not one of the 0 layers"),
        "badkey": (CACHE_CONFIG, b'{"diffIDs": [], "records": {"../x": {"created": "t"}}}', CACHE_ARTIFACT,
                   "not a cache key"),
    }
    for tag, (media_type, config, artifact_type, message) in cases.items():
        config_desc = Descriptor.for_bytes(media_type, config)
        client.push_blob(config_desc, lambda config=config: io.BytesIO(config))
        manifest = Manifest(config=config_desc, layers=(), artifact_type=artifact_type)
        client.push_manifest(manifest.to_json(), manifest.media_type, tag)
        with pytest.raises(CacheError, match=message):
            import_cache(registry(f"{ref}:{tag}", False), platforms=[AMD64])


def test_unreachable_registry_raises_cache_error(tmp_path):
    from support.registry import free_port
    ref = f"127.0.0.1:{free_port()}/app:cache"
    with pytest.raises(CacheError, match=f"import cache from {ref}"):
        import_cache(registry(ref, False), platforms=[AMD64], options=registry_options)


def test_registry_blob_deleted_fails_fetch(plain_registry, tmp_path):
    store = BlobStore(tmp_path / "store")
    records = make_records(store)
    repo = repo_name()
    ref = f"{plain_registry.host}/{repo}:buildcache"
    export_cache(registry(ref, True), records, store)
    gone = records[key("step-1")].layer.digest
    urllib.request.urlopen(urllib.request.Request(f"{plain_registry.url}/v2/{repo}/blobs/{gone}",
                                                  method="DELETE")).close()
    imported = import_cache(registry(ref, False), platforms=[AMD64], options=registry_options)
    fresh = BlobStore(tmp_path / "fresh")
    imported.fetch(records[key("step-0")], fresh)
    with pytest.raises(CacheError, match=f"fetch layer {gone} from cache {ref}"):
        imported.fetch(records[key("step-1")], fresh)
    assert not fresh.has(gone)


# -- inline ---------------------------------------------------------------------------------


def inline_image(folder: Path, platforms=(AMD64, ARM64), cache: bool = True):
    """A multi-platform OCI layout whose configs carry an inline cache; (layout, top, records)."""
    layout = OciLayout(folder).create()
    manifests, records = [], {}
    for platform in platforms:
        mine = {}
        layers = []
        for i in range(2):
            desc, diff_id = add_layer(layout, f"{platform}-{i}")
            layers.append(desc)
            mine[key(f"{platform}-{i}")] = Record(CREATED, desc, diff_id)
        mine[key(f"{platform}-env")] = Record(CREATED)
        config = ImageConfig.for_platform(platform)
        for r in mine.values():
            if r.layer is not None:
                config = config.add_layer(r.diff_id)
        if cache:
            config = replace(config, extra={INLINE_KEY: inline_cache(mine, layers)})
        manifest = Manifest(config=layout.put_document(config), layers=tuple(layers))
        manifests.append(layout.put_document(manifest).with_(platform=platform))
        records |= mine
    top = layout.put_document(Index(manifests=tuple(manifests)))
    layout.tag(top, "1.2")
    return layout, top, records


def test_inline_round_trip_through_a_pushed_image(plain_registry, tmp_path):
    layout, top, records = inline_image(tmp_path / "image")
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:1.2")
    push_image(layout, top, ref)
    spec = CacheSpec.parse(str(ref), export=False)
    assert spec.type == "registry"

    imported = import_cache(spec, platforms=[AMD64, ARM64, Platform.parse("linux/s390x")])
    assert imported.records == records
    fetch_all(imported, records, tmp_path)
    only_arm = import_cache(spec, platforms=[ARM64])
    assert set(only_arm.records) == {k for k in records if k in {key(f"{ARM64}-{i}") for i in (0, 1)}
                                     | {key(f"{ARM64}-env")}}
    with pytest.raises(CacheError, match="no ocibuild inline cache for linux/s390x"):
        import_cache(spec, platforms=[Platform.parse("linux/s390x")])

    # the same image from a local layout
    from_layout = import_cache(local(tmp_path / "image", False, ",tag=1.2"), platforms=[AMD64, ARM64])
    assert from_layout.records == records


def test_image_without_inline_cache_raises_cache_error(plain_registry, tmp_path):
    layout, top, _ = inline_image(tmp_path / "image", cache=False)
    ref = Reference.parse(f"{plain_registry.host}/{repo_name()}:1.2")
    push_image(layout, top, ref)
    with pytest.raises(CacheError, match=f"import cache from {ref}: the image has no ocibuild inline cache"):
        import_cache(CacheSpec.parse(str(ref), export=False), platforms=[AMD64])
