"""Parsing: directives, nodes, and one typed instruction per Dockerfile instruction."""

import pytest

from ocibuild.dockerfile import instructions as ins
from ocibuild.dockerfile import parse, parse_directives
from ocibuild.errors import DockerfileError, Location


def only(text: str, cls):
    """The single instruction of the one stage in ``FROM x\\n<text>``."""
    df = parse("FROM scratch\n" + text)
    (instr,) = df.stages[0].instructions
    assert isinstance(instr, cls)
    return instr


def fails(text: str) -> str:
    with pytest.raises(DockerfileError) as err:
        parse(text)
    return str(err.value)


# -- directives and stages ------------------------------------------------------------------

def test_directives():
    d = parse_directives("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n")
    assert (d.syntax, d.escape) == ("docker/dockerfile:1", "`")
    assert parse_directives("#escape = `\nFROM x\n").escape == "`"
    # Directives stop at the first other line: blank line, comment, unknown key.
    assert parse_directives("\n# escape=`\nFROM x\n").escape == "\\"
    assert parse_directives("# hello\n# escape=`\nFROM x\n").escape == "\\"
    assert parse_directives("# foo=bar\n# escape=`\nFROM x\n").escape == "\\"
    assert parse_directives("#!/usr/bin/env ocibuild\n# syntax=a/b\nFROM x\n").syntax == "a/b"


def test_escape_directive_changes_continuation():
    df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo hi\n")
    run = df.stages[0].instructions[0]
    assert run.command == ("dir c:\\   && echo hi",)
    assert df.escape == "`"


def test_stages_and_global_args():
    df = parse("ARG A=1\nARG B\nFROM alpine AS Build\nRUN x\nFROM build\nCOPY --from=build a b\n")
    assert [a.args for a in df.global_args] == [(ins.ArgPair("A", "1"),), (ins.ArgPair("B"),)]
    first, second = df.stages
    assert (first.index, first.name, first.base, first.display_name) == (0, "build", "alpine", "build")
    assert (second.name, second.base, second.display_name) == (None, "build", "stage-1")
    assert first.location == Location("Dockerfile", 3, 3)
    assert df.find_stage("BUILD") is first and df.find_stage("nope") is None


def test_locations_and_original_text():
    df = parse("FROM x\n\n# comment\nRUN a \\\n  b\nENV X=1\n", filename="app.Dockerfile")
    run, env = df.stages[0].instructions
    assert run.location == Location("app.Dockerfile", 4, 5)
    assert env.location.line == 6
    assert env.original == "ENV X=1"


def test_lowercase_keywords():
    df = parse("from alpine as base\nrun echo\n")
    assert df.stages[0].name == "base"
    assert isinstance(df.stages[0].instructions[0], ins.RunInstr)


# -- one test per instruction -----------------------------------------------------------------

def test_from():
    frm = parse("FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n").stages[0].from_instr
    assert (frm.image, frm.stage_name, frm.platform) == ("golang:1.22", "build", "$BUILDPLATFORM")
    assert "FROM requires either one or three arguments" in fails("FROM a b\n")
    assert "invalid name for build stage" in fails("FROM a AS b@c\n")
    assert fails("FROM --plat=x a\n") == "Dockerfile:1: FROM: unknown flag: --plat"


def test_arg():
    arg = only('ARG a=1 b c="x y" d=\n', ins.ArgInstr)
    assert arg.args == (ins.ArgPair("a", "1"), ins.ArgPair("b"), ins.ArgPair("c", '"x y"'), ins.ArgPair("d", ""))


def test_env_forms():
    env = only('ENV A=1 B="two words" C=$A\n', ins.EnvInstr)
    assert env.pairs == (ins.KeyValue("A", "1"), ins.KeyValue("B", '"two words"'), ins.KeyValue("C", "$A"))
    legacy = only("ENV PATH /usr/bin:/bin   more\n", ins.EnvInstr)
    assert legacy.pairs == (ins.KeyValue("PATH", "/usr/bin:/bin   more"),)


def test_label():
    label = only('LABEL "com.example.a b"=c d=e\n', ins.LabelInstr)
    assert label.pairs == (ins.KeyValue('"com.example.a b"', "c"), ins.KeyValue("d", "e"))


def test_copy():
    copy = only("COPY --from=build --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x "
                "--parents a b /dest/\n", ins.CopyInstr)
    assert copy.sources == ("a", "b") and copy.dest == "/dest/"
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.parents) == ("build", "1:2", "755", True, True)
    assert copy.excludes == ("*.md", "x")
    plain = only("COPY a b\n", ins.CopyInstr)
    assert (plain.from_, plain.link, plain.excludes, plain.json) == (None, False, (), False)
    assert only("COPY --link=false a b\n", ins.CopyInstr).link is False


def test_copy_json_form():
    copy = only('COPY ["a b", "c d", "/e f/"]\n', ins.CopyInstr)
    assert copy.sources == ("a b", "c d") and copy.dest == "/e f/" and copy.json


def test_copy_heredocs():
    copy = only('COPY <<EOF <<-"EOT" /dest/\nhello $X\nEOF\n\tindented\n\tEOT\n', ins.CopyInstr)
    assert copy.sources == ()
    first, second = copy.heredocs
    assert (first.name, first.content, first.expand, first.chomp) == ("EOF", "hello $X\n", True, False)
    assert (second.name, second.content, second.expand, second.chomp) == ("EOT", "indented\n", False, True)
    mixed = only("COPY a <<EOF /dest/\nx\nEOF\n", ins.CopyInstr)
    assert mixed.sources == ("a",) and [h.name for h in mixed.heredocs] == ["EOF"]


def test_add():
    add = only("ADD --checksum=sha256:abc --keep-git-dir --chown=app --link https://x/y.tgz /opt/\n", ins.AddInstr)
    assert add.sources == ("https://x/y.tgz",) and add.dest == "/opt/"
    assert (add.checksum, add.keep_git_dir, add.chown, add.link) == ("sha256:abc", True, "app", True)
    assert fails("FROM x\nADD --from=a b c\n") == "Dockerfile:2: ADD: unknown flag: --from"
    assert fails("FROM x\nADD a\n").startswith("Dockerfile:2: ADD requires at least two arguments")


def test_run_forms():
    run = only("RUN --mount=type=cache,target=/root/.cache --network=none --security=insecure make all\n",
               ins.RunInstr)
    assert run.command == ("make all",) and run.shell_form
    assert run.mounts == ("type=cache,target=/root/.cache",)
    assert (run.network, run.security) == ("none", "insecure")
    exec_form = only('RUN ["echo", "a b"]\n', ins.RunInstr)
    assert exec_form.command == ("echo", "a b") and not exec_form.shell_form
    two = only("RUN --mount=type=secret,id=a --mount=type=ssh echo\n", ins.RunInstr)
    assert two.mounts == ("type=secret,id=a", "type=ssh")


def test_run_heredoc():
    run = only("RUN <<EOF bash\nset -e\necho $HOME\nEOF\n", ins.RunInstr)
    assert run.command == ("<<EOF bash",)
    (doc,) = run.heredocs
    assert (doc.name, doc.content, doc.expand) == ("EOF", "set -e\necho $HOME\n", True)
    quoted = only("RUN cat <<'EOF' > /x\n$literal\nEOF\n", ins.RunInstr)
    assert quoted.heredocs[0].expand is False


def test_cmd_entrypoint_shell():
    cmd = only("CMD echo $HOME\n", ins.CmdInstr)
    assert (cmd.command, cmd.shell_form) == (("echo $HOME",), True)
    entry = only('ENTRYPOINT ["/bin/app", "--flag"]\n', ins.EntrypointInstr)
    assert (entry.command, entry.shell_form) == (("/bin/app", "--flag"), False)
    assert only("ENTRYPOINT []\n", ins.EntrypointInstr).command == ()
    # A malformed JSON array is shell form, as BuildKit does.
    assert only('CMD ["a", b]\n', ins.CmdInstr).command == ('["a", b]',)
    shell = only('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n', ins.ShellInstr)
    assert shell.shell == ("/bin/bash", "-o", "pipefail", "-c")


def test_workdir_user_stopsignal_maintainer():
    assert only("WORKDIR /app dir\n", ins.WorkdirInstr).path == "/app dir"
    assert only("USER app:app\n", ins.UserInstr).user == "app:app"
    assert only("STOPSIGNAL SIGTERM\n", ins.StopSignalInstr).signal == "SIGTERM"
    assert only("MAINTAINER Jane <j@x.org>\n", ins.MaintainerInstr).maintainer == "Jane <j@x.org>"


def test_expose_and_volume():
    assert only("EXPOSE 8080/udp 80\n", ins.ExposeInstr).ports == ("80", "8080/udp")
    vol = only('VOLUME ["/a", "/b c"]\n', ins.VolumeInstr)
    assert vol.volumes == ("/a", "/b c") and vol.json
    assert only("VOLUME /a /b\n", ins.VolumeInstr).volumes == ("/a", "/b")


def test_healthcheck():
    hc = only("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=1.5s --start-interval=2s "
              "--retries=3 CMD curl -f http://localhost/\n", ins.HealthcheckInstr)
    assert hc.test == ("CMD-SHELL", "curl -f http://localhost/")
    assert (hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries) == (
        90_000_000_000, 500_000_000, 1_500_000_000, 2_000_000_000, 3)
    assert only('HEALTHCHECK CMD ["curl", "x"]\n', ins.HealthcheckInstr).test == ("CMD", "curl", "x")
    assert only("HEALTHCHECK none\n", ins.HealthcheckInstr).test == ("NONE",)
    # BuildKit does not look at flags for NONE.
    assert only("HEALTHCHECK --bogus=1 NONE\n", ins.HealthcheckInstr).test == ("NONE",)
    assert "Missing command after HEALTHCHECK CMD" in fails("FROM x\nHEALTHCHECK CMD\n")
    assert 'time: unknown unit "x" in duration "5x"' in fails("FROM x\nHEALTHCHECK --interval=5x CMD a\n")
    assert "invalid syntax" in fails("FROM x\nHEALTHCHECK --retries=three CMD a\n")


def test_onbuild():
    ob = only("ONBUILD COPY --from=builder --chown=1 a /b\n", ins.OnbuildInstr)
    assert ob.expression == "COPY --from=builder --chown=1 a /b"
    assert isinstance(ob.trigger, ins.CopyInstr)
    assert (ob.trigger.from_, ob.trigger.chown, ob.trigger.location.line) == ("builder", "1", 2)
    run = only("onbuild RUN echo hi\n", ins.OnbuildInstr)
    assert run.trigger.command == ("echo hi",)


def test_onbuild_heredoc():
    ob = only("ONBUILD RUN <<EOF\necho hi\nEOF\n", ins.OnbuildInstr)
    assert ob.trigger.heredocs[0].content == "echo hi\n"
    assert ob.expression == "RUN <<EOF\necho hi\nEOF"


def test_flag_errors():
    assert fails("FROM x\nCOPY --link=yes a b\n") == (
        "Dockerfile:2: COPY: expecting boolean value for flag --link, not: yes")
    assert fails("FROM x\nCOPY --link= a b\n") == "Dockerfile:2: COPY: missing a value on flag: --link"
    assert fails("FROM x\nWORKDIR --x=1 /a\n") == "Dockerfile:2: WORKDIR: unknown flag: --x"
    assert fails("FROM x\nRUN --network=a --network=b x\n") == (
        "Dockerfile:2: RUN: duplicate flag specified: --network")


def test_argument_count_errors():
    assert fails("FROM x\nUSER\n") == "Dockerfile:2: USER requires exactly one argument"
    assert fails("FROM x\nEXPOSE\n") == "Dockerfile:2: EXPOSE requires at least one argument"
    assert fails("FROM x\nVOLUME\n") == "Dockerfile:2: VOLUME requires at least one argument"
    assert fails("FROM x\nSTOPSIGNAL\n") == "Dockerfile:2: STOPSIGNAL requires exactly one argument"
    assert fails("FROM x\nONBUILD\n") == "Dockerfile:2: ONBUILD requires at least one argument"
    assert fails("FROM x\nHEALTHCHECK\n") == "Dockerfile:2: HEALTHCHECK requires at least one argument"
    assert fails("FROM x\nENV\n") == "Dockerfile:2: ENV requires at least one argument"
    assert fails("FROM x\nLABEL\n") == "Dockerfile:2: LABEL requires at least one argument"


def test_parser_error_line_after_continuations():
    text = "FROM x\nRUN a \\\n  b \\\n  c\nENV OK=1\nENV BROKEN\n"
    assert fails(text) == "Dockerfile:6: ENV must have two arguments"
