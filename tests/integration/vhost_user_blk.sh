#!/usr/bin/env bash
# vhost_user_blk.sh PROGRAM CASE — the vhost frontend drives qemu-storage-daemon's
# vhost-user-blk export (libvhost-user) with virtio-blk requests from our driver-side queue
# (vhost_user_blk.c; docs/vhost-user-blk.md).
#
#   CASE  basic          raw ring calls, direct descriptors
#         indirect       raw ring calls, INDIRECT_DESC + EVENT_IDX
#         adapter        the frontend as a driver-seat transport (vio_vhost_driver_*)
#         mq             three request queues (num-queues=3: an odd count, no queue pairs)
#         kill-idle      the daemon is SIGKILLed between requests: the next calls fail with
#                        -ENOTCONN / -EPIPE / -ECONNRESET, the program survives and says so
#         kill-inflight  the same with requests in the ring and kicked
#         kill-reconnect the daemon is SIGKILLed between requests and a new one started on
#                        the same socket and image: vio_vhost_reconnect() re-sends the state
#                        and the rest of the requests run on the new daemon
#         kill-reconnect-inflight  the same over three request queues, with four requests
#                        in the rings when the daemon dies: they complete on the new one
#
# A 4 MiB raw image and the socket live under a mktemp -d directory; the daemon is killed
# and the directory removed on every exit (vhost_user_lib.sh). Exit 0 pass, 1 fail,
# 77 skip (no qemu-storage-daemon).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
. "$here/vhost_user_lib.sh"

prog=${1:?usage: vhost_user_blk.sh PROGRAM basic|indirect|adapter|mq|kill-idle|kill-inflight|kill-reconnect[-inflight]}
what=${2:-basic}
vu_init "vhost_user_blk_$what"

qsd=$(command -v qemu-storage-daemon || true)
[[ -n "$qsd" ]] || vu_skip "qemu-storage-daemon not installed (Debian: qemu-system-common)"
[[ -x "$prog" ]] || vu_fail "test program '$prog' not found"

img=$VU_DIR/disk.img
sock=$VU_DIR/blk.sock
truncate -s 4M "$img"
vu_on_fail "echo '--- qemu-storage-daemon stderr:' >&2; cat '$VU_DIR/qsd.err' >&2"

# The export's serial is fixed ("vhost_user_blk"); it has no serial= option.
export_extra=""
[[ $what == mq || $what == kill-reconnect-inflight ]] && export_extra=",num-queues=3"
start_qsd() {
    rm -f "$sock"
    "$qsd" --blockdev "driver=file,node-name=f,filename=$img" \
        --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$sock,writable=on$export_extra" \
        >>"$VU_DIR/qsd.out" 2>>"$VU_DIR/qsd.err" &
    qsd_pid=$!
    vu_track "$qsd_pid"
    vu_wait_socket "$sock" "$qsd_pid" 30 || vu_fail "qemu-storage-daemon made no socket"
}
start_qsd
vu_log "qemu-storage-daemon $("$qsd" --version | head -n 1 | awk '{print $3}') pid $qsd_pid on $sock"

args=(--socket "$sock" --image "$img" --serial vhost_user_blk)
case $what in
basic) ;;
indirect) args+=(--indirect) ;;
adapter) args+=(--adapter) ;;
mq) args+=(--queues 3) ;;
kill-idle) args+=(--kill-pid "$qsd_pid" --kill-at idle) ;;
kill-inflight) args+=(--kill-pid "$qsd_pid" --kill-at inflight) ;;
kill-reconnect) args+=(--kill-pid "$qsd_pid" --kill-at reconnect) ;;
kill-reconnect-inflight) args+=(--queues 3 --kill-pid "$qsd_pid" --kill-at reconnect-inflight) ;;
*) vu_fail "unknown case '$what'" ;;
esac

rc=0
if [[ $what == kill-reconnect* ]]; then
    timeout -k 5 60 "$prog" "${args[@]}" &
    prog_pid=$!
    vu_track "$prog_pid"
    first=$qsd_pid
    # The program kills the first daemon; then a new one serves the same image and socket.
    while kill -0 "$prog_pid" 2>/dev/null && kill -0 "$first" 2>/dev/null; do sleep 0.1; done
    st=0
    wait "$first" 2>/dev/null || st=$?
    vu_check "the first qemu-storage-daemon died of SIGKILL (status $st)" test "$st" -eq 137
    start_qsd
    vu_log "second qemu-storage-daemon pid $qsd_pid"
    wait "$prog_pid" || rc=$?
else
    timeout -k 5 60 "$prog" "${args[@]}" || rc=$?
fi
vu_check "the test program passed (exit $rc)" test "$rc" -eq 0

case $what in
kill-idle | kill-inflight)
    st=0
    wait "$qsd_pid" 2>/dev/null || st=$?
    vu_check "qemu-storage-daemon died of SIGKILL (status $st)" test "$st" -eq 137
    ;;
*)
    # The daemon outlives its front-end (it is a server) and reported no panic of
    # libvhost-user: nothing we sent was refused.
    sleep 0.3
    vu_check "qemu-storage-daemon still runs" kill -0 "$qsd_pid"
    if grep -Eiq 'panic|error' "$VU_DIR/qsd.err"; then
        cat "$VU_DIR/qsd.err" >&2
        vu_fail "qemu-storage-daemon logged an error"
    fi
    vu_log "ok: qemu-storage-daemon logged no error"
    ;;
esac
vu_pass "vhost-user-blk $what"
