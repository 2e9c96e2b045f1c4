"""Unit tests of the pure OCI model: digests, platforms, references, documents, configs."""

import hashlib
import json

import pytest

from ocibuild.errors import DigestMismatch, InvalidDocument, InvalidInput, InvalidPlatform, InvalidReference
from ocibuild.oci import (
    ContainerConfig, Descriptor, Digest, ImageConfig, Index, Manifest, MediaType, Platform, Reference,
    canonical_json, parse_document, parse_platforms, rfc3339, verify,
)

HEX = "a" * 64


class TestDigest:
    def test_of_matches_hashlib(self):
        assert Digest.of(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()

    @pytest.mark.parametrize("bad", ["", "sha256", "sha256:", "sha256:abc", "SHA256:" + HEX,
                                     "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha256:" + HEX + "0"])
    def test_rejects_malformed(self, bad):
        with pytest.raises(InvalidInput):
            Digest(bad)

    def test_parts(self):
        d = Digest("sha256:" + HEX)
        assert (d.algorithm, d.encoded, d.short()) == ("sha256", HEX, HEX[:12])

    def test_verify(self):
        verify(b"abc", Digest.of(b"abc"), 3)
        with pytest.raises(DigestMismatch, match="expected 4 bytes"):
            verify(b"abc", Digest.of(b"abc"), 4)
        with pytest.raises(DigestMismatch, match="hashes to"):
            verify(b"abd", Digest.of(b"abc"))


class TestPlatform:
    @pytest.mark.parametrize("text,want", [
        ("linux/amd64", ("linux", "amd64", "")),
        ("linux/x86_64", ("linux", "amd64", "")),
        ("amd64", ("linux", "amd64", "")),
        ("linux/amd64/v1", ("linux", "amd64", "")),
        ("linux/amd64/v3", ("linux", "amd64", "v3")),
        ("arm64", ("linux", "arm64", "")),
        ("linux/arm64/v8", ("linux", "arm64", "")),
        ("linux/aarch64", ("linux", "arm64", "")),
        ("linux/arm", ("linux", "arm", "v7")),
        ("linux/arm/v6", ("linux", "arm", "v6")),
        ("linux/arm/7", ("linux", "arm", "v7")),
        ("linux/armhf", ("linux", "arm", "v7")),
        ("linux/armel", ("linux", "arm", "v6")),
        ("linux/i386", ("linux", "386", "")),
        ("Linux/PPC64LE", ("linux", "ppc64le", "")),
        ("linux/s390x", ("linux", "s390x", "")),
    ])
    def test_parse_normalises(self, text, want):
        p = Platform.parse(text)
        assert (p.os, p.architecture, p.variant) == want

    @pytest.mark.parametrize("bad", ["", "linux", "linux/", "linux/arm/v9x", "linux/foo", "beos/amd64",
                                     "linux/amd64/v2/x", "linux/amd64/v9"])
    def test_rejects(self, bad):
        with pytest.raises(InvalidPlatform):
            Platform.parse(bad)

    def test_str_round_trip(self):
        for s in ["linux/amd64", "linux/arm/v7", "linux/arm64", "linux/386"]:
            assert str(Platform.parse(s)) == s

    def test_matches_arm64_variant(self):
        assert Platform("linux", "arm64", "v8").matches(Platform.parse("arm64"))
        assert not Platform.parse("linux/arm/v7").matches(Platform.parse("linux/arm/v6"))

    def test_compatible_fallbacks(self):
        assert [str(p) for p in Platform.parse("linux/arm/v7").compatible()] == \
            ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
        assert [str(p) for p in Platform.parse("linux/amd64/v3").compatible()] == \
            ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"]

    def test_build_args(self):
        assert Platform.parse("linux/arm/v7").build_args("TARGET") == {
            "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"}

    def test_parse_list_dedups(self):
        got = parse_platforms("linux/amd64, linux/arm64,linux/x86_64,arm")
        assert [str(p) for p in got] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]

    def test_dict_round_trip(self):
        d = {"architecture": "arm", "os": "linux", "variant": "v7", "os.version": "1", "os.features": ["x"]}
        assert Platform.from_dict(d).to_dict() == d


class TestReference:
    @pytest.mark.parametrize("text,full,familiar", [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("me/app:1.0", "docker.io/me/app:1.0", "me/app:1.0"),
        ("docker.io/library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "alpine:3"),
        ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b:c"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("ghcr.io/o/r", "ghcr.io/o/r:latest", "ghcr.io/o/r:latest"),
        ("127.0.0.1:5000/x@sha256:" + HEX, "127.0.0.1:5000/x@sha256:" + HEX, "127.0.0.1:5000/x@sha256:" + HEX),
        ("a/b:t@sha256:" + HEX, "docker.io/a/b:t@sha256:" + HEX, "a/b:t@sha256:" + HEX),
    ])
    def test_normalisation(self, text, full, familiar):
        ref = Reference.parse(text)
        assert str(ref) == full
        assert ref.familiar() == familiar

    @pytest.mark.parametrize("bad", ["", "UPPER/case", "a//b", "a:b:c", "a@sha256:12", ":tag",
                                     "a/b:" + "t" * 129, "-a/b", "a/b:-x"])
    def test_rejects(self, bad):
        with pytest.raises(InvalidReference):
            Reference.parse(bad)

    def test_parse_name_keeps_no_tag(self):
        assert Reference.parse_name("busybox").tag == ""


class TestDocuments:
    def _manifest(self):
        cfg = Descriptor.for_bytes(MediaType.OCI_CONFIG, b"{}")
        layer = Descriptor(MediaType.OCI_LAYER_GZIP.value, Digest("sha256:" + HEX), 10)
        return Manifest(config=cfg, layers=(layer,))

    def test_canonical_json_sorted_compact_utf8(self):
        assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()

    def test_manifest_round_trip_keeps_bytes(self):
        m = self._manifest()
        data = m.to_json()
        parsed = parse_document(data)
        assert isinstance(parsed, Manifest) and parsed == m and parsed.to_json() == data
        odd = json.dumps(m.to_dict(), indent=3).encode()
        assert parse_document(odd).to_json() == odd  # someone else's bytes are never re-serialised

    def test_index_select_with_fallback(self):
        m = self._manifest().descriptor(platform=Platform.parse("linux/arm/v6"))
        n = self._manifest().descriptor(platform=Platform("linux", "arm64", "v8"))
        idx = Index(manifests=(m, n))
        assert parse_document(idx.to_json()) == idx
        assert idx.select(Platform.parse("linux/arm/v7")) == m
        assert idx.select(Platform.parse("arm64")) == n
        assert idx.select(Platform.parse("linux/amd64")) is None

    def test_docker_schema2_read(self):
        doc = {"schemaVersion": 2, "mediaType": MediaType.DOCKER_MANIFEST.value,
               "config": {"mediaType": MediaType.DOCKER_CONFIG.value, "digest": "sha256:" + HEX, "size": 1},
               "layers": [{"mediaType": MediaType.DOCKER_LAYER_GZIP.value, "digest": "sha256:" + HEX, "size": 2}]}
        m = parse_document(json.dumps(doc).encode(), MediaType.DOCKER_MANIFEST.value)
        assert m.layers[0].kind.compression == "gzip" and m.config.kind.is_config

    @pytest.mark.parametrize("doc,content_type,msg", [
        ({"schemaVersion": 2, "manifests": [], "layers": []}, None, "both"),
        ({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX.value, "manifests": []},
         MediaType.OCI_MANIFEST.value, "contradicts"),
        ({"schemaVersion": 1, "manifests": []}, None, "schemaVersion"),
        ({"schemaVersion": 2, "config": {"digest": "sha256:" + HEX}, "layers": []}, None, "size"),
        ({"schemaVersion": 2, "manifests": [{"digest": "bad", "size": 1}]}, None, "invalid digest"),
        ([], None, "not a JSON object"),
    ])
    def test_refuses_bad_documents(self, doc, content_type, msg):
        with pytest.raises(InvalidDocument, match=msg):
            parse_document(json.dumps(doc).encode(), content_type)

    def test_refuses_oversized(self):
        with pytest.raises(InvalidDocument, match="limit"):
            parse_document(b" " * (4 * 1024 * 1024 + 1))


class TestConfig:
    def test_round_trip_keeps_unknown_fields(self):
        raw = {"architecture": "arm64", "os": "linux", "docker_version": "24", "created": "2020-01-01T00:00:00Z",
               "config": {"Env": ["A=1"], "ExposedPorts": {"80/tcp": {}}, "Cmd": [], "Labels": {"a": "b"}},
               "rootfs": {"type": "layers", "diff_ids": ["sha256:" + HEX]},
               "history": [{"created_by": "x", "empty_layer": True}]}
        cfg = ImageConfig.from_json(json.dumps(raw).encode())
        assert cfg.extra == {"docker_version": "24"}
        assert cfg.config.cmd == () and cfg.config.entrypoint is None
        assert json.loads(cfg.to_json()) == raw

    def test_with_env_replaces_in_place(self):
        c = ContainerConfig(env=("A=1", "B=2")).with_env("A", "3").with_env("C", "4")
        assert c.env == ("A=3", "B=2", "C=4") and c.env_dict()["A"] == "3"

    def test_rfc3339(self):
        assert rfc3339(0) == "1970-01-01T00:00:00Z"
        assert rfc3339(1700000000.9) == "2023-11-14T22:13:20Z"
