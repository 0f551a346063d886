#!/usr/bin/env bash
# run-guest.sh [options] [-- extra QEMU arguments...]
#
# Boot a libvirtio test guest under QEMU TCG (never KVM: this host's /dev/kvm
# cannot run stock kernels), capture its serial console, and report the
# "VIO-GUEST-RESULT:" line the guest's /init prints.
#
# Exit status: 0 PASS, 1 FAIL, 2 timeout / boot failure / no result line,
#              77 prerequisite missing (no QEMU, no kernel): CTest SKIP_RETURN_CODE.
#
# Guest:
#   --kernel FILE       kernel (default: $VIO_VMLINUX, else fetch-kernel.sh's vmlinux)
#   --initrd FILE       initramfs (default: mkinitramfs.sh's default image, cached)
#   --test NAME         vio.test=NAME (ping, link, vhostnet, shell, or a /tests/NAME you added)
#   --vio KEY=VALUE     add vio.KEY=VALUE to the kernel command line (repeatable),
#                       e.g. --vio ip=10.0.0.2/24 --vio peer=10.0.0.1
#   --append STRING     more kernel command line words
#   --mem MIB           guest memory in MiB (default 512)
#   --smp N             vCPUs (default 1)
# Network (each adds one virtio-net-pci device with netdev id n0):
#   --net-user          -netdev user (slirp; gateway 10.0.2.2, guest 10.0.2.15)
#   --net-tap IFNAME    -netdev tap on an existing tap device (see netns.sh)
#   --vhost-user SOCK   -netdev vhost-user on unix socket SOCK (QEMU is the client);
#                       implies --memfd and puts vectors=0 on virtio-net-pci (QEMU 7.2
#                       under TCG crashes with MSI-X + vhost-user; INTx works)
#   --vu-reconnect SEC  add reconnect=SEC to the vhost-user chardev (QEMU retries the
#                       socket instead of failing when the backend is not up yet)
#   --mac MAC           MAC address for that device
#   --memfd             guest RAM as memory-backend-memfd,share=on + -numa node
#                       (needed by any vhost-user device)
# QEMU process:
#   --qemu-arg ARG      one extra QEMU argument (repeatable); or put them after --
#   --netns NAME        start QEMU with 'ip netns exec NAME'
#   --taskset CPUS      pin QEMU to CPUS (taskset -c), e.g. away from a busy-polling backend
#   --timeout SEC       kill QEMU after SEC seconds (default $VIO_GUEST_TIMEOUT or 120)
#   --log FILE          serial log file (default: a new file under ${TMPDIR:-/tmp}; kept)
#   --interactive       console on this terminal (for --test shell); no timeout unless given
#   -v, --verbose       also copy the console to stderr while it runs
#   --dry-run           print the QEMU command line and exit
#   --cache DIR         cache dir for fetch-kernel.sh / the default initramfs
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
prog=run-guest
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 2; }
skip() { printf '%s: SKIP: %s\n' "$prog" "$*" >&2; exit 77; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

kernel=${VIO_VMLINUX:-}
initrd=""
test_name=""
vio_params=()
append_extra=""
mem=512
smp=1
net_mode=""
net_arg=""
mac=""
vu_reconnect=""
memfd=0
qemu_extra=()
netns=""
cpus=""
timeout_s=""
logfile=""
interactive=0
verbose=0
dry_run=0
cache_arg=()
qemu=${VIO_QEMU:-qemu-system-x86_64}

need() { [[ $# -ge 2 ]] || die "option $1 needs a value"; }
set_net() {
    [[ -z "$net_mode" ]] || die "only one of --net-user/--net-tap/--vhost-user (add more with --qemu-arg)"
    net_mode=$1; net_arg=${2:-}
}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kernel) need "$@"; kernel=$2; shift 2 ;;
        --initrd) need "$@"; initrd=$2; shift 2 ;;
        --test) need "$@"; test_name=$2; shift 2 ;;
        --vio) need "$@"; [[ "$2" == *=* ]] || die "--vio wants KEY=VALUE"; vio_params+=("vio.${2#vio.}"); shift 2 ;;
        --append) need "$@"; append_extra+=" $2"; shift 2 ;;
        --mem) need "$@"; mem=$2; shift 2 ;;
        --smp) need "$@"; smp=$2; shift 2 ;;
        --net-user) set_net user; shift ;;
        --net-tap) need "$@"; set_net tap "$2"; shift 2 ;;
        --vhost-user) need "$@"; set_net vhost-user "$2"; memfd=1; shift 2 ;;
        --vu-reconnect) need "$@"; vu_reconnect=$2; shift 2 ;;
        --mac) need "$@"; mac=$2; shift 2 ;;
        --memfd) memfd=1; shift ;;
        --qemu-arg) need "$@"; qemu_extra+=("$2"); shift 2 ;;
        --netns) need "$@"; netns=$2; shift 2 ;;
        --taskset) need "$@"; cpus=$2; shift 2 ;;
        --timeout) need "$@"; timeout_s=$2; shift 2 ;;
        --log) need "$@"; logfile=$2; shift 2 ;;
        --interactive) interactive=1; shift ;;
        -v|--verbose) verbose=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --cache) need "$@"; cache_arg=("$2"); shift 2 ;;
        -h|--help) usage ;;
        --) shift; qemu_extra+=("$@"); break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[[ "$mem" =~ ^[0-9]+$ ]] || die "--mem wants MiB as a number"
[[ "$smp" =~ ^[0-9]+$ ]] || die "--smp wants a number"
if [[ -z "$timeout_s" ]]; then
    if [[ $interactive -eq 1 ]]; then timeout_s=0; else timeout_s=${VIO_GUEST_TIMEOUT:-120}; fi
fi
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout wants seconds"

command -v "$qemu" >/dev/null 2>&1 || skip "$qemu not found (apt-get install qemu-system-x86)"
command -v timeout >/dev/null 2>&1 || die "coreutils 'timeout' not found"
if [[ -n "$netns" ]]; then
    command -v ip >/dev/null 2>&1 || skip "'ip' not found (iproute2)"
fi

# --- kernel and initramfs ---------------------------------------------------------
if [[ -z "$kernel" ]]; then
    fk=$("$here/fetch-kernel.sh" "${cache_arg[@]}") || skip "fetch-kernel.sh could not provide a kernel"
    eval "$fk"   # VIO_KERNEL_PKG VIO_KVER VIO_VMLINUX VIO_MODULES (printed with %q)
    kernel=$VIO_VMLINUX
    export VIO_MODULES
fi
[[ -s "$kernel" ]] || die "kernel '$kernel' not found"
if [[ -z "$initrd" ]]; then
    # One default image per (kernel modules, busybox, mkinitramfs.sh) combination.
    cache_dir=${cache_arg[0]:-${VIO_GUEST_CACHE:-/var/cache/libvirtio-guest}}
    key=$( { cat "$here/mkinitramfs.sh"; printf '%s\n' "${VIO_MODULES:-}" "$kernel";
             cat /bin/busybox 2>/dev/null || true; } | sha256sum | cut -c1-16)
    initrd="$cache_dir/initrd-default-$key.cpio.gz"
    if [[ ! -s "$initrd" ]]; then
        # Images of older script versions: drop those unused for an hour.
        find "$cache_dir" -maxdepth 1 -name 'initrd-default-*.cpio.gz' -mmin +60 -delete 2>/dev/null || true
        "$here/mkinitramfs.sh" "$initrd" "${cache_arg[@]/#/--cache=}" >&2 ||
            die "mkinitramfs.sh failed to build the default initramfs"
    fi
fi
[[ -s "$initrd" ]] || die "initramfs '$initrd' not found"

# --- command line -----------------------------------------------------------------------
# no_timer_check: under TCG on a loaded host the kernel's early IO-APIC timer check can miss
# its window and panic ("IO-APIC + timer doesn't work!"); seen here with a busy core.
cmdline="console=ttyS0 panic=-1 quiet no_timer_check"
[[ -z "$test_name" ]] || cmdline+=" vio.test=$test_name"
for p in "${vio_params[@]}"; do cmdline+=" $p"; done
cmdline+="$append_extra"

if [[ $dry_run -eq 1 ]]; then
    [[ -n "$logfile" ]] || logfile=LOGFILE
elif [[ -z "$logfile" ]]; then
    logfile=$(mktemp "${TMPDIR:-/tmp}/vio-guest.XXXXXX.log")
else
    mkdir -p "$(dirname "$logfile")"
    : > "$logfile"
fi
logfile_q=${logfile//,/,,}   # QEMU option syntax: a literal ',' is written ',,'

# -nic none: no default NIC (an e1000 with iPXE) when no network is asked for.
# maxcpus >= 2 and thread=multi: QEMU before 8.1 (Debian 12 has 7.2) drops the guest's memory
# barriers from the translated code when the machine can only ever have one vCPU (no
# CF_PARALLEL; fixed upstream by "tcg: Do not elide memory barriers for !CF_PARALLEL in system
# mode"). A device in another thread or process (a vhost-user back-end) then races the guest
# driver's event-idx handshake (store avail idx, smp_mb, load avail_event) with no fence on the
# guest's side, and a kick or an interrupt is lost now and then: a single-vCPU guest's transmit
# queue stopped for good. A possible second vCPU, never plugged, turns the barriers back on.
maxcpus=$((smp > 2 ? smp : 2))
qcmd=("$qemu" -accel tcg,thread=multi -nographic -no-reboot -m "$mem" -smp "$smp,maxcpus=$maxcpus" -nic none
      -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
      # Console: stdio muxed with the monitor, everything also written to the log.
      -chardev "stdio,id=vio_con,mux=on,signal=off,logfile=$logfile_q"
      -serial chardev:vio_con -mon "chardev=vio_con,mode=readline")
if [[ $memfd -eq 1 ]]; then
    qcmd+=(-object "memory-backend-memfd,id=vio_mem,size=${mem}M,share=on" -numa "node,memdev=vio_mem")
fi
devopt="virtio-net-pci,netdev=n0,romfile="
[[ -z "$mac" ]] || devopt+=",mac=$mac"
case "$net_mode" in
    "") ;;
    user) qcmd+=(-netdev "user,id=n0" -device "$devopt") ;;
    tap) qcmd+=(-netdev "tap,id=n0,ifname=${net_arg//,/,,},script=no,downscript=no" -device "$devopt") ;;
    vhost-user)
        qcmd+=(-chardev "socket,id=vio_vu,path=${net_arg//,/,,}${vu_reconnect:+,reconnect=$vu_reconnect}"
               -netdev "vhost-user,id=n0,chardev=vio_vu"
               -device "$devopt,vectors=0") ;;
esac
qcmd+=("${qemu_extra[@]}")
if [[ -n "$cpus" ]]; then
    command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) not found"
    qcmd=(taskset -c "$cpus" "${qcmd[@]}")
fi
if [[ -n "$netns" ]]; then
    qcmd=(ip netns exec "$netns" "${qcmd[@]}")
fi

if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "${qcmd[@]}"; printf '\n'
    exit 0
fi

# --- run --------------------------------------------------------------------------------
qpid=""
tailpid=""
# shellcheck disable=SC2317  # called from the traps
cleanup() {
    [[ -z "$qpid" ]] || kill -TERM "$qpid" 2>/dev/null || true
    [[ -z "$tailpid" ]] || kill "$tailpid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

log "log: $logfile"
start=$(date +%s.%N)
if [[ $interactive -eq 1 ]]; then
    if [[ "$timeout_s" -gt 0 ]]; then
        timeout --foreground -k 5 "$timeout_s" "${qcmd[@]}" && rc=0 || rc=$?
    else
        "${qcmd[@]}" && rc=0 || rc=$?
    fi
else
    if [[ $verbose -eq 1 ]]; then
        tail -n +1 -F "$logfile" >&2 2>/dev/null &
        tailpid=$!
    fi
    if [[ "$timeout_s" -gt 0 ]]; then
        timeout -k 5 "$timeout_s" "${qcmd[@]}" </dev/null >/dev/null 2>"$logfile.qemu-stderr" &
    else
        "${qcmd[@]}" </dev/null >/dev/null 2>"$logfile.qemu-stderr" &
    fi
    qpid=$!
    wait "$qpid" && rc=0 || rc=$?
    qpid=""
    if [[ -n "$tailpid" ]]; then
        sleep 0.2
        kill "$tailpid" 2>/dev/null || true
        wait "$tailpid" 2>/dev/null || true
        tailpid=""
    fi
fi
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

# --- verdict ------------------------------------------------------------------------------
# The console starts with terminal escapes and uses CRLF: strip both, then grep -a.
clean() { sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[()][0-9A-Za-z]//g' -e 's/\x1b[c78=>]//g' -e 's/\r//g' "$logfile"; }
result=$(clean | grep -a -m 1 '^VIO-GUEST-RESULT: ' || true)
show_tail() {
    printf -- '----- last 25 console lines (%s) -----\n' "$logfile" >&2
    clean | tail -n 25 >&2
    if [[ -s "$logfile.qemu-stderr" ]]; then
        printf -- '----- QEMU stderr -----\n' >&2
        tail -n 10 "$logfile.qemu-stderr" >&2
    fi
    printf -- '-----\n' >&2
}

case "$result" in
    "VIO-GUEST-RESULT: PASS"*)
        log "PASS (test ${test_name:-?}, ${elapsed}s)"
        exit 0 ;;
    "VIO-GUEST-RESULT: FAIL"*)
        log "FAIL (test ${test_name:-?}, ${elapsed}s): ${result#VIO-GUEST-RESULT: FAIL }"
        show_tail
        exit 1 ;;
esac
if [[ $interactive -eq 1 && "$rc" -eq 0 ]]; then
    log "interactive session ended (${elapsed}s)"
    exit 0
fi
if [[ "$rc" -eq 124 || "$rc" -eq 137 ]]; then
    reason="timeout: no result after ${timeout_s}s, QEMU killed"
elif panic=$(clean | grep -a -m 1 'Kernel panic' ); then
    reason="guest kernel panic: ${panic#*] }"
elif [[ "$rc" -ne 0 ]]; then
    reason="QEMU exited with status $rc before a result"
else
    reason="guest powered off without a VIO-GUEST-RESULT line"
fi
log "ERROR (test ${test_name:-?}, ${elapsed}s): $reason"
show_tail
exit 2
