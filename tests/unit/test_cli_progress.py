"""The progress renderers: buildx-style plain lines, an in-place TTY display, quiet."""

import io
import os
import pty

from ocibuild.cli.progress import PlainReporter, QuietReporter, TtyReporter, make_reporter


def drive(reporter):
    reporter.start(1, "[linux/amd64 stage-0 2/2] COPY . /app")
    reporter.advance(1, 2_500_000)
    reporter.done(1)
    reporter.start(2, "[linux/arm64 stage-0 2/2] COPY . /app")
    reporter.done(2, cached=True)
    reporter.start(3, "[stage-0 3/3] RUN x")
    reporter.done(3, error="boom")
    reporter.warn("careful")


def test_plain_reads_like_buildx():
    out = io.StringIO()
    drive(PlainReporter(out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "#1 [linux/amd64 stage-0 2/2] COPY . /app"
    assert lines[1].startswith("#1 DONE ") and lines[1].endswith("2.5MB")
    assert lines[2:] == ["#2 [linux/arm64 stage-0 2/2] COPY . /app", "#2 CACHED", "#3 [stage-0 3/3] RUN x",
                         "#3 ERROR: boom", "WARNING: careful"]


def test_quiet_prints_only_warnings():
    out = io.StringIO()
    drive(QuietReporter(out))
    assert out.getvalue() == "WARNING: careful\n"


def test_tty_redraws_in_place():
    out = io.StringIO()
    drive(TtyReporter(out))
    text = out.getvalue()
    assert "[+] Building" in text and "\x1b[J" in text
    assert " => [linux/amd64 stage-0 2/2] COPY . /app  " in text and "CACHED" in text and "ERROR" in text


def test_auto_picks_tty_only_on_a_terminal():
    assert isinstance(make_reporter("auto", io.StringIO()), PlainReporter)
    assert not isinstance(make_reporter("auto", io.StringIO()), TtyReporter)
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w") as stream:
            assert isinstance(make_reporter("auto", stream), TtyReporter)
    finally:
        os.close(master)


def test_tty_lines_fit_the_terminal(monkeypatch):
    """A line wider than the terminal wraps onto two rows, and the redraw would then erase too few."""
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    reporter = TtyReporter(out)
    reporter.start(1, "[stage-0 2/2] LABEL " + "x" * 100)
    reporter.done(1)
    visible = out.getvalue().replace("\x1b[J", "").split("\n")
    assert all(len(line.split("\x1b[")[0]) <= 39 for line in visible)
