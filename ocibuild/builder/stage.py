"""Running one stage of a Dockerfile for one platform: FROM, then each instruction in order."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from ocibuild.builder import cachekeys, metadata, run
from ocibuild.builder.copy import CopyRequest, plan_copy, plan_mkdir
from ocibuild.builder.sources import ContextFS, SourceFS, TreeFS
from ocibuild.builder.state import ImageState
from ocibuild.builder.users import resolve_owner
from ocibuild.cache import Record
from ocibuild.dockerfile import StageScope, mount_fields, parse
from ocibuild.dockerfile import step as expand_step
from ocibuild.dockerfile import instructions as ins
from ocibuild.dockerfile.ignore import match_component
from ocibuild.errors import BuildError, Cancelled, NotSupported, OcibuildError
from ocibuild.layer.entry import TarEntry

BUILDKIT_COMMENT = "buildkit.dockerfile.v0"


class StageRunner:
    """Dispatches a stage's instructions. ``env`` is the build (see executor.Build)."""

    def __init__(self, env, platform_label: str, target, stage):
        self.env = env
        self.platform_label = platform_label
        self.target = target  # the build's platform, which names the stages COPY --from reads
        self.stage = stage

    def run(self, state: ImageState, scope: StageScope, *, run_triggers: bool = True) -> ImageState:
        """The base image's ONBUILD triggers (consumed: the result does not inherit them), then the stage."""
        stage = self.stage
        triggers = onbuild_triggers(state, stage.from_instr) if run_triggers else []
        instructions = [*triggers, *stage.instructions]
        total = len(instructions) + 1
        for i, instr in enumerate(instructions, start=2):
            if self.env.failed.is_set():
                raise Cancelled("cancelled: another part of the build failed")
            shown = instr.original.splitlines()[0]
            title = f"[{self.platform_label}{stage.display_name} {i}/{total}] " + \
                    (f"ONBUILD {shown}" if i - 2 < len(triggers) else shown)
            self.env.steps.run(title, self._dispatch, instr, state, scope)
        return state

    def _dispatch(self, step: int, instr: ins.Instruction, state: ImageState, scope: StageScope) -> None:
        """Serve the step from the cache, or run it and record what it made."""
        try:
            expanded = expand_step(instr, scope)
            text = cachekeys.instruction(expanded)
            key, record = self._cached_or_run(step, expanded, state, scope, text)
        except OcibuildError as e:
            raise e.at(instr.location, instr.name) from None
        state.key, state.keys = cachekeys.after(state.key, text, record), state.keys + (key,)
        state.config = replace(state.config, created=record.created)

    def _cached_or_run(self, step: int, instr: ins.Instruction, state: ImageState, scope: StageScope,
                       text: dict) -> tuple[str, Record]:
        def key(inputs) -> str:
            return cachekeys.digest_of("step", state.key, text, inputs, self.env.layer_format)

        inputs, prefix = self._inputs(instr, state, scope), key(None)
        if isinstance(inputs, cachekeys.ContextFiles):
            if inputs.known is None and not self.env.may_hit(prefix, self.stage):
                # No record exists for this instruction here, so no content can hit: the layer
                # is written first, and the digests of the files it read name the record.
                read: dict[str, str] = {}
                record = self._execute(step, instr, state, scope, read)
                full = key(self.env.content.digest(inputs, read))
                self.env.cache_steps.store(full, record, prefix)
                return full, record
            inputs = self.env.content.digest(inputs)
        full = key(inputs)
        record = self.env.lookup(full, prefix, self.stage)
        if record is not None:
            self._replay(instr, state, scope, record)
            self.env.steps.cached(step)
        else:
            record = self._execute(step, instr, state, scope)
            self.env.cache_steps.store(full, record, prefix)
        return full, record

    def _execute(self, step: int, instr: ins.Instruction, state: ImageState, scope: StageScope,
                 read: dict[str, str] | None = None) -> Record:
        """Run the step; ``read`` receives the digests of the context files a COPY/ADD read."""
        created = self.env.created
        text = self._describe(instr, state, scope)
        layer = self._make_layer(step, instr, state, scope, read)
        self._history(state, text, empty=layer is None, created=created)
        return Record(created, *layer) if layer else Record(created)

    def _replay(self, instr: ins.Instruction, state: ImageState, scope: StageScope, record: Record) -> None:
        text = self._describe(instr, state, scope)
        if record.layer is not None:
            state.with_layer(record.layer, record.diff_id)
            state.forget_tree(self.env.materialize)
            if state.live is not None:
                state.live.apply(self.env.blobs, record.layer)
        self._history(state, text, empty=record.layer is None, created=record.created)

    def _describe(self, instr: ins.Instruction, state: ImageState, scope: StageScope) -> str:
        """Apply the step's config change; return its history text."""
        if isinstance(instr, ins.RunInstr):
            return run.history_text(instr, state, scope.run_args())
        if isinstance(instr, ins.ArgInstr):
            return "ARG " + " ".join(_arg_text(a) for a in instr.args)
        if isinstance(instr, ins.WorkdirInstr):
            path = metadata.workdir_path(instr, state)
            state.config = state.config.with_config(working_dir=path)
            return f"WORKDIR {path}"
        if isinstance(instr, (ins.CopyInstr, ins.AddInstr)):
            return f"{instr.original} # buildkit"
        handler = metadata.HANDLERS.get(type(instr))
        if handler is None:
            raise NotSupported(f"{instr.name} is not supported")
        return handler(instr, state)

    def _make_layer(self, step: int, instr: ins.Instruction, state: ImageState, scope: StageScope,
                    read: dict[str, str] | None):
        """(descriptor, diff_id) of the layer the step adds, or None."""
        if isinstance(instr, ins.RunInstr):
            return self._run(step, instr, state, scope)
        if isinstance(instr, ins.WorkdirInstr):
            return self._workdir(step, state)
        if isinstance(instr, (ins.CopyInstr, ins.AddInstr)):
            return self._copy(step, instr, state, read)
        return None

    def _inputs(self, instr: ins.Instruction, state: ImageState, scope: StageScope):
        """What the step reads besides the chain and its own text (cachekeys.py)."""
        if isinstance(instr, ins.RunInstr):
            # proot cannot record owners (all root): its layers must not stand in for a real sandbox's
            owners = "root-only" if self.env.sandbox(announce=False).name == "proot" else "recorded"
            return {"env": scope.run_env(), "args": scope.run_args(), "network": self.env.opts.network,
                    "mounts": [self._mount_input(m, state) for m in instr.mounts], "owners": owners}
        if isinstance(instr, (ins.CopyInstr, ins.AddInstr)):
            source = getattr(instr, "from_", None)
            if not source:
                return self.env.content.of_patterns(self.env.context_fs, list(instr.sources))
            return self.env.source_key(source, self.target, state.platform)
        return None

    def _mount_input(self, spec: str, state: ImageState):
        fields = dict(mount_fields(spec))
        if (fields.get("type") or "bind") != "bind":
            return None  # cache, tmpfs, secret: the spec (in the instruction) is all that counts
        path = fields.get("source") or fields.get("src") or "/"
        if fields.get("from"):
            return [self.env.source_key(fields["from"], self.target, state.platform), path]
        return self.env.content.of_dir(self.env.context_fs, path)

    def _run(self, step: int, instr: ins.RunInstr, state: ImageState, scope: StageScope):
        if state.live is None:
            state.live = run.unpack(state, self.env.blobs, self.env.scratch)
        report = self.env.steps.reporter
        with ExitStack() as stack:
            mounts = self.env.mounts(self.target, state.platform).plan(
                instr.mounts, state.config.config.working_dir or "/", stack)
            entries = run.run_step(instr, state, state.live, sandbox=self.env.sandbox(), env=scope.run_env(),
                                   network=self.env.opts.network, clamp=self.env.epoch, mounts=mounts,
                                   output=lambda stream, data: report.log(step, data))
        return self._commit_layer(step, entries, state, on_disk=True)

    def _history(self, state: ImageState, text: str, *, empty: bool, created: str) -> None:
        state.config = state.config.add_history(text, created=created, empty_layer=empty,
                                                comment=BUILDKIT_COMMENT)

    def _workdir(self, step: int, state: ImageState):
        target = state.config.config.working_dir.strip("/")
        if not target or state.tree.is_dir(state.tree.resolve(target)):
            return None
        owner = self._owner(state.config.config.user, state) if state.config.config.user else (0, 0)
        entries = plan_mkdir(state.tree.resolve(target), state.tree, owner=owner, mtime=self.env.mtime,
                             clamp=self.env.epoch)
        return self._commit_layer(step, entries, state)

    def _copy(self, step: int, instr, state: ImageState, read: dict[str, str] | None):
        fs, origin, from_context = self._source(instr, state)
        owner = self._owner(instr.chown, state) if instr.chown else None
        req = CopyRequest(
            sources=list(instr.sources), dest=instr.dest, fs=fs, origin=origin,
            workdir=state.config.config.working_dir or "/", owner=owner, chmod=_chmod(instr.chmod),
            link=instr.link, from_context=from_context, mtime=self.env.mtime, clamp=self.env.epoch,
            inline=[(h.name, h.content.encode()) for h in instr.heredocs],
        )
        if isinstance(instr, ins.AddInstr):
            entries = self.env.plan_add(req, state.tree)
        else:
            entries = plan_copy(req, state.tree, match_component)
        return self._commit_layer(step, entries, state, read=read)

    def _source(self, instr, state: ImageState) -> tuple[SourceFS, str, bool]:
        source = getattr(instr, "from_", None)
        if not source:
            return self.env.context_fs, "the build context", True
        found = self.env.copy_source(source, self.target, state.platform)
        if isinstance(found, ContextFS):
            return found, f'build context "{source}"', True
        kind = "stage" if self.env.dockerfile.find_stage(source) is not None else "image"
        return TreeFS(found.tree), f'{kind} "{source}"', False

    def _owner(self, spec: str, state: ImageState) -> tuple[int, int]:
        return resolve_owner(spec, state.tree)

    def _commit_layer(self, step: int, entries: list[TarEntry], state: ImageState, *, on_disk: bool = False,
                      read: dict[str, str] | None = None):
        """Write the layer; keep the tree (and the stage's disk copy, once there is one) in step.

        ``on_disk``: the entries came from the disk copy itself (RUN), which is already current.
        ``read``: receives the digests of the source files read (LayerMaker.make)."""
        report = lambda n: self.env.steps.reporter.advance(step, n)  # noqa: E731
        with self.env.layer_stream(self.target, self.stage, state) as member:
            desc, diff_id = self.env.layers.make(entries, report, tee=member, file_digests=read)
        state.with_layer(desc, diff_id)
        if not on_disk:
            for entry in entries:
                state.tree.put(entry)
            if state.live is not None:
                state.live.apply(self.env.blobs, desc)
        return desc, diff_id


def onbuild_triggers(state: ImageState, frm: ins.FromInstr) -> list[ins.Instruction]:
    """The base image's ONBUILD instructions, parsed, located at the FROM line that ran them."""
    triggers = state.config.config.on_build
    if not triggers:
        return []
    state.config = state.config.with_config(on_build=())
    try:
        parsed = parse("FROM scratch\n" + "\n".join(triggers) + "\n", filename=frm.location.file)
    except OcibuildError as e:
        raise e.at(frm.location, "FROM") from None
    return [replace(i, location=frm.location) for i in parsed.stages[0].instructions]


def _chmod(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise BuildError(f"invalid chmod parameter {value!r}: only octal modes are supported") from None
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"invalid chmod parameter {value!r}: out of range")
    return mode


def _arg_text(arg: ins.ArgPair) -> str:
    return arg.name if arg.default is None else f"{arg.name}={arg.default}"
