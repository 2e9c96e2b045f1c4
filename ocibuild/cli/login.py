"""`ocibuild login` / `ocibuild logout`: credentials in Docker's config.json, as docker writes them."""

from __future__ import annotations

import getpass
import sys

from ocibuild.cli.common import add_debug, add_registry_flags, registry_access
from ocibuild.errors import InvalidOption
from ocibuild.registry import Credentials, check_login, login


def add_parser(sub) -> None:
    p = sub.add_parser("login", help="log in to a registry")
    p.add_argument("server", help="registry host, e.g. registry.example:5000")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="the password (prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add_registry_flags(p)
    add_debug(p)


def run(args) -> int:
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.password is not None:
        password = args.password
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidOption("login: a username and a password are required")
    check_login(args.server, Credentials(username, password),
                registry_access(args).options(args.server))
    login(args.server, username, password)
    print("Login Succeeded")
    return 0
