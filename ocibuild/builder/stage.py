"""Running one stage of a Dockerfile for one platform: FROM, then each instruction in order."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from ocibuild.builder import metadata, run
from ocibuild.builder.copy import CopyRequest, plan_copy, plan_mkdir
from ocibuild.builder.sources import ContextFS, SourceFS, TreeFS
from ocibuild.builder.state import ImageState
from ocibuild.builder.users import resolve_owner
from ocibuild.dockerfile import StageScope, parse
from ocibuild.dockerfile import step as expand_step
from ocibuild.dockerfile import instructions as ins
from ocibuild.dockerfile.ignore import match_component
from ocibuild.errors import BuildError, NotSupported, OcibuildError
from ocibuild.layer.entry import TarEntry

BUILDKIT_COMMENT = "buildkit.dockerfile.v0"


class StageRunner:
    """Dispatches a stage's instructions. ``env`` is the build (see executor.Build)."""

    def __init__(self, env, platform_label: str, target):
        self.env = env
        self.platform_label = platform_label
        self.target = target  # the build's platform, which names the stages COPY --from reads

    def run(self, stage, state: ImageState, scope: StageScope, *, run_triggers: bool = True) -> ImageState:
        """The base image's ONBUILD triggers (consumed: the result does not inherit them), then the stage."""
        triggers = onbuild_triggers(state, stage.from_instr) if run_triggers else []
        instructions = [*triggers, *stage.instructions]
        total = len(instructions) + 1
        for i, instr in enumerate(instructions, start=2):
            shown = instr.original.splitlines()[0]
            title = f"[{self.platform_label}{stage.display_name} {i}/{total}] " + \
                    (f"ONBUILD {shown}" if i - 2 < len(triggers) else shown)
            self.env.steps.run(title, self._dispatch, instr, state, scope)
        return state

    def _dispatch(self, step: int, instr: ins.Instruction, state: ImageState, scope: StageScope) -> None:
        try:
            self._apply(step, instr, state, scope)
        except OcibuildError as e:
            raise e.at(instr.location, instr.name) from None

    def _apply(self, step: int, instr: ins.Instruction, state: ImageState, scope: StageScope) -> None:
        expanded = expand_step(instr, scope)
        if isinstance(expanded, ins.RunInstr):
            self._run(step, expanded, state, scope)
            return
        if isinstance(expanded, ins.ArgInstr):
            self._history(state, "ARG " + " ".join(_arg_text(a) for a in expanded.args), empty=True)
            return
        handler = metadata.HANDLERS.get(type(expanded))
        if handler is not None:
            self._history(state, handler(expanded, state), empty=True)
        elif isinstance(expanded, ins.WorkdirInstr):
            self._workdir(step, expanded, state)
        elif isinstance(expanded, (ins.CopyInstr, ins.AddInstr)):
            self._copy(step, expanded, state)
        else:
            raise NotSupported(f"{instr.name} is not supported")

    def _run(self, step: int, instr: ins.RunInstr, state: ImageState, scope: StageScope) -> None:
        if state.live is None:
            state.live = run.unpack(state, self.env.blobs, self.env.scratch)
        report = self.env.steps.reporter
        with ExitStack() as stack:
            mounts = self.env.mounts(self.target, state.platform).plan(
                instr.mounts, state.config.config.working_dir or "/", stack)
            entries = run.run_step(instr, state, state.live, sandbox=self.env.sandbox(), env=scope.run_env(),
                                   network=self.env.opts.network, clamp=self.env.epoch, mounts=mounts,
                                   output=lambda stream, data: report.log(step, data))
        self._commit_layer(step, entries, state, run.history_text(instr, state, scope.run_args()),
                           on_disk=True)

    def _history(self, state: ImageState, text: str, *, empty: bool) -> None:
        state.config = state.config.add_history(text, created=self.env.created, empty_layer=empty,
                                                comment=BUILDKIT_COMMENT)

    def _workdir(self, step: int, instr: ins.WorkdirInstr, state: ImageState) -> None:
        path = metadata.workdir_path(instr, state)
        state.config = state.config.with_config(working_dir=path)
        target = path.strip("/")
        if not target or state.tree.is_dir(state.tree.resolve(target)):
            self._history(state, f"WORKDIR {path}", empty=True)
            return
        owner = self._owner(state.config.config.user, state) if state.config.config.user else (0, 0)
        entries = plan_mkdir(state.tree.resolve(target), state.tree, owner=owner, mtime=self.env.mtime,
                             clamp=self.env.epoch)
        self._commit_layer(step, entries, state, f"WORKDIR {path}")

    def _copy(self, step: int, instr, state: ImageState) -> None:
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
        self._commit_layer(step, entries, state, f"{instr.original} # buildkit")

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

    def _commit_layer(self, step: int, entries: list[TarEntry], state: ImageState, text: str,
                      *, on_disk: bool = False) -> None:
        """Write the layer; keep the tree (and the stage's disk copy, once there is one) in step.

        ``on_disk``: the entries came from the disk copy itself (RUN), which is already current."""
        report = lambda n: self.env.steps.reporter.advance(step, n)  # noqa: E731
        desc, diff_id, _ = self.env.layers.make(entries, report)
        state.with_layer(desc, diff_id)
        if not on_disk:
            for entry in entries:
                state.tree.put(entry)
            if state.live is not None:
                state.live.apply(self.env.blobs, desc)
        self._history(state, text, empty=False)


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
