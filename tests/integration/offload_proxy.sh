#!/usr/bin/env bash
# offload_proxy.sh — the offload device end to end, as a proxy chain of three processes:
#
#   offload_proxy (a vhost-user front-end, its guest RAM a memfd, virtio-net driver side)
#     -> vio-vhost-user-proxy (our vhost-user back-end transport; its device is the offload
#        device, whose back-end is ...)
#       -> vio-vhost-user-net --loopback (another process, reached by our vhost-user frontend)
#
# The rings, the memory fds and the kick / call eventfds of the first process go through the
# proxy to the daemon, which runs the rings in the first process's memory: frames sent come
# back byte for byte, the daemon counts them, and the proxy's transport never took a chain
# from those rings (its queue objects' indices stay at 0 while the shared rings move).
# Then the daemon is killed under the live session: the proxy reports the back-end lost and
# sets NEEDS_RESET, without crashing.
#
# Usage: offload_proxy.sh PROXY DAEMON TOOL [--pairs N]
set -euo pipefail
PROXY=$1 DAEMON=$2 TOOL=$3
shift 3
PAIRS=1
[[ ${1:-} == --pairs ]] && PAIRS=$2
NAME=offload_proxy

DIR=$(mktemp -d "${TMPDIR:-/tmp}/offload_proxy.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ ${KEEP:-0} -eq 0 ]]; then rm -rf "$DIR"; else echo "$NAME: logs kept in $DIR" >&2; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
fail() {
    echo "$NAME: FAIL: $*" >&2
    for f in "$DIR"/*.out "$DIR"/*.err; do
        [[ -s $f ]] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    KEEP=1
    exit 1
}
wait_for() { # FILE PID SECONDS: wait for a socket / file to appear while PID lives
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        [[ -e $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

"$DAEMON" --socket "$DIR/backend.sock" --loopback --queues "$PAIRS" --stats=0.5 \
    >"$DIR/daemon.out" 2>"$DIR/daemon.err" &
DPID=$!
PIDS+=("$DPID")
wait_for "$DIR/backend.sock" "$DPID" 10 || fail "the daemon did not listen"

"$PROXY" --listen "$DIR/proxy.sock" --backend "$DIR/backend.sock" --queues "$PAIRS" \
    >"$DIR/proxy.out" 2>"$DIR/proxy.err" &
PPID_=$!
PIDS+=("$PPID_")
wait_for "$DIR/proxy.sock" "$PPID_" 10 || fail "the proxy did not listen"

"$TOOL" --socket "$DIR/proxy.sock" --proxy-pid "$PPID_" --proxy-out "$DIR/proxy.out" \
    --pairs "$PAIRS" --frames 2000 --size 1000 --hold "$DIR/release" >"$DIR/tool.out" 2>&1 &
TPID=$!
PIDS+=("$TPID")
for ((i = 0; i < 600; i++)); do
    grep -q '^holding$' "$DIR/tool.out" && break
    kill -0 "$TPID" 2>/dev/null || break
    sleep 0.05
done
cat "$DIR/tool.out" >&2
grep -q '^FAIL' "$DIR/tool.out" && fail "the front-end's checks failed"
grep -q '^holding$' "$DIR/tool.out" || fail "the front-end did not finish its checks"

# The daemon ran the rings: its own counters saw the frames (one stats line per queue).
sleep 0.7
tx=$(grep -o 'q=tx0 packets=[0-9]*' "$DIR/daemon.out" | tail -1 | sed 's/.*packets=//')
[[ -n $tx && $tx -ge 2000 ]] || fail "the daemon counted ${tx:-no} tx0 packets, 2000 sent"
echo "$NAME: ok: the daemon moved $tx frames on tx0; the proxy's transport popped none" >&2
grep -q 'offload device on vhost-user' "$DIR/proxy.err" || fail "no offload device in the proxy"

# The back-end vanishes under the live session.
kill "$DPID"
wait "$DPID" 2>/dev/null || true
for ((i = 0; i < 100; i++)); do
    grep -q 'vhost back-end is gone' "$DIR/proxy.err" && break
    sleep 0.05
done
grep -q 'vhost back-end is gone' "$DIR/proxy.err" || fail "the proxy did not notice the back-end vanish"
ends=$(grep -c '^end$' "$DIR/proxy.out" || true)
kill -USR1 "$PPID_"
for ((i = 0; i < 100; i++)); do
    [[ $(grep -c '^end$' "$DIR/proxy.out" || true) -gt $ends ]] && break
    sleep 0.05
done
line=$(grep '^offload ' "$DIR/proxy.out" | tail -1)
echo "$NAME: after the kill: $line" >&2
[[ $line == *backend_lost=1* ]] || fail "the offload device does not report the back-end lost"
status=$(sed -n 's/.*status=\(0x[0-9a-f]*\).*/\1/p' <<<"$line")
(( (status & 0x40) != 0 )) || fail "NEEDS_RESET is not set in the status ($status)"
kill -0 "$PPID_" 2>/dev/null || fail "the proxy died"
touch "$DIR/release"
wait "$TPID" || fail "the front-end failed"
echo "$NAME: PASS: $PAIRS pair(s): frames reflected byte for byte through the offloaded rings; back-end loss reported (status $status)" >&2
