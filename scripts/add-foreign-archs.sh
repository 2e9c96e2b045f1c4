#!/usr/bin/env bash
# Make apt able to download packages of the foreign Debian architectures that layers/*.yaml
# build base images for (`apt-get download busybox-static:arm64`); nothing is installed.
#
# Idempotent and quick when already done: `dpkg --print-foreign-architectures` is asked first
# (another script may have added some of them already), and `apt-get update` runs only when an
# architecture was added or apt has no package list for one of them yet.
# Usage: scripts/add-foreign-archs.sh [debian-arch ...]   (default: the list below)
set -euo pipefail

archs=("$@")
[[ ${#archs[@]} -gt 0 ]] || archs=(arm64 armhf armel i386 ppc64el s390x)
native=$(dpkg --print-architecture)
known=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "add-foreign-archs: need root (or sudo)" >&2; exit 1; }
    as_root=(sudo)
fi

update=false
for arch in "${archs[@]}"; do
    [[ $arch == "$native" ]] && continue
    if [[ $known != *" $arch "* ]]; then
        echo "add-foreign-archs: dpkg --add-architecture $arch"
        "${as_root[@]}" dpkg --add-architecture "$arch"
        update=true
    fi
    # A list named *_binary-<arch>_Packages* exists once `apt-get update` has fetched it.
    compgen -G "/var/lib/apt/lists/*_binary-${arch}_Packages*" >/dev/null || update=true
done
if $update; then
    echo "add-foreign-archs: apt-get update"
    # A mirror caught mid-sync fails single index files (often of the security suite); that is
    # not fatal as long as every architecture has a package list afterwards.
    "${as_root[@]}" apt-get update -qq || echo "add-foreign-archs: apt-get update reported errors" >&2
    for arch in "${archs[@]}"; do
        [[ $arch == "$native" ]] && continue
        compgen -G "/var/lib/apt/lists/*_binary-${arch}_Packages*" >/dev/null \
            || { echo "add-foreign-archs: no package list for $arch after apt-get update" >&2; exit 1; }
    done
fi
