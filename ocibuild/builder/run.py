"""RUN: the stage's filesystem unpacked into a working directory, the command run in the
sandbox, and the change it made taken as a layer.

COPY-only stages never touch the disk; the first RUN of a stage unpacks its layers into a
private directory (`LiveRoot`), which then follows every later layer of the stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field, replace

from ocibuild.builder.base import plain_owners, tree_from_dir
from ocibuild.builder.metadata import command_line
from ocibuild.builder.state import ImageState
from ocibuild.dockerfile import instructions as ins
from ocibuild.layer.decompress import open_layer
from ocibuild.layer.diff import diff
from ocibuild.layer.entry import TarEntry
from ocibuild.errors import BuildError
from ocibuild.layer.extract import Owner, apply_layer
from ocibuild.layer.snapshot import snapshot
from ocibuild.oci import Descriptor
from ocibuild.sandbox import RunSpec
from ocibuild.store.blobs import BlobStore


@dataclass
class LiveRoot:
    """A stage's filesystem on disk; ``owners`` holds what a rootless unpack could not set."""

    path: str
    owners: dict = field(default_factory=dict)

    def apply(self, blobs: BlobStore, layer: Descriptor) -> None:
        with blobs.open(layer.digest) as raw, open_layer(raw, layer.media_type) as stream:
            apply_layer(self.path, stream, layer=str(layer.digest), owners=self.owners)


def unpack(state: ImageState, blobs: BlobStore, scratch: str) -> LiveRoot:
    """A private, writable copy of the stage's filesystem.

    The base image's part is copied from its cached unpacked tree with `cp -a` (C speed, and
    the cache stays pristine), only this stage's own layers are applied from their blobs."""
    live = LiveRoot(tempfile.mkdtemp(prefix="rootfs-", dir=scratch))
    done = 0
    if state.unpacked is not None:
        root, done = state.unpacked
        os.rmdir(live.path)
        result = subprocess.run(["cp", "-a", "--reflink=auto", str(root / "rootfs"), live.path],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"copy the unpacked base image {root}: {result.stderr.strip()}")
        live.owners = {path: Owner(*rec) for path, rec in json.loads((root / "owners.json").read_text()).items()}
    os.chmod(live.path, 0o755)  # an image's / (mkdtemp makes it 0700: no USER but root could run)
    for layer in state.layers[done:]:
        live.apply(blobs, layer)
    return live


def run_step(instr: ins.RunInstr, state: ImageState, live: LiveRoot, *, sandbox, env: list[str],
             network: str, clamp: int | None, mounts=(), output=None) -> list[TarEntry]:
    """Run ``instr`` in ``live`` and return the layer's entries; ``state.tree`` follows the disk."""
    before = snapshot(live.path, owners=live.owners)
    spec = RunSpec(rootfs=live.path, argv=list(_argv(instr, state)), env=env,
                   cwd=state.config.config.working_dir or "/", user=state.config.config.user,
                   platform=state.platform, network=instr.network or network, mounts=list(mounts),
                   output=output)
    result = sandbox.run(spec)
    idmap = _idmap(result.ids)
    entries = diff(before, live.path, owners=live.owners, idmap=idmap, mtime_clamp=clamp)
    state.tree = tree_from_dir(live.path, plain_owners(live.owners))
    return entries


def _argv(instr: ins.RunInstr, state: ImageState) -> tuple[str, ...]:
    """The command line, with heredocs as BuildKit runs them: `RUN <<EOF` makes the body the
    shell's script; `RUN python3 <<EOF` hands the shell the command with its here-document."""
    if not (instr.heredocs and instr.shell_form):
        return command_line(instr, state)
    (text,) = instr.command
    if len(instr.heredocs) == 1 and text.strip() in (f"<<{instr.heredocs[0].name}", f"<<-{instr.heredocs[0].name}"):
        script = instr.heredocs[0].content
    else:
        script = text + "\n" + "".join(f"{h.content}{h.name}\n" for h in instr.heredocs)
    return command_line(replace(instr, command=(script,)), state)


def _idmap(ids):
    if ids is None or getattr(ids, "identity", False) is True:
        return None
    uid_map, gid_map = ids.uid, ids.gid
    if uid_map.identity and gid_map.identity:
        return None
    return lambda uid, gid: (uid_map.to_container(uid), gid_map.to_container(gid))


def history_text(instr: ins.RunInstr, state: ImageState, run_args: list[str]) -> str:
    """BuildKit's history line: `RUN |2 A=1 B=2 /bin/sh -c cmd # buildkit` (the count and ARGs only when set)."""
    argv = " ".join(_argv(instr, state))
    prefix = f"|{len(run_args)} {' '.join(run_args)} " if run_args else ""
    return f"RUN {prefix}{argv} # buildkit"
