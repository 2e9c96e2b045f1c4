"""Pattern operators of ``${VAR#p}``, ``${VAR%p}`` and ``${VAR/p/r}`` (BuildKit's lex.go).

Shell patterns know ``*`` and ``?`` and ``\\`` escapes (no bracket expressions); they are
translated to regular expressions. ``%``/``%%`` need the shortest/longest *suffix*, which a
regex cannot search for, so value and pattern are reversed and matched from the left.
"""

from __future__ import annotations

import re

__all__ = ["ShellError", "apply_modifier", "replace_all", "substitution_regex"]

_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


class ShellError(Exception):
    """A lexing failure; the lexer wraps it into ``failed to process "word": ...``."""


def apply_modifier(name: str, op: str, ch: str | None, word: str, value: str, found: bool) -> str:
    """Apply a ``${name<op>word}`` modifier; ``ch`` is the operator without its colon."""
    null_is_unset = op.startswith(":")
    empty = not found or (null_is_unset and value == "")
    if ch == "-":
        return word if empty else value
    if ch == "+":
        return "" if empty else word
    if ch == "?":
        if not found:
            raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
        if null_is_unset and value == "":
            raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
        return value
    if ch in ("#", "%"):
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "%":
            return _trim_suffix(word, value, greedy)
        return _trim_prefix(word, value, greedy)
    raise ShellError(f"unsupported modifier ({op}) in substitution")


def substitution_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Translate a ``${VAR#pattern}`` pattern (``*``, ``?``, ``\\`` escapes) to a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue  # escaped "}" and "/" only protect the ${} syntax
            escaped = pattern[i] if i < len(pattern) else ""
            i += 1
            if escaped not in ("*", "?", "\\"):
                raise ShellError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")
            out.append("\\" + escaped)
        else:
            out.append("\\" + ch if ch in _REGEX_SPECIAL else re.escape(ch))
    return re.compile("".join(out))


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each ``\\x`` escape pair in order (``a\\*c`` -> ``c\\*a``)."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = substitution_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value if m is None else value[m.end():]


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex cannot find the shortest rightmost match, so match the reversed pattern
    # against the reversed value from the left, as BuildKit does.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def replace_all(regex: re.Pattern[str], value: str, replacement: str) -> str:
    """Go's ``Regexp.ReplaceAllString`` (literal replacement): an empty match right after
    another match is not replaced, which Python's ``re.sub`` would do."""
    out: list[str] = []
    last_end = 0
    pos = 0
    while pos <= len(value):
        m = regex.search(value, pos)
        if m is None:
            break
        out.append(value[last_end:m.start()])
        if m.end() > last_end or m.start() == 0:
            out.append(replacement)
        last_end = m.end()
        pos = pos + 1 if pos + 1 > m.end() else m.end()
    out.append(value[last_end:])
    return "".join(out)
