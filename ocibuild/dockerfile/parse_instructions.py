"""Syntax nodes -> typed instructions, one parse function per instruction (BuildKit's parse.go).

Messages follow BuildKit's wording. Every error raised here is located at the node; the
instruction name prefixes the message unless the message already starts with it, so that
``Dockerfile:3: COPY: unknown flag: --foo`` and ``Dockerfile:3: COPY requires at least two
arguments, ...`` both read naturally.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ocibuild.dockerfile import instructions as ins
from ocibuild.dockerfile.flags import parse_flags, parse_go_duration, parse_go_int32
from ocibuild.dockerfile.mounts import check_mount
from ocibuild.dockerfile.parser import HeredocDoc, Node, heredoc_marker, parse_trigger
from ocibuild.errors import DockerfileError

__all__ = ["ParseContext", "node_error", "parse_instruction"]

_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_MIN_HEALTH_DURATION = 1_000_000  # 1ms, Docker's container.MinimumDuration


@dataclass(frozen=True)
class ParseContext:
    """What parsing needs beyond the node: the escape character and the source lines
    (ONBUILD triggers are parsed again from their source)."""

    escape: str = "\\"
    lines: tuple[str, ...] = ()


def node_error(node: Node, message: str) -> DockerfileError:
    """A DockerfileError located at ``node``."""
    instruction = None if message.startswith(node.cmd) else node.cmd
    return DockerfileError(message, location=node.location, instruction=instruction)


def parse_instruction(node: Node, ctx: ParseContext = ParseContext()) -> ins.Instruction:
    """Convert one node into its typed instruction; raises a located DockerfileError."""
    parser = _PARSERS.get(node.cmd)
    if parser is None:
        raise DockerfileError(_unknown_instruction(node.cmd), location=node.location)
    try:
        return parser(node, ctx)
    except DockerfileError as err:
        if err.location is not None:
            raise
        raise node_error(node, err.message) from None


def _base(node: Node) -> dict:
    return {"location": node.location, "original": node.original}


def _command_line(node: Node) -> tuple[str, ...]:
    """BuildKit's handleJSONArgs: the JSON list, or the shell-form text as one string."""
    if not node.args:
        return ()
    return node.args if node.json else (" ".join(node.args),)


def _exactly_one(node: Node) -> str:
    if len(node.args) != 1:
        raise DockerfileError(f"{node.cmd} requires exactly one argument")
    return node.args[0]


def _at_least_one(node: Node) -> None:
    if not node.args:
        raise DockerfileError(f"{node.cmd} requires at least one argument")


def _parse_from(node: Node, ctx: ParseContext) -> ins.FromInstr:
    args = node.args
    stage_name = None
    if len(args) == 3 and args[1].lower() == "as":
        stage_name = args[2].lower()
        if not _STAGE_NAME_RE.match(stage_name):
            raise DockerfileError(f'invalid name for build stage: "{args[2]}", '
                                  "name can't start with a number or contain symbols")
    elif len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    flags = parse_flags(node.flags, {"platform": "string"})
    return ins.FromInstr(**_base(node), image=args[0], stage_name=stage_name, platform=flags["platform"])


def _parse_arg(node: Node, ctx: ParseContext) -> ins.ArgInstr:
    _at_least_one(node)
    parse_flags(node.flags, {})
    pairs = []
    for arg in node.args:
        name, eq, default = arg.partition("=")
        if eq and not name:
            raise DockerfileError("ARG names can not be blank")
        pairs.append(ins.ArgPair(name, default if eq else None))
    return ins.ArgInstr(**_base(node), args=tuple(pairs))


def _key_values(node: Node) -> tuple[ins.KeyValue, ...]:
    parse_flags(node.flags, {})
    args = node.args
    if not args:
        raise DockerfileError(f"{node.cmd} requires at least one argument")
    if len(args) % 2:
        raise DockerfileError(f"Bad input to {node.cmd}, too many arguments")
    if any(not key for key in args[::2]):
        raise DockerfileError(f"{node.cmd} names can not be blank")
    return tuple(ins.KeyValue(k, v) for k, v in zip(args[::2], args[1::2]))


def _parse_env(node: Node, ctx: ParseContext) -> ins.EnvInstr:
    return ins.EnvInstr(**_base(node), pairs=_key_values(node))


def _parse_label(node: Node, ctx: ParseContext) -> ins.LabelInstr:
    return ins.LabelInstr(**_base(node), pairs=_key_values(node))


def _parse_maintainer(node: Node, ctx: ParseContext) -> ins.MaintainerInstr:
    maintainer = _exactly_one(node)
    parse_flags(node.flags, {})
    return ins.MaintainerInstr(**_base(node), maintainer=maintainer)


def _sources_and_dest(node: Node) -> tuple[tuple[str, ...], str, tuple[HeredocDoc, ...]]:
    """Split COPY/ADD arguments into paths, destination and inline (heredoc) sources."""
    *sources, dest = node.args
    if heredoc_marker(dest):
        raise DockerfileError(f"{node.cmd} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc for doc in node.heredocs}
    paths: list[str] = []
    inline: list[HeredocDoc] = []
    for src in sources:
        marker = heredoc_marker(src)
        if marker is None:
            paths.append(src)
            continue
        fd, chomp, name, expand = marker
        body = bodies.get(name)
        inline.append(body or HeredocDoc(name=name, content="", expand=expand, chomp=chomp, fd=fd))
    return tuple(paths), dest, tuple(inline)


def _copy_like_args(node: Node, spec: dict[str, str]) -> tuple[dict, dict]:
    if len(node.args) < 2:
        raise DockerfileError(f"{node.cmd} requires at least two arguments, but only one was provided. "
                              "Destination could not be determined")
    flags = parse_flags(node.flags, spec)
    sources, dest, inline = _sources_and_dest(node)
    common = dict(_base(node), sources=sources, dest=dest, heredocs=inline, chown=flags["chown"],
                  chmod=flags["chmod"], link=flags["link"], excludes=flags["exclude"], json=node.json)
    return common, flags


def _parse_copy(node: Node, ctx: ParseContext) -> ins.CopyInstr:
    spec = {"chown": "string", "from": "string", "chmod": "string", "link": "bool",
            "exclude": "strings", "parents": "bool"}
    common, flags = _copy_like_args(node, spec)
    return ins.CopyInstr(**common, from_=flags["from"], parents=flags["parents"])


def _parse_add(node: Node, ctx: ParseContext) -> ins.AddInstr:
    spec = {"chown": "string", "chmod": "string", "link": "bool", "keep-git-dir": "bool",
            "checksum": "string", "exclude": "strings"}
    common, flags = _copy_like_args(node, spec)
    return ins.AddInstr(**common, checksum=flags["checksum"], keep_git_dir=flags["keep-git-dir"])


def _parse_workdir(node: Node, ctx: ParseContext) -> ins.WorkdirInstr:
    path = _exactly_one(node)
    parse_flags(node.flags, {})
    return ins.WorkdirInstr(**_base(node), path=path)


def _parse_user(node: Node, ctx: ParseContext) -> ins.UserInstr:
    user = _exactly_one(node)
    parse_flags(node.flags, {})
    return ins.UserInstr(**_base(node), user=user)


def _parse_stopsignal(node: Node, ctx: ParseContext) -> ins.StopSignalInstr:
    # BuildKit never parses STOPSIGNAL's flags, so none are refused either.
    return ins.StopSignalInstr(**_base(node), signal=_exactly_one(node))


def _parse_expose(node: Node, ctx: ParseContext) -> ins.ExposeInstr:
    _at_least_one(node)
    parse_flags(node.flags, {})
    return ins.ExposeInstr(**_base(node), ports=tuple(sorted(node.args)))


def _parse_volume(node: Node, ctx: ParseContext) -> ins.VolumeInstr:
    _at_least_one(node)
    parse_flags(node.flags, {})
    volumes = tuple(v.strip() for v in node.args)
    if any(not v for v in volumes):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return ins.VolumeInstr(**_base(node), volumes=volumes, json=node.json)


def _parse_run(node: Node, ctx: ParseContext) -> ins.RunInstr:
    flags = parse_flags(node.flags, {"mount": "strings", "network": "string", "security": "string"})
    for mount in flags["mount"]:
        check_mount(mount)
    return ins.RunInstr(**_base(node), command=_command_line(node), shell_form=not node.json,
                        heredocs=node.heredocs, mounts=flags["mount"], network=flags["network"],
                        security=flags["security"])


def _parse_cmd(node: Node, ctx: ParseContext) -> ins.CmdInstr:
    parse_flags(node.flags, {})
    return ins.CmdInstr(**_base(node), command=_command_line(node), shell_form=not node.json)


def _parse_entrypoint(node: Node, ctx: ParseContext) -> ins.EntrypointInstr:
    parse_flags(node.flags, {})
    return ins.EntrypointInstr(**_base(node), command=_command_line(node), shell_form=not node.json)


def _parse_shell(node: Node, ctx: ParseContext) -> ins.ShellInstr:
    parse_flags(node.flags, {})
    shell = _command_line(node)
    if not shell:
        raise DockerfileError("SHELL requires at least one argument")
    if not node.json:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    return ins.ShellInstr(**_base(node), shell=shell)


def _parse_healthcheck(node: Node, ctx: ParseContext) -> ins.HealthcheckInstr:
    _at_least_one(node)
    kind, rest = node.args[0].upper(), node.args[1:]
    if kind == "NONE":
        # As in BuildKit, flags are not even looked at for NONE.
        if rest:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return ins.HealthcheckInstr(**_base(node), test=("NONE",))
    spec = dict.fromkeys(("interval", "timeout", "start-period", "start-interval", "retries"), "string")
    flags = parse_flags(node.flags, spec)
    if kind != "CMD":
        raise DockerfileError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    command = rest if node.json else ((" ".join(rest),) if rest else ())
    if not command:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = ("CMD" if node.json else "CMD-SHELL", *command)
    durations = {key.replace("-", "_"): _health_duration(key, flags[key])
                 for key in ("interval", "timeout", "start-period", "start-interval")}
    return ins.HealthcheckInstr(**_base(node), test=test, retries=_retries(flags["retries"]), **durations)


def _health_duration(name: str, value: str | None) -> int:
    if not value:
        return 0
    duration = parse_go_duration(value)
    if duration != 0 and duration < _MIN_HEALTH_DURATION:
        raise DockerfileError(f'Interval "{name}" cannot be less than 1ms')
    return duration


def _retries(value: str | None) -> int:
    if not value:
        return 0
    retries = parse_go_int32(value)
    if retries < 0:
        raise DockerfileError(f"--retries cannot be negative ({retries})")
    return retries


def _parse_onbuild(node: Node, ctx: ParseContext) -> ins.OnbuildInstr:
    if not node.args and node.sub_cmd is None:
        raise DockerfileError("ONBUILD requires at least one argument")
    parse_flags(node.flags, {})
    trigger_name = (node.sub_cmd or "").upper()
    if trigger_name == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_name in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{trigger_name} isn't allowed as an ONBUILD trigger")
    trigger_node = parse_trigger(node, ctx.escape, list(ctx.lines)) if ctx.lines else node
    trigger = parse_instruction(trigger_node, ctx)
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original, count=1)
    for doc in trigger_node.heredocs:
        expression += "\n" + doc.content + doc.name
    return ins.OnbuildInstr(**_base(node), expression=expression, trigger=trigger)


_PARSERS: dict[str, Callable[[Node, ParseContext], ins.Instruction]] = {
    "ADD": _parse_add, "ARG": _parse_arg, "CMD": _parse_cmd, "COPY": _parse_copy,
    "ENTRYPOINT": _parse_entrypoint, "ENV": _parse_env, "EXPOSE": _parse_expose,
    "FROM": _parse_from, "HEALTHCHECK": _parse_healthcheck, "LABEL": _parse_label,
    "MAINTAINER": _parse_maintainer, "ONBUILD": _parse_onbuild, "RUN": _parse_run,
    "SHELL": _parse_shell, "STOPSIGNAL": _parse_stopsignal, "USER": _parse_user,
    "VOLUME": _parse_volume, "WORKDIR": _parse_workdir,
}


def _unknown_instruction(word: str) -> str:
    """BuildKit's message, with its "did you mean" hint for near misses."""
    message = f"unknown instruction: {word}"
    best, best_distance = None, 3
    for name in _PARSERS:
        distance = _levenshtein(word.lower(), name.lower())
        if distance < best_distance:
            best, best_distance = name, distance
    limit = 1 if len(word) <= 3 else 2
    if best is not None and best_distance <= limit:
        message += f" (did you mean {best.lower()}?)"
    return message


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
