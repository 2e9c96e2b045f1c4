"""StepCache.may_hit: a step can be answered by the cache only once some build recorded it."""

import os

from ocibuild.builder.caching import StepCache
from ocibuild.cache import Record, RecordStore
from ocibuild.store.blobs import BlobStore

STEP, KEY = "a" * 64, "b" * 64


def cache(tmp_path, imported=()) -> StepCache:
    return StepCache(RecordStore(tmp_path), BlobStore(tmp_path), imported=imported, warn=print)


def test_an_empty_cache_cannot_hit_a_step(tmp_path):
    assert not cache(tmp_path).may_hit(STEP)


def test_a_stored_record_marks_its_step(tmp_path):
    cache(tmp_path).store(KEY, Record("2026-01-01T00:00:00Z"), STEP)
    fresh = cache(tmp_path)
    assert fresh.may_hit(STEP) and not fresh.may_hit("c" * 64)
    assert fresh.lookup(KEY, STEP) == Record("2026-01-01T00:00:00Z")


def test_a_hit_renews_the_mark_that_prune_dates_the_index_by(tmp_path):
    c = cache(tmp_path)
    c.store(KEY, Record("2026-01-01T00:00:00Z"), STEP)
    mark = c.records.index / STEP[:2] / STEP
    os.utime(mark, (1, 1))
    c.lookup(KEY, STEP)
    assert mark.stat().st_mtime > 1


def test_an_imported_cache_may_answer_any_step(tmp_path):
    assert cache(tmp_path, imported=[object()]).may_hit(STEP)
