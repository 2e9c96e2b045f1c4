"""Apply layer tars to a rootfs directory, with OCI semantics and strict containment.

Containment: every member name, symlink met on the way and hardlink target is resolved as if
the rootfs were "/" (see `scope`): ``/etc/x``, ``../../x``, a symlink to ``/tmp/victim`` all
land inside the rootfs. Nothing outside it is ever created, written, chmod'ed, chowned or
removed. The final component is never followed: a member replaces whatever is at its place.

OCI semantics (image-spec layer.md, as Docker and containerd apply it):

- ``.wh.<name>`` removes <name> of lower layers; ``.wh..wh..opq`` hides every lower-layer entry
  of its directory wherever it appears in the tar, and both keep the entries this layer adds.
  ``.wh.``, ``.wh..``, ``.wh...``, a ``.wh.`` name used as a directory, and two members for the
  same path raise UnsafeLayer. Other ``.wh..wh.*`` names (aufs metadata) are skipped, as Docker does.
- A member replaces what is there (a file over a directory removes the directory and its
  content); a directory over a directory keeps the content and takes the new metadata.
- Missing parents are created 0755 root:root. Directory modes and times are set after the whole
  layer is applied, so adding content does not disturb them.

Ownership: as root, ids are applied with lchown. Rootless (not root, or `rootless=True`), the
files stay ours, and `owners[path]` records an `Owner` with what the tar asked for; on disk,
directories get u+rwx and files u+rw added so the next layer can still be applied and the tree
read, and device nodes are not created at all (as umoci's rootless mode does). The record of a
removed path is dropped. Paths are resolved layer paths ("usr/bin/x").

The rootfs must not be changed by anyone else while a layer is applied.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, ContextManager, Iterable

from ocibuild.errors import BuildError, ContentError, UnsafeLayer
from ocibuild.layer.decompress import open_layer
from ocibuild.layer.entry import Kind
from ocibuild.layer.scope import Scope, ScopeError, lstat_at, remove_at

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_COPY = 1 << 20
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Best effort, as Docker when rootless: the filesystem may lack xattrs, or trusted.*/security.*
# may be refused to an unprivileged user.
_IGNORED_XATTR_ERRORS = {errno.EOPNOTSUPP, errno.EPERM, errno.EACCES}


@dataclass(frozen=True, slots=True)
class Owner:
    """What a layer asked for at a path that a rootless extraction could not apply on disk."""

    uid: int
    gid: int
    mode: int                # the permission bits asked for (the disk may hold more)
    kind: Kind | None = None  # CHAR or BLOCK for a device node that was not created
    devmajor: int = 0
    devminor: int = 0


def extract_layers(rootfs: str, layers: Iterable[tuple[Callable[[], ContextManager[BinaryIO]], str]],
                   owners: dict[str, Owner] | None = None, *, rootless: bool | None = None) -> None:
    """Apply layers bottom-up: each ``(open_blob, digest)`` opens the blob (compressed or not,
    detected from its magic bytes) as a context manager; `digest` names the layer in errors."""
    for open_blob, digest in layers:
        with open_blob() as blob, open_layer(blob) as tar:
            apply_layer(rootfs, tar, layer=digest, owners=owners, rootless=rootless)


def apply_layer(rootfs: str, stream: BinaryIO, *, layer: str, owners: dict[str, Owner] | None = None,
                rootless: bool | None = None) -> None:
    """Apply one uncompressed layer tar read from `stream` to the directory `rootfs`.

    Raises UnsafeLayer (malformed whiteouts, duplicates, symlink loops), ContentError (not a
    tar, a hardlink to nothing, a member under a non-directory) or BuildError (the filesystem
    refused), each naming `layer` and the member. The rootfs is then partly applied.
    """
    rootless = os.geteuid() != 0 if rootless is None else rootless
    applier = None
    try:
        applier = _Applier(rootfs, layer, owners, rootless)
        with applier.scope, tarfile.open(fileobj=stream, mode="r|", bufsize=_COPY) as tar:
            for member in tar:
                applier.apply(member, tar)
            applier.finish()
    except tarfile.TarError as e:
        raise ContentError(f"layer {layer}: not a valid tar: {e}") from None
    except OSError as e:
        where = f"{applier.current!r}: " if applier and applier.current else ""
        raise BuildError(f"apply layer {layer}: {where}{e.strerror or e}") from None


def member_parts(name: str) -> list[str]:
    """The components of a member name as a layer path: leading "/" and "./" dropped, ".."
    resolved lexically and clamped at the root (so it never names anything above it)."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return parts


class _Applier:
    """The state of applying one layer: names seen, directories to finish, the owners map."""

    def __init__(self, rootfs: str, layer: str, owners: dict[str, Owner] | None, rootless: bool):
        self.layer, self.owners, self.rootless = layer, owners, rootless
        self.scope = Scope(rootfs, made=self._made)
        self.names: set[str] = set()      # member names of this layer (duplicates are refused)
        self.added: set[str] = set()      # resolved paths this layer put in place
        self.under: set[str] = set()      # their ancestors: directories holding this layer's entries
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self.current = ""

    def unsafe(self, why: str) -> UnsafeLayer:
        return UnsafeLayer(f"layer {self.layer}: {self.current!r}: {why}")

    def bad(self, why: str) -> ContentError:
        return ContentError(f"layer {self.layer}: {self.current!r}: {why}")

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.current = member.name
        parts = member_parts(member.name)
        if not parts:
            return  # the root itself: the rootfs directory is the caller's
        key = "/".join(parts)
        if key in self.names:
            raise self.unsafe("the layer has two entries for this path")
        self.names.add(key)
        if any(p.startswith(WHITEOUT) for p in parts[:-1]):
            raise self.unsafe("a whiteout name used as a directory")
        if parts[-1].startswith(WHITEOUT):
            return self._whiteout(parts)
        kind = _kind(member)
        if kind is None:
            raise self.bad(f"unsupported tar member type {member.type!r}")
        target = self._hardlink_target(member) if kind is Kind.HARDLINK else None
        pfd = -1
        try:
            pfd, resolved = self._parent(parts[:-1], create=True)
            path = "/".join(resolved + parts[-1:])
            if target is not None and target[1] == path:
                raise self.bad("hardlink to itself")
            self._clear(pfd, parts[-1], path, keep_dir=kind is Kind.DIR)
            self._mark(path)
            self._create(pfd, parts[-1], path, kind, member, tar, target)
        finally:
            for fd in (pfd, target[0] if target else -1):
                if fd >= 0:
                    os.close(fd)

    def finish(self) -> None:
        """Set directory metadata last, children first, so nothing disturbs it afterwards."""
        for resolved, member in reversed(self.dirs):
            self.current = member.name
            try:
                fd, _ = self.scope.lookup(resolved)
            except (FileNotFoundError, ScopeError):
                continue  # removed or replaced later in the layer
            try:
                self._metadata(fd, "/".join(resolved), member, Kind.DIR)
            finally:
                os.close(fd)

    # ---------------------------------------------------------------- lookups and removal

    def _parent(self, parts: list[str], *, create: bool) -> tuple[int, list[str]]:
        try:
            return self.scope.lookup(parts, create=create)
        except ScopeError as e:
            if e.reason == "not a directory":
                raise self.bad(f"{e.path!r} is not a directory") from None
            raise self.unsafe(str(e)) from None

    def _made(self, fd: int, path: str) -> None:
        """A missing parent was created: 0755 root:root, as Docker creates them."""
        os.fchmod(fd, 0o755)
        self._record(path, Owner(0, 0, 0o755))

    def _clear(self, pfd: int, name: str, path: str, *, keep_dir: bool) -> None:
        """Make room for a new entry at `name`; an existing directory stays when one is wanted."""
        info = lstat_at(pfd, name)
        if info is None or (keep_dir and stat.S_ISDIR(info.st_mode)):
            return
        self._remove(pfd, name, path, info)

    def _remove(self, pfd: int, name: str, path: str, info: os.stat_result) -> None:
        remove_at(pfd, name, info)
        self.scope.forget()
        if self.owners is not None:
            self.owners.pop(path, None)
            if stat.S_ISDIR(info.st_mode):
                prefix = path + "/"
                for gone in [p for p in self.owners if p.startswith(prefix)]:
                    del self.owners[gone]

    def _mark(self, path: str) -> None:
        self.added.add(path)
        parent = path.rpartition("/")[0]
        while parent and parent not in self.under:
            self.under.add(parent)
            parent = parent.rpartition("/")[0]

    def _record(self, path: str, owner: Owner) -> None:
        if self.rootless and self.owners is not None:
            self.owners[path] = owner

    # ---------------------------------------------------------------- whiteouts

    def _whiteout(self, parts: list[str]) -> None:
        base = parts[-1]
        if base == OPAQUE:
            pfd, resolved = self._parent(parts[:-1], create=True)
            try:
                self._prune(pfd, "/".join(resolved))
            finally:
                os.close(pfd)
            return
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", ".."):
            raise self.unsafe("malformed whiteout")
        if hidden.startswith(WHITEOUT):
            return  # aufs metadata (.wh..wh.plnk and the like): Docker skips it too
        try:
            pfd, resolved = self.scope.lookup(parts[:-1])
        except FileNotFoundError:
            return  # nothing there to hide
        except ScopeError as e:
            if e.reason == "not a directory":
                return  # nothing there to hide
            raise self.unsafe(str(e)) from None
        try:
            self._hide(pfd, hidden, "/".join(resolved + [hidden]))
        finally:
            os.close(pfd)

    def _hide(self, pfd: int, name: str, path: str) -> None:
        """Remove what lower layers have at `path`, keeping what this layer added."""
        info = lstat_at(pfd, name)
        if info is None or path in self.added:
            return
        if path in self.under and stat.S_ISDIR(info.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                self._prune(fd, path)
            finally:
                os.close(fd)
        else:
            self._remove(pfd, name, path, info)

    def _prune(self, dirfd: int, path: str) -> None:
        """Remove every lower-layer entry below directory `path` (open as `dirfd`)."""
        with os.scandir(dirfd) as it:
            names = [entry.name for entry in it]
        for name in names:
            child = f"{path}/{name}" if path else name
            info = lstat_at(dirfd, name)
            if info is None:
                continue
            if child in self.added or child in self.under:
                if stat.S_ISDIR(info.st_mode):  # keep it, but not what lower layers put in it
                    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                    try:
                        self._prune(fd, child)
                    finally:
                        os.close(fd)
            else:
                self._remove(dirfd, name, child, info)

    # ---------------------------------------------------------------- creating entries

    def _hardlink_target(self, member: tarfile.TarInfo) -> tuple[int, str, str]:
        """(dirfd, resolved path, name) of the hardlink target, which must exist and not be a
        directory; its last component is not followed. The caller closes dirfd."""
        target = member_parts(member.linkname)
        if not target:
            raise self.bad("hardlink to the root directory")
        try:
            tfd, resolved = self._parent(target[:-1], create=False)
        except FileNotFoundError:
            raise self.bad(f"hardlink target {member.linkname!r} does not exist") from None
        info = lstat_at(tfd, target[-1])
        if info is None or stat.S_ISDIR(info.st_mode):
            os.close(tfd)
            what = "does not exist" if info is None else "is a directory"
            raise self.bad(f"hardlink target {member.linkname!r} {what}")
        return tfd, "/".join(resolved + target[-1:]), target[-1]

    def _create(self, pfd: int, name: str, path: str, kind: Kind, member: tarfile.TarInfo,
                tar: tarfile.TarFile, target: tuple[int, str, str] | None) -> None:
        if kind is Kind.FILE:
            fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd)
            try:
                _copy(tar.extractfile(member), fd, member.size)
                self._metadata(fd, path, member, kind)
            finally:
                os.close(fd)
        elif kind is Kind.DIR:
            if lstat_at(pfd, name) is None:
                os.mkdir(name, 0o700, dir_fd=pfd)
            self.dirs.append((path.split("/"), member))
        elif kind is Kind.HARDLINK:
            tfd, tpath, tname = target
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            if self.owners is not None and tpath in self.owners:
                self._record(path, self.owners[tpath])
        else:
            self._special(pfd, name, path, kind, member)

    def _special(self, pfd: int, name: str, path: str, kind: Kind, member: tarfile.TarInfo) -> None:
        """Symlinks, FIFOs and device nodes: metadata set by name, never following a symlink."""
        mode = member.mode & 0o7777
        if kind is Kind.SYMLINK:
            os.symlink(member.linkname, name, dir_fd=pfd)
        elif kind is Kind.FIFO:
            os.mkfifo(name, 0o600, dir_fd=pfd)
        elif self.rootless:
            self._record(path, Owner(member.uid, member.gid, mode, kind, member.devmajor, member.devminor))
            return  # an unprivileged user cannot make device nodes
        else:
            node = stat.S_IFCHR if kind is Kind.CHAR else stat.S_IFBLK
            os.mknod(name, node | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        if self.rootless:
            self._record(path, Owner(member.uid, member.gid, mode))
        else:
            os.chown(name, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if kind is not Kind.SYMLINK:  # we just made it, so following is safe (see the module doc)
            os.chmod(name, mode, dir_fd=pfd)
        ns = int(member.mtime * 1_000_000_000)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _metadata(self, fd: int, path: str, member: tarfile.TarInfo, kind: Kind) -> None:
        """Owner, xattrs, mode, then times: chown clears setuid bits and file capabilities."""
        mode = member.mode & 0o7777
        if self.rootless:
            self._record(path, Owner(member.uid, member.gid, mode))
            mode |= 0o700 if kind is Kind.DIR else 0o600
        else:
            os.fchown(fd, member.uid, member.gid)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                _setxattr(fd, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))
        os.fchmod(fd, mode)
        ns = int(member.mtime * 1_000_000_000)
        os.utime(fd, ns=(ns, ns))


def _kind(member: tarfile.TarInfo) -> Kind | None:
    if member.isreg():
        return Kind.FILE
    return {tarfile.DIRTYPE: Kind.DIR, tarfile.SYMTYPE: Kind.SYMLINK, tarfile.LNKTYPE: Kind.HARDLINK,
            tarfile.CHRTYPE: Kind.CHAR, tarfile.BLKTYPE: Kind.BLOCK, tarfile.FIFOTYPE: Kind.FIFO}.get(member.type)


def _copy(source: BinaryIO, fd: int, size: int) -> None:
    buffer = bytearray(min(size, _COPY) or 1)
    view = memoryview(buffer)
    left = size
    while left:
        n = source.readinto(view[:min(left, len(buffer))])
        if not n:
            raise tarfile.ReadError("unexpected end of data")
        done = 0
        while done < n:
            done += os.write(fd, view[done:n])
        left -= n


def _setxattr(fd: int, name: str, value: bytes) -> None:
    try:
        os.setxattr(fd, name, value)
    except OSError as e:
        if e.errno not in _IGNORED_XATTR_ERRORS:
            raise
