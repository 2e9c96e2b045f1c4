"""Instruction flags (``--name=value``) and Go-style value parsing, as BuildKit's bflag.go.

A flag spec maps a flag name to its kind: ``bool`` (``--link`` or ``--link=false``),
``string`` (``--from=x``, ``=`` required, may repeat only once) or ``strings``
(``--mount=...`` repeatable, values kept in order). Errors carry no location; the
instruction parser attaches it.
"""

from __future__ import annotations

import re

from ocibuild.errors import DockerfileError

__all__ = ["parse_flags", "parse_go_duration", "parse_go_int32"]

_UNITS_NS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_flags(flags: tuple[str, ...], spec: dict[str, str]) -> dict[str, object]:
    """Parse raw ``--flag[=value]`` words against ``spec``; unset flags get their defaults.

    Defaults: ``False`` for bool, ``None`` for string, ``()`` for strings.
    """
    values: dict[str, object] = {name: _default(kind) for name, kind in spec.items()}
    used: set[str] = set()
    for arg in flags:
        if not arg.startswith("--"):
            raise DockerfileError(f"Arg should start with -- : {arg}")
        if arg == "--":
            break
        name, eq, value = arg[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise DockerfileError(f"unknown flag: --{name}")
        if name in used and kind != "strings":
            raise DockerfileError(f"duplicate flag specified: --{name}")
        used.add(name)
        values[name] = _flag_value(name, kind, eq == "=", value, values[name])
    return values


def _default(kind: str) -> object:
    return {"bool": False, "string": None, "strings": ()}[kind]


def _flag_value(name: str, kind: str, has_eq: bool, value: str, previous: object) -> object:
    if kind == "bool":
        if has_eq and value == "":
            raise DockerfileError(f"missing a value on flag: --{name}")
        lower = value.lower()
        if lower in ("", "true"):
            return True
        if lower == "false":
            return False
        raise DockerfileError(f"expecting boolean value for flag --{name}, not: {value}")
    if not has_eq:
        raise DockerfileError(f"missing a value on flag: --{name}")
    if kind == "strings":
        return (*previous, value)  # type: ignore[misc]
    return value


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration such as ``1m30s``, ``1.5h`` or ``250ms`` (``time.ParseDuration``)."""
    quoted = f'"{text}"'
    body = text
    sign = 1
    if body[:1] in ("-", "+"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise DockerfileError(f"time: invalid duration {quoted}")
    total = 0.0
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise DockerfileError(f"time: invalid duration {quoted}")
        if not unit:
            raise DockerfileError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS_NS:
            raise DockerfileError(f'time: unknown unit "{unit}" in duration {quoted}')
        number = float(f"{whole or 0}.{frac or 0}")
        total += number * _UNITS_NS[unit]
        pos = m.end()
    return sign * int(round(total))


def parse_go_int32(text: str) -> int:
    """``strconv.ParseInt(text, 10, 32)`` with Go's error messages."""
    if not re.fullmatch(r"[+-]?\d+", text):
        raise DockerfileError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise DockerfileError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value
