"""Text -> syntax nodes, through BuildKit's own parser (the ``dockerfile`` package).

The package does line continuation, comments, the ``# escape=`` directive, JSON-form
detection and heredoc bodies. It keeps quotes in values, drops the escape character it
used, loses the flags of an ``ONBUILD`` trigger and reports errors without a line; this
module reads the directives itself, re-parses ONBUILD triggers, recovers the heredoc
options (``<<-`` and quoted delimiters) and puts the line back on errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dockerfile as _bk

from ocibuild.dockerfile.shell import Lexer
from ocibuild.errors import DockerfileError, Location

__all__ = [
    "Directives", "HeredocDoc", "Node", "heredoc_marker", "parse_directives", "parse_nodes", "parse_trigger",
]

_DIRECTIVE_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_RE = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_LEADING_TABS_RE = re.compile(r"^\t+", re.MULTILINE)
_HEREDOC_COMMANDS = ("ADD", "COPY", "RUN")


@dataclass(frozen=True)
class Directives:
    """Parser directives from the top of the file (``# syntax=``, ``# escape=``, ``# check=``)."""

    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None


@dataclass(frozen=True)
class HeredocDoc:
    """A heredoc as BuildKit's instruction parser sees it.

    ``content`` has its leading tabs removed already when the heredoc was ``<<-``;
    ``expand`` is False when the delimiter was quoted (``<<"EOF"``), meaning variables in
    the body must not be expanded.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0


@dataclass(frozen=True)
class Node:
    """One instruction as written: upper-cased ``cmd``, raw flags and raw argument words."""

    cmd: str
    args: tuple[str, ...]
    flags: tuple[str, ...]
    json: bool
    original: str
    location: Location
    heredocs: tuple[HeredocDoc, ...] = ()
    sub_cmd: str | None = None


def parse_directives(text: str) -> Directives:
    """Read the leading ``# key=value`` lines the way BuildKit's DirectiveParser does.

    Reading stops at the first line that is not a known directive (a blank line, an
    ordinary comment, an unknown key, an instruction); a repeated directive is an error.
    """
    found: dict[str, str] = {}
    lines = text.lstrip("\ufeff").split("\n")
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    for number, line in enumerate(lines, start=1):
        if not line.startswith("#"):
            break
        m = _DIRECTIVE_RE.match(line[1:].lstrip())
        if not m or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            break
        key = m.group(1).lower()
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used",
                                  location=Location("Dockerfile", number))
        found[key] = m.group(2)
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token '{escape}' does not match ` or \\")
    return Directives(escape=escape, syntax=found.get("syntax"), check=found.get("check"))


def parse_nodes(text: str, filename: str = "Dockerfile") -> tuple[Directives, list[Node]]:
    """Parse ``text`` into nodes; every error is a DockerfileError located in ``filename``."""
    try:
        directives = parse_directives(text)
    except DockerfileError as err:
        if err.location is not None:
            err.location = Location(filename, err.location.line)
        raise
    commands = _call_parser(text, filename)
    lines = text.split("\n")
    nodes = [_to_node(cmd, filename, directives.escape, lines) for cmd in commands]
    return directives, nodes


def parse_trigger(node: Node, escape: str, source_lines: list[str]) -> Node:
    """Parse the instruction after ``ONBUILD`` as a node of its own, located at the ONBUILD.

    The package drops the trigger's flags and heredoc bodies, so the trigger's source lines
    are parsed again with the ONBUILD keyword removed.
    """
    start, end = node.location.line, node.location.end_line or node.location.line
    chunk = source_lines[start - 1:end]
    chunk[0] = re.sub(r"(?i)^\s*ONBUILD\s*", "", chunk[0], count=1)
    prefix = "# escape=`\n" if escape == "`" else ""
    offset = start - 1 - prefix.count("\n")
    commands = _call_parser(prefix + "\n".join(chunk) + "\n", node.location.file, line_offset=offset)
    inner = _to_node(commands[0], node.location.file, escape, chunk)
    return Node(cmd=inner.cmd, args=inner.args, flags=inner.flags, json=inner.json,
                original=inner.original, location=node.location, heredocs=inner.heredocs)


def _call_parser(text: str, filename: str, line_offset: int = 0) -> list:
    try:
        return list(_bk.parse_string(text))
    except _bk.GoParseError as exc:
        message = str(exc)
        line = _error_line(text, message)
        location = Location(filename, line + line_offset) if line else None
        raise DockerfileError(message, location=location) from None


def _error_line(text: str, message: str) -> int | None:
    """Find the line of a parser error, which the package does not report.

    The smallest prefix of whole lines that fails with the same message ends at the culprit;
    prefixes ending on a continued line are skipped, since cutting a continuation can make
    an earlier instruction fail the same way.
    """
    if message == "file with no instructions":
        return max(1, text.rstrip("\n").count("\n") + 1)  # BuildKit points at the last line
    lines = text.split("\n")
    for n in range(1, len(lines) + 1):
        if lines[n - 1].rstrip().endswith(("\\", "`")):
            continue
        try:
            _bk.parse_string("\n".join(lines[:n]) + "\n")
        except _bk.GoParseError as exc:
            if str(exc) == message:
                return n
    return None


def _to_node(cmd, filename: str, escape: str, lines: list[str]) -> Node:
    name = cmd.cmd.upper()
    location = Location(filename, cmd.start_line, cmd.end_line)
    sub = cmd.sub_cmd.upper() if cmd.sub_cmd else None
    heredocs: tuple[HeredocDoc, ...] = ()
    if name in _HEREDOC_COMMANDS and cmd.heredocs:
        heredocs = _heredoc_docs(name, cmd.value, cmd.heredocs, escape)
    return Node(cmd=name, args=tuple(cmd.value), flags=tuple(cmd.flags), json=bool(cmd.json),
                original=cmd.original, location=location, heredocs=heredocs, sub_cmd=sub)


def heredoc_marker(word: str) -> tuple[int, bool, str, bool] | None:
    """``(fd, chomp, name, expand)`` when ``word`` is a heredoc marker like ``<<-"EOF"``."""
    m = _HEREDOC_RE.match(word)
    if not m:
        return None
    rest = m.group(3)
    try:
        plain = Lexer().process(rest, {}).words
        raw = Lexer(raw_quotes=True).process(rest, {}).words
    except DockerfileError:
        return None  # as BuildKit's MustParseHeredoc: a malformed marker is no heredoc
    if len(plain) != 1 or len(raw) != 1:
        return None
    quotes = lambda w: w.count("'") + w.count('"')  # noqa: E731
    expand = quotes(plain[0]) == quotes(raw[0])
    return int(m.group(1) or 0), m.group(2) == "-", plain[0], expand


def _heredoc_docs(name: str, values, bodies, escape: str) -> tuple[HeredocDoc, ...]:
    """Pair the package's heredoc bodies with the options of their markers, in order."""
    if name == "RUN":
        lexer = Lexer(escape, raw_quotes=True, raw_escapes=True, skip_unset=True)
        words = [w for v in values for w in lexer.process(v, {}).words]
    else:
        words = list(values)
    markers = [mk for mk in map(heredoc_marker, words) if mk is not None]
    docs = []
    for i, body in enumerate(bodies):
        fd, chomp, _, expand = markers[i] if i < len(markers) else (body.file_descriptor, False, "", True)
        content = _LEADING_TABS_RE.sub("", body.content) if chomp else body.content
        docs.append(HeredocDoc(name=body.name, content=content, expand=expand, chomp=chomp, fd=fd))
    return tuple(docs)

