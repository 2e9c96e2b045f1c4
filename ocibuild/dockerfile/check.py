"""``check``: everything the frontend can detect without building anything.

It is also the reference walk for a builder: parse, resolve the target's stages, expand
each FROM with the global scope, then step through each stage's instructions with a stage
scope (started from the parent stage's scope for ``FROM <stage>``; for an image, the caller
would pass the image config's Env instead of the empty one used here).
"""

from __future__ import annotations

from collections.abc import Mapping

from ocibuild.dockerfile.expand import expand, step
from ocibuild.dockerfile.graph import needed_stages, stage_dependencies
from ocibuild.dockerfile.scope import StageScope, platform_args
from ocibuild.dockerfile.stages import Dockerfile, parse

__all__ = ["check"]


def check(text: str, target: str | None = None, build_args: Mapping[str, str] | None = None,
          platform: str = "linux/amd64", filename: str = "Dockerfile") -> Dockerfile:
    """Parse ``text``, resolve ``target`` and expand every instruction of the needed stages.

    Raises the first DockerfileError found; returns the parsed Dockerfile otherwise.
    """
    df = parse(text, filename)
    gscope = df.global_scope(build_args, platform_args(platform))
    scopes: dict[int, StageScope] = {}
    for stage in needed_stages(df, target, gscope):
        expand(stage.from_instr, gscope)
        base = stage_dependencies(df, stage, gscope)[0]
        parent = scopes.get(base.stage) if base.stage is not None else None
        scope = gscope.stage(parent=parent)
        for instr in stage.instructions:
            step(instr, scope)
        scopes[stage.index] = scope
    return df
