"""What `prune` chooses (pure: a made-up Usage, no disk) and how its flags' values are read."""

import pytest

from ocibuild.cache.prune import PruneOptions, parse_duration, parse_filters, parse_size, plan
from ocibuild.cache.usage import BASES, IMAGES, MOUNTS, ORPHANS, RECORDS, TEMP, Item, Usage, ago, human_size
from ocibuild.errors import InvalidOption
from ocibuild.oci import Digest

NOW = 1_000_000.0
A, B, C, IMG = (Digest.of(x) for x in (b"a", b"b", b"c", b"img"))


def usage(*items: Item, kept=(IMG,)) -> Usage:
    sizes = {A: 1000, B: 1000, C: 1000, IMG: 5000}
    return Usage(root=None, items=list(items), blob_sizes=sizes, kept=frozenset(kept))


def record(name: str, age: float, *blobs: Digest) -> Item:
    return Item(RECORDS, name, own=10, blobs=blobs, size=10, last_used=NOW - age)


def names(p) -> list[str]:
    return [r.item.name for r in p.items]


def test_default_removes_records_bases_and_garbage_but_not_images_or_mounts():
    u = usage(record("r1", 5, A), Item(BASES, "base", own=100, last_used=NOW),
              Item(MOUNTS, "m", own=100, last_used=NOW), Item(IMAGES, "img", blobs=(IMG,)),
              Item(ORPHANS, "o", own=7, blobs=(C,), garbage=True),
              Item(TEMP, "t-fresh", own=1, garbage=False), Item(TEMP, "t-old", own=1, garbage=True))
    p = plan(u, PruneOptions(), NOW)
    assert names(p) == ["r1", "base", "o", "t-old"]
    assert set(p.blobs) == {A, C}
    assert [r.freed for r in p.items] == [1010, 100, 7, 1]


def test_all_adds_mounts():
    p = plan(usage(Item(MOUNTS, "m", own=100, last_used=NOW)), PruneOptions(all=True), NOW)
    assert names(p) == ["m"]


def test_a_layer_shared_by_two_records_goes_with_the_last_one():
    u = usage(record("old", 30, A), record("new", 10, A))
    only_old = plan(u, PruneOptions(until=20), NOW)
    assert names(only_old) == ["old"] and only_old.blobs == {} and only_old.items[0].freed == 10
    both = plan(u, PruneOptions(), NOW)
    assert set(both.blobs) == {A} and sum(r.freed for r in both.items) == 1020


def test_a_layer_an_image_uses_is_never_freed():
    p = plan(usage(record("r", 5, IMG)), PruneOptions(), NOW)
    assert p.blobs == {} and p.items[0].freed == 10


def test_keep_storage_removes_least_recently_used_until_under_the_limit():
    u = usage(record("r1", 30, A), record("r2", 20, B), record("r3", 10, C),
              Item(BASES, "base", own=500, last_used=NOW - 15))
    assert names(plan(u, PruneOptions(keep_storage=10_000), NOW)) == []
    assert names(plan(u, PruneOptions(keep_storage=2_600), NOW)) == ["r1"]       # 3530 -> 2520
    assert names(plan(u, PruneOptions(keep_storage=2_000), NOW)) == ["r1", "r2"]         # -> 1510
    assert names(plan(u, PruneOptions(keep_storage=1_100), NOW)) == ["r1", "r2", "base"]  # -> 1010
    assert names(plan(u, PruneOptions(keep_storage=0), NOW)) == ["r1", "r2", "r3", "base"]


def test_keep_storage_and_until_together_only_remove_old_things():
    u = usage(record("r1", 30, A), record("r2", 20, B), record("r3", 10, C))
    assert names(plan(u, PruneOptions(keep_storage=0, until=25), NOW)) == ["r1"]


def test_until_keeps_what_has_no_known_last_use():
    u = usage(Item(BASES, "unknown", own=1, last_used=None))
    assert names(plan(u, PruneOptions(until=1), NOW)) == []
    assert names(plan(u, PruneOptions(), NOW)) == ["unknown"]


@pytest.mark.parametrize("text, expected", [
    ("10GB", 10 * 1024 ** 3), ("500MB", 500 * 1024 ** 2), ("500mb", 500 * 1024 ** 2), ("1.5g", int(1.5 * 1024 ** 3)),
    ("1024", 1024), ("2KiB", 2048), ("3 MB", 3 * 1024 ** 2), ("0", 0)])
def test_sizes_read_as_docker_reads_them(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "10XB", "-1GB", "GB", "1.2.3"])
def test_bad_sizes_name_the_flag(text):
    with pytest.raises(InvalidOption, match="--keep-storage"):
        parse_size(text)


def test_durations_and_filters():
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    assert parse_filters(["until=90m"]) == 5400
    assert parse_filters(["unused-for=1h"]) == 3600
    assert parse_filters([]) is None
    with pytest.raises(InvalidOption, match="24h"):
        parse_duration("1 day")
    with pytest.raises(InvalidOption, match="only until"):
        parse_filters(["type=regular"])


def test_sizes_and_times_print_as_buildx_prints_them():
    assert human_size(0) == "0B"
    assert human_size(999) == "999B"
    assert human_size(1_234_567) == "1.235MB"
    assert human_size(1.2e9) == "1.2GB"
    assert ago(None) == "-"
    assert ago(NOW - 90, NOW) == "1 minute ago"
    assert ago(NOW - 7200, NOW) == "2 hours ago"
