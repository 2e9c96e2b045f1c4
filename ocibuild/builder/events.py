"""Progress events a build emits; rendering them (TTY, plain, quiet) is the CLI's business."""

from __future__ import annotations

import threading
from typing import Protocol


class Reporter(Protocol):
    """Receives progress. Calls may come from several threads; implementations lock if they must."""

    def start(self, step: int, name: str) -> None: ...
    def advance(self, step: int, nbytes: int) -> None: ...
    def done(self, step: int, *, cached: bool = False, error: str | None = None) -> None: ...
    def log(self, step: int, data: bytes) -> None: ...
    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


class NullReporter:
    """Reports nothing (the Python API's default)."""

    def start(self, step: int, name: str) -> None:
        pass

    def advance(self, step: int, nbytes: int) -> None:
        pass

    def done(self, step: int, *, cached: bool = False, error: str | None = None) -> None:
        pass

    def log(self, step: int, data: bytes) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class Steps:
    """Numbers steps (#1, #2, ... as buildx does) and wraps them in start/done calls."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self._next = 0
        self._cached: set[int] = set()
        self._lock = threading.Lock()

    def cached(self, step: int) -> None:
        """The running step was served from the build cache: it is reported CACHED."""
        self._cached.add(step)

    def run(self, name: str, fn, *args, **kwargs):
        with self._lock:
            self._next += 1
            step = self._next
        self.reporter.start(step, name)
        try:
            result = fn(step, *args, **kwargs)
        except Exception as e:
            self.reporter.done(step, error=str(e))
            raise
        self.reporter.done(step, cached=step in self._cached)
        return result
