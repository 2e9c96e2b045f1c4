"""The cache lock across processes: builds share it, prune waits for them and says so once."""

import multiprocessing
import os
import threading
import time

import pytest

from ocibuild.cache.lock import build_lock, holders, lock_path, prune_lock
from ocibuild.errors import StoreError


def _hold(cache, kind, ready, release):
    lock = build_lock(cache) if kind == "build" else prune_lock(cache)
    with lock:
        ready.set()
        release.wait(30)


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock ("build" or "prune") until the test releases it."""
    ctx = multiprocessing.get_context("spawn")  # a fresh process: flock is per open file description
    started = []

    def start(kind):
        ready, release = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_hold, args=(str(tmp_path), kind, ready, release))
        proc.start()
        assert ready.wait(30), "the holder did not take the lock"
        started.append((proc, release))
        return release

    yield start
    for proc, release in started:
        release.set()
        proc.join(30)


def test_builds_share_the_lock(tmp_path, holder):
    holder("build")
    waited = []
    with build_lock(tmp_path, on_wait=waited.append):
        pass
    assert waited == []


def test_prune_waits_for_running_builds_and_says_so_once(tmp_path, holder):
    release_one, release_two = holder("build"), holder("build")
    waited = []
    t0 = time.monotonic()
    threading.Timer(0.3, release_one.set).start()
    threading.Timer(0.6, release_two.set).start()
    with prune_lock(tmp_path, on_wait=waited.append):
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.55
    assert waited == ["waiting for 2 running builds to finish"]


def test_prune_gives_up_after_its_timeout(tmp_path, holder):
    holder("build")
    with pytest.raises(StoreError, match=r"gave up after 0.2s \(--timeout\) waiting for 1 running build to finish"):
        with prune_lock(tmp_path, timeout=0.2):
            pass


def test_a_build_waits_for_a_prune(tmp_path, holder):
    release = holder("prune")
    threading.Timer(0.3, release.set).start()
    waited = []
    with build_lock(tmp_path, on_wait=waited.append):
        pass
    assert len(waited) == 1 and waited[0].startswith("waiting for a prune of")


def test_holders_counts_other_processes_shared_locks(tmp_path, holder):
    holder("build")
    fd = os.open(lock_path(tmp_path), os.O_RDONLY)
    try:
        assert holders(fd) == 1
    finally:
        os.close(fd)
