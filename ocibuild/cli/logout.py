"""`ocibuild logout SERVER`: remove a registry's credentials from Docker's config.json."""

from __future__ import annotations

from ocibuild.cli.common import add_debug
from ocibuild.registry import logout


def add_parser(sub) -> None:
    p = sub.add_parser("logout", help="remove a registry's credentials")
    p.add_argument("server")
    add_debug(p)


def run(args) -> int:
    removed = logout(args.server)
    print(f"Removing login credentials for {args.server}" if removed else f"Not logged in to {args.server}")
    return 0
