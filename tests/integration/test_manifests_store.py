"""The local manifest-list store and the pure parts of `ocibuild manifest` (no registry, no network).

Lives beside test_manifests.py (which needs a registry) so the two are run together with
`-k manifests`; nothing here starts a process or opens a socket.
"""

from __future__ import annotations

import json

import pytest

from ocibuild.errors import DigestMismatch, InvalidInput, InvalidOption, InvalidPlatform, NotFound
from ocibuild.manifests import ListEntry, ListStore, escape, lists, make_index, merge, parse_annotations, unescape
from ocibuild.manifests.remote import Fetched
from ocibuild.oci import Descriptor, Digest, Manifest, MediaType, Platform, Reference, parse_document

REG = "registry.example:5000"


def manifest_bytes(seed: str, media_type: MediaType = MediaType.OCI_MANIFEST) -> bytes:
    config = Descriptor.for_bytes(MediaType.OCI_CONFIG if media_type == MediaType.OCI_MANIFEST
                                  else MediaType.DOCKER_CONFIG, seed.encode())
    return Manifest(config=config, layers=(), media_type=media_type.value).to_json()


def entry(seed: str, platform: str | None = "linux/amd64", repo: str = "ci/app") -> ListEntry:
    raw = manifest_bytes(seed)
    desc = Descriptor.for_bytes(MediaType.OCI_MANIFEST, raw, platform=Platform.parse(platform) if platform else None)
    return ListEntry(Reference.parse(f"{REG}/{repo}@{desc.digest}"), desc, raw)


class FakeRemote:
    """Serves documents from a dict and platforms from another: what lists.create asks of a Remote."""

    def __init__(self, docs: dict[str, bytes], platforms: dict[str, Platform | None]):
        self.docs, self.platforms, self.fetched = docs, platforms, []

    def fetch(self, ref: Reference) -> Fetched:
        self.fetched.append(str(ref))
        raw = self.docs[str(ref)]
        doc = parse_document(raw)
        return Fetched(ref, Descriptor.for_bytes(doc.media_type, raw), raw, doc)

    def image_platform(self, ref: Reference, manifest) -> Platform | None:
        return self.platforms[str(ref)]


@pytest.fixture
def store(tmp_path) -> ListStore:
    return ListStore(tmp_path)


# -- escaping ------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["docker.io/library/app:1.2", f"{REG}/team/app:1.2-arm64",
                                 f"{REG}/a/b@sha256:{'a' * 64}", "[::1]:5000/x:y", "localhost/a__b-c.d:v_1"])
def test_escape_is_a_single_reversible_file_name(ref):
    name = escape(ref)
    assert "/" not in name and name not in (".", "..") and not name.startswith(".")
    assert unescape(name) == ref


def test_escape_keeps_apart_what_dockers_scheme_merges():
    # Docker's ":" -> "-", "/" -> "_" gives both of these "r_a_b-c-1"
    assert escape("r/a/b-c:1") != escape("r/a_b/c-1")
    assert escape("docker.io/library/app:1.2") == "docker.io%2Flibrary%2Fapp%3A1.2"


# -- the store -----------------------------------------------------------------------------

def test_save_read_get_and_remove(store, tmp_path):
    lst = Reference.parse(f"{REG}/team/app:1.2")
    a, b = entry("a"), entry("b", "linux/arm64")
    store.save(lst, a)
    store.save(lst, b)
    assert (tmp_path / "manifests" / escape(str(lst))).is_dir()
    assert {e.ref for e in store.entries(lst)} == {a.ref, b.ref}
    assert store.get(lst, b.ref) == b
    assert store.get(lst, Reference.parse(f"{REG}/ci/app:other@{b.descriptor.digest}")) == b  # by digest
    assert store.lists() == [str(lst)]
    store.save(lst, ListEntry(a.ref, a.descriptor.with_(platform=Platform.parse("linux/amd64/v3")), a.raw))
    assert store.get(lst, a.ref).descriptor.platform == Platform.parse("linux/amd64/v3")  # replaced, not added
    assert len(store.entries(lst)) == 2
    store.remove(lst)
    assert not store.exists(lst) and store.lists() == []
    with pytest.raises(NotFound, match="no such manifest list"):
        store.entries(lst)
    with pytest.raises(NotFound):
        store.remove(lst)


def test_entry_file_is_dockers_image_manifest_shape_and_is_verified(store):
    lst = Reference.parse(f"{REG}/team/app:1.2")
    a = entry("a")
    path = store.save(lst, a)
    data = json.loads(path.read_text())
    assert set(data) == {"Ref", "Descriptor", "Raw", "OCIManifest"}
    assert data["Descriptor"]["platform"] == {"architecture": "amd64", "os": "linux"}
    data["Descriptor"]["digest"] = str(Digest.of(b"something else"))
    path.write_text(json.dumps(data))
    with pytest.raises(DigestMismatch):
        store.entries(lst)


def test_get_names_the_entries_when_missing(store):
    lst = Reference.parse(f"{REG}/team/app:1.2")
    store.save(lst, entry("a"))
    with pytest.raises(NotFound, match="has no entry for .*ci/app:nope.*it has: "):
        store.get(lst, Reference.parse(f"{REG}/ci/app:nope"))


# -- create / amend ------------------------------------------------------------------------

def test_create_amend_and_refusals(store):
    lst = Reference.parse(f"{REG}/team/app:1.2")
    amd64, arm64 = Reference.parse(f"{REG}/ci/app:amd64"), Reference.parse(f"{REG}/ci/app:arm64")
    index = make_index([entry("a").descriptor]).to_json()
    listed = Reference.parse(f"{REG}/ci/app:index")
    remote = FakeRemote({str(amd64): manifest_bytes("a"), str(arm64): manifest_bytes("b"), str(listed): index},
                        {str(amd64): Platform.parse("linux/amd64"), str(arm64): Platform.parse("linux/arm64")})
    lists.create(store, remote, lst, [amd64])
    with pytest.raises(InvalidInput, match="without --amend"):
        lists.create(store, remote, lst, [arm64])
    lists.create(store, remote, lst, [arm64], amend=True)
    assert {str(e.descriptor.platform) for e in store.entries(lst)} == {"linux/amd64", "linux/arm64"}
    with pytest.raises(InvalidInput, match="is a manifest list"):
        lists.create(store, remote, Reference.parse(f"{REG}/team/other:1"), [amd64, listed])
    assert not store.exists(Reference.parse(f"{REG}/team/other:1"))  # nothing written when one image fails
    with pytest.raises(InvalidInput, match="registry"):
        lists.create(store, remote, Reference.parse("elsewhere.example/team/app:1"), [amd64])


# -- annotate ------------------------------------------------------------------------------

@pytest.mark.parametrize("current, change, expected", [
    ("linux/amd64", lists.PlatformChange(architecture="aarch64", variant="v8"), "linux/arm64"),
    ("linux/amd64", lists.PlatformChange(architecture="arm64", variant="v8"), "linux/arm64"),
    ("linux/amd64", lists.PlatformChange(architecture="armhf"), "linux/arm/v7"),
    ("linux/arm/v6", lists.PlatformChange(architecture="arm64"), "linux/arm64"),  # the old variant is dropped
    ("linux/arm/v7", lists.PlatformChange(variant="6"), "linux/arm/v6"),
    ("linux/amd64", lists.PlatformChange(os="Windows", architecture="x86_64"), "windows/amd64"),
    (None, lists.PlatformChange(os="linux", architecture="s390x"), "linux/s390x"),
])
def test_annotated_platform_is_normalised(current, change, expected):
    base = Platform.parse(current) if current else None
    assert str(lists.annotated_platform(base, change)) == expected


def test_annotated_platform_os_version_features_and_errors():
    p = lists.annotated_platform(Platform.parse("linux/amd64"),
                                 lists.PlatformChange(os="windows", os_version="10.0.17763.1",
                                                      os_features=("win32k",)))
    assert p.to_dict() == {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1",
                           "os.features": ["win32k"]}
    kept = lists.annotated_platform(p, lists.PlatformChange(variant="v2"))
    assert kept.os_version == "10.0.17763.1" and kept.os_features == ("win32k",) and kept.variant == "v2"
    with pytest.raises(InvalidPlatform, match="unknown architecture"):
        lists.annotated_platform(p, lists.PlatformChange(architecture="sparc99"))
    with pytest.raises(InvalidPlatform, match="give --os and --arch"):
        lists.annotated_platform(None, lists.PlatformChange(architecture="arm64"))


def test_annotate_rewrites_the_stored_entry(store):
    lst = Reference.parse(f"{REG}/team/app:1.2")
    a = entry("a", platform=None)
    store.save(lst, a)
    lists.annotate(store, lst, a.ref, lists.PlatformChange(os="linux", architecture="arm64", variant="v8"))
    assert store.get(lst, a.ref).descriptor.platform == Platform("linux", "arm64")
    with pytest.raises(InvalidPlatform, match=r"annotate .* in .*team/app:1.2: invalid platform"):
        lists.annotate(store, lst, a.ref, lists.PlatformChange(architecture="nope"))


# -- the index ---------------------------------------------------------------------------

def test_index_media_type_follows_the_children():
    oci = entry("a").descriptor
    docker = Descriptor.for_bytes(MediaType.DOCKER_MANIFEST, manifest_bytes("d", MediaType.DOCKER_MANIFEST),
                                  platform=Platform.parse("linux/arm64"))
    assert make_index([docker]).media_type == MediaType.DOCKER_MANIFEST_LIST.value
    assert make_index([docker, oci]).media_type == MediaType.OCI_INDEX.value
    assert make_index([docker], {"a": "b"}).media_type == MediaType.OCI_INDEX.value  # annotations need OCI


def test_merge_lists_a_digest_once():
    a = entry("a").descriptor
    merged = merge([a.with_(platform=None), entry("b").descriptor, a.annotated(x="1")])
    assert [d.digest for d in merged] == [a.digest, entry("b").descriptor.digest]
    assert merged[0].platform == a.platform and merged[0].annotations == {"x": "1"}


def test_local_index_carries_only_type_digest_size_platform():
    e = entry("a")
    e = ListEntry(e.ref, e.descriptor.annotated(note="kept out"), e.raw)
    (child,) = lists.local_index([e]).to_dict()["manifests"]
    assert set(child) == {"mediaType", "digest", "size", "platform"}


def test_parse_annotations():
    assert parse_annotations(["a=1", "index:b=2=3", "manifest-descriptor:c="]) == ({"a": "1", "b": "2=3"},
                                                                                   {"c": ""})
    for bad in ("novalue", "=x", "manifest:a=b", "index[linux/amd64]:a=b", "index-descriptor:a=b", "index:=x"):
        with pytest.raises(InvalidOption):
            parse_annotations([bad])
