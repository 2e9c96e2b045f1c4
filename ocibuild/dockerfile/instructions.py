"""Typed Dockerfile instructions: one frozen dataclass per instruction (BuildKit's commands.go).

Every instruction carries its ``location`` and its ``original`` text. Values are stored
as written (quotes and ``$VAR`` references kept) until :func:`ocibuild.dockerfile.expand`
returns a copy with the fields BuildKit expands replaced by their expanded values.
Commands in shell form keep one string (``("echo $HOME",)``, ``shell_form=True``) that the
builder hands to the SHELL; exec form keeps the JSON list as given.

Durations of HEALTHCHECK are integer nanoseconds, as in the image configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocibuild.dockerfile.parser import HeredocDoc
from ocibuild.errors import Location

__all__ = [
    "AddInstr", "ArgInstr", "ArgPair", "CmdInstr", "CopyInstr", "EntrypointInstr", "EnvInstr",
    "ExposeInstr", "FromInstr", "HealthcheckInstr", "HeredocDoc", "Instruction", "KeyValue",
    "LabelInstr", "MaintainerInstr", "OnbuildInstr", "RunInstr", "ShellInstr", "StopSignalInstr",
    "UserInstr", "VolumeInstr", "WorkdirInstr",
]


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Base of all instructions; ``name`` is the upper-case keyword."""

    location: Location
    original: str

    name = ""


@dataclass(frozen=True)
class KeyValue:
    """One ``key=value`` of an ENV or a LABEL."""

    key: str
    value: str


@dataclass(frozen=True)
class ArgPair:
    """One ``NAME[=default]`` of an ARG; ``default`` is None when no ``=`` was written."""

    name: str
    default: str | None = None


@dataclass(frozen=True, kw_only=True)
class FromInstr(Instruction):
    """``FROM [--platform=p] image [AS name]``; ``stage_name`` is lower-cased."""

    image: str
    stage_name: str | None = None
    platform: str | None = None
    name = "FROM"


@dataclass(frozen=True, kw_only=True)
class ArgInstr(Instruction):
    """``resolved`` ARGs (from a scope) hold each pair's final value in ``default``."""

    args: tuple[ArgPair, ...]
    resolved: bool = False
    name = "ARG"


@dataclass(frozen=True, kw_only=True)
class EnvInstr(Instruction):
    """All pairs of one ENV expand against the environment as it was before the ENV."""

    pairs: tuple[KeyValue, ...]
    name = "ENV"


@dataclass(frozen=True, kw_only=True)
class LabelInstr(Instruction):
    """``LABEL key=value ...``."""

    pairs: tuple[KeyValue, ...]
    name = "LABEL"


@dataclass(frozen=True, kw_only=True)
class CopyInstr(Instruction):
    """``COPY``: ``sources`` are paths; inline ``heredocs`` are extra sources named by them."""

    sources: tuple[str, ...]
    dest: str
    heredocs: tuple[HeredocDoc, ...] = ()
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    json: bool = False
    name = "COPY"


@dataclass(frozen=True, kw_only=True)
class AddInstr(Instruction):
    """``ADD``: as COPY, plus archives unpacked, ``--checksum`` and ``--keep-git-dir``."""

    sources: tuple[str, ...]
    dest: str
    heredocs: tuple[HeredocDoc, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    checksum: str | None = None
    keep_git_dir: bool = False
    excludes: tuple[str, ...] = ()
    json: bool = False
    name = "ADD"


@dataclass(frozen=True, kw_only=True)
class WorkdirInstr(Instruction):
    """``WORKDIR path``."""

    path: str
    name = "WORKDIR"


@dataclass(frozen=True, kw_only=True)
class UserInstr(Instruction):
    """``USER user[:group]``."""

    user: str
    name = "USER"


@dataclass(frozen=True, kw_only=True)
class ExposeInstr(Instruction):
    """Ports as written; after expansion, normalised ``"80/tcp"`` entries (ranges spelled out)."""

    ports: tuple[str, ...]
    name = "EXPOSE"


@dataclass(frozen=True, kw_only=True)
class VolumeInstr(Instruction):
    """``VOLUME path ...``, or the JSON form (``json=True``)."""

    volumes: tuple[str, ...]
    json: bool = False
    name = "VOLUME"


@dataclass(frozen=True, kw_only=True)
class _CommandLine(Instruction):
    """A command in exec form (``shell_form=False``) or shell form (one string, SHELL prepended)."""

    command: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True, kw_only=True)
class CmdInstr(_CommandLine):
    """``CMD``."""

    name = "CMD"


@dataclass(frozen=True, kw_only=True)
class EntrypointInstr(_CommandLine):
    """An empty exec form (``ENTRYPOINT []``) clears the entrypoint."""

    name = "ENTRYPOINT"


@dataclass(frozen=True, kw_only=True)
class RunInstr(_CommandLine):
    """``RUN``; ``mounts`` are the raw ``--mount`` values (CSV), in order."""

    heredocs: tuple[HeredocDoc, ...] = ()
    mounts: tuple[str, ...] = ()
    network: str | None = None
    security: str | None = None
    name = "RUN"


@dataclass(frozen=True, kw_only=True)
class ShellInstr(Instruction):
    """``SHELL ["executable", "parameters"]``."""

    shell: tuple[str, ...]
    name = "SHELL"


@dataclass(frozen=True, kw_only=True)
class StopSignalInstr(Instruction):
    """``STOPSIGNAL signal``."""

    signal: str
    name = "STOPSIGNAL"


@dataclass(frozen=True, kw_only=True)
class HealthcheckInstr(Instruction):
    """``test`` is ``("NONE",)``, ``("CMD", arg...)`` or ``("CMD-SHELL", "cmd")``; 0 = unset."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0
    name = "HEALTHCHECK"


@dataclass(frozen=True, kw_only=True)
class OnbuildInstr(Instruction):
    """``expression`` is what goes into the image config; ``trigger`` is it parsed."""

    expression: str
    trigger: Instruction
    name = "ONBUILD"


@dataclass(frozen=True, kw_only=True)
class MaintainerInstr(Instruction):
    """``MAINTAINER name`` (deprecated)."""

    maintainer: str
    name = "MAINTAINER"
