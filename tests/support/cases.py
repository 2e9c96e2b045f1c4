"""The golden build folders under fixtures/valid/<case>/, and their written-down expectations.

A case folder holds:

    Dockerfile        built with the case's build context
    context/          the build context (git keeps files, symlinks and the executable bit)
    setup.sh          optional: makes what git cannot store (empty dirs, modes such as 0600 or
                      04755, hard links, tar archives, awkward names); run with bash, its working
                      directory the *prepared copy* of the case folder, never the checkout
    case.yaml         options and `expect:` facts, e.g.

        description: what the case shows
        platforms: [linux/amd64, linux/arm64]    # default [linux/amd64]
        build_args: {NAME: value}
        target: stage-name
        build_contexts: {extra: other-dir}       # folders relative to the case folder
        skip_buildah: why buildah cannot be the reference here (BuildKit is the product's)
        expect:                                  # must hold for every platform
          files:
            /app/run.sh: {type: file, mode: "0755", owner: "0:0", content: "echo hi\\n"}
            /link: {type: symlink, target: run.sh}
          absent: [/app/ignored.log]
          paths: [/app, /app/run.sh, /link]      # the exact set of paths, when given
          hardlinks: [[/a, /b]]                  # groups of paths that share one inode
          config: {Cmd: [...], User: "1000", ExposedPorts: {"80/tcp": {}}}   # exact values
          env: {NAME: value}                     # entries that Env must contain
          labels: {key: value}                   # entries that Labels must contain
          platforms:                             # extra facts for one platform
            linux/arm64: {files: ..., labels: ...}

Modes are octal strings ("0644"): YAML 1.1 would read an unquoted 0644 as 420 but 755 as 755.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .imagetree import ImageTree

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "valid"
DEFAULT_PLATFORMS = ("linux/amd64",)
CASE_KEYS = {"description", "platforms", "build_args", "target", "build_contexts",
             "skip_buildah", "expect"}
EXPECT_KEYS = {"files", "absent", "paths", "hardlinks", "config", "env", "labels", "platforms"}
FILE_KEYS = {"type", "mode", "owner", "content", "sha256", "target"}


@dataclass
class Case:
    name: str
    folder: Path
    description: str = ""
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    build_contexts: dict[str, str] = field(default_factory=dict)
    skip_buildah: str | None = None
    expect: dict = field(default_factory=dict)

    def prepare(self, dest: Path) -> "Prepared":
        """Copy the case folder to `dest` with git-like modes, then run its setup.sh there."""
        shutil.copytree(self.folder, dest, symlinks=True)
        _normalise_modes(dest)
        (dest / "context").mkdir(exist_ok=True)  # git drops an empty folder
        setup = dest / "setup.sh"
        if setup.exists():
            done = subprocess.run(["bash", "-euo", "pipefail", str(setup)], cwd=dest,
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHON": sys.executable, "LC_ALL": "C.UTF-8"})
            if done.returncode != 0:
                raise AssertionError(f"{self.name}/setup.sh failed: {done.stdout}{done.stderr}")
            setup.unlink()
        contexts = {name: dest / folder for name, folder in self.build_contexts.items()}
        return Prepared(dest / "context", dest / "Dockerfile", contexts)


@dataclass
class Prepared:
    context: Path
    dockerfile: Path
    build_contexts: dict[str, Path]


def load_case(folder: Path) -> Case:
    raw = yaml.safe_load((folder / "case.yaml").read_text()) or {}
    unknown = set(raw) - CASE_KEYS
    if unknown:
        raise ValueError(f"{folder}/case.yaml: unknown keys {sorted(unknown)}")
    expect = raw.get("expect") or {}
    _check_expect_shape(folder.name, expect)
    return Case(folder.name, folder, raw.get("description", ""),
                tuple(raw.get("platforms") or DEFAULT_PLATFORMS),
                {str(k): str(v) for k, v in (raw.get("build_args") or {}).items()},
                raw.get("target"), dict(raw.get("build_contexts") or {}),
                raw.get("skip_buildah"), expect)


def load_cases(root: Path = FIXTURES) -> list[Case]:
    return [load_case(folder) for folder in sorted(root.iterdir()) if (folder / "case.yaml").exists()]


def check_expectations(case: Case, tree: ImageTree) -> list[str]:
    """Every `expect:` fact of `case` that `tree` breaks, as readable lines (empty: all hold)."""
    expect = case.expect
    extra = (expect.get("platforms") or {}).get(tree.platform) or {}
    problems = []
    for facts in (expect, extra):
        problems += _file_problems(facts, tree)
        problems += _config_problems(facts, tree.config)
    return [f"{case.name} [{tree.platform}]: {line}" for line in problems]


def _file_problems(facts: dict, tree: ImageTree) -> list[str]:
    problems = []
    for path, want in (facts.get("files") or {}).items():
        got = tree.files.get(path)
        if got is None:
            problems.append(f"{path}: missing")
            continue
        shown = got.show()
        if "type" in want and got.type != want["type"]:
            problems.append(f"{path}: type {got.type}, expected {want['type']} ({shown})")
        if "mode" in want and got.mode != int(want["mode"], 8):
            problems.append(f"{path}: mode {got.mode:04o}, expected {want['mode']} ({shown})")
        if "owner" in want and f"{got.uid}:{got.gid}" != want["owner"]:
            problems.append(f"{path}: owner {got.uid}:{got.gid}, expected {want['owner']}")
        if "content" in want and got.sha256 != _sha256(want["content"]):
            problems.append(f"{path}: content differs from {want['content']!r} ({shown})")
        if "sha256" in want and got.sha256 != want["sha256"]:
            problems.append(f"{path}: sha256 {got.sha256}, expected {want['sha256']}")
        if "target" in want and got.linkname != want["target"]:
            problems.append(f"{path}: link target {got.linkname!r}, expected {want['target']!r}")
    for path in facts.get("absent") or []:
        if path in tree.files:
            problems.append(f"{path}: present, expected absent")
    if "paths" in facts and set(facts["paths"]) != set(tree.files):
        want = set(facts["paths"])
        problems.append(f"paths: unexpected {sorted(set(tree.files) - want)}, "
                        f"missing {sorted(want - set(tree.files))}")
    for group in facts.get("hardlinks") or []:
        link = "=" + ",".join(sorted(group))
        if any(tree.files.get(path, (None,) * 6)[5] != link for path in group):
            problems.append(f"hard links: {group} are not one group "
                            f"({[tree.files.get(p) for p in group]})")
    return problems


def _config_problems(facts: dict, config: dict) -> list[str]:
    problems = []
    for key, want in (facts.get("config") or {}).items():
        if config.get(key) != want:
            problems.append(f"config {key}: {config.get(key)!r}, expected {want!r}")
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    for key, want in (facts.get("env") or {}).items():
        if env.get(key) != str(want):
            problems.append(f"Env {key}: {env.get(key)!r}, expected {str(want)!r}")
    for key, want in (facts.get("labels") or {}).items():
        if config["Labels"].get(key) != str(want):
            problems.append(f"label {key}: {config['Labels'].get(key)!r}, expected {str(want)!r}")
    return problems


def _check_expect_shape(name: str, expect: dict) -> None:
    blocks = [expect, *(expect.get("platforms") or {}).values()]
    for block in blocks:
        unknown = set(block) - EXPECT_KEYS
        if unknown:
            raise ValueError(f"{name}/case.yaml: unknown expect keys {sorted(unknown)}")
        for path, want in (block.get("files") or {}).items():
            if set(want) - FILE_KEYS:
                raise ValueError(f"{name}/case.yaml: {path}: unknown keys {set(want) - FILE_KEYS}")
            if "mode" in want and not isinstance(want["mode"], str):
                raise ValueError(f"{name}/case.yaml: {path}: write the mode as a quoted octal string")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _normalise_modes(root: Path) -> None:
    """What a clean git checkout gives whatever the umask: dirs 0755, files 0644 or 0755."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)
