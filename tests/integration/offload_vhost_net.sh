#!/usr/bin/env bash
# offload_vhost_net.sh PROGRAM — the offload device on Linux vhost-net, inside a QEMU TCG guest
# (the build machines have no /dev/vhost-net): PROGRAM (offload_vhost_net.c, linked statically)
# runs in the guest's initramfs after vhost_net and tun are loaded. Its front-end's ARP and ICMP
# requests reach the guest kernel through the kernel's vhost worker and a tap, the answers come
# back on its receive ring, and our transport never took a chain from the offloaded rings.
# Exit: 0 pass, 1 fail, 77 skip (no QEMU or no kernel).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$here/../support/guest
PROG=${1:?usage: offload_vhost_net.sh PROGRAM}
name=offload_vhost_net
command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "$name: SKIP: qemu-system-x86_64 missing" >&2; exit 77; }
fk=$("$guest/fetch-kernel.sh") || { echo "$name: SKIP: fetch-kernel.sh could not provide Debian's kernel" >&2; exit 77; }
eval "$fk"
export VIO_VMLINUX VIO_MODULES
dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-$name.XXXXXX")
keep=0
trap '[[ $keep -eq 1 ]] && echo "$name: logs kept in $dir" >&2 || rm -rf "$dir"' EXIT
"$guest/mkinitramfs.sh" "$dir/initrd.cpio.gz" --test "offvn=$PROG" 2>"$dir/mkinitramfs.err" ||
    { cat "$dir/mkinitramfs.err" >&2; keep=1; exit 1; }
rc=0
"$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$dir/initrd.cpio.gz" --timeout 150 \
    --log "$dir/guest.log" --test vhostnet,offvn || rc=$?
[[ $rc -ne 77 ]] || { echo "$name: SKIP: run-guest.sh: QEMU or the kernel is missing" >&2; exit 77; }
sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$dir/guest.log" |
    grep -a -E '^(PASS|FAIL|ARP|ICMP|vtap0|ring q=|offload device|front-end|  \[vhost)' >&2 || true
if [[ $rc -ne 0 ]] || ! grep -aq '^PASS: vhost-net ran the offloaded rings' "$dir/guest.log"; then
    keep=1
    echo "$name: FAIL (run-guest status $rc)" >&2
    exit 1
fi
echo "$name: PASS: a front-end's rings run by the guest kernel's vhost-net through the offload device" >&2
