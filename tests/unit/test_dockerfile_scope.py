"""ARG/ENV scoping (BuildKit's rules) and instruction expansion."""

import pytest

from ocibuild.dockerfile import (
    GlobalScope, expand, expand_from, parse, platform_args, step,
)
from ocibuild.dockerfile import instructions as ins
from ocibuild.errors import DockerfileError

AMD64 = platform_args("linux/amd64")
ARM = platform_args("linux/arm/v7", "linux/amd64")


def walk(text, build_args=None, platform=AMD64, base_env=(), stage=-1):
    """Step through one stage; returns (scope, expanded instructions)."""
    df = parse(text)
    gscope = df.global_scope(build_args, platform)
    scope = gscope.stage(base_env)
    out = [step(i, scope) for i in df.stages[stage].instructions]
    return scope, out


def env_after(text, **kw):
    return dict(walk(text, **kw)[0].env)


# -- global scope -----------------------------------------------------------------------------

def test_platform_args():
    assert ARM == {
        "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7",
        "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
    }


def test_global_args_expand_from():
    df = parse("ARG REG=docker.io\nARG IMG=$REG/library/alpine\nARG TAG\nFROM ${IMG}:${TAG:-3.19}\n")
    scope = df.global_scope({}, AMD64)
    assert expand_from(df.stages[0], scope) == ("docker.io/library/alpine:3.19", None)
    scope = df.global_scope({"TAG": "edge", "REG": "ghcr.io"}, AMD64)
    assert expand_from(df.stages[0], scope) == ("ghcr.io/library/alpine:edge", None)


def test_build_arg_replaces_default_before_later_defaults_use_it():
    df = parse("ARG A=1\nARG B=${A}0\nFROM x:$B\n")
    assert expand_from(df.stages[0], df.global_scope({"A": "7"})) == ("x:70", None)


def test_platform_args_visible_in_from_without_declaration():
    df = parse("FROM --platform=$BUILDPLATFORM golang AS build\nFROM alpine:$TARGETARCH\n")
    scope = df.global_scope({}, ARM)
    assert expand_from(df.stages[0], scope) == ("golang", "linux/amd64")
    assert expand_from(df.stages[1], scope) == ("alpine:arm", None)


def test_global_scope_from_dockerfile_and_from_args():
    df = parse("ARG A=1\nFROM x\n")
    assert dict(GlobalScope(df, {}, {}).env) == {"A": "1"}
    assert dict(GlobalScope.for_args(df.global_args, {"A": "2"}).env) == {"A": "2"}


# -- stage scope --------------------------------------------------------------------------------

def test_global_arg_not_visible_in_stage_until_declared():
    text = "ARG V=1\nFROM x\nENV A=v$V\nARG V\nENV B=v$V\n"
    env = env_after(text)
    assert env["A"] == "v" and env["B"] == "v1"


def test_redeclared_arg_with_own_default():
    assert env_after("ARG V=1\nFROM x\nARG V=2\nENV A=$V\n")["A"] == "2"
    assert env_after("ARG V=1\nFROM x\nARG V=2\nENV A=$V\n", build_args={"V": "9"})["A"] == "9"


def test_build_arg_overrides_stage_default_and_global():
    assert env_after("ARG V=1\nFROM x\nARG V\nENV A=$V\n", build_args={"V": "cli"})["A"] == "cli"


def test_arg_without_default_or_value_is_unset():
    scope, _ = walk("FROM x\nARG NOTHING\nENV A=${NOTHING-unset}\n")
    assert scope.env["A"] == "unset"
    assert scope.run_args() == []


def test_automatic_platform_args_need_declaration_in_stage():
    assert env_after("FROM x\nENV A=[$TARGETARCH]\n", platform=ARM)["A"] == "[]"
    env = env_after("FROM x\nARG TARGETARCH TARGETVARIANT\nENV A=$TARGETARCH/$TARGETVARIANT\n", platform=ARM)
    assert env["A"] == "arm/v7"
    # A default given in the stage wins over the automatic value, as in BuildKit.
    assert env_after("FROM x\nARG TARGETARCH=mine\nENV A=$TARGETARCH\n", platform=ARM)["A"] == "mine"


def test_arg_pairs_see_previous_pairs():
    assert env_after("FROM x\nARG A=1 B=${A}2\nENV C=$B\n")["C"] == "12"


def test_env_pairs_see_environment_before_the_instruction():
    env = env_after("FROM x\nENV A=old\nENV A=new B=$A\n")
    assert env["A"] == "new" and env["B"] == "old"


def test_env_declared_after_arg_wins():
    scope, _ = walk("FROM x\nARG V=arg\nENV V=env\nENV W=$V\n", build_args={"V": "cli"})
    assert scope.env["W"] == "env"
    assert "V=env" in scope.config_env()


def test_arg_declared_after_env_wins_for_later_instructions_as_in_buildkit():
    scope, _ = walk("FROM x\nENV V=env\nARG V=arg\nENV W=$V\n")
    assert scope.env["W"] == "arg"
    assert scope.config_env() == ["V=env", "W=arg"]  # ARG values never reach the image config


def test_base_image_env():
    scope, out = walk("FROM x\nENV PATH=/opt/bin:$PATH\nARG V=1\n", base_env=["PATH=/usr/bin", "HOME=/root"])
    assert scope.config_env() == ["PATH=/opt/bin:/usr/bin", "HOME=/root"]
    assert scope.run_env() == ["PATH=/opt/bin:/usr/bin", "HOME=/root", "V=1"]
    assert scope.run_args() == ["V=1"]


def test_child_stage_inherits_parent_scope():
    df = parse("FROM x AS base\nARG V=1\nENV E=2\nFROM base\nENV F=$V$E\n")
    gscope = df.global_scope()
    parent = gscope.stage()
    for instr in df.stages[0].instructions:
        step(instr, parent)
    child = gscope.stage(parent=parent)
    for instr in df.stages[1].instructions:
        step(instr, child)
    assert child.env["F"] == "12"
    assert child.run_args() == ["V=1"]


def test_unused_build_args():
    df = parse("ARG USED_GLOBALLY\nFROM x\nARG USED_IN_STAGE\n")
    gscope = df.global_scope({"USED_GLOBALLY": "1", "USED_IN_STAGE": "2", "TYPO": "3", "HTTP_PROXY": "p"})
    scope = gscope.stage()
    for instr in df.stages[0].instructions:
        step(instr, scope)
    assert gscope.unused_build_args() == ["TYPO"]


def test_step_resolves_args_and_applies_env():
    df = parse("FROM x\nARG A=1\nENV B=$A\n")
    scope = df.global_scope().stage()
    arg, env = df.stages[0].instructions
    assert step(arg, scope).args == (ins.ArgPair("A", "1"),)
    step(env, scope)
    assert scope.env["B"] == "1"


# -- expansion of each instruction --------------------------------------------------------------

def test_expand_copy_and_add():
    _, out = walk('FROM x\nARG D=/app U=1000\nCOPY --chown=$U:$U --chmod=$M --from=$S src/$D "$D/"\n'
                  "ADD --checksum=$SUM --chown=${U} https://h/$D.tgz $D\n", build_args={"SUM": "sha256:1"})
    copy, add = out[1], out[2]
    assert copy.sources == ("src//app",) and copy.dest == "/app/"
    assert (copy.chown, copy.chmod, copy.from_) == ("1000:1000", "$M", "$S")  # chmod/from not expanded
    assert (add.sources, add.dest, add.chown) == (("https://h//app.tgz",), "/app", "1000")
    assert add.checksum == ""  # $SUM was never declared in the stage


def test_expand_heredoc_bodies():
    _, out = walk("FROM x\nENV NAME=world\nCOPY <<EOF <<'RAW' /\nhi $NAME \"q\" \\$NAME\nEOF\n$NAME\nRAW\n")
    expanded, raw = out[1].heredocs
    assert expanded.content == 'hi world "q" $NAME\n'
    assert raw.content == "$NAME\n"


def test_expand_env_label_workdir_user_volume_stopsignal():
    _, out = walk('FROM x\nENV A=a B="b c"\nLABEL "k $A"="$B" plain=$A\nWORKDIR /w/$A\nUSER $A:$A\n'
                  'VOLUME ["/v/$A", "/v/b"]\nSTOPSIGNAL SIG$A\n')
    env, label, workdir, user, volume, signal = out
    assert env.pairs == (ins.KeyValue("A", "a"), ins.KeyValue("B", "b c"))
    assert label.pairs == (ins.KeyValue("k a", "b c"), ins.KeyValue("plain", "a"))
    assert (workdir.path, user.user, volume.volumes, signal.signal) == ("/w/a", "a:a", ("/v/a", "/v/b"), "SIGa")


def test_expand_expose():
    _, out = walk("FROM x\nARG PORTS=\"80 443/tcp\"\nEXPOSE $PORTS 53/UDP 7000-7002/tcp\n")
    # BuildKit sorts the words as written, then expands and normalises them.
    assert out[1].ports == ("80/tcp", "443/tcp", "53/udp", "7000/tcp", "7001/tcp", "7002/tcp")
    _, out = walk("FROM x\nEXPOSE 127.0.0.1:8080:80 [::1]:90:90\n")
    assert out[0].ports == ("80/tcp", "90/tcp")


def test_not_expanded():
    _, out = walk("FROM x\nENV A=1\nRUN echo $A\nCMD echo $A\nENTRYPOINT [\"$A\"]\nONBUILD RUN echo $A\n"
                  "HEALTHCHECK CMD echo $A\n")
    run, cmd, entry, onbuild, hc = out[1:]
    assert run.command == ("echo $A",) and cmd.command == ("echo $A",) and entry.command == ("$A",)
    assert onbuild.expression == "RUN echo $A" and hc.test == ("CMD-SHELL", "echo $A")


def test_run_mount_values_are_expanded():
    _, out = walk("FROM x\nARG DIR=/cache\nRUN --mount=type=cache,target=$DIR,id=${DIR}-x,ro make\n")
    assert out[1].mounts == ("type=cache,target=/cache,id=/cache-x,ro",)


def test_expansion_errors_carry_location():
    with pytest.raises(DockerfileError) as err:
        walk("FROM x\nWORKDIR ${NOPE:?set it}\n")
    assert str(err.value) == 'Dockerfile:2: WORKDIR: failed to process "${NOPE:?set it}": NOPE: set it'
    with pytest.raises(DockerfileError) as err:
        walk("FROM x\nEXPOSE 99999\n")
    assert str(err.value) == "Dockerfile:2: EXPOSE: invalid containerPort: 99999"


def test_expand_is_pure():
    df = parse("FROM x\nENV A=1\nARG B=2\n")
    scope = df.global_scope().stage()
    for instr in df.stages[0].instructions:
        expand(instr, scope)
    assert dict(scope.env) == {}
