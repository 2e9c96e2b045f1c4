#!/usr/bin/env bash
# Install the Debian packages that ocibuild's tests, demo and sandbox need (Debian 12).
#
# Idempotent and quick when nothing is missing: dpkg-query is asked first, and apt-get (one
# `update`, then one `install`) runs only for what is missing.
#   buildah            the reference builder of tests/differential (run as root with
#                      --isolation chroot --storage-driver vfs: no OCI runtime, fuse or
#                      overlayfs needed; its Depends bring uidmap and containers-common)
#   skopeo umoci oci-image-tool   independent validators (tests/support/validate.py)
#   docker-registry    a local registry for push/pull tests (started by the tests, on 127.0.0.1)
#   proot              the sandbox's fallback when namespaces are unavailable
#   debootstrap        makes the rootfs of layers/debian.yaml (ocibuild.layerspec.rootfs; as root)
#   qemu-user-static   emulation of foreign architectures for RUN; scripts/setup-binfmt.sh
#                      registers it (binfmt-support is not needed for that)
# First, scripts/add-foreign-archs.sh: dpkg --add-architecture + apt-get update for the Debian
# architectures of layers/*.yaml, only for those not added yet (so `apt-get download` works).
set -euo pipefail

# apt lists of the foreign architectures layers/*.yaml build for (idempotent; see the script).
"$(dirname "$0")/add-foreign-archs.sh"

packages=(buildah skopeo umoci oci-image-tool docker-registry proot qemu-user-static uidmap debootstrap)
# Debian's own python3 needs python3-venv for `python3 -m venv`; other Pythons bring ensurepip.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    as_root=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
