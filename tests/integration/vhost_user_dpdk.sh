#!/usr/bin/env bash
# vhost_user_dpdk.sh DAEMON — DPDK's virtio_user against vio-vhost-user-net in loopback mode.
#
# One daemon (--loopback) serves several testpmd sessions in a row, each a different
# virtio_user data path: mrg_rxbuf=0/1 x in_order=0/1, 64 B and 1500 B frames, and then a
# second daemon with --queues 2 --busy-poll (its workers poll the rings with the driver's
# kicks off) against a two-queue virtio_user. testpmd runs io forwarding
# with --tx-first: one burst per queue circulates testpmd -> daemon -> loopback -> testpmd
# as fast as both sides go (a self-limiting, moderate rate). For every session:
#   - testpmd reports no RX or TX drops and forwarded > 1000 frames;
#   - exactly one burst per queue circulates: testpmd TX = RX + burst x queues, and along
#     the loop testpmd RX <= daemon RX <= daemon TX <= testpmd TX, each within that burst
#     (every frame testpmd sent reached the daemon and came back, but for those in flight);
#   - the daemon counts no drops; with --queues 2 both queue pairs carried traffic.
# Then, with the daemon's default (adaptive) mode: under load its worker polls (far fewer
# wake-ups than bursts), and with a front-end connected but quiet it uses < 5 % of a core;
# the --busy-poll daemon, with no front-end, keeps spinning (> 10 %).
# The daemon must survive every disconnect and exit 0 on SIGTERM.
# Exit: 0 pass, 1 fail, 77 skip (no dpdk-testpmd).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
. "$here/vhost_user_lib.sh"

VU_DAEMON=${1:?usage: vhost_user_dpdk.sh DAEMON}
vu_init vhost_user_dpdk
command -v dpdk-testpmd >/dev/null 2>&1 || vu_skip "dpdk-testpmd not installed (apt-get install dpdk)"
[[ $(id -u) -eq 0 ]] || vu_skip "testpmd needs root (/var/run/dpdk, memory locking)"

sock=$VU_DIR/vu.sock
vu_daemon d1 --socket "$sock" --loopback --queue-size 1024
d1=$VU_PID
vu_wait_socket "$sock" "$d1" 10 || { cat "$VU_DIR/d1.err" >&2; vu_fail "daemon made no socket"; }
perm=$(stat -c %a "$sock")
vu_check "socket created 0600 (is $perm)" test "$perm" = 600

n=0
for spec in "mrg_rxbuf=1,in_order=0:64" "mrg_rxbuf=0,in_order=0:64" "mrg_rxbuf=1,in_order=1:64" \
            "mrg_rxbuf=0,in_order=1:64" "mrg_rxbuf=1,in_order=0:1500" "mrg_rxbuf=0,in_order=1:1500"; do
    n=$((n + 1))
    vu_dpdk_session "$VU_DIR/d1.out" "$n" "$sock" 1 "${spec##*:}" "${spec%:*}"
    kill -0 "$d1" 2>/dev/null || vu_fail "daemon died after session $n"
done

# The default (adaptive) mode: while frames circulate the worker polls instead of sleeping
# between kicks (far fewer wake-ups than bursts: an event-driven worker wakes once per
# 32-frame burst), and once they stop it goes back to sleep with the front-end still
# connected (no CPU to speak of). testpmd interactive: a burst circulates for 2 s, then stops.
n=$((n + 1))
vu_testpmd tpidle "$VU_PEER_CPU" --vdev "net_virtio_user0,path=$sock,queues=1" \
    -- -i --forward-mode=io --burst=$VU_BURST --txpkts=64
tpi=$VU_TP_PID
vu_testpmd_wait_prompt tpidle "$tpi" 60 || { tail -n 20 "$VU_DIR/tpidle.log" >&2; vu_fail "interactive testpmd did not start"; }
sleep 0.5
kill -USR1 "$d1"; sleep 0.3
wk0=$(vu_worker_stat "$VU_DIR/d1.out" now 0 wakeups)
printf 'start tx_first\n' >"$VU_DIR/tpidle.stdin"
sleep 2
printf 'stop\n' >"$VU_DIR/tpidle.stdin"
sleep 0.5
kill -USR1 "$d1"; sleep 0.3
wk1=$(vu_worker_stat "$VU_DIR/d1.out" now 0 wakeups)
vu_testpmd_totals "$VU_DIR/tpidle.log" || { tail -n 30 "$VU_DIR/tpidle.log" >&2; vu_fail "no statistics from the interactive testpmd"; }
idle=$(vu_cpu_pct "$d1" 3)
vu_log "adaptive mode: testpmd TX=$TP_TX, worker wake-ups ${wk0:-?} -> ${wk1:-?}; idle afterwards: $idle % of a core"
vu_check "adaptive mode: frames circulated ($TP_TX > 1000)" test "${TP_TX:-0}" -gt 1000
vu_check "adaptive mode: the worker polled under load ($((wk1 - wk0)) wake-ups for $TP_TX frames, < 1 per 128)" \
    test $(( (wk1 - wk0) * 128 )) -lt "$TP_TX"
vu_check "adaptive mode: idle with a front-end connected, the daemon used $idle % (< 5 %) of a core" \
    awk -v x="$idle" 'BEGIN { exit !(x < 5) }'
printf 'quit\n' >"$VU_DIR/tpidle.stdin"
vu_testpmd_stop "$tpi"
vu_wait_session_end "$VU_DIR/d1.out" "$n" 10 || vu_fail "daemon printed no end-of-session counters for session $n"
kill -0 "$d1" 2>/dev/null || vu_fail "daemon died after the interactive session"

# Two queue pairs: two busy-polling worker threads, both must carry traffic.
sock2=$VU_DIR/vu2.sock
vu_daemon d2 --socket "$sock2" --loopback --queues 2 --busy-poll
d2=$VU_PID
vu_wait_socket "$sock2" "$d2" 10 || { cat "$VU_DIR/d2.err" >&2; vu_fail "daemon (2 queues) made no socket"; }
vu_dpdk_session "$VU_DIR/d2.out" 1 "$sock2" 2 64 "mrg_rxbuf=1,in_order=1"
# --busy-poll never sleeps: the same measurement as above must see its workers spin (this
# also shows the idle figure above could have read high)
busy=$(vu_cpu_pct "$d2" 2)
vu_log "--busy-poll, no front-end: $busy % of a core"
vu_check "--busy-poll: the workers keep polling with no front-end ($busy % > 10 %)" \
    awk -v x="$busy" 'BEGIN { exit !(x > 10) }'

for d in "$d1" "$d2"; do
    kill -TERM "$d"
    rc=0
    wait "$d" || rc=$?
    vu_check "daemon $d exited 0 on SIGTERM (status $rc)" test "$rc" -eq 0
done
vu_check "socket removed at exit" test ! -e "$sock" -a ! -e "$sock2"
grep -i 'error' "$VU_DIR/d1.err" "$VU_DIR/d2.err" >&2 && vu_fail "daemon logged errors"
vu_pass "$n + 1 testpmd sessions, adaptive mode idle at $idle %"
