""".dockerignore semantics of moby/patternmatcher (and its ``ignorefile`` reader).

File format: one pattern per line; a line *starting* with ``#`` is a comment; surrounding
whitespace is trimmed; blank lines are skipped; ``!pattern`` is an exception; patterns are
cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped.

Pattern syntax is Go's ``filepath.Match``: ``*`` (no ``/``), ``?``, ``[a-z]`` and ``[^a-z]``
classes (``!`` is *not* a negation in Go), ``\\x`` escapes; plus ``**``, which matches any
number of directories (``**/x``, ``a/**/b``, ``a/**``). A path is excluded when the last
pattern that matches it or one of its parent directories is not an exception.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterable

from ocibuild.errors import ContextError, InvalidInput

__all__ = ["Matcher", "go_clean", "load_ignore", "match_component", "parse_ignore"]


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: collapse ``//``, ``.`` and ``..``; ``""`` becomes ``"."``."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def parse_ignore(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised as BuildKit reads them."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


class _Pattern:
    """One compiled pattern, with patternmatcher's fast paths (exact, prefix, suffix)."""

    def __init__(self, text: str, exclusion: bool = False):
        self.text = text
        self.exclusion = exclusion
        self.dirs = text.split("/")
        self.kind, regex = _translate(text)
        self.regex = _compile(regex) if self.kind == "regexp" else None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        return self.regex.match(path) is not None


def _translate(pattern: str) -> tuple[str, str]:
    """patternmatcher's compile(): the match kind and, for "regexp", the regex source."""
    out = ["^"]
    kind = "exact"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**", i):
            start = i
            i += 3 if pattern[i + 2:i + 3] == "/" else 2  # "**/" is "**"
            kind = _double_star(out, kind, at_end=i >= n, at_start=start == 0)
            continue
        i += 1
        if ch == "\\" and i < n:
            out.append(re.escape(pattern[i]))  # filepath.Match: the next char is literal
            i += 1
            kind = "regexp"
        elif ch in _GLOB_PIECES:
            out.append(_GLOB_PIECES[ch])
            kind = "regexp"
        elif ch in ".+()|{}$\\":
            out.append("\\" + ch)  # regex syntax with no meaning in filepath.Match
        else:
            out.append(ch)  # as patternmatcher: "^" and "-" must reach classes untouched
    return kind, "".join(out) + "$"


_GLOB_PIECES = {"*": "[^/]*", "?": "[^/]", "[": "[", "]": "]"}


def _double_star(out: list[str], kind: str, *, at_end: bool, at_start: bool) -> str:
    if not at_end:
        out.append("(.*/)?")  # any number of directories, even none
        kind = "regexp"
    elif kind == "exact":
        kind = "prefix"
    else:
        out.append(".*")
        kind = "regexp"
    return "suffix" if at_start else kind


def _compile(regex: str) -> re.Pattern[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "[[" and friends in classes
        try:
            return re.compile(regex)
        except re.error:
            raise InvalidInput("syntax error in pattern") from None


def _check_syntax(pattern: str) -> None:
    """The syntax errors Go's filepath.Match reports: unclosed class, dangling escape."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidInput(f"invalid .dockerignore pattern {pattern!r}: syntax error in pattern")
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j = n  # Go refuses an empty class and a leading "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            if j >= n:
                raise InvalidInput(f"invalid .dockerignore pattern {pattern!r}: syntax error in pattern")
            i = j
        i += 1


class Matcher:
    """Decides which context paths a .dockerignore excludes.

    Paths are relative to the context, ``/``-separated (``"src/app.py"``).
    """

    def __init__(self, patterns: Iterable[str]):
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise InvalidInput('illegal exclusion pattern: "!"')
                text = text[1:]
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]  # as the ignore-file reader does; paths are context-relative
            _check_syntax(text)
            self.patterns.append(_Pattern(text, exclusion))
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    def excluded(self, relpath: str) -> bool:
        """True when ``relpath`` or one of its parent directories is excluded (last match wins)."""
        if not self.patterns:  # no .dockerignore: asked for every path of the context
            return False
        path = go_clean(relpath).lstrip("/")
        if path in (".", ""):
            return False
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        parents = [] if parent == "." else _prefixes(parent)
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # an inclusion cannot change a match, an exception only undoes one
            if pattern.match(path) or any(pattern.match(p) for p in parents):
                matched = not pattern.exclusion
        return matched

    def may_contain_exceptions(self, dirpath: str) -> bool:
        """False only when no ``!`` pattern can match anything inside ``dirpath`` (or the
        directory itself or a parent), so that an excluded directory can be skipped whole."""
        if not self.has_exceptions:
            return False
        parts = go_clean(dirpath).lstrip("/").split("/")
        return any(_could_reach(p.dirs, parts) for p in self.patterns if p.exclusion)


def _prefixes(parent: str) -> list[str]:
    parts = parent.split("/")
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


def _could_reach(pattern_parts: list[str], dir_parts: list[str]) -> bool:
    for i, part in enumerate(pattern_parts):
        if "**" in part or i >= len(dir_parts):
            return True
        if not _Pattern(part).match(dir_parts[i]):
            return False
    return True  # the pattern names the directory itself or one of its parents


def match_component(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` for one path component (COPY/ADD source wildcards):
    ``*`` and ``?`` never match ``/``, ``[...]`` classes, ``\\`` escapes."""
    return _component_regex(pattern).match(name) is not None


@functools.lru_cache(maxsize=1024)
def _component_regex(pattern: str) -> re.Pattern[str]:
    _check_syntax(pattern)
    _, regex = _translate(pattern.replace("**", "*"))
    return _compile(regex)


def load_ignore(context_dir: str | os.PathLike, dockerfile_path: str | os.PathLike | None = None) -> Matcher:
    """The Matcher for a build: ``<Dockerfile>.dockerignore`` next to the Dockerfile when it
    exists, else ``<context>/.dockerignore``, else one that excludes nothing."""
    candidates = []
    if dockerfile_path is not None:
        candidates.append(os.fspath(dockerfile_path) + ".dockerignore")
    candidates.append(os.path.join(os.fspath(context_dir), ".dockerignore"))
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8", errors="surrogateescape") as fh:
                text = fh.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ContextError(f"read {candidate}: {exc.strerror}") from None
        return Matcher(parse_ignore(text))
    return Matcher([])
