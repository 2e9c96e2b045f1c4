"""Build the image a `Spec` describes into an OCI layout: one layer per platform, an index, tags.

For each platform the layer holds the kept files of its packages, then the spec's directories,
files and symlinks, plus any missing parent directory (0755 root:root). Every entry gets the
spec's epoch as mtime; the tar writer and compressor are deterministic, so the same spec and
packages give the same digests on every run and machine (see `layer.compress` for the
ISA-L caveat). The layout's index.json gets one entry per tag, each pointing at the image
index; the index lists one manifest per platform, in spec order.

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

from ocibuild.errors import BuildError, InvalidInput, NotSupported
from ocibuild.layer.compress import LayerBlob, build_layer
from ocibuild.layer.entry import Kind, TarEntry, sort_entries
from ocibuild.layerspec.debs import Deb, fetch, matcher, read_members, resolve
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


def build(spec: Spec, dest: str | Path, *, cache: str | Path) -> Built:
    """Build `spec` into the OCI layout `dest` (replaced whole); packages come from `cache`
    (downloaded there when missing). Raises BuildError (apt, dpkg-deb, packages lacking a
    kept file), InvalidInput (the spec contradicts itself), StoreError (writing)."""
    cache, dest = Path(cache), Path(dest)
    per = len(spec.packages)
    requests = [(pkg.name, arch, pkg.version) for _, arch in spec.platforms for pkg in spec.packages]
    debs = resolve(requests, cache)
    files = fetch(debs, cache)
    contents = [_package_entries(spec, debs[i:i + per], files[i:i + per]) for i in range(0, len(debs), per)]
    epoch = spec.epoch if spec.epoch is not None else contents[0][1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        layout = OciLayout(work).create()
        manifests = tuple(_platform_image(layout, spec, platform, arch, entries, debs[i * per:(i + 1) * per], epoch)
                          for i, ((platform, arch), (entries, _)) in enumerate(zip(spec.platforms, contents)))
        index = layout.put_document(Index(manifests=manifests))
        tags = tuple(tag.format_map(_values(debs[0], spec.platforms[0][1])) for tag in spec.tags)
        for tag in tags:
            if not _TAG.match(tag):
                raise InvalidInput(f"{spec.file}: tags: {tag!r} is not a valid tag")
            layout.tag(index, tag, image_name=str(Reference.parse(f"{spec.name}:{tag}")))
        _swap_in(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Built(spec.name, dest, index, manifests, tags, tuple(debs))


def _platform_image(layout: OciLayout, spec: Spec, platform: Platform, arch: str, package_entries: list[TarEntry],
                    debs: list[Deb], epoch: int) -> Descriptor:
    """Write one platform's layer, config and manifest; returns the manifest's descriptor."""
    entries = _finish(spec, package_entries, epoch)
    with layout.blobs.writer() as out:
        blob: LayerBlob = build_layer(entries, out, spec.compression)
    layer = Descriptor(blob.media_type, Digest(blob.digest), blob.size)
    values = _values(debs[0], arch)
    labels = {k: v.format_map(values) for k, v in spec.config.labels.items()}
    container = ContainerConfig(env=spec.config.env, cmd=spec.config.cmd, entrypoint=spec.config.entrypoint,
                                user=spec.config.user, working_dir=spec.config.workdir, labels=labels)
    used = ", ".join(f"{d.package}={d.version}" for d in debs)
    config = ImageConfig.for_platform(platform)
    config = ImageConfig(config.architecture, config.os, config.variant, created=rfc3339(epoch), config=container,
                         diff_ids=(Digest(blob.diff_id),),
                         history=(History(created=rfc3339(epoch), created_by=f"ocibuild layerspec "
                                          f"{spec.file.name} ({arch}): {used}"),))
    manifest = Manifest(config=layout.put_document(config), layers=(layer,))
    return layout.put_document(manifest).with_(platform=platform)


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
