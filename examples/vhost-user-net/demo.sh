#!/usr/bin/env bash
# The README demo: a Linux guest's own virtio_net driver talks to vio-vhost-user-net through
# QEMU's vhost-user netdev; the daemon bridges it to a tap in a fresh network namespace
# (10.0.0.1/24), and the guest (10.0.0.2) pings the namespace.
#
# usage: demo.sh PATH/TO/vio-vhost-user-net
# Downloads Debian's kernel package once (cached), builds a busybox initramfs, boots the
# guest under QEMU TCG with guest RAM from a shared memfd, prints the guest's ping and the
# daemon's per-queue counters, and removes the namespace on every exit path. Needs root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
guest=$root/tests/support/guest
daemon=${1:?usage: demo.sh PATH/TO/vio-vhost-user-net}
[[ -x $daemon ]] || { echo "demo: $daemon is not an executable" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (network namespace, tap)" >&2; exit 2; }
. "$guest/netns.sh"

work=$(mktemp -d /tmp/vio-demo.XXXXXX)
vio_netns_on_cleanup "rm -rf '$work'"

echo "== guest kernel (Debian linux-image-amd64, cached after the first run)"
fk=$("$guest/fetch-kernel.sh")
eval "$fk"
echo "   $VIO_KERNEL_PKG"
echo "== busybox initramfs"
"$guest/mkinitramfs.sh" "$work/initrd.cpio.gz" >/dev/null

echo "== network namespace with tap vutap0 = 10.0.0.1/24"
vio_netns_create demo
ns=$VIO_NETNS
ip netns exec "$ns" ip tuntap add dev vutap0 mode tap
ip -n "$ns" addr add 10.0.0.1/24 dev vutap0
ip -n "$ns" link set dev vutap0 up

echo "== vio-vhost-user-net --socket $work/vu.sock --tap vutap0 (inside the namespace)"
ip netns exec "$ns" "$daemon" --socket "$work/vu.sock" --tap vutap0 >"$work/daemon.out" \
    2>"$work/daemon.err" &
dpid=$!
vio_netns_track_pid "$dpid"
for _ in $(seq 100); do [[ -S $work/vu.sock ]] && break; sleep 0.1; done
[[ -S $work/vu.sock ]] || { cat "$work/daemon.err" >&2; echo "demo: the daemon made no socket" >&2; exit 1; }

echo "== QEMU (TCG, memfd guest RAM, vhost-user netdev) boots the guest; it pings 10.0.0.1"
rc=0
vio_run "$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$work/initrd.cpio.gz" --memfd \
    --timeout 120 --log "$work/guest.log" --test link,ping --vio ip=10.0.0.2/24 \
    --vio peer=10.0.0.1 --vio count=5 -- \
    -chardev "socket,id=vu0,path=$work/vu.sock" -netdev vhost-user,id=n0,chardev=vu0 \
    -device virtio-net-pci,netdev=n0,vectors=0,romfile=,mac=52:54:00:12:34:56 || rc=$?
echo
echo "-- from the guest's console:"
sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$work/guest.log" |
    grep -aE 'bytes from|packets transmitted|round-trip|VIO-GUEST-RESULT|virtio_net|eth0' | head -20 || true
kill -TERM "$dpid" 2>/dev/null || true
wait "$dpid" 2>/dev/null || true
echo
echo "-- vio-vhost-user-net's counters for the session:"
grep -aE 'rx0|tx0|session' "$work/daemon.out" | tail -6 || true
echo
if [[ $rc -eq 0 ]]; then
    echo "demo: PASS: the guest's virtio_net driver reached the namespace through libvirtio"
else
    echo "demo: FAIL (run-guest status $rc); console log: $work/guest.log" >&2
    vio_netns_on_cleanup ":" # keep nothing else; the log goes with the temp dir
    exit 1
fi
