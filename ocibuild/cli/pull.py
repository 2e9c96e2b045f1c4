"""`ocibuild pull`: an image from a registry into the local image store, or into a file."""

from __future__ import annotations

from ocibuild.builder import OutputSpec
from ocibuild.cache.lock import build_lock
from ocibuild.cli.common import add_debug, add_registry_flags, registry_access
from ocibuild.errors import InvalidOption
from ocibuild.oci import IMAGE_NAME, REF_NAME, Platform, Reference, host_platform
from ocibuild.store.archive import write_docker_archive, write_oci_archive
from ocibuild.store.images import ImageStore
from ocibuild.store.layout import OciLayout
from ocibuild.store.source import copy, manifest_for


def add_parser(sub) -> None:
    p = sub.add_parser("pull", help="pull an image for one platform from a registry")
    p.add_argument("name", help="image reference, e.g. registry.example/team/app:1.2")
    p.add_argument("--platform", help="platform to pull (default: this machine's)")
    p.add_argument("-o", "--output", help="type=oci|docker,dest=PATH[,tar=false] (default: the local image store)")
    p.add_argument("--cache-dir", help="ocibuild's cache and image store")
    add_registry_flags(p)
    add_debug(p)


def run(args) -> int:
    ref = Reference.parse(args.name)
    platform = Platform.parse(args.platform) if args.platform else host_platform()
    store = ImageStore(args.cache_dir) if args.cache_dir else ImageStore()
    with build_lock(store.layout.path):  # blobs land before the tag: `prune` must not run meanwhile
        return _pull(args, ref, platform, store)


def _pull(args, ref: Reference, platform: Platform, store: ImageStore) -> int:
    source, top = registry_access(args).pull(ref, platform, store.blobs)
    chosen, _ = manifest_for(source, top, platform)
    copy(source, store.layout, chosen)  # documents and blobs: already fetched, now linked in
    if not args.output:
        store.save(ref, chosen)
        print(f"{ref.familiar()} ({platform}): {chosen.digest}")
        return 0
    _write(OutputSpec.parse(args.output), store, chosen, ref)
    print(chosen.digest)
    return 0


def _write(out: OutputSpec, store: ImageStore, desc, ref: Reference) -> None:
    named = desc.annotated(**{IMAGE_NAME: str(ref), REF_NAME: ref.tag or str(ref.digest)})
    if out.type == "oci" and out.as_tar:
        write_oci_archive(store.layout, [named], out.dest)
    elif out.type == "oci":
        layout = OciLayout(out.dest)
        copy(store.layout, layout, desc)
        layout.tag(named, named.annotations[REF_NAME], image_name=str(ref))
    elif out.type == "docker":
        write_docker_archive(store.layout, desc, [ref.familiar()], out.dest)
    else:
        raise InvalidOption(f"pull writes type=oci or type=docker, not type={out.type}")

