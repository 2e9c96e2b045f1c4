"""The `ocibuild` command: argparse -> options -> library call. Exit codes live only here."""

from __future__ import annotations

import argparse
import sys

from ocibuild import __version__
from ocibuild.cli import binfmt, build, images, imagetools, inspect, login, manifest, pull, push
from ocibuild.cli.common import run_verb

VERBS = {"build": build, "inspect": inspect, "images": images, "pull": pull, "push": push,
         "login": login, "logout": login.Logout, "manifest": manifest, "imagetools": imagetools,
         "binfmt": binfmt}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocibuild", description="Build OCI images without a Docker daemon.")
    parser.add_argument("--version", action="version", version=f"ocibuild {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name, module in VERBS.items():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return 2
    return run_verb(VERBS[args.verb].run, args)
