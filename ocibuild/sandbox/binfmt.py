"""binfmt_misc: which foreign platforms the kernel can run through QEMU, and registering them.

`status()` reads /proc/sys/fs/binfmt_misc. `install(arches)` registers Debian's
qemu-user-static interpreters with the F (fix binary) flag, as tonistiigi/binfmt does: the
kernel opens the interpreter once, at registration, so it also works inside a chroot or another
mount namespace where the interpreter's path does not exist. Our entries are named
``ocibuild-qemu-<name>`` so that `uninstall()` removes exactly those and never a handler the
system (systemd-binfmt, binfmt-support) registered. `install` skips a platform some enabled
handler already serves, so it never shadows the system's entries.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ocibuild.errors import SandboxError
from ocibuild.oci.platform import Platform

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
CONF_DIR = Path("/usr/lib/binfmt.d")
PREFIX = "ocibuild-"
# OCI architecture -> QEMU's name for it.
QEMU_NAMES = {"arm64": "aarch64", "arm": "arm", "amd64": "x86_64", "386": "i386", "ppc64le": "ppc64le",
              "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el",
              "mips64": "mips64", "mipsle": "mipsel", "mips": "mips", "loong64": "loongarch64"}
# A handler name says which QEMU it is; Debian's qemu-i386 handler is the "i386" entry.
_HANDLER = re.compile(r"^(?:ocibuild-)?qemu-([a-z0-9_]+)$")


@dataclass(frozen=True)
class Handler:
    """One registered binfmt_misc entry that runs a QEMU."""

    name: str           # e.g. "qemu-aarch64" or "ocibuild-qemu-aarch64"
    qemu: str           # QEMU's architecture name, "aarch64"
    interpreter: str
    flags: str          # "POF": P preserve argv[0], O open binary, F fix (interpreter pre-opened)
    enabled: bool

    @property
    def fixed(self) -> bool:
        """True when the interpreter was opened at registration: nothing to bind into a rootfs."""
        return "F" in self.flags

    @property
    def ours(self) -> bool:
        return self.name.startswith(PREFIX)


def qemu_name(platform: Platform) -> str | None:
    """QEMU's name for the architecture of `platform` (arm64 -> aarch64), None when unknown."""
    return QEMU_NAMES.get(platform.normalize().architecture)


def status() -> list[Handler]:
    """Every QEMU entry of binfmt_misc, sorted by name; [] when binfmt_misc is not mounted."""
    try:
        names = sorted(p.name for p in BINFMT_DIR.iterdir())
    except OSError:
        return []
    handlers = []
    for name in names:
        match = _HANDLER.match(name)
        if match:
            handler = _read(name, match.group(1))
            if handler is not None:
                handlers.append(handler)
    return handlers


def _read(name: str, qemu: str) -> Handler | None:
    try:
        lines = (BINFMT_DIR / name).read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.partition(" ")[::2] for line in lines[1:])
    flags = fields.get("flags:", "").strip()
    return Handler(name, qemu, fields.get("interpreter", "").strip(), flags,
                   bool(lines) and lines[0].strip() == "enabled")


def handlers_for(platform: Platform) -> list[Handler]:
    """The enabled handlers that run `platform`'s binaries. When several match, the kernel uses
    the one registered last, which /proc does not tell, so callers must satisfy them all."""
    name = qemu_name(platform)
    return [h for h in status() if h.qemu == name and h.enabled]


def handler_for(platform: Platform) -> Handler | None:
    """An enabled handler for `platform`, one without the F flag first (it is the demanding one)."""
    handlers = sorted(handlers_for(platform), key=lambda h: h.fixed)
    return handlers[0] if handlers else None


def install(arches: list[str]) -> list[str]:
    """Register QEMU for each OCI architecture in `arches` ("arm64", "ppc64le"); needs root.

    Idempotent: an architecture some enabled handler already runs is skipped. Returns the names
    of the entries it registered. Raises SandboxError naming the architecture when its QEMU or
    its /usr/lib/binfmt.d file is missing, or the kernel refuses the entry.
    """
    _mount()
    added = []
    for arch in arches:
        platform = Platform.parse(arch)
        if handler_for(platform) is not None:
            continue
        qemu = qemu_name(platform)
        line = _entry(platform, qemu)
        try:
            (BINFMT_DIR / "register").write_text(line)
        except OSError as e:
            raise SandboxError(f"register QEMU for {arch} with binfmt_misc: {e.strerror}") from e
        added.append(PREFIX + "qemu-" + qemu)
    return added


def uninstall() -> list[str]:
    """Remove every entry `install` registered (named ``ocibuild-qemu-*``); returns their names."""
    removed = []
    for handler in status():
        if handler.ours:
            try:
                (BINFMT_DIR / handler.name).write_text("-1")
            except OSError as e:
                raise SandboxError(f"unregister binfmt_misc entry {handler.name}: {e.strerror}") from e
            removed.append(handler.name)
    return removed


def _entry(platform: Platform, qemu: str | None) -> str:
    """The register line: Debian's magic, mask and static QEMU (its -binfmt-P link, so QEMU knows
    argv[0] is preserved), under our name, with the F flag added."""
    conf = CONF_DIR / f"qemu-{qemu}.conf"
    try:
        text = conf.read_text()
    except OSError:
        raise SandboxError(f"register QEMU for {platform}: {conf} is missing "
                           "(apt-get install qemu-user-static)") from None
    line = next((s for s in text.splitlines() if s.startswith(":")), "")
    fields = line.split(":")
    if len(fields) != 8:
        raise SandboxError(f"register QEMU for {platform}: cannot parse {conf}")
    _, _, kind, offset, magic, mask, interpreter, flags = fields
    if not os.path.exists(interpreter):
        raise SandboxError(f"register QEMU for {platform}: {interpreter} is missing "
                           "(apt-get install qemu-user-static)")
    flags = "".join(sorted(set(flags.strip()) | {"F"}))
    return f":{PREFIX}qemu-{qemu}:{kind}:{offset}:{magic}:{mask}:{interpreter}:{flags}"


def _mount() -> None:
    if (BINFMT_DIR / "register").exists():
        return
    proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SandboxError(f"mount binfmt_misc on {BINFMT_DIR}: {proc.stderr.strip()}")
