"""Build the image a `Spec` describes into an OCI layout: one layer per platform, an index, tags.

For each platform the layer holds the kept files of its packages, then the spec's directories,
files and symlinks, plus any missing parent directory (0755 root:root). Every entry gets the
spec's epoch as mtime; the tar writer and compressor are deterministic, so the same spec and
packages give the same digests on every run and machine (see `layer.compress` for the
ISA-L caveat). The layout's index.json gets one entry per tag, each pointing at the image
index; the index lists one manifest per platform, in spec order.

A rootfs spec's layers come from `rootfs` instead (debootstrap, cached by mirror state); its
epoch defaults to the mirror's Release date and its placeholders to the Release's fields.

`build` writes into a fresh directory beside `dest` and swaps it in at the end, so `dest`
never holds a half-built image or blobs of earlier builds.
"""

from __future__ import annotations

import email.utils
import fnmatch
import gzip
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ocibuild.errors import BuildError, InvalidInput, NotSupported
from ocibuild.layer.compress import Compression, LayerBlob, build_layer
from ocibuild.layer.entry import Kind, TarEntry, sort_entries
from ocibuild.layerspec.debs import Deb, fetch, matcher, read_members, resolve
from ocibuild.layerspec.rootfs import cached_layer, fetch_release
from ocibuild.layerspec.spec import Spec
from ocibuild.oci import (ContainerConfig, Descriptor, Digest, History, ImageConfig, Index, Manifest, Platform,
                          Reference, rfc3339)
from ocibuild.store import OciLayout

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_KINDS = {b"0": Kind.FILE, b"5": Kind.DIR, b"2": Kind.SYMLINK, b"1": Kind.HARDLINK}


@dataclass(frozen=True)
class Built:
    """What `build` wrote."""

    name: str
    layout: Path
    index: Descriptor                  # the image index (what every tag points at)
    manifests: tuple[Descriptor, ...]  # one per platform, with its platform set
    tags: tuple[str, ...]
    packages: tuple[Deb, ...]          # every package used, platform by platform


def build(spec: Spec, dest: str | Path, *, cache: str | Path, log: Callable[[str], None] | None = None) -> Built:
    """Build `spec` into the OCI layout `dest` (replaced whole); packages come from `cache`
    (downloaded there when missing), and so do a rootfs spec's layers (debootstrapped there when
    missing; `log` hears about that). Raises BuildError (apt, dpkg-deb, debootstrap, packages
    lacking a kept file), InvalidInput (the spec contradicts itself), StoreError (writing)."""
    cache, dest = Path(cache), Path(dest)
    platforms = _rootfs_platforms(spec, cache, log) if spec.rootfs else _package_platforms(spec, cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        layout = OciLayout(work).create()
        manifests = tuple(_platform_image(layout, spec, p) for p in platforms)
        index = layout.put_document(Index(manifests=manifests))
        tags = tuple(tag.format_map(platforms[0].values) for tag in spec.tags)
        for tag in tags:
            if not _TAG.match(tag):
                raise InvalidInput(f"{spec.file}: tags: {tag!r} is not a valid tag")
            layout.tag(index, tag, image_name=str(Reference.parse(f"{spec.name}:{tag}")))
        _swap_in(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Built(spec.name, dest, index, manifests, tags, tuple(d for p in platforms for d in p.debs))


@dataclass(frozen=True)
class _Source:
    """One platform's image before it is written: how to write its layer, and what to say about it."""

    platform: Platform
    write_layer: Callable[[OciLayout], LayerBlob]
    values: dict[str, str]        # the placeholders of tags and labels
    created_by: str
    epoch: int
    debs: tuple[Deb, ...] = ()


def _package_platforms(spec: Spec, cache: Path) -> list[_Source]:
    per = len(spec.packages)
    requests = [(pkg.name, arch, pkg.version) for _, arch in spec.platforms for pkg in spec.packages]
    debs = resolve(requests, cache)
    files = fetch(debs, cache)
    contents = [_package_entries(spec, debs[i:i + per], files[i:i + per]) for i in range(0, len(debs), per)]
    epoch = spec.epoch if spec.epoch is not None else contents[0][1]
    sources = []
    for i, ((platform, arch), (entries, _)) in enumerate(zip(spec.platforms, contents)):
        used = debs[i * per:(i + 1) * per]
        layer = _writer(_finish(spec, entries, epoch), spec.compression)
        sources.append(_Source(platform, layer, _values(used[0], arch), f"ocibuild layerspec {spec.file.name} ({arch}): "
                               + ", ".join(f"{d.package}={d.version}" for d in used), epoch, tuple(used)))
    return sources


def _rootfs_platforms(spec: Spec, cache: Path, log: Callable[[str], None] | None) -> list[_Source]:
    release = fetch_release(spec.rootfs)
    epoch = spec.epoch if spec.epoch is not None else release.date
    sources = []
    for platform, arch in spec.platforms:
        try:
            blob, path = cached_layer(spec.rootfs, spec.paths, arch, release, epoch, spec.compression, cache,
                                      log and (lambda text: log(f"{spec.name}: {platform}: {text}")))
        except InvalidInput as e:
            raise InvalidInput(f"{spec.file}: {e}") from None
        created_by = (f"ocibuild layerspec {spec.file.name} ({arch}): debootstrap --variant={spec.rootfs.variant} "
                      f"{spec.rootfs.suite} {spec.rootfs.mirror} (Release {release.version}, sha256:{release.sha256[:12]})")
        sources.append(_Source(platform, _copier(blob, path), release.values(spec.rootfs.suite, arch), created_by, epoch))
    return sources


def _writer(entries: list[TarEntry], compression: Compression) -> Callable[[OciLayout], LayerBlob]:
    def write(layout: OciLayout) -> LayerBlob:
        with layout.blobs.writer() as out:
            return build_layer(entries, out, compression)
    return write


def _copier(blob: LayerBlob, path: Path) -> Callable[[OciLayout], LayerBlob]:
    def copy(layout: OciLayout) -> LayerBlob:
        with open(path, "rb") as f:
            layout.blobs.ingest(f, blob.digest, blob.size)
        return blob
    return copy


def _platform_image(layout: OciLayout, spec: Spec, source: _Source) -> Descriptor:
    """Write one platform's layer, config and manifest; returns the manifest's descriptor."""
    blob = source.write_layer(layout)
    layer = Descriptor(blob.media_type, Digest(blob.digest), blob.size)
    labels = {k: v.format_map(source.values) for k, v in spec.config.labels.items()}
    container = ContainerConfig(env=spec.config.env, cmd=spec.config.cmd, entrypoint=spec.config.entrypoint,
                                user=spec.config.user, working_dir=spec.config.workdir, labels=labels)
    created = rfc3339(source.epoch)
    config = ImageConfig.for_platform(source.platform)
    config = ImageConfig(config.architecture, config.os, config.variant, created=created, config=container,
                         diff_ids=(Digest(blob.diff_id),), history=(History(created=created, created_by=source.created_by),))
    manifest = Manifest(config=layout.put_document(config), layers=(layer,))
    return layout.put_document(manifest).with_(platform=source.platform)


def _package_entries(spec: Spec, debs: list[Deb], files: list[Path]) -> tuple[list[TarEntry], int | None]:
    """The kept members of one platform's packages, and the date of the first package's changelog."""
    entries: list[TarEntry] = []
    changelog_epoch = None
    for number, (pkg, deb, path) in enumerate(zip(spec.packages, debs, files)):
        keep = matcher(pkg.keep)
        changelog = f"usr/share/doc/{deb.package}/changelog.Debian.gz"
        matched: set[str] = set()
        for name, member, body in read_members(path, lambda p: keep(p) or p == changelog):
            if name == changelog and not keep(name):
                if number == 0:
                    changelog_epoch = _changelog_date(body, deb)
                continue
            matched.update(p for p in pkg.keep if fnmatch.fnmatchcase(name, p))
            entries.append(_member_entry(name, member, body, deb))
        for pattern in pkg.keep:
            if pattern not in matched:
                raise BuildError(f"{spec.file}: packages[{number}].keep: {'/' + pattern!r} matches nothing "
                                 f"in {deb.cache_name}")
    if spec.epoch is None and changelog_epoch is None:
        raise BuildError(f"{spec.file}: epoch: changelog: {debs[0].cache_name} has no changelog.Debian.gz")
    return entries, changelog_epoch


def _member_entry(path: str, member, body: bytes, deb: Deb) -> TarEntry:
    kind = _KINDS.get(member.type) or (Kind.FILE if member.isreg() else None)
    if kind is None:
        raise NotSupported(f"{deb.cache_name}: {path!r}: member type {member.type!r} cannot be kept")
    link = member.linkname
    if kind is Kind.HARDLINK:
        link = "/".join(p for p in link.split("/") if p not in ("", "."))
    return TarEntry(path=path, kind=kind, mode=member.mode & 0o7777, uid=member.uid, gid=member.gid,
                    linkname=link, data=body if kind is Kind.FILE else None)


def _finish(spec: Spec, package_entries: list[TarEntry], epoch: int) -> list[TarEntry]:
    """Package entries + the spec's own paths + missing parents, all at `epoch`, in tar order."""
    by_path: dict[str, TarEntry] = {}
    for entry in package_entries:
        by_path[entry.path] = entry
    for p in spec.paths:
        if p.path in by_path:
            raise InvalidInput(f"{spec.file}: {'/' + p.path}: also a file kept from a package")
        by_path[p.path] = TarEntry(path=p.path, kind=p.kind, mode=p.mode, uid=p.uid, gid=p.gid, linkname=p.target,
                                   data=p.content if p.kind is Kind.FILE else None)
    for path in list(by_path):
        parent = path.rpartition("/")[0]
        while parent and parent not in by_path:
            by_path[parent] = TarEntry(path=parent, kind=Kind.DIR, mode=0o755)
            parent = parent.rpartition("/")[0]
    for entry in by_path.values():
        entry.mtime = epoch
        if entry.kind is Kind.HARDLINK and getattr(by_path.get(entry.linkname), "kind", None) is not Kind.FILE:
            raise BuildError(f"{spec.file}: {'/' + entry.path}: hardlink to {entry.linkname!r}, which is not kept")
        if entry.kind is not Kind.DIR and any(by_path[a].kind is not Kind.DIR for a in _ancestors(entry.path)):
            raise InvalidInput(f"{spec.file}: {'/' + entry.path}: a parent is not a directory")
    return sort_entries(by_path.values())


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _values(deb: Deb, arch: str) -> dict[str, str]:
    return {"version": deb.version, "upstream": deb.upstream, "source_version": deb.source_version,
            "package": deb.package, "debian_arch": arch}


def _changelog_date(gz: bytes, deb: Deb) -> int:
    """Seconds since 1970 of the newest entry of a Debian changelog (its first " -- " line)."""
    try:
        text = gzip.decompress(gz).decode("utf-8", "replace")
    except (OSError, EOFError) as e:
        raise BuildError(f"{deb.cache_name}: changelog.Debian.gz: {e}") from None
    for line in text.splitlines():
        if line.startswith(" -- ") and "  " in line[4:]:
            try:
                return int(email.utils.parsedate_to_datetime(line[4:].split("  ", 1)[1].strip()).timestamp())
            except (TypeError, ValueError):
                break
    raise BuildError(f"{deb.cache_name}: changelog.Debian.gz: no dated entry")


def _swap_in(work: Path, dest: Path) -> None:
    """Put the finished layout at `dest`, removing what was there (a directory rename)."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}-old-", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(work, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
