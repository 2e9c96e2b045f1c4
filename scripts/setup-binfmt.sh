#!/usr/bin/env bash
# Register QEMU (from qemu-user-static) with binfmt_misc, so RUN works for foreign platforms.
#
# Debian's qemu-user-static ships systemd-binfmt files in /usr/lib/binfmt.d, but nothing loads
# them where systemd is not PID 1 (containers, CI VMs), and binfmt_misc may not be mounted.
# This mounts it when needed and writes each file's line to the kernel's `register`, skipping
# handlers already present: idempotent. Debian ships no file for the host's own architecture.
# A failure is a warning, not an error: the tests that need binfmt report it themselves
# (they skip locally and fail under CI=true).
set -euo pipefail

dir=/proc/sys/fs/binfmt_misc
handlers=(qemu-aarch64 qemu-arm qemu-x86_64 qemu-ppc64le qemu-s390x qemu-riscv64)

warn() { echo "setup-binfmt: warning: $*" >&2; exit 0; }

[[ $(id -u) -eq 0 ]] || warn "not root; foreign-architecture RUN will be unavailable"
if [[ ! -e $dir/register ]]; then
    mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null || warn "cannot mount binfmt_misc on $dir"
fi
for handler in "${handlers[@]}"; do
    conf=/usr/lib/binfmt.d/$handler.conf
    [[ -e $dir/$handler || ! -r $conf ]] && continue
    grep -v '^[#;]' "$conf" | grep . > "$dir/register" || warn "cannot register $handler"
done
