#!/usr/bin/env bash
# vhost_user_reconnect.sh DAEMON — QEMU keeps the vhost-user socket (server=on), our daemon
# connects as a client; kill -9 the daemon while the guest has traffic running and start it
# again: the guest's traffic resumes without a guest reboot.
#
#   1. the daemon (--client --reconnect) bridges to a tap in a fresh namespace (10.0.0.1);
#   2. the guest pings 10.0.0.1 until it answers and prints VU-RECONNECT-READY, then keeps a
#      ping running every 0.1 s and probes once every 0.5 s;
#   3. the host kills the daemon with SIGKILL (no goodbye on the socket), waits 2 s and
#      starts a new one; QEMU re-sends the whole setup on the new connection;
#   4. the guest must see replies stop and come back (>= 3 good probes), then sends 4 MiB to
#      the namespace, which must arrive intact; QEMU ran the whole time (-no-reboot: a
#      guest reboot would have ended it).
# Exit: 0 pass, 1 fail, 77 skip (no QEMU, kernel, root or socat).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$here/../support/guest
. "$here/vhost_user_lib.sh"
. "$guest/netns.sh"

VU_DAEMON=${1:?usage: vhost_user_reconnect.sh DAEMON}
vu_init vhost_user_reconnect
VU_DAEMON_CPU=""

[[ $(id -u) -eq 0 ]] || vu_skip "needs root (network namespace, tap)"
for t in qemu-system-x86_64 ip socat sha256sum; do
    command -v "$t" >/dev/null 2>&1 || vu_skip "$t not installed"
done
fk=$("$guest/fetch-kernel.sh") || vu_skip "fetch-kernel.sh could not provide Debian's kernel"
eval "$fk"
export VIO_VMLINUX VIO_MODULES

cp "$here/vhost_user_guest.sh" "$VU_DIR/vureconnect"
chmod 0755 "$VU_DIR/vureconnect"
"$guest/mkinitramfs.sh" "$VU_DIR/initrd.cpio.gz" --test "vureconnect=$VU_DIR/vureconnect" \
    2>"$VU_DIR/mkinitramfs.err" || { cat "$VU_DIR/mkinitramfs.err" >&2; vu_fail "mkinitramfs.sh failed"; }

vio_netns_gc
vio_netns_create vurc
ns=$VIO_NETNS
tap=vutap0
vio_netns_add_tap "$tap" 10.0.0.1/24 "$ns"
ip netns exec "$ns" socat -u TCP-LISTEN:5002,bind=10.0.0.1,reuseaddr "CREATE:$VU_DIR/got_out" \
    >>"$VU_DIR/socat.log" 2>&1 &
got_pid=$!
vu_track "$got_pid"

sock=$VU_DIR/qemu-vu.sock
log=$VU_DIR/guest.log
# QEMU is the server; it waits for the back-end before the guest starts.
"$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$VU_DIR/initrd.cpio.gz" --memfd \
    --timeout 110 --log "$log" --test link,vureconnect \
    --vio ip=10.0.0.2/24 --vio peer=10.0.0.1 --vio port_out=5002 --vio xfer_mb=4 -- \
    -chardev "socket,id=vu0,path=$sock,server=on,wait=off" \
    -netdev vhost-user,id=n0,chardev=vu0 \
    -device virtio-net-pci,netdev=n0,vectors=0,romfile=,mac=52:54:00:12:34:56 \
    >"$VU_DIR/run-guest.out" 2>&1 &
rg=$!
vu_track "$rg"
vu_wait_socket "$sock" "$rg" 30 || { cat "$VU_DIR/run-guest.out" >&2; vu_fail "QEMU made no socket"; }

VU_DAEMON_WRAP=(ip netns exec "$ns")
vu_daemon daemon1 --socket "$sock" --client --reconnect 200 --tap "$tap"
d1=$VU_PID

console() { sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$log" 2>/dev/null; }
for ((i = 0; i < 900; i++)); do
    console | grep -aq '^VU-RECONNECT-READY' && break
    kill -0 "$rg" 2>/dev/null || break
    sleep 0.1
done
console | grep -aq '^VU-RECONNECT-READY' || { tail -n 30 "$VU_DIR/run-guest.out" >&2; vu_fail "the guest never reached the peer through the first daemon"; }
vu_log "guest traffic flows through daemon 1; killing it with SIGKILL"
sleep 1
kill -KILL "$d1"
wait "$d1" 2>/dev/null || true
kill -0 "$rg" 2>/dev/null || vu_fail "QEMU exited when the back-end died"
sleep 2
vu_log "starting daemon 2"
vu_daemon daemon2 --socket "$sock" --client --reconnect 200 --tap "$tap"
d2=$VU_PID

rc=0
wait "$rg" || rc=$?
cat "$VU_DIR/run-guest.out" >&2
vu_check "guest: traffic resumed after the restart (run-guest status $rc)" test "$rc" -eq 0
vu_log "guest: $(console | grep -a '^VU-RECONNECT ' | tail -n 1)"
boots=$(console | grep -ac 'Linux version' || true)
vu_check "one guest boot only ($boots 'Linux version' lines; 0 means quiet)" test "$boots" -le 1
field() { console | grep -a "^$1 " | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
for ((i = 0; i < 50; i++)); do kill -0 "$got_pid" 2>/dev/null || break; sleep 0.1; done
vu_check "4 MiB sent after the restart arrived intact" test \
    "$(sha256sum "$VU_DIR/got_out" | cut -d' ' -f1)" = "$(field VU-XFER-OUT sha256)"
grep -q 'session 1: front-end connected' "$VU_DIR/daemon2.err" || vu_fail "daemon 2 never connected"
vu_wait_session_end "$VU_DIR/daemon2.out" 1 10 || vu_fail "daemon 2 printed no end-of-session counters"
p=$(vu_session_stat "$VU_DIR/daemon2.out" 1 tx0 packets)
vu_check "daemon 2 carried the resumed traffic (tx0 packets=$p)" test "${p:-0}" -ge 10
kill -TERM "$d2"
drc=0
wait "$d2" || drc=$?
vu_check "daemon 2 exited 0 on SIGTERM" test "$drc" -eq 0
vu_pass "traffic resumed after kill -9 and restart of the back-end, no guest reboot"
