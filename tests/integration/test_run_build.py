"""RUN in real builds: the busybox base from layers/, every platform through QEMU, the layer a
RUN makes (whiteouts, hard links, owners, modes), its errors, checked with independent readers."""

from __future__ import annotations

import hashlib
import tarfile
import time
from pathlib import Path

import pytest

from ocibuild.cli import main
from ocibuild.layerspec import build as build_base
from ocibuild.layerspec import load_spec
from support import imagetree
from support.ocilayout import Layout, decompressed, select
from support.validate import validate_oci_archive

REPO = Path(__file__).resolve().parents[2]
DEB_CACHE = Path("/var/tmp/ocibuild-debcache")
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm/v7": "armv7l",
            "linux/386": "i686", "linux/ppc64le": "ppc64le", "linux/s390x": "s390x"}


@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    layout = tmp_path_factory.mktemp("layers") / "busybox"
    build_base(load_spec(REPO / "layers" / "busybox.yaml"), layout, cache=DEB_CACHE)
    return f"busybox=oci-layout://{layout}:latest"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "cache"))


def build(busybox: str, ctx: Path, *argv: str) -> int:
    return main(["build", "--progress", "plain", "--build-context", busybox, *argv, str(ctx)])


def context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def content(archive: Path, platform: str, path: str) -> bytes:
    """A file's bytes in one platform's image, read with tarfile (not with ocibuild's code)."""
    with Layout.open(archive) as layout:
        image = select(layout, platform)
        for layer in reversed(image.manifest["layers"]):
            with layout.open_blob(layer["digest"]) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as lt:
                for member in lt:
                    if "/" + member.name.removeprefix("./") == path and member.isfile():
                        return lt.extractfile(member).read()
    raise AssertionError(f"{path} not found in {platform}")


def test_every_platform_runs_its_own_machine(busybox, tmp_path, require):
    require("binfmt:arm64", "binfmt:arm", "skopeo", "umoci", "oci-image-tool")
    ctx = context(tmp_path, "FROM busybox\nRUN uname -m > /arch && echo done $TARGETARCH > /note\n"
                            "ARG TARGETARCH\nRUN echo $TARGETARCH >> /note\n")
    out = tmp_path / "out.tar"
    assert build(busybox, ctx, "--platform", ",".join(MACHINES), "-o", f"type=oci,dest={out}") == 0
    validate_oci_archive(out)
    for platform, machine in MACHINES.items():
        assert content(out, platform, "/arch") == f"{machine}\n".encode(), platform
        assert content(out, platform, "/note").decode().split() == ["done", platform.split("/")[1]]


def test_the_layer_holds_exactly_the_change(busybox, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox\n"
        "RUN mkdir -p /d/sub /gone && echo 1 > /d/a && echo 2 > /d/b && echo x > /gone/x\n"
        "RUN rm /d/b && rm -r /gone && ln /d/a /d/hard && ln -s a /d/soft && chown 1000:50 /d/a"
        " && chmod 4755 /d/a && mkdir -p /d/sub && rm -r /d/sub && mkdir /d/sub && touch /d/sub/new\n"
        "RUN rm /bin/vi\n"))
    out = tmp_path / "out.tar"
    assert build(busybox, ctx, "--platform", "linux/amd64", "-o", f"type=oci,dest={out}") == 0
    files = imagetree.load(out, "linux/amd64").files
    assert "/d/b" not in files and "/gone" not in files and "/bin/vi" not in files
    assert files["/d/a"].uid == 1000 and files["/d/a"].gid == 50 and files["/d/a"].mode == 0o4755
    assert files["/d/hard"].linkname == files["/d/a"].linkname  # one hard-link group
    assert files["/d/soft"].type == "symlink" and files["/d/soft"].linkname == "a"
    assert "/d/sub/new" in files and "/bin/sh" in files
    names = _layer_names(out)
    assert "d/.wh.b" in names[2] and ".wh.gone" in names[2] and "bin/.wh.vi" in names[3]
    assert len(names[3]) == 2  # `RUN rm /bin/vi`: the whiteout and its parent, nothing else


def _layer_names(archive: Path) -> list[list[str]]:
    with Layout.open(archive) as layout:
        out = []
        for layer in select(layout).manifest["layers"]:
            with layout.open_blob(layer["digest"]) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as lt:
                out.append([m.name for m in lt])
        return out


def test_env_args_workdir_and_user_reach_the_command(busybox, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox\nARG A=from-arg\nENV E=from-env\nWORKDIR /w\n"
        "RUN echo \"$A $E $(pwd)\" > /w/seen && chown nobody /w\n"
        "USER nobody\nRUN id -u > /w/uid\n"))
    out = tmp_path / "root"
    assert build(busybox, ctx, "--build-arg", "A=given", "-o", f"type=local,dest={out}") == 0
    assert (out / "w" / "seen").read_text() == "given from-env /w\n"
    assert (out / "w" / "uid").read_text() == "65534\n"


def test_a_failing_run_names_its_line_and_exit_code(busybox, tmp_path, capsys):
    ctx = context(tmp_path, "FROM busybox\n\nRUN echo oops >&2 && exit 3\n")
    assert build(busybox, ctx, "-o", f"type=oci,dest={tmp_path / 'o.tar'}") == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ERROR: Dockerfile:3: RUN:") and "exit code: 3" in last
    assert "oops" in err
    assert not (tmp_path / "o.tar").exists()


def test_network_none_has_only_loopback(busybox, tmp_path):
    ctx = context(tmp_path, "FROM busybox\nRUN --network=none cat /proc/net/dev > /net\n")
    out = tmp_path / "root"
    assert build(busybox, ctx, "-o", f"type=local,dest={out}") == 0
    interfaces = [line.split(":")[0].strip() for line in (out / "net").read_text().splitlines()[2:]]
    assert interfaces == ["lo"]
    assert not (out / "etc" / "resolv.conf").exists() or (out / "etc" / "resolv.conf").stat().st_size == 0


def test_an_unrunnable_platform_fails_before_any_work(busybox, tmp_path, capsys):
    ctx = context(tmp_path, "FROM busybox\nRUN true\n")
    assert build(busybox, ctx, "--platform", "linux/arm64,linux/sparc64", "-o", f"type=oci,dest={tmp_path / 'o'}") == 1
    out = capsys.readouterr()
    assert out.err.strip().splitlines()[-1] == ("ERROR: cannot run RUN steps for linux/sparc64 on this "
                                                "linux/amd64 machine: QEMU has no emulator for it")
    assert "FROM busybox" not in out.err  # nothing started


def test_binfmt_reports_how_each_platform_runs(capsys, require):
    require("binfmt:arm64")
    assert main(["binfmt"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "qemu (binfmt_misc)" in rows["linux/arm64"] and "native" in rows["linux/amd64"]
    assert "32-bit personality" in rows["linux/386"]


def _all_bytes(archive: Path) -> bytes:
    """Every blob of an OCI archive, layers decompressed: what a secret must never appear in."""
    out = []
    with Layout.open(archive) as layout:
        for name in layout.names():
            data = layout.read(name)
            out.append(data)
            if data[:2] == b"\x1f\x8b":
                import gzip
                out.append(gzip.decompress(data))
    return b"".join(out)


def test_a_secret_reaches_the_step_and_nothing_else(busybox, tmp_path, capsys, monkeypatch):
    marker = "s3cr3t-" + tmp_path.name
    (tmp_path / "token").write_text(marker)
    monkeypatch.setenv("API_KEY", marker + "-env")
    ctx = context(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=tok md5sum < /run/secrets/tok | cut -d' ' -f1 > /seen1\n"
        "RUN --mount=type=secret,id=API_KEY,target=/k,required=true grep -q s3cr3t /k && echo ok > /seen2\n"
        "RUN echo $(ls /run 2>/dev/null) > /run-after\n"))
    out = tmp_path / "o.tar"
    assert build(busybox, ctx, "--secret", f"id=tok,src={tmp_path / 'token'}", "--secret", "id=API_KEY",
                 "-o", f"type=oci,dest={out}") == 0
    logs = capsys.readouterr()
    assert content(out, "linux/amd64", "/seen1").decode().strip() == hashlib.md5(marker.encode()).hexdigest()
    assert content(out, "linux/amd64", "/seen2") == b"ok\n"
    assert marker.encode() not in _all_bytes(out)
    assert marker not in logs.out + logs.err
    assert "/k" not in imagetree.load(out, "linux/amd64").files


def test_a_required_secret_that_is_missing_fails_the_step(busybox, tmp_path, capsys):
    ctx = context(tmp_path, "FROM busybox\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n")
    assert build(busybox, ctx, "-o", f"type=oci,dest={tmp_path / 'o.tar'}") == 1
    assert "ERROR: Dockerfile:2: RUN: secret 'nope' is required" in capsys.readouterr().err


def test_cache_bind_and_tmpfs_mounts(busybox, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox AS data\nRUN echo from-stage > /made\n"
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/var/cache/app,id=app echo x >> /var/cache/app/log"
        " && wc -l < /var/cache/app/log > /count\n"
        "RUN --mount=type=bind,source=input.txt,target=/mnt/in cat /mnt/in > /copied\n"
        "RUN --mount=type=bind,rw,target=/mnt/ctx echo scribble > /mnt/ctx/input.txt\n"
        "RUN --mount=type=bind,from=data,source=/made,target=/m cat /m > /from-stage\n"
        "RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs-seen\n"),
        **{"input.txt": "context data\n"})
    for run_number in (1, 2):
        root = tmp_path / f"root{run_number}"
        again = ["--no-cache"] if run_number == 2 else []  # else the step itself is served from the build cache
        assert build(busybox, ctx, *again, "-o", f"type=local,dest={root}") == 0
        assert (root / "count").read_text().strip() == str(run_number)  # the cache mount outlives the build
    assert (root / "copied").read_text() == "context data\n"
    assert (ctx / "input.txt").read_text() == "context data\n"  # rw bind writes are thrown away
    assert (root / "from-stage").read_text() == "from-stage\n"
    assert (root / "tmpfs-seen").read_text() == "x\n"
    assert not (root / "scratch").exists() and not (root / "mnt").exists()
    assert not (root / "var" / "cache" / "app").exists()


def test_source_date_epoch_makes_run_then_copy_reproducible(busybox, tmp_path):
    """The COPY carries /w, which the RUN before it made: its time is clamped like the rest."""
    ctx = context(tmp_path, "FROM busybox\nRUN mkdir /w && echo a > /w/a\nCOPY f /w/f\n", f="hi\n")
    digests = []
    for n in (1, 2):
        out = tmp_path / f"o{n}.tar"
        assert build(busybox, ctx, "--no-cache", "--source-date-epoch", "100", "-o", f"type=oci,dest={out}") == 0
        with Layout.open(out) as layout:
            digests.append(layout.read_json("index.json")["manifests"][0]["digest"])
        time.sleep(1.1)  # a second later: any unclamped time would show
    assert digests[0] == digests[1]
