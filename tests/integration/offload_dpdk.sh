#!/usr/bin/env bash
# offload_dpdk.sh PROXY DAEMON [DEVARGS] — DPDK's virtio_user (testpmd) as the front-end of the
# offload proxy chain:
#
#   dpdk-testpmd net_virtio_user (io forwarding, --tx-first: a burst that then loops for ever)
#     -> vio-vhost-user-proxy (offload device) -> vio-vhost-user-net --loopback
#
# DPDK's memory and eventfds go through the proxy to the daemon, which reflects every frame;
# testpmd forwards what comes back out again. After a few seconds: testpmd received and sent
# at least 100000 frames (RX within one burst of TX, nothing dropped), the daemon counted at
# least as many, the proxy's transport never took a chain from the offloaded rings (its queue
# objects at 0) and logged no error.
# Exit: 0 pass, 1 fail, 77 skip (no dpdk-testpmd).
set -euo pipefail
PROXY=$1 DAEMON=$2 DEVARGS=${3:-}
name=offload_dpdk
command -v dpdk-testpmd >/dev/null 2>&1 || { echo "$name: SKIP: dpdk-testpmd not installed" >&2; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-$name.XXXXXX")
pids=()
keep=0
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $keep -eq 1 ]]; then echo "$name: logs kept in $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
fail() {
    echo "$name: FAIL: $*" >&2
    for f in "$dir"/proxy.err "$dir"/tp.log; do [[ -s $f ]] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }; done
    keep=1
    exit 1
}
wait_sock() { local i; for ((i = 0; i < 100; i++)); do [[ -S $1 ]] && return 0; sleep 0.1; done; return 1; }

"$DAEMON" --socket "$dir/backend.sock" --loopback --stats=1 >"$dir/daemon.out" 2>"$dir/daemon.err" &
dpid=$!
pids+=("$dpid")
wait_sock "$dir/backend.sock" || fail "the daemon did not listen"
"$PROXY" --listen "$dir/proxy.sock" --backend "$dir/backend.sock" >"$dir/proxy.out" 2>"$dir/proxy.err" &
ppid_=$!
pids+=("$ppid_")
wait_sock "$dir/proxy.sock" || fail "the proxy did not listen"

mkfifo "$dir/tp.in"
exec 3<>"$dir/tp.in"
dpdk-testpmd --lcores='0@1,1@1' --no-huge -m 1024 --no-pci --file-prefix "vio-off-$$" \
    --vdev "net_virtio_user0,path=$dir/proxy.sock,queues=1${DEVARGS:+,$DEVARGS}" -- \
    --forward-mode=io --tx-first --auto-start --stats-period 1 <&3 >"$dir/tp.log" 2>&1 &
tpid=$!
pids+=("$tpid")
sleep 6
kill -0 "$tpid" 2>/dev/null || fail "testpmd exited early"
kill -USR1 "$ppid_"
for ((i = 0; i < 50; i++)); do grep -q '^end$' "$dir/proxy.out" && break; sleep 0.1; done
kill -INT "$tpid"
wait "$tpid" || true
exec 3>&-
cat "$dir/proxy.out" >&2

rx=$(grep -a 'RX-packets:' "$dir/tp.log" | tail -1 | awk '{print $2}')
tx=$(grep -a 'TX-packets:' "$dir/tp.log" | tail -1 | awk '{print $2}')
txd=$(grep -a 'TX-dropped:' "$dir/tp.log" | tail -1 | sed 's/.*TX-dropped: *\([0-9]*\).*/\1/')
echo "$name: testpmd RX-packets=${rx:-?} TX-packets=${tx:-?} TX-dropped=${txd:-?}" >&2
[[ -n $rx && $rx -ge 100000 ]] || fail "testpmd received ${rx:-no} frames through the chain"
(( tx >= rx && tx - rx <= 512 )) || fail "RX $rx and TX $tx differ by more than the rings hold"
[[ ${txd:-0} -eq 0 ]] || fail "testpmd dropped $txd frames on transmit"
dtx=$(grep -a '^stats: periodic q=tx0 packets=' "$dir/daemon.out" | tail -1 | sed 's/.*packets=\([0-9]*\).*/\1/')
[[ -n $dtx && $dtx -ge 100000 ]] || fail "the daemon counted ${dtx:-no} frames on tx0"
bad=$(grep '^ring q=[01] ' "$dir/proxy.out" | grep -v 'offloaded=1 .*transport_last_avail=0 transport_used=0 transport_inflight=0' || true)
[[ -z $bad ]] || fail "the proxy's transport ran a ring: $bad"
grep -q '^offload .*errors=0 backend_lost=0' "$dir/proxy.out" || fail "the offload device counted errors"
if grep -a ' error: ' "$dir/proxy.err" >&2; then fail "the proxy logged errors"; fi
kill -0 "$ppid_" 2>/dev/null || fail "the proxy died"
echo "$name: PASS: DPDK virtio_user${DEVARGS:+ ($DEVARGS)} through the offload proxy: $rx frames looped, the daemon ran the rings ($dtx on tx0), the proxy took none" >&2
