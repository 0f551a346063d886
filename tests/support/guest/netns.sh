# shellcheck shell=bash
# netns.sh — network namespace helpers for libvirtio's integration tests.
# Source it from a bash script (needs root and iproute2):
#
#   . "$(dirname "$0")/../support/guest/netns.sh"    # or any path to this file
#   vio_netns_create mytest           # -> $VIO_NETNS, e.g. vio-mytest-4242-17311
#   vio_netns_add_tap tap0 10.0.0.1/24
#   vio_run ip netns exec "$VIO_NETNS" some-daemon &  ... (see below)
#
# Everything created here is removed by vio_netns_cleanup, which runs from the
# EXIT trap and on INT/TERM/HUP (the script then exits 130/143/129), also when
# the script fails under set -e. Do not replace those traps: register extra
# cleanup with vio_netns_on_cleanup 'command' and background processes with
# vio_netns_track_pid PID (they get SIGTERM, then SIGKILL after 3 s, before the
# namespaces are deleted). An EXIT trap that existed before the first
# vio_netns_create is kept and run after the cleanup.
#
# Functions:
#   vio_netns_create [PREFIX]        new namespace, name in $VIO_NETNS, lo up (call it
#                                    directly, not in $(...): it sets variables)
#   vio_netns_exec CMD...            run CMD inside $VIO_NETNS
#   vio_netns_add_tap NAME [ADDR/PFX] [NS]
#                                    persistent tap NAME in NS (default $VIO_NETNS),
#                                    link up, optional address
#   vio_netns_add_veth NS1 IF1 ADDR1 NS2 IF2 ADDR2
#                                    veth pair between two namespaces (ADDR may be '-')
#   vio_netns_track_pid PID          kill PID at cleanup
#   vio_netns_on_cleanup 'CMD'       eval CMD at cleanup (last registered runs first)
#   vio_run CMD...                   run CMD in the background and wait for it, so a
#                                    signal reaches the traps at once; returns its status
#   vio_netns_cleanup                do the cleanup now (idempotent)
#   vio_netns_gc                     delete vio-* namespaces left by dead processes

VIO_NETNS=${VIO_NETNS:-}
VIO_NETNS_LIST=()
VIO_NETNS_PIDS=()
VIO_NETNS_CLEANUPS=()
VIO_NETNS_TRAPS_SET=0
VIO_NETNS_PREV_EXIT_TRAP=""

vio_netns__log() { printf 'netns: %s\n' "$*" >&2; }

vio_netns__set_traps() {
    [[ $VIO_NETNS_TRAPS_SET -eq 1 ]] && return 0
    local prev
    prev=$(trap -p EXIT)
    if [[ -n "$prev" ]]; then
        # "trap -- 'CMD' EXIT" -> CMD
        local -a words
        eval "words=($prev)"
        VIO_NETNS_PREV_EXIT_TRAP=${words[2]}
    fi
    trap 'vio_netns__on_exit' EXIT
    trap 'vio_netns__on_signal 130' INT
    trap 'vio_netns__on_signal 143' TERM
    trap 'vio_netns__on_signal 129' HUP
    VIO_NETNS_TRAPS_SET=1
}

vio_netns__on_exit() {
    local rc=$?
    vio_netns_cleanup
    if [[ -n "$VIO_NETNS_PREV_EXIT_TRAP" ]]; then
        eval "$VIO_NETNS_PREV_EXIT_TRAP"
    fi
    return "$rc"
}

vio_netns__on_signal() {
    vio_netns__log "signal received, cleaning up"
    exit "$1"   # runs the EXIT trap
}

vio_netns_track_pid() { VIO_NETNS_PIDS+=("$1"); }
vio_netns_on_cleanup() { VIO_NETNS_CLEANUPS+=("$1"); }

vio_run() {
    local pid rc
    "$@" &
    pid=$!
    VIO_NETNS_PIDS+=("$pid")
    wait "$pid" && rc=0 || rc=$?
    return "$rc"
}

vio_netns_cleanup() {
    local pid i ns deadline alive errexit=0
    [[ $- == *e* ]] && errexit=1
    set +e
    # Processes first (QEMU holding a tap, daemons inside the namespace).
    for pid in "${VIO_NETNS_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    deadline=$((SECONDS + 3))
    while :; do
        alive=0
        for pid in "${VIO_NETNS_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive -eq 0 || $SECONDS -ge $deadline ]] && break
        sleep 0.1
    done
    for pid in "${VIO_NETNS_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    VIO_NETNS_PIDS=()
    for ((i = ${#VIO_NETNS_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${VIO_NETNS_CLEANUPS[i]}"
    done
    VIO_NETNS_CLEANUPS=()
    for ns in "${VIO_NETNS_LIST[@]}"; do
        # Any process still inside (started by hand with ip netns exec) is killed:
        # the namespace must go even when a test failed half-way.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        if ip netns del "$ns" 2>/dev/null; then
            vio_netns__log "deleted $ns"
        elif ip netns list 2>/dev/null | grep -qw -- "$ns"; then
            vio_netns__log "warning: could not delete namespace $ns"
        fi
    done
    VIO_NETNS_LIST=()
    [[ $errexit -eq 0 ]] || set -e
    return 0
}

vio_netns_create() {
    local prefix=${1:-test} name tries=0
    command -v ip >/dev/null 2>&1 || { vio_netns__log "error: 'ip' (iproute2) not found"; return 1; }
    [[ $(id -u) -eq 0 ]] || { vio_netns__log "error: network namespaces need root"; return 1; }
    [[ "$prefix" =~ ^[A-Za-z0-9_-]+$ ]] || { vio_netns__log "error: bad prefix '$prefix'"; return 1; }
    vio_netns__set_traps
    while :; do
        name="vio-$prefix-$$-$RANDOM"
        if ip netns add "$name" 2>/dev/null; then
            break
        fi
        tries=$((tries + 1))
        if [[ $tries -ge 5 ]]; then
            vio_netns__log "error: ip netns add failed: $(ip netns add "$name" 2>&1)"
            return 1
        fi
    done
    VIO_NETNS_LIST+=("$name")
    VIO_NETNS=$name
    ip -n "$name" link set lo up
    vio_netns__log "created $name"
}

vio_netns_exec() {
    [[ -n "$VIO_NETNS" ]] || { vio_netns__log "error: no namespace (vio_netns_create first)"; return 1; }
    ip netns exec "$VIO_NETNS" "$@"
}

vio_netns_add_tap() {
    local tap=$1 addr=${2:-} ns=${3:-$VIO_NETNS}
    [[ -n "$ns" ]] || { vio_netns__log "error: no namespace for tap $tap"; return 1; }
    ip netns exec "$ns" ip tuntap add dev "$tap" mode tap || return 1
    if [[ -n "$addr" && "$addr" != - ]]; then
        ip -n "$ns" addr add "$addr" dev "$tap" || return 1
    fi
    ip -n "$ns" link set dev "$tap" up
}

vio_netns_add_veth() {
    local ns1=$1 if1=$2 a1=$3 ns2=$4 if2=$5 a2=$6
    ip -n "$ns1" link add "$if1" type veth peer name "$if2" netns "$ns2" || return 1
    [[ "$a1" == - ]] || ip -n "$ns1" addr add "$a1" dev "$if1" || return 1
    [[ "$a2" == - ]] || ip -n "$ns2" addr add "$a2" dev "$if2" || return 1
    ip -n "$ns1" link set dev "$if1" up && ip -n "$ns2" link set dev "$if2" up
}

vio_netns_gc() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ "$ns" =~ ^vio-[A-Za-z0-9_-]+-([0-9]+)-[0-9]+$ ]] || continue
        pid=${BASH_REMATCH[1]}
        [[ -d /proc/$pid ]] && continue
        ip netns del "$ns" 2>/dev/null && vio_netns__log "gc: deleted stale $ns"
    done
    return 0
}
