"""Local persistence: blob store, OCI layout, OCI and docker archives, the local image store.

    blobs.py           BlobStore / BlobWriter / VerifyingReader: atomic, verified, content-addressed
    syncer.py          Syncer: fdatasync a large blob on a thread while it is written
    source.py          the ImageSource protocol; load_document, load_config, walk, manifest_for, copy
    layout.py          OciLayout: an ImageSource you can write, index.json under flock
    tarfiles.py        safe indexed tar reading, deterministic tar writing (MemberStream: a member
                       written before its digest is known)
    archive.py         write_oci_archive, OciArchiveWriter (layers streamed in), OciArchive, open_source
    docker_archive.py  write_docker_archive, DockerArchive (``docker save`` / ``docker load``)
    cachedir.py        cache_dir()
    images.py          ImageStore: named local images in one layout at the cache root
"""

from ocibuild.store.archive import OciArchive, open_source, write_oci_archive
from ocibuild.store.blobs import BlobStore, BlobWriter, VerifyingReader
from ocibuild.store.cachedir import cache_dir
from ocibuild.store.docker_archive import DockerArchive, write_docker_archive
from ocibuild.store.images import ImageStore
from ocibuild.store.layout import OciLayout
from ocibuild.store.source import ImageSource, copy, load_config, load_document, manifest_for, walk

__all__ = [
    "BlobStore", "BlobWriter", "VerifyingReader", "ImageSource", "load_document", "load_config", "walk",
    "manifest_for", "OciLayout", "copy", "write_oci_archive", "OciArchive", "open_source",
    "write_docker_archive", "DockerArchive", "cache_dir", "ImageStore",
]
