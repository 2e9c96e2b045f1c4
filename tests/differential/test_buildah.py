"""Differential tests: every fixtures/valid/<case> built by buildah and by ocibuild.

- `test_buildah_expectations[case]` builds the case with buildah and checks the case's written
  `expect:` facts: it proves the fixtures and their expectations right, independently of ocibuild.
- `test_ocibuild_matches_buildah[case]` builds the case with

      python -m ocibuild build --platform P1,P2 [--build-arg K=V] [--target T]
             [--build-context NAME=DIR] -f <case>/Dockerfile
             --output type=oci,dest=<tmp>/out.tar <case>/context

  (the flags of ``docker buildx build``), runs the validators of `support.validate` on out.tar,
  checks that it holds exactly one image per requested platform, checks the `expect:` facts on
  each, and compares each platform's tree and config with buildah's.

BuildKit is the product's reference and buildah the independent check: a case where the two are
known to differ says so in `skip_buildah:` and is then checked against its `expect:` facts only.
Modification times are never compared. Run the buildah half alone with ``-k "not ocibuild"``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import imagetree
from support.buildah import Buildah
from support.cases import Case, check_expectations, load_cases
from support.require import require
from support.buildah_run import compare_output

CASES = load_cases()
pytestmark = [pytest.mark.differential]


def _params(for_buildah: bool) -> list:
    params = []
    for case in CASES:
        marks = [pytest.mark.xdist_group(case.name)]
        if for_buildah and case.skip_buildah:
            marks += [pytest.mark.skip(reason=f"skip_buildah: {case.skip_buildah}"),
                      pytest.mark.ci_skip_ok]
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.fixture(scope="session")
def buildah(tmp_path_factory) -> Buildah:
    """One private containers/storage root per pytest(-xdist) worker."""
    require("root", "buildah")
    return Buildah(tmp_path_factory.mktemp("buildah") / "root")


@pytest.fixture(scope="session")
def buildah_trees(buildah, tmp_path_factory):
    """`trees(case)` -> {platform: ImageTree} built by buildah, memoised per worker."""
    memo: dict[str, dict[str, imagetree.ImageTree]] = {}

    def trees(case: Case) -> dict[str, imagetree.ImageTree]:
        if case.name not in memo:
            work = tmp_path_factory.mktemp(f"buildah-{case.name}")
            prepared = case.prepare(work / "case")
            memo[case.name] = {}
            for platform in case.platforms:
                out = work / (platform.replace("/", "-") + ".tar")
                buildah.build_archive(out, prepared.context, prepared.dockerfile, platform,
                                      build_args=case.build_args, target=case.target,
                                      build_contexts=prepared.build_contexts)
                memo[case.name][platform] = imagetree.load(out, platform)
        return memo[case.name]

    return trees


@pytest.mark.parametrize("case", _params(for_buildah=True))
def test_buildah_expectations(case: Case, buildah_trees):
    problems = []
    for platform, tree in buildah_trees(case).items():
        assert tree.platform == platform
        problems += check_expectations(case, tree)
    assert not problems, "buildah's build breaks the case's expect: facts:\n" + "\n".join(problems)


def ocibuild_command(case: Case, prepared, out: Path) -> list[str]:
    """The ocibuild CLI invocation the harness uses (same flags as ``docker buildx build``)."""
    command = [sys.executable, "-m", "ocibuild", "build", "--platform", ",".join(case.platforms)]
    for key, value in case.build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    if case.target:
        command += ["--target", case.target]
    for name, path in prepared.build_contexts.items():
        command += ["--build-context", f"{name}={path}"]
    return command + ["-f", str(prepared.dockerfile), "--output", f"type=oci,dest={out}",
                      str(prepared.context)]


@pytest.mark.parametrize("case", _params(for_buildah=False))
def test_ocibuild_matches_buildah(case: Case, tmp_path, buildah_trees):
    prepared = case.prepare(tmp_path / "case")
    out = tmp_path / "out.tar"
    command = ocibuild_command(case, prepared, out)
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0 and out.is_file(), (
        f"ocibuild build failed (exit {done.returncode}, output {'present' if out.exists() else 'absent'})"
        f"\n$ {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    reference = {} if case.skip_buildah else buildah_trees(case)
    problems = compare_output(case, out, reference, "ocibuild")
    assert not problems, f"{case.name}: ocibuild differs:\n" + "\n".join(problems)


HARNESS_CASES = ("multiplatform", "hardlinks", "add_local_tar", "dockerignore")


@pytest.mark.parametrize("name", HARNESS_CASES)
def test_harness_accepts_buildah_index(name: str, buildah: Buildah, buildah_trees, tmp_path):
    """The comparison path of the ocibuild test, fed a buildah-made multi-platform OCI archive
    (nested index, as buildx writes): proves the harness, not ocibuild, today."""
    case = next(c for c in CASES if c.name == name)
    prepared = case.prepare(tmp_path / "case")
    tags = []
    for platform in case.platforms:
        tags.append(f"localhost/harness-{name}-{platform.replace('/', '-')}")
        buildah.bud(prepared.context, prepared.dockerfile, tags[-1], platform,
                    build_args=case.build_args, target=case.target,
                    build_contexts=prepared.build_contexts)
    buildah.manifest(f"localhost/harness-{name}", tags)
    out = tmp_path / "out.tar"
    buildah.manifest_push(f"localhost/harness-{name}", f"oci-archive:{out}:1.0")
    assert compare_output(case, out, buildah_trees(case), "buildah-index", True) == []
    broken = {p: imagetree.ImageTree(t.platform, {**t.files, "/extra": t.files[next(iter(t.files))]},
                                     {**t.config, "User": "nobody"}, t.image)
              for p, t in buildah_trees(case).items()}
    problems = compare_output(case, out, broken, "buildah-index", True)
    assert any("only in buildah: /extra" in line for line in problems), problems
    assert any("config User" in line for line in problems), problems
