"""Writing a build result to its outputs: OCI layout or tar, `docker load` tar, rootfs dir or tar,
the local image store; and buildx's metadata file."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import replace

from ocibuild.builder.executor import BuildResult
from ocibuild.builder.options import OutputSpec
from ocibuild.builder.registries import RegistryAccess
from ocibuild.builder.state import ImageState
from ocibuild.errors import InvalidOption, NotSupported, StoreError
from ocibuild.layer.extract import apply_layer
from ocibuild.layer.tarwriter import write_tar
from ocibuild.oci import IMAGE_NAME, REF_NAME, Descriptor, Digest, Reference
from ocibuild.store.archive import OciArchiveWriter, write_docker_archive, write_oci_archive
from ocibuild.store.images import ImageStore
from ocibuild.store.layout import OciLayout
from ocibuild.store.source import copy


def export(result: BuildResult, outputs: list[OutputSpec], tags: list[str], images: ImageStore,
           registry: RegistryAccess, archive: OciArchiveWriter | None = None) -> list[str]:
    """Write every output; with none, keep the image in the local store. Returns warnings.

    ``archive``: the first OCI tar output, opened by the build (executor.Build.__enter__)."""
    refs = [Reference.parse(t) for t in tags]
    if not outputs:
        for ref in refs:
            images.save(ref, result.descriptor)
        if not refs:
            return ["no output specified and no tag given: the image is only in the local blob store "
                    f"({result.digest}); use -t NAME or -o"]
        return []
    for out in outputs:
        names = refs + [Reference.parse(n) for n in out.names]
        if out.type in ("registry", "image"):
            _registry(result, out, names, images, registry)
        elif archive is not None and out.type == "oci" and out.as_tar and out.dest == archive.path:
            archive.finish(images.layout, _named(result.descriptor, names))
            archive = None
        else:
            EXPORTERS[out.type](result, out, names, images)
    return []


def _named(desc: Descriptor, refs: list[Reference]) -> list[Descriptor]:
    """index.json entries as buildx's oci exporter writes them: one per tag, or one unnamed."""
    if not refs:
        return [desc]
    return [desc.annotated(**{IMAGE_NAME: str(r), REF_NAME: r.tag or str(r.digest)}) for r in refs]


def _oci(result: BuildResult, out: OutputSpec, refs: list[Reference], images: ImageStore) -> None:
    entries = _named(result.descriptor, refs)
    if out.as_tar:
        write_oci_archive(images.layout, entries, out.dest)
        return
    layout = OciLayout(out.dest)
    copy(images.layout, layout, result.descriptor)
    for entry in entries:
        name = entry.annotations.get(REF_NAME)
        if name:
            layout.tag(entry, name, image_name=entry.annotations.get(IMAGE_NAME))
        else:
            layout.add(entry)


def _docker(result: BuildResult, out: OutputSpec, refs: list[Reference], images: ImageStore) -> None:
    if len(result.manifests) != 1:
        raise NotSupported("docker exporter does not currently support exporting manifest lists: "
                           "build one platform, or use type=oci")
    if not out.as_tar:
        raise InvalidOption("type=docker writes a tar archive; use type=oci,tar=false for a directory")
    manifest = next(iter(result.manifests.values()))
    write_docker_archive(images.layout, manifest, [r.familiar() for r in refs], out.dest)


def _local(result: BuildResult, out: OutputSpec, refs, images) -> None:
    for subdir, state in _per_platform(result):
        target = os.path.join(out.dest, subdir) if subdir else out.dest
        os.makedirs(target, exist_ok=True)
        _unpack_tree(state, target)


def _tar(result: BuildResult, out: OutputSpec, refs, images) -> None:
    entries = []
    for subdir, state in _per_platform(result):
        for e in state.tree.walk():
            entries.append(replace(e, path=f"{subdir}/{e.path}") if subdir else e)
    if out.dest == "-":
        write_tar(entries, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    tmp = f"{out.dest}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write_tar(entries, f)
        os.replace(tmp, out.dest)
    except OSError as e:
        raise StoreError(f"write {out.dest}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _per_platform(result: BuildResult) -> list[tuple[str, ImageState]]:
    """buildx splits rootfs outputs of a multi-platform build into `linux_amd64/`-style folders."""
    if len(result.images) == 1:
        return [("", next(iter(result.images.values())))]
    return [(name.replace("/", "_"), state) for name, state in result.images.items()]


def _unpack_tree(state: ImageState, target: str) -> None:
    """Write a tree to a directory through the safe extractor, streaming the tar through a pipe."""
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as w:
                write_tar(list(state.tree.walk()), w)
        except BaseException as e:  # reported by the consumer below
            errors.append(e)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as r:
            apply_layer(target, r, layer="rootfs", owners={})
    finally:
        writer.join()
        if errors:  # the writer's failure explains the reader's
            raise errors[0]


def _registry(result: BuildResult, out: OutputSpec, refs: list[Reference], images: ImageStore,
              registry: RegistryAccess) -> None:
    """type=registry (always pushes) and type=image (pushes with push=true, else keeps it locally)."""
    if not refs:
        raise InvalidOption(f"type={out.type} needs a name: -t NAME or name=NAME")
    if out.type == "image" and not out.flag("push"):
        for ref in refs:
            images.save(ref, result.descriptor)
        return
    by_digest = out.flag("push-by-digest")
    if by_digest:
        refs = [r.with_tag("") for r in refs]
    result.pushed.extend(registry.push(images.layout, result.descriptor, refs, by_digest=by_digest))


EXPORTERS = {"oci": _oci, "docker": _docker, "local": _local, "tar": _tar}


def metadata(result: BuildResult, tags: list[str]) -> dict:
    """buildx's --metadata-file keys."""
    data = {
        "containerimage.digest": str(result.digest),
        "containerimage.descriptor": result.descriptor.to_dict(),
    }
    if len(result.manifests) == 1:
        state = next(iter(result.images.values()))
        data["containerimage.config.digest"] = str(Digest.of(state.config.to_json()))
    names = [str(Reference.parse(t)) for t in tags] or [p.partition("@")[0] for p in result.pushed]
    if names:
        data["image.name"] = ",".join(dict.fromkeys(names))
    return data


def write_metadata(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
