#!/usr/bin/env bash
# pktgen_dpdk.sh PKTGEN DAEMON — vio-pktgen (our vhost-user frontend) against real backends.
#
# 1. DPDK testpmd's net_vhost (server side, --no-huge) in io and in macswap forwarding:
#    vio-pktgen --json for a few seconds; every frame it sent reached testpmd (pktgen TX =
#    testpmd RX), every frame testpmd delivered came back verified (pktgen RX = testpmd TX),
#    frames testpmd could not deliver are pktgen's drops (= testpmd TX-dropped), no errors;
#    the features pktgen negotiated are the ones DPDK's vhost library logged, with VERSION_1
#    and MRG_RXBUF, and the protocol features include REPLY_ACK and MQ.
#    The same with pktgen listening (--server) and testpmd connecting (client=1).
# 2. A peer that does not reflect (testpmd rxonly): pktgen says so and reports what it sent.
# 3. Our own vio-vhost-user-net --loopback, one and two queue pairs: frames verified, the
#    daemon's end-of-session counters equal pktgen's.
# 4. Reconnect: testpmd killed (-9) mid-run and started again; pktgen --reconnect reports the
#    vanished backend, reconnects, and frames come back verified after the restart. The same
#    with our daemon killed and restarted.
# Exit: 0 pass, 1 fail, 77 skip (no dpdk-testpmd, not root).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
. "$here/vhost_user_lib.sh"

PKTGEN=${1:?usage: pktgen_dpdk.sh PKTGEN DAEMON}
# shellcheck disable=SC2034  # read by vhost_user_lib.sh (vu_daemon)
VU_DAEMON=${2:?usage: pktgen_dpdk.sh PKTGEN DAEMON}
vu_init pktgen_dpdk
[[ -x "$PKTGEN" ]] || vu_fail "pktgen binary '$PKTGEN' not found"
command -v dpdk-testpmd >/dev/null 2>&1 || vu_skip "dpdk-testpmd not installed (apt-get install dpdk)"
[[ $(id -u) -eq 0 ]] || vu_skip "testpmd needs root (/var/run/dpdk, memory locking)"

PG_S=${PG_S:-3}

# pg_run NAME ARGS...: run vio-pktgen on the peer CPU -> PG_RC, $VU_DIR/NAME.out / .err
pg_run() {
    local name=$1
    shift
    PG_RC=0
    taskset -c "$VU_PEER_CPU" "$PKTGEN" "$@" >"$VU_DIR/$name.out" 2>"$VU_DIR/$name.err" || PG_RC=$?
    vu_log "$name: $(tail -n 1 "$VU_DIR/$name.out")"
}
# jget NAME KEY: a key of the JSON summary (the last line of NAME.out)
jget() { tail -n 1 "$VU_DIR/$1.out" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
has_bit() { (( ($1 >> $2) & 1 )); }
vu_on_fail 'for f in "$VU_DIR"/*.err "$VU_DIR"/*.out; do [ -s "$f" ] && { echo "== $f"; tail -n 15 "$f"; }; done >&2'

# testpmd_be NAME MODE SOCK [QUEUES]: DPDK's vhost PMD as the server, forwarding in MODE
testpmd_be() {
    local name=$1 mode=$2 sock=$3 q=${4:-1}
    rm -f "$sock"
    vu_testpmd "$name" "$VU_DAEMON_CPU" --log-level=lib.vhost.config:debug \
        --vdev "net_vhost0,iface=$sock,queues=$q,client=0" \
        -- --forward-mode="$mode" --rxq="$q" --txq="$q" --auto-start
    TP=$VU_TP_PID
    vu_wait_socket "$sock" "$TP" 60 || { tail -n 20 "$VU_DIR/$name.log" >&2; vu_fail "testpmd ($name) made no socket"; }
    vu_testpmd_wait_fwd "$name" "$TP" 60 || vu_fail "testpmd ($name) did not start forwarding"
}

# ---- 1. DPDK net_vhost, io and macswap ----
sock=$VU_DIR/tp.sock
for spec in io:64 macswap:1500 io:1500:2; do
    IFS=: read -r mode size q <<<"$spec"
    q=${q:-1}
    name="tp-$mode-$size-$q"
    testpmd_be "$name" "$mode" "$sock" "$q"
    pg_run "pg-$mode-$size-$q" --vhost-user "$sock" --size "$size" --queues "$q" --duration "$PG_S" --json
    vu_testpmd_stop "$TP"
    vu_testpmd_totals "$VU_DIR/$name.log" || { tail -n 30 "$VU_DIR/$name.log" >&2; vu_fail "no final statistics from testpmd ($name)"; }
    p="pg-$mode-$size-$q"
    tx=$(jget "$p" tx_packets); rx=$(jget "$p" rx_packets); ver=$(jget "$p" rx_verified)
    err=$(jget "$p" errors); drops=$(jget "$p" drops); refl=$(jget "$p" reflected)
    f=$(jget "$p" features); pf=$(jget "$p" protocol_features)
    vu_log "$mode $size B x$q: pktgen tx=$tx rx=$rx verified=$ver drops=$drops errors=$err; testpmd RX=$TP_RX TX=$TP_TX TX-dropped=$TP_TX_DROP RX-dropped=$TP_RX_DROP"
    vu_check "$mode $size B: pktgen exited 0 (status $PG_RC)" test "$PG_RC" -eq 0
    vu_check "$mode $size B: frames came back verified ($ver)" test "${ver:-0}" -gt 1000
    vu_check "$mode $size B: no errors ($err)" test "${err:-x}" = 0
    vu_check "$mode $size B: reflected" test "$refl" = true
    vu_check "$mode $size B: testpmd received every frame pktgen sent ($TP_RX == $tx)" test "$TP_RX" -eq "$tx"
    vu_check "$mode $size B: pktgen received every frame testpmd sent ($rx == $TP_TX)" test "$rx" -eq "$TP_TX"
    vu_check "$mode $size B: pktgen's drops are testpmd's TX drops ($drops == $TP_TX_DROP)" test "$drops" -eq "$TP_TX_DROP"
    vu_check "$mode $size B: rx + drops == tx ($rx + $drops == $tx)" test $((rx + drops)) -eq "$tx"
    vu_check "$mode $size B: VERSION_1 negotiated ($f)" has_bit "$f" 32
    vu_check "$mode $size B: MRG_RXBUF negotiated ($f)" has_bit "$f" 15
    vu_check "$mode $size B: protocol feature REPLY_ACK ($pf)" has_bit "$pf" 3
    vu_check "$mode $size B: protocol feature MQ ($pf)" has_bit "$pf" 0
    # DPDK's vhost library logs what it was given (lib.vhost.config at debug); its virtio
    # features include vhost-user's PROTOCOL_FEATURES (bit 30), which is not a virtio feature
    dfeat=$(grep -a 'negotiated Virtio features' "$VU_DIR/$name.log" | tail -n 1 | sed -n 's/.*: *\(0x[0-9a-fA-F]*\).*/\1/p')
    dpf=$(grep -a 'negotiated Vhost-user protocol features' "$VU_DIR/$name.log" | tail -n 1 | sed -n 's/.*: *\(0x[0-9a-fA-F]*\).*/\1/p')
    if [[ -n "$dfeat" && -n "$dpf" ]]; then
        vu_check "$mode $size B: DPDK logged the same virtio features ($dfeat without bit 30 == $f)" \
            test $((dfeat & ~(1 << 30))) -eq $((f))
        vu_check "$mode $size B: DPDK logged the same protocol features ($dpf == $pf)" test $((dpf)) -eq $((pf))
    else
        vu_log "$mode $size B: testpmd did not log the negotiated features (log level)"
    fi
    grep -aq 'features 0x' "$VU_DIR/$p.err" || vu_fail "pktgen did not log the negotiated features"
    grep -aq 'all [0-9]* queues ready in' "$VU_DIR/$p.err" || vu_fail "pktgen did not log its setup time"
    [[ $(grep -c '^\[' "$VU_DIR/$p.out") -ge 1 ]] || vu_fail "no per-second lines from pktgen"
done

# ---- 1b. pktgen listens (--server), testpmd connects (client=1) ----
# (testpmd's forwarding counters miss the frames it takes while its port comes up in client
# mode, so only pktgen's own accounting is compared here)
ssock=$VU_DIR/pg-server.sock
taskset -c "$VU_PEER_CPU" "$PKTGEN" --vhost-user "$ssock" --server --timeout 60 --duration "$PG_S" --json \
    >"$VU_DIR/pg-server.out" 2>"$VU_DIR/pg-server.err" &
pgs=$!
vu_track "$pgs"
vu_wait_socket "$ssock" "$pgs" 10 || vu_fail "pktgen --server made no socket"
vu_testpmd tp-client "$VU_DAEMON_CPU" --vdev "net_vhost0,iface=$ssock,queues=1,client=1" \
    -- --forward-mode=io --auto-start
TP=$VU_TP_PID
rc=0
wait "$pgs" || rc=$?
vu_testpmd_stop "$TP"
vu_log "server mode: $(tail -n 1 "$VU_DIR/pg-server.out")"
tx=$(jget pg-server tx_packets); ver=$(jget pg-server rx_verified); drops=$(jget pg-server drops)
vu_check "server mode: pktgen exited 0 (status $rc)" test "$rc" -eq 0
vu_check "server mode: frames came back verified ($ver)" test "${ver:-0}" -gt 1000
vu_check "server mode: no errors" test "$(jget pg-server errors)" = 0
vu_check "server mode: verified + drops == tx ($ver + $drops == $tx)" test $((ver + drops)) -eq "$tx"

# ---- 2. a peer that does not reflect ----
testpmd_be tp-rxonly rxonly "$sock"
pg_run pg-rxonly --vhost-user "$sock" --duration 1 --json
vu_testpmd_stop "$TP"
vu_testpmd_totals "$VU_DIR/tp-rxonly.log" || vu_fail "no final statistics from testpmd (rxonly)"
tx=$(jget pg-rxonly tx_packets)
vu_check "rxonly peer: pktgen exited 0 (status $PG_RC)" test "$PG_RC" -eq 0
vu_check "rxonly peer: reported as not reflecting" test "$(jget pg-rxonly reflected)" = false
vu_check "rxonly peer: said so" grep -q 'no frames came back: the peer does not reflect' "$VU_DIR/pg-rxonly.err"
vu_check "rxonly peer: reported what it sent ($tx, testpmd got $TP_RX)" test "${tx:-0}" -gt 1000 -a "$TP_RX" -eq "$tx"
vu_check "rxonly peer: nothing received" test "$(jget pg-rxonly rx_packets)" -eq 0

# ---- 3. our daemon in loopback mode ----
for q in 1 2; do
    dsock=$VU_DIR/d$q.sock
    vu_daemon "d$q" --socket "$dsock" --loopback --queues "$q"
    d=$VU_PID
    vu_wait_socket "$dsock" "$d" 10 || { cat "$VU_DIR/d$q.err" >&2; vu_fail "daemon made no socket"; }
    pg_run "pg-d$q" --vhost-user "$dsock" --queues "$q" --size 256 --duration "$PG_S" --json
    vu_wait_session_end "$VU_DIR/d$q.out" 1 10 || vu_fail "daemon ($q queues) printed no end-of-session counters"
    tx=$(jget "pg-d$q" tx_packets); rx=$(jget "pg-d$q" rx_packets); ver=$(jget "pg-d$q" rx_verified)
    dtx=0; drx=0
    for ((i = 0; i < q; i++)); do
        dtx=$((dtx + $(vu_session_stat "$VU_DIR/d$q.out" 1 "tx$i" packets)))
        drx=$((drx + $(vu_session_stat "$VU_DIR/d$q.out" 1 "rx$i" packets)))
        vu_check "daemon x$q: queue pair $i carried traffic" test "$(vu_session_stat "$VU_DIR/d$q.out" 1 "tx$i" packets)" -gt 100
    done
    vu_log "daemon x$q: pktgen tx=$tx rx=$rx verified=$ver; daemon tx=$dtx rx=$drx"
    vu_check "daemon x$q: pktgen exited 0 (status $PG_RC)" test "$PG_RC" -eq 0
    vu_check "daemon x$q: every frame came back verified ($ver == $tx)" test "${ver:-0}" -gt 1000 -a "$ver" -eq "$tx"
    vu_check "daemon x$q: no errors" test "$(jget "pg-d$q" errors)" = 0
    vu_check "daemon x$q: daemon counted pktgen's frames ($dtx == $tx, $drx == $rx)" test "$dtx" -eq "$tx" -a "$drx" -eq "$rx"
    kill -TERM "$d"
    wait "$d" 2>/dev/null || true
done

# ---- 4. reconnect: testpmd killed mid-run and restarted ----
testpmd_be tp-rc1 io "$sock"
tp1=$TP
# a long run ended by SIGINT 3 s after the reconnect (testpmd takes seconds to start under load)
taskset -c "$VU_PEER_CPU" "$PKTGEN" --vhost-user "$sock" --reconnect --duration 120 --rate 200000 --json \
    >"$VU_DIR/pg-rc.out" 2>"$VU_DIR/pg-rc.err" &
pg=$!
vu_track "$pg"
sleep 3
kill -KILL "$tp1"
wait "$tp1" 2>/dev/null || true
sleep 1
testpmd_be tp-rc2 io "$sock"
tp2=$TP
for ((i = 0; i < 300; i++)); do
    grep -q 'reconnected after' "$VU_DIR/pg-rc.out" && break
    kill -0 "$pg" 2>/dev/null || break
    sleep 0.1
done
sleep 3
kill -INT "$pg" 2>/dev/null || true
rc=0
wait "$pg" || rc=$?
vu_testpmd_stop "$tp2"
vu_testpmd_totals "$VU_DIR/tp-rc2.log" || vu_fail "no final statistics from the restarted testpmd"
vu_log "reconnect: $(grep -a -e vanished -e reconnected "$VU_DIR/pg-rc.out" | tr '\n' ' ')"
vu_log "reconnect: $(tail -n 1 "$VU_DIR/pg-rc.out")"
vu_check "reconnect: pktgen exited 0 (status $rc)" test "$rc" -eq 0
vu_check "reconnect: the vanished backend was reported" grep -q 'backend vanished' "$VU_DIR/pg-rc.out"
vu_check "reconnect: pktgen reconnected" test "$(jget pg-rc reconnects)" -ge 1
vu_check "reconnect: no errors" test "$(jget pg-rc errors)" = 0
vu_check "reconnect: the restarted testpmd forwarded frames back ($TP_TX)" test "$TP_TX" -gt 1000
after=$(sed -n '/reconnected after/,$p' "$VU_DIR/pg-rc.out" | grep '^\[' | grep -v reconnected |
    awk '{ for (i = 1; i <= NF; i++) if ($i == "rx") { s += $(i + 1) } } END { print s + 0 }')
vu_check "reconnect: frames came back after the restart (per-second rx sum $after)" \
    awk -v x="$after" 'BEGIN { exit !(x > 1000) }'
ver=$(jget pg-rc rx_verified)
before=$(sed -n 's/.*reconnected after.*verified so far \([0-9]*\).*/\1/p' "$VU_DIR/pg-rc.out" | head -n 1)
vu_check "reconnect: rx_verified grew after the restart ($before -> $ver)" test "${before:-x}" -ge 0 -a "$ver" -gt $((before + 1000))

# ---- 4b. the same with our daemon killed and restarted ----
rsock=$VU_DIR/rd.sock
vu_daemon rd1 --socket "$rsock" --loopback
rd=$VU_PID
vu_wait_socket "$rsock" "$rd" 10 || vu_fail "daemon (reconnect) made no socket"
taskset -c "$VU_PEER_CPU" "$PKTGEN" --vhost-user "$rsock" --reconnect --duration 120 --rate 200000 --json \
    >"$VU_DIR/pg-rcd.out" 2>"$VU_DIR/pg-rcd.err" &
pg=$!
vu_track "$pg"
sleep 3
kill -KILL "$rd"
wait "$rd" 2>/dev/null || true
rm -f "$rsock"
sleep 1
vu_daemon rd2 --socket "$rsock" --loopback
rd=$VU_PID
for ((i = 0; i < 300; i++)); do
    grep -q 'reconnected after' "$VU_DIR/pg-rcd.out" && break
    kill -0 "$pg" 2>/dev/null || break
    sleep 0.1
done
sleep 3
kill -INT "$pg" 2>/dev/null || true
rc=0
wait "$pg" || rc=$?
vu_log "daemon reconnect: $(grep -a -e vanished -e reconnected "$VU_DIR/pg-rcd.out" | tr '\n' ' ')"
vu_log "daemon reconnect: $(tail -n 1 "$VU_DIR/pg-rcd.out")"
ver=$(jget pg-rcd rx_verified)
before=$(sed -n 's/.*reconnected after.*verified so far \([0-9]*\).*/\1/p' "$VU_DIR/pg-rcd.out" | head -n 1)
vu_check "daemon reconnect: pktgen exited 0 (status $rc)" test "$rc" -eq 0
vu_check "daemon reconnect: the vanished backend was reported" grep -q 'backend vanished' "$VU_DIR/pg-rcd.out"
vu_check "daemon reconnect: pktgen reconnected" test "$(jget pg-rcd reconnects)" -ge 1
vu_check "daemon reconnect: no errors" test "$(jget pg-rcd errors)" = 0
vu_check "daemon reconnect: rx_verified grew after the restart ($before -> $ver)" test "${before:-x}" -ge 0 -a "$ver" -gt $((before + 1000))
kill -TERM "$rd"
wait "$rd" 2>/dev/null || true

vu_pass "vio-pktgen verified traffic through DPDK net_vhost (io, macswap, 2 queues), our daemon, and a backend restart (testpmd and our daemon)"
