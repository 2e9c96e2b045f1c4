"""Golden negative cases: fixtures/invalid/<case>/Dockerfile must fail with error.txt.

A case may hold ``target`` (the --target) and ``build-args`` (KEY=VALUE lines).
"""

import pathlib

import pytest

from ocibuild.dockerfile import check
from ocibuild.errors import DockerfileError

CASES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "invalid"


def _cases():
    return sorted(p.name for p in CASES.iterdir() if (p / "Dockerfile").exists())


def _optional(case: pathlib.Path, name: str) -> str | None:
    path = case / name
    return path.read_text().strip() if path.exists() else None


def test_there_are_enough_cases():
    assert len(_cases()) >= 20


@pytest.mark.parametrize("name", _cases())
def test_invalid_case(name):
    case = CASES / name
    target = _optional(case, "target")
    build_args = dict(line.split("=", 1) for line in (_optional(case, "build-args") or "").splitlines() if line)
    expected = (case / "error.txt").read_text().strip()
    with pytest.raises(DockerfileError) as err:
        check((case / "Dockerfile").read_text(), target=target, build_args=build_args)
    assert str(err.value) == expected
