"""The build's view of the cache: look a step up, record what it produced, note what was used.

Records come from the local store (`<cache>/buildcache/records`) and, after it, from the
caches named by `--cache-from`. A record is only a hit when its layer blob is at hand (or can
be fetched from the cache it came from): anything missing or corrupt is a miss with a
warning, never a failed or wrong build. `import_caches` and `export_caches` are the ends of
`--cache-from` and `--cache-to`; they load the registry code only when one is given.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from ocibuild.cache import Record, RecordStore
from ocibuild.errors import CacheError, OcibuildError
from ocibuild.store.blobs import BlobStore


class StepCache:
    def __init__(self, records: RecordStore, blobs: BlobStore, *, imported=(), warn: Callable[[str], None]):
        self.records = records
        self.blobs = blobs
        self.imported = list(imported)  # ImportedCache objects (ocibuild.cache.transport)
        self.warn = warn
        self.used: dict[str, Record] = {}  # every step of this build: key -> record
        self._lock = threading.Lock()

    def may_hit(self, step: str) -> bool:
        """Whether any record could answer the step ``step`` (its key without its inputs)."""
        return bool(self.imported) or self.records.marked(step)

    def lookup(self, key: str, step: str) -> Record | None:
        record = self._local(key)
        if record is None:
            record = self._remote(key, step)
        if record is not None:
            with contextlib.suppress(OSError):  # a read-only cache still serves hits
                self.records.mark(step)  # renewed on use: `prune --filter until=` keeps it with the record
            self._use(key, record)
        return record

    def store(self, key: str, record: Record, step: str) -> None:
        try:
            self.records.mark(step)  # before the record: a record is never there unmarked
            self.records.put(key, record)
        except OSError as e:
            self.warn(f"cannot record a cache entry: {e.strerror or e}")
        self._use(key, record)

    def _use(self, key: str, record: Record) -> None:
        with self._lock:
            self.used[key] = record

    def _local(self, key: str) -> Record | None:
        try:
            record = self.records.get(key)
        except OcibuildError as e:
            self.warn(f"{e.message}; running the step")
            return None
        if record is not None and record.layer is not None and not self.blobs.has(record.layer.digest):
            if not self.imported:
                self.warn(f"cache record {key[:12]}: layer {record.layer.digest} is missing; running the step")
            return None
        return record

    def _remote(self, key: str, step: str) -> Record | None:
        for source in self.imported:
            record = source.get(key)
            if record is None:
                continue
            try:
                if record.layer is not None:
                    source.fetch(record, self.blobs)
            except OcibuildError as e:
                self.warn(f"cache {source}: {e.message}; running the step")
                continue
            self.store(key, record, step)
            return record
        return None


def import_caches(specs, platforms, options, warn: Callable[[str], None]) -> list:
    """`--cache-from`: the caches that could be read (ImportedCache); the others are warnings."""
    if not specs:
        return []  # without loading the registry code (requests, oras: 0.1-0.2 s)
    from ocibuild.cache.transport import import_cache  # noqa: PLC0415 - the registry code, when used
    imported = []
    for spec in specs:
        try:
            imported.append(import_cache(spec, platforms=platforms, options=options))
        except CacheError as e:
            warn(f"{e.message}; building without it")
    return imported


def export_caches(specs, used: dict[str, Record], finals, blobs: BlobStore, options,
                  warn: Callable[[str], None]) -> None:
    """`--cache-to`: mode=min the steps of the images built (``finals``), mode=max every step used."""
    specs = [spec for spec in specs if spec.type != "inline"]  # inline: in the image configs
    if not specs:
        return  # without loading the registry code
    from ocibuild.cache.transport import export_cache  # noqa: PLC0415 - the registry code, when used
    chains = {key for state in finals for key in state.keys}
    for spec in specs:
        records = used if spec.mode == "max" else {k: r for k, r in used.items() if k in chains}
        try:
            export_cache(spec, records, blobs, options=options)
        except CacheError as e:
            if not spec.ignore_error:
                raise
            warn(f"{e.message} (ignored: ignore-error=true)")
