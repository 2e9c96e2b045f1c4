"""A step's cached result and the directory that keeps them, one small JSON file per key.

A record says what a step produced: the layer (descriptor and diff_id) or nothing for a step
that only changes the config, and when the step first ran, so that a rebuild writes the same
history times and therefore the same digests. Everything else about the result (the history
text, the config change) follows from the instruction and is recomputed.

Files are written whole and renamed into place, so several builds may share the directory; a
file that does not parse is a miss (the caller warns), never an error. A record's mtime is
its last use, which `prune --keep-storage` orders by.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ocibuild.errors import InvalidDocument
from ocibuild.oci import Descriptor, Digest
from ocibuild.store.blobs import TEMP_PREFIX
from ocibuild.store.layout import atomic_write

FOLDER = "buildcache"
# Beside the records: digests of build-context files, remembered by builder/cachekeys.py so that
# an unchanged checkout is not hashed again (a speed-up only; `prune` removes it with the records).
CONTEXT_DIGESTS = "sources"
# Also beside them: the steps (chain and instruction, not what they read) that have a record.
# A step not listed cannot be a hit whatever it reads, so the build writes its layer first and
# keys it by the digests taken as the files were read (stage.py). Pruned with the context digests.
STEP_INDEX = "steps"


@dataclass(frozen=True)
class Record:
    created: str                       # RFC 3339: the history time of the step's first run
    layer: Descriptor | None = None    # None: the step changed only the config
    diff_id: Digest | None = None

    def to_dict(self) -> dict:
        d: dict = {"created": self.created}
        if self.layer is not None:
            d["layer"] = self.layer.to_dict()
            d["diffID"] = str(self.diff_id)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        try:
            if "layer" not in d:
                return cls(str(d["created"]))
            return cls(str(d["created"]), Descriptor.from_dict(d["layer"]), Digest(d["diffID"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidDocument(f"malformed cache record: {e}") from None


def valid_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


class RecordStore:
    """``<cache>/buildcache/records/<key[:2]>/<key>.json``."""

    def __init__(self, cache: str | os.PathLike[str]):
        self.root = Path(cache) / FOLDER / "records"
        self.index = Path(cache) / FOLDER / STEP_INDEX

    def _path(self, key: str) -> Path:
        if not valid_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Record | None:
        """The record, its use noted; None when absent. Raises InvalidDocument when corrupt."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = Record.from_dict(json.loads(data))
        except ValueError as e:  # JSONDecodeError and InvalidDocument
            raise InvalidDocument(f"cache record {key[:12]}: {e}") from None
        try:
            os.utime(path)
        except OSError:
            pass  # a read-only cache still serves hits
        return record

    def put(self, key: str, record: Record) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # the blob store's temp prefix: `prune` knows it for leftovers of interrupted writes
        atomic_write(path, json.dumps(record.to_dict(), sort_keys=True).encode(), temp_prefix=TEMP_PREFIX)

    def mark(self, step: str) -> None:
        """Note that ``step`` (a key without the step's inputs) has a record; not fsynced: a
        lost mark only makes that step's next build write its layer before looking it up."""
        path = self.index / step[:2] / step
        try:
            path.touch()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def marked(self, step: str) -> bool:
        return (self.index / step[:2] / step).exists()

    def remove(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def items(self) -> Iterator[tuple[str, float, Record | None]]:
        """(key, last use, record or None when unreadable) for every stored key."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            for path in sorted(sub.glob("*.json")):
                key = path.stem
                if not valid_key(key):
                    continue
                try:
                    used = path.stat().st_mtime
                    record = Record.from_dict(json.loads(path.read_bytes()))
                except FileNotFoundError:
                    continue  # pruned meanwhile
                except ValueError:
                    record, used = None, time.time()
                yield key, used, record
