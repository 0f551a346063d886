#!/bin/sh
# vhost_user_guest.sh — guest side of the vhost_user_qemu / vhost_user_reconnect tests
# (busybox sh inside the test initramfs, installed as /tests/vuxfer and /tests/vureconnect).
#
# vuxfer, parameters from the kernel command line (vio.KEY=VALUE):
#   vio.peer       host address in the test namespace (required)
#   vio.channels   set this many combined channels first (/bin/vu-tool, SIOCETHTOOL)
#   vio.port_in    receive a file from peer:port_in, print "VU-XFER-IN bytes=N sha256=H"
#   vio.port_out   send vio.xfer_mb MiB of /dev/urandom to peer:port_out,
#                  print "VU-XFER-OUT bytes=N sha256=H"
#   vio.diag_after a transfer still running after this many seconds (default 30) prints
#                  "VU-DIAG ..." lines every 15 s: the guest's side of a stalled transfer
#   vio.udp        comma list of PORT:CPU: at once, one '/bin/vu-tool udp' per entry sends
#                  vio.udp_count datagrams from that CPU to an echo server on peer:PORT
#                  (one flow per transmit queue: XPS maps CPU i to queue i), prints
#                  "udp port=P cpu=C sent=N echoed=M"
# vureconnect:
#   ping vio.peer until it answers, print "VU-RECONNECT-READY", then keep pinging (0.1 s
#   apart) while the host kills and restarts the back-end; pass once replies stopped for a
#   while and came back (a guest without reboot), then send vio.xfer_mb MiB to
#   peer:port_out and print its hash.
. /lib/vio/lib.sh
ifc=${VIO_IF:-eth0}
peer=${VIO_PEER:?vio.peer not set}

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c <"$1" | tr -d ' '; }

# The guest's view of a transfer that stopped: interface and driver counters (virtio_net's
# per-queue kicks), virtio interrupts, TCP retransmits, the sockets' queues, the last kernel
# lines. The host side prints the daemon's ring indices next to them.
diag() { # SECONDS
    echo "VU-DIAG t=$1s dev $(grep "$ifc:" /proc/net/dev | tr -s ' ')"
    echo "VU-DIAG t=$1s irq $(grep -i virtio /proc/interrupts | tr -s ' ' | tr '\n' '|')"
    [ ! -x /bin/vu-tool ] || echo "VU-DIAG t=$1s ethtool $(/bin/vu-tool stats "$ifc" 2>&1)"
    echo "VU-DIAG t=$1s tx_timeout=$(cat "/sys/class/net/$ifc/queues/tx-0/tx_timeout" 2>/dev/null)"
    echo "VU-DIAG t=$1s snmp $(grep '^Tcp:' /proc/net/snmp | tail -n 1)"
    echo "VU-DIAG t=$1s tcp $(tail -n +2 /proc/net/tcp | tr -s ' ' | cut -d' ' -f3-6 | tr '\n' '|')"
    dmesg 2>/dev/null | tail -n 3 | sed "s/^/VU-DIAG t=$1s dmesg /"
}

# Wait for background job PID; from VIO_DIAG_AFTER seconds on (default 30, a transfer here
# takes about 6) print diag every 15 s while it runs.
watch_job() { # PID
    t=0
    first=${VIO_DIAG_AFTER:-30}
    while kill -0 "$1" 2>/dev/null; do
        sleep 1
        t=$((t + 1))
        if [ "$t" -ge "$first" ] && [ $(((t - first) % 15)) -eq 0 ]; then diag "$t"; fi
    done
    wait "$1"
}

send_file() { # PORT MIB TAG
    dd if=/dev/urandom of=/tmp/out bs=1048576 count="$2" 2>/dev/null || vio_fail "dd failed"
    s=$(sha /tmp/out)
    nc "$peer" "$1" </tmp/out >/dev/null &
    watch_job $! || vio_fail "sending to $peer:$1 failed"
    echo "$3 bytes=$(size /tmp/out) sha256=$s"
    rm -f /tmp/out
}

case "${0##*/}" in
vuxfer)
    if [ -n "${VIO_CHANNELS:-}" ]; then
        /bin/vu-tool channels "$ifc" "$VIO_CHANNELS" || vio_fail "cannot set $VIO_CHANNELS combined channels on $ifc"
        echo "queues: $(ls "/sys/class/net/$ifc/queues" | tr '\n' ' ')"
    fi
    if [ -n "${VIO_PORT_IN:-}" ]; then
        nc "$peer" "$VIO_PORT_IN" </dev/null >/tmp/in &
        watch_job $! || vio_fail "receiving from $peer:$VIO_PORT_IN failed"
        echo "VU-XFER-IN bytes=$(size /tmp/in) sha256=$(sha /tmp/in)"
        rm -f /tmp/in
    fi
    if [ -n "${VIO_PORT_OUT:-}" ]; then
        send_file "$VIO_PORT_OUT" "${VIO_XFER_MB:-32}" VU-XFER-OUT
    fi
    pids=""
    for f in $(echo "${VIO_UDP:-}" | tr ',' ' '); do
        /bin/vu-tool udp "$peer" "${f%:*}" "${VIO_UDP_COUNT:-2000}" "${f#*:}" >"/tmp/udp${f%:*}" 2>&1 &
        pids="$pids $!"
    done
    bad=0
    for p in $pids; do
        wait "$p" || bad=$((bad + 1))
    done
    for f in $(echo "${VIO_UDP:-}" | tr ',' ' '); do
        echo "VU-UDP $(cat "/tmp/udp${f%:*}")"
    done
    [ "$bad" -eq 0 ] || vio_fail "$bad UDP flow(s) got fewer than half of their echoes"
    echo "VU-GUEST-STATS rx_packets=$(cat /sys/class/net/$ifc/statistics/rx_packets) tx_packets=$(cat /sys/class/net/$ifc/statistics/tx_packets)"
    ;;
vureconnect)
    i=0
    until ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 30 ] || vio_fail "no reply from $peer before the restart"
    done
    echo "VU-RECONNECT-READY"
    # Traffic while the host kills the back-end: a ping every 0.1 s in the background,
    # and a probe loop that watches replies stop and come back.
    ping -i 0.1 "$peer" >/tmp/flood 2>&1 &
    flood=$!
    lost=0 back=0 t=0
    while [ "$t" -lt 60 ]; do
        if ping -c 1 -W 1 "$peer" >/dev/null 2>&1; then
            [ "$lost" -gt 0 ] && back=$((back + 1))
        else
            lost=$((lost + 1))
        fi
        [ "$back" -ge 3 ] && break
        t=$((t + 1))
        sleep 0.5
    done
    kill "$flood" 2>/dev/null
    echo "VU-RECONNECT lost=$lost back=$back"
    [ "$lost" -gt 0 ] || vio_fail "replies never stopped: was the back-end restarted?"
    [ "$back" -ge 3 ] || vio_fail "replies did not come back after the back-end restarted ($lost lost)"
    [ -z "${VIO_PORT_OUT:-}" ] || send_file "$VIO_PORT_OUT" "${VIO_XFER_MB:-4}" VU-XFER-OUT
    ;;
*)
    vio_fail "unknown test name ${0##*/}"
    ;;
esac
