"""`ocibuild manifest` and `ocibuild imagetools` against the reference registry (docker-registry 2.8).

The distributed pattern end to end: one Dockerfile built for each platform in its own process
with its own cache dir, each result pushed by digest; then one index over both, checked with
skopeo. Then the `docker manifest` flow (local lists, annotate, push with blob mounts from
another repository), `imagetools create --append/--dry-run/--annotation`, htpasswd auth
through a config.json written by `registry.auth.login`, and `--insecure` against TLS.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import USERS, options, repo_name
from ocibuild.cli import imagetools as imagetools_cli
from ocibuild.cli import manifest as manifest_cli
from ocibuild.oci import Reference
from ocibuild.registry import RepositoryClient, TLSOptions, TransportOptions, auth, push_image
from ocibuild.store import OciLayout

pytestmark = [pytest.mark.needs_registry, pytest.mark.needs_tool("skopeo")]
REPO = Path(__file__).resolve().parents[2]
PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A cache dir (where local lists live) and an empty Docker config per test."""
    monkeypatch.setenv("OCIBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path / "cache"


def build_platform(platform: str, dest: Path, cache: Path) -> tuple[OciLayout, object]:
    """`ocibuild build --platform P -o type=oci,dest=...` of examples/hello in its own process and cache."""
    env = {**os.environ, "OCIBUILD_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-m", "ocibuild", "build", "-q", "--platform", platform,
                             "-o", f"type=oci,dest={dest},tar=false", "examples/hello"],
                            cwd=REPO, env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    layout = OciLayout(dest)
    (desc,) = layout.index().manifests
    return layout, desc


@pytest.fixture(scope="module")
def hello_builds(tmp_path_factory):
    """The two single-platform builds (layout, descriptor) per platform, made once per module."""
    root = tmp_path_factory.mktemp("hello")
    return {p: build_platform(p, root / p.replace("/", "-"), root / f"cache-{p.replace('/', '-')}")
            for p in PLATFORMS}


def push_builds(builds, host: str, repo: str, **kw) -> dict[str, str]:
    """Push every build by digest (no tag) to ``host/repo``; platform -> digest."""
    ref = Reference.parse(f"{host}/{repo}")
    return {p: str(push_image(layout, desc, ref, by_digest=True, **kw).digest)
            for p, (layout, desc) in builds.items()}


def run(main, *argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(main, *argv: str, capsys) -> str:
    code, out, err = run(main, *argv, capsys=capsys)
    assert code == 0, err
    return out


def skopeo_raw(ref: str, *flags: str) -> bytes:
    result = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", *flags, f"docker://{ref}"],
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def platforms_of(index: dict) -> dict[str, str]:
    return {"/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"],
                                   m["platform"].get("variant")))): m["digest"] for m in index["manifests"]}


# -- the distributed pattern ------------------------------------------------------------------

def test_distributed_builds_combined_into_one_index(plain_registry, hello_builds, capsys):
    host, repo = plain_registry.host, repo_name("app")
    digests = push_builds(hello_builds, host, repo)
    assert len(set(digests.values())) == 2
    sources = [f"{host}/{repo}@{d}" for d in digests.values()]
    printed = ok(imagetools_cli.main, "create", "-t", f"{host}/{repo}:1.2", *sources, capsys=capsys).strip()

    served = skopeo_raw(f"{host}/{repo}:1.2")
    assert "sha256:" + hashlib.sha256(served).hexdigest() == printed
    index = json.loads(served)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert platforms_of(index) == digests
    for digest in digests.values():  # every child is served by digest, byte-exact as built
        layout = hello_builds[next(p for p, d in digests.items() if d == digest)][0]
        assert skopeo_raw(f"{host}/{repo}@{digest}") == layout.read_blob(digest)

    summary = ok(imagetools_cli.main, "inspect", f"{host}/{repo}:1.2", capsys=capsys)
    assert f"Digest:    {printed}" in summary
    assert "Platform:    linux/amd64" in summary and "Platform:    linux/arm64" in summary
    for digest in digests.values():
        assert f"Name:        {host}/{repo}:1.2@{digest}" in summary
    raw = ok(imagetools_cli.main, "inspect", "--raw", f"{host}/{repo}:1.2", capsys=capsys)
    assert raw.encode() == served


def test_imagetools_create_into_another_repository_mounts_blobs(proxy, hello_builds, capsys):
    source_repo, target_repo = repo_name("ci"), repo_name("team")
    digests = push_builds(hello_builds, proxy.host, source_repo)
    proxy.reset()
    sources = [f"{proxy.host}/{source_repo}@{d}" for d in digests.values()]
    ok(imagetools_cli.main, "create", "-t", f"{proxy.host}/{target_repo}:1", "-t", f"{proxy.host}/{target_repo}:one",
       *sources, capsys=capsys)
    assert_mounted_not_uploaded(proxy, hello_builds)
    assert skopeo_raw(f"{proxy.host}/{target_repo}:1") == skopeo_raw(f"{proxy.host}/{target_repo}:one")


def assert_mounted_not_uploaded(proxy, builds) -> None:
    """Every blob was mounted (a POST and no blob PUT/PATCH); only configs were read, never a layer."""
    manifests = [json.loads(layout.read_blob(desc.digest)) for layout, desc in builds.values()]
    posts = [p for m, p in proxy.requests if m == "POST"]
    blobs = {d["digest"] for m in manifests for d in (m["config"], *m["layers"])}
    assert len(posts) == len(blobs)  # the images share some layers: each blob is mounted once
    assert not [p for m, p in proxy.requests if m == "PATCH" or (m == "PUT" and "/blobs/" in p)]
    read = {p.rsplit("/", 1)[-1] for m, p in proxy.requests if m == "GET" and "/blobs/" in p}
    assert read <= {m["config"]["digest"] for m in manifests}


def test_imagetools_source_index_contributes_all_its_manifests(plain_registry, hello_builds, capsys):
    host, repo = plain_registry.host, repo_name("app")
    digests = push_builds(hello_builds, host, repo)
    amd64, arm64 = (f"{host}/{repo}@{digests[p]}" for p in PLATFORMS)
    ok(imagetools_cli.main, "create", "-t", f"{host}/{repo}:amd64-only", amd64, capsys=capsys)
    # a single index source with nothing added is copied byte-exact (buildx's carbon copy)
    ok(imagetools_cli.main, "create", "-t", f"{host}/{repo}:copy", f"{host}/{repo}:amd64-only", capsys=capsys)
    assert skopeo_raw(f"{host}/{repo}:copy") == skopeo_raw(f"{host}/{repo}:amd64-only")
    ok(imagetools_cli.main, "create", "-t", f"{host}/{repo}:both", f"{host}/{repo}:amd64-only", arm64, amd64,
       capsys=capsys)
    index = json.loads(skopeo_raw(f"{host}/{repo}:both"))
    assert platforms_of(index) == digests  # the duplicate amd64 is listed once


def test_imagetools_append_and_annotations(plain_registry, hello_builds, capsys):
    host, repo = plain_registry.host, repo_name("app")
    digests = push_builds(hello_builds, host, repo)
    tag = f"{host}/{repo}:1.2"
    ok(imagetools_cli.main, "create", "-t", tag, f"{host}/{repo}@{digests['linux/amd64']}", capsys=capsys)
    assert list(platforms_of(json.loads(skopeo_raw(tag)))) == ["linux/amd64"]
    ok(imagetools_cli.main, "create", "--append", "-t", tag, "--annotation", "index:org.example.team=core",
       "--annotation", "org.opencontainers.image.title=hello", f"{host}/{repo}@{digests['linux/arm64']}",
       capsys=capsys)
    index = json.loads(skopeo_raw(tag))
    assert platforms_of(index) == digests
    assert list(platforms_of(index)) == ["linux/amd64", "linux/arm64"]  # the existing entries come first
    assert index["annotations"] == {"org.example.team": "core", "org.opencontainers.image.title": "hello"}
    code, _, err = run(imagetools_cli.main, "create", "-t", tag, "--annotation", "manifest:a=b",
                       f"{host}/{repo}@{digests['linux/arm64']}", capsys=capsys)
    assert code == 1 and err.startswith("ERROR: invalid --annotation") and err.count("\n") == 1


def test_imagetools_dry_run_pushes_nothing(proxy, hello_builds, capsys):
    repo = repo_name("app")
    digests = push_builds(hello_builds, proxy.host, repo)
    proxy.reset()
    out = ok(imagetools_cli.main, "create", "--dry-run", "-t", f"{proxy.host}/{repo}:1.2",
             *(f"{proxy.host}/{repo}@{d}" for d in digests.values()), capsys=capsys)
    assert platforms_of(json.loads(out)) == digests
    assert [m for m, _ in proxy.requests if m not in ("GET", "HEAD")] == []
    client = RepositoryClient.for_reference(Reference.parse(f"{proxy.host}/{repo}:1.2"))
    assert client.head_manifest("1.2") is None


# -- docker manifest -------------------------------------------------------------------------

def test_manifest_create_annotate_push_from_another_repository(proxy, hello_builds, isolated, capsys):
    source_repo, list_repo = repo_name("ci"), repo_name("team")
    digests = push_builds(hello_builds, proxy.host, source_repo)
    amd64, arm64 = (f"{proxy.host}/{source_repo}@{digests[p]}" for p in PLATFORMS)
    lst = f"{proxy.host}/{list_repo}:1.2"
    out = ok(manifest_cli.main, "create", lst, amd64, capsys=capsys)
    assert out == f"Created manifest list {lst}\n"
    code, _, err = run(manifest_cli.main, "create", lst, arm64, capsys=capsys)
    assert code == 1 and "--amend" in err and err.count("\n") == 1
    ok(manifest_cli.main, "create", "--amend", lst, arm64, capsys=capsys)
    assert (isolated / "manifests").is_dir()
    ok(manifest_cli.main, "annotate", lst, arm64, "--arch", "aarch64", "--variant", "v8",
       "--os-features", "a,b", capsys=capsys)

    local = json.loads(ok(manifest_cli.main, "inspect", lst, capsys=capsys))
    assert platforms_of(local) == digests
    features = {m["platform"]["architecture"]: m["platform"].get("os.features") for m in local["manifests"]}
    assert features == {"amd64": None, "arm64": ["a", "b"]}
    verbose = json.loads(ok(manifest_cli.main, "inspect", "--verbose", lst, capsys=capsys))
    assert sorted(e["Ref"] for e in verbose) == sorted([amd64, arm64])  # entries in name order, as Docker
    assert all("OCIManifest" in e and e["Descriptor"]["digest"] in e["Ref"] for e in verbose)

    proxy.reset()
    printed = ok(manifest_cli.main, "push", lst, capsys=capsys).strip()
    assert_mounted_not_uploaded(proxy, hello_builds)
    served = skopeo_raw(lst)
    assert "sha256:" + hashlib.sha256(served).hexdigest() == printed
    assert json.loads(served) == local
    for digest in digests.values():
        assert skopeo_raw(f"{proxy.host}/{list_repo}@{digest}") == skopeo_raw(f"{proxy.host}/{source_repo}@{digest}")

    ok(manifest_cli.main, "rm", lst, capsys=capsys)
    remote = json.loads(ok(manifest_cli.main, "inspect", lst, capsys=capsys))  # no local list: the registry's
    assert remote == local
    remote_verbose = json.loads(ok(manifest_cli.main, "inspect", "-v", lst, capsys=capsys))
    assert sorted(e["Descriptor"]["digest"] for e in remote_verbose) == sorted(digests.values())
    code, _, err = run(manifest_cli.main, "rm", lst, capsys=capsys)
    assert code == 1 and err == f"ERROR: no such manifest list: {lst}\n"


def test_manifest_push_purge_and_refusals(plain_registry, hello_builds, isolated, capsys):
    host, repo = plain_registry.host, repo_name("app")
    digests = push_builds(hello_builds, host, repo)
    ok(imagetools_cli.main, "create", "-t", f"{host}/{repo}:index", *(f"{host}/{repo}@{d}" for d in digests.values()),
       capsys=capsys)
    lst = f"{host}/{repo}:1.2"
    code, _, err = run(manifest_cli.main, "create", lst, f"{host}/{repo}:index", capsys=capsys)
    assert code == 1 and "is a manifest list" in err and err.count("\n") == 1
    code, _, err = run(manifest_cli.main, "create", lst, f"{host}/{repo}:absent", capsys=capsys)
    assert code == 1 and "404" in err and err.count("\n") == 1
    code, _, err = run(manifest_cli.main, "create", lst, f"other.example:5000/{repo}@{digests['linux/amd64']}",
                       capsys=capsys)
    assert code == 1 and "registry" in err
    assert not (isolated / "manifests").exists() or not any((isolated / "manifests").iterdir())

    ok(manifest_cli.main, "create", lst, *(f"{host}/{repo}@{d}" for d in digests.values()), capsys=capsys)
    code, _, err = run(manifest_cli.main, "annotate", lst, f"{host}/{repo}@{digests['linux/amd64']}", "--arch",
                       "sparc99", capsys=capsys)
    assert code == 1 and "unknown architecture 'sparc99'" in err
    printed = ok(manifest_cli.main, "push", "--purge", lst, capsys=capsys).strip()
    assert printed == skopeo_digest(f"{host}/{repo}:1.2")
    assert platforms_of(json.loads(skopeo_raw(f"{host}/{repo}:1.2"))) == digests
    assert not any((isolated / "manifests").iterdir())
    code, _, err = run(manifest_cli.main, "push", lst, capsys=capsys)
    assert code == 1 and err.startswith("ERROR: no such manifest list")


def skopeo_digest(ref: str) -> str:
    return "sha256:" + hashlib.sha256(skopeo_raw(ref)).hexdigest()


# -- credentials and TLS ---------------------------------------------------------------------

def test_push_to_htpasswd_registry_with_login(htpasswd_registry, hello_builds, tmp_path, capsys):
    host, repo = htpasswd_registry.host, repo_name("app")
    alice = ("alice", USERS["alice"])
    digests = push_builds(hello_builds, host, repo, options=options(creds=alice))
    sources = [f"{host}/{repo}@{d}" for d in digests.values()]
    code, _, err = run(imagetools_cli.main, "create", "-t", f"{host}/{repo}:1.2", *sources, capsys=capsys)
    assert code == 1 and err.startswith("ERROR: ") and err.count("\n") == 1  # not logged in yet

    written = auth.login(host, *alice)
    assert written == tmp_path / "docker" / "config.json"
    ok(imagetools_cli.main, "create", "-t", f"{host}/{repo}:1.2", *sources, capsys=capsys)
    assert platforms_of(json.loads(skopeo_raw(f"{host}/{repo}:1.2", "--creds", ":".join(alice)))) == digests

    lst = f"{host}/{repo_name('team')}:1.2"
    ok(manifest_cli.main, "create", lst, *sources, capsys=capsys)
    printed = ok(manifest_cli.main, "push", lst, capsys=capsys).strip()
    assert printed == "sha256:" + hashlib.sha256(skopeo_raw(lst, "--creds", ":".join(alice))).hexdigest()
    assert USERS["alice"] not in json.dumps(json.loads(ok(manifest_cli.main, "inspect", "-v", lst, capsys=capsys)))


def test_insecure_flag_against_tls_registry(tls_registry, hello_builds, capsys):
    host, repo = tls_registry.host, repo_name("app")
    insecure = TransportOptions(tls=TLSOptions(insecure=True))
    digests = push_builds(hello_builds, host, repo, options=insecure)
    ref = f"{host}/{repo}@{digests['linux/amd64']}"
    code, _, err = run(imagetools_cli.main, "inspect", ref, capsys=capsys)
    assert code == 1 and "TLS" in err and err.count("\n") == 1
    assert f"Digest:    {digests['linux/amd64']}" in ok(imagetools_cli.main, "inspect", "--insecure", ref,
                                                         capsys=capsys)
    ok(imagetools_cli.main, "create", "--insecure", "-t", f"{host}/{repo}:1.2",
       *(f"{host}/{repo}@{d}" for d in digests.values()), capsys=capsys)
    lst = f"{host}/{repo}:list"
    ok(manifest_cli.main, "create", "--insecure", lst, ref, capsys=capsys)
    ok(manifest_cli.main, "push", "--insecure", lst, capsys=capsys)
    assert platforms_of(json.loads(skopeo_raw(lst))) == {"linux/amd64": digests["linux/amd64"]}
