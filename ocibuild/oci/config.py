"""The image configuration (OCI image-spec config.md, with Docker's extra fields).

Fields ocibuild does not interpret are kept in ``extra`` so that a base image's config
round-trips without losing anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ocibuild.errors import InvalidDocument
from ocibuild.oci.canonical import canonical_json
from ocibuild.oci.digest import Digest
from ocibuild.oci.platform import Platform

# The PATH BuildKit gives an image whose base sets none (FROM scratch).
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# ContainerConfig attribute <-> JSON key, in the order Docker prints them.
_CONTAINER_KEYS = {
    "user": "User", "exposed_ports": "ExposedPorts", "env": "Env", "entrypoint": "Entrypoint",
    "cmd": "Cmd", "volumes": "Volumes", "working_dir": "WorkingDir", "labels": "Labels",
    "stop_signal": "StopSignal", "args_escaped": "ArgsEscaped", "healthcheck": "Healthcheck",
    "on_build": "OnBuild", "shell": "Shell",
}
_SET_KEYS = ("exposed_ports", "volumes")  # JSON objects with empty-object values: {"80/tcp": {}}
_LIST_KEYS = ("env", "on_build")


def rfc3339(epoch: float) -> str:
    """UTC time as RFC 3339 with a Z, whole seconds, as BuildKit writes SOURCE_DATE_EPOCH times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


@dataclass(frozen=True)
class ContainerConfig:
    """The ``config`` object of an image configuration: how a container of the image runs."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: dict[str, Any] | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ContainerConfig":
        d = d or {}
        kw: dict[str, Any] = {}
        for attr, key in _CONTAINER_KEYS.items():
            value = d.get(key)
            if value is None:
                continue
            if attr in _SET_KEYS:
                value = tuple(value)
            elif attr in _LIST_KEYS or attr in ("entrypoint", "cmd", "shell"):
                value = tuple(value)
            elif attr == "labels":
                value = dict(value)
            kw[attr] = value
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for attr, key in _CONTAINER_KEYS.items():
            value = getattr(self, attr)
            if attr in _SET_KEYS:
                if value:
                    d[key] = {v: {} for v in value}
            elif attr in ("entrypoint", "cmd", "shell", "healthcheck"):
                if value is not None:
                    d[key] = list(value) if isinstance(value, tuple) else value
            elif value:
                d[key] = list(value) if isinstance(value, tuple) else value
        return d

    def env_dict(self) -> dict[str, str]:
        """Env as a dict; a later duplicate wins, as in a process environment."""
        out: dict[str, str] = {}
        for item in self.env:
            name, _, value = item.partition("=")
            out[name] = value
        return out

    def with_env(self, name: str, value: str) -> "ContainerConfig":
        """Set one variable, replacing it in place when present (Docker keeps the original position)."""
        entry = f"{name}={value}"
        env = list(self.env)
        for i, item in enumerate(env):
            if item.partition("=")[0] == name:
                env[i] = entry
                break
        else:
            env.append(entry)
        return replace(self, env=tuple(env))


@dataclass(frozen=True)
class History:
    """One ``history`` entry: the step that made a layer (or, ``empty_layer``, none)."""

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(d.get("created", "") or "", d.get("created_by", "") or "", d.get("author", "") or "",
                   d.get("comment", "") or "", bool(d.get("empty_layer", False)))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in (("created", self.created), ("created_by", self.created_by),
                               ("author", self.author), ("comment", self.comment)) if v}
        if self.empty_layer:
            d["empty_layer"] = True
        return d


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration: platform, `ContainerConfig`, layer diff_ids, history."""

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_platform(cls, platform: Platform) -> "ImageConfig":
        return cls(architecture=platform.architecture, os=platform.os, variant=platform.variant,
                   os_version=platform.os_version)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    @classmethod
    def from_json(cls, data: bytes) -> "ImageConfig":
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidDocument(f"image config is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise InvalidDocument("image config is not a JSON object")
        rootfs = d.get("rootfs") or {}
        try:
            return cls(
                architecture=d.get("architecture", ""), os=d.get("os", ""),
                variant=d.get("variant", "") or "", os_version=d.get("os.version", "") or "",
                created=d.get("created", "") or "", author=d.get("author", "") or "",
                config=ContainerConfig.from_dict(d.get("config")),
                diff_ids=tuple(Digest(x) for x in rootfs.get("diff_ids") or ()),
                history=tuple(History.from_dict(h) for h in d.get("history") or ()),
                extra={k: v for k, v in d.items() if k not in _TOP_KEYS},
            )
        except (TypeError, AttributeError, ValueError) as e:
            raise InvalidDocument(f"malformed image config: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d.update(architecture=self.architecture, os=self.os)
        for key, value in (("variant", self.variant), ("os.version", self.os_version),
                           ("created", self.created), ("author", self.author)):
            if value:
                d[key] = value
        d["config"] = self.config.to_dict()
        d["rootfs"] = {"type": "layers", "diff_ids": [str(x) for x in self.diff_ids]}
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def with_config(self, **changes: Any) -> "ImageConfig":
        return replace(self, config=replace(self.config, **changes))

    def add_history(self, created_by: str, *, created: str = "", empty_layer: bool,
                    comment: str = "") -> "ImageConfig":
        entry = History(created=created, created_by=created_by, comment=comment, empty_layer=empty_layer)
        return replace(self, history=self.history + (entry,))

    def add_layer(self, diff_id: str) -> "ImageConfig":
        return replace(self, diff_ids=self.diff_ids + (Digest(diff_id),))


_TOP_KEYS = {"architecture", "os", "variant", "os.version", "created", "author", "config", "rootfs", "history"}
