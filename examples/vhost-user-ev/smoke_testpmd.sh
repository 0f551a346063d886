#!/usr/bin/env bash
# smoke_testpmd.sh SERVER — DPDK's virtio_user against vio-vhost-user-ev (libev, loopback).
#
# testpmd runs io forwarding with --tx-first for a few seconds: one burst per queue circulates
# testpmd -> server -> loopback -> testpmd. Checks, for one and then two queue pairs:
#   - testpmd forwarded > 1000 frames and dropped none;
#   - exactly one burst per queue circulates (testpmd TX = RX + burst x queues);
#   - the server's end-of-session counters match: every pair carried traffic, testpmd RX <=
#     server RX <= server TX <= testpmd TX (each within that burst), no drops;
#   - the server survives the disconnects and exits 0 on SIGTERM, removing its socket.
# Exit: 0 pass, 1 fail, 77 skip (no dpdk-testpmd, or not root).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
. "$here/../../tests/integration/vhost_user_lib.sh"

VU_DAEMON=${1:?usage: smoke_testpmd.sh SERVER}
vu_init vhost_user_ev
command -v dpdk-testpmd >/dev/null 2>&1 || vu_skip "dpdk-testpmd not installed (apt-get install dpdk)"
[[ $(id -u) -eq 0 ]] || vu_skip "testpmd needs root (/var/run/dpdk, memory locking)"

# The command line is checked before anything is created.
"$VU_DAEMON" --help | grep -q -- '--socket PATH' || vu_fail "--help does not describe --socket"
rc=0; "$VU_DAEMON" --queues 9 --socket "$VU_DIR/x.sock" 2>"$VU_DIR/bad.err" || rc=$?
vu_check "bad --queues exits 2 (status $rc)" test "$rc" -eq 2
vu_check "bad --queues is named" grep -q -- '--queues: expected a number from 1 to 8' "$VU_DIR/bad.err"
rc=0; "$VU_DAEMON" 2>"$VU_DIR/bad.err" || rc=$?
vu_check "missing --socket exits 2 with a message" test "$rc" -eq 2 -a -s "$VU_DIR/bad.err"

stat_of() { # OUT SESSION PAIR FIELD
    sed -n "s/^session $2 ended: pair $3 .*\\b$4=\\([0-9]*\\).*/\\1/p" "$1" | tail -n 1
}

burst=32
run_session() { # OUT SESSION SOCK QUEUES
    local out=$1 n=$2 sock=$3 queues=$4 name="tp$2" q tx rx drops txs=0 rxs=0 i
    vu_testpmd "$name" "$VU_PEER_CPU" --vdev "net_virtio_user0,path=$sock,queues=$queues" \
        -- --forward-mode=io --tx-first --burst=$burst --txpkts=64 --rxq="$queues" --txq="$queues" \
        --auto-start
    local tp=$VU_TP_PID
    vu_testpmd_wait_fwd "$name" "$tp" 60 || { tail -n 20 "$VU_DIR/$name.log" >&2; vu_fail "testpmd did not start forwarding"; }
    sleep "${VU_RUN_S:-3}"
    vu_testpmd_stop "$tp"
    vu_testpmd_totals "$VU_DIR/$name.log" || { tail -n 30 "$VU_DIR/$name.log" >&2; vu_fail "no final statistics from testpmd"; }
    for ((i = 0; i < 100; i++)); do
        grep -q "^session $n ended: pair $((queues - 1)) " "$out" && break
        sleep 0.1
    done
    for ((q = 0; q < queues; q++)); do
        tx=$(stat_of "$out" "$n" "$q" tx); rx=$(stat_of "$out" "$n" "$q" rx)
        drops=$(stat_of "$out" "$n" "$q" drops)
        [[ -n "$tx" && -n "$rx" ]] || vu_fail "server printed no counters for session $n pair $q"
        vu_log "session $n pair $q: server tx=$tx rx=$rx drops=$drops"
        vu_check "session $n: pair $q carried traffic" test "$tx" -gt 1000
        vu_check "session $n: pair $q dropped nothing" test "$drops" -eq 0
        txs=$((txs + tx)); rxs=$((rxs + rx))
    done
    local cap=$((burst * queues))
    vu_log "session $n ($queues q): testpmd TX=$TP_TX RX=$TP_RX drops=$TP_TX_DROP/$TP_RX_DROP; server tx=$txs rx=$rxs"
    vu_check "session $n: testpmd forwarded > 1000 frames" test "$TP_TX" -gt 1000
    vu_check "session $n: testpmd dropped nothing" test "$TP_TX_DROP" -eq 0 -a "$TP_RX_DROP" -eq 0
    vu_check "session $n: one burst per queue circulates ($TP_TX == $TP_RX + $cap)" test "$TP_TX" -eq $((TP_RX + cap))
    vu_check "session $n: server TX within a burst of testpmd TX" test "$txs" -le "$TP_TX" -a $((TP_TX - txs)) -le "$cap"
    vu_check "session $n: frames came back (server RX within a burst of its TX)" test "$rxs" -le "$txs" -a $((txs - rxs)) -le "$cap"
    vu_check "session $n: testpmd got what the server delivered" test "$TP_RX" -le "$rxs" -a $((rxs - TP_RX)) -le "$cap"
}

for queues in 1 2; do
    sock=$VU_DIR/ev$queues.sock
    vu_daemon s$queues --socket "$sock" --queues "$queues"
    pid=$VU_PID
    vu_wait_socket "$sock" "$pid" 10 || { cat "$VU_DIR/s$queues.err" >&2; vu_fail "server made no socket"; }
    perm=$(stat -c %a "$sock")
    vu_check "socket created 0600 (is $perm)" test "$perm" = 600
    run_session "$VU_DIR/s$queues.out" 1 "$sock" "$queues"
    kill -0 "$pid" 2>/dev/null || vu_fail "server died after a session"
    kill -TERM "$pid"
    rc=0; wait "$pid" || rc=$?
    vu_check "server exited 0 on SIGTERM (status $rc)" test "$rc" -eq 0
    vu_check "socket removed at exit" test ! -e "$sock"
    if grep -i 'error' "$VU_DIR/s$queues.err" >&2; then vu_fail "server logged errors"; fi
done
vu_pass "testpmd io forwarding through vio-vhost-user-ev, 1 and 2 queue pairs"
