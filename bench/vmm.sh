#!/usr/bin/env bash
# bench/vmm.sh — vio-vmm against QEMU 7.2 (-accel kvm) as the VMM of the same Linux guest, in
# one nested boot: QEMU TCG with -cpu max boots Debian's kernel ("L1") with kvm-amd; inside it
# both VMMs boot the same kernel and initramfs as "L2" with a virtio-net-pci card on a tap,
# alternated A B A B, for each data path:
#   vhost    the kernel's vhost-net runs the queues (vio-vmm vhost=on; QEMU -netdev tap,vhost=on)
#   inproc   the VMM runs them (vio-vmm vhost=off; QEMU's userspace virtio-net)
# Per run, measured in L1:
#   boot     VMM start -> L2's /init printing its first line (seconds)
#   rss      VMM resident memory beyond guest RAM: RssAnon + RssFile of the VMM process, guest
#            RAM being a shared memfd for both (RssShmem) (KiB)
#   rtt      ping from L2 to L1's tap, 20 x 0.1 s: p50 / p99 (ms)
#   g2h h2g  8 MiB over TCP (busybox nc) guest -> L1 and L1 -> guest, timed in L2 (MiB/s)
#   exits    KVM exits of the VM (debugfs) per 1000 packets on the guest's card during the
#            transfers
# Prints per-run lines, medians per VMM and path, the median of pairwise ratios, and
#   RESULT vmm/<path>/<metric>/{vio,qemu} <value> <unit>   RESULT vmm/<path>/<metric>/ratio <x> x
# Ratios are "better" above 1 (qemu/vio for times, memory, RTT and exits; vio/qemu for
# throughput). Absolute figures under nested TCG are not claims about real hardware: only the
# ratios, measured on the same work in the same boot, are. Never fails on a figure.
#
# Usage: bench/vmm.sh VIO_VMM_STATIC [--pairs N] [--paths "vhost inproc"]
# Needs root, qemu-system-x86_64, busybox-static. 77 (SKIP) without them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$(cd "$here/../tests/support/guest" && pwd -P)
vmm=${1:?usage: bench/vmm.sh VIO_VMM_STATIC [--pairs N] [--paths "vhost inproc"]}
shift
pairs=3 paths="vhost inproc"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --pairs) pairs=${2:?}; shift 2 ;;
        --paths) paths=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "bench/vmm: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $pairs =~ ^[1-9][0-9]*$ ]] || { echo "bench/vmm: --pairs wants a positive integer" >&2; exit 2; }
qemu=$(command -v qemu-system-x86_64 || true)
[[ -n $qemu ]] || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
[[ -x /bin/busybox ]] || { echo "SKIP: busybox-static not installed"; exit 77; }
eval "$("$guest/fetch-kernel.sh")" || { echo "SKIP: no guest kernel"; exit 77; }
work=$(mktemp -d /tmp/vio-bench-vmm.XXXXXX)
trap 'rm -rf "$work"' EXIT

adds=()
add_elf() {
    local bin=$1 lib
    adds+=(--add "$bin:$bin")
    while read -r lib; do
        [[ -n $lib && -e $lib ]] && adds+=(--add "$(readlink -f "$lib"):$lib")
    done < <(ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}')
}
add_elf "$qemu"
for f in /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/pvh.bin /usr/share/qemu/kvmvapic.bin \
         /usr/share/seabios/bios-256k.bin; do
    adds+=(--add "$(readlink -f "$f"):/usr/share/qemu/$(basename "$f")")
done
head -c 8M /dev/urandom > "$work/blob"

cat > "$work/l2bench" <<'L2'
#!/bin/sh
. /lib/vio/lib.sh
ping -c 20 -i 0.1 -W 2 10.0.0.1 > /tmp/ping.txt 2>&1
echo "L2-RTT $(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' /tmp/ping.txt | tr '\n' ' ')"
s0=$(cat /sys/class/net/eth0/statistics/rx_packets) t0=$(cat /sys/class/net/eth0/statistics/tx_packets)
echo "L2-PHASE-START"
sleep 1
a=$(cut -d' ' -f1 /proc/uptime)
nc 10.0.0.1 5001 < /data/blob
b=$(cut -d' ' -f1 /proc/uptime)
mkfifo /tmp/hold
nc 10.0.0.1 5002 <>/tmp/hold > /tmp/got   # busybox nc hangs up when its stdin ends
c=$(cut -d' ' -f1 /proc/uptime)
s1=$(cat /sys/class/net/eth0/statistics/rx_packets) t1=$(cat /sys/class/net/eth0/statistics/tx_packets)
echo "L2-PHASE-END"
sleep 1
echo "L2-XFER g2h_s=$(echo "$b $a" | awk '{print $1-$2}') h2g_s=$(echo "$c $b" | awk '{print $1-$2}') got=$(wc -c < /tmp/got) pkts=$(( s1 - s0 + t1 - t0 ))"
L2
"$guest/mkinitramfs.sh" "$work/l2.cpio.gz" --add "$work/blob:/data/blob" \
    --test "l2bench=$work/l2bench" >/dev/null

cat > "$work/bench" <<'L1'
#!/bin/sh
. /lib/vio/lib.sh
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
mount -t debugfs none /sys/kernel/debug 2>/dev/null
[ -c /dev/kvm ] || vio_fail "no /dev/kvm in L1"
params="console=ttyS0 panic=-1 quiet vio.ip=10.0.0.2/24 vio.test=l2bench"
now() { cut -d' ' -f1 /proc/uptime; }
vm_exits() { # the one VM's exit counter in debugfs
    for d in /sys/kernel/debug/kvm/*-*; do [ -f "$d/exits" ] && cat "$d/exits" && return; done
    echo 0
}
one_run() { # VMM PATH
    rm -f /tmp/l2.log /tmp/hold; : > /tmp/l2.log
    mkfifo /tmp/hold
    nc -l -p 5001 <>/tmp/hold >/dev/null &
    l1=$!
    ( while :; do nc -l -p 5002 < /data/blob; done ) &
    l2=$!
    t0=$(now)
    if [ "$1" = vio ]; then
        v=off; [ "$2" = vhost ] && v=on
        /bin/vio-vmm --kernel /l2/vmlinux --initrd /l2/initrd --mem 256 \
            --network tap=vmtap0,transport=pci,vhost=$v,mac=52:54:00:00:00:02 \
            --params "$params" </dev/null >> /tmp/l2.log 2>&1 &
    else
        v=off; [ "$2" = vhost ] && v=on
        ip tuntap add vmtap0 mode tap 2>/dev/null || tunctl -t vmtap0 >/dev/null
        qemu-system-x86_64 -accel kvm -cpu host -machine q35 -m 256 -nodefaults -no-user-config \
            -display none -no-reboot -serial stdio -L /usr/share/qemu \
            -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
            -kernel /l2/vmlinux -initrd /l2/initrd -append "$params" \
            -netdev tap,id=n0,ifname=vmtap0,script=no,downscript=no,vhost=$v \
            -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02,romfile= \
            </dev/null >> /tmp/l2.log 2>&1 &
    fi
    vpid=$!
    i=0
    while [ ! -e /sys/class/net/vmtap0 ] && [ $i -lt 200 ]; do i=$((i + 1)); sleep 0.05; done
    ip addr add 10.0.0.1/24 dev vmtap0 2>/dev/null; ip link set vmtap0 up
    boot=
    while kill -0 $vpid 2>/dev/null; do
        if [ -z "$boot" ] && grep -q "vio-guest: running test" /tmp/l2.log; then
            boot=$(echo "$(now) $t0" | awk '{print $1-$2}')
        fi
        grep -q L2-PHASE-START /tmp/l2.log && break
        sleep 0.05
    done
    e0=$(vm_exits)
    rss=$(awk '/^RssAnon|^RssFile/{s+=$2} END{print s}' /proc/$vpid/status 2>/dev/null)
    while kill -0 $vpid 2>/dev/null && ! grep -q L2-PHASE-END /tmp/l2.log; do sleep 0.05; done
    e1=$(vm_exits)
    wait $vpid
    kill $l1 $l2 2>/dev/null; wait $l1 $l2 2>/dev/null
    pkill -f "nc -l -p 5002" 2>/dev/null
    ip link del vmtap0 2>/dev/null
    rtt=$(sed -n 's/^L2-RTT //p' /tmp/l2.log | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END{if(NR){print a[int((NR+1)/2)], a[int(NR*0.99+0.999)]}else{print "0 0"}}')
    x=$(sed -n 's/^L2-XFER //p' /tmp/l2.log)
        ok=1
    [ "$(echo "$x" | sed -n 's/.*got=\([0-9]*\).*/\1/p')" = 8388608 ] || ok=0
    grep -q "VIO-GUEST-RESULT: PASS" /tmp/l2.log || ok=0
    echo "RUN vmm=$1 path=$2 ok=$ok boot_s=${boot:-0} rss_kb=${rss:-0} rtt_ms=$(echo $rtt | tr ' ' '/') exits=$((e1 - e0)) $x"
    [ $ok = 1 ] || tail -n 20 /tmp/l2.log
}
for p in $(echo "$VIO_PATHS" | tr "," " "); do
    pair=0
    while [ $pair -lt "$VIO_PAIRS" ]; do   # (one_run uses i)
        one_run vio $p
        one_run qemu $p
        pair=$((pair + 1))
    done
done
exit 0
L1
"$guest/mkinitramfs.sh" "$work/l1.cpio.gz" --module kvm_amd \
    --add "$vmm:/bin/vio-vmm" --add "$VIO_VMLINUX:/l2/vmlinux" --add "$work/l2.cpio.gz:/l2/initrd" \
    --add "$work/blob:/data/blob" "${adds[@]}" --test "bench=$work/bench" \
    > /dev/null 2> >(grep -v 'dynamically linked' >&2)

echo "bench/vmm: L1 boot, then $pairs pair(s) per path ($paths) ..."
set +e
"$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$work/l1.cpio.gz" --mem 2048 \
    --test bench --vio "pairs=$pairs" --vio "paths=${paths// /,}" --timeout $((300 + pairs * 400)) \
    --log "$work/l1.log" -- -cpu max >/dev/null 2>&1
rc=$?
set -e
grep -a '^RUN' "$work/l1.log" | tr -d '\r' > "$work/runs" || true
cat "$work/runs"
[[ $rc == 0 ]] || { cp "$work/l1.log" /tmp/vio-bench-vmm.log; echo "bench/vmm: L1 run ended with $rc (log /tmp/vio-bench-vmm.log)"; }
python3 - "$work/runs" <<'PY'
import re, statistics, sys
runs = []
for line in open(sys.argv[1]):
    if not line.startswith("RUN "):
        continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if kv.get("ok") != "1":
        print("bench/vmm: run left out (failed):", line.strip())
        continue
    try:
        p50, p99 = (float(x) for x in kv["rtt_ms"].split("/"))
        mib = 8.0
        r = dict(vmm=kv["vmm"], path=kv["path"], boot=float(kv["boot_s"]), rss=float(kv["rss_kb"]),
                 rtt50=p50, rtt99=p99, g2h=mib / float(kv["g2h_s"]), h2g=mib / float(kv["h2g_s"]),
                 epk=1000.0 * float(kv["exits"]) / max(1.0, float(kv["pkts"])))
    except (KeyError, ValueError, ZeroDivisionError):
        continue
    runs.append(r)
metrics = [("boot", "s", False), ("rss", "KiB", False), ("rtt50", "ms", False), ("rtt99", "ms", False),
           ("g2h", "MiB/s", True), ("h2g", "MiB/s", True), ("epk", "exits/1000pkt", False)]
for path in sorted({r["path"] for r in runs}):
    v = [r for r in runs if r["path"] == path and r["vmm"] == "vio"]
    q = [r for r in runs if r["path"] == path and r["vmm"] == "qemu"]
    n = min(len(v), len(q))
    print(f"bench/vmm: path {path}: {n} pair(s)")
    for m, unit, higher in metrics:
        mv = statistics.median(r[m] for r in v) if v else 0
        mq = statistics.median(r[m] for r in q) if q else 0
        ratios = []
        for a, b in zip(v[:n], q[:n]):
            if higher and b[m] > 0:
                ratios.append(a[m] / b[m])
            elif not higher and a[m] > 0:
                ratios.append(b[m] / a[m])
        ratio = statistics.median(ratios) if ratios else 0
        print(f"  {m:6} vio {mv:10.3f}  qemu {mq:10.3f} {unit:14} ratio {ratio:.3f} (above 1: vio-vmm better)")
        print(f"RESULT vmm/{path}/{m}/vio {mv:.3f} {unit}")
        print(f"RESULT vmm/{path}/{m}/qemu {mq:.3f} {unit}")
        print(f"RESULT vmm/{path}/{m}/ratio {ratio:.3f} x")
PY
