"""Instructions that change only the image config (ENV, LABEL, CMD, ...), as BuildKit records them.

Each handler takes an *expanded* instruction and the stage's state, updates the config,
and returns the history text; none of them touches the filesystem.
"""

from __future__ import annotations

import json
import posixpath
import signal
from dataclasses import replace

from ocibuild.builder.state import ImageState
from ocibuild.dockerfile import instructions as ins
from ocibuild.errors import BuildError

DEFAULT_SHELL = ("/bin/sh", "-c")


def shell_of(state: ImageState) -> tuple[str, ...]:
    return tuple(state.config.config.shell or DEFAULT_SHELL)


def command_line(instr: ins._CommandLine, state: ImageState) -> tuple[str, ...]:
    """Exec form as written; shell form run through the stage's SHELL."""
    if instr.shell_form:
        return shell_of(state) + tuple(instr.command)
    return tuple(instr.command)


def env(instr: ins.EnvInstr, state: ImageState) -> str:
    cfg = state.config.config
    for pair in instr.pairs:
        cfg = cfg.with_env(pair.key, pair.value)
    state.config = state.config.with_config(env=cfg.env)
    return "ENV " + " ".join(f"{p.key}={p.value}" for p in instr.pairs)


def label(instr: ins.LabelInstr, state: ImageState) -> str:
    labels = dict(state.config.config.labels)
    labels.update((p.key, p.value) for p in instr.pairs)
    state.config = state.config.with_config(labels=labels)
    return "LABEL " + " ".join(f"{p.key}={p.value}" for p in instr.pairs)


def user(instr: ins.UserInstr, state: ImageState) -> str:
    state.config = state.config.with_config(user=instr.user)
    return f"USER {instr.user}"


def expose(instr: ins.ExposeInstr, state: ImageState) -> str:
    ports = tuple(dict.fromkeys(state.config.config.exposed_ports + tuple(instr.ports)))
    state.config = state.config.with_config(exposed_ports=ports)
    return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in instr.ports) + "]"


def volume(instr: ins.VolumeInstr, state: ImageState) -> str:
    for v in instr.volumes:
        if not v.strip():
            raise BuildError("VOLUME specified can not be an empty string")
    vols = tuple(dict.fromkeys(state.config.config.volumes + tuple(instr.volumes)))
    state.config = state.config.with_config(volumes=vols)
    return f"VOLUME {json.dumps(list(instr.volumes))}"


def cmd(instr: ins.CmdInstr, state: ImageState) -> str:
    line = command_line(instr, state)
    state.config = state.config.with_config(cmd=line)
    state.cmd_set = True
    return f"CMD {json.dumps(list(line))}"


def entrypoint(instr: ins.EntrypointInstr, state: ImageState) -> str:
    line = command_line(instr, state)
    changes: dict = {"entrypoint": line}
    if not state.cmd_set:  # an inherited CMD makes no sense with a new ENTRYPOINT: Docker drops it
        changes["cmd"] = None
    state.config = state.config.with_config(**changes)
    return f"ENTRYPOINT {json.dumps(list(line))}"


def shell(instr: ins.ShellInstr, state: ImageState) -> str:
    state.config = state.config.with_config(shell=tuple(instr.shell))
    return f"SHELL {json.dumps(list(instr.shell))}"


def stopsignal(instr: ins.StopSignalInstr, state: ImageState) -> str:
    _check_signal(instr.signal)
    state.config = state.config.with_config(stop_signal=instr.signal)
    return f"STOPSIGNAL {instr.signal}"


def workdir_path(instr: ins.WorkdirInstr, state: ImageState) -> str:
    """The new absolute WORKDIR (relative paths are relative to the current one)."""
    current = state.config.config.working_dir or "/"
    return posixpath.normpath(posixpath.join(current, instr.path))


def healthcheck(instr: ins.HealthcheckInstr, state: ImageState) -> str:
    check: dict = {"Test": list(instr.test)}
    for key, value in (("Interval", instr.interval), ("Timeout", instr.timeout),
                       ("StartPeriod", instr.start_period), ("StartInterval", instr.start_interval),
                       ("Retries", instr.retries)):
        if value:
            check[key] = value
    state.config = state.config.with_config(healthcheck=check)
    return f"HEALTHCHECK {json.dumps(check, sort_keys=True)}"


def onbuild(instr: ins.OnbuildInstr, state: ImageState) -> str:
    state.config = state.config.with_config(on_build=state.config.config.on_build + (instr.expression,))
    return f"ONBUILD {instr.expression}"


def maintainer(instr: ins.MaintainerInstr, state: ImageState) -> str:
    state.config = replace(state.config, author=instr.maintainer)
    return f"MAINTAINER {instr.maintainer}"


def _check_signal(value: str) -> None:
    if value.isdigit() or value.startswith("$"):
        return
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX") or hasattr(signal.Signals, name):
        return
    raise BuildError(f"failed to parse signal: {value!r} is not a valid signal")


HANDLERS = {
    ins.EnvInstr: env, ins.LabelInstr: label, ins.UserInstr: user, ins.ExposeInstr: expose,
    ins.VolumeInstr: volume, ins.CmdInstr: cmd, ins.EntrypointInstr: entrypoint, ins.ShellInstr: shell,
    ins.StopSignalInstr: stopsignal, ins.HealthcheckInstr: healthcheck, ins.OnbuildInstr: onbuild,
    ins.MaintainerInstr: maintainer,
}
