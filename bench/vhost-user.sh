#!/usr/bin/env bash
# bench/vhost-user.sh — vio-vhost-user-net against DPDK's own vhost PMD, both driven by
# dpdk-testpmd's net_virtio_user front-end. Prints figures and RESULT lines; never fails.
#
# Data path. For every page size (4 KiB: --no-huge; 2 MiB: hugepages, --single-file-segments),
# every virtio_user path (mrg_rxbuf=0/1 x in_order=0/1), 64 B and 1500 B frames:
#   txonly  the front-end transmits as fast as it can; the back-end echoes (ours: --loopback
#           --loopback-drop, DPDK: testpmd io forwarding on net_vhost) and, as the front-end
#           never refills its receive ring, drops what it cannot return;
#   io      the front-end forwards what it receives, after one burst per queue
#           (start tx_first): a burst circulates front-end -> back-end -> front-end.
# The front-end's Tx-pps over --seconds (testpmd's own interval) is the figure. One core each
# side: the back-end (our daemon, or DPDK's testpmd with main and forwarding lcore) on CPU 0,
# the front-end on CPU 1. Both back-ends and both front-ends stay up for one path; the sides
# run alternately, ours then DPDK's, for --pairs pairs (DPDK's forwarding is stopped while
# ours runs, and our daemon is frozen with SIGSTOP while DPDK's runs, so neither spins on the
# shared core during the other's turn; before 2026-12-07 ours was not frozen, which made a
# daemon that kept polling look faster than it was). Per case: the median of each side and
# the median of the pairwise ratios ours/DPDK (the machine changes speed by ~2x at times:
# only ratios of neighbouring runs compare). The machine has two moods: its two vCPUs share
# a last-level cache (a cache line goes there and back in ~110 ns: "fast") or they do not
# (~540 ns: "slow"), and it switches between them every few seconds to minutes. bench_xcore
# measures that round trip before and after every pair; a pair that straddles a switch is
# run again (up to 3 tries), and the summary also gives the ratio over the fast pairs and
# over the slow pairs (RESULT .../ratio_fast, .../ratio_slow).
#
# Our daemon runs in its default mode unless told otherwise (--mode): adaptive, a worker polls
# for --poll-us (its default) after work and then sleeps on the eventfds. --mode busy-poll
# gives the always-polling mode (as DPDK's vhost PMD polls), --mode event the event-driven one
# (--poll-us 0), --mode "poll-us=N" the adaptive mode with another budget. The mode is in
# every RESULT name (.../ours-<mode>, .../ratio-<mode>), so two runs compare side by side.
#
# Idle CPU. After the pairs of each path, with both front-ends connected and quiet, the
# daemon's CPU use (utime + stime of all its threads from /proc/PID/stat, over --idle-seconds)
# in per cent of one core: RESULT vhost-user/idle-cpu/<pages>/<path>/ours-<mode> <x> %.
# The adaptive and event modes should read ~0, busy-poll ~100.
#
# Control path. bench_vhost_user_ctrl (a minimal front-end) times connect() -> every setup
# message acknowledged (REPLY_ACK) -> one more round trip, with guest RAM of 1, 16 and 64 GiB
# (sparse memfd) for ours and 1 GiB for DPDK's (it populates guest RAM at SET_MEM_TABLE), and
# how much each back-end's resident memory grew during the setup.
#
# Usage: bench/vhost-user.sh [options]
#   --daemon PATH     vio-vhost-user-net (default: build*/examples/vio-vhost-user-net)
#   --ctrl PATH       bench_vhost_user_ctrl (default: next to the daemon's build)
#   --pairs N         A/B pairs per case (default 5, at least 5 for the report)
#   --seconds S       measuring interval per run (default 1)
#   --pages LIST      4k, huge or "4k huge" (default both)
#   --paths LIST      mrg:inorder pairs (default "1:0 0:0 1:1 0:1")
#   --sizes LIST      frame sizes (default "64 1500")
#   --modes LIST      txonly, io (default both)
#   --mode MODE       our daemon's mode: default (its default options: adaptive polling;
#                     the default), busy-poll, event (--poll-us 0), poll-us=N
#   --busy-poll       the same as --mode busy-poll
#   --no-busy-poll    the same as --mode event
#   --idle-seconds S  idle CPU measuring interval per path (default 5; 0: skip)
#   --no-ctrl / --no-data   skip a section
#   --quick           --pairs 5 --seconds 0.5 --paths 1:0 --sizes 64 --pages 4k
#
# The default mode against DPDK (what users run), the full grid, then a short look:
#   bench/vhost-user.sh --daemon build-bench/examples/vio-vhost-user-net
#   bench/vhost-user.sh --daemon ... --no-ctrl --pages 4k --paths 1:0 --sizes 64 --pairs 3
# The same grid with the daemon always polling, for comparison: add --mode busy-poll.
# Needs root and dpdk-testpmd; prints "SKIP" and exits 0 without them.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")
daemon="" ctrl="" pairs=5 secs=1 pages="4k huge" paths="1:0 0:0 1:1 0:1" sizes="64 1500"
modes="txonly io" omode=default idle_secs=5 do_ctrl=1 do_data=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --daemon) daemon=$2; shift 2 ;;
        --ctrl) ctrl=$2; shift 2 ;;
        --pairs) pairs=$2; shift 2 ;;
        --seconds) secs=$2; shift 2 ;;
        --pages) pages=$2; shift 2 ;;
        --paths) paths=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        --mode) omode=${2:?--mode needs a value}; shift 2 ;;
        --busy-poll) omode=busy-poll; shift ;;
        --no-busy-poll) omode=event; shift ;;
        --idle-seconds) idle_secs=${2:?--idle-seconds needs a value}; shift 2 ;;
        --no-ctrl) do_ctrl=0; shift ;;
        --no-data) do_data=0; shift ;;
        --quick) pairs=5 secs=0.5 paths="1:0" sizes=64 pages=4k; shift ;;
        -h|--help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "vhost-user bench: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case "$omode" in
    default) oargs=() ;;
    busy-poll) oargs=(--busy-poll) ;;
    event) oargs=(--poll-us 0) ;;
    poll-us=[0-9]*) oargs=(--poll-us "${omode#poll-us=}") ;;
    *) echo "vhost-user bench: --mode wants default, busy-poll, event or poll-us=N, not '$omode'" >&2; exit 2 ;;
esac
[[ $idle_secs =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "vhost-user bench: --idle-seconds wants seconds, not '$idle_secs'" >&2; exit 2; }
VU_TAG=vhost-user
# shellcheck source=bench/vhost-user-common.sh
. "$here/vhost-user-common.sh"
[[ -n "$ctrl" ]] || ctrl=$(dirname "$(dirname "$daemon")")/bench/bench_vhost_user_ctrl
xcore=$(dirname "$ctrl")/bench_xcore
ncpu=$(nproc)
BE_CPU=0
FE_CPU=$((ncpu > 1 ? 1 : 0))

dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-bench-vu.XXXXXX")
pids=()
prefixes=()
hp_restore=""
hp_umount=0
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
    # testpmd killed at the end of a run leaves its hugepage files behind, holding the pages
    for p in "${prefixes[@]}"; do rm -rf "/var/run/dpdk/$p" /dev/hugepages/"$p"map_*; done
    prefixes=()
}
final_cleanup() {
    cleanup
    if [[ -n "$hp_restore" ]]; then echo "$hp_restore" >/proc/sys/vm/nr_hugepages 2>/dev/null; fi
    [[ $hp_umount -eq 0 ]] || umount /dev/hugepages 2>/dev/null
    rm -rf "$dir"
}
trap final_cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ----------------------------------------------------------------------------
# The machine's mood: cross-core round trip in ns (bench_xcore), "?" without the tool.
# Below XCORE_SLOW_NS the two vCPUs share a last-level cache ("fast"), above they do not
# ("slow"); a pair whose probes before and after disagree ran across a switch and is redone.
XCORE_SLOW_NS=${XCORE_SLOW_NS:-250}
probe() { if [[ -x "$xcore" ]]; then "$xcore" --cpus "$BE_CPU,$FE_CPU" --ms 20 2>/dev/null || echo "?"; else echo "?"; fi; }
mood() { # NS -> fast|slow|?
    if [[ $1 == "?" ]]; then echo "?"; elif (( $1 < XCORE_SLOW_NS )); then echo fast; else echo slow; fi
}
# cpu_ticks PID -> utime + stime of all the process's threads, in clock ticks
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# idle_cpu PID SEC -> per cent of one core used over SEC seconds
idle_cpu() {
    local t0 t1 w0 w1
    t0=$(cpu_ticks "$1"); w0=$(date +%s.%N)
    sleep "$2"
    t1=$(cpu_ticks "$1"); w1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v w0="$w0" -v w1="$w1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f\n", (b - a) / hz / (w1 - w0) * 100 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# start_testpmd NAME CPU MEMARGS VDEV EXTRA...: interactive testpmd, commands through NAME.fifo
start_testpmd() {
    local name=$1 cpu=$2 mem=$3 vdev=$4 prefix
    prefix="vio-bench-$name-$$"
    shift 4
    mkfifo "$dir/$name.fifo"
    prefixes+=("$prefix")
    # shellcheck disable=SC2086
    stdbuf -oL dpdk-testpmd --lcores="0@$cpu,1@$cpu" $mem --no-pci --file-prefix "$prefix" \
        --vdev "$vdev" -- -i --total-num-mbufs=32768 "$@" <>"$dir/$name.fifo" >"$dir/$name.log" 2>&1 &
    pids+=($!)
}
tp() { printf '%s\n' "$2" >"$dir/$1.fifo"; }
wait_prompt() { # NAME SEC
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        grep -aq 'testpmd> ' "$dir/$1.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# measure NAME MODE SIZE -> Mpps on stdout
measure() {
    local name=$1 mode=$2 size=$3 log=$dir/$1.log mark i n pps
    tp "$name" "set fwd $mode"
    tp "$name" "set txpkts $size"
    if [[ $mode == io ]]; then tp "$name" "start tx_first"; else tp "$name" "start"; fi
    sleep 0.5
    mark=$(grep -ac 'Tx-pps' "$log")
    tp "$name" "show port stats all"
    sleep "$secs"
    tp "$name" "show port stats all"
    for ((i = 0; i < 50; i++)); do
        n=$(grep -ac 'Tx-pps' "$log")
        [[ $n -ge $((mark + 2)) ]] && break
        sleep 0.05
    done
    pps=$(grep -a 'Tx-pps' "$log" | tail -n 1 | awk '{ print $2 }')
    tp "$name" "stop"
    sleep 0.3
    awk -v p="${pps:-0}" 'BEGIN { printf "%.3f\n", p / 1e6 }'
}

setup_hugepages() {
    local have need=800
    have=$(cat /proc/sys/vm/nr_hugepages)
    if ! grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || return 1
        hp_umount=1
    fi
    [[ -n "$hp_restore" ]] || hp_restore=$have
    echo $((have + need)) >/proc/sys/vm/nr_hugepages 2>/dev/null
    [[ $(awk '/HugePages_Free/ { print $2 }' /proc/meminfo) -ge $need ]]
}

say "daemon: $daemon, mode $omode (${oargs[*]:-no mode options})"
say "peer: $(peer_version)"
say "back-ends on CPU $BE_CPU, front-ends on CPU $FE_CPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- control path -----------------------------------------------------------------------
if [[ $do_ctrl -eq 1 ]]; then
    if [[ ! -x "$ctrl" ]]; then
        say "control path: no bench_vhost_user_ctrl at $ctrl (build target bench_vhost_user_ctrl)"
    else
        say "control path: connect -> all queues ready (REPLY_ACK on every message), median of 5"
        taskset -c "$BE_CPU" "$daemon" --socket "$dir/ours-ctrl.sock" --loopback -Q \
            >"$dir/ours-ctrl.out" 2>"$dir/ours-ctrl.err" &
        dp=$!
        pids+=("$dp")
        for ((i = 0; i < 50; i++)); do [[ -S "$dir/ours-ctrl.sock" ]] && break; sleep 0.1; done
        for m in 1G 16G 64G; do
            line=$(taskset -c "$FE_CPU" "$ctrl" "$dir/ours-ctrl.sock" --mem "$m" --repeat 5 --pid "$dp" | tail -n 1)
            ms=$(sed -n 's/.*ready_ms=\([0-9.]*\).*/\1/p' <<<"$line")
            kib=$(sed -n 's/.*rss_grow_kib=\([-0-9.]*\).*/\1/p' <<<"$line")
            say "  ours, guest RAM $m (4 KiB pages): ${ms:-?} ms, daemon RSS grew ${kib:-?} KiB"
            echo "RESULT vhost-user/ctrl/ours/$m ${ms:-nan} ms"
            echo "RESULT vhost-user/ctrl-rss-grow/ours/$m ${kib:-nan} KiB"
        done
        cleanup
        start_testpmd be-ctrl "$BE_CPU" "--no-huge -m 512" "net_vhost0,iface=$dir/dpdk-ctrl.sock,queues=1" --forward-mode=io
        for ((i = 0; i < 600; i++)); do [[ -S "$dir/dpdk-ctrl.sock" ]] && break; sleep 0.1; done
        line=$(taskset -c "$FE_CPU" "$ctrl" "$dir/dpdk-ctrl.sock" --mem 1G --repeat 3 --pid "${pids[-1]}" | tail -n 1)
        ms=$(sed -n 's/.*ready_ms=\([0-9.]*\).*/\1/p' <<<"$line")
        kib=$(sed -n 's/.*rss_grow_kib=\([-0-9.]*\).*/\1/p' <<<"$line")
        say "  DPDK vhost, guest RAM 1G (4 KiB pages): ${ms:-?} ms, testpmd RSS grew ${kib:-?} KiB (median of 3)"
        echo "RESULT vhost-user/ctrl/dpdk/1G ${ms:-nan} ms"
        echo "RESULT vhost-user/ctrl-rss-grow/dpdk/1G ${kib:-nan} KiB"
        cleanup
    fi
fi

# --- data path --------------------------------------------------------------------------
[[ $do_data -eq 1 ]] || exit 0
declare -A A=() B=() R=() M=() IC=()
cases=()
for pg in $pages; do
    if [[ $pg == huge ]]; then
        if ! setup_hugepages; then
            say "hugepages: cannot reserve 800 x 2 MiB pages; skipping the hugepage runs"
            continue
        fi
        mem="-m 512 --single-file-segments"
    else
        mem="--no-huge -m 512"
    fi
    for path in $paths; do
        mrg=${path%:*} ino=${path#*:}
        devargs="queues=1,mrg_rxbuf=$mrg,in_order=$ino"
        tag="$pg mrg_rxbuf=$mrg in_order=$ino"
        say "--- $tag: starting back-ends and front-ends"
        rm -f "$dir"/*.sock "$dir"/*.fifo
        dargs=(--socket "$dir/ours.sock" --loopback --loopback-drop -Q "${oargs[@]}")
        taskset -c "$BE_CPU" "$daemon" "${dargs[@]}" >"$dir/ours.out" 2>"$dir/ours.err" &
        ours_pid=$!
        pids+=($ours_pid)
        opid=$!
        start_testpmd be "$BE_CPU" "$mem" "net_vhost0,iface=$dir/dpdk.sock,queues=1" --forward-mode=io
        for ((i = 0; i < 600; i++)); do [[ -S "$dir/ours.sock" && -S "$dir/dpdk.sock" ]] && break; sleep 0.1; done
        start_testpmd fa "$FE_CPU" "$mem" "net_virtio_user0,path=$dir/ours.sock,$devargs"
        start_testpmd fb "$FE_CPU" "$mem" "net_virtio_user0,path=$dir/dpdk.sock,$devargs"
        if ! wait_prompt be 120 || ! wait_prompt fa 120 || ! wait_prompt fb 120; then
            say "  testpmd did not come up; skipping ($dir kept)"
            tail -n 5 "$dir"/fa.log "$dir"/fb.log "$dir"/be.log
            trap - EXIT
            cleanup
            continue
        fi
        sleep 1
        for ((p = 1; p <= pairs; p++)); do
            for mode in $modes; do
                for size in $sizes; do
                    key="$pg/$mode/${size}B/mrg$mrg-inorder$ino"
                    [[ -n "${A[$key]+x}" ]] || cases+=("$key")
                    # up to 3 tries to get both sides of the pair in one machine mood
                    for try in 1 2 3; do
                        m0=$(mood "$(probe)")
                        a=$(measure fa "$mode" "$size")
                        # DPDK's turn: our daemon is frozen, so that a polling mode of ours
                        # cannot take the back-end core from DPDK's forwarding (as DPDK's is
                        # stopped during ours)
                        kill -STOP "$ours_pid"
                        tp be start
                        sleep 0.2
                        b=$(measure fb "$mode" "$size")
                        tp be stop
                        kill -CONT "$ours_pid"
                        sleep 0.2
                        m1=$(mood "$(probe)")
                        [[ $m0 == "$m1" ]] && break
                        say "  pair $p $key: the machine changed mood ($m0 -> $m1) during the pair; again"
                    done
                    [[ $m0 == "$m1" ]] || m0=mixed
                    r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.4f", a / b; else print "nan" }')
                    A[$key]+="$a "
                    B[$key]+="$b "
                    R[$key]+="$r "
                    M[$key]+="$m0:$r "
                    printf 'vhost-user:   pair %d %-34s ours %7.3f Mpps  dpdk %7.3f Mpps  (%s)\n' "$p" "$key" "$a" "$b" "$m0"
                done
            done
        done
        if [[ $idle_secs != 0 ]]; then
            # both front-ends connected and stopped, DPDK's forwarding stopped: nothing moves
            sleep 0.5
            ic=$(idle_cpu "$opid" "$idle_secs")
            ikey="$pg/mrg$mrg-inorder$ino"
            IC[$ikey]=$ic
            say "  idle: the daemon used $ic % of a core over $idle_secs s with its front-end connected and quiet"
        fi
        cleanup
    done
done

say "summary (medians of $pairs A/B pairs; ratio = median of the pairwise ours/DPDK ratios;"
say "fast/slow: the same over the pairs run while the vCPUs shared a cache / did not):"
printf '%-36s %12s %12s %10s %12s %12s\n' case "ours Mpps" "dpdk Mpps" "ours/dpdk" "fast (n)" "slow (n)"
by_mood() { # KEY MOOD -> "ratio (n)" over the pairs of that mood
    local v
    v=$(tr ' ' '\n' <<<"${M[$1]}" | sed -n "s/^$2://p" | sed '/nan/d')
    if [[ -z "$v" ]]; then echo "- (0)"; else printf '%.3f (%d)' "$(median <<<"$v")" "$(wc -l <<<"$v")"; fi
}
for key in "${cases[@]}"; do
    ma=$(tr ' ' '\n' <<<"${A[$key]}" | sed '/^$/d' | median)
    mb=$(tr ' ' '\n' <<<"${B[$key]}" | sed '/^$/d' | median)
    mr=$(tr ' ' '\n' <<<"${R[$key]}" | sed '/^$/d;/nan/d' | median)
    fr=$(by_mood "$key" fast)
    sr=$(by_mood "$key" slow)
    printf '%-36s %12.3f %12.3f %10.3f %12s %12s\n' "$key" "$ma" "$mb" "$mr" "$fr" "$sr"
    echo "RESULT vhost-user/$key/ours-$omode $ma Mpps"
    echo "RESULT vhost-user/$key/dpdk $mb Mpps"
    echo "RESULT vhost-user/$key/ratio-$omode $mr x"
    [[ ${fr%% *} == - ]] || echo "RESULT vhost-user/$key/ratio_fast-$omode ${fr%% *} x"
    [[ ${sr%% *} == - ]] || echo "RESULT vhost-user/$key/ratio_slow-$omode ${sr%% *} x"
done
if [[ ${#IC[@]} -gt 0 ]]; then
    say "idle CPU of our daemon (mode $omode), front-end connected and quiet, per cent of one core:"
    for ikey in "${!IC[@]}"; do
        printf '%-36s %8s %%\n' "$ikey" "${IC[$ikey]}"
        echo "RESULT vhost-user/idle-cpu/$ikey/ours-$omode ${IC[$ikey]} %"
    done | sort
fi
