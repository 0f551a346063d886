#!/usr/bin/env bash
# mkinitramfs.sh OUT.cpio.gz [options]
#
# Build a small busybox initramfs for libvirtio's QEMU test guests.
#
# Options:
#   --add SRC:DEST       copy SRC (file or directory) to DEST inside the image;
#                        DEST ending in '/' means "into that directory". Repeatable.
#                        Static programs only: the image has no libc.
#   --test NAME=FILE     shorthand for --add FILE:/tests/NAME (a test vio.test=NAME
#                        runs). Repeatable.
#   --init SCRIPT        use SCRIPT as /init instead of the default one (it can
#                        still '. /lib/vio/lib.sh' for the helpers).
#   --module NAME        load module NAME too (after the default list; its
#                        dependencies are pulled in from the module's modinfo).
#   --no-modules         put no kernel modules in the image.
#   --modules-dir DIR    lib/modules/<kver> tree to take modules from
#                        (default: $VIO_MODULES, else fetch-kernel.sh's cache).
#   --cache DIR          cache dir handed to fetch-kernel.sh.
#   --busybox PATH       static busybox binary (default: busybox-static's /bin/busybox).
#
# The default /init mounts proc/sys/devtmpfs, insmods the modules in order,
# exports every vio.KEY=VALUE kernel parameter as VIO_KEY, configures the
# interface (vio.ip, vio.if, vio.gw, vio.mtu, vio.mac), runs /tests/$VIO_TEST,
# prints "VIO-GUEST-RESULT: PASS" or "VIO-GUEST-RESULT: FAIL <reason>" and
# powers off. See README.md in this directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
prog=mkinitramfs
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

# Load order that works with Debian's 6.1 kernel (vhost_net needs tun and tap).
default_modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
                 failover net_failover virtio_net tun tap vhost_iotlb vhost vhost_net virtio_mmio)

out=""
adds=()
init_script=""
extra_modules=()
use_modules=1
modules_dir=${VIO_MODULES:-}
cache_arg=()
busybox=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --add) [[ $# -ge 2 ]] || usage; adds+=("$2"); shift 2 ;;
        --add=*) adds+=("${1#--add=}"); shift ;;
        --test)
            [[ $# -ge 2 && "$2" == *=* ]] || die "--test wants NAME=FILE"
            adds+=("${2#*=}:/tests/${2%%=*}"); shift 2 ;;
        --init) [[ $# -ge 2 ]] || usage; init_script=$2; shift 2 ;;
        --module) [[ $# -ge 2 ]] || usage; extra_modules+=("$2"); shift 2 ;;
        --no-modules) use_modules=0; shift ;;
        --modules-dir) [[ $# -ge 2 ]] || usage; modules_dir=$2; shift 2 ;;
        --cache) [[ $# -ge 2 ]] || usage; cache_arg=("$2"); shift 2 ;;
        --cache=*) cache_arg=("${1#--cache=}"); shift ;;
        --busybox) [[ $# -ge 2 ]] || usage; busybox=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) [[ -z "$out" ]] || die "more than one output file given ('$out', '$1')"; out=$1; shift ;;
    esac
done
[[ -n "$out" ]] || usage

for tool in cpio gzip find; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found (apt-get install cpio)"
done

# --- busybox -----------------------------------------------------------------
if [[ -z "$busybox" ]]; then
    for b in /bin/busybox /usr/bin/busybox; do
        [[ -x "$b" ]] && { busybox=$b; break; }
    done
fi
[[ -n "$busybox" && -x "$busybox" ]] || die "no busybox binary (apt-get install busybox-static)"
if command -v readelf >/dev/null 2>&1 && readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$busybox is dynamically linked: install busybox-static (or pass --busybox)"
fi

# --- modules -----------------------------------------------------------------
if [[ $use_modules -eq 1 && -z "$modules_dir" ]]; then
    fk_out=$("$here/fetch-kernel.sh" "${cache_arg[@]}") || die "fetch-kernel.sh failed"
    modules_dir=$(printf '%s\n' "$fk_out" | sed -n 's/^VIO_MODULES=//p')
    # fetch-kernel prints with %q; the cache paths have no special characters
    # unless the user chose such a cache dir.
    modules_dir=$(eval "printf '%s' $modules_dir")
fi
if [[ $use_modules -eq 1 ]]; then
    [[ -d "$modules_dir/kernel" ]] || die "modules dir '$modules_dir' has no kernel/ subdirectory"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/vio-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,tests,lib/modules,lib/vio}
cp "$busybox" "$stage/bin/busybox"
chmod 0755 "$stage/bin/busybox"
# Applet symlinks. Never create one named 'busybox': it would replace the
# binary by a self-referencing link (kernel panics with error -40, ELOOP).
while IFS= read -r applet; do
    [[ -n "$applet" ]] || continue
    [[ "${applet##*/}" == busybox ]] && continue
    [[ -e "$stage/$applet" || -L "$stage/$applet" ]] && continue
    mkdir -p "$stage/$(dirname "$applet")"
    ln -s /bin/busybox "$stage/$applet"
done < <("$busybox" --list-full)
[[ -L "$stage/bin/sh" ]] || die "busybox has no 'sh' applet"

# Device nodes the kernel wants before /init runs (needs root; the default
# /init re-opens the console after mounting devtmpfs in any case).
if [[ $(id -u) -eq 0 ]]; then
    mknod -m 600 "$stage/dev/console" c 5 1
    mknod -m 666 "$stage/dev/null" c 1 3
fi

# Find one module in the tree; print the staged (decompressed) file.
declare -A mod_done=()
mod_order=()
find_module() {
    find "$modules_dir/kernel" \( -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" \) -print -quit
}
stage_module() { # NAME -> copies to lib/modules/NAME.ko (decompressed)
    local name=$1 src dst
    src=$(find_module "$name")
    # Module file names may use '-' where the module name has '_'.
    [[ -n "$src" ]] || src=$(find_module "${name//_/-}")
    [[ -n "$src" ]] || die "module '$name' not found under $modules_dir/kernel (built in, or not in this kernel?)"
    dst="$stage/lib/modules/$name.ko"
    case "$src" in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" > "$dst" || die "xz -dc $src failed" ;;
        *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $src"; zstd -qdc "$src" > "$dst" || die "zstd -dc $src failed" ;;
        *.ko.gz) gzip -dc "$src" > "$dst" || die "gzip -dc $src failed" ;;
    esac
}
module_deps() { # staged NAME -> its 'depends=' list, one per line
    tr '\0' '\n' < "$stage/lib/modules/$1.ko" | sed -n 's/^depends=//p' | head -n 1 | tr ',' '\n' | sed '/^$/d'
}
add_module() { # NAME [chain] : depth-first so dependencies load first
    local name=${1//-/_} chain=${2:-} dep
    [[ -n "${mod_done[$name]:-}" ]] && return 0
    [[ " $chain " == *" $name "* ]] && die "module dependency loop: $chain $name"
    stage_module "$name"
    while IFS= read -r dep; do
        add_module "$dep" "$chain $name"
    done < <(module_deps "$name")
    mod_done[$name]=1
    mod_order+=("$name")
}
if [[ $use_modules -eq 1 ]]; then
    for m in "${default_modules[@]}" "${extra_modules[@]}"; do
        add_module "$m"
    done
fi
printf '%s\n' "${mod_order[@]}" > "$stage/lib/vio/modules.list"

# --- /lib/vio/lib.sh: helpers for /init and for test scripts -----------------
cat > "$stage/lib/vio/lib.sh" <<'EOF'
# libvirtio guest helpers (sourced by /init and by /tests/* scripts).
VIO_REASON_FILE=/run/vio-reason

vio_log() { echo "vio-guest: $*"; }

# In a test script: record why it failed and exit 1.
vio_fail() {
    echo "$*" > "$VIO_REASON_FILE"
    echo "vio-guest: FAIL: $*"
    exit 1
}

# Print the result marker the host looks for, then power off.
vio_result() {
    # Leading newline: the console line may hold earlier unterminated output.
    printf '\nVIO-GUEST-RESULT: %s\n' "$*"
    sync
    poweroff -f
    sleep 5
    echo o > /proc/sysrq-trigger
}

# Export vio.KEY=VALUE parameters as VIO_KEY=VALUE ('vio.key' alone gives 1).
# Keys are upper-cased, '.' and '-' become '_'. (Dotted options are not put in
# init's environment by the kernel, hence /proc/cmdline.)
vio_parse_cmdline() {
    local w key val var
    set -f
    for w in $(cat /proc/cmdline); do
        case "$w" in
            vio.*) ;;
            *) continue ;;
        esac
        w=${w#vio.}
        case "$w" in
            *=*) key=${w%%=*}; val=${w#*=} ;;
            *) key=$w; val=1 ;;
        esac
        var=VIO_$(echo "$key" | tr 'a-z.-' 'A-Z__')
        case "$var" in
            *[!A-Z0-9_]*) vio_log "ignoring odd parameter vio.$key"; continue ;;
        esac
        export "$var=$val"
    done
    set +f
}

# Wait until network interface $1 exists (up to ${2:-50} tenths of a second).
vio_wait_iface() {
    local i=0
    while [ ! -e "/sys/class/net/$1" ]; do
        i=$((i + 1))
        [ "$i" -gt "${2:-50}" ] && return 1
        sleep 0.1
    done
}

# Load /lib/vio/modules.list in order with insmod.
vio_load_modules() {
    local m err
    [ -f /lib/vio/modules.list ] || return 0
    while read -r m; do
        [ -n "$m" ] || continue
        [ -d "/sys/module/$m" ] && continue
        if ! err=$(insmod "/lib/modules/$m.ko" 2>&1); then
            echo "insmod $m: $err"
            return 1
        fi
    done < /lib/vio/modules.list
}

# Configure ${VIO_IF:-eth0} from vio.ip (ADDR/PREFIX or 'dhcp'), vio.mac,
# vio.mtu, vio.gw. Does nothing without vio.ip.
vio_net_setup() {
    local ifc=${VIO_IF:-eth0}
    ip link set lo up
    [ -n "${VIO_IP:-}" ] || return 0
    vio_wait_iface "$ifc" || { echo "no interface $ifc (virtio_net not bound?)"; return 1; }
    [ -z "${VIO_MAC:-}" ] || ip link set dev "$ifc" address "$VIO_MAC" || return 1
    [ -z "${VIO_MTU:-}" ] || ip link set dev "$ifc" mtu "$VIO_MTU" || return 1
    ip link set dev "$ifc" up || { echo "ip link set $ifc up failed"; return 1; }
    if [ "$VIO_IP" = dhcp ]; then
        udhcpc -i "$ifc" -n -q -t 5 -T 2 -s /lib/vio/udhcpc.script >/dev/null 2>&1 ||
            { echo "udhcpc on $ifc got no lease"; return 1; }
    else
        ip addr add "$VIO_IP" dev "$ifc" || { echo "ip addr add $VIO_IP dev $ifc failed"; return 1; }
    fi
    [ -z "${VIO_GW:-}" ] || ip route add default via "$VIO_GW" || { echo "default route via $VIO_GW failed"; return 1; }
}
EOF

cat > "$stage/lib/vio/udhcpc.script" <<'EOF'
#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        ;;
esac
exit 0
EOF

# --- default /init -------------------------------------------------------------
cat > "$stage/init" <<'EOF'
#!/bin/sh
# libvirtio test guest /init (generated by tests/support/guest/mkinitramfs.sh)
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
. /lib/vio/lib.sh
vio_parse_cmdline

if ! err=$(vio_load_modules); then
    vio_result "FAIL module load: $err"
fi
if ! err=$(vio_net_setup 2>&1); then
    vio_result "FAIL network setup: $err"
fi

# vio.test=NAME or NAME1,NAME2,...: run each /tests/NAME in order, stop at
# the first failure.
tests=${VIO_TEST:-}
[ -n "$tests" ] || vio_result "FAIL no vio.test= given (tests: $(echo $(ls /tests)))"
for t in $(echo "$tests" | tr ',' ' '); do
    case "$t" in
        */*|.*) vio_result "FAIL bad test name '$t'" ;;
    esac
    [ -e "/tests/$t" ] || vio_result "FAIL unknown test '$t' (tests: $(echo $(ls /tests)))"
done
for t in $(echo "$tests" | tr ',' ' '); do
    vio_log "running test $t (guest uptime $(cut -d' ' -f1 /proc/uptime) s)"
    rm -f "$VIO_REASON_FILE"
    if [ -x "/tests/$t" ]; then
        "/tests/$t"
    else
        sh "/tests/$t"
    fi
    rc=$?
    [ "$rc" -eq 0 ] && continue
    if [ -s "$VIO_REASON_FILE" ]; then
        vio_result "FAIL $(head -n 1 "$VIO_REASON_FILE")"
    else
        vio_result "FAIL test $t exited with status $rc"
    fi
done
vio_result PASS
EOF

# --- built-in tests -------------------------------------------------------------
cat > "$stage/tests/ping" <<'EOF'
#!/bin/sh
# ping vio.peer (vio.count times, default 3); pass when at least vio.ping_min
# replies (default 1) came back.
. /lib/vio/lib.sh
[ -n "${VIO_PEER:-}" ] || vio_fail "ping: vio.peer= not set"
count=${VIO_COUNT:-3}
min=${VIO_PING_MIN:-1}
out=$(ping -c "$count" -w "${VIO_PING_DEADLINE:-$((count * 2 + 8))}" "$VIO_PEER" 2>&1)
echo "$out"
got=$(echo "$out" | sed -n 's/.* \([0-9][0-9]*\) packets received.*/\1/p')
[ "${got:-0}" -ge "$min" ] || vio_fail "ping $VIO_PEER: ${got:-0}/$count replies (need $min)"
vio_log "ping $VIO_PEER: $got/$count replies"
EOF

cat > "$stage/tests/link" <<'EOF'
#!/bin/sh
# The interface exists, is bound to the virtio_net driver, is up with carrier
# and carries the vio.ip address.
. /lib/vio/lib.sh
ifc=${VIO_IF:-eth0}
[ -e "/sys/class/net/$ifc" ] || vio_fail "no interface $ifc"
drv=$(basename "$(readlink "/sys/class/net/$ifc/device/driver" 2>/dev/null)" 2>/dev/null)
case "$(readlink "/sys/class/net/$ifc/device/driver" 2>/dev/null)" in
    */virtio_net) ;;
    *) vio_fail "$ifc driver is '$drv', not virtio_net" ;;
esac
[ "$(cat "/sys/class/net/$ifc/carrier" 2>/dev/null)" = 1 ] || vio_fail "$ifc has no carrier"
ip -4 addr show dev "$ifc"
if [ -n "${VIO_IP:-}" ] && [ "$VIO_IP" != dhcp ]; then
    ip -4 addr show dev "$ifc" | grep -q "inet ${VIO_IP%/*}/" || vio_fail "$ifc lacks address $VIO_IP"
fi
vio_log "$ifc: driver virtio_net, carrier 1, $(cat "/sys/class/net/$ifc/address")"
EOF

cat > "$stage/tests/rxcount" <<'EOF'
#!/bin/sh
# For echo/loopback link partners that do not answer ping: send vio.count
# (default 3) pings to vio.peer (default 10.0.0.1), ignore the replies, and
# pass when the interface received at least vio.rx_min (default 1) frames.
. /lib/vio/lib.sh
ifc=${VIO_IF:-eth0}
[ -e "/sys/class/net/$ifc" ] || vio_fail "no interface $ifc"
before=$(cat "/sys/class/net/$ifc/statistics/rx_packets")
ping -c "${VIO_COUNT:-3}" -w "$(( ${VIO_COUNT:-3} + 3 ))" "${VIO_PEER:-10.0.0.1}" >/dev/null 2>&1
after=$(cat "/sys/class/net/$ifc/statistics/rx_packets")
got=$((after - before))
vio_log "$ifc: rx_packets $before -> $after, tx_packets $(cat "/sys/class/net/$ifc/statistics/tx_packets")"
[ "$got" -ge "${VIO_RX_MIN:-1}" ] || vio_fail "$ifc received $got frames (need ${VIO_RX_MIN:-1})"
EOF

cat > "$stage/tests/vhostnet" <<'EOF'
#!/bin/sh
# vhost_net is loaded and /dev/vhost-net (and /dev/net/tun) can be opened.
. /lib/vio/lib.sh
[ -d /sys/module/vhost_net ] || vio_fail "vhost_net module not loaded"
i=0
while [ ! -c /dev/vhost-net ] && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
[ -c /dev/vhost-net ] || vio_fail "/dev/vhost-net missing after loading vhost_net"
[ -c /dev/net/tun ] || vio_fail "/dev/net/tun missing after loading tun"
exec 3<>/dev/vhost-net || vio_fail "cannot open /dev/vhost-net"
exec 3>&-
ls -l /dev/vhost-net /dev/net/tun
EOF

cat > "$stage/tests/shell" <<'EOF'
#!/bin/sh
# Interactive shell on the console, for debugging (run-guest.sh --interactive).
. /lib/vio/lib.sh
vio_log "interactive shell; 'exit' powers off"
setsid cttyhack sh -l
EOF
chmod 0755 "$stage/init" "$stage"/tests/* "$stage/lib/vio/udhcpc.script"

# --- custom /init and extra files ---------------------------------------------------
if [[ -n "$init_script" ]]; then
    [[ -f "$init_script" ]] || die "--init '$init_script' not found"
    cp "$init_script" "$stage/init"
    chmod 0755 "$stage/init"
fi

for spec in "${adds[@]}"; do
    [[ "$spec" == *:* ]] || die "--add '$spec' is not SRC:DEST"
    src=${spec%:*}
    dest=${spec##*:}
    [[ -e "$src" ]] || die "--add: '$src' not found"
    [[ "$dest" == /* ]] || die "--add: destination '$dest' must be absolute"
    [[ "$dest" != *..* ]] || die "--add: destination '$dest' must not contain '..'"
    [[ "$dest" == */ ]] && dest="$dest$(basename "$src")"
    mkdir -p "$stage$(dirname "$dest")"
    rm -rf "${stage:?}$dest"
    cp -a "$src" "$stage$dest"
    if [[ -f "$src" ]] && command -v readelf >/dev/null 2>&1 &&
        readelf -l "$src" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        log "warning: $src is dynamically linked; the guest has no libc (build it with -static)"
    fi
done

# --- pack ------------------------------------------------------------------------------
outdir=$(dirname "$out")
mkdir -p "$outdir"
tmp_out=$(mktemp "$outdir/.$(basename "$out").XXXXXX")
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$tmp_out"
mv -f "$tmp_out" "$out"
log "wrote $out ($(du -k "$out" | cut -f1) KiB; modules: ${mod_order[*]:-none})"
