"""RUN: the command run in the sandbox on the stage's filesystem, and the change it made taken
as a layer.

COPY-only stages never touch the disk; the first RUN of a stage makes its `LiveRoot` (see
`liveroot`), which then follows every later layer of the stage. Where the sandbox can mount
overlayfs, each RUN runs on an overlay of the cached base image and the earlier steps' upper
directories, and its layer is read off its own upper directory (`ocibuild.layer.overlay`):
the cost follows the change, not the size of the rootfs. Elsewhere (proot, a foreign platform
run by proot, `OCIBUILD_NO_OVERLAY=1`) it runs in place on a private copy, compared with a
snapshot taken before (`ocibuild.layer.diff`). Both give the same layer for the same change.
The stage's tree follows the layer's entries rather than a rescan of the disk.
"""

from __future__ import annotations

from dataclasses import replace

from ocibuild.builder.liveroot import LiveRoot
from ocibuild.builder.metadata import command_line
from ocibuild.builder.state import ImageState
from ocibuild.builder.tree import Tree
from ocibuild.dockerfile import instructions as ins
from ocibuild.layer.diff import diff
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.extract import OPAQUE, WHITEOUT
from ocibuild.layer.overlay import LowerView, image_xattrs, relink, upper_diff
from ocibuild.layer.snapshot import snapshot
from ocibuild.sandbox import RunSpec
from ocibuild.sandbox.spec import Overlay
from ocibuild.store.blobs import BlobStore

__all__ = ["LiveRoot", "unpack", "run_step", "history_text"]


def unpack(state: ImageState, blobs: BlobStore, scratch: str) -> LiveRoot:
    """The stage's filesystem for RUN steps.

    Nothing is copied while the stage is its base image: the cached unpacked tree is the bottom
    of the overlays RUN steps run on. Layers of the stage itself are applied to a private copy."""
    if state.unpacked is not None:
        root, done = state.unpacked
        live = LiveRoot.of_cache(root, scratch)
    else:
        done, live = 0, LiveRoot.empty(scratch)
    for layer in state.layers[done:]:
        live.apply(blobs, layer)
    return live


def run_step(instr: ins.RunInstr, state: ImageState, live: LiveRoot, *, sandbox, env: list[str],
             network: str, clamp: int | None, mounts=(), output=None) -> list[TarEntry]:
    """Run ``instr`` on ``live`` and return the layer's entries; ``state.tree`` follows them.

    On an overlay when the sandbox can mount one for this platform (the layer is read off the
    upper directory), else in place on a private copy, compared with a snapshot taken before."""
    spec = RunSpec(rootfs="", argv=list(_argv(instr, state)), env=env,
                   cwd=state.config.config.working_dir or "/", user=state.config.config.user,
                   platform=state.platform, network=instr.network or network, mounts=list(mounts),
                   output=output)
    overlay_for = getattr(sandbox, "overlay_for", None)
    flavour = overlay_for(state.platform) if overlay_for is not None else None
    if flavour is not None:
        entries, upper = _on_overlay(spec, live, sandbox, flavour)
    else:
        entries, upper = _in_place(spec, live, sandbox), None
    tree = state.tree
    tree_entries = follow(tree, entries)
    state.tree = tree
    if upper is not None:
        upper.entries = entries + tree_entries  # pointed at the files' new places when folded
    if clamp is None:
        return entries
    return [replace(e, mtime=clamp) if e.mtime > clamp else e for e in entries]


def _on_overlay(spec: RunSpec, live: LiveRoot, sandbox, flavour: str):
    upper, work, merged = live.new_upper(flavour)
    lowers = live.lowers()
    spec.rootfs, spec.overlay = merged, Overlay(tuple(lowers), upper.path, work, flavour)
    result = sandbox.run(spec)
    view = LowerView(lowers, flavour)
    relink(upper.path, view)
    entries = upper_diff(upper.path, view, owners=live.owners, idmap=_idmap(result.ids))
    live.uppers.append(upper)
    return entries, upper


def _in_place(spec: RunSpec, live: LiveRoot, sandbox) -> list[TarEntry]:
    spec.rootfs = live.writable()
    before = snapshot(spec.rootfs, owners=live.owners)
    result = sandbox.run(spec)
    entries = diff(before, spec.rootfs, owners=live.owners, idmap=_idmap(result.ids))
    for flavour in live.folded:  # a rootless fold may have left overlayfs' xattrs behind
        for e in entries:
            e.xattrs = image_xattrs(e.xattrs, flavour)
    return entries


def follow(tree: Tree, entries: list[TarEntry]) -> list[TarEntry]:
    """Apply a layer's `entries` (tar order) to `tree`, as an unpacker would; return the entries
    made for the tree that are not in `entries` (a hardlink is a copy of its target's entry in
    a tree, as a scan of the disk gives it)."""
    made: list[TarEntry] = []
    by_path = {}
    for e in entries:
        parent, _, name = e.path.rpartition("/")
        if name == OPAQUE:
            for child in tree.children(parent):
                tree.remove(child)
        elif name.startswith(WHITEOUT):
            tree.remove(f"{parent}/{name[len(WHITEOUT):]}" if parent else name[len(WHITEOUT):])
        else:
            if e.kind is Kind.HARDLINK:
                e = replace(by_path[e.linkname], path=e.path)
                made.append(e)
            by_path[e.path] = e
            tree.put(e)
    return made


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
