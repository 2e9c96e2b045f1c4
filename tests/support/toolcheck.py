"""The external validators — skopeo, umoci, oci-image-tool — run on a layout for `validate`.

Each function returns a list of problems (empty when the tool is satisfied). See `validate`'s
docstring for why umoci and oci-image-tool are given a flattened copy of a nested layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import imagetree
from .ocilayout import REF_NAME, Layout, PlatformImage, images
from .require import require

TOOLS = ("skopeo", "umoci", "oci-image-tool")


def run_tools(layout_dir: Path, transport: str, transport_path: Path, tools) -> list[str]:
    """Run `tools` over every platform of the layout at `layout_dir`; return their problems.

    skopeo addresses the image through `transport` (``oci`` or ``oci-archive``) and
    `transport_path`, so an archive is read by skopeo itself, not from our extraction.
    """
    require(*tools)
    problems: list[str] = []
    with Layout.open(layout_dir) as layout:
        found = images(layout)
        if "skopeo" in tools:
            problems += _skopeo_problems(layout, found, transport, transport_path)
        # umoci addresses images only by ref.name: an untagged image (a build without -t) gets one
        # in the flattened copy, like a nested index does.
        flat_needed = any(image.nested or not image.ref_name for image in found)
        with tempfile.TemporaryDirectory(prefix="flat-layout-") as tmp:
            flat, tags = (_flatten(layout_dir, found, Path(tmp) / "layout") if flat_needed
                          else (layout_dir, [_tag_of(layout, image) for image in found]))
            if "umoci" in tools:
                problems += _umoci_problems(layout, flat, found, tags, Path(tmp))
            if "oci-image-tool" in tools:
                problems += _oci_image_tool_problems(flat)
    return problems


def skopeo_docker_problems(tar_path: Path, platforms: list[str]) -> list[str]:
    out, error = _tool(["skopeo", "inspect", f"docker-archive:{tar_path}"])
    if error:
        return [error]
    arch = json.loads(out).get("Architecture")
    if platforms and arch != platforms[0].split("/")[1]:
        return [f"skopeo inspect docker-archive:{tar_path}: architecture {arch!r}, "
                f"config says {platforms[0]}"]
    return []



def _tag_of(layout: Layout, image: PlatformImage) -> str | None:
    if image.ref_name:
        return image.ref_name
    return None if len(layout.read_json("index.json")["manifests"]) > 1 else ""


def _skopeo_problems(layout: Layout, found: list[PlatformImage], transport: str,
                     path: Path) -> list[str]:
    problems = []
    for image in found:
        tag = _tag_of(layout, image)
        if tag is None:
            problems.append(f"{image.platform}: untagged descriptor in a multi-entry index.json; "
                            "skopeo cannot address it")
            continue
        reference = f"{transport}:{path}" + (f":{tag}" if tag else "")
        os_, arch, *variant = image.platform.split("/")
        override = ["--override-os", os_, "--override-arch", arch]
        override += ["--override-variant", variant[0]] if variant else []
        raw, error = _tool(["skopeo", "inspect", "--raw", reference])
        if error:
            problems.append(error)
        elif raw.encode() != layout.blob(image.top["digest"]):
            problems.append(f"skopeo inspect --raw {reference}: bytes differ from the blob "
                            f"{image.top['digest']}")
        out, error = _tool(["skopeo", "inspect", *override, reference])
        if error:
            problems.append(error)
            continue
        seen = json.loads(out)
        wanted = [layer["digest"] for layer in image.manifest["layers"]]
        if seen.get("Architecture") != arch or seen.get("Os") != os_ or seen.get("Layers") != wanted:
            problems.append(f"skopeo inspect {' '.join(override)} {reference}: picked "
                            f"{seen.get('Os')}/{seen.get('Architecture')} layers "
                            f"{seen.get('Layers')}, expected {image.platform} layers {wanted}")
    return problems


def _flatten(source: Path, found: list[PlatformImage], dest: Path) -> tuple[Path, list[str]]:
    """A copy of `source` whose index.json lists each platform's manifest directly."""
    shutil.copytree(source / "blobs", dest / "blobs", copy_function=_link_or_copy)
    shutil.copy(source / "oci-layout", dest / "oci-layout")
    tags = [f"p{number}" for number in range(len(found))]
    manifests = [{**image.descriptor,
                  "annotations": {REF_NAME: tag}}
                 for image, tag in zip(found, tags)]
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return dest, tags


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _umoci_problems(layout: Layout, flat: Path, found: list[PlatformImage],
                    tags: list[str | None], scratch: Path) -> list[str]:
    problems = []
    for number, (image, tag) in enumerate(zip(found, tags)):
        if tag is None:
            continue
        bundle = scratch / f"bundle-{number}"
        image_ref = f"{flat}:{tag}" if tag else str(flat)
        _, error = _tool(["umoci", "unpack", "--rootless", "--image", image_ref, str(bundle)])
        if error:
            problems.append(error)
            continue
        streams = (layout.open_blob(layer["digest"]) for layer in image.manifest["layers"])
        expected = set(imagetree.apply_layers(streams))
        rootfs = bundle / "rootfs"
        unpacked = {"/" + p.relative_to(rootfs).as_posix() for p in rootfs.rglob("*")}
        if unpacked != expected:
            problems.append(f"umoci unpack {image.platform}: rootfs differs from the layers: "
                            f"only umoci {sorted(unpacked - expected)[:10]}, "
                            f"only layers {sorted(expected - unpacked)[:10]}")
    return problems


def _oci_image_tool_problems(flat: Path) -> list[str]:
    out, error = _tool(["oci-image-tool", "validate", "--type", "image", str(flat)])
    if error:
        return [error]
    if "unknown media type" in out:
        return [f"oci-image-tool validate {flat}: skipped part of the image:\n{out}"]
    return []


def _tool(command: list[str]) -> tuple[str, str | None]:
    """Run a tool; return (stdout+stderr, None) or (output, a one-paragraph problem)."""
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=300)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        return output, f"{' '.join(command)}: exit {done.returncode}: {output.strip()[-2000:]}"
    return done.stdout if command[:2] == ["skopeo", "inspect"] else output, None
