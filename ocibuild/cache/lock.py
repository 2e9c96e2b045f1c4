"""One lock per cache directory: builds share it, `prune` takes it alone.

    with build_lock(cache):            # flock(LOCK_SH) on <cache>/buildcache/lock, for the whole build
        ...
    with prune_lock(cache, on_wait=print, timeout=None):   # flock(LOCK_EX): no build is running
        ...

A build writes blobs before anything refers to them (records and index.json come last), so
while it runs its blobs look unreferenced; a prune that swept them then would break the build.
Holding the shared lock for the whole build, and the exclusive one for the whole prune, makes
"prune never removes what a running build uses" true without any bookkeeping of what a build
uses. Builds never wait for each other; a build started during a prune waits for it (prunes
are short), and a prune waits for running builds to finish.

flock locks belong to an open file description: each ``build_lock`` opens the file anew, so
two builds in one process hold two shared locks (both fine), while a ``prune_lock`` taken by
a process that holds a ``build_lock`` would wait for itself forever. The descriptor is
close-on-exec; a child forked without exec shares it, which only keeps the lock held as long
as the child lives. The lock file is never removed (unlike index.json.lock): a waiter must
never end up holding the lock of a file no longer at the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from ocibuild.errors import StoreError

FOLDER = "buildcache"  # the same folder as records.py's
LOCK_FILE = "lock"
POLL = 0.1  # seconds between attempts when a timeout is given (flock itself cannot time out)

Notify = Callable[[str], None]


def lock_path(cache: str | os.PathLike[str]) -> Path:
    return Path(cache) / FOLDER / LOCK_FILE


@contextlib.contextmanager
def build_lock(cache: str | os.PathLike[str], *, on_wait: Notify | None = None) -> Iterator[None]:
    """Hold the cache shared for the duration of a build; waits (saying so once) while a prune runs."""
    with _locked(cache, fcntl.LOCK_SH, on_wait, None, "waiting for a prune of {cache} to finish"):
        yield


@contextlib.contextmanager
def prune_lock(cache: str | os.PathLike[str], *, on_wait: Notify | None = None,
               timeout: float | None = None) -> Iterator[None]:
    """Hold the cache alone. Waits for running builds (forever when ``timeout`` is None), telling
    ``on_wait`` once how many; raises StoreError when ``timeout`` seconds pass first."""
    with _locked(cache, fcntl.LOCK_EX, on_wait, timeout, "waiting for {builds} to finish"):
        yield


@contextlib.contextmanager
def _locked(cache, mode: int, on_wait: Notify | None, timeout: float | None, message: str) -> Iterator[None]:
    path = lock_path(cache)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StoreError(f"lock the cache {cache}: {e.strerror or e}") from None
    try:
        if not _try(fd, mode):
            if on_wait is not None:
                on_wait(message.format(cache=cache, builds=_builds(holders(fd))))
            _wait(fd, mode, timeout, cache)
        yield
    finally:
        os.close(fd)  # releases the lock


def _try(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(fd: int, mode: int, timeout: float | None, cache) -> None:
    if timeout is None:
        fcntl.flock(fd, mode)
        return
    deadline = time.monotonic() + timeout
    while not _try(fd, mode):
        if time.monotonic() >= deadline:
            raise StoreError(f"prune {cache}: gave up after {timeout:g}s (--timeout) waiting for "
                             f"{_builds(holders(fd))} to finish; nothing was removed")
        time.sleep(POLL)


def holders(fd: int) -> int:
    """How many shared locks others hold on ``fd``'s file (from /proc/locks; 0 when unknown)."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    # "3: FLOCK  ADVISORY  READ 20694 fe:00:2146320 0 EOF"; waiters are listed as "3: -> FLOCK ...".
    return sum(1 for line in lines if "->" not in line and " FLOCK " in line and " READ " in line
               and ident in line.split())


def _builds(n: int) -> str:
    if n == 0:
        return "the running builds"
    return f"{n} running build" + ("s" if n > 1 else "")


__all__ = ["build_lock", "prune_lock", "lock_path", "holders", "LOCK_FILE"]
