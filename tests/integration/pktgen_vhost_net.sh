#!/usr/bin/env bash
# pktgen_vhost_net.sh STATIC_PKTGEN — vio-pktgen --vhost-net inside a QEMU TCG guest (the build
# machines have no /dev/vhost-net; the guest loads vhost_net and tun).
#
# In the guest, on persistent taps (busybox tunctl):
#   1. 64 B frames at 20 kpps for 2 s: the tap's rx_packets counter (frames the kernel got
#      from vhost-net) equals pktgen's tx_packets; the frames the kernel sends out of the tap
#      (IPv6 router solicitations and the like) reach pktgen as foreign frames, never as errors;
#      the peer does not reflect and pktgen says so; exit status 0.
#   2. 5000 frames of 1500 B (--count): the tap counted all 5000.
#   3. A tap name the kernel refuses and a missing vhost device: a one-line error, exit 1.
# Exit: 0 pass, 1 fail, 77 skip (no QEMU, no kernel).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$here/../support/guest
PKTGEN=${1:?usage: pktgen_vhost_net.sh STATIC_PKTGEN}
say() { printf 'pktgen_vhost_net: %s\n' "$*" >&2; }
[[ -x "$PKTGEN" ]] || { say "FAIL: $PKTGEN not found"; exit 1; }
if file "$PKTGEN" 2>/dev/null | grep -q 'dynamically linked'; then
    say "FAIL: $PKTGEN is dynamically linked (the guest has no libc)"
    exit 1
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 || { say "SKIP: qemu-system-x86_64 missing"; exit 77; }
fk=$("$guest/fetch-kernel.sh") || { say "SKIP: fetch-kernel.sh could not provide a kernel"; exit 77; }
eval "$fk"
export VIO_VMLINUX VIO_MODULES
dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-pktgen-vhost-net.XXXXXX")
keep=1
trap '[[ $keep -eq 0 ]] && rm -rf "$dir" || say "logs kept in $dir"' EXIT

cat >"$dir/pgvn.sh" <<'GUEST'
#!/bin/sh
# runs in the guest (busybox sh)
. /lib/vio/lib.sh
jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }
tunctl -t pg0 >/dev/null && tunctl -t pg1 >/dev/null || vio_fail "tunctl"
ip link set pg0 up && ip link set pg1 up || vio_fail "ip link set up"

/bin/vio-pktgen --vhost-net --tap pg0 --duration 2 --rate 20000 --json >/tmp/a.out 2>/tmp/a.err
rc=$?
cat /tmp/a.err
tail -n 1 /tmp/a.out
tail -n 1 /tmp/a.out >/tmp/a.json
rx=$(cat /sys/class/net/pg0/statistics/rx_packets)
out=$(cat /sys/class/net/pg0/statistics/tx_packets)
tx=$(jget /tmp/a.json tx_packets)
echo "PGVN-1 rc=$rc tx=$tx tap_rx=$rx tap_tx=$out foreign=$(jget /tmp/a.json rx_foreign) errors=$(jget /tmp/a.json errors)"
[ "$rc" -eq 0 ] || vio_fail "vio-pktgen exited $rc"
[ "${tx:-0}" -gt 10000 ] || vio_fail "only ${tx:-0} frames sent"
[ "$rx" -eq "$tx" ] || vio_fail "the tap received $rx frames, pktgen sent $tx"
[ "$(jget /tmp/a.json errors)" = 0 ] || vio_fail "errors in the summary"
[ "$(jget /tmp/a.json reflected)" = false ] || vio_fail "reflected should be false"
[ "$(jget /tmp/a.json backend)" = vhost-net ] || vio_fail "backend should be vhost-net"
[ "$(jget /tmp/a.json rx_foreign)" -le "$out" ] || vio_fail "more foreign frames than the tap sent"
grep -q 'no frames came back: the peer does not reflect' /tmp/a.err || vio_fail "no 'does not reflect' line"
grep -q 'all 2 queues ready in' /tmp/a.err || vio_fail "no setup line"

/bin/vio-pktgen --vhost-net --tap pg1 --size 1500 --count 5000 --json >/tmp/b.out 2>/tmp/b.err
rc=$?
tail -n 1 /tmp/b.out >/tmp/b.json
rx=$(cat /sys/class/net/pg1/statistics/rx_packets)
echo "PGVN-2 rc=$rc tx=$(jget /tmp/b.json tx_packets) tap_rx=$rx"
[ "$rc" -eq 0 ] || vio_fail "vio-pktgen (1500 B) exited $rc"
[ "$(jget /tmp/b.json tx_packets)" -eq 5000 ] || vio_fail "--count 5000 sent $(jget /tmp/b.json tx_packets)"
[ "$rx" -eq 5000 ] || vio_fail "the tap received $rx of 5000 frames of 1500 B"

/bin/vio-pktgen --vhost-net --tap 'bad name' --duration 1 >/tmp/c.out 2>/tmp/c.err
rc=$?
echo "PGVN-3 rc=$rc $(cat /tmp/c.err)"
[ "$rc" -eq 1 ] && [ "$(wc -l </tmp/c.err)" -eq 1 ] || vio_fail "a refused tap: want one line and exit 1"
/bin/vio-pktgen --vhost-net --tap pg0 --vhost-dev /dev/nonexistent --duration 1 >/tmp/d.out 2>/tmp/d.err
rc=$?
echo "PGVN-4 rc=$rc $(cat /tmp/d.err)"
[ "$rc" -eq 1 ] && grep -q 'vio-pktgen: ' /tmp/d.err || vio_fail "a missing vhost device: want an error and exit 1"
exit 0
GUEST
chmod +x "$dir/pgvn.sh"
"$guest/mkinitramfs.sh" "$dir/initrd.cpio.gz" --add "$PKTGEN:/bin/vio-pktgen" \
    --test pgvn="$dir/pgvn.sh" >/dev/null 2>"$dir/mkinitramfs.err" ||
    { cat "$dir/mkinitramfs.err" >&2; say "FAIL: mkinitramfs"; exit 1; }
rc=0
"$guest/run-guest.sh" --initrd "$dir/initrd.cpio.gz" --test pgvn --timeout 240 \
    --log "$dir/console.log" >"$dir/run-guest.out" 2>&1 || rc=$?
grep -a '^PGVN-\|^vio-pktgen: \|^{' "$dir/console.log" | tr -d '\r' >&2 || true
if [[ $rc -eq 77 ]]; then
    say "SKIP: run-guest.sh could not run the guest"
    keep=0
    exit 77
fi
if [[ $rc -ne 0 ]]; then
    cat "$dir/run-guest.out" >&2
    say "FAIL: guest test (run-guest status $rc)"
    exit 1
fi
keep=0
say "PASS: vio-pktgen --vhost-net moved every frame through vhost_net into the tap (64 B and 1500 B)"
