"""``python -m ocibuild.layerspec SPECS OUT``: build each spec into ``OUT/<name>`` (an OCI layout).

SPECS is a directory of ``*.yaml`` files or one spec file. The cache (.deb files, and the
layers of `rootfs:` specs under ``rootfs/``) defaults to ``$OCIBUILD_DEB_CACHE``, else
``<ocibuild cache dir>/debs``. Exit status 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ocibuild.errors import OcibuildError
from ocibuild.layerspec.image import build
from ocibuild.layerspec.spec import load_spec, load_specs
from ocibuild.store import cache_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocibuild.layerspec", description=__doc__.split("\n")[0])
    parser.add_argument("specs", type=Path, help="a directory of *.yaml specs, or one spec file")
    parser.add_argument("out", type=Path, help="directory that receives one OCI layout per spec")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("OCIBUILD_DEB_CACHE") or cache_dir() / "debs"))
    parser.add_argument("--only", action="append", metavar="NAME", help="build only this spec (repeatable)")
    args = parser.parse_args(argv)
    try:
        specs = load_specs(args.specs) if args.specs.is_dir() else [load_spec(args.specs)]
        for spec in specs:
            if args.only and spec.name not in args.only:
                continue
            start = time.monotonic()
            built = build(spec, args.out / spec.name, cache=args.cache, log=_progress)
            print(f"{spec.name}: {len(built.manifests)} platforms, tags {', '.join(built.tags)}, "
                  f"{built.index.digest} -> {built.layout} ({time.monotonic() - start:.1f} s)")
    except OcibuildError as e:
        print(f"layerspec: {e}", file=sys.stderr)
        return 1
    return 0


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
