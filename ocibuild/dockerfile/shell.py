"""Shell-word processing as BuildKit's ``frontend/dockerfile/shell/lex.go`` does it.

A Dockerfile word such as ``"$HOME"/bin/${NAME:-app}`` goes through three things at once:
variable expansion (``$VAR``, ``${VAR}`` and the ``${VAR<op>word}`` forms listed below),
quote removal (single quotes are literal, double quotes allow ``$`` and a few escapes) and
escape processing with the Dockerfile's escape character (``\\`` or, after ``# escape=```,
a backtick). Nothing is executed: there is no command substitution, globbing or arithmetic.

Supported forms (as in current BuildKit)::

    $VAR ${VAR}            value, or "" when unset
    ${VAR:-w} ${VAR-w}     w when VAR is unset (":" also when empty)
    ${VAR:+w} ${VAR+w}     w when VAR is set (":" only when non-empty), else ""
    ${VAR:?m} ${VAR?m}     error "VAR: m" when unset (":" also when empty)
    ${VAR#p} ${VAR##p}     remove the shortest / longest prefix matching p (* and ?)
    ${VAR%p} ${VAR%%p}     remove the shortest / longest suffix matching p
    ${VAR/p/r} ${VAR//p/r} replace the first / every match of p with r

Errors are :class:`~ocibuild.errors.DockerfileError` without a location; the caller that
knows the instruction attaches it (``err.at(location, "COPY")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ocibuild.dockerfile.shell_patterns import ShellError as _ShellError
from ocibuild.dockerfile.shell_patterns import apply_modifier, replace_all, substitution_regex
from ocibuild.errors import DockerfileError

__all__ = ["Lexer", "WordResult", "go_quote", "process_word", "process_words", "referenced_names"]

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_GO_SPACES = frozenset("\t\n\v\f\r \x85\xa0")


def go_quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` does for printable text (used in error messages)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def _is_space(ch: str) -> bool:
    # Go's unicode.IsSpace: ASCII/Latin-1 whitespace plus the Unicode White_Space property.
    return ch in _GO_SPACES or (ord(ch) > 0xFF and ch.isspace())


@dataclass
class WordResult:
    """What processing one word produced.

    ``value`` is the single-word result (spaces kept), ``words`` the same text split into
    words the way ``ProcessWords`` does, ``matched``/``unmatched`` the names of variables the
    word referenced that were set / not set in the environment.
    """

    value: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


class _Words:
    """Accumulates words for ``ProcessWords``: unquoted whitespace separates words."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if _is_space(ch):
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class Lexer:
    """A reusable word processor; one instance per escape character and option set.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps escape
    characters, ``skip_unset`` leaves references to unset variables as written and
    ``skip_quotes`` treats quotes as ordinary characters (used for heredoc bodies).
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False, skip_quotes: bool = False):
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def process(self, word: str, env: Mapping[str, str]) -> WordResult:
        """Expand ``word`` against ``env``; raises DockerfileError ``failed to process "w": ...``."""
        state = _Scan(self, word, env)
        try:
            value, words = state.stop_on(None, self.raw_escapes)
        except _ShellError as exc:
            raise DockerfileError(f"failed to process {go_quote(word)}: {exc}") from None
        return WordResult(value, words, state.matched, state.unmatched)


class _Scan:
    """One pass over one word (the Go ``shellWord``)."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]):
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to ``stop`` (consumed) or the end; ``raw_escapes`` applies meanwhile."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while (ch := self.peek()) is not None:
            if stop is not None and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch == "$":
                text = self.dollar()
                result.append(text)
                words.add_string(text)
            elif ch in "'\"" and not self.lx.skip_quotes:
                text = self.single_quote() if ch == "'" else self.double_quote()
                result.append(text)
                words.add_raw(text)
            else:
                self.next()
                if ch == self.lx.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch is None:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise _ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        # Everything up to the next single quote is literal; a single quote cannot be escaped.
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if ch is None:
                raise _ShellError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        # Literal except "$" and the escape character, which escapes only " $ and itself.
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self.peek()
            if ch is None:
                raise _ShellError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lx.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", self.lx.escape):
                    ch = self.next()
            out.append(ch)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.next()
        ch = self.peek()
        if ch is None:
            raise _ShellError("syntax error: missing '}'")
        if ch in "{}:":
            raise _ShellError("syntax error: bad substitution")
        return self.braced(self.name())

    def braced(self, name: str) -> str:
        """The rest of ``${name...}`` after the name."""
        ch = self.next()
        if ch is None:
            raise _ShellError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self.substitute(name)
        op = ch
        if ch == ":":
            ch = self.next()
            op += ch or ""
        if op[0] not in ":+-?#%":
            raise _ShellError(f"unsupported modifier ({op}) in substitution")
        try:
            word, _ = self.stop_on("}", ch in ("#", "%"))
        except _ShellError:
            if self.peek() is None:
                raise _ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if not found and self.lx.skip_unset:
            return "${" + name + op + word + "}"
        return apply_modifier(name, op, ch, word, value, found)

    def substitute(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.next()
        try:
            pattern, _ = self.stop_on("/", True)
        except _ShellError:
            if self.peek() is None:
                raise _ShellError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.stop_on("}", True)
        except _ShellError:
            if self.peek() is None:
                raise _ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if not found and self.lx.skip_unset:
            return "${%s/%s/%s}" % (name, pattern, replacement)
        regex = substitution_regex(pattern, greedy=True, anchored=False)
        if every:
            return replace_all(regex, value, replacement)
        m = regex.search(value)
        return value if m is None else value[:m.start()] + replacement + value[m.end():]

    def name(self) -> str:
        """A variable name: letters/digits/_; a leading digit run; or one special parameter."""
        start = self.pos
        ch = self.peek()
        if ch is None:
            return ""
        if ch.isdecimal():
            while (ch := self.peek()) is not None and ch.isdecimal():
                self.pos += 1
            return self.text[start:self.pos]
        if ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        while (ch := self.peek()) is not None and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.pos += 1
        return self.text[start:self.pos]

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False


_DEFAULT = Lexer()


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word and remove its quotes; spaces inside the result are kept."""
    lexer = _DEFAULT if escape == "\\" else Lexer(escape)
    return lexer.process(word, env).value


def process_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand ``word`` then split it on unquoted whitespace (BuildKit's ``ProcessWords``)."""
    lexer = _DEFAULT if escape == "\\" else Lexer(escape)
    return lexer.process(word, env).words


def referenced_names(word: str, env: Mapping[str, str] | None = None, escape: str = "\\") -> set[str]:
    """Names of the variables ``word`` refers to (set or not), for cache keys."""
    result = Lexer(escape).process(word, env or {})
    return result.matched | result.unmatched
