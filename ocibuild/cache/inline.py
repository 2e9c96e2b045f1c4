"""Cache records that point at layers by position: the inline cache, and the body of the cache artifact.

    {"records": {"<key>": {"created": "2024-05-01T10:00:00Z", "layer": 0},     a step with a layer
                 "<key>": {"created": "2024-05-01T10:00:00Z"}}}              a config-only step

``layer`` indexes a list of layer descriptors that travels beside the records: the image's own
``layers`` (and its config's ``rootfs.diff_ids``) for the inline cache, which the builder keeps
in each platform image's config under ``"ocibuild.cache.v1"`` as BuildKit keeps
``moby.buildkit.cache.v0``; the cache manifest's ``layers`` (and the config's ``diffIDs``) for
the artifact of transport.py. Positions instead of descriptors keep the value small and make a
record impossible to point at a blob that does not travel with it.

Pure: no I/O. ``decode_records`` raises InvalidDocument for anything malformed.
"""

from __future__ import annotations

from typing import Any, Sequence

from ocibuild.cache.records import Record, valid_key
from ocibuild.errors import InvalidDocument, InvalidInput
from ocibuild.oci import Descriptor, Digest

INLINE_KEY = "ocibuild.cache.v1"  # the top-level image config field holding the inline cache


def inline_cache(records: dict[str, Record], layers: Sequence[Descriptor]) -> dict:
    """The JSON value to store under INLINE_KEY in the config of an image with ``layers``.

    Records whose layer is not among ``layers`` are left out: nothing else travels with the
    image (an intermediate stage's layer under ``mode=max``, which BuildKit refuses for inline).
    """
    return encode_records(records, layers)


def encode_records(records: dict[str, Record], layers: Sequence[Descriptor]) -> dict:
    """``{"records": ...}`` with each layer given as its first position in ``layers``; keys sorted."""
    position: dict[str, int] = {}
    for i, d in enumerate(layers):
        position.setdefault(d.digest, i)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(records):
        record = records[key]
        entry: dict[str, Any] = {"created": record.created}
        if record.layer is not None:
            if record.layer.digest not in position:
                continue
            entry["layer"] = position[record.layer.digest]
        out[key] = entry
    return {"records": out}


def decode_records(value: Any, layers: Sequence[Descriptor], diff_ids: Sequence[str]) -> dict[str, Record]:
    """The records of an ``encode_records`` value; ``diff_ids[i]`` belongs to ``layers[i]``."""
    if len(diff_ids) != len(layers):
        raise InvalidDocument(f"{len(layers)} layers but {len(diff_ids)} diff_ids")
    entries = value.get("records") if isinstance(value, dict) else None
    if not isinstance(entries, dict):
        raise InvalidDocument("no 'records' object")
    return {key: _record(key, entry, layers, diff_ids) for key, entry in entries.items()}


def _record(key: str, entry: Any, layers: Sequence[Descriptor], diff_ids: Sequence[str]) -> Record:
    if not valid_key(key):
        raise InvalidDocument(f"not a cache key: {key[:80]!r}")
    if not isinstance(entry, dict) or not isinstance(entry.get("created"), str):
        raise InvalidDocument(f"record {key[:12]}: no 'created' time")
    if "layer" not in entry:
        return Record(entry["created"])
    i = entry["layer"]
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(layers):
        raise InvalidDocument(f"record {key[:12]}: layer {i!r} is not one of the {len(layers)} layers")
    try:
        diff_id = Digest(diff_ids[i])
    except InvalidInput as e:
        raise InvalidDocument(f"record {key[:12]}: {e.message}") from None
    return Record(entry["created"], layers[i], diff_id)
