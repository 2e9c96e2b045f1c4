"""`ocibuild du` and `ocibuild prune` on a real cache: a build with RUN on the busybox base and a
`-t` tag, records of the build cache, and a build holding the cache lock in another process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocibuild.cache.records import Record, RecordStore
from ocibuild.cli import main
from ocibuild.oci import Descriptor, MediaType
from ocibuild.store.blobs import BlobStore
from ocibuild.store.images import ImageStore
from support.busybox import build_context, build_layout
from support.ocilayout import Layout
from support.validate import check_layout

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = ("FROM busybox\n"
              "RUN --mount=type=cache,target=/var/cache/app echo kept > /var/cache/app/note\n"
              "RUN mkdir -p /data && head -c 200000 /dev/urandom > /data/blob\n"
              "COPY Dockerfile /data/\n")  # a context digest for the build cache to remember
HOUR = 3600.0


@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    return build_context(build_layout(tmp_path_factory.mktemp("layers") / "busybox"))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def built(busybox, tmp_path, cache) -> Path:
    """A cache after one build tagged demo:1, plus a record whose layer only the build cache holds."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    argv = ["build", "--progress", "plain", "--cache-dir", str(cache), "--build-context", busybox,
            "-t", "demo:1", str(ctx)]
    assert main(argv) == 0
    put_record(cache, "a" * 64, os.urandom(50_000), age=0)
    return cache


def put_record(cache: Path, key: str, layer: bytes, *, age: float) -> Descriptor:
    """A record (used ``age`` seconds ago) whose layer blob is ``layer``: what the builder writes."""
    desc = Descriptor(MediaType.OCI_LAYER_GZIP.value, BlobStore(cache).put_bytes(layer), len(layer))
    store = RecordStore(cache)
    store.put(key, Record("2024-01-01T00:00:00Z", desc, desc.digest))
    when = time.time() - age
    os.utime(store.root / key[:2] / f"{key}.json", (when, when))
    return desc


def du(cache: Path, capsys, *flags: str) -> dict[str, list[str]]:
    """`ocibuild du` rows by their first column (the last such row, with --verbose)."""
    capsys.readouterr()
    assert main(["du", "--cache-dir", str(cache), *flags]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        cells = line.split("  ")
        rows[cells[0].strip()] = [c.strip() for c in cells[1:] if c.strip()]
    rows["Total:"] = out.split("Total:")[1].split()
    return rows


def prune(cache: Path, capsys, *flags: str) -> str:
    capsys.readouterr()
    assert main(["prune", "--cache-dir", str(cache), *flags]) == 0
    return capsys.readouterr().out


def assert_image_intact(cache: Path) -> None:
    """demo:1 still resolves, and every blob of the store hashes to its name and descriptor."""
    assert ImageStore(cache).lookup("demo:1") is not None
    with Layout.open(cache) as layout:
        report, problems = check_layout(layout)
    assert problems == [] and report.blobs_checked >= 3
    assert main(["inspect", str(cache), "--ref", "docker.io/library/demo:1"]) == 0


def test_du_shows_what_the_build_left(built, capsys):
    rows = du(built, capsys)
    assert int(rows["build cache"][0]) >= 2       # the RUN steps' records and ours
    assert rows["unpacked bases"][0] == "1"
    assert rows["cache mounts"][0] == "1"
    assert rows["local images"][0] == "1"
    capsys.readouterr()
    assert main(["du", "--cache-dir", str(built), "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["local", "images", "docker.io/library/demo:1"] for line in lines)
    assert any(line.split()[:3] == ["build", "cache", "aaaaaaaaaaaa"] for line in lines)
    assert any(line.split()[:4] == ["build", "cache", "context", "digests"] for line in lines)


def test_prune_frees_the_cache_and_keeps_the_tagged_image(built, capsys):
    stale = built / "blobs" / "sha256" / ".partial-abandoned"
    stale.write_bytes(b"x" * 10_000)
    os.utime(stale, (time.time() - HOUR, time.time() - HOUR))
    only_cache = put_record(built, "b" * 64, os.urandom(30_000), age=0)
    out = prune(built, capsys, "-f")
    assert "aaaaaaaaaaaa" in out and "bbbbbbbbbbbb" in out and "unpacked bases" in out
    assert out.rstrip().splitlines()[-1].startswith("Total:") and out.rstrip().endswith("reclaimed")
    assert list(RecordStore(built).items()) == []
    assert not (built / "buildcache" / "sources").exists(), "the context digests go with the records"
    assert not any((built / "rootfs").iterdir())
    assert not stale.exists() and not BlobStore(built).has(only_cache.digest)
    assert any((built / "mounts").iterdir()), "cache mounts stay without --all"
    assert_image_intact(built)
    rows = du(built, capsys)
    assert rows["build cache"][0] == rows["unpacked bases"][0] == rows["orphaned blobs"][0] == "0"
    assert "0B" in prune(built, capsys), "a second prune finds nothing"


def test_prune_all_also_removes_cache_mounts(built, capsys):
    out = prune(built, capsys, "--all")
    assert "cache mounts" in out
    assert not any((built / "mounts").iterdir())
    assert_image_intact(built)


def test_keep_storage_keeps_the_most_recently_used(cache, capsys):
    layers = {key: put_record(cache, key, os.urandom(100_000), age=age)
              for key, age in (("1" * 64, 3 * HOUR), ("2" * 64, 2 * HOUR), ("3" * 64, HOUR))}
    # about 3 x 104 KiB of layers and records: keeping 250 KiB means dropping the oldest only
    out = prune(cache, capsys, "--keep-storage", "250KB")
    assert "111111111111" in out and "222222222222" not in out
    assert sorted(k for k, _, _ in RecordStore(cache).items()) == ["2" * 64, "3" * 64]
    blobs = BlobStore(cache)
    assert [blobs.has(d.digest) for d in layers.values()] == [False, True, True]
    out = prune(cache, capsys, "--filter", "until=90m")
    assert [k for k, _, _ in RecordStore(cache).items()] == ["3" * 64]


HOLD = """
import sys, time
from ocibuild.cache.lock import build_lock
with build_lock(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()   # until the test closes our stdin
"""


def test_prune_waits_for_a_running_build(built, tmp_path):
    build = subprocess.Popen([sys.executable, "-c", HOLD, str(built)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert build.stdout.readline().strip() == "holding"
        cmd = [sys.executable, "-m", "ocibuild", "prune", "--cache-dir", str(built)]
        gave_up = subprocess.run(cmd + ["--timeout", "0.5"], capture_output=True, text=True, cwd=REPO)
        assert gave_up.returncode == 1
        assert "gave up after 0.5s (--timeout) waiting for 1 running build to finish" in gave_up.stderr
        assert any(RecordStore(built).items()), "nothing is removed when prune gives up"
        pruner = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        assert pruner.stderr.readline().strip() == "waiting for 1 running build to finish"
        time.sleep(0.5)
        assert pruner.poll() is None, "prune went ahead while a build held the cache"
        assert any(RecordStore(built).items())
    finally:
        build.stdin.close()
        build.wait(30)
    out, err = pruner.communicate(timeout=60)
    assert pruner.returncode == 0, err
    assert "reclaimed" in out and list(RecordStore(built).items()) == []


def test_an_unreadable_image_stops_the_blob_sweep_only(built, capsys):
    """A tagged image whose manifest is missing hides which blobs it needs: keep every blob."""
    image = ImageStore(built).lookup("demo:1")
    BlobStore(built).delete(image.digest)
    before = set(BlobStore(built).digests())
    capsys.readouterr()
    assert main(["prune", "--cache-dir", str(built)]) == 0
    err = capsys.readouterr().err
    assert "local image docker.io/library/demo:1" in err and "no blobs were removed" in err
    assert list(RecordStore(built).items()) == []
    assert set(BlobStore(built).digests()) == before
