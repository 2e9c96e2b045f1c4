"""The one validator for layouts, manifests and layers, used by the tests of every writer.

    validate_oci_layout(dir)          an OCI image-layout directory
    validate_oci_archive(tar)         a tar of one (``docker buildx build --output type=oci``)
    validate_docker_archive(tar)      a ``docker load`` archive (manifest.json + config + layers)

Each runs pure-Python structural checks (every blob's sha256 and size against its descriptor
and every blob file against its own name, media types and ``mediaType`` fields present, config
``rootfs.diff_ids`` equal to the sha256 of the decompressed layers, the index's platform equal
to the config's) and then the independent tools, on every platform of the image:

- ``skopeo inspect [--raw]`` with ``--override-os/--override-arch/--override-variant`` so that
  skopeo itself picks each platform out of the index (skopeo 1.9 follows nested indexes);
- ``umoci unpack --rootless`` of each platform's manifest, whose rootfs must hold exactly the
  paths `imagetree` computes;
- ``oci-image-tool validate --type image`` (its ``--type imageLayout`` is "unimplemented" in
  1.0.0-rc1; ``image`` autodetects a layout and validates every ref).

Nested indexes: buildx's and buildah's layouts put the image index *under* index.json
(index.json -> one descriptor per tag -> image index -> manifests). umoci 0.4.7 cannot follow
that (``unpack --image dir:tag`` fails with "tag is ambiguous"), and oci-image-tool 1.0.0-rc1
only warns "unknown media type" for the nested index and then validates nothing beneath it while
reporting success. For those two tools the validator therefore builds a temporary copy of the
layout whose index.json lists the per-platform manifests directly (tags ``p0``, ``p1``, ...);
blobs are hard-linked, so the tools still read the writer's own bytes.

A failed check raises `ValidationError` listing every problem found; a missing tool skips the
calling test locally and fails it under CI=true (see `support.require`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .ocilayout import (CONFIG_TYPES, INDEX_TYPES, LAYER_TYPES, MANIFEST_TYPES, Layout,
                        PlatformImage, blob_path, decompressed, images)
from .require import require
from .toolcheck import TOOLS, run_tools, skopeo_docker_problems

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ValidationError(AssertionError):
    """An image failed validation; `problems` lists every finding, one line each."""

    def __init__(self, subject: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{subject}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))


@dataclass
class Report:
    """What a successful validation looked at (so tests can check it did real work)."""

    platforms: list[str] = field(default_factory=list)
    blobs_checked: int = 0
    tools_run: list[str] = field(default_factory=list)


def validate_oci_layout(path: Path | str, tools=TOOLS) -> Report:
    """Validate the image-layout directory at `path`; raise ValidationError on any problem."""
    path = Path(path)
    with Layout.open(path) as layout:
        report, problems = check_layout(layout)
    if not problems:
        problems += run_tools(path, "oci", path, tools)
        report.tools_run = [tool for tool in TOOLS if tool in tools]
    _raise_if(path, problems)
    return report


def validate_oci_archive(tar_path: Path | str, tools=TOOLS) -> Report:
    """Validate an OCI archive: its members, its layout, and skopeo's ``oci-archive:`` view."""
    tar_path = Path(tar_path)
    problems = _archive_member_problems(tar_path)
    with Layout.open(tar_path) as layout:
        report, found = check_layout(layout)
        problems += found
        if not problems:
            with tempfile.TemporaryDirectory(prefix="oci-archive-") as tmp:
                unpacked = layout.extract_to(Path(tmp) / "layout")
                problems += run_tools(unpacked, "oci-archive", tar_path, tools)
                report.tools_run = [tool for tool in TOOLS if tool in tools]
    _raise_if(tar_path, problems)
    return report


def validate_docker_archive(tar_path: Path | str, tools=("skopeo",)) -> Report:
    """Validate a ``docker load`` archive: manifest.json, configs, layers, diff_ids, skopeo.

    Docker 25+ also puts an OCI layout (index.json, oci-layout) in the same tar; when present it
    gets the structural layout checks as well.
    """
    tar_path = Path(tar_path)
    report, problems = Report(), _archive_member_problems(tar_path, allow_symlinks=True)
    with tarfile.open(tar_path, "r:*") as tar:
        problems += _docker_manifest_problems(tar, report)
    with Layout.open(tar_path) as layout:
        if layout.exists("index.json") and layout.exists("oci-layout"):
            problems += check_layout(layout)[1]
    if not problems and "skopeo" in tools:
        require("skopeo")
        problems += skopeo_docker_problems(tar_path, report.platforms)
        report.tools_run = ["skopeo"]
    _raise_if(tar_path, problems)
    return report


def _docker_manifest_problems(tar: tarfile.TarFile, report: Report) -> list[str]:
    def read(name: str) -> bytes:
        stream = tar.extractfile(name)  # follows symlink members
        if stream is None:
            raise KeyError(name)
        return stream.read()

    try:
        entries = json.loads(read("manifest.json"))
    except (KeyError, ValueError) as error:
        return [f"manifest.json: {error}"]
    if not isinstance(entries, list) or not entries:
        return ["manifest.json: expected a non-empty list"]
    problems = []
    for number, entry in enumerate(entries):
        where = f"manifest.json[{number}]"
        try:
            raw_config = read(entry["Config"])
            layers = [hashlib.sha256(decompressed(io.BytesIO(read(name))).read()).hexdigest()
                      for name in entry["Layers"]]
        except (KeyError, TypeError) as error:
            problems.append(f"{where}: missing member or field {error}")
            continue
        named = re.search(r"([0-9a-f]{64})(\.json)?$", entry["Config"])
        if named and hashlib.sha256(raw_config).hexdigest() != named.group(1):
            problems.append(f"{where}: config {entry['Config']} does not hash to its name")
        config = json.loads(raw_config)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if diff_ids != ["sha256:" + digest for digest in layers]:
            problems.append(f"{where}: config diff_ids {diff_ids} != sha256 of the layers {layers}")
        report.platforms.append("/".join(filter(None, (config.get("os"), config.get("architecture"),
                                                        config.get("variant")))))
        report.blobs_checked += 1 + len(layers)
    return problems


def check_layout(layout: Layout) -> tuple[Report, list[str]]:
    """The pure-Python structural checks of a layout; returns (report, problems)."""
    report, problems = Report(), []
    try:
        marker = layout.read_json("oci-layout")
        if marker.get("imageLayoutVersion") != "1.0.0":
            problems.append(f"oci-layout: imageLayoutVersion is {marker.get('imageLayoutVersion')!r}")
        index = layout.read_json("index.json")
    except (FileNotFoundError, KeyError, ValueError) as error:
        return report, [f"layout: {error}"]
    problems += _index_problems("index.json", index, top=True)
    seen: set[str] = set()
    for desc in index.get("manifests", []):
        problems += _descriptor_tree_problems(layout, desc, seen)
    report.blobs_checked = len(seen)
    problems += _stray_blob_problems(layout, seen)
    if not problems:
        for image in images(layout):
            report.platforms.append(image.platform)
            problems += _image_problems(layout, image)
    return report, problems


def _descriptor_problems(where: str, desc: dict, allowed: frozenset[str] | None) -> list[str]:
    problems = []
    if not desc.get("mediaType"):
        problems.append(f"{where}: descriptor has no mediaType")
    elif allowed is not None and desc["mediaType"] not in allowed:
        problems.append(f"{where}: unexpected mediaType {desc['mediaType']!r}")
    if not DIGEST.match(str(desc.get("digest", ""))):
        problems.append(f"{where}: malformed digest {desc.get('digest')!r}")
    if not isinstance(desc.get("size"), int) or desc["size"] < 0:
        problems.append(f"{where}: malformed size {desc.get('size')!r}")
    return problems


def _blob_problems(layout: Layout, where: str, desc: dict) -> list[str]:
    """sha256 and size of the blob against its descriptor."""
    name = blob_path(desc["digest"])
    if not layout.exists(name):
        return [f"{where}: blob {name} is missing"]
    digest, size = _hash(layout, name)
    problems = []
    if size != desc["size"]:
        problems.append(f"{where}: {name} has {size} bytes, descriptor says {desc['size']}")
    if digest != desc["digest"]:
        problems.append(f"{where}: {name} hashes to {digest}")
    return problems


def _descriptor_tree_problems(layout: Layout, desc: dict, seen: set[str]) -> list[str]:
    where = f"descriptor {desc.get('digest')}"
    problems = _descriptor_problems(where, desc, INDEX_TYPES | MANIFEST_TYPES)
    if problems or desc["digest"] in seen:
        return problems
    seen.add(desc["digest"])
    problems = _blob_problems(layout, where, desc)
    if problems:
        return problems
    document = layout.blob_json(desc["digest"])
    if document.get("mediaType") != desc["mediaType"]:
        problems.append(f"{where}: document mediaType {document.get('mediaType')!r} "
                        f"!= descriptor's {desc['mediaType']!r}")
    if desc["mediaType"] in INDEX_TYPES:
        problems += _index_problems(where, document, top=False)
        for child in document.get("manifests", []):
            problems += _descriptor_tree_problems(layout, child, seen)
        return problems
    problems += _manifest_problems(where, document)
    for child in [document.get("config", {}), *document.get("layers", [])]:
        if not _descriptor_problems(where, child, None) and child["digest"] not in seen:
            seen.add(child["digest"])
            problems += _blob_problems(layout, f"{where} -> {child['digest']}", child)
    return problems


def _index_problems(where: str, index: dict, top: bool) -> list[str]:
    problems = []
    if index.get("schemaVersion") != 2:
        problems.append(f"{where}: schemaVersion is {index.get('schemaVersion')!r}, expected 2")
    if not top and "mediaType" not in index:
        problems.append(f"{where}: image index has no mediaType field")
    if not isinstance(index.get("manifests"), list) or not index["manifests"]:
        problems.append(f"{where}: no manifests listed")
        return problems
    for desc in index["manifests"]:
        if not top and desc.get("mediaType") in MANIFEST_TYPES and not desc.get("platform"):
            problems.append(f"{where}: manifest {desc.get('digest')} has no platform")
    return problems


def _manifest_problems(where: str, manifest: dict) -> list[str]:
    problems = []
    if manifest.get("schemaVersion") != 2:
        problems.append(f"{where}: schemaVersion is {manifest.get('schemaVersion')!r}, expected 2")
    problems += _descriptor_problems(f"{where} config", manifest.get("config") or {}, CONFIG_TYPES)
    for number, layer in enumerate(manifest.get("layers", [])):
        problems += _descriptor_problems(f"{where} layer {number}", layer, LAYER_TYPES)
    return problems


def _image_problems(layout: Layout, image: PlatformImage) -> list[str]:
    """Config checks of one platform's image: diff_ids, rootfs type, platform agreement."""
    where = f"{image.platform} ({image.digest})"
    config = image.config
    problems = []
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type") != "layers":
        problems.append(f"{where}: config rootfs.type is {rootfs.get('type')!r}")
    actual = [_diff_id(layout, layer["digest"]) for layer in image.manifest.get("layers", [])]
    if rootfs.get("diff_ids") != actual:
        problems.append(f"{where}: config diff_ids {rootfs.get('diff_ids')} != sha256 of the "
                        f"decompressed layers {actual}")
    for key in ("os", "architecture"):
        if not config.get(key):
            problems.append(f"{where}: config has no {key!r}")
    declared = image.descriptor.get("platform")
    if declared:
        for key in ("os", "architecture", "variant"):
            if (declared.get(key) or "") != (config.get(key) or ""):
                problems.append(f"{where}: index says {key}={declared.get(key)!r}, "
                                f"config says {config.get(key)!r}")
    return problems


def _stray_blob_problems(layout: Layout, seen: set[str]) -> list[str]:
    """Every file under blobs/ must hash to its own name, referenced or not."""
    problems = []
    for name in layout.names():
        if not name.startswith("blobs/"):
            continue
        parts = name.split("/")
        digest = f"{parts[1]}:{parts[-1]}" if len(parts) == 3 else None
        if digest is None or not DIGEST.match(digest):
            problems.append(f"{name}: not a blobs/sha256/<hex> name")
        elif digest not in seen and _hash(layout, name)[0] != digest:
            problems.append(f"{name}: unreferenced blob does not hash to its name")
    return problems


def _hash(layout: Layout, name: str) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with layout.open_file(name) as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


def _diff_id(layout: Layout, digest: str) -> str:
    sha = hashlib.sha256()
    with layout.open_blob(digest) as raw:
        stream = decompressed(raw)
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _archive_member_problems(tar_path: Path, allow_symlinks: bool = False) -> list[str]:
    problems = []
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar.getmembers():
            name = member.name
            if name.startswith("/") or ".." in name.split("/"):
                problems.append(f"archive member {name!r}: absolute or escaping path")
            if not (member.isfile() or member.isdir() or (allow_symlinks and member.issym())):
                problems.append(f"archive member {name!r}: not a regular file or directory")
    return problems


def _raise_if(subject: Path, problems: list[str]) -> None:
    if problems:
        raise ValidationError(str(subject), problems)
