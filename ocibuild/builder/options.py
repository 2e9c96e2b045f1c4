"""What a build is asked to do: options and `--output` / `--build-context` specs, parsed as buildx does."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ocibuild.cache.spec import CacheSpec, csv_fields
from ocibuild.errors import InvalidOption
from ocibuild.builder.mounts import SecretSpec
from ocibuild.builder.registries import RegistryAccess
from ocibuild.layer.compress import Compression
from ocibuild.oci import Platform

OUTPUT_TYPES = ("oci", "docker", "local", "tar", "image", "registry")
COMPRESSIONS = {"gzip": Compression.GZIP, "zstd": Compression.ZSTD, "uncompressed": Compression.NONE}


@dataclass(frozen=True)
class OutputSpec:
    """One `--output`: `type=oci,dest=out.tar` (buildx's CSV form) or a bare path / `-`."""

    type: str
    dest: str = ""
    attrs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "OutputSpec":
        if "=" not in text:  # buildx shorthand: a directory, or "-" for a tar on stdout
            return cls("tar", "-") if text == "-" else cls("local", text)
        fields = csv_fields(text, "--output")
        kind = fields.pop("type", "")
        if kind not in OUTPUT_TYPES:
            raise InvalidOption(f"invalid --output {text!r}: type must be one of {', '.join(OUTPUT_TYPES)}")
        dest = fields.pop("dest", "")
        if kind in ("oci", "docker", "local", "tar") and not dest:
            raise InvalidOption(f"invalid --output {text!r}: type={kind} needs dest=")
        return cls(kind, dest, fields)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.attrs.get(name)
        if value is None:
            return default
        if value.lower() in ("true", "1", ""):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise InvalidOption(f"invalid --output attribute {name}={value!r}: expected true or false")

    @property
    def as_tar(self) -> bool:
        """oci and docker outputs are tar archives unless `tar=false` asks for a layout directory."""
        return self.flag("tar", default=True)

    @property
    def names(self) -> list[str]:
        return [n for n in self.attrs.get("name", "").split(",") if n]


@dataclass(frozen=True)
class ContextSpec:
    """One `--build-context name=value`: a directory, or `oci-layout://path[:tag|@digest]`."""

    name: str
    kind: str  # "dir", "oci-layout" or "docker-image"
    path: str
    ref: str = ""  # tag or digest inside the layout; the image reference for docker-image

    @classmethod
    def parse(cls, text: str) -> "ContextSpec":
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise InvalidOption(f"invalid --build-context {text!r}: expected name=value")
        if value.startswith("oci-layout://"):
            path, ref = _split_layout_ref(value[len("oci-layout://"):])
            return cls(name.lower(), "oci-layout", path, ref)
        if value.startswith("docker-image://"):
            return cls(name.lower(), "docker-image", "", value[len("docker-image://"):])
        if "://" in value:
            raise InvalidOption(f"--build-context {text!r}: expected a directory, oci-layout:// or docker-image://")
        return cls(name.lower(), "dir", value)


def _split_layout_ref(value: str) -> tuple[str, str]:
    """`path@sha256:...` or `path:tag` (a colon after the last slash); else just a path."""
    if "@" in value:
        path, _, digest = value.rpartition("@")
        return path, digest
    head, sep, tail = value.rpartition(":")
    if sep and "/" not in tail and head:
        return head, tail
    return value, ""


def parse_key_values(items: list[str], flag: str) -> dict[str, str]:
    """`--build-arg K=V` / `--label K=V` lists; a bare `K` takes its value from the environment, as buildx does."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidOption(f"invalid {flag} {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


@dataclass
class BuildOptions:
    context: str = "."
    dockerfile: str | None = None          # default: <context>/Dockerfile
    platforms: list[Platform] = field(default_factory=list)  # default: this machine's
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    build_contexts: list[ContextSpec] = field(default_factory=list)
    outputs: list[OutputSpec] = field(default_factory=list)
    compression: Compression = Compression.GZIP
    compression_level: int | None = None
    source_date_epoch: int | None = None   # default: $SOURCE_DATE_EPOCH when set
    cache_dir: str | None = None           # default: ocibuild.store cache dir
    metadata_file: str | None = None
    push: bool = False                     # --push: push the -t names (type=registry)
    registry: RegistryAccess = field(default_factory=RegistryAccess)
    secrets: dict[str, SecretSpec] = field(default_factory=dict)  # --secret, by id
    sandbox: str = "auto"                  # how RUN runs: auto | root | userns | proot
    network: str = "default"               # RUN's network unless RUN --network says otherwise
    no_cache: bool = False                 # --no-cache: run every step (results still recorded)
    no_cache_filter: list[str] = field(default_factory=list)  # stages (names or indexes) run anew
    cache_to: list[CacheSpec] = field(default_factory=list)
    cache_from: list[CacheSpec] = field(default_factory=list)
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # stages/platforms at once
