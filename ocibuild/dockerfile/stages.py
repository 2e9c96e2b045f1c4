"""Typed instructions -> stages: the parsed Dockerfile as a builder consumes it.

``parse(text)`` runs the whole frontend pipeline except expansion: BuildKit's parser,
one typed instruction per node, then grouping into stages. ARGs before the first FROM
are the global ARGs; any other instruction there is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ocibuild.dockerfile.instructions import ArgInstr, FromInstr, Instruction
from ocibuild.dockerfile.parse_instructions import ParseContext, node_error, parse_instruction
from ocibuild.dockerfile.parser import parse_nodes
from ocibuild.dockerfile.scope import GlobalScope
from ocibuild.errors import DockerfileError, Location

__all__ = ["Dockerfile", "Stage", "parse"]


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions up to the next one.

    ``base`` and ``platform`` are as written (expand them with the global scope);
    ``name`` is the lower-cased ``AS`` name or None.
    """

    index: int
    name: str | None
    base: str
    platform: str | None
    location: Location
    from_instr: FromInstr
    instructions: tuple[Instruction, ...]

    @property
    def display_name(self) -> str:
        """The name BuildKit uses in messages: the stage name, or ``stage-<index>``."""
        return self.name if self.name is not None else f"stage-{self.index}"


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: its global ARGs, stages, and parser directives."""

    stages: tuple[Stage, ...]
    global_args: tuple[ArgInstr, ...]
    escape: str = "\\"
    syntax: str | None = None
    filename: str = "Dockerfile"

    def find_stage(self, name: str) -> Stage | None:
        """The stage named ``name`` (case-insensitive) or numbered ``name`` (`COPY --from=0`), or None."""
        if name.isdigit():
            index = int(name)
            return self.stages[index] if index < len(self.stages) else None
        wanted = name.lower()
        return next((s for s in self.stages if s.name == wanted), None)

    def global_scope(self, build_args: Mapping[str, str] | None = None,
                     platform_args: Mapping[str, str] | None = None) -> GlobalScope:
        """The global scope with this file's global ARGs applied (see scope.py)."""
        return GlobalScope(self, build_args, platform_args)


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text``; every error is a DockerfileError with its line.

    Instructions are not expanded here: that needs build args and a platform, see
    :func:`ocibuild.dockerfile.expand`.
    """
    directives, nodes = parse_nodes(text, filename)
    ctx = ParseContext(escape=directives.escape, lines=tuple(text.split("\n")))
    global_args: list[ArgInstr] = []
    stages: list[tuple[FromInstr, list[Instruction]]] = []
    for node in nodes:
        instr = parse_instruction(node, ctx)
        if isinstance(instr, FromInstr):
            stages.append((instr, []))
        elif stages:
            stages[-1][1].append(instr)
        elif isinstance(instr, ArgInstr):
            global_args.append(instr)
        else:
            raise node_error(node, "no build stage in current context")
    if not stages:
        raise DockerfileError("dockerfile contains no stages to build",
                              location=Location(filename, nodes[-1].location.line) if nodes else None)
    return Dockerfile(stages=_make_stages(stages), global_args=tuple(global_args),
                      escape=directives.escape, syntax=directives.syntax, filename=filename)


def _make_stages(parts: list[tuple[FromInstr, list[Instruction]]]) -> tuple[Stage, ...]:
    seen: set[str] = set()
    out = []
    for index, (instr, body) in enumerate(parts):
        if instr.stage_name is not None:
            if instr.stage_name in seen:
                # BuildKit only lints this (DuplicateStageName); a later stage would silently
                # shadow the earlier one for every reference, so ocibuild refuses it.
                raise DockerfileError(f'Duplicate stage name "{instr.stage_name}", stage names should be unique',
                                      location=instr.location, instruction="FROM")
            seen.add(instr.stage_name)
        out.append(Stage(index=index, name=instr.stage_name, base=instr.image, platform=instr.platform,
                         location=instr.location, from_instr=instr, instructions=tuple(body)))
    return tuple(out)
