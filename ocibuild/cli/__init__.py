"""The `ocibuild` command: argparse -> options -> library call. Exit codes live only here.

Each verb is a module with `add_parser(sub)` and `run(args) -> int`. Only the verb being run is
imported (with `--help` or no verb, all of them): `ocibuild push` should not pay for loading the
Dockerfile parser and the builder.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ocibuild import __version__
from ocibuild.cli.common import run_verb

VERBS = ["build", "inspect", "images", "pull", "push", "login", "logout", "manifest", "imagetools", "binfmt",
         "du", "prune"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    wanted = [verb] if verb in VERBS else VERBS
    modules = {name: importlib.import_module(f"ocibuild.cli.{name}") for name in wanted}
    parser = argparse.ArgumentParser(prog="ocibuild", description="Build OCI images without a Docker daemon.")
    parser.add_argument("--version", action="version", version=f"ocibuild {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for module in modules.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return 2
    return run_verb(modules[args.verb].run, args)
