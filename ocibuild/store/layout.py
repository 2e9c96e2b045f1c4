"""An OCI image layout directory (image-spec image-layout.md) that can be read and written.

    <path>/oci-layout        {"imageLayoutVersion":"1.0.0"}
    <path>/index.json        the top-level index: one descriptor per tag (plus untagged entries)
    <path>/blobs/sha256/...  a BlobStore

Tags follow buildx's oci exporter: a descriptor annotated ``org.opencontainers.image.ref.name``
(and ``io.containerd.image.name`` with the full name), pointing at the image index of a
multi-platform image or at the manifest of a single-platform one. Within one layout a ref
name is unique: tagging replaces the entry that had it.

index.json is only ever replaced whole (temp file, fsync, rename), after the blobs it refers to
have been committed, so readers need no lock and always see a complete, consistent file.
Writers serialise their read-modify-write with ``flock`` on ``index.json.lock``, the lock
file name and protocol of BuildKit's ``client/ociindex`` so buildx and ocibuild writing
one layout exclude each other. The lock file is removed after each update (validators
never see it), which is why taking the lock re-checks that the file locked is still the one
at that path (see ``_index_lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ocibuild.errors import InvalidDocument, InvalidInput, NotFound
from ocibuild.oci import (IMAGE_NAME, REF_NAME, Descriptor, ImageConfig, Index, Manifest, MediaType,
                          canonical_json, parse_document)
from ocibuild.store.blobs import BlobStore, fsync_dir, store_error
from ocibuild.store.source import copy, document_descriptor, parse_index_file, resolve_in  # copy: re-exported

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LOCK_FILE = "index.json.lock"
LAYOUT_VERSION = "1.0.0"
LAYOUT_BYTES = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
_REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]*$")


class OciLayout:
    """An OCI layout at ``path``, created on the first write. Implements ImageSource."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.blobs = BlobStore(self.path)

    def __repr__(self) -> str:
        return f"OciLayout({str(self.path)!r})"

    # -- reading (ImageSource) -------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / LAYOUT_FILE).is_file()

    def index(self) -> Index:
        """index.json; an empty Index for a layout not created yet (missing or empty directory)."""
        self._check_layout_file()
        try:
            data = (self.path / INDEX_FILE).read_bytes()
        except FileNotFoundError:
            return Index(manifests=())
        except OSError as e:
            raise store_error(f"read {self.path / INDEX_FILE}", e) from None
        return parse_index_file(data, str(self.path / INDEX_FILE))

    def _check_layout_file(self) -> None:
        try:
            data = (self.path / LAYOUT_FILE).read_bytes()
        except FileNotFoundError:
            if self.path.is_dir() and any(self.path.iterdir()):
                raise NotFound(f"read OCI layout {self.path}: no {LAYOUT_FILE} file; not an OCI image layout") \
                    from None
            return
        except OSError as e:
            raise store_error(f"read OCI layout {self.path}", e) from None
        check_layout_file(data, str(self.path / LAYOUT_FILE))

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        return self.blobs.read_bytes(digest, limit)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.blobs.open(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def blob_path(self, digest: str) -> Path | None:
        path = self.blobs.path(digest)
        return path if path.is_file() else None

    def resolve(self, ref: str | None) -> Descriptor:
        """A tag, full image name or digest (also of a child manifest); None: the only entry."""
        return resolve_in(self.index(), ref, f"OCI layout {self.path}",
                          by_digest=lambda d: document_descriptor(self, d))

    # -- writing ---------------------------------------------------------------------------

    def create(self) -> "OciLayout":
        """Create oci-layout, blobs/ and an empty index.json where missing (idempotent, safe concurrently)."""
        try:
            (self.blobs.dir / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.path / LAYOUT_FILE).exists():
                atomic_write(self.path / LAYOUT_FILE, LAYOUT_BYTES)
            if not (self.path / INDEX_FILE).exists():
                with self._index_lock():
                    if not (self.path / INDEX_FILE).exists():
                        atomic_write(self.path / INDEX_FILE, Index(manifests=()).to_json())
        except OSError as e:
            raise store_error(f"create OCI layout {self.path}", e) from None
        return self

    def put_blob(self, data: bytes, media_type: str) -> Descriptor:
        self.create()
        return Descriptor(str(media_type), self.blobs.put_bytes(data), len(data))

    def put_document(self, doc: Manifest | Index | ImageConfig | bytes, media_type: str | None = None) -> Descriptor:
        """Store a manifest, index or config (or its exact bytes) as a blob; returns its descriptor.

        The media type comes from the document; for bytes it is ``media_type`` or, for a
        manifest or index, the one the document declares. Configs get the OCI config type
        unless ``media_type`` says otherwise.
        """
        if isinstance(doc, (Manifest, Index)):
            return self.put_blob(doc.to_json(), media_type or doc.media_type)
        if isinstance(doc, ImageConfig):
            return self.put_blob(doc.to_json(), media_type or MediaType.OCI_CONFIG.value)
        if isinstance(doc, (bytes, bytearray, memoryview)):
            data = bytes(doc)
            return self.put_blob(data, media_type or parse_document(data).media_type)
        raise TypeError(f"put_document: cannot store {type(doc).__name__}")

    def tag(self, descriptor: Descriptor, ref_name: str, image_name: str | None = None) -> Descriptor:
        """Name ``descriptor`` in index.json, replacing the entry that had ``ref_name``; returns the entry.

        ``image_name`` (the full name, ``docker.io/library/app:1``) is written as
        ``io.containerd.image.name`` as buildx does; without it a stale one is dropped.
        The blob must already be in the layout (blobs are always written before index.json).
        """
        if not isinstance(ref_name, str) or not _REF_NAME.match(ref_name):
            raise InvalidInput(f"tag {descriptor.digest}: invalid ref name {ref_name!r}")
        self._require_blob(descriptor, f"tag {ref_name}")
        annotations = {k: v for k, v in descriptor.annotations.items() if k != IMAGE_NAME}
        annotations[REF_NAME] = ref_name
        if image_name:
            annotations[IMAGE_NAME] = image_name
        entry = descriptor.with_(annotations=annotations)

        def replace(entries: list[Descriptor]) -> list[Descriptor]:
            out: list[Descriptor] = []
            for d in entries:
                if d.annotations.get(REF_NAME) == ref_name:
                    if entry not in out:
                        out.append(entry)  # in place of the old one: index.json order stays stable
                else:
                    out.append(d)
            return out if entry in out else out + [entry]

        self.update_index(replace)
        return entry

    def add(self, descriptor: Descriptor) -> Descriptor:
        """Add an entry as given (idempotent: an equal entry is not added twice)."""
        self._require_blob(descriptor, "add to index")
        self.update_index(lambda entries: entries if descriptor in entries else entries + [descriptor])
        return descriptor

    def untag(self, ref_name: str) -> Descriptor:
        """Remove the entry named ``ref_name`` and return it (its blobs stay); NotFound when absent."""
        removed: list[Descriptor] = []

        def drop(entries: list[Descriptor]) -> list[Descriptor]:
            removed[:] = [d for d in entries if d.annotations.get(REF_NAME) == ref_name]
            return [d for d in entries if d.annotations.get(REF_NAME) != ref_name]

        self.update_index(drop)
        if not removed:
            raise NotFound(f"untag {ref_name!r} in OCI layout {self.path}: no such name")
        return removed[0]

    def update_index(self, change: Callable[[list[Descriptor]], list[Descriptor]]) -> Index:
        """Apply ``change`` to index.json's entries under the lock and write the result atomically."""
        self.create()
        try:
            with self._index_lock():
                current = self.index()
                entries = change(list(current.manifests))
                if entries == list(current.manifests):
                    return current
                updated = Index(manifests=tuple(entries), media_type=current.media_type,
                                annotations=current.annotations)
                atomic_write(self.path / INDEX_FILE, updated.to_json())
        except OSError as e:
            raise store_error(f"update {self.path / INDEX_FILE}", e) from None
        return updated

    def _require_blob(self, descriptor: Descriptor, what: str) -> None:
        if not self.blobs.has(descriptor.digest):
            raise NotFound(f"{what}: blob {descriptor.digest} is not in OCI layout {self.path}")

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        """Hold an exclusive flock on index.json.lock; the file is unlinked before release.

        Because holders unlink the file, a waiter may wake up holding the lock of a file no
        longer at that path while a newcomer locks a fresh one; so after locking, check that
        the path still names the locked inode, and start over when it does not.
        """
        lock_path = self.path / LOCK_FILE
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine = os.fstat(fd)
                try:
                    now = os.stat(lock_path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(fd)
        try:
            yield
        finally:
            try:
                os.unlink(lock_path)
            except OSError:
                pass
            os.close(fd)


def check_layout_file(data: bytes, where: str) -> None:
    """Refuse an ``oci-layout`` file that is not JSON or names an image layout version other than 1.x."""
    try:
        version = json.loads(data).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        raise InvalidDocument(f"read {where}: not a JSON object") from None
    if not isinstance(version, str) or not version.startswith("1."):
        raise InvalidDocument(f"read {where}: unsupported imageLayoutVersion {version!r}")


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, temp_prefix: str | None = None) -> None:
    """Replace ``path`` with ``data``: temp file beside it (``temp_prefix``, default
    ``.<name>.``), fsync, rename, fsync the directory."""
    fd, temp = tempfile.mkstemp(prefix=temp_prefix or f".{path.name}.", dir=path.parent)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.fchmod(fd, mode)
        os.close(fd)
        fd = -1
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


__all__ = ["OciLayout", "copy", "atomic_write", "check_layout_file", "LAYOUT_FILE", "INDEX_FILE", "LOCK_FILE",
           "LAYOUT_BYTES"]
