"""The stage graph: which stages a target needs, in build order.

Edges, as BuildKit draws them:

* ``FROM <name>``: the base is an *earlier* stage of that name (after expanding the base
  with the global scope); a later or unknown name is an image reference.
* ``COPY --from=<name|index>`` and ``RUN --mount=...,from=<name|index>``: a stage of any
  position by name (case-insensitive) or index; anything else is an image reference the
  builder resolves. BuildKit does not expand ``--from``; pass ``expand_from`` to do so.

A reference to the stage itself or any cycle is "circular dependency detected on stage";
a reference to a stage defined later is refused as BuildKit does when it dispatches.
Stages the target does not need are not returned (BuildKit skips them too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ocibuild.dockerfile.expand import expand
from ocibuild.dockerfile.instructions import CopyInstr, FromInstr, RunInstr
from ocibuild.dockerfile.mounts import mount_from
from ocibuild.dockerfile.scope import GlobalScope
from ocibuild.dockerfile.stages import Dockerfile, Stage
from ocibuild.errors import DockerfileError, Location

__all__ = ["Dependency", "needed_stages", "resolve_target", "stage_dependencies"]


@dataclass(frozen=True)
class Dependency:
    """One reference from a stage: ``kind`` is ``"from"``, ``"copy"`` or ``"mount"``.

    ``stage`` is the index of the referenced stage, or None when ``ref`` names an image.
    """

    kind: str
    ref: str
    stage: int | None
    location: Location


def resolve_target(df: Dockerfile, target: str | None = None) -> Stage:
    """The stage to build: ``target`` by name (case-insensitive), else the last stage."""
    if target is None or target == "":
        return df.stages[-1]
    stage = df.find_stage(target)
    if stage is None:
        names = [s.name for s in df.stages if s.name is not None]
        listing = ", ".join(names) if names else "none"
        raise DockerfileError(f'target stage "{target}" could not be found (stages: {listing})')
    return stage


def stage_dependencies(df: Dockerfile, stage: Stage, scope: GlobalScope | None = None,
                       expand_from: Callable[[str], str] | None = None) -> list[Dependency]:
    """The references ``stage`` makes, in order: its base, then ``--from`` uses.

    ``scope`` expands the FROM base (default: the global ARGs without build args);
    ``expand_from`` maps a raw ``--from``/``from=`` value (default: unchanged).
    """
    scope = scope if scope is not None else df.global_scope()
    base = expand(stage.from_instr, scope)
    assert isinstance(base, FromInstr)
    earlier = df.find_stage(base.image)
    deps = [Dependency("from", base.image, earlier.index if earlier and earlier.index < stage.index else None,
                       stage.location)]
    for instr in stage.instructions:
        for kind, ref in _from_refs(instr):
            value = expand_from(ref) if expand_from else ref
            deps.append(Dependency(kind, value, _lookup(df, value, instr), instr.location))
    return deps


def _from_refs(instr) -> list[tuple[str, str]]:
    if isinstance(instr, CopyInstr) and instr.from_:
        return [("copy", instr.from_)]
    if isinstance(instr, RunInstr):
        return [("mount", ref) for ref in map(mount_from, instr.mounts) if ref]
    return []


def _lookup(df: Dockerfile, ref: str, instr) -> int | None:
    if ref.isdigit() or (ref.startswith("-") and ref[1:].isdigit()):
        index = int(ref)
        if not 0 <= index < len(df.stages):
            raise DockerfileError(f"invalid stage index {index}", location=instr.location, instruction=instr.name)
        return index
    stage = df.find_stage(ref)
    return stage.index if stage else None


def needed_stages(df: Dockerfile, target: str | None = None, scope: GlobalScope | None = None,
                  expand_from: Callable[[str], str] | None = None) -> list[Stage]:
    """The stages needed to build ``target`` (default: the last stage), in build order."""
    scope = scope if scope is not None else df.global_scope()
    final = resolve_target(df, target)
    graph = {s.index: stage_dependencies(df, s, scope, expand_from) for s in df.stages}
    _check_cycles(df, graph)
    needed: set[int] = set()
    todo = [final.index]
    while todo:
        index = todo.pop()
        if index in needed:
            continue
        needed.add(index)
        todo.extend(d.stage for d in graph[index] if d.stage is not None)
    for index in sorted(needed):
        _check_order(df.stages[index], graph[index])
    return [df.stages[i] for i in sorted(needed)]




def _check_cycles(df: Dockerfile, graph: dict[int, list[Dependency]]) -> None:
    """BuildKit's hasCircularDependency: report the first stage a cycle is reachable from."""
    visited: set[int] = set()

    def visit(index: int, path: set[int]) -> bool:
        if index in visited:
            return False
        visited.add(index)
        path.add(index)
        for dep in graph[index]:
            if dep.stage is None:
                continue
            if dep.stage in path or visit(dep.stage, path):
                return True
        path.discard(index)
        return False

    for stage in df.stages:
        if visit(stage.index, set()):
            raise DockerfileError(f"circular dependency detected on stage: {stage.display_name}",
                                  location=stage.location)


def _check_order(stage: Stage, deps: list[Dependency]) -> None:
    for dep in deps:
        if dep.stage is None or dep.stage < stage.index:
            continue
        if dep.kind == "copy":
            message = (f'cannot copy from stage "{dep.ref}", it needs to be defined before '
                       f'current stage "{stage.display_name}"')
            raise DockerfileError(message, location=dep.location, instruction="COPY")
        message = f'cannot mount from stage "{dep.ref}", stage needs to be defined before current command'
        raise DockerfileError(message, location=dep.location, instruction="RUN")
