#!/usr/bin/env bash
# offload_qemu.sh PROXY DAEMON — a Linux guest's virtio_net driver whose queues run in
# vio-vhost-user-net, reached through vio-vhost-user-proxy's offload device:
#
#   guest virtio_net -- QEMU vhost-user netdev --> vio-vhost-user-proxy (offload device)
#        --> vio-vhost-user-net --tap (in a fresh network namespace, 10.0.0.1/24)
#
# QEMU's guest RAM (memory-backend-memfd, share=on) and its kick / call eventfds are handed by
# the proxy to the daemon, which moves frames between the guest's rings and the tap itself.
# The guest (10.0.0.2) brings its link up, pings 10.0.0.1 and transfers 32 MiB each way
# (sha256 compared on both ends, as vhost_user_qemu.sh does). Then:
#   - the daemon's own counters show the traffic (it ran the rings);
#   - every report the proxy printed while the rings ran shows them offloaded, with its
#     transport's queue objects at avail 0 / used 0 (the proxy never took a chain);
#   - the proxy logged no error and exits 0 on SIGTERM.
# Exit: 0 pass, 1 fail, 77 skip (no QEMU, no kernel, not root, no socat).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$here/../support/guest
# shellcheck source=tests/integration/vhost_user_lib.sh
. "$here/vhost_user_lib.sh"
# shellcheck source=tests/support/guest/netns.sh
. "$guest/netns.sh"

PROXY=${1:?usage: offload_qemu.sh PROXY DAEMON}
VU_DAEMON=${2:?usage: offload_qemu.sh PROXY DAEMON}
vu_init offload_qemu
VU_DAEMON_CPU=""

[[ $(id -u) -eq 0 ]] || vu_skip "needs root (network namespace, tap)"
for t in qemu-system-x86_64 ip socat sha256sum; do
    command -v "$t" >/dev/null 2>&1 || vu_skip "$t not installed"
done
fk=$("$guest/fetch-kernel.sh") || vu_skip "fetch-kernel.sh could not provide Debian's kernel"
eval "$fk"
export VIO_VMLINUX VIO_MODULES

cp "$here/vhost_user_guest.sh" "$VU_DIR/vuxfer"
chmod 0755 "$VU_DIR/vuxfer"
"$guest/mkinitramfs.sh" "$VU_DIR/initrd.cpio.gz" --test "vuxfer=$VU_DIR/vuxfer" \
    2>"$VU_DIR/mkinitramfs.err" || { cat "$VU_DIR/mkinitramfs.err" >&2; vu_fail "mkinitramfs.sh failed"; }

vio_netns_gc
vio_netns_create vuoff
ns=$VIO_NETNS
tap=vutap0
ip netns exec "$ns" ip tuntap add dev "$tap" mode tap
ip -n "$ns" addr add 10.0.0.1/24 dev "$tap"
ip -n "$ns" link set dev "$tap" up

mb=32
head -c $((mb << 20)) /dev/urandom >"$VU_DIR/blob_in"
sha_in=$(sha256sum "$VU_DIR/blob_in" | cut -d' ' -f1)
listen() { # PORT SOCAT-ARGS...
    shift
    ip netns exec "$ns" socat -u "$@" >>"$VU_DIR/socat.log" 2>&1 &
    vu_track $!
    LISTEN_PID=$!
}
listen 5001 "OPEN:$VU_DIR/blob_in" "TCP-LISTEN:5001,bind=10.0.0.1,reuseaddr"
listen 5002 "TCP-LISTEN:5002,bind=10.0.0.1,reuseaddr" "CREATE:$VU_DIR/got_out"
got_out_pid=$LISTEN_PID

# --- the daemon (runs the rings) and the proxy (the guest's vhost-user back-end) ------------
VU_DAEMON_WRAP=(ip netns exec "$ns")
vu_daemon daemon --socket "$VU_DIR/backend.sock" --tap "$tap" --queues 1 --stats=1
dpid=$VU_PID
vu_wait_socket "$VU_DIR/backend.sock" "$dpid" 10 || { cat "$VU_DIR/daemon.err" >&2; vu_fail "daemon made no socket"; }
"$PROXY" --listen "$VU_DIR/proxy.sock" --backend "$VU_DIR/backend.sock" --stats 1 \
    >"$VU_DIR/proxy.out" 2>"$VU_DIR/proxy.err" &
ppid_=$!
vu_track "$ppid_"
vu_wait_socket "$VU_DIR/proxy.sock" "$ppid_" 10 || { cat "$VU_DIR/proxy.err" >&2; vu_fail "proxy made no socket"; }

evidence() {
    vu_log "proxy log:"
    tail -n 30 "$VU_DIR/proxy.err" >&2 || true
    vu_log "proxy's last report:"
    tail -n 6 "$VU_DIR/proxy.out" >&2 || true
    vu_log "daemon warnings and errors:"
    grep -a -E ' (warn|error): ' "$VU_DIR/daemon.err" | tail -n 20 >&2 || true
}
vu_on_fail evidence

# --- the guest -----------------------------------------------------------------------------
# shellcheck disable=SC2054
qargs=(-chardev "socket,id=vu0,path=$VU_DIR/proxy.sock"
       -netdev "vhost-user,id=n0,chardev=vu0,queues=1"
       -device "virtio-net-pci,netdev=n0,vectors=0,romfile=,mac=52:54:00:12:34:56")
rc=0
vio_run "$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$VU_DIR/initrd.cpio.gz" --memfd \
    --timeout 150 --log "$VU_DIR/guest.log" --test link,ping,vuxfer \
    --vio ip=10.0.0.2/24 --vio peer=10.0.0.1 --vio port_in=5001 --vio port_out=5002 \
    --vio xfer_mb=$mb -- "${qargs[@]}" || rc=$?
[[ $rc -ne 77 ]] || vu_skip "run-guest.sh: QEMU or the kernel is missing"
vu_check "guest: link up, ping 10.0.0.1, transfers done (run-guest status $rc)" test "$rc" -eq 0

console() { sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$VU_DIR/guest.log"; }
field() { console | grep -a "^$1 " | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
vu_check "guest received $((mb << 20)) bytes ($(field VU-XFER-IN bytes))" test "$(field VU-XFER-IN bytes)" = $((mb << 20))
vu_check "host->guest data byte-identical" test "$(field VU-XFER-IN sha256)" = "$sha_in"
for ((i = 0; i < 50; i++)); do kill -0 "$got_out_pid" 2>/dev/null || break; sleep 0.1; done
got=$(stat -c %s "$VU_DIR/got_out" 2>/dev/null || echo 0)
vu_check "host received $((mb << 20)) bytes ($got)" test "$got" = $((mb << 20))
vu_check "guest->host data byte-identical" test "$(sha256sum "$VU_DIR/got_out" | cut -d' ' -f1)" = "$(field VU-XFER-OUT sha256)"

# The daemon ran the rings: its periodic counters (the session with the proxy is still up).
sleep 1.5
for d in rx0 tx0; do
    last=$(grep -a "^stats: periodic q=$d " "$VU_DIR/daemon.out" | tail -n 1)
    p=$(tr ' ' '\n' <<<"$last" | sed -n 's/^packets=//p')
    b=$(tr ' ' '\n' <<<"$last" | sed -n 's/^bytes=//p')
    vu_log "daemon $d: packets=${p:-none} bytes=${b:-none}"
    vu_check "the daemon's $d carried the ${mb} MiB transfer (${b:-0} bytes)" test "${b:-0}" -ge $((mb << 20))
done

# The proxy never ran them: in every report while they were offloaded, its transport's queue
# objects stayed at 0 while the shared rings moved.
off=$(grep -c '^ring q=[01] .*offloaded=1' "$VU_DIR/proxy.out" || true)
vu_check "the proxy reported its rings offloaded ($off reports)" test "$off" -ge 2
bad=$(grep '^ring q=[01] .*offloaded=1' "$VU_DIR/proxy.out" |
      grep -v 'transport_last_avail=0 transport_used=0 transport_inflight=0' || true)
vu_check "the proxy's transport never took a chain from an offloaded ring" test -z "$bad"
moved=$(grep '^ring q=1 .*offloaded=1' "$VU_DIR/proxy.out" | sed -n 's/.*ring_used_idx=\([0-9]*\).*/\1/p' | sort -n | tail -1)
vu_check "the shared tx ring moved while offloaded (used idx ${moved:-none})" test "${moved:-0}" -ge 100
grep -q 'offload .*errors=0 backend_lost=0' "$VU_DIR/proxy.out" || vu_fail "the offload device counted errors"
if grep -a ' error: ' "$VU_DIR/proxy.err" >&2; then vu_fail "the proxy logged errors"; fi
kill -0 "$ppid_" 2>/dev/null || vu_fail "the proxy died"
kill -TERM "$ppid_"
prc=0
wait "$ppid_" || prc=$?
vu_check "proxy exited 0 on SIGTERM" test "$prc" -eq 0
kill -TERM "$dpid"
wait "$dpid" || true
vu_pass "guest through the offload proxy: link, ping, ${mb} MiB each way intact; the daemon ran the rings, the proxy took no chain"
