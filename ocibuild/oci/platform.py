"""Platforms ("linux/arm/v7"): parsing, normalisation and matching, as containerd's `platforms` does.

Normal forms follow BuildKit: `arm` means `arm/v7`, `arm64/v8` means `arm64` (no variant),
`x86_64` means `amd64`, `aarch64` means `arm64`, `i386` means `386`. A bare architecture
(`arm64`, as in `docker pull --platform arm64`) means that architecture on Linux.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from os import uname  # platform.machine() is uname().machine; the `platform` module is slow to import

from ocibuild.errors import InvalidPlatform

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_KNOWN_OS = {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos",
             "aix", "android", "ios", "plan9", "dragonfly", "js", "wasip1"}
# Known architectures; an unknown OS or architecture is an error because a typo would otherwise
# silently produce an image nobody can run.
_KNOWN_ARCH = {"386", "amd64", "arm", "arm64", "ppc64le", "ppc64", "s390x", "riscv64", "mips",
               "mipsle", "mips64", "mips64le", "loong64", "wasm", "sparc64"}
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386",
                 "i486": "386", "i586": "386", "i686": "386", "x86": "386", "armhf": "arm",
                 "armel": "arm", "armv7l": "arm", "armv6l": "arm", "ppc64el": "ppc64le"}
_ALIAS_VARIANT = {"armhf": "v7", "armel": "v6", "armv7l": "v7", "armv6l": "v6"}
_OS_ALIASES = {"macos": "darwin"}


@dataclass(frozen=True, order=True)
class Platform:
    """A normalised ``os/arch[/variant]`` (`parse`, `normalized`); `str()` gives it back."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """Parse and normalise ``os/arch[/variant]`` or a bare ``arch``."""
        parts = text.strip().split("/")
        if not all(_COMPONENT.match(p) for p in parts) or len(parts) > 3:
            raise InvalidPlatform(f"invalid platform {text!r}: expected os/arch[/variant]")
        lowered = [p.lower() for p in parts]
        if len(parts) == 1:
            if lowered[0] in _KNOWN_OS or lowered[0] in _OS_ALIASES:
                raise InvalidPlatform(f"invalid platform {text!r}: missing architecture")
            return cls.normalized("linux", lowered[0], "", text=text)
        return cls.normalized(*lowered, text=text)

    @classmethod
    def normalized(cls, os: str, arch: str, variant: str = "", *, text: str | None = None) -> "Platform":
        shown = text or "/".join(filter(None, (os, arch, variant)))
        os = _OS_ALIASES.get(os.lower(), os.lower())
        if os not in _KNOWN_OS:
            raise InvalidPlatform(f"invalid platform {shown!r}: unknown operating system {os!r}")
        raw_arch = arch.lower()
        arch = _ARCH_ALIASES.get(raw_arch, raw_arch)
        if arch not in _KNOWN_ARCH:
            raise InvalidPlatform(f"invalid platform {shown!r}: unknown architecture {raw_arch!r}")
        variant = _normal_variant(arch, variant.lower() or _ALIAS_VARIANT.get(raw_arch, ""), shown)
        return cls(os, arch, variant)

    @classmethod
    def from_dict(cls, d: dict) -> "Platform":
        return cls(
            os=d.get("os", ""),
            architecture=d.get("architecture", ""),
            variant=d.get("variant", "") or "",
            os_version=d.get("os.version", "") or "",
            os_features=tuple(d.get("os.features") or ()),
        )

    def to_dict(self) -> dict:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        return d

    def __str__(self) -> str:
        return "/".join(filter(None, (self.os, self.architecture, self.variant)))

    def normalize(self) -> "Platform":
        """This platform in normal form (documents from registries are not always normal)."""
        try:
            base = Platform.normalized(self.os, self.architecture, self.variant)
        except InvalidPlatform:
            return self
        return Platform(base.os, base.architecture, base.variant, self.os_version, self.os_features)

    def matches(self, other: "Platform") -> bool:
        """True when both name the same platform once normalised (`arm64` == `arm64/v8`)."""
        a, b = self.normalize(), other.normalize()
        return (a.os, a.architecture, a.variant) == (b.os, b.architecture, b.variant)

    def compatible(self) -> list["Platform"]:
        """Platforms whose images run here, best first: arm/v7 also runs v6 and v5, amd64/v3 runs v2 and v1."""
        p = self.normalize()
        if p.architecture == "arm" and p.variant[1:].isdigit():
            return [Platform(p.os, "arm", f"v{n}") for n in range(int(p.variant[1:]), 4, -1)]
        if p.architecture == "amd64" and p.variant[1:].isdigit():
            return [Platform(p.os, "amd64", f"v{n}" if n > 1 else "") for n in range(int(p.variant[1:]), 0, -1)]
        return [p]

    def build_args(self, prefix: str) -> dict[str, str]:
        """BuildKit's automatic args, e.g. prefix TARGET: TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT."""
        return {
            f"{prefix}PLATFORM": str(self),
            f"{prefix}OS": self.os,
            f"{prefix}ARCH": self.architecture,
            f"{prefix}VARIANT": self.variant,
        }


def _normal_variant(arch: str, variant: str, shown: str) -> str:
    if variant and not variant.startswith("v") and variant.isdigit():
        variant = "v" + variant
    if arch == "arm":
        variant = variant or "v7"
        if variant not in ("v5", "v6", "v7", "v8"):
            raise InvalidPlatform(f"invalid platform {shown!r}: unknown arm variant {variant!r}")
    elif arch == "arm64":
        variant = "" if variant in ("v8", "v8.0") else variant
    elif arch == "amd64":
        variant = "" if variant == "v1" else variant
        if variant not in ("", "v2", "v3", "v4"):
            raise InvalidPlatform(f"invalid platform {shown!r}: unknown amd64 variant {variant!r}")
    return variant


def host_platform() -> Platform:
    """The platform of this machine (Linux only: ocibuild builds Linux images)."""
    return Platform.normalized("linux", uname().machine or "amd64")


def parse_platforms(text: str) -> list[Platform]:
    """Parse a comma-separated `--platform` value, keeping order and dropping duplicates."""
    seen: list[Platform] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        p = Platform.parse(part)
        if p not in seen:
            seen.append(p)
    if not seen:
        raise InvalidPlatform(f"invalid platform list {text!r}")
    return seen
