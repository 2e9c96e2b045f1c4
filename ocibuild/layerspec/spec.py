"""layers/<name>.yaml -> a validated `Spec` (pure: reads one file, no network, no apt).

The format (layers/README.md shows a whole example)::

    name: busybox                      # image name: tags become "<name>:<tag>"
    tags: ["{upstream}", latest]       # placeholders: see `PLACEHOLDERS`
    epoch: changelog                   # file and config times: an integer, or "changelog" (the
                                       # date of the first package's newest changelog entry)
    compression: gzip                  # gzip | zstd | none
    platforms: {linux/arm64: arm64}    # OCI platform -> Debian architecture
    packages:                          # fetched with apt-get download, for every platform
      - {name: busybox-static, keep: [/bin/busybox], version: optional pin}
    directories: {/tmp: {mode: "1777"}}
    files: {/etc/group: {mode: "0644", content: "root:x:0:\\n"}}
    symlinks: {/bin/busybox: [/bin/sh, /bin/ls]}     # target -> link paths
    config: {env: [...], cmd: [sh], entrypoint: [...], user: "", workdir: "", labels: {...}}

Instead of `packages:` (and the path sections), a whole system made by debootstrap (root only;
see `rootfs`)::

    epoch: release                     # an integer, or "release": the mirror's Release `Date:`
    rootfs:
      tool: debootstrap                # the only tool so far
      variant: minbase                 # debootstrap --variant (default minbase)
      suite: bookworm
      mirror: http://deb.debian.org/debian
      components: [main]               # default [main]
      include: [ca-certificates]       # debootstrap --include / --exclude
      exclude: []
      cleanup:                         # left out of the layer: layer-path globs ("*" crosses "/")
        - /var/lib/apt/lists/*
        - {empty: /etc/machine-id}     # kept, but with no content (when present)
    files: {...}                       # directories, files, symlinks: as above, replacing or
                                       # adding to the tree (after cleanup); parents must exist

A rootfs spec's tags and labels take the placeholders of `ROOTFS_PLACEHOLDERS`.

Modes are quoted octal strings: YAML 1.1 reads an unquoted 755 as decimal, which would
silently give the wrong mode. Every error is an `InvalidInput` reading
``<file>: <key path>: <what is wrong>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ocibuild.errors import InvalidInput, InvalidPlatform
from ocibuild.layer.compress import Compression
from ocibuild.layer.entry import Kind
from ocibuild.oci import Platform

# What "{...}" may name in tags and labels; values come from the platform's first package.
PLACEHOLDERS = ("version", "upstream", "source_version", "package", "debian_arch")
# ... and in a rootfs spec: "12.11" (the Release file's Version:), bookworm, 20250517, arm64.
ROOTFS_PLACEHOLDERS = ("version", "suite", "release_date", "debian_arch")
_TOP_KEYS = {"name", "tags", "epoch", "compression", "platforms", "packages", "rootfs", "directories", "files",
             "symlinks", "config"}
_ROOTFS_KEYS = {"tool", "variant", "suite", "mirror", "components", "include", "exclude", "cleanup"}
_VARIANTS = {"minbase", "buildd", "fakechroot", "-"}
_SUITE = re.compile(r"^[a-z][a-z0-9.-]*$")
_CONFIG_KEYS = {"env", "cmd", "entrypoint", "user", "workdir", "labels"}
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_DEBIAN_ARCH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_COMPRESSION = {"gzip": Compression.GZIP, "zstd": Compression.ZSTD, "none": Compression.NONE}


@dataclass(frozen=True)
class Package:
    name: str
    keep: tuple[str, ...]         # layer-path glob patterns ("bin/busybox")
    version: str | None = None    # None: apt's candidate


@dataclass(frozen=True)
class PathSpec:
    """A directory, file or symlink the spec adds itself (not from a package)."""

    path: str                     # layer path: "etc/passwd"
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    content: bytes = b""
    target: str = ""


@dataclass(frozen=True)
class ConfigSpec:
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)   # values may hold placeholders


@dataclass(frozen=True)
class RootfsSpec:
    """A whole root filesystem from debootstrap (one per platform), instead of packages."""

    suite: str
    mirror: str                   # "http://deb.debian.org/debian" (no trailing "/")
    variant: str = "minbase"
    components: tuple[str, ...] = ("main",)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()  # layer-path globs left out of the layer ("var/log/*")
    empty: tuple[str, ...] = ()   # layer paths kept as empty files when they are files
    tool: str = "debootstrap"


@dataclass(frozen=True)
class Spec:
    file: Path
    name: str
    tags: tuple[str, ...]
    epoch: int | None             # None: from the package changelog, or the rootfs mirror's Release date
    compression: Compression
    platforms: tuple[tuple[Platform, str], ...]   # (OCI platform, Debian architecture), in file order
    packages: tuple[Package, ...]  # empty for a rootfs spec
    paths: tuple[PathSpec, ...]
    config: ConfigSpec
    rootfs: RootfsSpec | None = None


def load_spec(path: str | Path) -> Spec:
    """Read and validate one spec file. Raises InvalidInput naming the file and the key."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InvalidInput(f"{path}: not valid YAML: {e}") from None
    return _Reader(path).spec(doc)


def load_specs(directory: str | Path) -> list[Spec]:
    """Every ``*.yaml`` in `directory`, sorted by file name; two specs may not share a name."""
    specs = [load_spec(p) for p in sorted(Path(directory).glob("*.yaml"))]
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            raise InvalidInput(f"{spec.file}: name: {spec.name!r} is also the name in {seen[spec.name]}")
        seen[spec.name] = spec.file
    return specs


def layer_path(text: str) -> str:
    """"/bin/sh" -> "bin/sh"; ValueError for "", "/", or a path with "." or ".." components."""
    parts = text.strip("/").split("/")
    if not text.strip("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not an absolute path inside the image: {text!r}")
    return "/".join(parts)


class _Reader:
    """Validation with the file name and key path in every message."""

    def __init__(self, file: Path):
        self.file = file
        self.placeholders = PLACEHOLDERS

    def error(self, key: str, why: str) -> InvalidInput:
        return InvalidInput(f"{self.file}: {key}: {why}" if key else f"{self.file}: {why}")

    def spec(self, doc: Any) -> Spec:
        doc = self.mapping("", doc)
        unknown = sorted(set(doc) - _TOP_KEYS)
        if unknown:
            raise self.error(unknown[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
        for key in ("name", "platforms"):
            if key not in doc:
                raise self.error(key, "missing")
        if "packages" not in doc and "rootfs" not in doc:
            raise self.error("packages", "missing (or give `rootfs:` instead)")
        if "packages" in doc and "rootfs" in doc:
            raise self.error("rootfs", "give either `packages:` or `rootfs:`, not both")
        name = self.string("name", doc["name"])
        if not _NAME.match(name):
            raise self.error("name", f"{name!r} is not a valid image name (lowercase, digits, . _ - /)")
        paths = self.directories(doc.get("directories") or {}) + self.files(doc.get("files") or {})
        paths += self.symlinks(doc.get("symlinks") or {})
        seen: set[str] = set()
        for spec in paths:
            if spec.path in seen:
                raise self.error(spec.path, "given twice (among directories, files and symlinks)")
            seen.add(spec.path)
        if "rootfs" in doc:
            return self.rootfs_spec(doc, name, tuple(paths))
        return Spec(self.file, name, self.tags(doc.get("tags", ["latest"])), self.epoch(doc.get("epoch", "changelog")),
                    self.compression(doc.get("compression", "gzip")), self.platforms(doc["platforms"]),
                    self.packages(doc["packages"]), tuple(paths), self.config(doc.get("config") or {}))

    def rootfs_spec(self, doc: dict, name: str, paths: tuple[PathSpec, ...]) -> Spec:
        """A spec with `rootfs:` (its paths replace or add to what debootstrap made)."""
        self.placeholders = ROOTFS_PLACEHOLDERS
        epoch = doc.get("epoch", "release")
        if epoch != "release" and (not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0):
            raise self.error("epoch", f"expected seconds since 1970 or \"release\", found {epoch!r}")
        return Spec(self.file, name, self.tags(doc.get("tags", ["latest"])), None if epoch == "release" else epoch,
                    self.compression(doc.get("compression", "gzip")), self.platforms(doc["platforms"]),
                    (), paths, self.config(doc.get("config") or {}), self.rootfs(doc["rootfs"]))

    # ------------------------------------------------------------------ scalars and shapes

    def mapping(self, key: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, found {type(value).__name__}")
        return value

    def strings(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of strings, found {type(value).__name__}")
        return tuple(self.string(f"{key}[{i}]", v) for i, v in enumerate(value))

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, found {value!r}")
        return value

    def path(self, key: str, value: Any) -> str:
        try:
            return layer_path(self.string(key, value))
        except ValueError as e:
            raise self.error(key, str(e)) from None

    def mode(self, key: str, value: Any, default: int) -> int:
        if value is None:
            return default
        if not isinstance(value, str) or not re.fullmatch(r"(0o)?[0-7]{1,5}", value):
            raise self.error(key, f"write modes as quoted octal strings (\"0755\"), not {value!r}")
        mode = int(value.removeprefix("0o"), 8)
        if mode > 0o7777:
            raise self.error(key, f"{value!r} is more than permission bits (07777)")
        return mode

    def owner_id(self, key: str, value: Any) -> int:
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
            raise self.error(key, f"expected a numeric id, found {value!r}")
        return value

    def fields(self, key: str, value: Any, allowed: set[str]) -> dict:
        value = self.mapping(key, value if value is not None else {})
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.error(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    # ------------------------------------------------------------------ sections

    def tags(self, value: Any) -> tuple[str, ...]:
        tags = self.strings("tags", value)
        for i, tag in enumerate(tags):
            self.template(f"tags[{i}]", tag)
        return tags

    def epoch(self, value: Any) -> int | None:
        if value == "changelog":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self.error("epoch", f"expected seconds since 1970 or \"changelog\", found {value!r}")

    def compression(self, value: Any) -> Compression:
        if value not in _COMPRESSION:
            raise self.error("compression", f"expected one of {', '.join(_COMPRESSION)}, found {value!r}")
        return _COMPRESSION[value]

    def platforms(self, value: Any) -> tuple[tuple[Platform, str], ...]:
        found = []
        for text, arch in self.mapping("platforms", value).items():
            key = f"platforms.{text}"
            try:
                platform = Platform.parse(self.string(key, text))
            except InvalidPlatform as e:
                raise self.error(key, e.message) from None
            if not isinstance(arch, str) or not _DEBIAN_ARCH.match(arch):
                raise self.error(key, f"expected a Debian architecture (arm64, armhf, ...), found {arch!r}")
            if any(platform == p for p, _ in found):
                raise self.error(key, f"{platform} is given twice")
            found.append((platform, arch))
        if not found:
            raise self.error("platforms", "at least one platform is needed")
        return tuple(found)

    def packages(self, value: Any) -> tuple[Package, ...]:
        if not isinstance(value, list) or not value:
            raise self.error("packages", "expected a non-empty list")
        found = []
        for i, item in enumerate(value):
            key = f"packages[{i}]"
            item = self.fields(key, item, {"name", "keep", "version"})
            name = self.string(f"{key}.name", item.get("name"))
            if not _PACKAGE.match(name):
                raise self.error(f"{key}.name", f"{name!r} is not a Debian package name")
            keep = tuple(self.path(f"{key}.keep[{j}]", p) for j, p in enumerate(self.strings(f"{key}.keep", item.get("keep"))))
            version = item.get("version")
            found.append(Package(name, keep, None if version is None else self.string(f"{key}.version", str(version))))
        return tuple(found)

    def rootfs(self, value: Any) -> RootfsSpec:
        doc = self.fields("rootfs", value, _ROOTFS_KEYS)
        for key in ("tool", "suite", "mirror"):
            if key not in doc:
                raise self.error(f"rootfs.{key}", "missing")
        if doc["tool"] != "debootstrap":
            raise self.error("rootfs.tool", f"expected debootstrap, found {doc['tool']!r}")
        variant = self.string("rootfs.variant", doc.get("variant", "minbase"))
        if variant not in _VARIANTS:
            raise self.error("rootfs.variant", f"expected one of {', '.join(sorted(_VARIANTS))}, found {variant!r}")
        suite, mirror = self.string("rootfs.suite", doc["suite"]), self.string("rootfs.mirror", doc["mirror"])
        if not _SUITE.match(suite):
            raise self.error("rootfs.suite", f"{suite!r} is not a Debian suite name")
        if not re.match(r"^(https?|file)://\S+$", mirror):
            raise self.error("rootfs.mirror", f"expected an http(s):// or file:// URL, found {mirror!r}")
        lists = {}
        for key in ("components", "include", "exclude"):
            lists[key] = self.strings(f"rootfs.{key}", doc.get(key, ["main"] if key == "components" else []))
            for i, item in enumerate(lists[key]):
                if not _PACKAGE.match(item):
                    raise self.error(f"rootfs.{key}[{i}]", f"{item!r} is not a Debian package or component name")
        remove, empty = self.cleanup(doc.get("cleanup") or [])
        return RootfsSpec(suite, mirror.rstrip("/"), variant, remove=remove, empty=empty, **lists)

    def cleanup(self, value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """`cleanup:` -> (globs left out, paths emptied); an item is a glob or ``{empty: path}``."""
        if not isinstance(value, list):
            raise self.error("rootfs.cleanup", f"expected a list, found {type(value).__name__}")
        remove, empty = [], []
        for i, item in enumerate(value):
            key = f"rootfs.cleanup[{i}]"
            if isinstance(item, dict):
                empty.append(self.path(f"{key}.empty", self.fields(key, item, {"empty"}).get("empty")))
            else:
                remove.append(self.path(key, item))
        return tuple(remove), tuple(empty)

    def directories(self, value: Any) -> list[PathSpec]:
        found = []
        for text, item in self.mapping("directories", value).items():
            key = f"directories.{text}"
            item = self.fields(key, item, {"mode", "uid", "gid"})
            found.append(PathSpec(self.path(key, text), Kind.DIR, self.mode(f"{key}.mode", item.get("mode"), 0o755),
                                  self.owner_id(f"{key}.uid", item.get("uid")), self.owner_id(f"{key}.gid", item.get("gid"))))
        return found

    def files(self, value: Any) -> list[PathSpec]:
        found = []
        for text, item in self.mapping("files", value).items():
            key = f"files.{text}"
            item = self.fields(key, item, {"mode", "uid", "gid", "content"})
            content = item.get("content", "")
            if not isinstance(content, str):
                raise self.error(f"{key}.content", f"expected a string, found {type(content).__name__}")
            found.append(PathSpec(self.path(key, text), Kind.FILE, self.mode(f"{key}.mode", item.get("mode"), 0o644),
                                  self.owner_id(f"{key}.uid", item.get("uid")), self.owner_id(f"{key}.gid", item.get("gid")),
                                  content=content.encode("utf-8")))
        return found

    def symlinks(self, value: Any) -> list[PathSpec]:
        found = []
        for target, links in self.mapping("symlinks", value).items():
            key = f"symlinks.{target}"
            self.string(key, target)
            for i, link in enumerate(self.strings(key, links)):
                found.append(PathSpec(self.path(f"{key}[{i}]", link), Kind.SYMLINK, 0o777, target=target))
        return found

    def config(self, value: Any) -> ConfigSpec:
        doc = self.fields("config", value, _CONFIG_KEYS)
        labels = {}
        for label, text in self.mapping("config.labels", doc.get("labels") or {}).items():
            labels[self.string("config.labels", label)] = self.template(f"config.labels.{label}", str(text))
        optional = {k: self.strings(f"config.{k}", doc[k]) for k in ("cmd", "entrypoint") if doc.get(k) is not None}
        return ConfigSpec(env=self.strings("config.env", doc.get("env") or []), labels=labels,
                          user=str(doc.get("user") or ""), workdir=str(doc.get("workdir") or ""), **optional)

    def template(self, key: str, text: str) -> str:
        """Check that `text` names only known placeholders (rendered per platform later)."""
        try:
            text.format_map({name: "" for name in self.placeholders})
        except (KeyError, IndexError, ValueError) as e:
            raise self.error(key, f"bad placeholder in {text!r} ({e}); known: "
                             + ", ".join("{%s}" % p for p in self.placeholders)) from None
        return text
