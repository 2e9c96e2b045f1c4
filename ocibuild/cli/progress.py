"""Progress renderers: an interactive display on a TTY, plain lines otherwise, nothing when quiet.

The plain format follows buildx's (`#3 [linux/amd64 2/4] COPY . /app` ... `#3 DONE 0.4s`)
so logs read the same.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time

REDRAW_INTERVAL = 0.1  # seconds between redraws of the interactive display


def make_reporter(mode: str, stream=None):
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "quiet":
        return QuietReporter(stream)
    if mode == "tty":
        return TtyReporter(stream)
    return PlainReporter(stream)


class PlainReporter:
    def __init__(self, stream):
        self.stream = stream
        self._started: dict[int, float] = {}
        self._bytes: dict[int, int] = {}
        self._lock = threading.Lock()

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream, flush=True)

    def start(self, step: int, name: str) -> None:
        self._started[step] = time.monotonic()
        self._print(f"#{step} {name}")

    def advance(self, step: int, nbytes: int) -> None:
        self._bytes[step] = self._bytes.get(step, 0) + nbytes

    def done(self, step: int, *, cached: bool = False, error: str | None = None) -> None:
        elapsed = time.monotonic() - self._started.pop(step, time.monotonic())
        size = self._bytes.pop(step, 0)
        if error:
            self._print(f"#{step} ERROR: {error}")
        elif cached:
            self._print(f"#{step} CACHED")
        else:
            extra = f" {_human(size)}" if size else ""
            self._print(f"#{step} DONE {elapsed:.1f}s{extra}")

    def log(self, step: int, data: bytes) -> None:
        """A RUN step's output, line by line (`#5 hello`), as buildx's plain progress shows it."""
        for line in data.decode("utf-8", "replace").splitlines():
            self._print(f"#{step} {line}")

    def info(self, message: str) -> None:
        self._print(message)

    def warn(self, message: str) -> None:
        self._print(f"WARNING: {message}")


class QuietReporter(PlainReporter):
    """Only warnings; errors are printed by the CLI itself."""

    def start(self, step: int, name: str) -> None:
        pass

    def done(self, step: int, *, cached: bool = False, error: str | None = None) -> None:
        pass

    def log(self, step: int, data: bytes) -> None:
        pass

    def info(self, message: str) -> None:
        pass


class TtyReporter(PlainReporter):
    """One line per running step, redrawn in place, finished steps scrolled above."""

    def __init__(self, stream):
        super().__init__(stream)
        self._names: dict[int, str] = {}
        self._drawn = 0
        self._t0 = self._last_draw = time.monotonic()

    def _redraw(self, finished: str | None = None) -> None:
        with self._lock:
            out = self.stream
            if self._drawn:
                out.write(f"\x1b[{self._drawn}F\x1b[J")
            width = shutil.get_terminal_size().columns - 1
            if finished:
                out.write(_fit(finished, width) + "\n")
            now = time.monotonic()
            lines = [f" => {name}  {now - self._started.get(s, now):.1f}s {_human(self._bytes.get(s, 0))}".rstrip()
                     for s, name in sorted(self._names.items())]
            header = f"[+] Building {now - self._t0:.1f}s"
            # One terminal row per line, or the cursor-up count above would leave rows behind.
            out.write("\n".join(_fit(line, width) for line in [header, *lines]) + "\n")
            self._drawn = 1 + len(lines)
            self._last_draw = now
            out.flush()

    def start(self, step: int, name: str) -> None:
        with self._lock:  # steps of several stages and platforms start and end at once
            self._started[step] = time.monotonic()
            self._names[step] = name
        self._redraw()

    def advance(self, step: int, nbytes: int) -> None:
        super().advance(step, nbytes)
        now = time.monotonic()
        if now - self._last_draw >= REDRAW_INTERVAL:  # bytes arrive in thousands of small writes
            self._redraw()

    def done(self, step: int, *, cached: bool = False, error: str | None = None) -> None:
        with self._lock:
            name = self._names.pop(step, "")
            elapsed = time.monotonic() - self._started.pop(step, time.monotonic())
        status = "ERROR" if error else "CACHED" if cached else f"{elapsed:.1f}s"
        self._bytes.pop(step, None)
        self._redraw(finished=f" => {name}  {status}")

    def log(self, step: int, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self._redraw(finished=f"    {line}")

    def info(self, message: str) -> None:
        self._redraw(finished=message)

    def warn(self, message: str) -> None:
        self._redraw(finished=f"WARNING: {message}")


def _fit(line: str, width: int) -> str:
    line = line.replace("\n", " ")
    return line if len(line) <= width else line[: max(width - 1, 1)] + "…"


def _human(n: int) -> str:
    if not n:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return ""
