"""Variable scopes with BuildKit's ARG/ENV rules.

Two scopes exist, as in BuildKit's dockerfile2llb:

``GlobalScope(dockerfile, build_args, platform_args)``
    Built from the ``--build-arg`` values, the automatic platform args (``TARGETPLATFORM``,
    ``TARGETOS``, ``TARGETARCH``, ``TARGETVARIANT``, ``BUILDPLATFORM``, ``BUILDOS``,
    ``BUILDARCH``, ``BUILDVARIANT``; a plain dict from the caller) and the ARGs written
    before the first FROM, applied in order (a build arg replaces a default; a default is
    expanded against what came before it). FROM images and ``--platform`` values expand
    here, and the automatic platform args are visible without being declared.

``StageScope(global_scope, base_env, parent)`` (usually ``global_scope.stage(...)``)
    One per stage being built. It starts from the base image's config ``Env`` (or from the
    parent stage's scope for ``FROM <stage>``). Inside a stage an ARG makes a variable
    visible: ``ARG X`` takes the build arg ``X`` when given, else its default (expanded
    against the stage so far), else, when it has no default, the global value of ``X``
    (which includes the automatic platform args: ``ARG TARGETARCH`` makes it visible).

Precedence between ARG and ENV follows what BuildKit does rather than a simplified reading
of the documentation: the environment used for expansion and for RUN is one ordered
mapping, and each ENV or valued ARG replaces the entry of the same name when it runs.
So ``ARG V`` followed by ``ENV V=...`` is won by the ENV, while an ARG *declared after* an
ENV (or after the base image's ENV) of the same name with a value wins for later
instructions and RUN. The image configuration's ``Env`` only ever receives ENV values.

Build args that no ARG consumed are reported by :meth:`GlobalScope.unused_build_args`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ocibuild.dockerfile.instructions import ArgInstr, ArgPair, EnvInstr, Instruction
from ocibuild.dockerfile.shell import Lexer
from ocibuild.errors import DockerfileError

__all__ = ["GlobalScope", "PLATFORM_ARGS", "PREDEFINED_ARGS", "StageScope", "platform_args"]

PLATFORM_ARGS = (
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
)

# Build args Docker accepts without an ARG (proxies) or reads itself; never "unused".
PREDEFINED_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "SOURCE_DATE_EPOCH",
})


def platform_args(target: str, build: str | None = None) -> dict[str, str]:
    """The automatic platform args for ``target`` (and ``build``, default: same) platforms,
    each written ``os/arch[/variant]`` (``linux/arm/v7``)."""
    out: dict[str, str] = {}
    for prefix, platform in (("TARGET", target), ("BUILD", build or target)):
        os_, _, rest = platform.partition("/")
        arch, _, variant = rest.partition("/")
        out.update({f"{prefix}PLATFORM": platform, f"{prefix}OS": os_, f"{prefix}ARCH": arch,
                    f"{prefix}VARIANT": variant})
    return out


class _Scope:
    """Expansion helpers shared by both scopes."""

    def __init__(self, escape: str):
        self.escape = escape
        self._lexer = Lexer(escape)
        self._raw_lexer = Lexer("\\", skip_quotes=True)
        self._env: dict[str, str] = {}

    @property
    def env(self) -> Mapping[str, str]:
        """The variables an expansion sees now (read-only view)."""
        return MappingProxyType(self._env)

    def expand(self, word: str) -> str:
        """Expand one word (quotes removed, spaces kept); DockerfileError without location."""
        return self._lexer.process(word, self._env).value

    def expand_words(self, word: str) -> list[str]:
        """Expand ``word`` and split the result into words (EXPOSE does this)."""
        return self._lexer.process(word, self._env).words

    def expand_heredoc(self, content: str) -> str:
        """Expand a heredoc body: variables and ``\\`` escapes, quotes left alone."""
        return self._raw_lexer.process(content, self._env).value

    def referenced(self, word: str) -> set[str]:
        """Names the word refers to, set or not (for cache keys)."""
        result = self._lexer.process(word, self._env)
        return result.matched | result.unmatched


class GlobalScope(_Scope):
    """The scope before the first FROM; see the module docstring."""

    def __init__(self, dockerfile=None, build_args: Mapping[str, str] | None = None,
                 platform_args: Mapping[str, str] | None = None, *, escape: str | None = None):
        """``dockerfile`` (a parsed Dockerfile, optional) supplies the escape character and the
        global ARGs, which are applied at once."""
        super().__init__(escape or getattr(dockerfile, "escape", "\\"))
        self.build_args = dict(build_args or {})
        self._env.update(platform_args or {})
        # Values a stage's value-less ARG can inherit: platform args + global ARGs.
        self.meta: dict[str, str | None] = dict(platform_args or {})
        self._consumed: set[str] = set()
        for instr in getattr(dockerfile, "global_args", ()):
            self.apply(instr)

    @classmethod
    def for_args(cls, global_args: Iterable[ArgInstr], build_args: Mapping[str, str] | None = None,
                 platform_args: Mapping[str, str] | None = None, *, escape: str = "\\") -> GlobalScope:
        """A scope with the given global ARG instructions applied in order."""
        scope = cls(None, build_args, platform_args, escape=escape)
        for instr in global_args:
            scope.apply(instr)
        return scope

    def resolve_args(self, instr: ArgInstr) -> ArgInstr:
        """The ARG with each pair's value as ``default``; pure, pairs see the previous ones."""
        env = dict(self._env)
        resolved = []
        for pair in instr.args:
            if pair.name in self.build_args:
                value: str | None = self.build_args[pair.name]
            elif pair.default is not None:
                value = _expand_default(self._lexer, instr, pair.default, env)
            else:
                value = self.meta.get(pair.name)  # redeclaring keeps a platform value
            if value is not None:
                env[pair.name] = value
            resolved.append(ArgPair(pair.name, value))
        return _resolved(instr, resolved)

    def apply(self, instr: ArgInstr) -> ArgInstr:
        """Declare a global ARG (resolving it first if needed); returns the resolved ARG."""
        if not instr.resolved:
            instr = self.resolve_args(instr)
        for pair in instr.args:
            self._consumed.add(pair.name)
            self.meta[pair.name] = pair.default
            if pair.default is not None:
                self._env[pair.name] = pair.default
        return instr

    def stage(self, base_env: Iterable[str] = (), parent: StageScope | None = None) -> StageScope:
        """A fresh scope for a stage: from ``parent`` (``FROM <stage>``) or the image's Env."""
        return StageScope(self, base_env, parent)

    def consume(self, name: str) -> None:
        self._consumed.add(name)

    def unused_build_args(self) -> list[str]:
        """Build args no ARG asked for (BuildKit warns "build-args [...] were not consumed")."""
        return sorted(set(self.build_args) - self._consumed - PREDEFINED_ARGS)


class StageScope(_Scope):
    """Variables inside one stage; see the module docstring for the rules."""

    def __init__(self, global_scope: GlobalScope, base_env: Iterable[str] = (),
                 parent: StageScope | None = None):
        super().__init__(global_scope.escape)
        self.global_scope = global_scope
        self._config_env: dict[str, str] = {}
        self._args: dict[str, str | None] = {}
        if parent is not None:
            self._env.update(parent._env)
            self._config_env.update(parent._config_env)
            self._args.update(parent._args)
        for entry in base_env:
            key, _, value = entry.partition("=")
            self._env[key] = value
            self._config_env[key] = value

    def resolve_args(self, instr: ArgInstr) -> ArgInstr:
        """The ARG with each pair's value as ``default`` (None: declared without a value).

        Pure: nothing is applied. Pairs are resolved in order, each seeing the previous ones.
        """
        env = dict(self._env)
        resolved = []
        build_args = self.global_scope.build_args
        for pair in instr.args:
            if pair.name in build_args:
                value: str | None = build_args[pair.name]
            elif pair.default is not None:
                value = _expand_default(self._lexer, instr, pair.default, env)
            else:
                value = self.global_scope.meta.get(pair.name)
            if value is not None:
                env[pair.name] = value
            resolved.append(ArgPair(pair.name, value))
        return _resolved(instr, resolved)

    def apply(self, instr: Instruction) -> None:
        """Record an *expanded* ENV or a *resolved* ARG; other instructions change nothing."""
        if isinstance(instr, EnvInstr):
            for pair in instr.pairs:
                self._env[pair.key] = pair.value
                self._config_env[pair.key] = pair.value
        elif isinstance(instr, ArgInstr):
            if not instr.resolved:
                instr = self.resolve_args(instr)
            for pair in instr.args:
                self.global_scope.consume(pair.name)
                self._args[pair.name] = pair.default
                if pair.default is not None:
                    self._env[pair.name] = pair.default

    def config_env(self) -> list[str]:
        """The image config ``Env`` as ``K=V`` (base image Env updated by ENV, in order)."""
        return [f"{k}={v}" for k, v in self._config_env.items()]

    def run_env(self) -> list[str]:
        """The environment of a RUN as ``K=V``: config Env plus ARG values, as BuildKit sets it."""
        return [f"{k}={v}" for k, v in self._env.items()]

    def run_args(self) -> list[str]:
        """The ``K=V`` of the ARGs with a value declared so far (BuildKit's ``|N K=V`` history
        prefix and part of RUN's cache key), in declaration order."""
        return [f"{k}={v}" for k, v in self._args.items() if v is not None]


def _expand_default(lexer: Lexer, instr: ArgInstr, default: str, env: Mapping[str, str]) -> str:
    try:
        return lexer.process(default, env).value
    except DockerfileError as err:
        raise err.at(instr.location, "ARG") from None


def _resolved(instr: ArgInstr, pairs: list[ArgPair]) -> ArgInstr:
    return ArgInstr(location=instr.location, original=instr.original, args=tuple(pairs), resolved=True)
