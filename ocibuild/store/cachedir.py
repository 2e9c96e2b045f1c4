"""Where ocibuild keeps its local state (images, blobs, build cache)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$OCIBUILD_CACHE_DIR``, else ``$XDG_CACHE_HOME/ocibuild``, else ``~/.cache/ocibuild``.

    Only computes the path; nothing is created. A relative ``XDG_CACHE_HOME`` is ignored,
    as the XDG base directory specification requires.
    """
    explicit = os.environ.get("OCIBUILD_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "ocibuild"
    return Path.home() / ".cache" / "ocibuild"
