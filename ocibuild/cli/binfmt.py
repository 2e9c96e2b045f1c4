"""`ocibuild binfmt`: which foreign platforms can run here and how; register or remove QEMU."""

from __future__ import annotations

from ocibuild.cli.common import add_debug
from ocibuild.errors import InvalidOption
from ocibuild.oci import Platform, host_platform
from ocibuild.sandbox import binfmt

# What `--install all` registers, and what the status table lists.
PLATFORMS = ["linux/amd64", "linux/386", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/ppc64le",
             "linux/s390x", "linux/riscv64"]
NATIVE = {"amd64": {"386"}}  # this kernel runs these without QEMU (32-bit personality)


def add_parser(sub) -> None:
    p = sub.add_parser("binfmt", help="show or set up QEMU emulation for foreign platforms")
    p.add_argument("--install", metavar="ARCHES", help="register qemu-*-static with the F flag: "
                   "arm64,arm,ppc64le,s390x,386,riscv64 or all (needs root)")
    p.add_argument("--uninstall", action="store_true", help="remove the handlers ocibuild registered")
    add_debug(p)


def run(args) -> int:
    if args.install:
        arches = [p.split("/", 1)[1] for p in PLATFORMS] if args.install == "all" else args.install.split(",")
        host = host_platform()
        wanted = [a for a in arches if not _native(host, Platform.parse(a))]
        if not wanted and args.install != "all":
            raise InvalidOption(f"--install {args.install}: nothing to emulate on {host}")
        for name in binfmt.install(wanted):
            print(f"installed {name}")
    if args.uninstall:
        for name in binfmt.uninstall():
            print(f"removed {name}")
    _print_status()
    return 0


def _native(host: Platform, target: Platform) -> bool:
    return target.architecture == host.architecture or target.architecture in NATIVE.get(host.architecture, ())


def _print_status() -> None:
    host = host_platform()
    rows = [("PLATFORM", "HOW", "HANDLER", "FLAGS", "INTERPRETER")]
    for text in PLATFORMS:
        platform = Platform.parse(text)
        if _native(host, platform):
            how = "native" if platform.architecture == host.architecture else "native (32-bit personality)"
            rows.append((text, how, "", "", ""))
            continue
        handler = binfmt.handler_for(platform)
        if handler is None:
            rows.append((text, "unavailable: ocibuild binfmt --install " + platform.architecture, "", "", ""))
        else:
            rows.append((text, "qemu (binfmt_misc)", handler.name, handler.flags, handler.interpreter))
    width = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip())
