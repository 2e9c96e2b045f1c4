"""The one exception tree of ocibuild.

    OcibuildError                   everything ocibuild raises on purpose
    ├── InvalidInput                a user-supplied value is malformed (also a ValueError)
    │   ├── InvalidPlatform         "linux/arm/v9x", "windows" ...
    │   ├── InvalidReference        "Foo//bar:tag"
    │   └── InvalidOption           --output, --build-context, --build-arg syntax
    ├── DockerfileError             the Dockerfile cannot be parsed or means nothing
    ├── BuildError                  a step could not be carried out
    │   ├── Cancelled               not started: another stage or platform of the build failed
    │   ├── ContextError            a COPY/ADD source is missing or escapes the context
    │   ├── NotSupported            an instruction or flag this version does not implement
    │   └── SandboxError            a RUN step cannot run here: no isolation or emulation, setup failed
    │       └── RunFailed           the command ran and exited non-zero (exit_code, stderr_tail)
    ├── ContentError                bytes are not what they claim to be
    │   ├── DigestMismatch          content hashed to another digest / size than its descriptor
    │   ├── InvalidDocument         a manifest, index, config or layout is malformed
    │   └── UnsafeLayer             a tar layer tries to escape, or has malformed whiteouts
    ├── StoreError                  the local blob store, a layout or archive cannot be used
    │   └── NotFound                a blob, tag or image is not there
    ├── RegistryError               a registry could not be used (``.status``: its HTTP answer, if any)
    │   ├── AuthError               no credentials, credentials refused, no token granted
    │   ├── RegistryUnavailable     unreachable, TLS refused, or 5xx/429 after the bounded retries
    │   └── RegistryNotFound        the registry has no such repository, tag, manifest or blob
    │                               (also a NotFound, so ``except NotFound`` sees it)
    └── CacheError                  a build cache cannot be imported, fetched or exported (the cause,
                                    any of the above, is its ``__cause__``); the builder warns and
                                    goes on without it unless the user asked otherwise

Registry errors never carry credentials, tokens or Authorization headers in their text.

Errors carry an optional Dockerfile location. It is attached once, at the boundary
where a step is dispatched (``err.at(location, "COPY")``), never deep inside helpers,
and ``str(err)`` then reads ``Dockerfile:7: COPY: no such file in the build context: "app.bin"``.
Foreign exceptions (OSError, tarfile.TarError, json.JSONDecodeError) are translated at the
edge of the module that meets them. Only ``ocibuild.cli`` turns errors into exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where in which Dockerfile something was written (1-based lines)."""

    file: str
    line: int
    end_line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class OcibuildError(Exception):
    """Base of every error ocibuild raises on purpose."""

    def __init__(self, message: str, *, location: Location | None = None, instruction: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.instruction = instruction

    def at(self, location: Location | None, instruction: str | None = None) -> "OcibuildError":
        """Attach a Dockerfile location unless one is already set; returns self for `raise e.at(...)`."""
        if self.location is None:
            self.location = location
            if instruction and self.instruction is None:
                self.instruction = instruction
        return self

    def __str__(self) -> str:
        prefix = ""
        if self.location is not None:
            prefix += f"{self.location}: "
        if self.instruction:
            prefix += f"{self.instruction}: "
        return prefix + self.message


class InvalidInput(OcibuildError, ValueError):
    pass


class InvalidPlatform(InvalidInput):
    pass


class InvalidReference(InvalidInput):
    pass


class InvalidOption(InvalidInput):
    pass


class DockerfileError(OcibuildError):
    pass


class BuildError(OcibuildError):
    pass


class Cancelled(BuildError):
    """A stage or step not started because another part of the build failed."""


class ContextError(BuildError):
    pass


class NotSupported(BuildError):
    pass


class SandboxError(BuildError):
    pass


class RunFailed(SandboxError):
    """A RUN command exited non-zero; the message reads as BuildKit's, the stderr tail rides along."""

    def __init__(self, message: str, *, exit_code: int, stderr_tail: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class ContentError(OcibuildError):
    pass


class DigestMismatch(ContentError):
    pass


class InvalidDocument(ContentError):
    pass


class UnsafeLayer(ContentError):
    pass


class StoreError(OcibuildError):
    pass


class NotFound(StoreError):
    pass


class RegistryError(OcibuildError):
    """A registry could not be used; ``status`` is the HTTP status it answered, when it answered."""

    def __init__(self, message: str, *, status: int | None = None, **kw):
        super().__init__(message, **kw)
        self.status = status


class AuthError(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    pass


class RegistryNotFound(RegistryError, NotFound):
    pass


class CacheError(OcibuildError):
    """A --cache-from or --cache-to location could not be used; the message names it."""
