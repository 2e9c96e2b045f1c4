"""The two ways a RUN layer is taken give the same bytes: an overlayfs upper directory
(`layer.overlay.upper_diff`) and a snapshot compared with the tree in place (`layer.diff`).

The same change (a Python script) is made once on an overlay of a lower tree, in a mount
namespace of its own, and once on a `cp -a` copy of that tree; the layers, written with the
SOURCE_DATE_EPOCH clamp, must be byte for byte equal. As root ("trusted" overlay xattrs) and in
a user namespace mapping root onto root ("user" xattrs, mounted with userxattr).
A whole build both ways (`OCIBUILD_NO_OVERLAY=1` forces the copy) closes the loop.

One known difference is left out: removing one name of a hardlink of a lower layer changes the
other name's link count (its ctime), so the snapshot emits that other name again, unchanged;
the upper directory holds only the whiteout. Both layers give the same tree.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocibuild.layer.diff import diff
from ocibuild.layer.overlay import LowerView, upper_diff
from ocibuild.layer.snapshot import snapshot
from ocibuild.layer.tarwriter import write_tar
from ocibuild.layerspec import build as build_base
from ocibuild.layerspec import load_spec

REPO = Path(__file__).resolve().parents[2]
EPOCH = 1_600_000_000
OLD = 1_500_000_000
CAP = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")  # cap_net_bind_service+ep

CHANGE = r'''
import os, shutil, sys
user = sys.argv[1] == "user"
os.remove("gone/deep/x"); os.rmdir("gone/deep"); os.rmdir("gone")          # whiteout at the top only
shutil.rmtree("opq"); os.mkdir("opq"); open("opq/new", "w").write("n\n")   # deleted, made again
os.link("d/f", "d/f2")                                                     # a new name for a lower file
os.makedirs("new/sub"); open("new/a", "w").write("a\n"); os.link("new/a", "new/b")
os.symlink("../d/f", "keep/link"); os.mkfifo("keep/fifo")
os.chmod("bin/tool", 0o4755)                                               # setuid, content untouched
os.chown("d/h1", 0 if user else 1000, 1000 if not user else 0); os.chmod("d/h1", 0o600)
os.setxattr("cap", "user.note" if user else "security.capability", XATTR)
open("untouched", "a").close()                                             # opened for writing, unchanged
os.remove("dir/tmp-made"); os.rmdir("dir")                                  # a whole directory gone
open("etc/made-and-gone", "w").close(); os.remove("etc/made-and-gone")     # no trace but /etc's mtime
shutil.move("mv/src", "mv/dst")                                             # renamed in place, copied on an overlay (EXDEV)
'''


def make_lower(root: Path) -> None:
    for d in ("d", "bin", "gone/deep", "opq/old", "keep", "dir", "etc", "mv/src/in"):
        (root / d).mkdir(parents=True, exist_ok=True)
    files = {"d/f": "f\n", "d/h1": "h\n", "bin/tool": "#!/bin/sh\n", "gone/deep/x": "x\n", "opq/old/y": "y\n",
             "cap": "\x7fELF", "pair1": "p\n", "untouched": "u\n", "dir/tmp-made": "t\n", "etc/passwd": "root\n",
             "mv/src/in/z": "z\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    os.link(root / "pair1", root / "pair2")
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    os.utime(root, (OLD, OLD))


def layer_bytes(entries) -> bytes:
    clamped = []
    for e in entries:
        if e.mtime > EPOCH:
            e.mtime = EPOCH
        clamped.append(e)
    out = io.BytesIO()
    write_tar(clamped, out)
    return out.getvalue()


def change_script(flavour: str, xattr: bytes) -> str:
    return CHANGE.replace("XATTR", repr(xattr))


def in_place(tmp: Path, lower: Path, flavour: str, xattr: bytes) -> bytes:
    flat = tmp / "flat"
    subprocess.run(["cp", "-a", str(lower), str(flat)], check=True)
    before = snapshot(str(flat))
    subprocess.run([sys.executable, "-c", change_script(flavour, xattr), flavour], cwd=flat, check=True)
    return layer_bytes(diff(before, str(flat)))


def on_overlay(tmp: Path, lower: Path, flavour: str, xattr: bytes) -> bytes:
    upper, work, merged = (tmp / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    mount = ("import sys; sys.path.insert(0, %r); from ocibuild.sandbox import _mounts as m; "
             "m.mount_overlay(%r, [%r], %r, %r, %r)") % (str(REPO), str(merged), str(lower), str(upper), str(work), flavour)
    script = mount + "\nimport os; os.chdir(%r)\n" % str(merged) + change_script(flavour, xattr)
    prefix = ["unshare", "-m"] if flavour == "trusted" else \
        ["unshare", "-U", "--map-root-user", "-m"]  # only root mapped: no chown to 1000 there
    subprocess.run([*prefix, sys.executable, "-c", script, flavour], check=True)
    return layer_bytes(upper_diff(str(upper), LowerView([str(lower)], flavour)))


@pytest.mark.parametrize("flavour", ["trusted", "user"])
def test_overlay_layer_equals_snapshot_layer(tmp_path, require, flavour):
    require("root")
    lower = tmp_path / "lower"
    lower.mkdir()
    make_lower(lower)
    xattr = CAP if flavour == "trusted" else b"kept"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    expected = in_place(tmp_path / "a", lower, flavour, xattr)
    got = on_overlay(tmp_path / "b", lower, flavour, xattr)
    assert got == expected, _describe(got, expected)
    names = _names(got)
    assert {"gone/", ".wh.gone"} & names == {".wh.gone"}
    assert {"opq/.wh..wh..opq", "opq/new", "cap", "bin/tool", "d/f2", "new/b", "mv/dst/in/z",
            ".wh.dir", "mv/.wh.src", "etc/"} <= names
    assert "untouched" not in names and "etc/made-and-gone" not in names and "etc/passwd" not in names


def _names(layer: bytes) -> set[str]:
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {m.name + ("/" if m.isdir() else "") for m in tar}


def _describe(got: bytes, expected: bytes) -> str:
    import tarfile

    def listing(data: bytes) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return [f"{m.name} {m.type!r} {oct(m.mode)} {m.uid}:{m.gid} {m.mtime} {m.linkname} {m.pax_headers}"
                    for m in tar]
    return "overlay:\n  " + "\n  ".join(listing(got)) + "\nsnapshot:\n  " + "\n  ".join(listing(expected))


# -- a whole build both ways ----------------------------------------------------------------

DOCKERFILE = """\
FROM busybox
RUN mkdir -p /w/gone /w/opq/old /w/keep && echo a > /w/f && echo b > /w/gone/x && echo c > /w/opq/old/y \\
 && echo s > /w/tool && ln /w/f /w/f-link && echo keep > /w/keep/k
RUN rm -rf /w/gone /w/opq && mkdir /w/opq && echo n > /w/opq/new && chmod 4755 /w/tool \\
 && chown 1000:1000 /w/f && ln -s ../f /w/keep/sym && mkfifo /w/keep/fifo && rm /bin/true
COPY file.txt /w/copied
RUN echo after-copy >> /w/copied && rm /w/keep/k && touch /w/keep/new && ln /w/copied /w/copied-link
"""


def test_build_same_layers_with_and_without_overlay(tmp_path, require, monkeypatch):
    require("root")
    layout = tmp_path / "busybox"
    build_base(load_spec(REPO / "layers" / "busybox.yaml"), layout, cache=Path("/var/tmp/ocibuild-debcache"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "file.txt").write_text("from the context\n")
    results = {}
    for mode, env in (("overlay", "0"), ("copy", "1")):
        out = tmp_path / f"{mode}.tar"
        proc = subprocess.run(
            [sys.executable, "-m", "ocibuild", "build", "--no-cache", "--progress", "plain",
             "--build-context", f"busybox=oci-layout://{layout}:latest", "-o", f"type=oci,dest={out}", str(ctx)],
            capture_output=True, text=True, cwd=REPO,
            env={**os.environ, "OCIBUILD_NO_OVERLAY": env, "SOURCE_DATE_EPOCH": str(EPOCH),
                 "OCIBUILD_CACHE_DIR": str(tmp_path / f"cache-{mode}")})
        assert proc.returncode == 0, proc.stderr
        assert ("overlayfs upper directory" in proc.stderr) == (mode == "overlay"), proc.stderr
        results[mode] = _diff_ids(out)
    # Layer 3 (the COPY) is left out: it carries /w with the build's own time, unclamped, in
    # both modes (COPY takes parent directories from the tree; see the report of this change).
    runs = [0, 1, 2, 4]
    assert [results["overlay"][i] for i in runs] == [results["copy"][i] for i in runs]


def _diff_ids(archive: Path) -> list[str]:
    import tarfile
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
    return config["rootfs"]["diff_ids"]
