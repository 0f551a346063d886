#!/usr/bin/env bash
# bench/frontend-vhost-net.sh — our kernel vhost frontend (vio-pktgen --vhost-net) against DPDK's
# net_virtio_user in its vhost-kernel mode, both transmitting through Linux vhost_net into the
# SAME tap, inside ONE QEMU TCG guest (the build machines have no /dev/vhost-net). Prints
# per-run lines, medians, ratios and RESULT lines; never fails on a figure.
#
# In the guest (--smp 2, vhost_net + tun loaded by the default initramfs), one persistent tap
# vtap0 (busybox tunctl, link up, no address, IPv6 off: nothing answers, the kernel drops every
# frame after counting it). Per frame size, --pairs times, alternated A B A B:
#   A  vio-pktgen --vhost-net --tap vtap0 --size S --tx-only --json (pinned to guest CPU 1);
#   B  dpdk-testpmd -l 0,1 --no-huge -m 256 --no-pci
#        --vdev net_virtio_user0,path=/dev/vhost-net,iface=vtap0,queue_size=256
#        -- --forward-mode=txonly --txpkts=S --stats-period 1 --total-num-mbufs=8192
#      (forwarding lcore on CPU 1; testpmd's default pool, 155456 mbufs, does not fit -m 256).
# Both are measured the same way, on the tap: once its rx_packets counter moves (the generator
# is sending), --warmup seconds, then the rx_packets delta over a --seconds window (timed with
# /proc/uptime), then SIGINT. The figure is that delta per second: the frames vhost-net
# delivered into the kernel. Each run line also shows the tap's rx_dropped delta: pktgen's
# frames (ethertype 0x88b5, no handler) are dropped by the core and counted there, testpmd's
# (IPv4/UDP to another MAC) are dropped by IPv4 without a count; both right after the tap. Per size the median of each side and the median of the pairwise
# ratios pktgen/virtio_user:
#   RESULT frontend-vhost-net/txonly/<size>/pktgen <Mpps> Mpps
#   RESULT frontend-vhost-net/txonly/<size>/virtio_user <Mpps> Mpps
#   RESULT frontend-vhost-net/txonly/<size>/ratio <x> x          (target >= 1.0)
#
# dpdk-testpmd is dynamically linked: it goes into the initramfs under /opt/dpdk with every
# library ldd lists (LD_LIBRARY_PATH) and the interpreter; the driver plugins it needs here
# (net_virtio, mempool_ring) sit in /opt/dpdk/pmds and are loaded with -d FILE (the compiled-in
# plugin directory does not exist in the guest, so EAL skips it).
#
# Usage: bench/frontend-vhost-net.sh [BUILD_DIR] [options]
#   BUILD_DIR        a build dir of this tree: its tests/integration/vio-pktgen-static is used,
#                    else vio-pktgen is linked here with gcc -static against its src/libvirtio.a
#                    (default: build)
#   --pktgen PATH    a static vio-pktgen instead
#   --testpmd PATH   dpdk-testpmd (default: from PATH)
#   --pairs N        A/B pairs per size (default 5)
#   --seconds S      measuring window per run (default 5)
#   --warmup S       seconds of traffic before the window (default 1)
#   --sizes LIST     frame sizes without FCS (default "64 1500")
#   --quick          --pairs 1 --seconds 1 --warmup 0.5 (a smoke run: not a measurement)
#   --keep           keep the work directory (console log, initramfs)
# Exit: 0 (figures or not), 1 if the guest could not be built or run, 77 (SKIP) without
# qemu-system-x86_64, the kernel or DPDK. Run it as root on a quiet machine: under load the
# figures mean nothing, and TCG figures are not claims about real hardware — the ratio is.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")
guest=$repo/tests/support/guest
build="" pktgen="" testpmd="" pairs=5 secs=5 warm=1 sizes="64 1500" keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --pktgen) pktgen=$2; shift 2 ;;
        --testpmd) testpmd=$2; shift 2 ;;
        --pairs) pairs=$2; shift 2 ;;
        --seconds) secs=$2; shift 2 ;;
        --warmup) warm=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --quick) pairs=1 secs=1 warm=0.5; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "frontend-vhost-net.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) [[ -z "$build" ]] || { echo "frontend-vhost-net.sh: one BUILD_DIR only" >&2; exit 2; }
           build=$1; shift ;;
    esac
done
say() { printf 'frontend-vhost-net: %s\n' "$*"; }
skip() { say "SKIP: $*"; exit 77; }
die() { say "error: $*"; exit 1; }
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || { echo "frontend-vhost-net.sh: --pairs wants N >= 1" >&2; exit 2; }
for v in "$secs" "$warm"; do
    [[ "$v" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "frontend-vhost-net.sh: bad seconds '$v'" >&2; exit 2; }
done
for s in $sizes; do
    [[ "$s" =~ ^[0-9]+$ && $s -ge 60 && $s -le 1514 ]] ||
        { echo "frontend-vhost-net.sh: --sizes wants 60..1514, not '$s'" >&2; exit 2; }
done

# --- peers -------------------------------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 missing"
[[ -n "$testpmd" ]] || testpmd=$(command -v dpdk-testpmd 2>/dev/null) || skip "dpdk-testpmd missing"
[[ -x "$testpmd" ]] || skip "dpdk-testpmd ($testpmd) missing"
command -v ldd >/dev/null 2>&1 || skip "ldd missing (needed to copy DPDK into the guest)"
pmddir=$(strings "$(ldd "$testpmd" | awk '/librte_eal\.so/ { print $3 }')" 2>/dev/null |
    sed -n 's/^DPDK_PLUGIN_PATH=//p' | head -1)
[[ -n "$pmddir" && -d "$pmddir" ]] ||
    pmddir=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* 2>/dev/null | tail -1)
plugins=()
for p in net_virtio mempool_ring; do
    f=$(ls "$pmddir"/librte_"$p".so.[0-9]* 2>/dev/null | head -1)
    [[ -n "$f" ]] || skip "DPDK driver librte_$p not found in '${pmddir:-?}'"
    plugins+=("$f")
done
fk=$("$guest/fetch-kernel.sh" 2>/dev/null) || skip "fetch-kernel.sh could not provide a kernel"
eval "$fk"
export VIO_VMLINUX VIO_MODULES

dir=$(mktemp -d "${TMPDIR:-/tmp}/vio-bench-vn.XXXXXX")
trap '[[ $keep -eq 0 ]] && rm -rf "$dir" || say "work directory kept: $dir"' EXIT

# --- a static vio-pktgen -----------------------------------------------------------------
if [[ -z "$pktgen" ]]; then
    b=${build:-$repo/build}
    if [[ -x "$b/tests/integration/vio-pktgen-static" ]]; then
        pktgen=$b/tests/integration/vio-pktgen-static
    elif [[ -f "$b/src/libvirtio.a" ]]; then
        pktgen=$dir/vio-pktgen-static
        gcc -O2 -DNDEBUG -std=c11 -D_GNU_SOURCE -I"$repo/include" -static "$repo/examples/pktgen/main.c" \
            "$b/src/libvirtio.a" -lm -o "$pktgen" 2>"$dir/gcc.err" ||
            { cat "$dir/gcc.err"; die "gcc -static vio-pktgen against $b/src/libvirtio.a failed"; }
    else
        die "no static vio-pktgen: $b has neither tests/integration/vio-pktgen-static nor src/libvirtio.a (pass BUILD_DIR or --pktgen)"
    fi
fi
[[ -x "$pktgen" ]] || die "$pktgen not found"
file -L "$pktgen" 2>/dev/null | grep -q 'dynamically linked' &&
    die "$pktgen is dynamically linked (the guest has no libc)"

# --- DPDK into /opt/dpdk -----------------------------------------------------------------
mkdir -p "$dir/dpdk/bin" "$dir/dpdk/lib" "$dir/dpdk/pmds"
cp -L "$testpmd" "$dir/dpdk/bin/dpdk-testpmd"
for f in "${plugins[@]}"; do cp -L "$f" "$dir/dpdk/pmds/"; done
interp=$(readelf -l "$testpmd" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
interp=${interp:-/lib64/ld-linux-x86-64.so.2}
[[ -e "$interp" ]] || skip "the dynamic loader $interp is missing"
nlib=0
while read -r name path; do
    [[ -e "$dir/dpdk/lib/$name" ]] && continue
    cp -L "$path" "$dir/dpdk/lib/$name" || die "copying $path"
    nlib=$((nlib + 1))
done < <(ldd "$testpmd" "${plugins[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u)
# glibc dlopens libgcc_s for pthread_cancel (testpmd's exit path): ldd does not list it
gccs=$(ls /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib64/libgcc_s.so.1 /lib64/libgcc_s.so.1 2>/dev/null | head -1)
[[ -n "$gccs" && ! -e "$dir/dpdk/lib/libgcc_s.so.1" ]] && cp -L "$gccs" "$dir/dpdk/lib/"
# a library that ldd could not resolve would only fail in the guest: say it here
if ldd "$testpmd" "${plugins[@]}" | grep -q 'not found'; then
    ldd "$testpmd" "${plugins[@]}" | grep 'not found'
    skip "DPDK libraries missing on this machine"
fi
say "dpdk: $testpmd + $nlib libraries + ${#plugins[@]} plugins ($(du -sh "$dir/dpdk" | cut -f1)) into the guest"

# --- the guest side ----------------------------------------------------------------------
{
    printf 'PAIRS=%s SECS=%s WARM=%s SIZES="%s"\n' "$pairs" "$secs" "$warm" "$sizes"
    cat <<'GUEST'
# runs in the guest (busybox sh); prints VNB-* lines for the host
. /lib/vio/lib.sh
export LD_LIBRARY_PATH=/opt/dpdk/lib
mkdir -p /var/run /tmp
T=vtap0
st=/sys/class/net/$T/statistics
tunctl -t $T >/dev/null || vio_fail "tunctl -t $T"
echo 1 >/proc/sys/net/ipv6/conf/$T/disable_ipv6 2>/dev/null
ip link set $T up || vio_fail "ip link set $T up"
echo "VNB-INFO guest cpus=$(nproc) tap=$T $(uname -r)"
rxp() { cat $st/rx_packets; }
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
# alive PID: running and not a zombie (a dead child stays a zombie until wait: kill -0 succeeds)
alive() { [ -r /proc/$1/stat ] && [ "$(sed 's/.*) //' /proc/$1/stat | cut -c1)" != Z ]; }
# window PID: wait until the tap counts frames (the generator is up), warm up, measure.
# Prints "DELTA CENTISECONDS rx_dropped+N", or nothing when the generator died or never sent.
window() {
    c=$(rxp) i=0
    while [ "$(rxp)" = "$c" ]; do
        alive "$1" || return 1
        i=$((i + 1)); [ $i -le 1800 ] || return 1
        sleep 0.1
    done
    sleep "$WARM"
    c0=$(rxp) t0=$(now_cs) d0=$(cat $st/rx_dropped)
    sleep "$SECS"
    c1=$(rxp) t1=$(now_cs) d1=$(cat $st/rx_dropped)
    alive "$1" || return 1
    echo "$((c1 - c0)) $((t1 - t0)) rx_dropped+$((d1 - d0))"
}
# stop PID: SIGINT, then SIGKILL if it lingers; its exit status in $rc
stop() {
    kill -INT "$1" 2>/dev/null
    i=0
    while alive "$1" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$1" 2>/dev/null
    wait "$1"
    rc=$?
}
# EAL refuses plugins below a world-writable directory (the initramfs root is one)
chmod go-w / /opt /opt/dpdk /opt/dpdk/pmds /opt/dpdk/pmds/* || vio_fail "chmod for the DPDK plugins"
# -d per file: a directory given to -d loads only names ending in .so or .so.<ABI>.<minor>
plug=""
for f in /opt/dpdk/pmds/*; do plug="$plug -d $f"; done
dur=$(awk -v w="$WARM" -v s="$SECS" 'BEGIN { printf "%d\n", w + s + 200 }')
fails=0
for size in $SIZES; do
    p=1
    while [ $p -le "$PAIRS" ]; do
        # A: vio-pktgen --vhost-net
        taskset -c 1 /bin/vio-pktgen --vhost-net --tap $T --size "$size" --duration "$dur" \
            --tx-only --json --quiet >/tmp/pg.out 2>/tmp/pg.err &
        pid=$!
        res=$(window $pid)
        stop $pid
        if [ -n "$res" ]; then
            j=$(tail -n 1 /tmp/pg.out)
            echo "VNB-RUN $size $p pktgen $res rc=$rc" \
                "tx_packets=$(echo "$j" | sed -n 's/.*"tx_packets":\([0-9]*\).*/\1/p')" \
                "errors=$(echo "$j" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p')"
        else
            fails=$((fails + 1))
            echo "VNB-NORUN $size $p pktgen rc=$rc"
            tail -n 5 /tmp/pg.err /tmp/pg.out | sed 's/^/VNB-LOG /'
        fi
        # B: testpmd net_virtio_user, vhost-kernel mode, on the same tap
        /opt/dpdk/bin/dpdk-testpmd -l 0,1 --no-huge -m 256 --no-pci --file-prefix vnb \
            --vdev net_virtio_user0,path=/dev/vhost-net,iface=$T,queue_size=256 \
            $plug -- --forward-mode=txonly --txpkts="$size" --stats-period 1 \
            --total-num-mbufs=8192 </dev/null >/tmp/tp.out 2>&1 &
        pid=$!
        res=$(window $pid)
        stop $pid
        if [ -n "$res" ]; then
            echo "VNB-RUN $size $p virtio_user $res rc=$rc"
        else
            fails=$((fails + 1))
            echo "VNB-NORUN $size $p virtio_user rc=$rc"
            [ -s /tmp/tp.out ] || echo "(testpmd printed nothing)" >/tmp/tp.out
            grep -v '^ *$' /tmp/tp.out | tail -n 25 | sed 's/^/VNB-LOG /'
        fi
        p=$((p + 1))
    done
done
echo "VNB-DONE fails=$fails tap_rx_dropped=$(cat $st/rx_dropped)"
exit 0
GUEST
} >"$dir/vnb.sh"
chmod +x "$dir/vnb.sh"

"$guest/mkinitramfs.sh" "$dir/initrd.cpio.gz" --add "$pktgen:/bin/vio-pktgen" \
    --add "$dir/dpdk:/opt/dpdk" --add "$(readlink -f "$interp"):$interp" \
    --test vnb="$dir/vnb.sh" >/dev/null 2>"$dir/mkinitramfs.err" ||
    { cat "$dir/mkinitramfs.err"; die "mkinitramfs failed"; }
say "initramfs $(du -h "$dir/initrd.cpio.gz" | cut -f1); pktgen $pktgen"

nsz=$(wc -w <<<"$sizes")
tmo=$(awk -v p="$pairs" -v n="$nsz" -v w="$warm" -v s="$secs" 'BEGIN { printf "%d", 240 + p * n * 2 * (90 + w + s) }')
say "booting the guest (QEMU TCG, 2 vCPUs, 1 GiB; $pairs pair(s) x sizes $sizes, ${secs}s windows; timeout ${tmo}s)"
rc=0
# -cpu max: Debian's DPDK is built for SSE4.2 at least (QEMU's default qemu64 model gives
# testpmd SIGILL, exit status 132)
"$guest/run-guest.sh" --initrd "$dir/initrd.cpio.gz" --test vnb --smp 2 --mem 1024 --qemu-arg -cpu --qemu-arg max \
    --timeout "$tmo" --log "$dir/console.log" >"$dir/run-guest.out" 2>&1 &
wait $! || rc=$?
tr -d '\r' <"$dir/console.log" | grep -a '^VNB-' >"$dir/vnb.lines" || true
grep -a '^VNB-INFO\|^VNB-NORUN\|^VNB-LOG\|^VNB-DONE' "$dir/vnb.lines" | sed 's/^/  /'
if [[ $rc -eq 77 ]]; then
    skip "run-guest.sh could not run the guest"
elif [[ $rc -ne 0 ]]; then
    cat "$dir/run-guest.out"
    keep=1
    die "the guest did not finish (run-guest status $rc)"
fi

# --- figures -----------------------------------------------------------------------------
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mpps() { awk -v d="$1" -v cs="$2" 'BEGIN { if (cs > 0) printf "%.4f", d * 100 / cs / 1e6; else print "nan" }'; }
for size in $sizes; do
    As=() Bs=() Rs=()
    for ((p = 1; p <= pairs; p++)); do
        a=nan b=nan
        while read -r _ _ _ side delta cs rest; do
            v=$(mpps "$delta" "$cs")
            say "$size B pair $p $(printf '%-11s' "$side") $v Mpps (tap rx_packets +$delta in $(awk -v c="$cs" 'BEGIN { printf "%.2f", c / 100 }') s; $rest)"
            if [[ $side == pktgen ]]; then a=$v; else b=$v; fi
        done < <(awk -v s="$size" -v p="$p" '$1 == "VNB-RUN" && $2 == s && $3 == p' "$dir/vnb.lines")
        [[ $a != nan ]] && As+=("$a")
        [[ $b != nan ]] && Bs+=("$b")
        if [[ $a != nan && $b != nan ]]; then
            Rs+=("$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }')")
        fi
    done
    ma=$(printf '%s\n' "${As[@]}" | grep -v '^$' | median)
    mb=$(printf '%s\n' "${Bs[@]}" | grep -v '^$' | median)
    mr=$(printf '%s\n' "${Rs[@]}" | grep -v '^$\|nan' | median)
    say "$size B: median pktgen $ma Mpps (${#As[@]} runs), virtio_user $mb Mpps (${#Bs[@]} runs)"
    say "ratio $size B: pktgen / virtio_user = $mr (median of ${#Rs[@]} pairwise ratios: ${Rs[*]:-none}; target >= 1.0)"
    echo "RESULT frontend-vhost-net/txonly/$size/pktgen $ma Mpps"
    echo "RESULT frontend-vhost-net/txonly/$size/virtio_user $mb Mpps"
    echo "RESULT frontend-vhost-net/txonly/$size/ratio $mr x"
done
exit 0
