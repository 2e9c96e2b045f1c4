"""Differential tests for RUN: every fixtures/run/<case> built by buildah and by ocibuild.

Each case starts ``FROM busybox``, the base of layers/busybox.yaml, built once per pytest(-xdist)
worker as an OCI layout (`support.busybox`). ocibuild gets it as ``--build-context
busybox=oci-layout://DIR:latest``; buildah gets it in its own storage root under the name the
short name stands for (`support.buildah_run` says how and why), so both read the same Dockerfile.

- `test_buildah_expectations[case]` builds the case with buildah (one build per platform; the
  foreign ones through the same binfmt QEMU handlers) and checks the case's `expect:` facts:
  it proves the fixtures right, independently of ocibuild.
- `test_ocibuild_matches_buildah[case]` builds the case with ``python -m ocibuild build``
  (all platforms at once), validates the archive, checks the `expect:` facts, and compares each
  platform's tree (paths, types, modes, owners, content, link targets; not mtimes) and config
  with buildah's.
- `test_harness_sees_buildahs_stubs` shows that the normalisation of buildah's output (its RUN
  mount stubs, see `support.buildah_run`) removes exactly what buildah leaves, and that the
  comparison path works on a real archive.

BuildKit is the product's reference: a case buildah cannot build says why in `skip_buildah:`
and is checked against its `expect:` facts only. A difference that is an ocibuild bug stays in
the suite as a strict xfail in `OCIBUILD_BUGS`, with its diagnosis.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support import busybox
from support.buildah import Buildah
from support.buildah_run import (FIXTURES, RUN_STUBS, build_reference, compare_output,
                                 import_base, load_reference, ocibuild_command, once)
from support.cases import Case, check_expectations, load_cases
from support.require import require

CASES = load_cases(FIXTURES)
pytestmark = [pytest.mark.differential]

# case name -> diagnosis of the ocibuild bug that makes it fail (kept as strict xfails).
OCIBUILD_BUGS: dict[str, str] = {}


def _needs(case: Case) -> list[str]:
    foreign = {platform.split("/")[1] for platform in case.platforms} - {"amd64"}
    return ["root", "buildah", "skopeo", *(f"binfmt:{arch}" for arch in sorted(foreign))]


def _params(for_buildah: bool) -> list:
    params = []
    for case in CASES:
        marks = [pytest.mark.xdist_group(f"run-{case.name}")]
        if for_buildah and case.skip_buildah:
            marks += [pytest.mark.skip(reason=f"skip_buildah: {case.skip_buildah}"),
                      pytest.mark.ci_skip_ok]
        if not for_buildah and case.name in OCIBUILD_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=OCIBUILD_BUGS[case.name]))
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory) -> Path:
    """The busybox base, built once per worker."""
    return busybox.build_layout(tmp_path_factory.mktemp("run-base") / "busybox")


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder that every xdist worker of this run sees (the parent of the workers' basetemps)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "buildah-run"


@pytest.fixture(scope="session")
def buildah_trees(tmp_path_factory, busybox_layout, shared_dir):
    """`trees(case)` -> ({platform: ImageTree}, {platform: stubs dropped}).

    Each case is built by buildah once per run, by whichever worker needs it first (`once`),
    in that worker's private storage root (``--root``/``--runroot``, busybox imported for every
    platform the cases use); the trees are memoised per worker.
    """
    memo: dict[str, tuple[dict, dict]] = {}
    storage: list[Buildah] = []  # this worker's storage root, made when first needed

    def build(case: Case, folder: Path) -> None:
        if not storage:
            storage.append(Buildah(tmp_path_factory.mktemp("buildah-run") / "root"))
            import_base(storage[0], busybox_layout, {p for c in CASES for p in c.platforms})
        buildah = storage[0]
        prepared = case.prepare(folder / "case")
        for platform in case.platforms:
            build_reference(buildah, case, prepared, platform, folder / _archive(platform))

    def trees(case: Case):
        if case.name not in memo:
            require(*_needs(case))
            folder = once(shared_dir / case.name, lambda folder: build(case, folder))
            built, dropped = {}, {}
            for platform in case.platforms:
                base = busybox.base_files(busybox_layout, platform)
                built[platform], dropped[platform] = load_reference(
                    folder / _archive(platform), platform, base)
            memo[case.name] = built, dropped
        return memo[case.name]

    return trees


def _archive(platform: str) -> str:
    return platform.replace("/", "-") + ".tar"


@pytest.mark.parametrize("case", _params(for_buildah=True))
def test_buildah_expectations(case: Case, buildah_trees):
    problems = []
    for platform, tree in buildah_trees(case)[0].items():
        assert tree.platform == platform
        problems += check_expectations(case, tree)
    assert not problems, "buildah's build breaks the case's expect: facts:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", _params(for_buildah=False))
def test_ocibuild_matches_buildah(case: Case, tmp_path, busybox_layout, buildah_trees):
    require(*(f"binfmt:{p.split('/')[1]}" for p in case.platforms if not p.endswith("amd64")))
    prepared = case.prepare(tmp_path / "case")
    out = tmp_path / "out.tar"
    command = ocibuild_command(case, prepared, out, busybox_layout)
    env = {**os.environ, "OCIBUILD_CACHE_DIR": str(tmp_path / "cache")}  # every RUN really runs
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0 and out.is_file(), (
        f"ocibuild build failed (exit {done.returncode}, output "
        f"{'present' if out.exists() else 'absent'})\n$ {' '.join(command)}\n"
        f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    reference = {} if case.skip_buildah else buildah_trees(case)[0]
    problems = compare_output(case, out, reference, "ocibuild")
    assert not problems, f"{case.name}: ocibuild differs:\n" + "\n".join(problems)


@pytest.mark.xdist_group("run-rm_base_file")
def test_harness_sees_buildahs_stubs(buildah_trees, shared_dir):
    """The comparison path, fed buildah's own archive as the candidate, reports exactly the RUN
    mount stubs that `RUN_STUBS` removes from the reference: the rule is not stale (buildah still
    leaves them, so it can hide nothing else), and validation, expect: facts and both diffs run
    on a real archive. (The one config line is `as_buildkit_config`'s WorkingDir, undone on the
    reference only.)"""
    case = next(c for c in CASES if c.name == "rm_base_file")
    trees, dropped = buildah_trees(case)
    assert dropped == {"linux/amd64": list(RUN_STUBS)}
    archive = shared_dir / case.name / _archive("linux/amd64")
    problems = compare_output(case, archive, trees, "raw")
    assert sorted(problems) == sorted(
        [f"[linux/amd64] only in raw: {path} ({stub.show()})" for path, stub in RUN_STUBS.items()]
        + ["[linux/amd64] config WorkingDir: buildah='/' | raw=''"])


def test_cases_cover_the_brief():
    """The RUN fixtures keep at least 20 cases and at least 3 multi-platform ones."""
    assert len(CASES) >= 20
    assert sum(len(case.platforms) >= 3 for case in CASES) >= 3
    assert all((case.folder / "Dockerfile").is_file() for case in CASES)
