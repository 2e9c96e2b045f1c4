"""COPY and ADD semantics, as Docker and BuildKit define them, turned into layer entries.

Pure planning: given the sources and the stage's current tree, decide which entries the new
layer holds. Nothing is read but metadata; file bytes are streamed later by the tar writer.

The rules (BuildKit's):
- a directory source copies its *contents* into the destination, which becomes a directory;
- a file goes to ``dest/basename`` when the destination ends with "/", names an existing
  directory, or several files are copied; otherwise to ``dest`` itself;
- missing destination directories are created 0755, owned by the `--chown` user;
- context files are owned by 0:0 unless `--chown`; files from stages and images keep their owners;
- `--chmod` applies to every copied file and directory (never to symlinks);
- a relative destination is relative to WORKDIR; `--link` never looks at what the stage holds.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from ocibuild.builder.sources import SourceFS, WILDCARDS, glob
from ocibuild.builder.tree import Tree, clean, parent
from ocibuild.errors import ContextError
from ocibuild.layer.entry import Kind, TarEntry


@dataclass
class CopyRequest:
    """One COPY or ADD, its flags resolved: what `plan_copy` turns into entries."""

    sources: list[str]
    dest: str
    fs: SourceFS
    origin: str                      # "the build context", 'stage "builder"', ... for error messages
    workdir: str = "/"
    owner: tuple[int, int] | None = None
    chmod: int | None = None
    link: bool = False
    from_context: bool = True        # context files are owned by root unless --chown
    mtime: int = 0                   # time of directories this copy creates
    clamp: int | None = None         # SOURCE_DATE_EPOCH: newer file times are clamped to it
    inline: list[tuple[str, bytes]] = field(default_factory=list)  # heredoc sources: (name, content)


def plan_copy(req: CopyRequest, tree: Tree, match) -> list[TarEntry]:
    """The entries of the layer a COPY/ADD produces, parents first, siblings in byte order."""
    trailing = req.dest.endswith("/") or req.dest in (".", "..") or req.dest.endswith(("/.", "/.."))
    dest = clean(posixpath.join(req.workdir or "/", req.dest))
    sources = _expand_sources(req, match)
    if len(req.sources) + len(req.inline) > 1 and not trailing:
        raise ContextError("When using COPY with more than one source file, "
                           "the destination must be a directory and end with a /")
    into_dir = trailing or len(sources) + len(req.inline) > 1 or (not req.link and tree.is_dir(tree.resolve(dest)))
    if not req.link:
        dest = tree.resolve(dest) if into_dir or tree.is_dir(tree.resolve(dest)) else _resolve_parent(tree, dest)
    out: dict[str, TarEntry] = {}
    for path in sources:
        _copy_one(req, path, dest, into_dir, out)
    for name, content in req.inline:
        target = f"{dest}/{name}" if into_dir else dest
        out[target] = _own(req, TarEntry(path=target, kind=Kind.FILE, mode=0o644, size=len(content),
                                         data=content, mtime=req.mtime), from_source=False)
    _add_parents(req, tree, out)
    return [out[p] for p in sorted(out, key=lambda p: p.split("/"))]


def plan_mkdir(path: str, tree: Tree, *, owner: tuple[int, int], mtime: int, clamp: int | None
               ) -> list[TarEntry]:
    """The entries that create directory ``path`` (WORKDIR), with its missing parents."""
    req = CopyRequest(sources=[], dest=path, fs=None, origin="", owner=owner, mtime=mtime, clamp=clamp)  # type: ignore[arg-type]
    when = mtime if clamp is None else min(mtime, clamp)
    out = {path: TarEntry(path=path, kind=Kind.DIR, mode=0o755, uid=owner[0], gid=owner[1], mtime=when)}
    _add_parents(req, tree, out)
    return [out[p] for p in sorted(out, key=lambda p: p.split("/"))]


def _expand_sources(req: CopyRequest, match) -> list[str]:
    found: list[str] = []
    for src in req.sources:
        if any(c in src for c in WILDCARDS):
            hits = glob(req.fs, src, match)
        else:
            path = clean(src)
            hits = [path] if path == "" or req.fs.lookup(req.fs.resolve(path, follow_final=False)) else []
        if not hits:
            raise ContextError(f'no such file in {req.origin}: "{src}"')
        found.extend(hits)
    return found


def _resolve_parent(tree: Tree, dest: str) -> str:
    head, _, name = dest.rpartition("/")
    head = tree.resolve(head)
    return f"{head}/{name}" if head else name


def _copy_one(req: CopyRequest, path: str, dest: str, into_dir: bool, out: dict[str, TarEntry]) -> None:
    real = req.fs.resolve(path)
    node = req.fs.lookup(real) if real else TarEntry(path="", kind=Kind.DIR, mode=0o755)
    if node is None:  # a dangling symlink: copy the link itself, as Docker does
        real = req.fs.resolve(path, follow_final=False)
        node = req.fs.lookup(real)
    if node is None:
        raise ContextError(f'no such file in {req.origin}: "{path}"')
    if node.kind is not Kind.DIR:
        name = path.rpartition("/")[2]
        target = f"{dest}/{name}".lstrip("/") if into_dir else dest
        out[target] = _own(req, node, path=target)
        return
    if dest:
        out[dest] = _own(req, node, path=dest)
    prefix = f"{real}/" if real else ""
    for entry in req.fs.walk(real):
        rel = entry.path[len(prefix):]
        target = f"{dest}/{rel}" if dest else rel
        if entry.kind is Kind.HARDLINK:
            link_rel = entry.linkname[len(prefix):]
            out[target] = _own(req, entry, path=target, linkname=f"{dest}/{link_rel}" if dest else link_rel)
        else:
            out[target] = _own(req, entry, path=target)


def _own(req: CopyRequest, entry: TarEntry, *, from_source: bool = True, **changes) -> TarEntry:
    """A copy of one entry with `changes` (its place in the layer) and --chown, --chmod, the
    context's root ownership and the time clamp applied: one copy per entry, as a COPY of a
    large tree makes thousands."""
    changes["xattrs"] = {} if req.from_context else entry.xattrs
    if req.owner is not None:
        changes["uid"], changes["gid"] = req.owner
    elif req.from_context or not from_source:
        changes["uid"] = changes["gid"] = 0
    if req.chmod is not None and entry.kind in (Kind.FILE, Kind.DIR, Kind.HARDLINK):
        changes["mode"] = req.chmod
    if req.clamp is not None and entry.mtime > req.clamp:
        changes["mtime"] = req.clamp
    return replace(entry, **changes)


def _add_parents(req: CopyRequest, tree: Tree, out: dict[str, TarEntry]) -> None:
    """Every layer carries its entries' parent directories: existing ones as they are (times
    clamped: a RUN left the tree's copy with the time it ran), new ones 0755."""
    uid, gid = req.owner or (0, 0)
    mtime = req.mtime if req.clamp is None else min(req.mtime, req.clamp)
    for path in list(out):
        d = parent(path)
        while d and d not in out:  # stop at one already in `out`: its parents are added for it
            existing = None if req.link else tree.get(d)
            if existing is not None and existing.kind is Kind.DIR:
                out[d] = existing if req.clamp is None or existing.mtime <= req.clamp \
                    else replace(existing, mtime=req.clamp)
            else:
                out[d] = TarEntry(path=d, kind=Kind.DIR, mode=0o755, uid=uid, gid=gid, mtime=mtime)
            d = parent(d)
