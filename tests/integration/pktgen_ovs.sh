#!/usr/bin/env bash
# pktgen_ovs.sh PKTGEN — vio-pktgen through Open vSwitch with DPDK (the vhost-user backend real
# deployments use): a netdev bridge with two `dpdkvhostuser` ports, p1 and p2, OVS listening.
#
#   1. OpenFlow in_port=p1 -> output:p2: one vio-pktgen sends on p1, a second one on p2
#      (--rx-only) counts and verifies what arrives; OVS's counters agree with both (the
#      flow's n_packets = frames sent; frames missing from the receiver's sequence = OVS's
#      tx failures on p2; verified = the rest), the sender reports that nothing came back
#      (the peer does not reflect), no errors anywhere.
#   2. OpenFlow in_port=p1 -> in_port: frames come back out of p1 and are verified by the
#      sender (rx_verified > 0, errors 0); the flow counted every frame sent, and what did
#      not come back (pktgen's drops) is OVS's tx failures on p1.
# Exit: 0 pass, 1 fail, 77 skip (no root, no Open vSwitch with DPDK, or OVS-DPDK cannot start:
# its log is printed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
. "$here/vhost_user_lib.sh"

PKTGEN=${1:?usage: pktgen_ovs.sh PKTGEN}
vu_init pktgen_ovs
[[ -x "$PKTGEN" ]] || vu_fail "pktgen binary '$PKTGEN' not found"

OVS_DPDK=${OVS_DPDK:-/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk}
[[ $(id -u) -eq 0 ]] || vu_skip "needs root (DPDK)"
for t in ovsdb-tool ovsdb-server ovs-vsctl ovs-ofctl ovs-appctl; do
    command -v "$t" >/dev/null 2>&1 || vu_skip "$t not installed (scripts/deps.sh: openvswitch-switch)"
done
[[ -x "$OVS_DPDK" ]] || vu_skip "$OVS_DPDK not installed (scripts/deps.sh: openvswitch-switch-dpdk)"
schema=/usr/share/openvswitch/vswitch.ovsschema
[[ -r "$schema" ]] || vu_skip "no OVS schema at $schema"

PG_S=${PG_S:-3}
RATE=${PG_RATE:-200000}

# --- Open vSwitch with a private run directory (as vhost_user_ovs.sh) ----------------------
D=$VU_DIR/ovs
mkdir -p "$D"
export OVS_RUNDIR=$D OVS_DBDIR=$D OVS_LOGDIR=$D OVS_SYSCONFDIR=$D
prefix="vio-pgovs-$$-$RANDOM"
br="pg$$"
br=${br:0:15}
ovs_down() {
    local pid i
    ovs-vsctl --db="unix:$D/db.sock" --timeout=10 --if-exists del-br "$br" 2>/dev/null
    ovs-appctl --timeout=5 -t "$D/vswitchd.ctl" exit --cleanup 2>/dev/null
    pid=$(cat "$D/vswitchd.pid" 2>/dev/null) || pid=""
    for ((i = 0; i < 50; i++)); do
        [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -z "$pid" ]] || kill -KILL "$pid" 2>/dev/null
    pid=$(cat "$D/ovsdb.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
    rm -rf "/var/run/dpdk/$prefix"
    return 0
}
vu_on_cleanup ovs_down
ovsdb-tool create "$D/conf.db" "$schema"
ovsdb-server "$D/conf.db" --remote="punix:$D/db.sock" --pidfile="$D/ovsdb.pid" \
    --unixctl="$D/ovsdb.ctl" --log-file="$D/ovsdb.log" --detach
vsctl() { ovs-vsctl --db="unix:$D/db.sock" --timeout=60 "$@"; }
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-lcore-mask=0x1 \
    other_config:pmd-cpu-mask=0x2 other_config:per-port-memory=true \
    other_config:pmd-maxsleep=1000 \
    "other_config:dpdk-extra=--no-huge -m 1024 --legacy-mem --no-pci --file-prefix $prefix"
"$OVS_DPDK" "unix:$D/db.sock" --pidfile="$D/vswitchd.pid" --unixctl="$D/vswitchd.ctl" \
    --log-file="$D/vswitchd.log" --detach
vu_on_fail "tail -n 40 '$D/vswitchd.log' >&2"
vu_on_fail 'for f in "$VU_DIR"/*.err "$VU_DIR"/*.out; do [ -s "$f" ] && { echo "== $f"; tail -n 15 "$f"; }; done >&2'
ok=0
for ((i = 0; i < 300; i++)); do
    if [[ "$(vsctl get Open_vSwitch . dpdk_initialized 2>/dev/null)" == "true" ]]; then
        ok=1
        break
    fi
    kill -0 "$(cat "$D/vswitchd.pid" 2>/dev/null)" 2>/dev/null || break
    sleep 0.1
done
if [[ $ok -eq 0 ]]; then
    tail -n 40 "$D/vswitchd.log" >&2 || true
    vu_skip "OVS-DPDK did not initialize DPDK (log above)"
fi
vu_log "OVS-DPDK is up ($("$OVS_DPDK" --version | head -n 1))"
vsctl add-br "$br" -- set bridge "$br" datapath_type=netdev
for p in p1 p2; do
    vsctl add-port "$br" "$p" -- set Interface "$p" type=dpdkvhostuser || vu_fail "add-port $p failed"
    for ((i = 0; i < 100; i++)); do [[ -S "$D/$p" ]] && break; sleep 0.1; done
    [[ -S "$D/$p" ]] || vu_fail "OVS made no vhost-user socket for $p ($D/$p)"
done

# OVS 3.1 has no packet counters for dpdkvhostuser ports (dump-ports shows "?", dpctl/show
# "could not retrieve stats"): the flows' n_packets count what a port received, and the
# interface's custom statistic ovs_tx_failure_drops what OVS could not deliver to it (in the
# database, refreshed every 5 s).
txfail() { vsctl get Interface "$1" statistics:ovs_tx_failure_drops 2>/dev/null || echo 0; }
# wait_txfail PORT BASE WANT: until the drops since BASE read WANT (at most 15 s) -> TXFAIL
wait_txfail() {
    local i
    for ((i = 0; i < 150; i++)); do
        TXFAIL=$(( $(txfail "$1") - $2 ))
        [[ $TXFAIL -eq $3 ]] && return 0
        sleep 0.1
    done
    return 0
}
jget() { tail -n 1 "$VU_DIR/$1.out" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
# pg_start NAME taskset -c CPU ARGS...: vio-pktgen in the background -> PG_PID
pg_start() { # NAME taskset -c CPU ARGS...
    local name=$1
    shift
    "$1" "$2" "$3" "$PKTGEN" "${@:4}" >"$VU_DIR/$name.out" 2>"$VU_DIR/$name.err" &
    PG_PID=$!
    vu_track "$PG_PID"
}
pg_wait() { # PID -> PG_RC
    PG_RC=0
    wait "$1" || PG_RC=$?
}
wait_ready() { # NAME PID
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q 'queues ready in' "$VU_DIR/$1.err" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

flow_pkts() { # MATCH -> n_packets of the flow matching MATCH (flow counters outlive a port's vhost device)
    ovs-ofctl dump-flows "$br" "$1" | sed -n 's/.*n_packets=\([0-9]*\).*/\1/p' | head -n 1
}
# the two vio-pktgens share CPU 0 with OVS's main thread; the PMD thread polls on CPU 1
PG_CPU=${PG_CPU:-0}

# --- 1. p1 -> p2, counted by a second pktgen ------------------------------------------------
ovs-ofctl del-flows "$br"
ovs-ofctl add-flow "$br" "in_port=p1,actions=output:p2"
ovs-ofctl add-flow "$br" "in_port=p2,actions=drop"
pg_start rx2 taskset -c "$PG_CPU" --vhost-user "$D/p2" --rx-only --duration $((PG_S + 4)) --json
rxpid=$PG_PID
wait_ready rx2 "$rxpid" || vu_fail "the counting pktgen on p2 did not come up"
sleep 0.5
f2=$(txfail p2)
pg_start tx1 taskset -c "$PG_CPU" --vhost-user "$D/p1" --duration "$PG_S" --rate "$RATE" --json
pg_wait "$PG_PID"
txrc=$PG_RC
sleep 0.5
# read while the receiver is still connected (a vhost port's counters go with its device)
p1in=$(flow_pkts in_port=p1)
pg_wait "$rxpid"
rxrc=$PG_RC
tx=$(jget tx1 tx_packets); got=$(jget rx2 rx_verified); gaps=$(jget rx2 seq_gaps)
wait_txfail p2 "$f2" "$gaps"
vu_log "p1 -> p2: sender tx=$tx ($(jget tx1 tx_mpps) Mpps), receiver verified=$got missing=$gaps errors=$(jget rx2 errors) p50=$(jget rx2 lat_p50_us) us; OVS: flow in_port=p1 $p1in packets, p2 tx failures $TXFAIL"
vu_check "p1 -> p2: sender exited 0 (status $txrc)" test "$txrc" -eq 0
vu_check "p1 -> p2: receiver exited 0 (status $rxrc)" test "$rxrc" -eq 0
vu_check "p1 -> p2: frames sent ($tx)" test "${tx:-0}" -gt 1000
vu_check "p1 -> p2: the sender saw nothing come back and said so" \
    grep -q 'no frames came back: the peer does not reflect' "$VU_DIR/tx1.err"
vu_check "p1 -> p2: OVS received every frame the sender sent ($p1in == $tx)" test "$p1in" -eq "$tx"
vu_check "p1 -> p2: frames missing at the receiver are OVS's p2 tx failures ($gaps == $TXFAIL)" test "$gaps" -eq "$TXFAIL"
vu_check "p1 -> p2: the receiver verified every other frame ($got == $p1in - $TXFAIL)" test "$got" -eq $((p1in - TXFAIL))
vu_check "p1 -> p2: frames arrived at p2 ($got of $tx)" test "$got" -gt 1000
vu_check "p1 -> p2: no errors at the receiver" test "$(jget rx2 errors)" = 0

# --- 2. p1 -> in_port: OVS reflects -----------------------------------------------------------
ovs-ofctl del-flows "$br"
ovs-ofctl add-flow "$br" "in_port=p1,actions=in_port"
ovs-ofctl add-flow "$br" "in_port=p2,actions=drop"
f1=$(txfail p1)
pg_start refl taskset -c "$PG_CPU" --vhost-user "$D/p1" --duration "$PG_S" --rate "$RATE" --json
pg_wait "$PG_PID"
p1in=$(flow_pkts in_port=p1)
tx=$(jget refl tx_packets); rx=$(jget refl rx_packets); ver=$(jget refl rx_verified); drops=$(jget refl drops)
wait_txfail p1 "$f1" "$drops"
vu_log "reflect: pktgen tx=$tx rx=$rx verified=$ver drops=$drops p50=$(jget refl lat_p50_us) us p99=$(jget refl lat_p99_us) us; OVS: flow in_port=p1 $p1in packets, p1 tx failures $TXFAIL"
vu_check "reflect: pktgen exited 0 (status $PG_RC)" test "$PG_RC" -eq 0
vu_check "reflect: frames came back verified ($ver)" test "${ver:-0}" -gt 1000
vu_check "reflect: no errors" test "$(jget refl errors)" = 0
vu_check "reflect: reflected" test "$(jget refl reflected)" = true
vu_check "reflect: OVS received every frame pktgen sent ($p1in == $tx)" test "$p1in" -eq "$tx"
vu_check "reflect: every frame came back or is counted as dropped ($ver + $drops == $tx)" test $((ver + drops)) -eq "$tx"
# OVS sometimes loses up to a ring's worth more while a new vhost device and its datapath flow
# come up (frames its flow counted, neither delivered nor counted as tx failures)
vu_check "reflect: pktgen's drops are OVS's p1 tx failures, within a ring ($drops - $TXFAIL in 0..256)" \
    test "$drops" -ge "$TXFAIL" -a $((drops - TXFAIL)) -le 256
vu_check "reflect: every frame missing from the sequence is a drop ($(jget refl seq_gaps) <= $drops)" \
    test "$(jget refl seq_gaps)" -le "$drops"

vu_pass "vio-pktgen through OVS-DPDK dpdkvhostuser ports: p1 -> p2 counted ($got), p1 -> in_port verified ($ver)"
