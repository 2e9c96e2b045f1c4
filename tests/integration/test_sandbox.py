"""The sandbox in its three modes (root, rootless user namespace, proot) on a busybox rootfs."""

from __future__ import annotations

import os

import pytest

from support.sandbox_modes import *  # noqa: F401,F403 - fixtures: mode, step, sandbox_dir, ...


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def test_uname_env_and_cwd(step):
    rootfs = step.rootfs()
    answer = step.run(rootfs, ["/bin/sh", "-c", 'uname -m; echo "$GREETING"; pwd; echo "$HOME"'],
                      env=["GREETING=hello world"], cwd="/work/app")
    assert answer.ok, answer.error
    assert answer.stdout.splitlines() == ["x86_64", "hello world", "/work/app", "/root"]
    assert (rootfs / "work" / "app").is_dir()  # a missing cwd is created, as Docker does


def test_files_written_and_chown_map_back(step):
    rootfs = step.rootfs()
    answer = step.run(rootfs, ["/bin/sh", "-c", "echo data > /made; mkdir /d; chown 1000:1000 /made; ls -ln /made"])
    assert answer.ok, answer.error
    assert (rootfs / "made").read_text() == "data\n"
    st = (rootfs / "made").stat()
    if step.mode == "userns":
        assert st.st_uid == step.user.subuid + 999  # in-container 1000 = subuid_start + 1000 - 1
        assert answer.to_container_uid(st.st_uid) == 1000
        assert answer.to_container_uid((rootfs / "d").stat().st_uid) == 0  # root inside = the caller
    else:
        assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert " 1000 " in answer.stdout


@pytest.mark.parametrize("user, expected", [
    ("nobody", "65534 65534 65534"),
    ("app", "1000 1000 1000 50"),
    ("1000:50", "1000 50 50"),
    ("4242", "4242 0 0"),
])
def test_user_switching(step, user, expected):
    rootfs = step.rootfs()
    answer = step.run(rootfs, ["/bin/sh", "-c", 'echo $(id -u) $(id -g) $(id -G)'], user=user)
    assert answer.ok, answer.error
    got = answer.stdout.split()
    want = expected.split()
    if step.mode == "proot":  # proot -i sets uid and gid only; supplementary groups are the caller's
        got, want = got[:2], want[:2]
    assert got == want


def test_unknown_user_is_a_clear_error(step):
    answer = step.run(step.rootfs(), ["id"], user="nosuchuser")
    assert answer.error_type == "SandboxError"
    assert "unable to find user nosuchuser" in answer.error


def test_exit_code_and_stderr_tail(step):
    answer = step.run(step.rootfs(), ["/bin/sh", "-c", "echo first >&2; echo last words >&2; exit 3"])
    assert answer.error_type == "RunFailed"
    assert answer.exit_code == 3
    assert answer.stderr_tail.splitlines()[-1] == "last words"
    assert 'process "/bin/sh -c echo first' in answer.error and "exit code: 3" in answer.error


@pytest.mark.parametrize("argv, message", [
    (["no-such-program"], 'exec: "no-such-program": executable file not found in $PATH'),
    (["/bin/no-such-program"], "/bin/no-such-program"),
])
def test_missing_program_is_a_clear_error(step, argv, message):
    answer = step.run(step.rootfs(), argv)
    assert answer.error_type == "SandboxError"
    assert message in answer.error


def test_network_none_has_only_loopback(step):
    answer = step.run(step.rootfs(), ["/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"], network="none")
    if step.mode == "proot":
        assert answer.error_type == "SandboxError" and "network" in answer.error
        return
    assert answer.ok, answer.error
    assert answer.stdout.split() == ["lo"]


def test_host_files_visible_inside_and_nothing_left_behind(step):
    rootfs = step.rootfs()
    before = _tree(rootfs)
    etc_mtime = (rootfs / "etc").stat().st_mtime_ns
    answer = step.run(rootfs, ["/bin/sh", "-c", "cat /etc/resolv.conf; grep -c . /etc/hosts"])
    assert answer.ok, answer.error
    with open("/etc/resolv.conf") as f:
        assert answer.stdout.startswith(f.read())
    assert _tree(rootfs) == before  # no resolv.conf, hosts, /proc, /dev or /sys placeholders left
    assert (rootfs / "etc").stat().st_mtime_ns == etc_mtime


def test_placeholders_of_a_rootfs_without_etc_are_removed(step):
    rootfs = step.rootfs()
    for name in ("passwd", "group"):
        (rootfs / "etc" / name).unlink()
    (rootfs / "etc").rmdir()
    answer = step.run(rootfs, ["/bin/sh", "-c", "test -s /etc/resolv.conf && echo ok"])
    assert answer.ok, answer.error
    assert answer.stdout.strip() == "ok"
    assert not (rootfs / "etc").exists()


def test_proc_and_dev_work(step):
    script = ("head -1 /proc/self/status; echo gone > /dev/null; head -c 8 /dev/urandom | wc -c; "
              "head -c 3 /dev/zero | wc -c; test -d /proc/1 && echo pid1")
    answer = step.run(step.rootfs(), ["/bin/sh", "-c", script])
    assert answer.ok, answer.error
    lines = answer.stdout.split("\n")
    assert lines[0].startswith("Name:") and lines[1:4] == ["8", "3", "pid1"]


def test_bind_and_tmpfs_mounts(step, sandbox_dir):
    source = sandbox_dir / f"bind-{step.mode}"
    source.mkdir(exist_ok=True)
    (source / "in.txt").write_text("from the host\n")
    os.chmod(source, 0o777)
    rootfs = step.rootfs()
    mounts = [{"type": "bind", "source": str(source), "target": "/src"},
              {"type": "tmpfs", "target": "/cache"}]
    script = "cat /src/in.txt; echo out > /src/out.txt; echo t > /cache/t; cat /cache/t"
    answer = step.run(rootfs, ["/bin/sh", "-c", script], mounts=mounts)
    assert answer.ok, answer.error
    assert answer.stdout == "from the host\nt\n"
    assert (source / "out.txt").read_text() == "out\n"
    assert not (rootfs / "src").exists() and not (rootfs / "cache").exists()


def test_readonly_bind_keeps_the_source_untouched(step, sandbox_dir):
    source = sandbox_dir / f"ro-{step.mode}"
    source.mkdir(exist_ok=True)
    (source / "keep").write_text("original\n")
    answer = step.run(step.rootfs(), ["/bin/sh", "-c", "cat /ro/keep; echo changed > /ro/keep"],
                      mounts=[{"type": "bind", "source": str(source), "target": "/ro", "readonly": True}])
    if step.mode == "proot":  # proot binds a copy: the write lands there and is discarded
        assert answer.ok, answer.error
    else:
        assert answer.error_type == "RunFailed"
        assert "Read-only file system" in answer.stderr_tail
    assert answer.stdout == "original\n"
    assert (source / "keep").read_text() == "original\n"


class _Cancelled(Exception):
    pass


@pytest.mark.parametrize("mode", ["root", "proot"], indirect=True)
def test_cancel_stops_the_command_and_cleans_up(step):
    """An exception from the output sink (a cancelled build) stops the run quickly, leaving no
    process and no placeholder behind."""
    import time

    from ocibuild.sandbox import RunSpec, choose

    def sink(stream, data):
        raise _Cancelled()

    rootfs = step.rootfs()
    before = _tree(rootfs)
    marker = f"sleep 60.{os.getpid()}{len(step.mode)}"  # unique to this test run and mode
    started = time.monotonic()
    with pytest.raises(_Cancelled):
        choose(step.mode).run(RunSpec(str(rootfs), ["/bin/sh", "-c", f"echo started; exec {marker}"], output=sink))
    assert time.monotonic() - started < 15
    assert _tree(rootfs) == before
    time.sleep(0.2)  # a killed tracee or pid namespace goes away asynchronously
    assert marker not in os.popen("ps -eo args").read()


def test_proot_as_an_unprivileged_user_records_everything_as_root(user_runner, test_user, sandbox_dir):
    from support import sandbox_rootfs
    rootfs = sandbox_rootfs.fresh_copy("amd64", sandbox_dir / "proot-user", (test_user.uid, test_user.gid))
    spec = {"rootfs": str(rootfs), "argv": ["/bin/sh", "-c", "touch /f && chown 1000:1000 /f && id -u"]}
    answer = user_runner.run({"kind": "proot", "spec": spec})
    assert answer["ok"], answer["error"]
    assert answer["stdout"] == "0\n"
    assert (rootfs / "f").stat().st_uid == test_user.uid  # chown had no effect on disk
    assert answer["uids"] == [[0, test_user.uid, 1]]  # so the caller's files map back to root
