"""The sandbox helper's system calls: namespaces, mounts, pivot_root, paths confined to a rootfs.

Standard library only and no ocibuild imports: `_child.py` runs this as a sibling module of a
script (``python -S -E -s _child.py``), which keeps the helper's start-up cheap and lets it run
under any interpreter that can read these files. ctypes reaches what `os` lacks before Python
3.12 (unshare, mount, pivot_root, personality, prctl). Heavy imports (platform, dataclasses)
are avoided: each RUN pays for the helper's start-up.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import fcntl

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP = 1, 24
PER_LINUX32 = 0x0008
# glibc has no pivot_root wrapper; its syscall number depends on the architecture.
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203,
                  "s390x": 217, "i686": 217, "armv7l": 218, "armv8l": 218}
# statvfs flags -> the mount flags a remount must keep: in a user namespace the kernel refuses a
# remount that would drop nosuid/nodev/noexec/atime flags locked by the mount's creator.
_LOCKED = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
           (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long


class SetupError(Exception):
    """A sandbox setup step failed; the message reads "doing what: cause"."""


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare namespaces")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    what = f"mount {fstype or 'bind'} {source or ''} on {target}".replace("  ", " ")
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), what)


def prctl(option: int, arg: int) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def set_personality32() -> None:
    """uname -m then prints i686 on x86_64 (armv8l on aarch64), as `setarch i686` does."""
    _check(_libc.personality(PER_LINUX32), "set the 32-bit personality")


def pivot_into(rootfs: str) -> None:
    """Make `rootfs` (a mount point) the root and detach the old root, without a directory for it.

    pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then drops it.
    """
    os.chdir(rootfs)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(_libc.syscall(number, b".", b"."), f"pivot_root to {rootfs}")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")


def bind(source: str, target: str, *, readonly: bool = False, recursive: bool = False) -> None:
    """Bind-mount `source` on `target`; a read-only bind keeps the source's locked flags."""
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        vfs = os.statvfs(target)
        flags |= sum(ms for st, ms in _LOCKED if vfs.f_flag & st)
        mount(None, target, None, flags)


# Options that keep the upper directory a plain layer: no redirects (a renamed lower directory
# is copied instead), no metadata-only copy-up, no index. "nofollow" rather than "off": with
# userxattr the kernel turns "off" into "follow", which it then refuses.
OVERLAY_OPTIONS = "redirect_dir=nofollow,index=off,metacopy=off"
_OVERLAY_UNSAFE = (",", ":", "\\")


def mount_overlay(target: str, lower: list[str], upper: str, work: str, flavour: str) -> None:
    """Mount an overlayfs on `target`: `lower` topmost first, changes into `upper`."""
    for path in (*lower, upper, work):
        if any(c in path for c in _OVERLAY_UNSAFE):
            raise SetupError(f"mount overlay: the path {path!r} holds a character overlayfs options cannot carry")
    data = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work},{OVERLAY_OPTIONS}"
    if flavour == "user":
        data += ",userxattr"
    mount("overlay", target, "overlay", 0, data)


def loopback_up() -> None:
    """Bring up `lo` in a fresh network namespace, as Docker's --network=none does."""
    import socket  # here: the builder imports this module for `resolve` alone, on every build

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = fcntl.ioctl(s.fileno(), siocgifflags, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH22x", req)[1] | iff_up
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags))


def resolve(root: str, path: str) -> str:
    """`path` inside `root`, symlinks followed as if `root` were "/": the result never leaves it.

    Like filepath-securejoin: ".." stops at `root`, absolute link targets restart at `root`.
    Components that do not exist are joined as they are.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current, links = root, 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = root if current == root else os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        if not os.path.islink(candidate):
            current = candidate
            continue
        links += 1
        if links > 40:
            raise SetupError(f"resolve {path} in the rootfs: too many levels of symbolic links")
        target = os.readlink(candidate)
        if target.startswith("/"):
            current = root
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return current


class Placeholders:
    """Mount targets created for one run, so that they can be removed after it.

    Nothing of the sandbox may stay in the rootfs, or the layer diff would pick it up: created
    files and directories are removed, and the directories they were created in get their times
    back unless the command itself changed them meanwhile.
    """

    def __init__(self, root: str):
        self.root = root
        self.created: list[str] = []
        self._before: dict[str, tuple[int, int]] = {}
        self._after: dict[str, int] = {}

    def make(self, path: str, is_dir: bool) -> str:
        """Resolve `path` in the rootfs and create it (and missing parents) when absent.

        Returns the resolved path. An existing target of the wrong kind is an error, since a
        mount on it would fail or surprise.
        """
        real = resolve(self.root, path)
        if os.path.lexists(real):
            if os.path.isdir(real) != is_dir:
                kind = "a directory" if is_dir else "a file"
                raise SetupError(f"mount on {path}: the rootfs has something other than {kind} there")
            return real
        parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            self.make(os.path.relpath(parent, self.root), True)
        if parent not in self.created and parent not in self._before:
            st = os.stat(parent)
            self._before[parent] = (st.st_atime_ns, st.st_mtime_ns)
        if is_dir:
            os.mkdir(real, 0o755)
        else:
            os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self.created.append(real)
        return real

    def seal(self) -> None:
        """Note the parents' times once every placeholder exists (call before the command runs)."""
        self._after = {p: os.stat(p).st_mtime_ns for p in self._before}

    def remove(self) -> None:
        """Remove the placeholders, newest first, unless the command filled them."""
        untouched = [p for p, m in self._after.items() if _mtime(p) == m]
        for path in reversed(self.created):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                elif os.path.isfile(path) and os.path.getsize(path) == 0:
                    os.unlink(path)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EBUSY):
                    raise
        for parent in untouched:
            os.utime(parent, ns=self._before[parent])


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
