#!/usr/bin/env bash
# vhost_user_qemu.sh DAEMON [--queues N] [--backend tap|packet] — a Linux guest's virtio_net
# driver against vio-vhost-user-net, through QEMU's vhost-user netdev.
#
# The daemon bridges its socket to a tap inside a fresh network namespace (10.0.0.1/24), or
# with --backend packet to an AF_PACKET socket on one end of a veth pair whose other end
# holds 10.0.0.1/24 in that namespace.
# QEMU (TCG, guest RAM from memory-backend-memfd,share=on, virtio-net-pci vectors=0) boots
# Debian's kernel with a busybox initramfs (tests/support/guest). The guest (10.0.0.2):
#   - link: eth0 bound to virtio_net, carrier up (the guest's own driver brought it up);
#   - ping: 10.0.0.1 answers;
#   - vuxfer: 32 MiB from the namespace to the guest and 32 MiB from the guest to the
#     namespace (socat on the host side, busybox nc in the guest); the SHA-256 of what
#     arrived must equal the SHA-256 of what was sent, in each direction.
# With --queues 2: a multi-queue tap, QEMU mq=on with a two-vCPU guest, 'ethtool -L eth0
# combined 2' (a static SIOCETHTOOL helper), then one UDP flow per vCPU (the helper, pinned:
# XPS sends it on that vCPU's transmit queue) to an echo server in the namespace, whose
# answers the multi-queue tap steers back to the flow's queue; the daemon's per-queue
# counters must show at least 1000 frames on each of rx0, tx0, rx1, tx1.
# Exit: 0 pass, 1 fail, 77 skip (no QEMU, no kernel, not root, no socat / C compiler).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$here/../support/guest
. "$here/vhost_user_lib.sh"
. "$guest/netns.sh"

VU_DAEMON=${1:?usage: vhost_user_qemu.sh DAEMON [--queues N]}
shift
queues=1
backend=tap
while [[ $# -gt 0 ]]; do
    case "$1" in
        --queues) queues=$2; shift 2 ;;
        --backend) backend=$2; shift 2 ;;
        *) echo "vhost_user_qemu: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
name=vhost_user_qemu
[[ $queues -eq 1 ]] || name=vhost_user_qemu_mq
[[ $backend == tap ]] || name=${name}_$backend
[[ $backend == tap || $backend == packet ]] || { echo "vhost_user_qemu: --backend tap|packet" >&2; exit 2; }
vu_init "$name"
VU_DAEMON_CPU=""    # the daemon sleeps between kicks: no pinning needed next to TCG

[[ $(id -u) -eq 0 ]] || vu_skip "needs root (network namespace, tap)"
for t in qemu-system-x86_64 ip socat sha256sum; do
    command -v "$t" >/dev/null 2>&1 || vu_skip "$t not installed"
done
fk=$("$guest/fetch-kernel.sh") || vu_skip "fetch-kernel.sh could not provide Debian's kernel"
eval "$fk"
export VIO_VMLINUX VIO_MODULES

# --- guest image: the default harness plus our test script (and the channel tool) -----
cp "$here/vhost_user_guest.sh" "$VU_DIR/vuxfer"
chmod 0755 "$VU_DIR/vuxfer"
# The guest's ethtool helper: channels and UDP flows (--queues 2), the driver's counters in a
# stalled transfer's diagnostics (every run; without a C compiler they go without them).
extra=()
cc=${CC:-cc}
if command -v "$cc" >/dev/null 2>&1 &&
   "$cc" -static -O2 -o "$VU_DIR/vu-tool" "$here/vhost_user_guest_tool.c" 2>"$VU_DIR/cc.err"; then
    extra=(--add "$VU_DIR/vu-tool:/bin/vu-tool")
elif [[ $queues -gt 1 ]]; then
    command -v "$cc" >/dev/null 2>&1 || vu_skip "no C compiler for the guest's channel tool"
    vu_skip "cannot link a static program ($(head -n 1 "$VU_DIR/cc.err")); install libc6-dev"
fi
"$guest/mkinitramfs.sh" "$VU_DIR/initrd.cpio.gz" --test "vuxfer=$VU_DIR/vuxfer" "${extra[@]}" \
    2>"$VU_DIR/mkinitramfs.err" || { cat "$VU_DIR/mkinitramfs.err" >&2; vu_fail "mkinitramfs.sh failed"; }

# --- namespace, tap, host-side peers ------------------------------------------------------
vio_netns_gc
vio_netns_create vu
ns=$VIO_NETNS
if [[ $backend == tap ]]; then
    tap=vutap0
    mqflag=()
    [[ $queues -eq 1 ]] || mqflag=(multi_queue)
    ip netns exec "$ns" ip tuntap add dev "$tap" mode tap "${mqflag[@]}"
    ip -n "$ns" addr add 10.0.0.1/24 dev "$tap"
    ip -n "$ns" link set dev "$tap" up
    be_args=(--tap "$tap")
else
    # the daemon's AF_PACKET socket on vuveth0 (no address); the namespace's stack on vuveth1
    vio_netns_add_veth "$ns" vuveth0 - "$ns" vuveth1 10.0.0.1/24
    be_args=(--iface vuveth0)
fi

mb=32
head -c $((mb << 20)) /dev/urandom >"$VU_DIR/blob_in"
sha_in=$(sha256sum "$VU_DIR/blob_in" | cut -d' ' -f1)
listen() { # PORT SOCAT-ARGS...: one-shot socat server inside the namespace
    shift # the port is in the socat address; named first for the reader
    ip netns exec "$ns" socat -u "$@" >>"$VU_DIR/socat.log" 2>&1 &
    vu_track $!
    LISTEN_PID=$!
}
listen 5001 "OPEN:$VU_DIR/blob_in" "TCP-LISTEN:5001,bind=10.0.0.1,reuseaddr"
listen 5002 "TCP-LISTEN:5002,bind=10.0.0.1,reuseaddr" "CREATE:$VU_DIR/got_out"
got_out_pid=$LISTEN_PID
flow_args=()
if [[ $queues -gt 1 ]]; then
    udp=()
    for ((q = 0; q < queues; q++)); do
        port=$((7001 + q))
        ip netns exec "$ns" socat UDP4-LISTEN:$port,bind=10.0.0.1 PIPE >>"$VU_DIR/socat.log" 2>&1 &
        vu_track $!
        udp+=("$port:$q")
    done
    flow_args=(--vio channels="$queues" --vio "udp=$(IFS=,; echo "${udp[*]}")" --vio udp_count=2000)
fi

# --- the daemon -------------------------------------------------------------------------------
sock=$VU_DIR/vu.sock
VU_DAEMON_WRAP=(ip netns exec "$ns")
vu_daemon daemon --socket "$sock" "${be_args[@]}" --queues "$queues" --stats=5
dpid=$VU_PID
vu_wait_socket "$sock" "$dpid" 10 || { cat "$VU_DIR/daemon.err" >&2; vu_fail "daemon made no socket"; }

# A failure's evidence, for a CI log: the guest's view of a stalled transfer (VU-DIAG lines),
# the daemon's warnings, and its last counters and ring indices.
evidence() {
    local con=$VU_DIR/guest.log
    if [[ -s $con ]]; then
        vu_log "guest diagnostics:"
        sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$con" | grep -a '^VU-' | tail -n 40 >&2 || true
    fi
    vu_log "daemon warnings and errors:"
    grep -a -E ' (warn|error): ' "$VU_DIR/daemon.err" | tail -n 20 >&2 || true
    vu_log "daemon's last periodic counters and rings:"
    awk '$1 == "stats:" && $2 == "periodic" { if ($3 ~ /^t=/) n = 0; blk[n++] = $0 }
         END { for (i = 0; i < n; i++) print blk[i] }' "$VU_DIR/daemon.out" >&2 || true
}
vu_on_fail evidence

# --- the guest ---------------------------------------------------------------------------------
smp=1
[[ $queues -eq 1 ]] || smp=2
# shellcheck disable=SC2054  # commas inside QEMU option values
qargs=(-chardev "socket,id=vu0,path=$sock"
       -netdev "vhost-user,id=n0,chardev=vu0,queues=$queues"
       -device "virtio-net-pci,netdev=n0,vectors=0,romfile=,mac=52:54:00:12:34:56$([[ $queues -eq 1 ]] || echo ,mq=on)")
rc=0
vio_run "$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$VU_DIR/initrd.cpio.gz" --memfd \
    --smp "$smp" --timeout 110 --log "$VU_DIR/guest.log" --test link,ping,vuxfer \
    --vio ip=10.0.0.2/24 --vio peer=10.0.0.1 --vio port_in=5001 --vio port_out=5002 \
    --vio xfer_mb=$mb "${flow_args[@]}" -- "${qargs[@]}" || rc=$?
[[ $rc -ne 77 ]] || vu_skip "run-guest.sh: QEMU or the kernel is missing"
vu_check "guest: link up, ping 10.0.0.1, transfers done (run-guest status $rc)" test "$rc" -eq 0

console() { sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$VU_DIR/guest.log"; }
field() { # LINE-PREFIX KEY
    console | grep -a "^$1 " | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# host -> guest
vu_check "guest received $((mb << 20)) bytes ($(field VU-XFER-IN bytes))" test "$(field VU-XFER-IN bytes)" = $((mb << 20))
vu_check "host->guest data byte-identical (sha256 ${sha_in:0:16}...)" test "$(field VU-XFER-IN sha256)" = "$sha_in"
# guest -> host: socat exits after the guest closed the connection
for ((i = 0; i < 50; i++)); do kill -0 "$got_out_pid" 2>/dev/null || break; sleep 0.1; done
got=$(stat -c %s "$VU_DIR/got_out" 2>/dev/null || echo 0)
vu_check "host received $((mb << 20)) bytes ($got)" test "$got" = $((mb << 20))
vu_check "guest->host data byte-identical" test "$(sha256sum "$VU_DIR/got_out" | cut -d' ' -f1)" = "$(field VU-XFER-OUT sha256)"

# The session ended when QEMU exited: the daemon printed that session's counters.
vu_wait_session_end "$VU_DIR/daemon.out" 1 10 || vu_fail "daemon printed no end-of-session counters"
min=100
[[ $queues -eq 1 ]] || min=1000
for ((q = 0; q < queues; q++)); do
    for d in rx tx; do
        p=$(vu_session_stat "$VU_DIR/daemon.out" 1 "$d$q" packets)
        b=$(vu_session_stat "$VU_DIR/daemon.out" 1 "$d$q" bytes)
        vu_log "daemon $d$q: packets=$p bytes=$b drops=$(vu_session_stat "$VU_DIR/daemon.out" 1 "$d$q" drops)"
        vu_check "queue $d$q carried traffic (>= $min frames)" test "${p:-0}" -ge "$min"
    done
done
if [[ $queues -gt 1 ]]; then
    console | grep -a '^VU-UDP ' >&2 || true
fi
kill -0 "$dpid" 2>/dev/null || vu_fail "daemon died"
kill -TERM "$dpid"
drc=0
wait "$dpid" || drc=$?
vu_check "daemon exited 0 on SIGTERM" test "$drc" -eq 0
if grep -a ' error: ' "$VU_DIR/daemon.err" >&2; then vu_fail "daemon logged errors"; fi
vu_pass "guest on $queues queue pair(s) via $backend: link, ping, ${mb} MiB each way intact$([[ $queues -eq 1 ]] || echo ", all queues carried traffic")"
