"""ocibuild.layer.compress: one pass, right digests, reproducible whatever the threads."""

from __future__ import annotations

import hashlib
import io
import subprocess

import pytest

import ocibuild.layer.compress as compress
from ocibuild.errors import ContentError, InvalidOption
from ocibuild.layer.compress import Compression, LayerWriter, build_layer
from ocibuild.layer.decompress import open_layer
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.tarwriter import write_tar


def mixed(size: int, seed: bytes = b"s") -> bytes:
    """Half incompressible, half text-like: compressors take different paths on each."""
    text = b"".join(b"line %d of a fairly repetitive log file, status=%d\n" % (i, i % 7) for i in range(size // 80))
    return hashlib.shake_128(seed).digest(size // 2) + text[: size - size // 2]


def blob(data: bytes, compression: Compression, level=None, chunk: int | None = None) -> tuple[bytes, object]:
    out = io.BytesIO()
    with LayerWriter(out, compression, level) as writer:
        view = memoryview(data)
        step = chunk or len(data) or 1
        for start in range(0, len(data), step):
            writer.write(view[start:start + step])
    return out.getvalue(), writer.result


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("compression", list(Compression))
def test_digest_diff_id_and_size_in_one_pass(compression):
    data = mixed(5 << 20)
    out, result = blob(data, compression, chunk=100_003)
    assert result.diff_id == sha(data)
    assert result.digest == sha(out) and result.size == len(out)
    assert result.media_type == compression.media_type
    with open_layer(io.BytesIO(out), compression.media_type) as stream:
        assert stream.read() == data


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_output_does_not_depend_on_threads_or_write_sizes(compression, monkeypatch):
    data = mixed(7 << 20 | 12345)
    reference, _ = blob(data, compression, chunk=1 << 20)
    for threads in (1, 2, 3, 8):
        monkeypatch.setattr(compress, "_threads", lambda t=threads: t)
        for chunk in (None, 777_777, 4096, (1 << 20) + 1):
            assert blob(data, compression, chunk=chunk)[0] == reference, (threads, chunk)


def test_gzip_header_is_reproducible():
    out, _ = blob(b"hello", Compression.GZIP)
    assert out[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FCOMMENT/FEXTRA
    assert out[4:8] == bytes(4)             # mtime 0


def test_default_gzip_level_is_isal_1():
    assert blob(mixed(1 << 20), Compression.GZIP)[0] == blob(mixed(1 << 20), Compression.GZIP, level=1)[0]


@pytest.mark.needs_tool("sha256sum", "gzip")
def test_digests_match_sha256sum_and_gzip(tmp_path):
    entries = [TarEntry("d", Kind.DIR, 0o755), TarEntry("d/data", Kind.FILE, 0o644, data=mixed(3 << 20))]
    path = tmp_path / "layer.tar.gz"
    with open(path, "wb") as f:
        result = build_layer(entries, f, Compression.GZIP)
    hexdigest = subprocess.run(["sha256sum", str(path)], capture_output=True, check=True, text=True).stdout.split()[0]
    assert result.digest == "sha256:" + hexdigest and result.size == path.stat().st_size
    tar = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
    assert result.diff_id == sha(tar)
    subprocess.run(["gzip", "-t", str(path)], check=True)


@pytest.mark.needs_tool("zstd")
def test_zstd_tool_reads_our_blobs(tmp_path):
    data = mixed(2 << 20)
    out, result = blob(data, Compression.ZSTD)
    (tmp_path / "l.zst").write_bytes(out)
    assert subprocess.run(["zstd", "-dc", str(tmp_path / "l.zst")], capture_output=True, check=True).stdout == data


def test_build_layer_equals_write_tar_then_compress():
    entries = [TarEntry("a", Kind.FILE, 0o644, data=b"a" * 1000)]
    raw = io.BytesIO()
    write_tar(entries, raw)
    out = io.BytesIO()
    result = build_layer(entries, out, Compression.NONE)
    assert out.getvalue() == raw.getvalue() and result.digest == result.diff_id == sha(raw.getvalue())


@pytest.mark.parametrize("compression", list(Compression))
def test_open_layer_detects_the_format_without_a_media_type(compression):
    data = mixed(300_000)
    out, _ = blob(data, compression)
    for media_type in (None, "application/vnd.docker.image.rootfs.diff.tar.gzip"):
        with open_layer(io.BytesIO(out), media_type) as stream:
            assert stream.read() == data


def test_open_layer_knows_nondistributable_media_types():
    out, _ = blob(b"x" * 1000, Compression.GZIP)
    with open_layer(io.BytesIO(out), "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip") as s:
        assert s.read() == b"x" * 1000


def test_open_layer_refuses_unknown_media_types():
    with pytest.raises(ContentError, match="unsupported layer media type"):
        open_layer(io.BytesIO(b""), "application/vnd.oci.image.layer.v1.tar+bzip2")


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_corrupt_compressed_data_is_a_content_error(compression):
    out, _ = blob(mixed(1 << 20), compression)
    broken = out[:len(out) // 2] + bytes(1000) + out[len(out) // 2 + 1000:]
    with pytest.raises(ContentError), open_layer(io.BytesIO(broken), compression.media_type) as stream:
        stream.read()
    with pytest.raises(ContentError), open_layer(io.BytesIO(out[:len(out) // 2])) as stream:
        stream.read()


def test_open_layer_does_not_close_the_blob():
    source = io.BytesIO(blob(b"data", Compression.GZIP)[0])
    with open_layer(source) as stream:
        stream.read()
    assert not source.closed


@pytest.mark.parametrize("compression,level", [(Compression.GZIP, -1), (Compression.GZIP, 10),
                                               (Compression.ZSTD, 23)])
def test_bad_levels_are_refused(compression, level):
    with pytest.raises(InvalidOption):
        LayerWriter(io.BytesIO(), compression, level)


def test_zlib_levels_above_3_map_to_isal_best():
    data = mixed(1 << 20)
    assert blob(data, Compression.GZIP, level=9)[0] == blob(data, Compression.GZIP, level=3)[0]


def test_result_needs_close_and_write_after_close_fails():
    writer = LayerWriter(io.BytesIO(), Compression.GZIP)
    with pytest.raises(ValueError):
        writer.result
    writer.close()
    writer.close()  # idempotent
    assert writer.result.diff_id == sha(b"")
    with pytest.raises(ValueError):
        writer.write(b"x")


def test_a_failing_destination_surfaces():
    class Full(io.RawIOBase):
        def write(self, b):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        with LayerWriter(Full(), Compression.GZIP) as writer:
            for _ in range(8):
                writer.write(mixed(1 << 20))


@pytest.mark.parametrize("level", [0, 1, 3])
@pytest.mark.parametrize("size", [0, 5, compress.GZIP_BLOCK, 3 * compress.GZIP_BLOCK + 4321])
def test_compressible_data_gives_igzip_threadeds_bytes_for_the_same_blocks(level, size):
    # Compressible blocks are what isal.igzip_threaded (our writer before) makes of them.
    from isal import igzip_threaded
    data = mixed(2 * size)[size:]  # the text half
    ours, _ = blob(data, Compression.GZIP, level=level, chunk=333_333)
    theirs = io.BytesIO()
    f = igzip_threaded.open(theirs, "wb", compresslevel=level, threads=2, block_size=compress.GZIP_BLOCK)
    for start in range(0, len(data), compress.GZIP_BLOCK):
        f.raw.write(data[start:start + compress.GZIP_BLOCK])
    f.close()
    assert ours == theirs.getvalue()


@pytest.mark.parametrize("level", [0, 1, 3])
def test_incompressible_blocks_are_stored(level):
    noise = hashlib.shake_128(b"n").digest(3 * compress.GZIP_BLOCK + 999)
    out, result = blob(noise + mixed(1 << 20)[1 << 19:], Compression.GZIP, level=level)
    assert noise[:0xFFFF] in out  # stored: the bytes as they are, in pieces of at most 64 KiB
    assert len(out) < len(noise) * 1.001 + (1 << 19)
    with open_layer(io.BytesIO(out), Compression.GZIP.media_type) as stream:
        assert sha(stream.read()) == result.diff_id


def test_a_block_that_is_partly_text_is_compressed():
    data = hashlib.shake_128(b"n").digest(compress.GZIP_BLOCK // 2) + mixed(compress.GZIP_BLOCK)[1 << 19:]
    out, _ = blob(data, Compression.GZIP)
    assert len(out) < 0.7 * len(data)


def test_an_error_in_the_with_block_stops_the_threads():
    import threading
    before = threading.active_count()
    with pytest.raises(KeyError):
        with LayerWriter(io.BytesIO(), Compression.GZIP) as writer:
            writer.write(mixed(3 << 20))
            raise KeyError("boom")
    assert threading.active_count() == before
