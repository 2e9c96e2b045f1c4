"""`--cache-to` / `--cache-from` values, parsed as buildx parses them.

    type=registry,ref=reg/app:buildcache,mode=max     type=local,dest=dir | type=local,src=dir
    type=inline                                       reg/app:1.2  (--cache-from: a registry ref)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from ocibuild.errors import InvalidOption, OcibuildError
from ocibuild.oci import Reference

TYPES = ("registry", "local", "inline")
MODES = ("min", "max")


@dataclass(frozen=True)
class CacheSpec:
    type: str                 # registry | local | inline
    ref: str = ""             # registry: the cache (or image, for inline) reference
    path: str = ""            # local: dest= (export) or src= (import)
    mode: str = "min"         # export: min = the final stage's steps, max = every stage's
    ignore_error: bool = False  # export failures only warn
    attrs: dict[str, str] = field(default_factory=dict)  # the rest, kept for forward compatibility

    @classmethod
    def parse(cls, text: str, *, export: bool) -> "CacheSpec":
        flag = "--cache-to" if export else "--cache-from"
        if "=" not in text:  # buildx: a bare value is a registry reference (`inline` is a type)
            text = "type=inline" if text == "inline" else f"type=registry,ref={text}"
        fields = csv_fields(text, flag)
        kind = fields.pop("type", "registry" if "ref" in fields else "")
        allowed = TYPES if export else ("registry", "local")  # an image's inline cache is read by its ref
        if kind not in allowed:
            raise InvalidOption(f"invalid {flag} {text!r}: type must be one of {', '.join(allowed)}")
        mode = fields.pop("mode", "min")
        if mode not in MODES:
            raise InvalidOption(f"invalid {flag} {text!r}: mode must be min or max")
        ignore = _bool(fields.pop("ignore-error", "false"), flag, text)
        ref = fields.pop("ref", "")
        path = fields.pop("dest" if export else "src", "")
        if kind == "registry":
            if not ref:
                raise InvalidOption(f"invalid {flag} {text!r}: type=registry needs ref=")
            try:
                Reference.parse(ref)
            except OcibuildError as e:
                raise InvalidOption(f"invalid {flag} {text!r}: {e.message}") from None
        if kind == "local" and not path:
            raise InvalidOption(f"invalid {flag} {text!r}: type=local needs {'dest' if export else 'src'}=")
        return cls(kind, ref, path, mode, ignore, fields)


def _bool(value: str, flag: str, text: str) -> bool:
    """Go's strconv.ParseBool, which BuildKit uses."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise InvalidOption(f"invalid {flag} {text!r}: ignore-error must be true or false")


def csv_fields(text: str, flag: str) -> dict[str, str]:
    """buildx's CSV flag values (`--output`, `--cache-to`, ...): `key=value,...`, keys lower-cased."""
    try:
        row = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise InvalidOption(f"invalid {flag} {text!r}") from None
    out: dict[str, str] = {}
    for item in row:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidOption(f"invalid {flag} {text!r}: {item!r} is not key=value")
        out[key.strip().lower()] = value
    return out
