"""A stage's filesystem on disk, for RUN steps: a bottom directory plus overlay upper directories.

The bottom (`base`) starts as the cached unpacked base image, shared by every build and never
written; it is copied (`cp -a`, C speed) into the scratch space only when something must write
to it: a layer applied on top, or a RUN step that cannot use an overlay. RUN steps on overlays
stack their upper directories on it (`uppers`, bottom first); `flatten` folds them into the
private copy when one plain directory is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field

from ocibuild.errors import BuildError
from ocibuild.layer.decompress import open_layer
from ocibuild.layer.entry import Kind, TarEntry
from ocibuild.layer.extract import Owner, apply_layer
from ocibuild.layer.fold import fold
from ocibuild.oci import Descriptor
from ocibuild.store.blobs import BlobStore

# overlayfs takes its lower directories in one mount option string, which the kernel limits to
# a page; past this many bytes of paths the uppers are folded into the bottom first.
MAX_LOWER_BYTES = 3000


@dataclass
class Upper:
    """The upper directory of one RUN step, and the entries (tree and layer) that name its files."""

    path: str
    flavour: str
    entries: list[TarEntry] = field(default_factory=list)


@dataclass
class LiveRoot:
    """A stage's filesystem on disk; ``owners`` holds, for the merged tree, what a rootless unpack
    could not set (see `ocibuild.layer.extract`)."""

    base: str
    scratch: str
    owners: dict = field(default_factory=dict)
    private: bool = False           # `base` is ours to write (not the shared cache)
    uppers: list[Upper] = field(default_factory=list)
    folded: set[str] = field(default_factory=set)  # overlay flavours folded into `base`

    @classmethod
    def of_cache(cls, root, scratch: str) -> "LiveRoot":
        """The cached unpacked image at `root` (base.unpacked), shared, not copied."""
        records = json.loads((root / "owners.json").read_text())
        return cls(str(root / "rootfs"), scratch, {path: Owner(*rec) for path, rec in records.items()})

    @classmethod
    def empty(cls, scratch: str) -> "LiveRoot":
        return cls(_new_dir(scratch), scratch, private=True)

    @property
    def path(self) -> str:
        """One directory holding the whole filesystem now: read it, never write it."""
        self.flatten()
        return self.base

    def writable(self) -> str:
        """One private directory holding the whole filesystem, to be written in place."""
        self.flatten()
        self._own()
        return self.base

    def apply(self, blobs: BlobStore, layer: Descriptor) -> None:
        root = self.writable()
        with blobs.open(layer.digest) as raw, open_layer(raw, layer.media_type) as stream:
            apply_layer(root, stream, layer=str(layer.digest), owners=self.owners)

    def lowers(self) -> list[str]:
        """The overlay lower directories, topmost first (folding first if they got too many)."""
        if sum(len(u.path) + 1 for u in self.uppers) + len(self.base) > MAX_LOWER_BYTES:
            self.flatten()
        return [u.path for u in reversed(self.uppers)] + [self.base]

    def new_upper(self, flavour: str) -> tuple[Upper, str, str]:
        """A fresh (upper, work directory, mount point) for one RUN step, all in the scratch space."""
        top = _new_dir(self.scratch, "run-")
        paths = [os.path.join(top, name) for name in ("upper", "work", "merged")]
        for p in paths:
            os.mkdir(p, 0o755)
        return Upper(paths[0], flavour), paths[1], paths[2]

    def flatten(self) -> None:
        """Fold the uppers into a private `base`. Entries naming their files are pointed at the
        files' new places, so the stage's tree stays readable."""
        if not self.uppers:
            return
        self._own()
        for upper in self.uppers:
            unowned = fold(upper.path, self.base, upper.flavour, moved=_repoint(upper))
            self._record(upper, unowned)
            self.folded.add(upper.flavour)
        self.uppers = []

    def _record(self, upper: Upper, unowned: list[str]) -> None:
        """A rootless fold could not give these merged directories their owner: note it."""
        wanted = {e.path: e for e in upper.entries}
        for path in unowned:
            e = wanted.get(path)
            if e is not None:
                self.owners[path] = Owner(e.uid, e.gid, e.mode)

    def _own(self) -> None:
        if self.private:
            return
        copy = _new_dir(self.scratch)
        os.rmdir(copy)
        result = subprocess.run(["cp", "-a", "--reflink=auto", self.base, copy], capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"copy the unpacked base image {self.base}: {result.stderr.strip()}")
        self.base, self.private = copy, True


def _repoint(upper: Upper):
    """The `fold` callback that points the entries naming a moved file at its new place."""
    by_source: dict[str, list[TarEntry]] = {}
    for e in upper.entries:
        if e.kind is Kind.FILE and e.source:
            by_source.setdefault(e.source, []).append(e)

    def update(path: str, host: str) -> None:
        for entry in by_source.get(os.path.join(upper.path, path), ()):
            entry.source = host
    return update


def _new_dir(scratch: str, prefix: str = "rootfs-") -> str:
    path = tempfile.mkdtemp(prefix=prefix, dir=scratch)
    os.chmod(path, 0o755)  # an image's / (mkdtemp makes it 0700: no USER but root could run)
    return path
