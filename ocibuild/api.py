"""The Python API: `ocibuild.build(...)` with plain Python values, the same build as the CLI's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ocibuild.builder import BuildOptions, BuildResult, ContextSpec, OutputSpec
from ocibuild.builder.options import COMPRESSIONS
from ocibuild.builder import build as _run
from ocibuild.builder.events import Reporter
from ocibuild.cache.spec import CacheSpec
from ocibuild.layer.compress import Compression
from ocibuild.oci import Platform, parse_platforms


def build(
    context: str = ".",
    *,
    dockerfile: str | None = None,
    platforms: str | Iterable[str | Platform] | None = None,
    tags: Iterable[str] = (),
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    target: str | None = None,
    build_contexts: Mapping[str, str] | None = None,
    outputs: Iterable[str | OutputSpec] = (),
    compression: str | Compression = "gzip",
    compression_level: int | None = None,
    source_date_epoch: int | None = None,
    cache_dir: str | None = None,
    metadata_file: str | None = None,
    no_cache: bool = False,
    no_cache_filter: Iterable[str] = (),
    cache_to: Iterable[str] = (),
    cache_from: Iterable[str] = (),
    jobs: int | None = None,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build a Dockerfile for one or more platforms and write the outputs.

    ``outputs`` take buildx's `--output` syntax ("type=oci,dest=out.tar"); with none, the image
    is kept in the local image store under ``tags``. ``build_contexts`` map names to a directory
    or ``oci-layout://path[:tag]``. ``cache_to`` / ``cache_from`` take buildx's `--cache-to` /
    `--cache-from` syntax; ``jobs`` bounds the stages built at once (default: the CPUs). Returns a ``BuildResult`` whose ``descriptor`` is the image
    index (several platforms) or manifest (one) and ``manifests`` the per-platform manifests.
    """
    if isinstance(platforms, str):
        plats = parse_platforms(platforms)
    else:
        plats = [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms or ()]
    if isinstance(compression, str):
        compression = COMPRESSIONS[compression]
    options = BuildOptions(
        context=context, dockerfile=dockerfile, platforms=plats, tags=list(tags),
        build_args=dict(build_args or {}), labels=dict(labels or {}), target=target,
        build_contexts=[ContextSpec.parse(f"{k}={v}") for k, v in (build_contexts or {}).items()],
        outputs=[o if isinstance(o, OutputSpec) else OutputSpec.parse(o) for o in outputs],
        compression=compression, compression_level=compression_level,
        source_date_epoch=source_date_epoch, cache_dir=cache_dir, metadata_file=metadata_file,
        no_cache=no_cache, no_cache_filter=list(no_cache_filter),
        cache_to=[CacheSpec.parse(c, export=True) for c in cache_to],
        cache_from=[CacheSpec.parse(c, export=False) for c in cache_from],
    )
    if jobs:
        options.jobs = jobs
    return _run(options, reporter)
