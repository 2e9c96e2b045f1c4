"""ocibuild.layer.snapshot + diff: the layer a RUN step produced.

Every case checks the round-trip property: build a "before" tree twice, snapshot one copy, let a
step change it, diff, write the entries as a tar and apply that with `apply_layer` onto the
other copy; the two trees must then be equal in metadata (whole-second mtimes), content,
xattrs and hardlink groups. Cases that need root (chown, device nodes, file capabilities) say so.
"""

from __future__ import annotations

import io
import os
import random
import stat
import struct
import time

import pytest

from ocibuild.layer.diff import diff
from ocibuild.layer.entry import Kind
from ocibuild.layer.extract import Owner, apply_layer
from ocibuild.layer.snapshot import snapshot, walk
from ocibuild.layer.tarwriter import write_tar
from ocibuild.layer.tree import read_xattrs

T0 = 1_600_000_000
LAYER = "sha256:" + "ab" * 32
ROOT = os.geteuid() == 0


# ------------------------------------------------------------------------------ helpers

def write(path, data=b"data", mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def settle_times(root):
    """Give every path below `root` the time T0, directories last (writing into them moves it)."""
    paths = sorted((p for p, _, _ in walk(str(root))), key=lambda p: -p.count("/"))
    for path in paths:
        os.utime(os.path.join(root, path), ns=(T0 * 10**9, T0 * 10**9), follow_symlinks=False)


def state(root, owners=None):
    """Everything a layer can say about the tree, per path, plus the hardlink groups."""
    out, inodes = {}, {}
    for path, host, st in walk(str(root)):
        uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
        if owners and path in owners:
            uid, gid, mode = owners[path].uid, owners[path].gid, owners[path].mode
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            with open(host, "rb") as f:
                body = f.read()
            inodes.setdefault(st.st_ino, []).append(path)
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(host)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            body = st.st_rdev
        else:
            body = None
        out[path] = (kind, mode, uid, gid, st.st_mtime_ns // 10**9, body, read_xattrs(host))
    groups = sorted(sorted(paths) for paths in inodes.values() if len(paths) > 1)
    return out, groups


def apply_entries(entries, dest, owners=None, rootless=not ROOT):
    buf = io.BytesIO()
    write_tar(entries, buf)
    buf.seek(0)
    apply_layer(str(dest), buf, layer=LAYER, owners=owners, rootless=rootless)


def roundtrip(tmp_path, build, step, rootless=not ROOT, **diff_args):
    """Run `step` on a tree made by `build`; check apply(before, diff) == after; return the entries.

    With `rootless`, the copy is compared through the owners map the rootless extraction kept."""
    before, copy = tmp_path / "before", tmp_path / "copy"
    for root in (before, copy):
        root.mkdir()
        build(str(root))
        settle_times(root)
    snap = snapshot(str(before), exclude=diff_args.pop("snapshot_exclude", ()))
    step(str(before))
    entries = diff(snap, str(before), **diff_args)
    owners = {}
    apply_entries(entries, copy, owners, rootless)
    exclude = tuple(p.strip("/") for p in diff_args.get("exclude", ()))

    def kept(path):  # excluded paths (and what is below them) keep whatever the copy had
        return not any(path == e or path.startswith(e + "/") for e in exclude)

    want, got = state(before), state(copy, owners)
    want = ({k: v for k, v in want[0].items() if kept(k)}, want[1])
    got = ({k: v for k, v in got[0].items() if kept(k)}, got[1])
    assert got == want
    return entries


def by_path(entries):
    return {e.path: e for e in entries}


def base_tree(root):
    write(f"{root}/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
    write(f"{root}/etc/hosts", b"127.0.0.1 localhost\n")
    write(f"{root}/usr/bin/tool", b"#!/bin/sh\n", 0o755)
    write(f"{root}/usr/lib/a/one", b"1")
    write(f"{root}/usr/lib/a/two", b"2")
    write(f"{root}/usr/lib/b/three", b"3")
    os.makedirs(f"{root}/tmp")
    os.chmod(f"{root}/tmp", 0o1777)
    os.symlink("usr/bin", f"{root}/bin")


# ------------------------------------------------------------------------------ cases

def test_no_change_gives_an_empty_layer(tmp_path):
    assert roundtrip(tmp_path, base_tree, lambda root: None) == []


def test_new_and_modified_files_with_their_parents(tmp_path):
    def step(root):
        write(f"{root}/usr/lib/a/new", b"new")
        with open(f"{root}/etc/passwd", "ab") as f:
            f.write(b"nobody:x:65534:65534::/:/bin/false\n")

    entries = roundtrip(tmp_path, base_tree, step)
    assert [e.path for e in entries] == ["etc", "etc/passwd", "usr", "usr/lib", "usr/lib/a", "usr/lib/a/new"]
    new = by_path(entries)["usr/lib/a/new"]
    assert new.kind is Kind.FILE and new.size == 3 and new.source.endswith("usr/lib/a/new")
    assert by_path(entries)["usr"].kind is Kind.DIR


def test_same_size_same_mtime_rewrite_right_after_the_snapshot_is_seen(tmp_path):
    """The racy case: content changes, size and mtime are put back; only the ctime tells."""
    def step(root):
        path = f"{root}/usr/lib/a/one"
        st = os.lstat(path)
        write(path, b"X")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    entries = roundtrip(tmp_path, base_tree, step)
    assert "usr/lib/a/one" in by_path(entries)


def test_mode_bits_setuid_setgid_sticky(tmp_path):
    def step(root):
        os.chmod(f"{root}/usr/bin/tool", 0o4755)
        os.chmod(f"{root}/usr/lib/b", 0o2775)
        os.chmod(f"{root}/usr/lib/a/one", 0o1600)

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    assert entries["usr/bin/tool"].mode == 0o4755
    assert entries["usr/lib/b"].mode == 0o2775
    assert entries["usr/lib/a/one"].mode == 0o1600
    assert entries["tmp"].mode == 0o1777 if "tmp" in entries else True


@pytest.mark.needs_root
def test_owner_changes(tmp_path):
    def step(root):
        os.chown(f"{root}/etc/hosts", 1000, 1001)
        os.lchown(f"{root}/bin", 5, 6)

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    assert (entries["etc/hosts"].uid, entries["etc/hosts"].gid) == (1000, 1001)
    assert (entries["bin"].uid, entries["bin"].gid, entries["bin"].kind) == (5, 6, Kind.SYMLINK)


def test_deletions_are_whiteouts_at_the_top_only(tmp_path):
    def step(root):
        os.unlink(f"{root}/etc/hosts")
        for name in ("one", "two"):
            os.unlink(f"{root}/usr/lib/a/{name}")
        os.rmdir(f"{root}/usr/lib/a")
        os.unlink(f"{root}/bin")

    entries = roundtrip(tmp_path, base_tree, step)
    whiteouts = sorted(e.path for e in entries if ".wh." in e.path)
    assert whiteouts == [".wh.bin", "etc/.wh.hosts", "usr/lib/.wh.a"]
    for entry in entries:
        if ".wh." in entry.path:
            assert (entry.kind, entry.mode, entry.mtime, entry.size) == (Kind.FILE, 0, 0, 0)


def test_directory_deleted_and_made_again_is_opaque(tmp_path):
    def step(root):
        os.rename(f"{root}/usr/lib/a", f"{root}/gone")   # keep the inode alive: a new one must differ
        os.makedirs(f"{root}/usr/lib/a/sub")
        write(f"{root}/usr/lib/a/sub/x", b"x")
        os.unlink(f"{root}/gone/one")
        os.unlink(f"{root}/gone/two")
        os.rmdir(f"{root}/gone")

    entries = roundtrip(tmp_path, base_tree, step)
    paths = [e.path for e in entries]
    assert paths[paths.index("usr/lib/a") + 1] == "usr/lib/a/.wh..wh..opq"  # first among its children
    assert {"usr/lib/a/sub", "usr/lib/a/sub/x"} <= set(paths)
    assert not any("wh.one" in p or "wh.two" in p for p in paths)


def test_directory_made_again_with_a_reused_inode_number_is_still_opaque(tmp_path):
    seen = {}

    def step(root):
        old = os.lstat(f"{root}/usr/lib/b").st_ino
        os.unlink(f"{root}/usr/lib/b/three")
        os.rmdir(f"{root}/usr/lib/b")
        os.mkdir(f"{root}/usr/lib/b")   # ext4 and tmpfs usually hand back the same number
        seen["reused"] = os.lstat(f"{root}/usr/lib/b").st_ino == old

    entries = roundtrip(tmp_path, base_tree, step)
    if seen["reused"]:
        assert "usr/lib/b/.wh..wh..opq" in by_path(entries)


def test_type_changes_replace_without_whiteouts(tmp_path):
    def step(root):
        os.unlink(f"{root}/etc/hosts")
        write(f"{root}/etc/hosts/inside", b"now a directory")
        for name in ("one", "two"):
            os.unlink(f"{root}/usr/lib/a/{name}")
        os.rmdir(f"{root}/usr/lib/a")
        write(f"{root}/usr/lib/a", b"now a file")
        os.unlink(f"{root}/usr/lib/b/three")
        os.symlink("../a", f"{root}/usr/lib/b/three")

    entries = roundtrip(tmp_path, base_tree, step)
    kinds = {e.path: e.kind for e in entries}
    assert kinds["etc/hosts"] is Kind.DIR and kinds["usr/lib/a"] is Kind.FILE
    assert kinds["usr/lib/b/three"] is Kind.SYMLINK
    assert not [e.path for e in entries if ".wh." in e.path]


def test_hardlinks_stay_hardlinks(tmp_path):
    def step(root):
        write(f"{root}/usr/lib/b/big", b"x" * 5000)
        os.link(f"{root}/usr/lib/b/big", f"{root}/usr/lib/a/big-link")
        os.link(f"{root}/etc/passwd", f"{root}/etc/passwd-")   # a new name for an old file

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    # Tar order decides which name carries the content: usr/lib/a/ comes before usr/lib/b/.
    assert entries["usr/lib/a/big-link"].kind is Kind.FILE
    assert (entries["usr/lib/b/big"].kind, entries["usr/lib/b/big"].linkname) == (Kind.HARDLINK, "usr/lib/a/big-link")
    # Linking changes the old inode's ctime, so the old name is in the layer and carries the content.
    assert entries["etc/passwd"].kind is Kind.FILE
    assert (entries["etc/passwd-"].kind, entries["etc/passwd-"].linkname) == (Kind.HARDLINK, "etc/passwd")


def test_symlinks_new_retargeted_dangling(tmp_path):
    def step(root):
        os.unlink(f"{root}/bin")
        os.symlink("/usr/bin", f"{root}/bin")
        os.symlink("does/not/exist", f"{root}/etc/dangling")

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    assert entries["bin"].linkname == "/usr/bin" and entries["etc/dangling"].linkname == "does/not/exist"


def test_user_xattrs(tmp_path):
    def step(root):
        try:
            os.setxattr(f"{root}/usr/lib/a/one", "user.origin", b"step")
        except OSError as e:
            pytest.skip(f"no user xattrs on {tmp_path}: {e.strerror}")

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    assert entries["usr/lib/a/one"].xattrs == {"user.origin": b"step"}


@pytest.mark.needs_root
def test_file_capability_added_by_a_step(tmp_path):
    # struct vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (13)
    capability = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)

    def step(root):
        os.setxattr(f"{root}/usr/bin/tool", "security.capability", capability)

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    assert entries["usr/bin/tool"].xattrs == {"security.capability": capability}


@pytest.mark.needs_root
def test_device_nodes_and_fifos(tmp_path):
    def step(root):
        os.makedirs(f"{root}/dev")
        os.mknod(f"{root}/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(f"{root}/dev/loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
        os.mkfifo(f"{root}/dev/pipe", 0o620)

    entries = by_path(roundtrip(tmp_path, base_tree, step))
    assert (entries["dev/null"].kind, entries["dev/null"].devmajor, entries["dev/null"].devminor) == (Kind.CHAR, 1, 3)
    assert entries["dev/loop0"].kind is Kind.BLOCK and entries["dev/pipe"].kind is Kind.FIFO


def test_fifo_without_root(tmp_path):
    entries = by_path(roundtrip(tmp_path, base_tree, lambda root: os.mkfifo(f"{root}/tmp/fifo", 0o600)))
    assert entries["tmp/fifo"].kind is Kind.FIFO and entries["tmp"].mode == 0o1777


def test_excluded_paths_never_appear(tmp_path):
    def step(root):
        write(f"{root}/etc/resolv.conf", b"nameserver 10.0.0.1\n")   # a sandbox placeholder
        os.unlink(f"{root}/etc/hosts")                               # also the sandbox's
        write(f"{root}/proc/self/status", b"mounted")                 # a whole excluded tree
        write(f"{root}/usr/lib/a/real", b"the step's own change")

    entries = roundtrip(tmp_path, base_tree, step, exclude=("/etc/resolv.conf", "etc/hosts", "proc"))
    paths = [e.path for e in entries]
    assert not [p for p in paths if "resolv" in p or "hosts" in p or p.startswith("proc")]
    assert "usr/lib/a/real" in paths


def test_snapshot_exclusions_apply_to_the_diff(tmp_path):
    entries = roundtrip(tmp_path, base_tree, lambda root: write(f"{root}/etc/hosts", b"changed"),
                        snapshot_exclude=("etc/hosts",), exclude=("etc/hosts",))
    assert "etc/hosts" not in by_path(entries)


def test_idmap_maps_disk_ids(tmp_path):
    def step(root):
        write(f"{root}/usr/lib/a/new", b"n")

    before = tmp_path / "t"
    before.mkdir()
    base_tree(str(before))
    snap = snapshot(str(before))
    step(str(before))
    me = (os.geteuid(), os.getegid())
    entries = by_path(diff(snap, str(before), idmap=lambda uid, gid: (0, 0) if (uid, gid) == me else (uid + 1, gid + 1)))
    assert (entries["usr/lib/a/new"].uid, entries["usr/lib/a/new"].gid) == (0, 0)


def test_mtime_clamp(tmp_path):
    entries = roundtrip(tmp_path, base_tree, lambda root: None)
    assert entries == []
    root = tmp_path / "before"
    snap = snapshot(str(root))
    write(f"{root}/usr/lib/a/new", b"n")
    assert {e.mtime for e in diff(snap, str(root), mtime_clamp=T0)} == {T0}


def test_rootless_owners_are_used_and_kept_up_to_date(tmp_path):
    root = tmp_path / "rootfs"
    base_tree(str(root))
    os.mkdir(root / "dev")   # a rootless extraction makes the directory, not the device node
    owners = {"etc": Owner(0, 0, 0o755), "etc/passwd": Owner(0, 42, 0o640), "etc/hosts": Owner(7, 7, 0o600),
              "usr/lib/a/one": Owner(3, 3, 0o400), "dev/null": Owner(0, 0, 0o666, Kind.CHAR, 1, 3)}
    snap = snapshot(str(root), owners=owners)
    with open(f"{root}/etc/passwd", "ab") as f:      # content only: owner and mode come from the map
        f.write(b"more\n")
    os.chmod(f"{root}/etc/hosts", 0o604)             # the step's chmod wins over the map's mode
    os.unlink(f"{root}/usr/lib/a/one")               # deleted: its record goes
    write(f"{root}/usr/lib/a/one", b"new inode")
    me = (os.geteuid(), os.getegid())
    entries = by_path(diff(snap, str(root), owners=owners, idmap=lambda u, g: (0, 0) if (u, g) == me else (u, g)))
    assert (entries["etc/passwd"].uid, entries["etc/passwd"].gid, entries["etc/passwd"].mode) == (0, 42, 0o640)
    assert (entries["etc/hosts"].uid, entries["etc/hosts"].mode) == (7, 0o604)
    assert (entries["usr/lib/a/one"].uid, entries["usr/lib/a/one"].mode) == (0, 0o644)
    assert entries["etc"].mode == 0o755
    assert "usr/lib/a/one" not in owners and owners["etc/hosts"] == Owner(7, 7, 0o604)
    assert owners["dev/null"].kind is Kind.CHAR   # a device node the disk never held stays recorded
    assert snap.owners["etc/hosts"] == Owner(7, 7, 0o600)   # the snapshot kept its own copy


def test_sockets_are_left_out(tmp_path):
    import socket
    root = tmp_path / "r"
    root.mkdir()
    snap = snapshot(str(root))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        assert diff(snap, str(root)) == []


# ------------------------------------------------------------------------------ random steps

def random_tree(rng: random.Random):
    seed = rng.random()

    def build(root):
        rng_local = random.Random(seed)   # the same tree for both copies
        dirs = [""]
        for n in range(rng_local.randint(5, 30)):
            parent = rng_local.choice(dirs)
            path = f"{root}/{parent}/n{n}".replace("//", "/")
            what = rng_local.random()
            if what < 0.3:
                os.mkdir(path, 0o755)
                dirs.append(f"{parent}/n{n}".lstrip("/"))
            elif what < 0.85:
                write(path, bytes(rng_local.getrandbits(8) for _ in range(rng_local.randint(0, 40))),
                      rng_local.choice([0o644, 0o600, 0o755, 0o4755]))
            else:
                os.symlink(rng_local.choice(["n0", "../x", "/etc"]), path)
    return build


def random_step(rng: random.Random):
    def step(root):
        for n in range(rng.randint(1, 8)):
            paths = sorted(p for p, _, _ in walk(root))
            files = [p for p in paths if os.path.isfile(f"{root}/{p}") and not os.path.islink(f"{root}/{p}")]
            dirs = [""] + [p for p in paths if os.path.isdir(f"{root}/{p}") and not os.path.islink(f"{root}/{p}")]
            op = rng.choice(["add", "append", "rewrite", "chmod", "delete", "mkdir", "redo_dir", "link",
                             "symlink", "rename", "file_to_dir"])
            target = f"{root}/{rng.choice(dirs)}".rstrip("/")
            fresh = f"{target}/s{n}_{rng.randint(0, 99)}"
            if os.path.lexists(fresh):
                continue
            if op == "add":
                write(fresh, b"new %d" % n)
            elif op == "mkdir":
                os.mkdir(fresh)
            elif op == "symlink":
                os.symlink("somewhere", fresh)
            elif files and op in ("append", "rewrite", "chmod", "link", "rename", "file_to_dir"):
                path = f"{root}/{rng.choice(files)}"
                if op == "append":
                    with open(path, "ab") as f:
                        f.write(b"+")
                elif op == "rewrite":   # same size, same mtime: only the ctime changes
                    st = os.lstat(path)
                    with open(path, "r+b") as f:
                        f.write(b"~" * min(st.st_size, 3))
                    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
                elif op == "chmod":
                    os.chmod(path, rng.choice([0o600, 0o2755, 0o1777, 0o444]))
                elif op == "link":
                    os.link(path, fresh)
                elif op == "rename":
                    os.rename(path, fresh)
                else:
                    os.unlink(path)
                    write(f"{path}/inside", b"was a file")
            elif op in ("delete", "redo_dir") and len(paths) > 1:
                victim = f"{root}/{rng.choice(paths)}"
                if os.path.isdir(victim) and not os.path.islink(victim):
                    import shutil
                    shutil.rmtree(victim)
                    if op == "redo_dir":
                        write(f"{victim}/again", b"again")
                else:
                    os.unlink(victim)
    return step


@pytest.mark.parametrize("seed", range(40))
def test_random_steps_round_trip(tmp_path, seed):
    rng = random.Random(seed)
    roundtrip(tmp_path, random_tree(rng), random_step(rng))


@pytest.mark.parametrize("seed", range(100, 110))
def test_random_steps_round_trip_into_a_rootless_extraction(tmp_path, seed):
    rng = random.Random(seed)
    roundtrip(tmp_path, random_tree(rng), random_step(rng), rootless=True)


def test_snapshot_is_fast_enough(tmp_path):
    """A guard against accidental content reads or quadratic work, not a benchmark."""
    for d in range(20):
        os.makedirs(tmp_path / f"d{d}")
        for f in range(100):
            (tmp_path / f"d{d}" / f"f{f}").write_bytes(b"x")
    start = time.perf_counter()
    snap = snapshot(str(tmp_path))
    assert diff(snap, str(tmp_path)) == []
    assert time.perf_counter() - start < 1.0   # 2,000 files; about 0.03 s here
