"""The state of an image while a stage builds it: config, layers and filesystem tree."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ocibuild.builder.tree import Tree
from ocibuild.oci import DEFAULT_PATH, Descriptor, ImageConfig, MediaType, Platform

# OCI twins of Docker layer types: a base image's layers keep their bytes but are listed
# with OCI media types in the OCI manifests ocibuild writes, as BuildKit does.
_OCI_LAYER = {
    MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
    MediaType.DOCKER_LAYER: MediaType.OCI_LAYER,
    MediaType.DOCKER_FOREIGN_LAYER: MediaType.OCI_LAYER_NONDIST_GZIP,
}


@dataclass
class ImageState:
    platform: Platform
    config: ImageConfig
    layers: tuple[Descriptor, ...] = ()
    tree: Tree = field(default_factory=Tree)
    cmd_set: bool = False  # CMD set in this stage: a later ENTRYPOINT then keeps it
    live: object | None = None  # the stage's filesystem on disk once a RUN needed it (run.LiveRoot)
    # The cached unpacked base image (base.unpacked) and how many of `layers` it holds.
    unpacked: tuple[object, int] | None = None

    @classmethod
    def scratch(cls, platform: Platform) -> "ImageState":
        config = ImageConfig.for_platform(platform)
        return cls(platform, config.with_config(env=(DEFAULT_PATH,)))

    def child(self) -> "ImageState":
        """A new stage starting from this image: its own tree copy, CMD not yet set here."""
        return ImageState(self.platform, self.config, self.layers, self.tree.copy(), unpacked=self.unpacked)

    def with_layer(self, layer: Descriptor, diff_id: str) -> None:
        self.layers = self.layers + (layer,)
        self.config = self.config.add_layer(diff_id)


def oci_layer(desc: Descriptor) -> Descriptor:
    kind = desc.kind
    if kind in _OCI_LAYER:
        return replace(desc, media_type=_OCI_LAYER[kind].value)
    return desc
