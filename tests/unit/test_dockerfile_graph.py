"""Target resolution and the stage graph."""

import pytest

from ocibuild.dockerfile import needed_stages, parse, platform_args, resolve_target, stage_dependencies
from ocibuild.errors import DockerfileError

MULTI = """\
ARG BASE=alpine
FROM $BASE AS base
RUN base
FROM base AS deps
RUN deps
FROM golang AS unused
RUN never
FROM base AS tools
FROM deps AS build
COPY --from=tools /t /t
RUN --mount=type=bind,from=1,target=/d --mount=type=cache,target=/c make
FROM scratch AS Final
COPY --from=build /out /
COPY --from=docker.io/library/busybox:latest /bin/sh /sh
"""


def names(stages):
    return [s.display_name for s in stages]


def test_default_target_is_last_stage_and_unused_stages_are_skipped():
    df = parse(MULTI)
    assert names(needed_stages(df)) == ["base", "deps", "tools", "build", "final"]


def test_target_by_name_is_case_insensitive():
    df = parse(MULTI)
    assert resolve_target(df, "FINAL").name == "final"
    assert names(needed_stages(df, "deps")) == ["base", "deps"]
    assert names(needed_stages(df, "unused")) == ["unused"]


def test_unknown_target_lists_stages():
    with pytest.raises(DockerfileError) as err:
        resolve_target(parse(MULTI), "nope")
    assert str(err.value) == ('target stage "nope" could not be found '
                              "(stages: base, deps, unused, tools, build, final)")


def test_dependencies():
    df = parse(MULTI)
    build = df.find_stage("build")
    deps = [(d.kind, d.ref, d.stage) for d in stage_dependencies(df, build)]
    assert deps == [("from", "deps", 1), ("copy", "tools", 3), ("mount", "1", 1)]
    final = df.find_stage("final")
    assert [(d.kind, d.ref, d.stage) for d in stage_dependencies(df, final)] == [
        ("from", "scratch", None), ("copy", "build", 4), ("copy", "docker.io/library/busybox:latest", None)]


def test_from_uses_global_args_for_stage_lookup():
    df = parse("ARG STAGE=one\nFROM alpine AS one\nFROM alpine AS two\nFROM ${STAGE}\n")
    scope = df.global_scope({}, platform_args("linux/amd64"))
    assert names(needed_stages(df, scope=scope)) == ["one", "stage-2"]
    scope = df.global_scope({"STAGE": "two"})
    assert names(needed_stages(df, scope=scope)) == ["two", "stage-2"]


def test_from_a_later_stage_name_is_an_image():
    df = parse("FROM later AS first\nFROM alpine AS later\n")
    (dep,) = stage_dependencies(df, df.stages[0])
    assert dep.stage is None


def test_copy_from_is_not_expanded_unless_asked():
    df = parse("ARG SRC=one\nFROM alpine AS one\nFROM alpine\nCOPY --from=$SRC /a /a\n")
    assert stage_dependencies(df, df.stages[1])[1].stage is None
    scope = df.global_scope()
    deps = stage_dependencies(df, df.stages[1], scope, expand_from=scope.expand)
    assert deps[1].stage == 0
    assert names(needed_stages(df, scope=scope, expand_from=scope.expand)) == ["one", "stage-1"]


def test_self_reference_and_cycles():
    with pytest.raises(DockerfileError, match="circular dependency detected on stage: a"):
        needed_stages(parse("FROM x AS a\nCOPY --from=a /x /x\n"))
    text = "FROM x AS a\nCOPY --from=b /x /x\nFROM x AS b\nCOPY --from=a /y /y\nFROM x\n"
    with pytest.raises(DockerfileError, match="circular dependency detected on stage: a"):
        needed_stages(parse(text))  # BuildKit checks every stage, needed or not


def test_reference_to_later_stage():
    text = "FROM x AS a\nCOPY --from=b /x /x\nFROM x AS b\nFROM a\n"
    with pytest.raises(DockerfileError) as err:
        needed_stages(parse(text))
    assert str(err.value) == ('Dockerfile:2: COPY: cannot copy from stage "b", it needs to be defined '
                              'before current stage "a"')
    # Not needed by the target: no error, as BuildKit never dispatches it.
    assert names(needed_stages(parse(text), "b")) == ["b"]


def test_invalid_stage_index():
    with pytest.raises(DockerfileError, match="Dockerfile:2: COPY: invalid stage index 3"):
        needed_stages(parse("FROM x\nCOPY --from=3 a b\n"))
