"""layers/*.yaml -> base images built from Debian packages, without Docker Hub.

    spec      load_spec(), load_specs(): YAML -> validated `Spec` (errors name file and key)
    debs      resolve(), fetch(), read_members(): apt-get download into a verified cache,
              dpkg-deb --fsys-tarfile read through tarfile (nothing installed, no root needed)
    rootfs    fetch_release(), cached_layer(): a `rootfs:` spec's layer per architecture, from
              debootstrap (root; QEMU binfmt for foreign ones), cached by the mirror's Release
    image     build(): one reproducible layer per platform, configs, manifests, an image
              index and tags, written with ocibuild's own layer and store code
    __main__  ``python -m ocibuild.layerspec layers/ out/layers`` (what `make layers` runs)

Imports `oci`, `layer`, `store` and `errors` only.
"""

from ocibuild.layerspec.debs import Deb
from ocibuild.layerspec.image import Built, build
from ocibuild.layerspec.spec import Spec, load_spec, load_specs

__all__ = ["Built", "Deb", "Spec", "build", "load_spec", "load_specs"]
