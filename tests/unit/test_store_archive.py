"""OCI and docker archives: round trips, determinism, hostile members, open_source, external readers."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from ocibuild.errors import DigestMismatch, InvalidDocument, InvalidReference, NotFound
from ocibuild.oci import IMAGE_NAME, REF_NAME, Descriptor, Digest, Manifest, MediaType, Platform
from ocibuild.store import (DockerArchive, OciArchive, OciLayout, copy, load_config, load_document, manifest_for,
                            open_source, walk, write_docker_archive, write_oci_archive)
from ocibuild.store.archive import OciArchiveWriter
from support.validate import validate_docker_archive, validate_oci_archive
from test_store_support import gzip_bytes, layer_tar, put_image, put_multi, run

AMD64 = Platform.parse("linux/amd64")


@pytest.fixture
def layout(tmp_path):
    layout = OciLayout(tmp_path / "layout")
    layout.tag(put_multi(layout), "multi", image_name="docker.io/library/app:multi")
    layout.tag(put_image(layout, "linux/arm64"), "single")
    return layout


def blobs_of(source, desc):
    return {d.digest: source.read_blob(d.digest) for d in walk(source, desc)}


def test_oci_archive_round_trip(layout, tmp_path):
    out = tmp_path / "image.tar"
    write_oci_archive(layout, list(layout.index().manifests), out)
    with open_source(out) as archive:
        assert isinstance(archive, OciArchive)
        assert archive.index().manifests == layout.index().manifests
        for name in ("multi", "single"):
            top = layout.resolve(name)
            assert archive.resolve(name) == top
            assert blobs_of(archive, top) == blobs_of(layout, top)
        desc, manifest = manifest_for(archive, archive.resolve("multi"), Platform.parse("linux/arm64"))
        assert load_config(archive, manifest.config).architecture == "arm64"
        with archive.open_blob(manifest.layers[0].digest) as f:
            assert f.read() == layout.read_blob(manifest.layers[0].digest)
        again = OciLayout(tmp_path / "again")
        assert copy(archive, again, archive.resolve("multi")) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "image.tar", "layout"]  # no temp left


def test_oci_archive_is_deterministic_and_normalised(layout, tmp_path):
    entries = list(layout.index().manifests)
    write_oci_archive(layout, entries, tmp_path / "a.tar")
    write_oci_archive(layout, entries, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    write_oci_archive(layout, entries, tmp_path / "c.tar", epoch=1700000000)
    with tarfile.open(tmp_path / "a.tar") as a, tarfile.open(tmp_path / "c.tar") as c:
        members = a.getmembers()
        names = [m.name for m in members]
        first = [f"blobs/sha256/{d.digest.encoded}" for d in first_image(layout, entries).layers]
        assert names[:2 + len(first)] == ["blobs", "blobs/sha256", *first]
        rest = names[2 + len(first):-2]
        assert rest == sorted(rest) and not set(rest) & set(first)
        assert names[-2:] == ["index.json", "oci-layout"]
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
            assert m.mode == (0o755 if m.isdir() else 0o644)
        assert {m.mtime for m in c.getmembers()} == {1700000000}


def first_image(source, entries) -> Manifest:
    doc = load_document(source, entries[0])
    while not isinstance(doc, Manifest):
        doc = load_document(source, doc.manifests[0])
    return doc


def streamed_archive(layout, entries, path, streams) -> None:
    """Write an archive with ``streams``: (layers before, the layer streamed), in turn."""
    with OciArchiveWriter(path) as archive:
        for preceding, layer in streams:
            with archive.stream_layer(layout, preceding) as member:
                if member is not None:
                    member.write(layout.read_blob(layer.digest))
                    assert member.finish(layer)
        archive.finish(layout, entries)


def test_an_archive_with_streamed_layers_has_the_same_bytes(layout, tmp_path):
    entries = list(layout.index().manifests)
    write_oci_archive(layout, entries, tmp_path / "plain.tar")
    layers = first_image(layout, entries).layers
    # in order, the layers before the streamed one written from the store on the way
    streamed_archive(layout, entries, tmp_path / "a.tar", [(layers[:-1], layers[-1])])
    # a layer of another image streamed first: finish cuts it out and writes the right ones
    other = first_image(layout, [layout.resolve("single")]).layers
    assert other[-1].digest not in {d.digest for d in layers}
    streamed_archive(layout, entries, tmp_path / "b.tar", [([], other[-1])])
    plain = (tmp_path / "plain.tar").read_bytes()
    assert (tmp_path / "a.tar").read_bytes() == plain and (tmp_path / "b.tar").read_bytes() == plain


def test_a_discarded_stream_leaves_nothing(layout, tmp_path):
    entries = list(layout.index().manifests)
    layers = first_image(layout, entries).layers
    with OciArchiveWriter(tmp_path / "a.tar") as archive:
        with archive.stream_layer(layout, []) as member:
            member.write(b"half a layer")
        # the lock is free again, and nothing of the discarded member is left
        with archive.stream_layer(layout, []) as member:
            member.write(layout.read_blob(layers[0].digest))
            assert not member.finish(layers[1])  # the size is not that layer's: refused, discarded
        archive.finish(layout, entries)
    write_oci_archive(layout, entries, tmp_path / "plain.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "plain.tar").read_bytes()
    with pytest.raises(RuntimeError), OciArchiveWriter(tmp_path / "failed.tar"):
        raise RuntimeError("the build failed")
    assert not any(p.name.startswith((".failed", "failed")) for p in tmp_path.iterdir())


def test_oci_archive_to_stdout(layout, tmp_path, capsysbinary):
    entries = list(layout.index().manifests)
    write_oci_archive(layout, entries, tmp_path / "file.tar")
    write_oci_archive(layout, entries, "-")
    streamed = capsysbinary.readouterr().out
    with tarfile.open(fileobj=io.BytesIO(streamed)) as a, tarfile.open(tmp_path / "file.tar") as b:
        assert [(m.name, m.size) for m in a] == [(m.name, m.size) for m in b]


def test_a_tampered_source_writes_no_archive(layout, tmp_path):
    top = layout.resolve("single")
    layer = load_document(layout, top).layers[1]
    path = layout.blobs.path(layer.digest)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(DigestMismatch):
        write_oci_archive(layout, [top], tmp_path / "out.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]


def test_tampered_archive_member_fails_reads(layout, tmp_path):
    top = layout.resolve("single")
    manifest = load_document(layout, top)
    out = tmp_path / "x.tar"
    write_oci_archive(layout, [top], out)
    data = bytearray(out.read_bytes())
    config = layout.read_blob(manifest.config.digest)
    at = data.find(config)
    data[at + 2] ^= 0x01
    out.write_bytes(bytes(data))
    with OciArchive(out) as archive:
        with pytest.raises(DigestMismatch):
            archive.read_blob(manifest.config.digest)
        with archive.open_blob(manifest.config.digest) as f, pytest.raises(DigestMismatch):
            f.read()


def test_docker_archive_round_trip(layout, tmp_path):
    desc, manifest = manifest_for(layout, layout.resolve("multi"), AMD64)
    out = tmp_path / "docker.tar"
    write_docker_archive(layout, desc, ["app:v1", "ghcr.io/me/app:2"], out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert {"manifest.json", "repositories", "index.json", "oci-layout"} <= set(names)
        items = json.loads(tar.extractfile("manifest.json").read())
        repositories = json.loads(tar.extractfile("repositories").read())
        index = json.loads(tar.extractfile("index.json").read())
    assert items == [{"Config": f"blobs/sha256/{manifest.config.digest.encoded}",
                      "RepoTags": ["app:v1", "ghcr.io/me/app:2"],
                      "Layers": [f"blobs/sha256/{d.digest.encoded}" for d in manifest.layers]}]
    assert repositories == {"app": {"v1": manifest.layers[-1].digest.encoded},
                            "ghcr.io/me/app": {"2": manifest.layers[-1].digest.encoded}}
    assert [m["annotations"] for m in index["manifests"]] == [
        {IMAGE_NAME: "docker.io/library/app:v1", REF_NAME: "v1"},
        {IMAGE_NAME: "ghcr.io/me/app:2", REF_NAME: "2"}]
    with open_source(out) as oci_view:  # both views: OCI preferred, original digests kept
        assert isinstance(oci_view, OciArchive)
        assert oci_view.resolve("app:v1").digest == desc.digest
    with DockerArchive(out) as docker_view:
        top = docker_view.resolve("app:v1")
        assert docker_view.resolve("ghcr.io/me/app:2").digest == top.digest
        assert top.platform == AMD64
        synthesised = load_document(docker_view, top)
        assert isinstance(synthesised, Manifest)
        assert synthesised.config.digest == manifest.config.digest
        assert [(d.digest, d.size, d.media_type) for d in synthesised.layers] == \
            [(d.digest, d.size, MediaType.OCI_LAYER_GZIP.value) for d in manifest.layers]
        assert blobs_of(docker_view, top) | {top.digest: b""} == \
            {**{d: layout.read_blob(d) for d in (manifest.config.digest, *(x.digest for x in manifest.layers))},
             top.digest: b""}


def test_docker_archive_refuses_indexes_and_digest_refs(layout, tmp_path):
    with pytest.raises(ValueError, match="one platform"):
        write_docker_archive(layout, layout.resolve("multi"), ["app:v1"], tmp_path / "x.tar")
    single = layout.resolve("single")
    with pytest.raises(InvalidReference):
        write_docker_archive(layout, single, [f"app@{single.digest}"], tmp_path / "x.tar")
    write_docker_archive(layout, single, [], tmp_path / "untagged.tar")
    with DockerArchive(tmp_path / "untagged.tar") as archive:
        assert len(archive.index().manifests) == 1 and archive.resolve(None).annotations == {}


def test_docker_archive_output_is_deterministic(layout, tmp_path):
    desc = layout.resolve("single")
    write_docker_archive(layout, desc, ["app:v1"], tmp_path / "a.tar")
    write_docker_archive(layout, desc, ["app:v1"], tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def _tar(path, members):
    """members: (name, bytes) for files, (name, ("sym"|"lnk", target)) for links."""
    with tarfile.open(path, "w") as tar:
        for name, value in members:
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type = tarfile.SYMTYPE if value[0] == "sym" else tarfile.LNKTYPE
                info.linkname = value[1]
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return path


def test_old_style_docker_save_archive(tmp_path):
    raw = layer_tar({"bin/sh": b"#!\n"})
    zipped = gzip_bytes(layer_tar({"etc/hostname": b"box\n"}))
    config = json.dumps({"architecture": "arm64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_hex = Digest.of(config).encoded
    path = _tar(tmp_path / "old.tar", [
        ("./aaaa/layer.tar", raw), ("aaaa/json", b"{}"), ("bbbb/layer.tar", zipped),
        ("cccc/layer.tar", ("sym", "../aaaa/layer.tar")),
        (f"{config_hex}.json", config),
        ("manifest.json", json.dumps([{"Config": f"{config_hex}.json", "RepoTags": ["old:1"],
                                       "Layers": ["aaaa/layer.tar", "bbbb/layer.tar", "cccc/layer.tar"]}]).encode()),
        ("repositories", b'{"old":{"1":"cccc"}}'),
    ])
    with open_source(path) as archive:
        assert isinstance(archive, DockerArchive)
        top = archive.resolve("old:1")
        assert top.platform == Platform.parse("linux/arm64")
        manifest = load_document(archive, top)
        assert [(d.media_type, d.digest) for d in manifest.layers] == [
            (MediaType.OCI_LAYER.value, Digest.of(raw)), (MediaType.OCI_LAYER_GZIP.value, Digest.of(zipped)),
            (MediaType.OCI_LAYER.value, Digest.of(raw))]
        assert archive.read_blob(Digest.of(zipped)) == zipped
        assert manifest.config.digest == Digest.of(config)
        copy(archive, OciLayout(tmp_path / "imported"), top)


@pytest.mark.parametrize("members", [
    [("../evil", b"x")],
    [("/etc/evil", b"x")],
    [("blobs/../../evil", b"x")],
    [("blobs/sha256/abc", ("sym", "../../../etc/passwd"))],
    [("blobs/sha256/abc", ("sym", "/etc/passwd"))],
])
def test_hostile_member_names_are_refused(tmp_path, members):
    path = _tar(tmp_path / "evil.tar", [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                                        ("index.json", b'{"schemaVersion":2,"manifests":[]}'), *members])
    with pytest.raises(InvalidDocument, match="refusing"):
        open_source(path)
    with pytest.raises(InvalidDocument, match="refusing"):
        OciArchive(path)


def test_open_source_errors(tmp_path, layout):
    assert isinstance(open_source(layout.path), OciLayout)
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotFound, match="oci-layout"):
        open_source(tmp_path / "plain")
    with pytest.raises(NotFound, match="no such file"):
        open_source(tmp_path / "missing.tar")
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidDocument, match="not a tar"):
        open_source(tmp_path / "junk")
    with pytest.raises(InvalidDocument, match="neither"):
        open_source(_tar(tmp_path / "other.tar", [("hello.txt", b"hi")]))


def test_foreign_layers_missing_from_the_source_are_skipped(tmp_path):
    layout = OciLayout(tmp_path / "l")
    single = put_image(layout, "linux/amd64")
    manifest = load_document(layout, single)
    foreign = Descriptor(MediaType.OCI_LAYER_NONDIST_GZIP.value, Digest.of(b"not here"), 8,
                         urls=("https://example.com/layer",))
    with_foreign = layout.put_document(Manifest(config=manifest.config, layers=(*manifest.layers, foreign)))
    write_oci_archive(layout, [with_foreign], tmp_path / "f.tar")
    with OciArchive(tmp_path / "f.tar") as archive:
        assert not archive.has_blob(foreign.digest) and archive.has_blob(manifest.layers[0].digest)


@pytest.mark.needs_tool("skopeo", "umoci", "oci-image-tool")
def test_the_shared_validator_accepts_both_archives(layout, tmp_path):
    write_oci_archive(layout, list(layout.index().manifests), tmp_path / "oci.tar")
    assert validate_oci_archive(tmp_path / "oci.tar").blobs_checked == 8
    desc, _ = manifest_for(layout, layout.resolve("multi"), AMD64)
    write_docker_archive(layout, desc, ["app:v1"], tmp_path / "docker.tar")
    assert validate_docker_archive(tmp_path / "docker.tar").platforms == ["linux/amd64"]


@pytest.mark.needs_tool("skopeo")
def test_skopeo_reads_both_archives(layout, tmp_path):
    write_oci_archive(layout, list(layout.index().manifests), tmp_path / "oci.tar")
    out = json.loads(run("skopeo", "inspect", "--override-arch", "arm64", f"oci-archive:{tmp_path / 'oci.tar'}:multi"))
    assert out["Architecture"] == "arm64" and len(out["Layers"]) == 2
    desc, manifest = manifest_for(layout, layout.resolve("multi"), AMD64)
    write_docker_archive(layout, desc, ["app:v1"], tmp_path / "docker.tar")
    config = load_config(layout, manifest.config)
    for ref in ("", ":app:v1", ":docker.io/library/app:v1"):  # skopeo finds the image by its RepoTag
        out = json.loads(run("skopeo", "inspect", f"docker-archive:{tmp_path / 'docker.tar'}{ref}"))
        assert out["Architecture"] == "amd64"
        assert out["Layers"] == [str(d) for d in config.diff_ids]  # skopeo shows docker-archive layers uncompressed
    run("skopeo", "copy", f"docker-archive:{tmp_path / 'docker.tar'}", f"oci:{tmp_path / 'copied'}:x")
    out = json.loads(run("skopeo", "inspect", f"oci-archive:{tmp_path / 'docker.tar'}:v1"))
    assert out["Digest"] == desc.digest


def test_archive_members_read_from_several_threads_at_once(tmp_path):
    """A push reads four blobs at a time; tarfile's member streams share one file object."""
    import hashlib
    import threading

    from ocibuild.store.tarfiles import TarMembers

    blobs = {f"blobs/sha256/{i:064x}": bytes([i]) * (300_000 + i) for i in range(8)}
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    members = TarMembers(path)
    wrong = []

    def read(name):
        with members.open(name) as f:
            got = b"".join(iter(lambda: f.read(4096), b""))
        if hashlib.sha256(got).digest() != hashlib.sha256(blobs[name]).digest():
            wrong.append(name)

    for _ in range(20):
        threads = [threading.Thread(target=read, args=(n,)) for n in blobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert wrong == []
