"""A build: the Dockerfile's needed stages for every platform, then one image or index.

`Build` holds what is shared by all stages and platforms (the store, the context, the layer
maker, the clock); `StageRunner` executes instructions. Nothing here writes outputs: the
result is a descriptor in the local blob store that `export` hands to the outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ocibuild.builder.add import plan_add
from ocibuild.builder import cachekeys
from ocibuild.builder.base import load_image, tree_from_dir, unpacked
from ocibuild.builder.caching import StepCache, export_caches, import_caches
from ocibuild.builder.events import NullReporter, Reporter, Steps
from ocibuild.builder.layers import LayerMaker
from ocibuild.builder.mounts import MountPlanner
from ocibuild.builder.run import unpack
from ocibuild.builder.options import BuildOptions, ContextSpec
from ocibuild.builder.sources import ContextFS
from ocibuild.builder.stage import StageRunner
from ocibuild.builder.state import ImageState
from ocibuild.dockerfile import (
    Dockerfile, GlobalScope, RunInstr, StageScope, expand_from, load_ignore, needed_stages, parse,
    stage_dependencies,
)
from ocibuild.dockerfile.ignore import match_component
from ocibuild.errors import BuildError, Cancelled, ContextError, NotFound, OcibuildError
from ocibuild.sandbox import check_platforms
from ocibuild.sandbox import choose as choose_sandbox
from ocibuild.oci import Descriptor, Index, Manifest, MediaType, Platform, Reference, host_platform, rfc3339
from ocibuild.cache import Record, RecordStore
from ocibuild.cache.lock import build_lock
from ocibuild.cache.inline import INLINE_KEY, inline_cache
from ocibuild.store.archive import OciArchiveWriter, open_source
from ocibuild.store.cachedir import cache_dir
from ocibuild.store.images import ImageStore


@dataclass
class BuildResult:
    """What a build made: the image index (several platforms) or manifest (one), in the local store."""

    descriptor: Descriptor
    manifests: dict[str, Descriptor]
    images: dict[str, ImageState] = field(repr=False, default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)  # `name@digest` of every push

    @property
    def digest(self):
        return self.descriptor.digest


class Build:
    def __init__(self, opts: BuildOptions, reporter: Reporter | None = None):
        self.opts = opts
        self.steps = Steps(reporter or NullReporter())
        self.cache = Path(opts.cache_dir) if opts.cache_dir else cache_dir()
        self.images = ImageStore(self.cache)
        self.blobs = self.images.layout.blobs
        self.epoch = opts.source_date_epoch
        self.mtime = self.epoch if self.epoch is not None else int(time.time())
        self.created = rfc3339(self.mtime)
        self.layers = LayerMaker(self.blobs, opts.compression, opts.compression_level)
        self.layer_format = [opts.compression.name, opts.compression_level]  # part of every step's key
        self.dockerfile, self.context_fs = self._load_definition()
        self.named = {c.name: c for c in opts.build_contexts}
        self.scratch = tempfile.mkdtemp(prefix="ocibuild-")
        self._stages: dict[tuple[str, int], ImageState] = {}
        self._unused: list[str] = []
        self._sandbox = None
        self._announced = False
        self._scopes: dict[tuple[str, int], StageScope] = {}
        self._bases: dict[tuple[str, str], ImageState] = {}
        self._jobs = threading.BoundedSemaphore(max(1, opts.jobs))  # stages building at once
        self.archive: OciArchiveWriter | None = None
        self._streamed: set[tuple[str, int]] = set()  # (platform, stage) of the first image's layers
        self.failed = threading.Event()  # set by the first failing stage: the others stop at their next step
        self._guard = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.content = cachekeys.ContentKeys(self.cache)
        self.cache_steps = StepCache(RecordStore(self.cache), self.blobs, warn=self.steps.reporter.warn,
                                     imported=import_caches(opts.cache_from, opts.platforms or [host_platform()],
                                                            opts.registry.options, self.steps.reporter.warn))

    def _load_definition(self) -> tuple[Dockerfile, ContextFS]:
        context = self.opts.context
        if not os.path.isdir(context):
            raise ContextError(f"build context {context!r} is not a directory")
        path = self.opts.dockerfile or os.path.join(context, "Dockerfile")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ContextError(f"cannot read the Dockerfile {path!r}: {e.strerror}") from None
        dockerfile = parse(text, filename=os.path.basename(path))
        ignore = load_ignore(context, path)
        return dockerfile, ContextFS(context, ignore.excluded, ignore.may_contain_exceptions)

    # -- running -------------------------------------------------------------------------

    def __enter__(self) -> "Build":
        """Hold the cache directory shared until the outputs are written: `prune` waits for us.
        Open the first OCI tar output, which the first platform's new layers go to as they are
        made (see ``layer_stream``); ``export`` finishes it."""
        self._lock = build_lock(self.cache, on_wait=self.steps.reporter.info)
        self._lock.__enter__()
        out = next((o for o in self.opts.outputs if o.type == "oci" and o.as_tar and o.dest != "-"), None)
        try:
            self.archive = OciArchiveWriter(out.dest).__enter__() if out is not None else None
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        """Remove the scratch space (unpacked stages, ADD archives) once the outputs are written,
        and the archive's temp file if it was not finished."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        try:
            if self.archive is not None:
                self.archive.__exit__(*exc)
        finally:
            self._lock.__exit__(*exc)

    def run(self) -> BuildResult:
        """Build every platform; file contents stay in the scratch space until the Build is closed."""
        platforms = self.opts.platforms or [host_platform()]
        self._preflight(platforms)
        self._streamed = {(str(platforms[0]), i) for i in self._final_chain(platforms[0])}
        with ThreadPoolExecutor(max_workers=len(platforms)) as pool:
            futures = [pool.submit(self._build_platform, p, multi=len(platforms) > 1) for p in platforms]
            images = dict(zip(map(str, platforms), _results(futures)))
        for name in self._unused:
            self.steps.reporter.warn(f"build argument {name!r} is not consumed by any instruction")
        manifests = {name: self._write_image(state) for name, state in images.items()}
        export_caches(self.opts.cache_to, self.cache_steps.used, images.values(), self.blobs,
                      self.opts.registry.options, self.steps.reporter.warn)
        if len(manifests) == 1:
            top = next(iter(manifests.values()))
        else:
            index = Index(manifests=tuple(manifests.values()))
            top = index.descriptor()
            self.blobs.put_bytes(index.to_json(), top.digest)
        return BuildResult(top, manifests, images)

    def _plan(self, platform: Platform) -> tuple[GlobalScope, list]:
        automatic = {**platform.build_args("TARGET"), **host_platform().build_args("BUILD")}
        scope = GlobalScope(self.dockerfile, self.opts.build_args, automatic)
        return scope, needed_stages(self.dockerfile, self.opts.target, scope)

    def _final_chain(self, platform: Platform) -> list[int]:
        """The stages whose layers make up the final image: the target and the stages it is FROM."""
        scope, order = self._plan(platform)
        chain, stage = [], order[-1]
        while stage is not None:
            chain.append(stage.index)
            parent = self.dockerfile.find_stage(expand_from(stage, scope)[0])
            stage = parent if parent is not None and parent.index < stage.index else None
        return chain

    def _preflight(self, platforms: list[Platform]) -> None:
        """Fail before any work when a stage with RUN targets a platform this machine cannot run."""
        running: list[Platform] = []
        for platform in platforms:
            scope, order = self._plan(platform)
            for stage in order:
                if any(isinstance(i, RunInstr) for i in stage.instructions):
                    requested = expand_from(stage, scope)[1]
                    running.append(Platform.parse(requested) if requested else platform)
        if running:
            check_platforms(list(dict.fromkeys(running)))

    def _build_platform(self, platform: Platform, *, multi: bool) -> ImageState:
        """The platform's needed stages, each as soon as the stages it reads are built, at most
        ``--jobs`` stages (of all platforms) at once."""
        scope, order = self._plan(platform)
        label = f"{platform} " if multi else ""
        futures: dict[int, Future] = {}
        with ThreadPoolExecutor(max_workers=len(order)) as pool:
            for stage in order:
                deps = [futures[d.stage] for d in stage_dependencies(self.dockerfile, stage, scope)
                        if d.stage is not None and d.stage in futures]
                futures[stage.index] = pool.submit(self._stage_after, deps, stage, platform, scope, label)
            state = _results([futures[stage.index] for stage in order])[-1]
        self._unused = scope.unused_build_args()
        for key, value in self.opts.labels.items():
            state.config = state.config.with_config(labels={**state.config.config.labels, key: value})
        return state

    def _stage_after(self, deps: list[Future], stage, platform: Platform, scope: GlobalScope,
                     label: str) -> ImageState:
        for dep in deps:
            dep.result()  # its error is the one reported, not a second one from here
        with self._jobs:
            if self.failed.is_set():
                raise Cancelled("cancelled: another part of the build failed")
            try:
                return self._build_stage(stage, platform, scope, label)
            except BaseException:
                self.failed.set()
                raise

    def _build_stage(self, stage, platform: Platform, scope: GlobalScope, label: str) -> ImageState:
        frm = stage.from_instr
        title = f"[{label}{stage.display_name} 1/{len(stage.instructions) + 1}] {frm.original}"
        try:
            base_name, requested = expand_from(stage, scope)
            stage_platform = Platform.parse(requested) if requested else platform
            state = self.steps.run(title, lambda step: self._from(step, stage, base_name, stage_platform,
                                                                  str(platform)))
        except OcibuildError as e:
            raise e.at(frm.location, "FROM") from None
        if not state.config.config.working_dir:  # BuildKit records "/" rather than nothing
            state.config = state.config.with_config(working_dir="/")
        parent = self.dockerfile.find_stage(base_name)
        from_stage = parent is not None and parent.index < stage.index
        if from_stage:
            stage_scope = scope.stage(parent=self._scopes[(str(platform), parent.index)])
        else:
            stage_scope = scope.stage(base_env=state.config.config.env)
        # ONBUILD triggers fire when an image is used as a base, not for a stage of the same file.
        StageRunner(self, label, platform, stage).run(state, stage_scope, run_triggers=not from_stage)
        self._stages[(str(platform), stage.index)] = state
        self._scopes[(str(platform), stage.index)] = stage_scope
        return state

    def _from(self, step: int, stage, name: str, platform: Platform, build_platform: str) -> ImageState:
        """The stage's starting image, its FROM step cached like any other (for its history time)."""
        state = self._base(name, platform, build_platform)
        key = cachekeys.digest_of("from", state.key)
        record = self.lookup(key, key, stage)
        if record is None:
            record = Record(self.created)
            self.cache_steps.store(key, record, key)
        else:
            self.steps.cached(step)
        state.key, state.keys = cachekeys.after(state.key, {"name": "FROM"}, record), state.keys + (key,)
        state.config = replace(state.config, created=record.created)
        return state

    def _base(self, name: str, platform: Platform, build_platform: str) -> ImageState:
        if name.lower() == "scratch":
            state = ImageState.scratch(platform)
            state.key = cachekeys.digest_of("scratch", str(platform))
            return state
        stage = self.dockerfile.find_stage(name)
        if stage is not None:
            return self._stages[(build_platform, stage.index)].child()
        return self._image(name, platform).child()

    def _image(self, name: str, platform: Platform) -> ImageState:
        """A named build context or an image of the local store, for ``platform``."""
        key = (name.lower(), str(platform))
        with self._guard:
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:
            return self._load_base(key, name, platform)

    def _load_base(self, key: tuple[str, str], name: str, platform: Platform) -> ImageState:
        if key not in self._bases:
            spec = self.named.get(name.lower())
            if spec is not None and spec.kind == "dir":
                raise BuildError(f"build context {name!r} is a directory, not an image")
            source, desc, what = self._locate(spec, name, platform)
            try:
                state = load_image(source, desc, platform, self.blobs, self.cache)
            except NotFound as e:
                raise NotFound(f"{what}: {e.message}") from None
            state.key = cachekeys.digest_of("image", [str(d.digest) for d in state.layers],
                                            hashlib.sha256(state.config.to_json()).hexdigest())
            self._bases[key] = state
        return self._bases[key]

    def _locate(self, spec: ContextSpec | None, name: str, platform: Platform):
        """Where an image comes from: a named context, the local image store, else its registry."""
        if spec is not None and spec.kind == "oci-layout":
            source = open_source(spec.path)
            return source, source.resolve(spec.ref or None), f"build context {spec.name!r}"
        ref = Reference.parse(spec.ref if spec is not None else name)
        desc = self.images.lookup(ref)
        if desc is not None:
            return self.images.layout, desc, f"local image {ref.familiar()!r}"
        source, desc = self.opts.registry.pull(ref, platform, self.blobs)
        return source, desc, f"image {ref.familiar()!r}"

    # -- services for StageRunner ----------------------------------------------------------

    def lookup(self, key: str, step: str, stage) -> Record | None:
        """The cached result of a step of ``stage``, unless --no-cache(-filter) says to run it.
        ``step`` is the key without the step's inputs (see StepCache.may_hit)."""
        return self.cache_steps.lookup(key, step) if self._uses_cache(stage) else None

    def may_hit(self, step: str, stage) -> bool:
        """Whether ``lookup`` could find anything for the step, whatever it reads."""
        return self._uses_cache(stage) and self.cache_steps.may_hit(step)

    def _uses_cache(self, stage) -> bool:
        return not (self.opts.no_cache or stage.name in self.opts.no_cache_filter
                    or str(stage.index) in self.opts.no_cache_filter)

    def layer_stream(self, platform: Platform, stage, state: ImageState):
        """A context manager: where the layer ``stage`` is about to add to ``state`` goes besides
        the store (the output archive, when it is that archive's next member), or None."""
        if self.archive is None or (str(platform), stage.index) not in self._streamed:
            return contextlib.nullcontext()
        return self.archive.stream_layer(self.images.layout, list(state.layers))

    def materialize(self, state: ImageState):
        """The tree of ``state``'s layers, from the cached unpacked chain (made on first need)."""
        diff_ids = [str(d) for d in state.config.diff_ids]
        root = unpacked(self.blobs, state.layers, diff_ids, self.cache)
        if root is None:
            return ImageState.scratch(state.platform).tree
        state.unpacked = (root, len(state.layers))
        return tree_from_dir(str(root / "rootfs"), json.loads((root / "owners.json").read_text()))

    def source_key(self, name: str, target: Platform, platform: Platform) -> str:
        """The cache identity of what `COPY --from=name` / `--mount=from=name` reads."""
        found = self.copy_source(name, target, platform)
        if isinstance(found, ContextFS):
            return self.content.of_dir(found, "")
        return found.key

    def mounts(self, target: Platform, platform: Platform) -> MountPlanner:
        """How RUN --mount finds its sources: the context, a stage, a named context or an image."""
        def source_dir(name: str | None) -> str:
            if not name:
                return self.context_fs.root
            found = self.copy_source(name, target, platform)
            if isinstance(found, ContextFS):
                return found.root
            if found.live is None:
                found.live = unpack(found, self.blobs, self.scratch)
            return found.live.path

        return MountPlanner(scratch=self.scratch, cache_root=str(self.cache / "mounts"),
                            secrets=self.opts.secrets, sources=source_dir)

    def sandbox(self, *, announce: bool = True):
        """The sandbox RUN steps use, chosen on first use, announced when a step first runs in it
        (cache keys need to know it too, without any step running)."""
        with self._guard:
            if self._sandbox is None:
                self._sandbox = choose_sandbox(self.opts.sandbox)
            if announce and not self._announced:
                self._announced = True
                self.steps.reporter.info(f"sandbox: {self._sandbox.name} ({self._sandbox.why})")
            return self._sandbox

    def copy_source(self, name: str, target: Platform, platform: Platform):
        """What `COPY --from=name` reads: an earlier stage (of this build's ``target``), a named
        context or an image (for the stage's ``platform``)."""
        stage = self.dockerfile.find_stage(name)
        if stage is not None:
            found = self._stages.get((str(target), stage.index))
            if found is None:
                raise BuildError(f"stage {name!r} has not been built before this step")
            return found
        spec = self.named.get(name.lower())
        if spec is not None and spec.kind == "dir":
            return ContextFS(spec.path)
        return self._image(name, platform)

    def plan_add(self, req, tree):
        return plan_add(req, tree, match_component, self.scratch)

    # -- the build cache -------------------------------------------------------------------

    def _inline_cache(self, state: ImageState):
        if not any(spec.type == "inline" for spec in self.opts.cache_to):
            return state.config
        used = self.cache_steps.used
        records = {k: used[k] for k in state.keys if k in used}
        return replace(state.config, extra={**state.config.extra, INLINE_KEY: inline_cache(records, state.layers)})

    # -- writing ---------------------------------------------------------------------------

    def _write_image(self, state: ImageState) -> Descriptor:
        config = self._inline_cache(state).to_json()
        config_desc = Descriptor.for_bytes(MediaType.OCI_CONFIG, config)
        self.blobs.put_bytes(config, config_desc.digest)
        manifest = Manifest(config=config_desc, layers=state.layers)
        data = manifest.to_json()
        desc = manifest.descriptor(platform=state.config.platform)
        self.blobs.put_bytes(data, desc.digest)
        return desc



def _results(futures: list[Future]) -> list:
    """Every result, once all are done; else the error that made the others cancel."""
    errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        raise next((e for e in failed if not isinstance(e, Cancelled)), failed[0])
    return [f.result() for f in futures]
