"""The local store of ``ocibuild manifest``: manifest lists being put together, before ``push``.

As ``docker manifest`` keeps them under ``~/.docker/manifests``, one folder per list and one
file per image in it::

    <cache_dir>/manifests/<escaped list ref>/<escaped image ref>.json

A file holds what ``create`` learnt from the registry about one image, in the shape of
Docker's ``types.ImageManifest``: ``Ref`` (the image as named, normalised), ``Descriptor``
(media type, digest, size and platform, which ``annotate`` edits) and ``Raw`` (the exact
manifest bytes, base64), so ``push`` can put the manifest into another repository without
fetching it again. ``Raw`` is verified against the descriptor whenever an entry is read.

Names are escaped reversibly (percent-encoding of everything but ``[A-Za-z0-9._-]``):
``docker.io/library/app:1.2`` -> ``docker.io%2Flibrary%2Fapp%3A1.2``. Docker's own scheme
(``:`` -> ``-``, ``/`` -> ``_``) is lossy: ``a/b-c:1`` and ``a_b/c-1`` could share a file name.

Every file is written whole (temp file, fsync, rename), so a reader never sees half an entry.
Entries are listed in the order of their names, as Docker lists them. Not locked: two
commands editing one list at once may lose one of the edits, as with Docker.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from ocibuild.errors import InvalidDocument, InvalidInput, NotFound, StoreError
from ocibuild.oci import Descriptor, Manifest, Reference, parse_document, verify
from ocibuild.store import cache_dir

FOLDER = "manifests"
SUFFIX = ".json"


def escape(ref: str) -> str:
    """A file name for ``ref`` that cannot contain ``/`` nor be ``.``/``..``, reversible with ``unescape``."""
    name = quote(ref, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def unescape(name: str) -> str:
    return unquote(name)


@dataclass(frozen=True)
class ListEntry:
    """One image of a local manifest list: how it was named, its descriptor, its exact manifest bytes."""

    ref: Reference
    descriptor: Descriptor
    raw: bytes

    @property
    def manifest(self) -> Manifest:
        doc = parse_document(self.raw, self.descriptor.media_type)
        if not isinstance(doc, Manifest):
            raise InvalidDocument(f"{self.ref}: the stored document is not an image manifest")
        return doc

    def to_dict(self) -> dict:
        """Docker's ``types.ImageManifest`` shape (what ``docker manifest inspect --verbose`` prints)."""
        manifest = json.loads(self.raw)
        key = "SchemaV2Manifest" if self.descriptor.kind is not None and self.descriptor.kind.is_docker \
            else "OCIManifest"
        return {"Ref": str(self.ref), "Descriptor": self.descriptor.to_dict(),
                "Raw": base64.b64encode(self.raw).decode(), key: manifest}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "ListEntry":
        try:
            entry = cls(Reference.parse(d["Ref"]), Descriptor.from_dict(d["Descriptor"]),
                        base64.b64decode(d["Raw"], validate=True))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidDocument(f"read {where}: not a manifest list entry ({e})") from None
        verify(entry.raw, entry.descriptor.digest, entry.descriptor.size, what=f"read {where}: manifest")
        return entry


class ListStore:
    """Local manifest lists under ``<root>/manifests`` (``root``: the cache dir by default)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(cache_dir() if root is None else root) / FOLDER

    def __repr__(self) -> str:
        return f"ListStore({str(self.root)!r})"

    def folder(self, list_ref: Reference) -> Path:
        return self.root / escape(str(list_ref))

    def exists(self, list_ref: Reference) -> bool:
        return self.folder(list_ref).is_dir()

    def entries(self, list_ref: Reference) -> list[ListEntry]:
        """The images of the list, in name order; NotFound when there is no such list."""
        folder = self.folder(list_ref)
        try:
            names = sorted(p.name for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            raise NotFound(f"no such manifest list: {list_ref} (create it with `ocibuild manifest create`)") \
                from None
        except OSError as e:
            raise StoreError(f"read manifest list {list_ref} in {folder}: {e.strerror}") from None
        return [self._read(folder / name) for name in names]

    def get(self, list_ref: Reference, image_ref: Reference) -> ListEntry:
        """The entry for ``image_ref``: the same reference, or (given by digest) the same digest."""
        entries = self.entries(list_ref)
        for entry in entries:
            if str(entry.ref) == str(image_ref):
                return entry
        if image_ref.digest is not None:
            for entry in entries:
                if entry.descriptor.digest == image_ref.digest and entry.ref.name == image_ref.name:
                    return entry
        names = ", ".join(str(e.ref) for e in entries) or "none"
        raise NotFound(f"manifest list {list_ref} has no entry for {image_ref} (it has: {names})")

    def save(self, list_ref: Reference, entry: ListEntry) -> Path:
        """Write (or replace) the entry for ``entry.ref``, atomically; returns its file."""
        folder = self.folder(list_ref)
        path = folder / (escape(str(entry.ref)) + SUFFIX)
        data = json.dumps(entry.to_dict(), indent=1, sort_keys=True).encode()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".entry.", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StoreError(f"write manifest list {list_ref} entry {entry.ref}: {e.strerror}") from None
        return path

    def remove(self, list_ref: Reference) -> None:
        """Delete the whole list; NotFound when there is none."""
        folder = self.folder(list_ref)
        if not folder.is_dir():
            raise NotFound(f"no such manifest list: {list_ref}")
        try:
            shutil.rmtree(folder)
        except OSError as e:
            raise StoreError(f"remove manifest list {list_ref}: {e.strerror}") from None

    def lists(self) -> list[str]:
        """The names of the local lists, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(unescape(p.name) for p in self.root.iterdir() if p.is_dir())

    def _read(self, path: Path) -> ListEntry:
        try:
            data = json.loads(path.read_bytes())
        except OSError as e:
            raise StoreError(f"read {path}: {e.strerror}") from None
        except ValueError:
            raise InvalidDocument(f"read {path}: not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidDocument(f"read {path}: not a JSON object")
        try:
            return ListEntry.from_dict(data, str(path))
        except InvalidInput as e:
            raise InvalidDocument(f"read {path}: {e.message}") from None


__all__ = ["ListEntry", "ListStore", "escape", "unescape", "FOLDER"]
