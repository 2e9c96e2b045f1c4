"""The sandbox helper: ``python -S -E -s _child.py <control-fd>``, started afresh for each RUN.

A fresh process rather than os.fork in the caller: the caller may have threads, and unshare
(CLONE_NEWUSER) needs a single-threaded process. ctypes rather than util-linux unshare(1): one
process does the namespaces, the id-map handshake and the mount setup, with our own error
messages, and the placeholders are removed by a process that outlives the command.

Protocol on the control socket (JSON lines): the caller sends the config; with "userns" the
helper answers {"op": "map"} once it has its user namespace and waits for "go" (the caller
writes the id maps, with newuidmap when there are subordinate ranges). Then:

    helper (H)   unshare pid ns; with "overlay", unshare mount ns and mount the overlay on the
                 rootfs; create the mount placeholders; fork G; wait; remove placeholders
    G (pid 1)    unshare mount/uts/ipc(/net) ns; mount rootfs, /proc, /dev, /sys, binds;
                 pivot_root; resolve the user; mkdir+chdir cwd; drop caps; setuid; execve

A setup failure in H or G is sent as {"op": "error", "message": ...}; H's exit status is the
command's (128+n when killed by signal n). The command's stdio is H's, inherited from the caller.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import warnings  # noqa: F401 - os.execvpe imports it lazily: after pivot_root the stdlib is gone

if __package__:
    from . import _mounts as m
    from ._users import UnknownUser, resolve_user
else:  # run as a script: the siblings are on sys.path[0]
    import _mounts as m
    from _users import UnknownUser, resolve_user

# Docker's default capabilities: chown dac_override fowner fsetid kill setgid setuid setpcap
# net_bind_service net_raw sys_chroot mknod audit_write setfcap. The rest leave the bounding set.
KEEP_CAPS = {0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
SETUP_FAILED = 125
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stopped(Exception):
    """The caller asked us to stop (SIGTERM) before the command started."""


_pid1 = 0  # the command's process once forked, for the signal handler


def _on_signal(signum, frame) -> None:
    # pid 1 ignores signals it has no handler for, so a polite signal becomes a SIGKILL.
    if _pid1:
        os.kill(_pid1, signal.SIGKILL)
    else:
        raise _Stopped(f"stopped by signal {signum} before the command started")


def main(argv: list[str]) -> int:
    if argv[1] == "--probe":
        return probe(argv[2] == "userns", argv[3] if len(argv) > 3 else "")
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    ctl = socket.socket(fileno=int(argv[1]))
    reader = ctl.makefile("r", encoding="utf-8")
    holders = None
    try:
        cfg = json.loads(reader.readline())
        if cfg.get("userns"):
            m.unshare(m.CLONE_NEWUSER)
            _send(ctl, op="map")
            if reader.readline().strip() != "go":
                raise m.SetupError("user namespace: the caller did not map ids")
        m.unshare(m.CLONE_NEWPID)
        if cfg.get("overlay"):
            _mount_overlay(cfg["rootfs"], cfg["overlay"])
        holders = m.Placeholders(cfg["rootfs"])
        for target, is_dir in _targets(cfg):
            holders.make(target, is_dir)
        holders.seal()
        status = _run_pid1(cfg, ctl)
    except (m.SetupError, OSError, _Stopped) as e:
        _send(ctl, op="error", message=_text(e))
        status = SETUP_FAILED
    return _clean_up(holders, ctl, status)


def _clean_up(holders, ctl: socket.socket, status: int) -> int:
    try:
        if holders is not None:
            holders.remove()
    except OSError as e:
        _send(ctl, op="error", message=f"remove mount placeholders from the rootfs: {_text(e)}")
        return SETUP_FAILED
    _send(ctl, op="cleaned")
    return status


def _mount_overlay(rootfs: str, overlay: dict) -> None:
    """In H: a mount namespace of its own holding the overlay, so that the placeholders are made
    and removed in the merged tree and the mount goes with H, however H ends."""
    m.unshare(m.CLONE_NEWNS)
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)  # nothing we mount may reach the host
    m.mount_overlay(rootfs, overlay["lower"], overlay["upper"], overlay["work"], overlay["flavour"])


PROBE_NO_OVERLAY = 3  # the namespaces work, overlayfs does not


def probe(userns: bool, overlay_dir: str = "") -> int:
    """Exit 0 when this process may make the namespaces and mounts a run needs, else print why.

    With `overlay_dir` (holding l/f, l/d/x, and empty u, w, m), also mount an overlay there and
    make a whiteout (rm f) and an opaque directory (rm -r d; mkdir d) for the caller to find in
    u; exit PROBE_NO_OVERLAY, saying why, when that fails but namespaces work. One process for
    both: each RUN-using build pays for the probe."""
    try:
        if userns:
            uid, gid = os.geteuid(), os.getegid()
            m.unshare(m.CLONE_NEWUSER)
            for name, text in (("uid_map", f"0 {uid} 1"), ("setgroups", "deny"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        m.unshare(m.CLONE_NEWNS | m.CLONE_NEWPID | m.CLONE_NEWUTS | m.CLONE_NEWIPC)
        m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
    except (m.SetupError, OSError) as e:
        print(_text(e), file=sys.stderr)
        return 1
    if overlay_dir:
        try:
            _probe_overlay(overlay_dir, "user" if userns else "trusted")
            return 0  # a mount worked: no need to try tmpfs
        except (m.SetupError, OSError) as e:
            print(_text(e), file=sys.stderr)
    try:
        m.mount("tmpfs", "/", "tmpfs", 0)
    except (m.SetupError, OSError) as e:
        print(_text(e), file=sys.stderr)
        return 1
    return PROBE_NO_OVERLAY if overlay_dir else 0


def _probe_overlay(d: str, flavour: str) -> None:
    m.mount_overlay(f"{d}/m", [f"{d}/l"], f"{d}/u", f"{d}/w", flavour)
    os.unlink(f"{d}/m/f")
    os.rmdir(f"{d}/m/d/x")
    os.rmdir(f"{d}/m/d")
    os.mkdir(f"{d}/m/d")


def _targets(cfg: dict) -> list[tuple[str, bool]]:
    """Every mount target in the rootfs, with whether it is a directory."""
    targets = [("/proc", True), ("/dev", True), ("/sys", True)]
    for mnt in cfg["mounts"]:
        is_dir = mnt["type"] == "tmpfs" or os.path.isdir(mnt["source"])
        targets.append((mnt["target"], is_dir))
    return targets


def _run_pid1(cfg: dict, ctl: socket.socket) -> int:
    """Fork the command's process (pid 1 of the new pid namespace) and wait for it."""
    global _pid1
    # Signals wait until _pid1 is set, so a stop request always reaches the command.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid == 0:
        try:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            m.prctl(m.PR_SET_PDEATHSIG, signal.SIGKILL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            _exec(cfg)
        except (m.SetupError, UnknownUser, OSError) as e:
            _send(ctl, op="error", message=_text(e))
        except BaseException as e:  # noqa: BLE001 - a child must never return into H's code
            _send(ctl, op="error", message=f"sandbox helper: {type(e).__name__}: {e}")
        finally:
            os._exit(SETUP_FAILED)
    _pid1 = pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _, status = os.waitpid(pid, 0)  # retried by Python after a signal handler ran (PEP 475)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _exec(cfg: dict) -> None:
    """In G: build the container's mounts, enter it, become the user, and exec the command."""
    flags = m.CLONE_NEWNS | m.CLONE_NEWUTS | m.CLONE_NEWIPC
    if cfg["network"] == "none":
        flags |= m.CLONE_NEWNET
    m.unshare(flags)
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
    root = cfg["rootfs"]
    m.bind(root, root, recursive=True)
    _mount_proc_dev_sys(root)
    for mnt in cfg["mounts"]:
        _mount(root, mnt)
    socket.sethostname(cfg["hostname"])
    if cfg["network"] == "none":
        m.loopback_up()
    _drop_capabilities()
    m.pivot_into(root)
    user = resolve_user(cfg["user"])
    cwd = cfg["cwd"] or "/"
    os.makedirs(cwd, 0o755, exist_ok=True)  # as Docker does for a WORKDIR that does not exist
    os.chdir(cwd)
    _become(user, cfg)
    m.prctl(m.PR_SET_PDEATHSIG, signal.SIGKILL)  # a change of credentials cleared it
    if cfg.get("personality32"):
        m.set_personality32()
    env = _environment(cfg["env"], user.home)
    argv = cfg["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        if "/" not in argv[0] and isinstance(e, FileNotFoundError):
            raise m.SetupError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
        raise m.SetupError(f"exec {argv[0]}: {e.strerror}") from None


def _become(user, cfg: dict) -> None:
    try:
        if cfg["setgroups"]:
            os.setgroups(list(user.groups))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        shown = cfg["user"] or "root"
        raise m.SetupError(f"switch to user {shown} (uid {user.uid}, gid {user.gid}): {e.strerror}") from None


def _mount_proc_dev_sys(root: str) -> None:
    m.mount("proc", f"{root}/proc", "proc", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC)
    dev = f"{root}/dev"
    m.mount("tmpfs", dev, "tmpfs", m.MS_NOSUID | m.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        path = f"{dev}/{name}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o666))
        m.bind(f"/dev/{name}", path)
    for name in ("pts", "shm"):
        os.mkdir(f"{dev}/{name}", 0o755)
    m.mount("shm", f"{dev}/shm", "tmpfs", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC, "mode=1777,size=65536k")
    _mount_devpts(f"{dev}/pts")
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{dev}/{name}")
    _mount_sys(f"{root}/sys")


def _mount_devpts(target: str) -> None:
    """A private devpts; some kernels refuse gid=5 (or devpts at all) in a user namespace."""
    flags = m.MS_NOSUID | m.MS_NOEXEC
    for data in ("newinstance,ptmxmode=0666,mode=0620,gid=5", "newinstance,ptmxmode=0666,mode=0620"):
        try:
            return m.mount("devpts", target, "devpts", flags, data)
        except m.SetupError:
            continue
    m.bind("/dev/pts", target)


def _mount_sys(target: str) -> None:
    """A read-only sysfs; where we may not mount one (a user namespace that shares the host
    network), a recursive bind of the host's, read-only at the top. Recursive because the kernel
    refuses to split locked submounts off in a user namespace; the cgroup submounts stay as
    writable as they are to the caller outside, which is not at all for an unprivileged one."""
    flags = m.MS_RDONLY | m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
    try:
        m.mount("sysfs", target, "sysfs", flags)
    except m.SetupError:
        m.bind("/sys", target, readonly=True, recursive=True)


def _mount(root: str, mnt: dict) -> None:
    target = m.resolve(root, mnt["target"])
    if mnt["type"] == "tmpfs":
        data = ",".join(mnt.get("options") or ()) or None
        m.mount("tmpfs", target, "tmpfs", m.MS_NOSUID | m.MS_NODEV | (m.MS_RDONLY if mnt["readonly"] else 0), data)
    else:
        m.bind(mnt["source"], target, readonly=mnt["readonly"], recursive=True)


def _drop_capabilities() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if cap not in KEEP_CAPS and m.prctl(m.PR_CAPBSET_DROP, cap) != 0:
            raise m.SetupError(f"drop capability {cap} from the bounding set")


def _environment(env: list[str], home: str) -> dict[str, str]:
    out = dict(item.partition("=")[::2] for item in env)
    out.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    out.setdefault("HOME", home)
    return out


def _send(ctl: socket.socket, **message) -> None:
    try:
        ctl.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the caller is gone; nothing left to tell


def _text(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    os._exit(code)  # skip interpreter finalisation: the caller is waiting for this exit
