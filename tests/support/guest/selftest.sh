#!/usr/bin/env bash
# selftest.sh — prove the guest harness works on this machine.
#
#   (a) user-net: -netdev user + virtio-net-pci; the guest runs 'link,ping':
#       eth0 is bound to virtio_net, has carrier and 10.0.2.15/24, and
#       ping -c 3 10.0.2.2 (QEMU's slirp gateway, answered inside QEMU) gets
#       at least one reply.
#   (b) vhost-net: the guest loads vhost_net; /dev/vhost-net and /dev/net/tun
#       exist and /dev/vhost-net opens.
#   (c) tap in a netns: a fresh network namespace holds tap 'viotap0' with
#       10.0.0.1/24; QEMU runs inside it (ip netns exec) on that tap; the guest
#       (10.0.0.2/24) runs 'link,ping' against 10.0.0.1; afterwards the host
#       side checks the tap counted packets in both directions.
#   (d) vhostuser (opt-in, needs DPDK's dpdk-testpmd, ~30 s): QEMU's vhost-user
#       netdev (memfd RAM, vectors=0) against testpmd's net_vhost in io-forward
#       mode (an echo); the guest runs 'link,rxcount' (echoed frames arrive) and
#       testpmd's port statistics must show RX and TX packets.
#
# Usage: selftest.sh [--keep-logs] [CASE...]
#   cases: user vhostnet tap vhostuser; default: user vhostnet tap
# Exit: 0 all passed, 1 a case failed, 77 prerequisites missing (skip).
# Prints one line per case with its wall time, then "N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=netns.sh
. "$here/netns.sh"

keep_logs=0
cases=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keep-logs) keep_logs=1; shift ;;
        user|vhostnet|tap|vhostuser) cases+=("$1"); shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "selftest: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[[ ${#cases[@]} -gt 0 ]] || cases=(user vhostnet tap)

command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "selftest: SKIP: qemu-system-x86_64 missing" >&2; exit 77; }

logdir=$(mktemp -d "${TMPDIR:-/tmp}/vio-guest-selftest.XXXXXX")
passed=0
failed=0
summary=()

# Prepare kernel and default initramfs once, so the first case's time is a boot
# time; export the kernel paths so run-guest.sh skips the apt-cache lookup.
prep_start=$SECONDS
if ! fk=$("$here/fetch-kernel.sh"); then
    echo "selftest: SKIP: fetch-kernel.sh could not provide a kernel" >&2
    exit 77
fi
eval "$fk"
export VIO_VMLINUX VIO_MODULES
if ! "$here/run-guest.sh" --dry-run >/dev/null; then
    echo "selftest: SKIP: no kernel/initramfs (see fetch-kernel.sh output above)" >&2
    exit 77
fi
echo "selftest: kernel + initramfs ready in $((SECONDS - prep_start))s; logs in $logdir"

run_case() { # NAME DESCRIPTION CMD...
    local name=$1 desc=$2 t0 t1 rc secs
    shift 2
    echo "selftest: --- $name: $desc"
    t0=$(date +%s.%N)
    vio_run "$@" && rc=0 || rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        summary+=("PASS  $name  ${secs}s  $desc")
    else
        failed=$((failed + 1))
        summary+=("FAIL  $name  ${secs}s  $desc (exit $rc, log $logdir/$name.log)")
    fi
    return 0
}

case_tap() {
    local ns tap=viotap0 rx tx
    vio_netns_create selftest || return 2
    ns=$VIO_NETNS
    vio_netns_add_tap "$tap" 10.0.0.1/24 "$ns" || return 2
    vio_run "$here/run-guest.sh" --netns "$ns" --net-tap "$tap" --test link,ping \
        --vio ip=10.0.0.2/24 --vio peer=10.0.0.1 --log "$logdir/tap.log" || return $?
    rx=$(ip netns exec "$ns" cat "/sys/class/net/$tap/statistics/rx_packets")
    tx=$(ip netns exec "$ns" cat "/sys/class/net/$tap/statistics/tx_packets")
    echo "selftest: $ns/$tap counted rx_packets=$rx tx_packets=$tx"
    if [[ "$rx" -lt 3 || "$tx" -lt 3 ]]; then
        echo "selftest: tap counters too low for 3 pings" >&2
        return 1
    fi
    vio_netns_cleanup
}

case_vhostuser() {
    local dir=$logdir/vhostuser sock tp prefix="vio-selftest-$$" i rx tx
    mkdir -p "$dir"
    sock=$dir/vu.sock
    mkfifo "$dir/stdin"
    vio_netns_on_cleanup "rm -rf '/var/run/dpdk/$prefix'"
    # testpmd exits at EOF on stdin: hold it open read-write on a fifo.
    dpdk-testpmd --lcores='0@0,1@0' --no-huge -m 1024 --no-pci --file-prefix "$prefix" \
        --vdev "net_vhost0,iface=$sock,queues=1" -- --forward-mode=io --auto-start \
        <>"$dir/stdin" >"$dir/testpmd.log" 2>&1 &
    tp=$!
    vio_netns_track_pid "$tp"
    for ((i = 0; i < 600; i++)); do
        [[ -S "$sock" ]] && break
        kill -0 "$tp" 2>/dev/null || { echo "selftest: testpmd died" >&2; tail -n 5 "$dir/testpmd.log" >&2; return 2; }
        sleep 0.1
    done
    [[ -S "$sock" ]] || { echo "selftest: testpmd made no socket in 60 s" >&2; return 2; }
    # testpmd busy-polls CPU 0: keep QEMU on CPU 1.
    vio_run "$here/run-guest.sh" --taskset 1 --vhost-user "$sock" --test link,rxcount \
        --vio ip=10.0.0.2/24 --vio peer=10.0.0.1 --log "$logdir/vhostuser.log" || return $?
    kill -INT "$tp" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$tp" 2>/dev/null || break; sleep 0.1; done
    rx=$(sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' "$dir/testpmd.log" | tail -n 1)
    tx=$(sed -n 's/.*TX-packets: *\([0-9]*\).*/\1/p' "$dir/testpmd.log" | tail -n 1)
    echo "selftest: testpmd port 0 RX-packets=${rx:-?} TX-packets=${tx:-?}"
    [[ "${rx:-0}" -ge 1 && "${tx:-0}" -ge 1 ]] || { echo "selftest: testpmd saw no traffic" >&2; return 1; }
}

for c in "${cases[@]}"; do
    case "$c" in
        user)
            run_case user "user-net virtio-net-pci: link + ping 10.0.2.2" \
                "$here/run-guest.sh" --net-user --test link,ping \
                --vio ip=10.0.2.15/24 --vio peer=10.0.2.2 --log "$logdir/user.log" ;;
        vhostnet)
            run_case vhostnet "/dev/vhost-net after insmod vhost_net" \
                "$here/run-guest.sh" --test vhostnet --log "$logdir/vhostnet.log" ;;
        vhostuser)
            if ! command -v dpdk-testpmd >/dev/null 2>&1; then
                summary+=("SKIP  vhostuser  (dpdk-testpmd not installed)")
                continue
            fi
            t0=$(date +%s.%N)
            echo "selftest: --- vhostuser: QEMU vhost-user netdev <-> DPDK net_vhost echo"
            case_vhostuser && rc=0 || rc=$?
            vio_netns_cleanup
            secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
            if [[ $rc -eq 0 ]]; then
                passed=$((passed + 1))
                summary+=("PASS  vhostuser  ${secs}s  vhost-user netdev vs testpmd echo: link + rxcount")
            else
                failed=$((failed + 1))
                summary+=("FAIL  vhostuser  ${secs}s  vhost-user vs testpmd (exit $rc, logs $logdir/vhostuser*)")
            fi ;;
        tap)
            if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null 2>&1; then
                summary+=("SKIP  tap  (needs root and iproute2)")
                continue
            fi
            vio_netns_gc
            # case_tap runs in this shell (the namespace list must stay here for
            # the traps); it starts run-guest.sh through vio_run so that a signal
            # interrupts the wait and the traps delete the namespace at once.
            t0=$(date +%s.%N)
            echo "selftest: --- tap: tap in a netns: link + ping 10.0.0.1"
            case_tap && rc=0 || rc=$?
            vio_netns_cleanup
            secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
            if [[ $rc -eq 0 ]]; then
                passed=$((passed + 1))
                summary+=("PASS  tap  ${secs}s  tap in a netns: link + ping 10.0.0.1, tap counters")
            else
                failed=$((failed + 1))
                summary+=("FAIL  tap  ${secs}s  tap in a netns (exit $rc, log $logdir/tap.log)")
            fi ;;
    esac
done

echo "selftest: summary (wall time per case includes QEMU start and poweroff):"
printf '  %s\n' "${summary[@]}"
if [[ $failed -eq 0 && $keep_logs -eq 0 ]]; then
    rm -rf "$logdir"
else
    echo "selftest: logs kept in $logdir"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
