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

# Two queue pairs: two busy-polling worker threads, both must carry traffic.
sock2=$VU_DIR/vu2.sock
vu_daemon d2 --socket "$sock2" --loopback --queues 2 --busy-poll
d2=$VU_PID
vu_wait_socket "$sock2" "$d2" 10 || { cat "$VU_DIR/d2.err" >&2; vu_fail "daemon (2 queues) made no socket"; }
vu_dpdk_session "$VU_DIR/d2.out" 1 "$sock2" 2 64 "mrg_rxbuf=1,in_order=1"

for d in "$d1" "$d2"; do
    kill -TERM "$d"
    rc=0
    wait "$d" || rc=$?
    vu_check "daemon $d exited 0 on SIGTERM (status $rc)" test "$rc" -eq 0
done
vu_check "socket removed at exit" test ! -e "$sock" -a ! -e "$sock2"
grep -i 'error' "$VU_DIR/d1.err" "$VU_DIR/d2.err" >&2 && vu_fail "daemon logged errors"
vu_pass "$n + 1 testpmd sessions"
