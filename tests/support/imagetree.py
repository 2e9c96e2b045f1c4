"""An image's root filesystem and config, computed independently of ocibuild.

`load(path, platform)` opens an OCI archive or layout (see `ocilayout`), selects the platform's
manifest (following nested indexes), applies its layers in memory with `tarfile` — whiteouts and
opaque directories included — and returns an `ImageTree`:

    files:  {"/etc/passwd": Entry(type, mode, uid, gid, sha256-or-None, linkname-or-None)}
    config: {Env, Entrypoint, Cmd, WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal}

Normalisations, so that two correct writers compare equal:
- modification times are ignored (builders clamp them differently);
- the root directory is left out, and a parent directory that no layer lists is added as
  ``dir 0755 0:0`` — what a runtime creates when it extracts the layer;
- a hard link becomes a regular file whose `linkname` is ``"=" + the sorted paths of its group``
  (e.g. ``"=/a,/b"``), which does not depend on which path a writer stored first.
`linkname` holds a symlink's target, ``"major,minor"`` for a device, and is None otherwise.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .ocilayout import Layout, PlatformImage, decompressed, select

CONFIG_FIELDS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels", "ExposedPorts",
                 "Volumes", "StopSignal")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
          tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char",
          tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


class Entry(NamedTuple):
    type: str
    mode: int
    uid: int
    gid: int
    sha256: str | None
    linkname: str | None

    def show(self) -> str:
        text = f"{self.type} {self.mode:04o} {self.uid}:{self.gid}"
        if self.sha256:
            text += f" sha256:{self.sha256[:12]}"
        return text + (f" -> {self.linkname}" if self.linkname else "")


@dataclass
class ImageTree:
    platform: str
    files: dict[str, Entry]
    config: dict
    image: PlatformImage


def load(path: Path | str, platform: str | None = None) -> ImageTree:
    """The tree and config of `platform`'s image in the archive or layout at `path`."""
    with Layout.open(path) as layout:
        image = select(layout, platform)
        streams = (layout.open_blob(layer["digest"]) for layer in image.manifest["layers"])
        files = apply_layers(streams)
    return ImageTree(image.platform, files, image_config(image.config), image)


def image_config(config_blob: dict) -> dict:
    """The compared subset of an image config's ``config`` object, empty values normalised."""
    raw = config_blob.get("config") or {}
    out = {name: raw.get(name) for name in CONFIG_FIELDS}
    for name in ("Labels", "ExposedPorts", "Volumes"):
        out[name] = dict(out[name] or {})
    for name in ("Env", "Entrypoint", "Cmd"):
        out[name] = list(out[name]) if out[name] is not None else None
    for name in ("WorkingDir", "User", "StopSignal"):
        out[name] = out[name] or ""
    return out


class _Node:
    """One path while layers are applied; hard links share a `_Node`."""

    __slots__ = ("type", "mode", "uid", "gid", "sha256", "linkname")

    def __init__(self, info: tarfile.TarInfo, sha256: str | None):
        self.type = _TYPES.get(info.type, f"tartype-{info.type!r}")
        self.mode, self.uid, self.gid = info.mode & 0o7777, info.uid, info.gid
        self.sha256 = sha256
        if info.issym():
            self.linkname = info.linkname
        elif info.ischr() or info.isblk():
            self.linkname = f"{info.devmajor},{info.devminor}"
        else:
            self.linkname = None


def apply_layers(streams) -> dict[str, Entry]:
    """Apply layer tars (compressed or not; each stream is closed here) bottom to top."""
    nodes: dict[str, _Node] = {}
    for stream in streams:
        with stream:
            _apply_layer(nodes, decompressed(stream))
    return _finish(nodes)


def _apply_layer(nodes: dict[str, _Node], stream) -> None:
    added: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            path = _normal(info.name)
            if path == "/":
                continue
            parent, _, base = path.rpartition("/")
            if base == OPAQUE:
                _remove_below(nodes, parent or "/", keep=added)
            elif base.startswith(WHITEOUT):
                _remove(nodes, f"{parent}/{base[len(WHITEOUT):]}")
            else:
                _add(nodes, path, info, tar)
                added.add(path)


def _add(nodes: dict[str, _Node], path: str, info: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    if info.islnk():
        target = nodes.get(_normal(info.linkname))
        if target is None:
            raise ValueError(f"hard link {path} -> {info.linkname}: target not in the image")
        _remove(nodes, path)
        nodes[path] = target
        return
    old = nodes.get(path)
    if old is not None and not (old.type == "dir" and info.isdir()):
        _remove(nodes, path)
    digest = None
    if info.isreg():
        digest = hashlib.sha256(tar.extractfile(info).read()).hexdigest()
    nodes[path] = _Node(info, digest)


def _remove(nodes: dict[str, _Node], path: str) -> None:
    nodes.pop(path, None)
    _remove_below(nodes, path, keep=set())


def _remove_below(nodes: dict[str, _Node], directory: str, keep: set[str]) -> None:
    prefix = directory.rstrip("/") + "/"
    for name in [n for n in nodes if n.startswith(prefix) and n not in keep]:
        del nodes[name]


def _finish(nodes: dict[str, _Node]) -> dict[str, Entry]:
    groups: dict[int, list[str]] = {}
    for path, node in nodes.items():
        groups.setdefault(id(node), []).append(path)
    files: dict[str, Entry] = {}
    for path, node in nodes.items():
        group = groups[id(node)]
        link = "=" + ",".join(sorted(group)) if len(group) > 1 else node.linkname
        files[path] = Entry(node.type, node.mode, node.uid, node.gid, node.sha256, link)
        parent = path.rpartition("/")[0]
        while parent and parent not in nodes:
            files.setdefault(parent, Entry("dir", 0o755, 0, 0, None, None))
            parent = parent.rpartition("/")[0]
    return dict(sorted(files.items()))


def _normal(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"layer entry {name!r} escapes the root")
    return "/" + "/".join(parts)


def diff_trees(a: dict[str, Entry], b: dict[str, Entry], names=("a", "b"), limit=60) -> list[str]:
    """Readable differences between two trees; empty when they are equal."""
    lines = []
    for path in sorted(set(a) | set(b)):
        left, right = a.get(path), b.get(path)
        if left == right:
            continue
        if left is None:
            lines.append(f"only in {names[1]}: {path} ({right.show()})")
        elif right is None:
            lines.append(f"only in {names[0]}: {path} ({left.show()})")
        else:
            lines.append(f"{path}: {names[0]}={left.show()} | {names[1]}={right.show()}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more differences"]
    return lines


def diff_configs(a: dict, b: dict, names=("a", "b")) -> list[str]:
    """Readable differences between two `image_config` results."""
    return [f"config {key}: {names[0]}={a.get(key)!r} | {names[1]}={b.get(key)!r}"
            for key in CONFIG_FIELDS if a.get(key) != b.get(key)]


def show_tree(files: dict[str, Entry]) -> str:
    return "\n".join(f"{path}  {entry.show()}" for path, entry in files.items())
