#!/usr/bin/env bash
# bench/frontend.sh — our vhost-user frontend (vio-pktgen) against DPDK's own frontend
# (testpmd's net_virtio_user), both driving the same DPDK net_vhost backend. Prints figures,
# RESULT lines and ratio lines; never fails on a time.
#
# Data path. One backend per case: dpdk-testpmd with net_vhost (server, --no-huge), io
# forwarding, interactive, on CPU 0 (main and forwarding lcore). The frontend runs on CPU 1:
#   A  vio-pktgen --vhost-user SOCK --size S: transmits as fast as it can, receives what the
#      backend returns and verifies every frame (sequence, payload), timestamps included;
#   B  dpdk-testpmd --vdev net_virtio_user0,path=SOCK,mrg_rxbuf=1,in_order=0 (the ring features
#      pktgen negotiates: split ring, mergeable buffers, no IN_ORDER, which our driver side
#      does not implement; --vu-args in_order=1 gives DPDK its fastest split path),
#      io forwarding after `start tx_first 8` (8 bursts of 32 frames of S bytes circulate:
#      256 in flight, as many as pktgen's 256-entry transmit ring holds), forwarding what
#      comes back without touching it.
# Both are measured at the same place, the backend: its port counters (`show port stats
# all`) at the start and the end of a --seconds window after --warmup seconds; the figure is
# the frames per second the backend returned to the frontend (TX-packets: round trips
# completed). --mode tx measures transmit only instead: pktgen --tx-only against testpmd
# --forward-mode=txonly (neither receives; the backend drops what it cannot return), the
# figure is then the backend's RX-packets rate.
# A and B alternate, A B A B ..., for --pairs pairs (at least 5 for a report); per case the
# median of each side and the median of the pairwise ratios A/B (the machine switches speed
# by ~2x now and then: only neighbouring runs compare).
#   RESULT frontend/<mode>/<size>/pktgen <Mpps> Mpps
#   RESULT frontend/<mode>/<size>/virtio_user <Mpps> Mpps
#   RESULT frontend/<mode>/<size>/ratio <x> x          (target >= 1.0)
#
# Ours against ours: vio-pktgen against vio-vhost-user-net --loopback (the daemon on CPU 0),
# the figure pktgen's own verified receive rate, median of --pairs runs:
#   RESULT frontend/ours/<size>/pktgen-daemon <Mpps> Mpps
#
# Control path: vio-pktgen --setup-only --mem-size M (a memfd of M bytes, ftruncate only, no
# page touched by us) times connect -> every queue set up, enabled and DRIVER_OK acknowledged
# (REPLY_ACK): "all queues ready". Against our daemon for 1 GiB and 64 GiB, against DPDK's
# net_vhost for 1 GiB (DPDK maps and populates guest memory at SET_MEM_TABLE with 4 KiB pages:
# 64 GiB would not fit); median of --pairs runs:
#   RESULT frontend/ctrl/<backend>/<mem> <ms> ms
#
# Usage: bench/frontend.sh [options]
#   --pktgen PATH   vio-pktgen (default: build*/examples/vio-pktgen)
#   --daemon PATH   vio-vhost-user-net (default: next to vio-pktgen)
#   --pairs N       A/B pairs per case (default 5)
#   --seconds S     measuring window per run (default 2)
#   --warmup S      seconds before the window (default 1)
#   --sizes LIST    frame sizes (default "64 1500")
#   --mode MODE     rt (round trip, the default) or tx (transmit only)
#   --vu-args ARGS  virtio_user devargs (default "mrg_rxbuf=1,in_order=0")
#   --no-ours / --no-ctrl / --no-data   skip a section
#   --quick         --pairs 1 --seconds 0.5 --warmup 0.5 (a smoke run: not a measurement)
# Needs root and dpdk-testpmd; prints "SKIP" and exits 0 without them. Run it on a quiet
# machine: the figures mean nothing under load.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")
pktgen="" daemon="" pairs=5 secs=2 warm=1 sizes="64 1500" mode=rt vuargs="mrg_rxbuf=1,in_order=0"
do_ours=1 do_ctrl=1 do_data=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --pktgen) pktgen=$2; shift 2 ;;
        --daemon) daemon=$2; shift 2 ;;
        --pairs) pairs=$2; shift 2 ;;
        --seconds) secs=$2; shift 2 ;;
        --warmup) warm=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --vu-args) vuargs=$2; shift 2 ;;
        --no-ours) do_ours=0; shift ;;
        --no-ctrl) do_ctrl=0; shift ;;
        --no-data) do_data=0; shift ;;
        --quick) pairs=1 secs=0.5 warm=0.5; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "frontend.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'frontend: %s\n' "$*"; }
skip() { say "SKIP: $*"; exit 0; }
[[ $mode == rt || $mode == tx ]] || { echo "frontend.sh: --mode wants rt or tx" >&2; exit 2; }
if [[ -z "$pktgen" ]]; then
    for d in "$repo"/build-bench "$repo"/build "$repo"/build*; do
        [[ -x "$d/examples/vio-pktgen" ]] && { pktgen=$d/examples/vio-pktgen; break; }
    done
fi
[[ -x "$pktgen" ]] || skip "vio-pktgen not built (--pktgen PATH)"
[[ -n "$daemon" ]] || daemon=$(dirname "$pktgen")/vio-vhost-user-net
command -v dpdk-testpmd >/dev/null 2>&1 || skip "dpdk-testpmd not installed"
[[ $(id -u) -eq 0 ]] || skip "needs root (DPDK)"

BE_CPU=0
FE_CPU=$(( $(nproc) > 1 ? 1 : 0 ))
dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-bench-frontend.XXXXXX")
pids=()
prefixes=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for p in "${prefixes[@]}"; do rm -rf "/var/run/dpdk/$p"; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "vio-pktgen $pktgen; peer $(dpkg-query -W -f '${Package} ${Version}' dpdk 2>/dev/null || echo dpdk)"
say "backend on CPU $BE_CPU, frontend on CPU $FE_CPU; $pairs pair(s), ${warm} s warm-up, ${secs} s window, mode $mode, virtio_user $vuargs"

# testpmd NAME CPU ARGS...: interactive testpmd, commands through NAME.fifo -> TPID
testpmd() {
    local name=$1 cpu=$2 prefix="vio-bf-$1-$$-$RANDOM"
    shift 2
    prefixes+=("$prefix")
    mkfifo "$dir/$name.fifo"
    stdbuf -oL dpdk-testpmd --lcores="0@$cpu,1@$cpu" --no-huge -m 1024 --no-pci \
        --file-prefix "$prefix" "$@" <>"$dir/$name.fifo" >"$dir/$name.log" 2>&1 &
    TPID=$!
    pids+=("$TPID")
    local i
    for ((i = 0; i < 600; i++)); do
        grep -aq 'testpmd> ' "$dir/$name.log" 2>/dev/null && return 0
        kill -0 "$TPID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/$name.log" >&2
    return 1
}
tp_cmd() { printf '%s\n' "$2" >"$dir/$1.fifo"; }
tp_quit() { # NAME PID
    tp_cmd "$1" quit
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$2" 2>/dev/null
    wait "$2" 2>/dev/null
    rm -f "$dir/$1.fifo"
}
# be_stats NAME -> RXP TXP (the backend port's counters) and NOW (s), from a fresh show
be_stats() {
    local n0 i
    n0=$(grep -ac 'TX-packets' "$dir/$1.log")
    NOW=$(date +%s.%N)
    tp_cmd "$1" "show port stats 0"
    for ((i = 0; i < 100; i++)); do
        [[ $(grep -ac 'TX-packets' "$dir/$1.log") -gt $n0 ]] && break
        sleep 0.01
    done
    RXP=$(grep -a 'RX-packets' "$dir/$1.log" | tail -n 1 | sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p')
    TXP=$(grep -a 'TX-packets' "$dir/$1.log" | tail -n 1 | sed -n 's/.*TX-packets: *\([0-9]*\).*/\1/p')
}
# window NAME -> RATE (Mpps at the backend over the window)
window() {
    local r0 t0 n0
    sleep "$warm"
    be_stats "$1"; r0=$RXP t0=$TXP n0=$NOW
    sleep "$secs"
    be_stats "$1"
    if [[ $mode == rt ]]; then
        RATE=$(awk -v a="$t0" -v b="$TXP" -v s="$n0" -v e="$NOW" 'BEGIN { printf "%.4f", (b - a) / (e - s) / 1e6 }')
    else
        RATE=$(awk -v a="$r0" -v b="$RXP" -v s="$n0" -v e="$NOW" 'BEGIN { printf "%.4f", (b - a) / (e - s) / 1e6 }')
    fi
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- data path: pktgen vs virtio_user, same backend ----
if [[ $do_data -eq 1 ]]; then
    for size in $sizes; do
        sock=$dir/be-$size.sock
        be=be-$size
        testpmd "$be" "$BE_CPU" --vdev "net_vhost0,iface=$sock,queues=1,client=0" \
            -- -i --forward-mode=io --auto-start || { say "backend did not start"; continue; }
        bpid=$TPID
        for ((i = 0; i < 100; i++)); do [[ -S "$sock" ]] && break; sleep 0.1; done
        As=() Bs=() Rs=()
        for ((p = 1; p <= pairs; p++)); do
            # A: vio-pktgen
            extra=()
            [[ $mode == tx ]] && extra=(--tx-only)
            dur=$(awk -v w="$warm" -v s="$secs" 'BEGIN { print w + s + 1 }')
            taskset -c "$FE_CPU" "$pktgen" --vhost-user "$sock" --size "$size" --duration "$dur" \
                --json --quiet "${extra[@]}" >"$dir/a.out" 2>"$dir/a.err" &
            apid=$!
            pids+=("$apid")
            window "$be"
            a=$RATE
            wait "$apid"
            arc=$?
            [[ $arc -eq 0 ]] || say "pktgen exited $arc: $(tail -n 2 "$dir/a.err" | tr '\n' ' ')"
            # B: DPDK's virtio_user
            fe=fe-$size-$p
            fwd=io
            [[ $mode == tx ]] && fwd=txonly
            if testpmd "$fe" "$FE_CPU" --vdev "net_virtio_user0,path=$sock,queues=1${vuargs:+,$vuargs}" \
                -- -i --forward-mode=$fwd --txpkts="$size" --burst=32; then
                bfpid=$TPID
                if [[ $mode == rt ]]; then tp_cmd "$fe" "start tx_first 8"; else tp_cmd "$fe" "start"; fi
                window "$be"
                b=$RATE
                tp_cmd "$fe" "stop"
                tp_quit "$fe" "$bfpid"
            else
                b=nan
            fi
            r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }')
            say "$mode $size B pair $p: pktgen $a Mpps, virtio_user $b Mpps, ratio $r ($(tail -n 1 "$dir/a.out" | sed -n 's/.*"errors":\([0-9]*\).*/errors \1/p'))"
            As+=("$a") Bs+=("$b") Rs+=("$r")
        done
        tp_quit "$be" "$bpid"
        ma=$(printf '%s\n' "${As[@]}" | median); mb=$(printf '%s\n' "${Bs[@]}" | median)
        mr=$(printf '%s\n' "${Rs[@]}" | grep -v nan | median)
        echo "RESULT frontend/$mode/$size/pktgen $ma Mpps"
        echo "RESULT frontend/$mode/$size/virtio_user $mb Mpps"
        echo "RESULT frontend/$mode/$size/ratio $mr x"
        say "ratio $mode $size B: pktgen / virtio_user = $mr (median of ${#Rs[@]} pairwise ratios: ${Rs[*]}; target >= 1.0)"
    done
fi

# ---- ours against ours ----
start_daemon() { # SOCK ARGS...
    local s=$1
    shift
    rm -f "$s"
    taskset -c "$BE_CPU" "$daemon" --socket "$s" "$@" >"$dir/d.out" 2>"$dir/d.err" &
    DPID=$!
    pids+=("$DPID")
    local i
    for ((i = 0; i < 100; i++)); do [[ -S "$s" ]] && return 0; sleep 0.1; done
    return 1
}
if [[ $do_ours -eq 1 && -x "$daemon" ]]; then
    for size in $sizes; do
        start_daemon "$dir/d.sock" --loopback --quiet || { say "daemon did not start"; continue; }
        vals=()
        for ((p = 1; p <= pairs; p++)); do
            v=$(taskset -c "$FE_CPU" "$pktgen" --vhost-user "$dir/d.sock" --size "$size" \
                --duration "$secs" --json --quiet 2>"$dir/o.err" | tail -n 1 |
                sed -n 's/.*"rx_mpps":\([0-9.]*\).*/\1/p')
            say "ours $size B run $p: pktgen against vio-vhost-user-net --loopback: ${v:-?} Mpps verified"
            [[ -n "$v" ]] && vals+=("$v")
        done
        kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
        echo "RESULT frontend/ours/$size/pktgen-daemon $(printf '%s\n' "${vals[@]}" | median) Mpps"
    done
fi

# ---- control path: connect -> all queues ready ----
ctrl_runs() { # BACKEND MEM SOCK
    local vals=() v p
    for ((p = 1; p <= pairs; p++)); do
        v=$(taskset -c "$FE_CPU" "$pktgen" --vhost-user "$3" --setup-only --mem-size "$2" --json \
            --timeout 60 2>"$dir/c.err" | tail -n 1 | sed -n 's/.*"setup_ms":\([0-9.]*\).*/\1/p')
        say "ctrl $1 $2 run $p: all queues ready in ${v:-?} ms"
        [[ -n "$v" ]] && vals+=("$v")
        sleep 0.2
    done
    echo "RESULT frontend/ctrl/$1/$2 $(printf '%s\n' "${vals[@]}" | median) ms"
}
if [[ $do_ctrl -eq 1 ]]; then
    if [[ -x "$daemon" ]] && start_daemon "$dir/c.sock" --loopback --quiet; then
        ctrl_runs daemon 1G "$dir/c.sock"
        ctrl_runs daemon 64G "$dir/c.sock"
        kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
    fi
    if testpmd cbe "$BE_CPU" --vdev "net_vhost0,iface=$dir/cbe.sock,queues=1,client=0" \
        -- -i --forward-mode=io --auto-start; then
        cpid=$TPID
        for ((i = 0; i < 100; i++)); do [[ -S "$dir/cbe.sock" ]] && break; sleep 0.1; done
        ctrl_runs net_vhost 1G "$dir/cbe.sock"
        tp_quit cbe "$cpid"
    fi
fi
say "done"
