"""Canonical JSON bytes: the one way ocibuild serialises documents whose digest matters.

Keys sorted, no insignificant white space, UTF-8 without escaping non-ASCII: the same
input gives the same bytes (and so the same digest) on every machine and Python version.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
