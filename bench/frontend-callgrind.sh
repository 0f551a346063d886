#!/usr/bin/env bash
# bench/frontend-callgrind.sh — instructions per frame of the vhost-user FRONTEND: our
# vio-pktgen against DPDK's own net_virtio_user (testpmd), each run under valgrind
# --tool=callgrind against the same native dpdk-testpmd net_vhost backend (io forwarding, on
# the other CPU). Wall-clock figures on a shared machine swing ~2x; an instruction count does
# not, so this is the figure to compare code changes with (bench/frontend.sh is the timed one).
#
# Modes, as in bench/frontend.sh:
#   rt  round trip: pktgen transmits, receives what the backend returns and verifies every
#       frame (sequence, payload, timestamp); virtio_user runs io forwarding after
#       `start tx_first 8` (256 frames circulate, forwarded back untouched). Frames = the
#       frames the frontend received back (each was also transmitted by it).
#   tx  transmit only: pktgen --tx-only; testpmd --forward-mode=txonly. Frames = the frames
#       the frontend put on its transmit ring.
# The figure is the busiest frontend thread's instructions divided by frames: pktgen's main
# thread counted only inside its data path (--toggle-collect=pg_run*, less pg_drain*: connection
# setup and the final drain excluded),
# testpmd's forwarding lcore (the busiest thread but its main one; all of it, idle polls
# included — testpmd is stripped, so no toggle). Under valgrind the frontend is ~50x slower
# than the backend, so it seldom polls an empty ring — unless the backend is descheduled: on
# a loaded machine both figures then grow with the polls that found nothing. The backend runs
# at nice -10 (a larger share of its CPU, not a real-time class) to keep that rare.
#
# Usage: bench/frontend-callgrind.sh [--pktgen PATH] [--seconds N] [--sizes "64 1500"]
#                                    [--modes "rt tx"] [--vu-args ARGS] [--only pktgen|virtio_user] [-a] [--keep DIR]
#   --pktgen PATH   vio-pktgen (default: build*/examples/vio-pktgen; RelWithDebInfo or Release)
#   --seconds N     how long each frontend runs under callgrind (default 10)
#   --vu-args ARGS  virtio_user devargs (default "mrg_rxbuf=1,in_order=0": the ring features
#                   pktgen negotiates)
#   --only SIDE     run one side only (when iterating on our code)
#   -a              also print pktgen's top functions (callgrind_annotate, self)
#   --keep DIR      copy the callgrind output files to DIR
# Prints per case
#   RESULT frontend-cg/<mode>/<size>/pktgen <Ir> Ir/frame
#   RESULT frontend-cg/<mode>/<size>/virtio_user <Ir> Ir/frame
#   RESULT frontend-cg/<mode>/<size>/ratio <x> x      (virtio_user/pktgen: >= 1 = pktgen uses
#                                                      no more instructions per frame)
# Needs root, dpdk-testpmd and valgrind; prints SKIP and exits 0 without them. Never fails on
# a figure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")
pktgen="" secs=10 sizes="64 1500" modes="rt tx" vuargs="mrg_rxbuf=1,in_order=0" only="" annotate=0 keep=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --pktgen) pktgen=${2:?--pktgen needs a path}; shift 2 ;;
        --seconds) secs=${2:?--seconds needs a value}; shift 2 ;;
        --sizes) sizes=${2:?--sizes needs a list}; shift 2 ;;
        --modes) modes=${2:?--modes needs a list}; shift 2 ;;
        --vu-args) vuargs=$2; shift 2 ;;
        --only) only=${2:?--only needs pktgen or virtio_user}; shift 2 ;;
        -a) annotate=1; shift ;;
        --keep) keep=${2:?--keep needs a directory}; shift 2 ;;
        -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "frontend-callgrind: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'frontend-cg: %s\n' "$*"; }
skip() { say "SKIP: $*"; exit 0; }
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "frontend-callgrind: --seconds must be a positive integer, got '$secs'" >&2; exit 2; }
for m in $modes; do
    [[ $m == rt || $m == tx ]] || { echo "frontend-callgrind: --modes wants rt and/or tx, got '$m'" >&2; exit 2; }
done
for s in $sizes; do
    [[ $s =~ ^[0-9]+$ ]] || { echo "frontend-callgrind: bad size '$s'" >&2; exit 2; }
done
[[ -z $only || $only == pktgen || $only == virtio_user ]] ||
    { echo "frontend-callgrind: --only wants pktgen or virtio_user" >&2; exit 2; }
if [[ -z "$pktgen" ]]; then
    for d in "$repo"/build-bench "$repo"/build "$repo"/build*; do
        [[ -x "$d/examples/vio-pktgen" ]] && { pktgen=$d/examples/vio-pktgen; break; }
    done
fi
[[ -x "$pktgen" ]] || skip "vio-pktgen not built (--pktgen PATH)"
command -v dpdk-testpmd >/dev/null 2>&1 || skip "dpdk-testpmd not installed"
command -v valgrind >/dev/null 2>&1 || skip "valgrind not installed"
[[ $(id -u) -eq 0 ]] || skip "needs root (DPDK)"

BE_CPU=0
FE_CPU=$(($(nproc) > 1 ? 1 : 0))
dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-bench-fecg.XXXXXX")
pids=()
prefixes=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
    for p in "${prefixes[@]}"; do rm -rf "/var/run/dpdk/$p"; done
    [[ -n $keep ]] && { mkdir -p "$keep" && cp "$dir"/*.cg-* "$keep"/ 2>/dev/null; }
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # FILE PATTERN SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -aq "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# busiest PREFIX [SKIP_MAIN]: the busiest thread of a --separate-threads=yes run: Ir and file
busiest() {
    local f best=0 bf=""
    for f in "$1"-*; do
        [[ -f $f ]] || continue
        [[ ${2:-0} -eq 1 && $f == *-01 ]] && continue
        local t
        t=$(awk '/^totals:/ {print $2; exit} /^summary:/ {print $2; exit}' "$f")
        [[ -n $t ]] && ((t > best)) && { best=$t; bf=$f; }
    done
    echo "$best $bf"
}
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.0f", a / b; else print "nan" }'; }

# backend NAME SOCK: native testpmd net_vhost (server), io forwarding, started; BPID, BFIFO
backend() {
    local prefix="vio-fecg-be-$1-$$"
    prefixes+=("$prefix")
    BFIFO=$dir/$1.fifo
    mkfifo "$BFIFO"
    nice -n -10 taskset -c "$BE_CPU" stdbuf -oL dpdk-testpmd --lcores="0@$BE_CPU,1@$BE_CPU" --no-huge -m 1024 \
        --no-pci --file-prefix "$prefix" --vdev "net_vhost0,iface=$2,queues=1,client=0" \
        -- -i --forward-mode=io --auto-start <>"$BFIFO" >"$dir/$1.log" 2>&1 &
    BPID=$!
    pids+=("$BPID")
    wait_for "$dir/$1.log" 'testpmd> ' 60 || { tail -5 "$dir/$1.log" >&2; return 1; }
    local i
    for ((i = 0; i < 100; i++)); do [[ -S $2 ]] && return 0; sleep 0.1; done
    return 1
}
backend_quit() {
    printf 'stop\nquit\n' >"$BFIFO"
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BPID" 2>/dev/null
    wait "$BPID" 2>/dev/null
    rm -f "$BFIFO"
}

say "vio-pktgen $pktgen; peer $(dpkg-query -W -f '${Package} ${Version}' dpdk 2>/dev/null || echo dpdk-testpmd)"
say "frontend under callgrind on CPU $FE_CPU for $secs s, native net_vhost backend on CPU $BE_CPU; virtio_user $vuargs"

for mode in $modes; do
    for size in $sizes; do
        tag="$mode/$size"
        pg_pf=nan vu_pf=nan
        # ---- pktgen ----
        if [[ $only != virtio_user ]]; then
            sock=$dir/pg-$mode-$size.sock
            if backend "pg-$mode-$size" "$sock"; then
                extra=()
                [[ $mode == tx ]] && extra=(--tx-only)
                cg=$dir/pg-$mode-$size.cg
                taskset -c "$FE_CPU" valgrind --tool=callgrind --separate-threads=yes \
                    --toggle-collect='pg_run*' --toggle-collect='pg_drain*' --callgrind-out-file="$cg" \
                    "$pktgen" --vhost-user "$sock" --size "$size" --duration "$secs" --json --quiet \
                    --timeout 120 "${extra[@]}" >"$dir/pg.out" 2>"$dir/pg.err"
                rc=$?
                [[ $rc -eq 0 ]] || say "pktgen exited $rc: $(tail -n 3 "$dir/pg.err" | tr '\n' ' ')"
                js=$(tail -n 1 "$dir/pg.out")
                if [[ $mode == rt ]]; then
                    frames=$(sed -n 's/.*"rx_packets":\([0-9]*\).*/\1/p' <<<"$js")
                else
                    frames=$(sed -n 's/.*"tx_packets":\([0-9]*\).*/\1/p' <<<"$js")
                fi
                errs=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$js")
                read -r ir file < <(busiest "$cg")
                pg_pf=$(per "${ir:-0}" "${frames:-0}")
                say "$tag pktgen: ${frames:-0} frames (errors ${errs:-?}), $ir Ir in its data path: $pg_pf Ir/frame"
                if [[ $annotate -eq 1 && -n $file ]]; then
                    callgrind_annotate --inclusive=no "$file" 2>/dev/null | grep -E '^ *[0-9][0-9,]* ' | head -15
                fi
                backend_quit
            else
                say "$tag: backend did not start"
            fi
        fi
        # ---- DPDK virtio_user ----
        if [[ $only != pktgen ]]; then
            sock=$dir/vu-$mode-$size.sock
            if backend "vu-$mode-$size" "$sock"; then
                prefix="vio-fecg-fe-$mode-$size-$$"
                prefixes+=("$prefix")
                fifo=$dir/fe.fifo log=$dir/fe-$mode-$size.log cg=$dir/vu-$mode-$size.cg
                rm -f "$fifo"
                mkfifo "$fifo"
                fwd=io
                [[ $mode == tx ]] && fwd=txonly
                taskset -c "$FE_CPU" valgrind --tool=callgrind --separate-threads=yes \
                    --callgrind-out-file="$cg" dpdk-testpmd --lcores="0@$FE_CPU,1@$FE_CPU" --no-huge \
                    -m 512 --no-pci --file-prefix "$prefix" \
                    --vdev "net_virtio_user0,path=$sock,queues=1${vuargs:+,$vuargs}" \
                    -- -i --forward-mode=$fwd --txpkts="$size" --burst=32 --total-num-mbufs=16384 \
                    <>"$fifo" >"$log" 2>&1 &
                fp=$!
                pids+=("$fp")
                frames=0
                if wait_for "$log" 'testpmd> ' 300; then
                    if [[ $mode == rt ]]; then printf 'start tx_first 8\n' >"$fifo"; else printf 'start\n' >"$fifo"; fi
                    sleep "$secs"
                    printf 'stop\n' >"$fifo"
                    wait_for "$log" 'Done\.' 60 || true
                    printf 'quit\n' >"$fifo"
                    for ((i = 0; i < 600; i++)); do kill -0 "$fp" 2>/dev/null || break; sleep 0.1; done
                    # the accumulated block of `stop`: its RX-packets / TX-packets lines
                    if [[ $mode == rt ]]; then
                        frames=$(grep -a 'RX-packets:' "$log" | tail -1 | awk '{print $2}')
                    else
                        frames=$(grep -a 'TX-packets:' "$log" | tail -1 | awk '{print $2}')
                    fi
                else
                    say "$tag: testpmd net_virtio_user did not start:"; tail -5 "$log" >&2
                fi
                kill -KILL "$fp" 2>/dev/null
                wait "$fp" 2>/dev/null
                read -r ir file < <(busiest "$cg" 1)
                vu_pf=$(per "${ir:-0}" "${frames:-0}")
                say "$tag virtio_user: ${frames:-0} frames, $ir Ir in the forwarding lcore: $vu_pf Ir/frame"
                backend_quit
            else
                say "$tag: backend did not start"
            fi
        fi
        [[ $pg_pf != nan ]] && echo "RESULT frontend-cg/$tag/pktgen $pg_pf Ir/frame"
        [[ $vu_pf != nan ]] && echo "RESULT frontend-cg/$tag/virtio_user $vu_pf Ir/frame"
        if [[ $pg_pf != nan && $vu_pf != nan ]]; then
            r=$(awk -v a="$pg_pf" -v b="$vu_pf" 'BEGIN { printf "%.3f", b / a }')
            echo "RESULT frontend-cg/$tag/ratio $r x"
            say "$tag: virtio_user/pktgen instructions per frame = $r (>= 1.0: pktgen no more costly)"
        fi
    done
done
say "done"
exit 0
