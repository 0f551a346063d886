#!/usr/bin/env bash
# bench/vhost-user-callgrind.sh — instructions per forwarded frame of the back-end: our
# vio-vhost-user-net (--loopback --loopback-drop, --busy-poll unless --mode says) and DPDK's net_vhost PMD (testpmd
# io forwarding), each run under valgrind --tool=callgrind, with the same native
# dpdk-testpmd net_virtio_user front-end forwarding 64 B frames (io, start tx_first) on the
# other CPU. Wall-clock figures on this machine swing ~2x with its mood; an instruction count
# does not, so this is the figure to compare code changes with.
#
# The figure is the busiest thread's instructions (our worker, DPDK's forwarding lcore: all of
# it, the polls that found nothing included) divided by the frames the front-end received
# back. Under valgrind the back-end is ~50x slower than the front-end, so it nearly never
# polls an empty ring; bursts are shorter than in a native run, so per-burst costs weigh a
# little more (the figure of one build moves by a few percent from run to run with that).
#
# Usage: bench/vhost-user-callgrind.sh [--daemon PATH] [--seconds N] [--path M:I] [--mode M] [-a]
#   --daemon PATH   vio-vhost-user-net (default: build*/examples/vio-vhost-user-net; build it
#                   in Release, with -g for source lines)
#   --seconds N     how long each back-end forwards (default 15)
#   --path M:I      virtio_user mrg_rxbuf=M,in_order=I (default 1:1)
#   --mode M        our daemon's mode: busy-poll (the default here, the figures of the
#                   history were taken with it) or default (its adaptive default mode)
#   -a              also print our worker's top functions (callgrind_annotate)
# RESULT vhost-user-cg/<path>/{ours,dpdk} <Ir> Ir/frame and .../ratio (ours/dpdk: below 1 =
# fewer instructions than DPDK's). 4 KiB pages (--no-huge) on both sides. Needs root,
# dpdk-testpmd and valgrind; prints SKIP and exits 0 without them. Never fails on a figure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")
daemon="" secs=15 path=1:1 annotate=0 omode=busy-poll
while [[ $# -gt 0 ]]; do
    case "$1" in
        --daemon) daemon=${2:?--daemon needs a path}; shift 2 ;;
        --seconds) secs=${2:?--seconds needs a value}; shift 2 ;;
        --path) path=${2:?--path needs M:I}; shift 2 ;;
        --mode) omode=${2:?--mode needs busy-poll or default}; shift 2 ;;
        -a) annotate=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "vhost-user-callgrind: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "vhost-user-callgrind: --seconds must be a positive integer, got '$secs'" >&2; exit 2; }
case "$omode" in
    busy-poll) oargs=(--busy-poll) ;;
    default) oargs=() ;;
    *) echo "vhost-user-callgrind: --mode wants busy-poll or default, got '$omode'" >&2; exit 2 ;;
esac
[[ $path =~ ^[01]:[01]$ ]] || { echo "vhost-user-callgrind: --path must be M:I with M, I in 0/1, got '$path'" >&2; exit 2; }
VU_TAG=vhost-user-cg
# shellcheck source=bench/vhost-user-common.sh
. "$here/vhost-user-common.sh"
command -v valgrind >/dev/null 2>&1 || skip "valgrind not installed"
command -v callgrind_annotate >/dev/null 2>&1 || skip "callgrind_annotate not installed"
ncpu=$(nproc)
BE_CPU=0
FE_CPU=$((ncpu > 1 ? 1 : 0))
mrg=${path%:*} ino=${path#*:}
devargs="mrg_rxbuf=$mrg,in_order=$ino"
tag="mrg$mrg-inorder$ino"

dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-bench-vucg.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
    rm -rf /var/run/dpdk/vio-cg-*-$$
}
trap 'cleanup; rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM

wait_for() { # FILE PATTERN SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -aq "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
wait_sock() { # PATH SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do [[ -S $1 ]] && return 0; sleep 0.1; done
    return 1
}
# run_fe SIDE SOCK EXTRA: the native front-end, io forwarding of 64 B frames for --seconds;
# prints how many frames came back
run_fe() {
    local side=$1 sock=$2 extra=$3 fifo="$dir/fe-$1.fifo" log="$dir/fe-$1.log"
    mkfifo "$fifo"
    stdbuf -oL dpdk-testpmd --lcores="0@$FE_CPU,1@$FE_CPU" --no-huge -m 512 --no-pci \
        --file-prefix "vio-cg-fe-$side-$$" --vdev "net_virtio_user0,path=$sock,$devargs$extra" \
        -- -i --total-num-mbufs=32768 <>"$fifo" >"$log" 2>&1 &
    local fp=$!
    pids+=("$fp")
    if ! wait_for "$log" 'testpmd> ' 60; then
        say "$side: the front-end did not start:" >&2; tail -5 "$log" >&2; return 1
    fi
    printf 'set fwd io\nset txpkts 64\nstart tx_first\n' >"$fifo"
    sleep "$secs"
    printf 'stop\n' >"$fifo"
    wait_for "$log" 'Done\.' 20 || true
    printf 'quit\n' >"$fifo"
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$fp" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$fp" 2>/dev/null
    # the port's totals: the first "RX-packets:" of the accumulated statistics block
    grep -a 'RX-packets:' "$log" | tail -1 | awk '{print $2}'
}
# busiest thread of a --separate-threads=yes run: its total Ir and its file
busiest() { # PREFIX
    local f best=0 bf=""
    for f in "$1"-*; do
        [[ -f $f ]] || continue
        local t
        t=$(awk '/^totals:/ {print $2; exit} /^summary:/ {print $2; exit}' "$f")
        [[ -n $t ]] && (( t > best )) && { best=$t; bf=$f; }
    done
    echo "$best $bf"
}

say "daemon: $daemon (mode $omode)"
say "peer: $(peer_version)"
say "path $devargs, io forwarding, 64 B, $secs s per side, back-end under callgrind on CPU $BE_CPU"

# --- ours ------------------------------------------------------------------------------
sock="$dir/ours.sock"
taskset -c "$BE_CPU" valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/ours.cg" "$daemon" --socket "$sock" --loopback --loopback-drop \
    -Q "${oargs[@]}" >"$dir/ours.out" 2>"$dir/ours.err" &
dp=$!
pids+=("$dp")
ours_frames=0
if wait_sock "$sock" 60; then
    ours_frames=$(run_fe ours "$sock" "") || ours_frames=0
else
    say "ours: the daemon did not create its socket"; tail -5 "$dir/ours.err" >&2
fi
kill -TERM "$dp" 2>/dev/null
wait "$dp" 2>/dev/null
read -r ours_ir ours_file < <(busiest "$dir/ours.cg")

# --- DPDK ------------------------------------------------------------------------------
sock="$dir/dpdk.sock"
mkfifo "$dir/be.fifo"
taskset -c "$BE_CPU" valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/dpdk.cg" dpdk-testpmd --lcores="0@$BE_CPU,1@$BE_CPU" --no-huge \
    -m 512 --no-pci --file-prefix "vio-cg-be-$$" --vdev "net_vhost0,iface=$sock,queues=1" \
    -- -i --total-num-mbufs=16384 --forward-mode=io <>"$dir/be.fifo" >"$dir/be.log" 2>&1 &
bp=$!
pids+=("$bp")
dpdk_frames=0
if wait_for "$dir/be.log" 'testpmd> ' 300 && wait_sock "$sock" 30; then
    printf 'start\n' >"$dir/be.fifo"
    dpdk_frames=$(run_fe dpdk "$sock" ",server=0") || dpdk_frames=0
    printf 'stop\nquit\n' >"$dir/be.fifo"
    for ((i = 0; i < 600; i++)); do kill -0 "$bp" 2>/dev/null || break; sleep 0.1; done
else
    say "dpdk: testpmd with net_vhost did not start"; tail -5 "$dir/be.log" >&2
fi
kill -TERM "$bp" 2>/dev/null
wait "$bp" 2>/dev/null
read -r dpdk_ir dpdk_file < <(busiest "$dir/dpdk.cg")

# --- figures ---------------------------------------------------------------------------
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.0f", a / b; else print "nan" }'; }
ours_pf=$(per "${ours_ir:-0}" "${ours_frames:-0}")
dpdk_pf=$(per "${dpdk_ir:-0}" "${dpdk_frames:-0}")
say "ours: ${ours_frames:-0} frames forwarded, ${ours_ir:-0} instructions in the worker: $ours_pf Ir/frame"
say "dpdk: ${dpdk_frames:-0} frames forwarded, ${dpdk_ir:-0} instructions in the forwarding lcore: $dpdk_pf Ir/frame"
if [[ $ours_pf != nan && $dpdk_pf != nan ]]; then
    ratio=$(awk -v a="$ours_pf" -v b="$dpdk_pf" 'BEGIN { printf "%.3f", a / b }')
    say "ours/dpdk: $ratio (instructions per frame; below 1 = fewer than DPDK)"
    echo "RESULT vhost-user-cg/$tag/ours $ours_pf Ir/frame"
    echo "RESULT vhost-user-cg/$tag/dpdk $dpdk_pf Ir/frame"
    echo "RESULT vhost-user-cg/$tag/ratio $ratio x"
else
    say "no figure: a side forwarded nothing (see the messages above)"
fi
if [[ $annotate -eq 1 && -n ${ours_file:-} ]]; then
    say "our worker's top functions (self):"
    callgrind_annotate --inclusive=no "$ours_file" 2>/dev/null | grep -E '^ *[0-9][0-9,]* ' | head -20
fi
exit 0
