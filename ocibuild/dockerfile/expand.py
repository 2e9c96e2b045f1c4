"""Variable expansion of typed instructions, exactly where BuildKit expands.

Expanded: FROM (image and ``--platform``, against the global scope), ARG (defaults,
resolved with build args and global values), ENV and LABEL (keys and values), COPY and
ADD (sources, destination, ``--chown``, ADD's ``--checksum``, bodies of unquoted
heredocs), WORKDIR, USER, STOPSIGNAL, VOLUME, EXPOSE (split into words, then checked and
normalised to ``"80/tcp"``) and the option values of ``RUN --mount``.
Not expanded, as in BuildKit: the commands of RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK (the
shell does that at run time), ONBUILD (expanded when the trigger runs in a child build),
``COPY --from`` (a stage name or image, fixed before the build), ``--chmod``, MAINTAINER.

:func:`expand` is pure: it never changes the scope. :func:`step` expands and then applies
ENV/ARG to the stage scope, which is what a builder does for each instruction in order.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

from ocibuild.dockerfile import instructions as ins
from ocibuild.dockerfile.mounts import expand_mount
from ocibuild.dockerfile.scope import GlobalScope, StageScope
from ocibuild.errors import DockerfileError

__all__ = ["expand", "expand_from", "parse_port_specs", "step"]

Scope = GlobalScope | StageScope


def expand(instr: ins.Instruction, scope: Scope) -> ins.Instruction:
    """Return ``instr`` with its expandable fields expanded against ``scope``.

    Errors are DockerfileError located at the instruction. FROM needs the GlobalScope;
    everything else a StageScope.
    """
    handler = _HANDLERS.get(type(instr))
    if handler is None:
        return instr
    try:
        return handler(instr, scope)
    except DockerfileError as err:
        name = None if err.message.startswith(instr.name) else instr.name
        raise err.at(instr.location, name) from None


def step(instr: ins.Instruction, scope: StageScope) -> ins.Instruction:
    """Expand ``instr`` and apply it to ``scope`` (ENV and ARG change the scope)."""
    expanded = expand(instr, scope)
    scope.apply(expanded)
    return expanded


def expand_from(stage, scope: GlobalScope) -> tuple[str, str | None]:
    """A stage's base image and ``--platform`` (None when not given), expanded."""
    frm = expand(stage.from_instr, scope)
    return frm.image, frm.platform


def _from(instr: ins.FromInstr, scope: Scope) -> ins.FromInstr:
    image = scope.expand(instr.image)
    if not image:
        raise DockerfileError(f"base name ({instr.image}) should not be blank")
    platform = scope.expand(instr.platform) if instr.platform is not None else None
    return dataclasses.replace(instr, image=image, platform=platform)


def _arg(instr: ins.ArgInstr, scope: Scope) -> ins.ArgInstr:
    return instr if instr.resolved else scope.resolve_args(instr)


def _pairs(pairs: tuple[ins.KeyValue, ...], scope: Scope) -> tuple[ins.KeyValue, ...]:
    # All pairs see the environment from before the instruction (BuildKit expands the
    # whole instruction first, then applies it).
    return tuple(ins.KeyValue(scope.expand(p.key), scope.expand(p.value)) for p in pairs)


def _env(instr: ins.EnvInstr, scope: Scope) -> ins.EnvInstr:
    return dataclasses.replace(instr, pairs=_pairs(instr.pairs, scope))


def _label(instr: ins.LabelInstr, scope: Scope) -> ins.LabelInstr:
    return dataclasses.replace(instr, pairs=_pairs(instr.pairs, scope))


def _copy_common(instr, scope: Scope) -> dict:
    docs = tuple(dataclasses.replace(d, content=scope.expand_heredoc(d.content)) if d.expand else d
                 for d in instr.heredocs)
    chown = scope.expand(instr.chown) if instr.chown else instr.chown
    return {"sources": tuple(scope.expand(s) for s in instr.sources), "dest": scope.expand(instr.dest),
            "heredocs": docs, "chown": chown}


def _copy(instr: ins.CopyInstr, scope: Scope) -> ins.CopyInstr:
    return dataclasses.replace(instr, **_copy_common(instr, scope))


def _add(instr: ins.AddInstr, scope: Scope) -> ins.AddInstr:
    checksum = scope.expand(instr.checksum) if instr.checksum else instr.checksum
    return dataclasses.replace(instr, **_copy_common(instr, scope), checksum=checksum)


def _single(field: str) -> Callable:
    def handler(instr, scope: Scope):
        return dataclasses.replace(instr, **{field: scope.expand(getattr(instr, field))})
    return handler


def _volume(instr: ins.VolumeInstr, scope: Scope) -> ins.VolumeInstr:
    volumes = tuple(scope.expand(v) for v in instr.volumes)
    if any(not v for v in volumes):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return dataclasses.replace(instr, volumes=volumes)


def _expose(instr: ins.ExposeInstr, scope: Scope) -> ins.ExposeInstr:
    words = [w for port in instr.ports for w in scope.expand_words(port)]
    return dataclasses.replace(instr, ports=tuple(parse_port_specs(words)))


def _run(instr: ins.RunInstr, scope: Scope) -> ins.RunInstr:
    if not instr.mounts:
        return instr
    return dataclasses.replace(instr, mounts=tuple(expand_mount(m, scope.expand) for m in instr.mounts))


_HANDLERS: dict[type, Callable] = {
    ins.FromInstr: _from, ins.ArgInstr: _arg, ins.EnvInstr: _env, ins.LabelInstr: _label,
    ins.CopyInstr: _copy, ins.AddInstr: _add, ins.WorkdirInstr: _single("path"),
    ins.UserInstr: _single("user"), ins.StopSignalInstr: _single("signal"),
    ins.VolumeInstr: _volume, ins.ExposeInstr: _expose, ins.RunInstr: _run,
}


def parse_port_specs(specs: list[str]) -> list[str]:
    """``[ip:][hostport:]port[-end][/proto]`` -> ``["80/tcp", ...]`` (ranges spelled out).

    Mirrors BuildKit's EXPOSE checks (the IP and host parts are accepted and dropped).
    """
    out: list[str] = []
    for spec in specs:
        ip, host_port, container = _split_port_parts(spec)
        port, _, proto = container.partition("/")
        if not port:
            raise DockerfileError(f"no port specified: {container}<empty>")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise DockerfileError("invalid proto: " + proto)
        _check_ip(ip)
        try:
            start, end = _port_range(port)
        except ValueError:
            raise DockerfileError("invalid containerPort: " + port) from None
        if host_port:
            try:
                host_start, host_end = _port_range(host_port)
            except ValueError:
                raise DockerfileError("invalid hostPort: " + host_port) from None
            if end - start != host_end - host_start and end != start:
                raise DockerfileError("invalid ranges specified for container and host Ports: "
                                      f"{port} and {host_port}")
        out.extend(f"{p}/{proto}" for p in range(start, end + 1))
    return out


def _split_port_parts(spec: str) -> tuple[str, str, str]:
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _check_ip(ip: str) -> None:
    if not ip:
        return
    raw = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise DockerfileError("invalid IP address: " + ip) from None


def _port_range(text: str) -> tuple[int, int]:
    """``"80"`` or ``"8000-8010"``; ValueError when malformed or out of 0..65535."""
    def port(value: str) -> int:
        if not value.isdigit() or int(value) > 65535:
            raise ValueError(value)
        return int(value)

    if "-" not in text:
        return port(text), port(text)
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(text)
    start, end = port(parts[0]), port(parts[1])
    if end < start:
        raise ValueError(text)
    return start, end
