"""What every verb shares: error reporting and exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING

from ocibuild.errors import OcibuildError

if TYPE_CHECKING:
    from ocibuild.builder.registries import RegistryAccess

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 130, 141


def add_registry_flags(parser) -> None:
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                        help="allow plain HTTP and unverified TLS for this registry (repeatable)")
    parser.add_argument("--tls-ca", metavar="FILE", help="an extra CA bundle to trust for registries")


def registry_access(args) -> "RegistryAccess":
    from ocibuild.builder.registries import RegistryAccess  # only the verbs that talk to registries pay for it

    return RegistryAccess(insecure=frozenset(args.insecure_registry), ca_file=args.tls_ca)


def add_debug(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")


def run_verb(fn, args) -> int:
    """Run a verb; map errors to one line on stderr (a traceback only with --debug) and an exit code."""
    try:
        return fn(args) or EXIT_OK
    except BrokenPipeError:  # `ocibuild inspect x | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("ocibuild: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OcibuildError as e:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"ERROR: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # an edge the library did not translate: still one line, with the file
        if getattr(args, "debug", False):
            traceback.print_exc()
        where = f" {e.filename!r}" if e.filename else ""
        print(f"ERROR:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
