"""`--cache-to` / `--cache-from` values (ocibuild/cache/spec.py), against what buildx accepts.
"""

from __future__ import annotations

import pytest

from ocibuild.cache.spec import CacheSpec
from ocibuild.errors import InvalidOption


def to(text: str) -> CacheSpec:
    return CacheSpec.parse(text, export=True)


def from_(text: str) -> CacheSpec:
    return CacheSpec.parse(text, export=False)


@pytest.mark.parametrize("text, expected", [
    ("type=registry,ref=reg:5000/app:buildcache,mode=max",
     CacheSpec("registry", ref="reg:5000/app:buildcache", mode="max")),
    ("type=local,dest=out/cache", CacheSpec("local", path="out/cache")),
    ("type=local,dest=c,tag=v2,ignore-error=true", CacheSpec("local", path="c", ignore_error=True,
                                                            attrs={"tag": "v2"})),
    ("type=inline", CacheSpec("inline")),
    ("inline", CacheSpec("inline")),
    ("TYPE=registry,REF=r/a:1", CacheSpec("registry", ref="r/a:1")),        # keys are case-insensitive
    ('type=local,"dest=a,b"', CacheSpec("local", path="a,b")),              # CSV quoting, as buildx
    ("type=registry,ref=r/a:1,ignore-error=1", CacheSpec("registry", ref="r/a:1", ignore_error=True)),
    ("type=registry,ref=r/a:1,compression=zstd", CacheSpec("registry", ref="r/a:1",
                                                          attrs={"compression": "zstd"})),  # kept, unused
])
def test_cache_to(text, expected):
    assert to(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("type=registry,ref=r/a:cache", CacheSpec("registry", ref="r/a:cache")),
    ("reg:5000/app:1.2", CacheSpec("registry", ref="reg:5000/app:1.2")),   # an image: its inline cache
    ("ref=r/a:1", CacheSpec("registry", ref="r/a:1")),
    ("type=local,src=dir", CacheSpec("local", path="dir")),
    ("type=local,src=dir,digest=sha256:" + "a" * 64, CacheSpec("local", path="dir",
                                                               attrs={"digest": "sha256:" + "a" * 64})),
])
def test_cache_from(text, expected):
    assert from_(text) == expected


@pytest.mark.parametrize("text, export, message", [
    ("type=local,src=dir", True, "needs dest="),
    ("type=local,dest=dir", False, "needs src="),
    ("type=registry", True, "needs ref="),
    ("type=registry,ref=", False, "needs ref="),
    ("type=gha", True, "type must be one of"),
    ("type=Local,dest=d", True, "type must be one of"),                   # values are not lowered (buildx)
    ("type=registry,ref=r/a:1,mode=MAX", True, "mode must be min or max"),
    ("type=registry,ref=r/a:1,oops", True, "'oops' is not key=value"),
    ("mode=max", True, "type must be one of"),
])
def test_refused(text, export, message):
    with pytest.raises(InvalidOption, match=message):
        CacheSpec.parse(text, export=export)


def test_cache_from_type_inline_is_refused():
    with pytest.raises(InvalidOption):
        from_("type=inline")


def test_ignore_error_must_be_a_boolean():
    with pytest.raises(InvalidOption):
        to("type=local,dest=d,ignore-error=yes")


def test_cache_to_bare_reference_is_a_registry_ref():
    assert to("reg/app:cache") == CacheSpec("registry", ref="reg/app:cache")


def test_invalid_reference_is_refused_when_parsed():
    with pytest.raises(InvalidOption):
        to("type=registry,ref=Bad//Ref")
