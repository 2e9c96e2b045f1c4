"""The benchmark table and the loop that runs it.

A benchmark is a row: a name, the dataset it builds, the Dockerfile, per-tool
extra flags and its targets. Adding one is adding a row (and a dataset maker if
it needs new data). Tools run alternately (buildah, ocibuild, buildah, ...) so
slow drift of the machine (thermal, background writeback) hits both alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from . import bases, datasets, ociout
from .registry import Registry

DATASETS: Mapping[str, Callable[[], list[datasets.FileSpec]]] = datasets.LAYOUTS


@dataclass(frozen=True)
class Targets:
    """What ocibuild must reach on a benchmark; None means no target on that axis."""

    max_wall_ratio: float | None = None   # ocibuild median / buildah median
    min_mb_per_s: float | None = None     # context bytes / ocibuild median, in 10^6 bytes/s
    min_compression_share: float | None = None  # ocibuild's compression ratio / buildah's
    max_seconds: float | None = None      # ocibuild's median wall time (or difference, with a baseline)
    max_alone_ratio: float | None = None  # with alone=True: ocibuild's build / the sum of its one-platform builds


@dataclass(frozen=True)
class Benchmark:
    name: str
    dataset: str
    dockerfile: str
    measures: str
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # tool name -> extra build flags
    targets: Targets = Targets()
    default: bool = True  # False: runs only when named by --only or --scale
    platforms: tuple[str, ...] = ()  # --platform for both tools; several make an image index
    bases: Mapping[str, str] = field(default_factory=dict)  # name FROM uses -> base image (bases.py)
    baseline: str | None = None  # a Dockerfile built in the same run; its time is subtracted
    push: str | None = None  # push this base image to a loopback registry instead of building
    again: bool = False  # with push: the registry already holds the image (existence checks only)
    reference: str = "buildah"  # what the `buildah` slot of --tools runs here (skopeo for pushes)
    warm: bool = False  # time a rebuild: the same build runs once untimed before, in the same tool state
    alone: bool = False  # after the timed build, build each platform alone (untimed, new tool states)


RUN3 = ("FROM busybox\n"
        "RUN mkdir /w && for i in $(seq 2000); do echo $i > /w/$i; done && md5sum /w/* > /sums\n")

# 2 s of sleep (waiting work: overlaps fully, however few cores) plus a little CPU work, which
# on 2 cores with QEMU for two platforms could not overlap more than 2x.
CONCURRENT = "FROM busybox\nRUN sleep 2 && seq 30000 | md5sum > /sum\n"

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("big", "big", "FROM scratch\nCOPY . /data/\n",
              "1 GiB in 2,000 files, half incompressible: hashing and compression throughput",
              targets=Targets(max_wall_ratio=0.15, min_mb_per_s=300, min_compression_share=0.95)),
    Benchmark("big-256m", "big-256m", "FROM scratch\nCOPY . /data/\n",
              "`big` at 0.25 GiB (same file count): with `big`, shows whether peak RSS grows with bytes",
              targets=Targets(min_compression_share=0.95), default=False),
    Benchmark("small", "small", "FROM scratch\nCOPY . /app/\n",
              "50,000 files of 1-4 KiB: per-file overhead (stat, open, tar headers)",
              targets=Targets(max_wall_ratio=0.3)),
    Benchmark("run3", "empty", RUN3,
              "a RUN writing and checksumming 2,000 files, for 3 platforms (2 under QEMU) on busybox",
              platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"), bases={"busybox": "busybox"},
              targets=Targets(max_wall_ratio=0.7), default=False),
    Benchmark("runtrue", "empty", "FROM base\nRUN true\n",
              "fixed cost of one RUN on a 20,000-file base: (FROM base + RUN true) - (FROM base), base already unpacked",
              platforms=("linux/amd64",), bases={"base": "files20k"}, baseline="FROM base\n", warm=True,
              targets=Targets(max_seconds=0.3), default=False),
    Benchmark("push", "big", "", "push a 1 GiB image (0.7 GB of gzip layers) to a loopback registry",
              push="big", reference="skopeo", targets=Targets(max_wall_ratio=0.8), default=False),
    Benchmark("push-again", "big", "", "the same push again, nothing changed: existence checks only",
              push="big", again=True, reference="skopeo", targets=Targets(max_seconds=1.0), default=False),
    Benchmark("rebuild", "small-200", RUN3 + "RUN echo hi > /hi\nCOPY . /ctx/\n",
              "no-change rebuild of run3 + 2 steps, 3 platforms: every step cached (buildah --layers=true)",
              platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"), bases={"busybox": "busybox"}, warm=True,
              targets=Targets(max_wall_ratio=0.15, max_seconds=1.0), default=False),
    Benchmark("concurrent", "empty", CONCURRENT,
              "3 platforms of a 2 s RUN (mostly sleep): the build against the sum of one-platform builds",
              platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"), bases={"busybox": "busybox"}, alone=True,
              targets=Targets(max_alone_ratio=1.0), default=False),
)
SCALE = ("big-256m", "big")
PUSH_DEST = "bench/big:1"


def select(only: list[str], scale: bool) -> list[Benchmark]:
    """Benchmarks named by --only (in table order), or the scale pair, or the defaults."""
    by_name = {b.name: b for b in BENCHMARKS}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(by_name)}")
    wanted = set(only) | (set(SCALE) if scale else set())
    return [b for b in BENCHMARKS if (b.name in wanted if wanted else b.default)]


@dataclass
class Context:
    """Where a benchmark session keeps things, and how it talks."""

    cache_dir: Path
    work_dir: Path
    repeat: int
    keep: bool
    log: Callable[[str], None] = print


def run_benchmark(bench: Benchmark, tools: list, ctx: Context) -> dict:
    """Run `bench` `ctx.repeat` times per tool, alternating tools; return its JSON record."""
    ds = datasets.ensure(ctx.cache_dir, bench.dataset, DATASETS[bench.dataset](), log=ctx.log)
    images = {name: bases.ensure(ctx.cache_dir, key, ctx.log) for name, key in bench.bases.items()}
    pushed = bases.ensure(ctx.cache_dir, bench.push, ctx.log) if bench.push else None
    home = ctx.work_dir / bench.name
    home.mkdir(parents=True)
    for name, text in (("Dockerfile", bench.dockerfile), ("Dockerfile.baseline", bench.baseline)):
        if text:
            (home / name).write_text(text)
    ctx.log(f"[{bench.name}] {ds.bytes / 2**20:,.0f} MiB in {ds.files:,} files; the page cache is warmed "
            f"before every run")
    runs: dict[str, list[dict]] = {t.name: [] for t in tools}
    with Registry(home / "registry") if pushed else contextlib.nullcontext() as registry:
        job = Job(bench, ds, home, images, pushed, registry)
        if registry and bench.again:  # untimed: the image is in the registry before the first timed run
            _prime(tools[-1], job, ctx)
        for i in range(ctx.repeat):
            for tool in tools:
                if runs[tool.name] and not runs[tool.name][-1]["ok"]:
                    continue  # it failed once; the rest of its runs would fail the same way
                runs[tool.name].append(_one_run(tool, job, home / f"{tool.name}-{i + 1}", ctx))
    for scratch in sorted(p for p in home.iterdir() if p.is_dir()):
        _discard(scratch, scratch.with_suffix(".tar"), ctx)
    label = {t.name: bench.reference if t.name == "buildah" else t.name for t in tools}
    return {"name": bench.name, "measures": bench.measures, "dockerfile": bench.dockerfile,
            "baseline": bench.baseline, "platforms": list(bench.platforms), "reference": bench.reference,
            "bases": {name: str(image.layout) for name, image in images.items()},
            "pushed": str(pushed.layout) if pushed else None,
            "dataset": {"name": ds.name, "path": str(ds.context), "files": ds.files, "bytes": ds.bytes,
                        "generate_seconds": ds.generate_seconds, "generated_now": ds.generated_now},
            "targets": vars(bench.targets),
            "tools": {label[name]: summarize(rs) for name, rs in runs.items()}}


@dataclass(frozen=True)
class Job:
    """What every run of one benchmark shares."""

    bench: Benchmark
    ds: datasets.Dataset
    home: Path
    images: Mapping[str, bases.Image]
    pushed: bases.Image | None
    registry: Registry | None

    def warm_paths(self) -> list[Path]:
        if self.pushed:
            return [self.pushed.layout, self.pushed.archive]
        return [self.ds.context, *(i.layout for i in self.images.values())]


def _execute(tool, job: Job, scratch: Path, out: Path, ctx: Context):
    """One timed run of `tool`: a push, a build, or a build minus its baseline build."""
    bench = job.bench
    if job.pushed:
        if not bench.again:
            job.registry.empty()
        return tool.push(job.pushed, f"{job.registry.host}/{PUSH_DEST}", scratch, job.registry.host)
    common = dict(extra=bench.flags.get(tool.name, ()), platforms=bench.platforms, bases=job.images)
    dockerfile, run = job.home / "Dockerfile", None
    if bench.warm:  # first, untimed, into the same scratch: the timed build is a rebuild
        # With a baseline, only the baseline is built first: it warms what both share (the base
        # image unpacked, in the tool's store) without making the measured step a cache hit.
        prime = job.home / ("Dockerfile.baseline" if bench.baseline else "Dockerfile")
        first = tool.build(prime, job.ds.context, scratch / "first.tar", scratch, prefix="first-", cache=True,
                           **common)
        if not first.ok:
            return first
        os.sync()
    if bench.baseline:  # the build without the step being measured: in its own tool state, or warm
        base_scratch = scratch if bench.warm else scratch / "baseline"
        base_scratch.mkdir(exist_ok=True)
        run = tool.build(job.home / "Dockerfile.baseline", job.ds.context, base_scratch / "baseline.tar",
                         base_scratch, prefix="baseline-", cache=bench.warm, **common)
        if not bench.warm:
            tool.cleanup(base_scratch)
        run.baseline = frozenset(run.steps)
        if not run.ok:
            return run
    run = tool.build(dockerfile, job.ds.context, out, scratch, run=run, cache=bench.warm, **common)
    if bench.warm:
        run.untimed["first build"] = first.seconds
    for platform in bench.platforms if bench.alone and run.ok else ():
        side = scratch / f"alone-{platform.replace('/', '-')}"
        side.mkdir()
        os.sync()
        one = tool.build(dockerfile, job.ds.context, side / "out.tar", side,
                         **{**common, "platforms": (platform,)})
        tool.cleanup(side)
        if not one.ok:
            return one
        run.untimed[f"{platform} alone"] = one.seconds
    return run


def _untimed(run) -> dict:
    """The side builds' times; with one-platform builds, their sum and the timed build's ratio to it."""
    if not run.untimed:
        return {}
    alone = [s for k, s in run.untimed.items() if k.endswith(" alone")]
    extra = {"alone_sum_seconds": round(sum(alone), 3), "alone_ratio": round(run.seconds / sum(alone), 3)} if alone else {}
    return {"untimed": {k: round(s, 3) for k, s in run.untimed.items()}, **extra}


def _prime(tool, job: Job, ctx: Context) -> None:
    scratch = job.home / "prime"
    scratch.mkdir()
    run = tool.push(job.pushed, f"{job.registry.host}/{PUSH_DEST}", scratch, job.registry.host)
    ctx.log(f"[{job.bench.name}] untimed first push by {tool.name}: {run.seconds:.2f} s"
            + ("" if run.ok else f" FAILED: {run.failed_step().stderr_tail(5)}"))


def _one_run(tool, job: Job, scratch: Path, ctx: Context) -> dict:
    scratch.mkdir()
    out = scratch.with_suffix(".tar")
    noise = _prepare(*job.warm_paths())
    run = _execute(tool, job, scratch, out, ctx)
    record = {"ok": run.ok, "seconds": round(run.seconds, 3), "cpu_seconds": round(run.cpu_seconds, 3),
              "maxrss_kib": run.maxrss_kib, **noise, **_untimed(run),
              "steps": {k: {"seconds": round(s.seconds, 3), "user_seconds": round(s.user_seconds, 3),
                            "system_seconds": round(s.system_seconds, 3),
                            "maxrss_kib": s.maxrss_kib, "returncode": s.returncode}
                        for k, s in run.steps.items()}}
    if run.ok:
        record.update(_layers(job.pushed.archive if job.pushed else out))
    else:
        step = run.failed_step()
        tail = step.stderr_tail()
        last = tail.splitlines()[-1].strip() if tail else "no stderr"
        record.update(error=f"exit {step.returncode}: {last}", command=step.argv, stderr_tail=tail)
    ctx.log(_run_line(job.bench.name, run.tool, scratch.name, record))
    tool.cleanup(scratch)  # deletion waits for the end of the benchmark: see _discard
    return record


def _prepare(*paths: Path) -> dict:
    """Untimed set-up before a run; returns how busy the machine was just before it.

    The context is read again before every run, not once per benchmark: some
    hosts (DAMON proactive reclaim, see README) evict file pages untouched for a
    minute, so one read at the start would leave later runs reading from disk.
    """
    os.sync()  # flush the previous run's writes now, not during this run's timing
    start = time.perf_counter()
    for path in paths:
        datasets.warm(path)
    return {"warm_seconds": round(time.perf_counter() - start, 3), "load_before": os.getloadavg()[0],
            "cpu_pressure_before": _pressure("cpu")}


def _pressure(resource: str) -> float | None:
    """PSI "some avg10" (% of the last 10 s that a task waited), None where PSI is off."""
    try:
        with open(f"/proc/pressure/{resource}") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def _layers(out: Path) -> dict:
    try:
        layers = ociout.layers_of(out)
    except ociout.NotAnImage as e:
        return {"ok": False, "error": str(e)}
    return {"manifests": layers.manifests, "layers": layers.count, "layer_bytes": layers.bytes,
            "layer_media_types": list(layers.media_types)}


def _run_line(bench: str, tool: str, run_name: str, r: dict) -> str:
    head = f"[{bench}] {run_name}:"
    if not r["ok"]:
        tail = r.get("stderr_tail", "")
        cmd = " ".join(r.get("command", []))
        return f"{head} FAILED ({r['error']})\n    command: {cmd}" + (
            f"\n    stderr (last lines):\n{_indent(tail)}" if tail else "")
    steps = ", ".join(f"{k} {s['seconds']:.2f} s" for k, s in r["steps"].items())
    system = sum(s["system_seconds"] for s in r["steps"].values())
    return (f"{head} {r['seconds']:.2f} s ({steps}), CPU {r['cpu_seconds']:.2f} s (system {system:.2f}), peak RSS {r['maxrss_kib'] / 1024:,.0f} MiB, "
            f"layers {r['layer_bytes'] / 2**20:,.1f} MiB; load before {r['load_before']:.1f}")


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def _discard(scratch: Path, out: Path, ctx: Context) -> None:
    """Delete the tool's state (always) and its output and logs (unless --keep).

    Called once all runs of a benchmark are done, not between runs: ext4's inode
    allocator skips inodes deleted in the last few minutes (recently_deleted() in
    fs/ext4/ialloc.c), so deleting one run's 100,000+ files made the next run's
    file creation slower and slower (buildah on `small`: 28 s, 69 s, 110 s, nearly
    all of the growth in system time). Each run still starts from an empty root.
    """
    for p in [p for p in scratch.iterdir() if p.is_dir()] if ctx.keep else [scratch]:
        remove_tree(p, ctx.log)
    if not ctx.keep:
        out.unlink(missing_ok=True)


def remove_tree(path: Path, log: Callable[[str], None] = print) -> bool:
    """rmtree that refuses to descend through a mount point; True if `path` is gone.

    A RUN that left a bind mount of / or /dev under a buildah root must not turn
    cleanup into a disaster.
    """
    mounted = [m for m in _mount_points() if m == str(path) or m.startswith(f"{path}/")]
    if mounted:
        log(f"not deleting {path}: still mounted: {', '.join(mounted)}")
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def summarize(runs: list[dict]) -> dict:
    """Median, spread and peaks over the successful runs of one tool."""
    good = [r for r in runs if r["ok"]]
    summary: dict = {"runs": runs, "ok_runs": len(good)}
    if not good:
        summary["error"] = runs[-1].get("error") if runs else "not run"
        return summary
    secs = [r["seconds"] for r in good]
    summary.update(median_seconds=statistics.median(secs), min_seconds=min(secs), max_seconds=max(secs),
                   median_cpu_seconds=statistics.median(r["cpu_seconds"] for r in good),
                   max_load_before=max(r["load_before"] for r in good),
                   maxrss_kib=max(r["maxrss_kib"] for r in good),
                   layer_bytes=int(statistics.median(r["layer_bytes"] for r in good)),
                   layer_media_types=good[0]["layer_media_types"],
                   step_median_seconds={k: statistics.median(r["steps"][k]["seconds"] for r in good)
                                        for k in good[0]["steps"]})
    if "untimed" in good[0]:
        summary["untimed_median_seconds"] = {k: statistics.median(r["untimed"][k] for r in good)
                                             for k in good[0]["untimed"]}
    if "alone_ratio" in good[0]:
        summary.update(median_alone_sum_seconds=statistics.median(r["alone_sum_seconds"] for r in good),
                       median_alone_ratio=statistics.median(r["alone_ratio"] for r in good))
    return summary
