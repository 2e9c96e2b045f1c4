"""`--cache-to` / `--cache-from` values, parsed as buildx parses them.

    type=registry,ref=reg/app:buildcache,mode=max     type=local,dest=dir | type=local,src=dir
    type=inline                                       reg/app:1.2  (--cache-from: a registry ref)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from ocibuild.errors import InvalidOption

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
        if "=" not in text:
            if export and text != "inline":
                raise InvalidOption(f"invalid {flag} {text!r}: expected type=...")
            return cls("inline") if text == "inline" else cls("registry", ref=text)
        fields = _fields(text, flag)
        kind = fields.pop("type", "registry" if "ref" in fields else "")
        if kind not in TYPES:
            raise InvalidOption(f"invalid {flag} {text!r}: type must be one of {', '.join(TYPES)}")
        mode = fields.pop("mode", "min")
        if mode not in MODES:
            raise InvalidOption(f"invalid {flag} {text!r}: mode must be min or max")
        ignore = fields.pop("ignore-error", "false").lower() in ("true", "1")
        ref = fields.pop("ref", "")
        path = fields.pop("dest" if export else "src", "")
        if kind == "registry" and not ref:
            raise InvalidOption(f"invalid {flag} {text!r}: type=registry needs ref=")
        if kind == "local" and not path:
            raise InvalidOption(f"invalid {flag} {text!r}: type=local needs {'dest' if export else 'src'}=")
        return cls(kind, ref, path, mode, ignore, fields)


def _fields(text: str, flag: str) -> dict[str, str]:
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
