# shellcheck shell=bash
# vhost_user_lib.sh — shared helpers of the vhost_user_*.sh integration tests (sourced).
#
#   vu_init NAME                 work dir $VU_DIR, traps (EXIT/INT/TERM/HUP) that kill every
#                                tracked process, run the registered cleanups and remove the
#                                sockets (logs are kept unless vu_pass or vu_skip ran)
#   vu_pass MSG / vu_skip MSG / vu_fail MSG / vu_check DESC TEST-ARGS...
#   vu_track PID / vu_on_cleanup 'CMD'
#   vu_on_fail 'CMD'             run CMD (once, in order) when vu_fail is called: print the
#                                evidence a CI log needs, the kept work dir being out of reach
#   vu_daemon NAME ARGS...       start the daemon ($VU_DAEMON, prefixed by ${VU_DAEMON_WRAP[@]},
#                                pinned to $VU_DAEMON_CPU unless empty)
#                                -> $VU_PID, output in $VU_DIR/NAME.out / NAME.err
#   vu_wait_socket PATH PID [SEC]
#   vu_testpmd NAME CPU ARGS...  start dpdk-testpmd with a private file prefix, stdin held
#                                open, output in $VU_DIR/NAME.log -> $VU_TP_PID
#   vu_testpmd_wait_fwd NAME PID [SEC]   wait until it forwards
#   vu_testpmd_stop PID          SIGINT and wait (testpmd prints its final statistics)
#   vu_testpmd_totals LOG        -> TP_RX TP_RX_DROP TP_TX TP_TX_DROP (accumulated block)
#   vu_session_stat OUT N QUEUE FIELD    a counter of session N from the daemon's
#                                "stats: session-end" block (empty if absent)
#   vu_wait_session_end OUT N [SEC]
#   vu_dpdk_session OUT N SOCK QUEUES LEN DEVARGS   one checked testpmd session (see below)
# Conventions: exit 77 = SKIP (a peer cannot run here), 1 = FAIL.

VU_PIDS=()
VU_CLEANUPS=()
VU_FAIL_HOOKS=()
VU_DIR=""
VU_NAME=vhost_user
VU_FAILED=0         # set by vu_fail (for callers' EXIT hooks)
VU_PASSED=0
VU_SKIPPED=0
VU_CLEANED=0
VU_DAEMON_WRAP=()   # e.g. (ip netns exec NS): prefix of the daemon's command line

vu_log() { printf '%s: %s\n' "$VU_NAME" "$*" >&2; }
vu_skip() { printf '%s: SKIP: %s\n' "$VU_NAME" "$*" >&2; VU_SKIPPED=1; exit 77; }
vu_pass() { printf '%s: PASS: %s\n' "$VU_NAME" "$*" >&2; VU_PASSED=1; }
# shellcheck disable=SC2034  # VU_FAILED is read by callers
vu_fail() {
    printf '%s: FAIL: %s\n' "$VU_NAME" "$*" >&2
    if [[ $VU_FAILED -eq 0 ]]; then
        VU_FAILED=1
        local h
        for h in "${VU_FAIL_HOOKS[@]}"; do eval "$h" || true; done
    fi
    exit 1
}
vu_check() { # DESCRIPTION CONDITION-ARGS... : one line per assertion, fail on the first false
    local what=$1
    shift
    if "$@"; then
        vu_log "ok: $what"
    else
        vu_fail "$what"
    fi
}

vu_track() { VU_PIDS+=("$1"); }
vu_on_cleanup() { VU_CLEANUPS+=("$1"); }
vu_on_fail() { VU_FAIL_HOOKS+=("$1"); }

vu_cleanup() {
    local pid i deadline alive
    [[ $VU_CLEANED -eq 1 ]] && return 0
    VU_CLEANED=1
    set +e
    for pid in "${VU_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    deadline=$((SECONDS + 5))
    while :; do
        alive=0
        for pid in "${VU_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 || $SECONDS -ge $deadline ]] && break
        sleep 0.1
    done
    for pid in "${VU_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ((i = ${#VU_CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${VU_CLEANUPS[i]}"; done
    if [[ -n "$VU_DIR" && -d "$VU_DIR" ]]; then
        find "$VU_DIR" -type s -delete 2>/dev/null
        if [[ ($VU_PASSED -eq 0 && $VU_SKIPPED -eq 0) || -n "${VU_KEEP:-}" ]]; then
            vu_log "logs kept in $VU_DIR"
        else
            rm -rf "$VU_DIR"
        fi
    fi
    return 0
}

vu_init() {
    VU_NAME=$1
    VU_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vio-$1.XXXXXX")
    chmod 0755 "$VU_DIR"
    trap 'vu_cleanup' EXIT
    trap 'vu_log "signal: cleaning up"; exit 130' INT
    trap 'vu_log "signal: cleaning up"; exit 143' TERM
    trap 'vu_log "signal: cleaning up"; exit 129' HUP
    # Two cores: the daemon on one, the peer on the other (PEERS.md).
    local n
    n=$(nproc 2>/dev/null || echo 1)
    VU_DAEMON_CPU=${VU_DAEMON_CPU:-0}
    VU_PEER_CPU=${VU_PEER_CPU:-$((n > 1 ? 1 : 0))}
}

vu_daemon() { # NAME ARGS...
    local name=$1
    shift
    [[ -x "$VU_DAEMON" ]] || vu_fail "daemon binary '$VU_DAEMON' not found"
    local pin=()
    [[ -z "$VU_DAEMON_CPU" ]] || pin=(taskset -c "$VU_DAEMON_CPU")
    "${VU_DAEMON_WRAP[@]}" "${pin[@]}" "$VU_DAEMON" "$@" >>"$VU_DIR/$name.out" 2>>"$VU_DIR/$name.err" &
    VU_PID=$!
    vu_track "$VU_PID"
}

vu_wait_socket() { # PATH PID [SEC]
    local path=$1 pid=$2 sec=${3:-60} i
    for ((i = 0; i < sec * 10; i++)); do
        [[ -S "$path" ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

vu_testpmd() { # NAME CPU ARGS...
    local name=$1 cpu=$2 prefix
    shift 2
    prefix="vio-$name-$$-$RANDOM"
    [[ -p "$VU_DIR/$name.stdin" ]] || mkfifo "$VU_DIR/$name.stdin"
    vu_on_cleanup "rm -rf '/var/run/dpdk/$prefix'"
    # testpmd exits at EOF on stdin: hold it open read-write on a fifo. A main lcore and a
    # forwarding lcore share one CPU.
    stdbuf -oL dpdk-testpmd --lcores="0@$cpu,1@$cpu" --no-huge -m 1024 --no-pci --file-prefix "$prefix" \
        "$@" <>"$VU_DIR/$name.stdin" >"$VU_DIR/$name.log" 2>&1 &
    VU_TP_PID=$!
    vu_track "$VU_TP_PID"
}

vu_testpmd_wait_fwd() { # NAME PID [SEC]
    local name=$1 pid=$2 sec=${3:-60} i
    for ((i = 0; i < sec * 10; i++)); do
        grep -q 'packet forwarding - ports=' "$VU_DIR/$name.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

vu_testpmd_stop() { # PID
    local pid=$1 i
    kill -INT "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

vu_testpmd_totals() { # LOG
    local blk
    blk=$(sed -n '/Accumulated forward statistics for all ports/,/+++++++++++*$/p' "$1" | tail -n 4)
    TP_RX=$(sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' <<<"$blk" | tail -n 1)
    TP_RX_DROP=$(sed -n 's/.*RX-dropped: *\([0-9]*\).*/\1/p' <<<"$blk" | tail -n 1)
    TP_TX=$(sed -n 's/.*TX-packets: *\([0-9]*\).*/\1/p' <<<"$blk" | tail -n 1)
    TP_TX_DROP=$(sed -n 's/.*TX-dropped: *\([0-9]*\).*/\1/p' <<<"$blk" | tail -n 1)
    [[ -n "$TP_RX" && -n "$TP_TX" ]]
}

vu_session_stat() { # OUT N QUEUE FIELD
    awk -v s="session=$2" -v q="q=$3" -v f="$4=" '
        $1 == "stats:" && $2 == "session-end" && $3 == s && $4 == q {
            for (i = 5; i <= NF; i++) if (index($i, f) == 1) v = substr($i, length(f) + 1)
        }
        END { if (v != "") print v }' "$1"
}

vu_wait_session_end() { # OUT N [SEC]
    local i sec=${3:-10}
    for ((i = 0; i < sec * 10; i++)); do
        grep -q "^stats: session-end session=$2 end" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

vu_testpmd_wait_prompt() { # NAME PID [SEC]: an interactive (-i) testpmd is ready for commands
    local name=$1 pid=$2 sec=${3:-60} i
    for ((i = 0; i < sec * 10; i++)); do
        grep -aq 'testpmd> ' "$VU_DIR/$name.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

vu_cpu_ticks() { # PID -> utime + stime of all the process's threads, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

vu_cpu_pct() { # PID SEC -> per cent of one core the process used over the next SEC seconds
    local t0 t1 w0 w1
    t0=$(vu_cpu_ticks "$1"); w0=$(date +%s.%N)
    sleep "$2"
    t1=$(vu_cpu_ticks "$1"); w1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v w0="$w0" -v w1="$w1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f\n", (b - a) / hz / (w1 - w0) * 100 }'
}

vu_worker_stat() { # OUT TAG WORKER FIELD: the last "stats: TAG worker=N ..." line's FIELD
    awk -v t="$2" -v w="worker=$3" -v f="$4=" '
        $1 == "stats:" && $2 == t && $3 == w {
            for (i = 4; i <= NF; i++) if (index($i, f) == 1) v = substr($i, length(f) + 1)
        }
        END { if (v != "") print v }' "$1"
}

VU_RUN_S=${VU_RUN_S:-2}
VU_BURST=32

# vu_dpdk_session DAEMON_OUT SESSION_NO SOCK QUEUES TXPKTS DEVARGS: one testpmd (virtio_user,
# io forwarding with --tx-first) against a --loopback daemon for $VU_RUN_S seconds; checks
# both sides' counters (see vhost_user_dpdk.sh).
vu_dpdk_session() {
    local out=$1 n=$2 sock=$3 queues=$4 len=$5 devargs=$6 name="tp$2-$4q"
    local q tx rx txs=0 rxs=0 drops
    vu_testpmd "$name" "$VU_PEER_CPU" --vdev "net_virtio_user0,path=$sock,queues=$queues${devargs:+,$devargs}" \
        -- --forward-mode=io --tx-first --burst=$VU_BURST --txpkts="$len" --rxq="$queues" --txq="$queues" \
        --auto-start
    local tp=$VU_TP_PID
    vu_testpmd_wait_fwd "$name" "$tp" 60 || { tail -n 20 "$VU_DIR/$name.log" >&2; vu_fail "testpmd ($devargs) did not start forwarding"; }
    sleep "$VU_RUN_S"
    vu_testpmd_stop "$tp"
    vu_testpmd_totals "$VU_DIR/$name.log" || { tail -n 30 "$VU_DIR/$name.log" >&2; vu_fail "no final statistics from testpmd ($devargs)"; }
    vu_wait_session_end "$out" "$n" 10 || vu_fail "daemon printed no end-of-session counters for session $n"
    for ((q = 0; q < queues; q++)); do
        tx=$(vu_session_stat "$out" "$n" "tx$q" packets)
        rx=$(vu_session_stat "$out" "$n" "rx$q" packets)
        drops=$(( $(vu_session_stat "$out" "$n" "tx$q" drops) + $(vu_session_stat "$out" "$n" "rx$q" drops) ))
        vu_log "session $n queue pair $q: daemon tx=$tx rx=$rx drops=$drops"
        vu_check "session $n ($devargs, ${len} B): queue pair $q carried traffic" test "${tx:-0}" -gt 1000
        vu_check "session $n: queue pair $q dropped nothing" test "$drops" -eq 0
        txs=$((txs + tx))
        rxs=$((rxs + rx))
    done
    # io forwarding sends what it receives, plus one burst per queue at the start: exactly
    # VU_BURST * queues frames circulate. Every stage holds at most that many, so the counters
    # must run TP_RX <= daemon RX <= daemon TX <= TP_TX within that bound of each other (a
    # daemon that is fast enough shows them equal but for the burst in testpmd's RX ring).
    local cap=$((VU_BURST * queues))
    vu_log "session $n ($devargs, $len B, $queues q): testpmd TX=$TP_TX RX=$TP_RX TX-dropped=$TP_TX_DROP RX-dropped=$TP_RX_DROP; daemon tx=$txs rx=$rxs"
    vu_check "session $n: testpmd forwarded > 1000 frames" test "$TP_TX" -gt 1000
    vu_check "session $n: testpmd dropped nothing" test "$TP_TX_DROP" -eq 0 -a "$TP_RX_DROP" -eq 0
    vu_check "session $n: testpmd sent its first burst plus every frame it got back ($TP_TX == $TP_RX + $cap)" \
        test "$TP_TX" -eq $((TP_RX + cap))
    vu_check "session $n: daemon TX matches testpmd TX ($txs <= $TP_TX, within $cap)" \
        test "$txs" -le "$TP_TX" -a $((TP_TX - txs)) -le "$cap"
    vu_check "session $n: daemon RX matches its TX, frames came back ($rxs <= $txs, within $cap)" \
        test "$rxs" -le "$txs" -a $((txs - rxs)) -le "$cap"
    vu_check "session $n: testpmd received what the daemon delivered ($TP_RX <= $rxs, within $cap)" \
        test "$TP_RX" -le "$rxs" -a $((rxs - TP_RX)) -le "$cap"
}
