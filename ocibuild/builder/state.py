"""The state of an image while a stage builds it: config, layers and filesystem tree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ocibuild.builder.tree import Tree
from ocibuild.oci import DEFAULT_PATH, Descriptor, ImageConfig, MediaType, Platform

# OCI twins of Docker layer types: a base image's layers keep their bytes but are listed
# with OCI media types in the OCI manifests ocibuild writes, as BuildKit does.
_OCI_LAYER = {
    MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
    MediaType.DOCKER_LAYER: MediaType.OCI_LAYER,
    MediaType.DOCKER_FOREIGN_LAYER: MediaType.OCI_LAYER_NONDIST_GZIP,
}


class ImageState:
    """One image being built. ``tree`` may be computed late: a step served from the cache
    adds its layer without touching the filesystem, and the tree of the new layer stack is
    only made (by ``loader``) if a later step needs it."""

    def __init__(self, platform: Platform, config: ImageConfig, layers: tuple[Descriptor, ...] = (),
                 tree: Tree | None = None, *, unpacked: tuple[object, int] | None = None, key: str = "",
                 keys: tuple[str, ...] = (), loader: Callable[["ImageState"], Tree] | None = None):
        self.platform = platform
        self.config = config
        self.layers = layers
        self._tree = tree if tree is not None or loader is not None else Tree()
        self._loader = loader if tree is None else None
        self.cmd_set = False  # CMD set in this stage: a later ENTRYPOINT then keeps it
        self.live: object | None = None  # the stage's filesystem on disk once a RUN needed it (run.LiveRoot)
        # The cached unpacked base image (base.unpacked) and how many of `layers` it holds.
        self.unpacked = unpacked
        self.key = key      # the cache key of the chain so far (builder/cachekeys.py)
        self.keys = keys    # the step keys of that chain, for `--cache-to mode=min`

    @classmethod
    def scratch(cls, platform: Platform) -> "ImageState":
        config = ImageConfig.for_platform(platform)
        return cls(platform, config.with_config(env=(DEFAULT_PATH,)))

    @property
    def tree(self) -> Tree:
        if self._tree is None:
            self._tree = self._loader(self)
            self._loader = None
        return self._tree

    @tree.setter
    def tree(self, tree: Tree) -> None:
        self._tree, self._loader = tree, None

    def forget_tree(self, loader: Callable[["ImageState"], Tree]) -> None:
        """The layers changed without the tree: ``loader`` makes it again when it is needed."""
        self._tree, self._loader = None, loader

    def child(self) -> "ImageState":
        """A new stage starting from this image: its own tree copy, CMD not yet set here."""
        tree = self._tree.copy() if self._tree is not None else None
        return ImageState(self.platform, self.config, self.layers, tree, unpacked=self.unpacked,
                          key=self.key, keys=self.keys, loader=self._loader)

    def with_layer(self, layer: Descriptor, diff_id: str) -> None:
        self.layers = self.layers + (layer,)
        self.config = self.config.add_layer(diff_id)


def oci_layer(desc: Descriptor) -> Descriptor:
    kind = desc.kind
    if kind in _OCI_LAYER:
        return replace(desc, media_type=_OCI_LAYER[kind].value)
    return desc
