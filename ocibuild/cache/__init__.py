"""The build cache: what a step produced, found again by the step's key.

    records.py   Record (a step's result) and RecordStore (<cache>/buildcache/records)

Keys are computed by the builder (builder/cachekeys.py); this package stores, exports and
imports the results. It may import oci and store (and registry for transport).
"""

from ocibuild.cache.records import Record, RecordStore

__all__ = ["Record", "RecordStore"]
