"""`RUN --mount=...` turned into sandbox mounts: bind, cache, tmpfs and secret, as BuildKit reads them.

- bind: `source` (default /) of the build context or of `from=` (a stage, a named context or an
  image), read-only unless `rw`, and then writes go to a throw-away copy;
- cache: a directory kept under the cache dir across builds, by `id` (default: the target),
  created with `uid`/`gid`/`mode`; `sharing=shared|private|locked`;
- tmpfs: an empty tmpfs (`size=`);
- secret: the `--secret` value written to a private 0400 file for the one step, at
  `/run/secrets/<id>` or `target`; never part of a layer, a history entry, a cache key or a log.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass

from ocibuild.dockerfile import mount_fields
from ocibuild.errors import BuildError, InvalidOption, NotSupported
from ocibuild.sandbox import Mount, resolve_in_root


@dataclass(frozen=True)
class SecretSpec:
    """One `--secret id=NAME[,src=FILE|,env=VAR]`; with neither, the environment variable NAME."""

    id: str
    src: str = ""
    env: str = ""

    @classmethod
    def parse(cls, text: str) -> "SecretSpec":
        fields = dict(item.partition("=")[::2] for item in text.split(","))
        fields.pop("type", None)
        if not fields.get("id"):
            raise InvalidOption(f"invalid --secret {text!r}: id= is required")
        unknown = set(fields) - {"id", "src", "source", "env"}
        if unknown:
            raise InvalidOption(f"invalid --secret {text!r}: unknown field {sorted(unknown)[0]!r}")
        return cls(fields["id"], fields.get("src") or fields.get("source", ""), fields.get("env", ""))

    def value(self) -> bytes | None:
        if self.src:
            try:
                with open(self.src, "rb") as f:
                    return f.read()
            except OSError as e:
                raise InvalidOption(f"--secret id={self.id}: cannot read {self.src}: {e.strerror}") from None
        value = os.environ.get(self.env or self.id)
        return None if value is None else value.encode()


class MountPlanner:
    """Makes the sandbox mounts of one RUN; everything temporary lives until the ExitStack closes."""

    def __init__(self, *, scratch: str, cache_root: str, secrets: dict[str, SecretSpec], sources):
        self.scratch, self.cache_root, self.secrets = scratch, cache_root, secrets
        self.sources = sources  # name or None -> host directory holding that filesystem

    def plan(self, specs: tuple[str, ...], workdir: str, stack: ExitStack) -> list[Mount]:
        mounts = []
        for spec in specs:
            fields = dict(mount_fields(spec))
            kind = fields.pop("type", None) or "bind"
            maker = {"bind": self._bind, "cache": self._cache, "tmpfs": self._tmpfs,
                     "secret": self._secret}.get(kind)
            if maker is None:
                raise NotSupported(f"RUN --mount=type={kind} is not supported")
            mount = maker(fields, workdir, stack)
            if mount is not None:
                mounts.append(mount)
        return mounts

    def _bind(self, f: dict, workdir: str, stack: ExitStack) -> Mount:
        root = self.sources(f.get("from"))
        source = resolve_in_root(root, f.get("source") or f.get("src") or "/")
        if not os.path.exists(source):
            raise BuildError(f"RUN --mount source {f.get('source', '/')!r} does not exist")
        writable = _flag(f, "rw") or _flag(f, "readwrite")
        if writable:  # writes must not reach the context or the stage: give the step a copy
            copy = tempfile.mkdtemp(prefix="bind-", dir=self.scratch)
            stack.callback(shutil.rmtree, copy, True)
            target = os.path.join(copy, "src")
            if os.path.isdir(source):
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copy2(source, target)
            source = target
        return Mount("bind", _target(f, workdir), source, readonly=not writable)

    def _cache(self, f: dict, workdir: str, stack: ExitStack) -> Mount:
        target = _target(f, workdir)
        cache_id = f.get("id") or target
        path = os.path.join(self.cache_root, hashlib.sha256(cache_id.encode()).hexdigest()[:32])
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, int(f.get("mode") or "755", 8))
            if os.geteuid() == 0:
                os.chown(path, int(f.get("uid") or 0), int(f.get("gid") or 0))
        sharing = f.get("sharing") or "shared"
        if sharing not in ("shared", "private", "locked"):
            raise InvalidOption(f"RUN --mount=type=cache: invalid sharing {sharing!r}")
        if sharing != "shared":
            lock = stack.enter_context(open(path + ".lock", "w"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if sharing == "private" else 0))
            except BlockingIOError:  # private and busy: this step gets a cache of its own
                path = tempfile.mkdtemp(prefix="cache-", dir=self.scratch)
        return Mount("bind", target, path)

    def _tmpfs(self, f: dict, workdir: str, stack: ExitStack) -> Mount:
        options = (f"size={f['size']}",) if f.get("size") else ()
        return Mount("tmpfs", _target(f, workdir), options=options)

    def _secret(self, f: dict, workdir: str, stack: ExitStack) -> Mount | None:
        secret_id = f.get("id") or (posixpath.basename(f["target"]) if f.get("target") else "")
        spec = self.secrets.get(secret_id)
        value = spec.value() if spec is not None else None
        if value is None:
            if _flag(f, "required"):
                raise BuildError(f"secret {secret_id!r} is required but was not given with --secret")
            return None
        holder = tempfile.mkdtemp(prefix="secret-", dir=self.scratch)
        stack.callback(shutil.rmtree, holder, True)
        path = os.path.join(holder, "value")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as out:
            out.write(value)
        os.chmod(path, int(f.get("mode") or "400", 8))
        if os.geteuid() == 0:
            os.chown(path, int(f.get("uid") or 0), int(f.get("gid") or 0))
        target = f.get("target") or f.get("dst") or f"/run/secrets/{secret_id}"
        return Mount("bind", posixpath.join(workdir, target), path, readonly=True)


def _target(f: dict, workdir: str) -> str:
    target = f.get("target") or f.get("dst") or f.get("destination")
    if not target:
        raise InvalidOption("RUN --mount: target= is required")
    return posixpath.normpath(posixpath.join(workdir, target))


def _flag(f: dict, name: str) -> bool:
    if name not in f:
        return False
    value = f[name]
    return value is None or value.lower() in ("true", "1", "")
