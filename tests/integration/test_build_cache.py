"""The build cache in real builds: what is reported CACHED, what reruns, what the output is,
and caches carried to an empty cache directory through a registry, a directory and an image."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ocibuild.builder import cachekeys
from ocibuild.cli import main
from ocibuild.layerspec import build as build_base
from ocibuild.layerspec import load_spec
from support.ocilayout import Layout, select

REPO = Path(__file__).resolve().parents[2]
DEB_CACHE = Path("/var/tmp/ocibuild-debcache")
PLATFORMS = "linux/amd64,linux/arm64"

# Three stages: `deps` and `tools` do not depend on each other; the final one reads both.
DOCKERFILE = """\
FROM busybox AS deps
COPY lib/ /lib-src/
RUN --mount=type=cache,target=/probe,id=probe echo ran >> /probe/runs && cat /lib-src/* | md5sum > /deps.sum

FROM busybox AS tools
ARG TOOL=t1
RUN echo $TOOL > /tool

FROM busybox
COPY --from=deps /deps.sum /deps.sum
COPY --from=tools /tool /tool
COPY app/ /app/
RUN ls /app | wc -l > /app-count
ENV MODE=prod
CMD ["sh"]
"""


@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    layout = tmp_path_factory.mktemp("layers") / "busybox"
    build_base(load_spec(REPO / "layers" / "busybox.yaml"), layout, cache=DEB_CACHE)
    return f"busybox=oci-layout://{layout}:latest"


@pytest.fixture
def ctx(tmp_path) -> Path:
    root = tmp_path / "ctx"
    for folder, count in (("lib", 10), ("app", 1000)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            (root / folder / f"f{i:04}").write_text(f"{folder} {i}\n")
    (root / "Dockerfile").write_text(DOCKERFILE)
    return root


def build(busybox, ctx, cache: Path, *argv, capsys) -> tuple[dict[str, str], str]:
    """(step title -> CACHED or DONE, output text) of one build through the CLI."""
    capsys.readouterr()
    code = main(["build", "--progress", "plain", "--cache-dir", str(cache), "--build-context", busybox,
                 "--platform", PLATFORMS, *argv, str(ctx)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return steps(out.err), out.err


def steps(log: str) -> dict[str, str]:
    titles = dict(re.findall(r"^#(\d+) (\[.*)$", log, re.M))
    status = dict(re.findall(r"^#(\d+) (CACHED|DONE)\b", log, re.M))
    return {titles[n]: status[n] for n in titles}


def ran(result: dict[str, str]) -> set[str]:
    """The steps that ran, as `platform stage-step text` without the step numbers."""
    return {re.sub(r" \d+/\d+\]", "]", t) for t, s in result.items() if s == "DONE"}


def index_digest(out: Path) -> str:
    with Layout.open(out) as layout:
        return layout.read_json("index.json")["manifests"][0]["digest"]


def layers(out: Path, platform: str) -> list[str]:
    with Layout.open(out) as layout:
        return [d["digest"] for d in select(layout, platform).manifest["layers"]]


def probe_runs(cache: Path) -> int:
    """How often the deps RUN ran with this cache dir: it appends to its cache mount."""
    return sum(p.read_text().count("ran") for p in (cache / "mounts").rglob("runs"))


def test_a_rebuild_with_no_change_is_all_cached_and_identical(busybox, ctx, tmp_path, capsys):
    cache = tmp_path / "cache"
    first, _ = build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    assert "CACHED" not in {first[t] for t in first if "RUN" in t}
    again, _ = build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'b.tar'}", capsys=capsys)
    assert set(again.values()) == {"CACHED"} and len(again) == len(first) == 2 * 13
    assert index_digest(tmp_path / "a.tar") == index_digest(tmp_path / "b.tar")
    assert probe_runs(cache) == 2  # once per platform, in the first build only


def test_a_fresh_checkout_of_the_same_files_is_all_cached(busybox, ctx, tmp_path, capsys, monkeypatch):
    """The first build, into an empty cache, keys `COPY lib/` and `COPY app/` by the digests the
    tar writer took as it read the files (no record could match, so the layer came first) and
    reads no file a second time; a copy of the context with new inodes and times must then find
    those records under the keys it computes by reading the files before looking them up."""
    cache = tmp_path / "cache"
    for i, path in enumerate(sorted((ctx / "lib").iterdir())):  # some span the tar writer's 1 MiB buffer
        path.write_bytes(hashlib.sha256(str(i).encode()).digest() * (8192 << (i % 3)))
    hashed = []
    digest = cachekeys.file_digest
    monkeypatch.setattr(cachekeys, "file_digest", lambda path: hashed.append(path) or digest(path))
    build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    assert hashed == []
    checkout = shutil.copytree(ctx, tmp_path / "checkout", copy_function=shutil.copy)  # times: now
    assert os.stat(checkout / "app" / "f0000").st_mtime_ns != os.stat(ctx / "app" / "f0000").st_mtime_ns
    again, _ = build(busybox, checkout, cache, "-o", f"type=oci,dest={tmp_path / 'b.tar'}", capsys=capsys)
    assert set(again.values()) == {"CACHED"}
    assert index_digest(tmp_path / "a.tar") == index_digest(tmp_path / "b.tar")
    assert len(hashed) == 1010  # lib/ and app/, once for both platforms


def test_a_one_file_change_reruns_only_what_reads_it(busybox, ctx, tmp_path, capsys):
    cache = tmp_path / "cache"
    build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    (ctx / "app" / "f0500").write_text("changed\n")
    result, _ = build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'b.tar'}", capsys=capsys)
    assert ran(result) == {f"[{p} stage-2] {text}" for p in PLATFORMS.split(",")
                           for text in ("COPY app/ /app/", "RUN ls /app | wc -l > /app-count",
                                        "ENV MODE=prod", 'CMD ["sh"]')}
    for platform in PLATFORMS.split(","):
        before, after = layers(tmp_path / "a.tar", platform), layers(tmp_path / "b.tar", platform)
        assert before[:-2] == after[:-2]  # busybox, the two COPY --from layers: the same blobs
        assert before[-2] != after[-2]


def test_no_cache_and_no_cache_filter(busybox, ctx, tmp_path, capsys):
    """With SOURCE_DATE_EPOCH the rerun `tools` stage makes the same bytes, so what reads it stays
    cached; without, its new file times would (rightly) rerun the steps after `COPY --from=tools`."""
    cache = tmp_path / "cache"
    epoch = ("--source-date-epoch", "0")
    build(busybox, ctx, cache, *epoch, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    result, _ = build(busybox, ctx, cache, *epoch, "--no-cache-filter", "tools", "-o",
                      f"type=oci,dest={tmp_path / 'b.tar'}", capsys=capsys)
    assert {t.split("]")[0].split()[1] for t in ran(result)} == {"tools"}
    assert index_digest(tmp_path / "a.tar") == index_digest(tmp_path / "b.tar")
    result, _ = build(busybox, ctx, cache, "--no-cache", "-o", f"type=oci,dest={tmp_path / 'c.tar'}",
                      capsys=capsys)
    assert set(result.values()) == {"DONE"}
    assert probe_runs(cache) == 4


def test_a_changed_build_arg_reruns_the_steps_that_see_it(busybox, ctx, tmp_path, capsys):
    cache = tmp_path / "cache"
    build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    result, _ = build(busybox, ctx, cache, "--build-arg", "TOOL=t2", "-o", f"type=oci,dest={tmp_path / 'b.tar'}",
                      capsys=capsys)
    rerun = {re.sub(r"^\[\S+ ", "[", t) for t in ran(result)}
    assert rerun == {"[tools] ARG TOOL=t1", "[tools] RUN echo $TOOL > /tool", "[stage-2] COPY --from=tools /tool /tool",
                     "[stage-2] COPY app/ /app/", "[stage-2] RUN ls /app | wc -l > /app-count",
                     "[stage-2] ENV MODE=prod", '[stage-2] CMD ["sh"]'}


def test_a_corrupt_record_or_missing_blob_is_a_miss_with_a_warning(busybox, ctx, tmp_path, capsys):
    cache = tmp_path / "cache"
    build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    # a step without a layer (FROM, ARG, ENV, CMD): its rerun changes no layer that is compared below
    records = [p for p in sorted((cache / "buildcache" / "records").rglob("*.json"))
               if "layer" not in json.loads(p.read_text())]
    records[0].write_text("{not json")
    app_layer = layers(tmp_path / "a.tar", "linux/amd64")[-2]
    (cache / "blobs" / "sha256" / app_layer.split(":")[1]).unlink()
    result, log = build(busybox, ctx, cache, "-o", f"type=oci,dest={tmp_path / 'b.tar'}", capsys=capsys)
    assert "malformed" in log or "not JSON" in log or "cache record" in log
    assert f"layer {app_layer} is missing" in log
    assert "DONE" in result.values()
    assert layers(tmp_path / "b.tar", "linux/amd64")[:-2] == layers(tmp_path / "a.tar", "linux/amd64")[:-2]


def _build_process(busybox, ctx, cache: Path, out: Path, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ocibuild", "build", "--progress", "plain", "--cache-dir",
                           str(cache), "--build-context", busybox, "--platform", PLATFORMS, *argv,
                           "-o", f"type=oci,dest={out}", str(ctx)], capture_output=True, text=True, env=env)


def test_cache_through_a_registry_to_an_empty_cache_dir(busybox, ctx, tmp_path, plain_registry):
    host = plain_registry.host
    ref = f"{host}/cached/app:buildcache"
    first = _build_process(busybox, ctx, tmp_path / "cache-a", tmp_path / "a.tar", "--insecure-registry", host,
                           "--cache-to", f"type=registry,ref={ref},mode=max")
    assert first.returncode == 0, first.stderr
    second = _build_process(busybox, ctx, tmp_path / "cache-b", tmp_path / "b.tar", "--insecure-registry", host,
                            "--cache-from", f"type=registry,ref={ref}")
    assert second.returncode == 0, second.stderr
    assert set(steps(second.stderr).values()) == {"CACHED"}, second.stderr
    assert probe_runs(tmp_path / "cache-b") == 0  # no RUN executed on the second machine
    assert index_digest(tmp_path / "a.tar") == index_digest(tmp_path / "b.tar")
    inspected = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                               capture_output=True, text=True)
    assert inspected.returncode == 0 and "application/vnd.ocibuild.cache.v1+json" in inspected.stdout


def test_mode_min_exports_only_the_final_images_steps(busybox, ctx, tmp_path, capsys):
    """The other stages rerun; with SOURCE_DATE_EPOCH they make the same bytes, so the final
    stage's steps that read them are found in the exported cache."""
    epoch = ("--source-date-epoch", "0")
    build(busybox, ctx, tmp_path / "cache-a", *epoch, "--cache-to", f"type=local,dest={tmp_path / 'min'}",
          "-o", f"type=oci,dest={tmp_path / 'a.tar'}", capsys=capsys)
    result, _ = build(busybox, ctx, tmp_path / "cache-b", *epoch, "--cache-from",
                      f"type=local,src={tmp_path / 'min'}", "-o", f"type=oci,dest={tmp_path / 'b.tar'}",
                      capsys=capsys)
    assert {re.sub(r"^\[\S+ ", "[", t).split("]")[0] for t in ran(result)} == {"[deps", "[tools"}
    assert "[linux/amd64 stage-2 5/7] RUN ls /app | wc -l > /app-count" in result
    assert all(s == "CACHED" for t, s in result.items() if "stage-2" in t and "FROM" not in t)


def test_inline_cache_travels_with_the_pushed_image(busybox, ctx, tmp_path, plain_registry):
    host = plain_registry.host
    image = f"{host}/cached/inline:1"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pushed = subprocess.run([sys.executable, "-m", "ocibuild", "build", "--progress", "plain", "--cache-dir",
                             str(tmp_path / "cache-a"), "--build-context", busybox, "--platform", PLATFORMS,
                             "--insecure-registry", host, "--cache-to", "type=inline", "-t", image, "--push",
                             "--source-date-epoch", "0",
                             str(ctx)], capture_output=True, text=True, env=env)
    assert pushed.returncode == 0, pushed.stderr
    second = _build_process(busybox, ctx, tmp_path / "cache-b", tmp_path / "b.tar", "--insecure-registry", host,
                            "--cache-from", image, "--source-date-epoch", "0")
    assert second.returncode == 0, second.stderr
    final = {t: s for t, s in steps(second.stderr).items() if "stage-2" in t}
    assert set(final.values()) == {"CACHED"}, second.stderr


def test_two_builds_at_once_on_one_cache_dir(busybox, ctx, tmp_path):
    cache = tmp_path / "cache"
    results: dict[str, subprocess.CompletedProcess] = {}

    def one(name: str) -> None:
        results[name] = _build_process(busybox, ctx, cache, tmp_path / f"{name}.tar", "--source-date-epoch", "0")

    threads = [threading.Thread(target=one, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), [r.stderr for r in results.values()]
    alone = _build_process(busybox, ctx, tmp_path / "cache-alone", tmp_path / "z.tar", "--source-date-epoch", "0")
    assert alone.returncode == 0, alone.stderr
    assert index_digest(tmp_path / "x.tar") == index_digest(tmp_path / "y.tar") == index_digest(tmp_path / "z.tar")


def test_a_secret_never_counts_in_a_key(busybox, tmp_path, capsys):
    """Another secret value does not rerun the step, and no record holds or hashes it."""
    ctx = tmp_path / "sctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=secret,id=tok test -s /run/secrets/tok\n")
    cache = tmp_path / "cache"
    for value in ("first-s3cr3t-value", "second-s3cr3t-value"):
        (tmp_path / "tok").write_text(value)
        result, _ = build(busybox, ctx, cache, "--secret", f"id=tok,src={tmp_path / 'tok'}",
                          "-o", f"type=oci,dest={tmp_path / 'o.tar'}", capsys=capsys)
    assert set(result.values()) == {"CACHED"}
    stored = b"".join(p.read_bytes() for p in (cache / "buildcache").rglob("*") if p.is_file())
    for value in ("first-s3cr3t-value", "second-s3cr3t-value"):
        assert value.encode() not in stored
        assert hashlib.sha256(value.encode()).hexdigest().encode() not in stored
