#!/usr/bin/env bash
# vhost_net_guest.sh LIBVIRTIO_A — the kernel vhost frontend (vio_vhost_kernel_open) against
# the real Linux vhost_net + tun, inside a QEMU TCG guest (the build machines have no
# /dev/vhost-net; a guest booted from Debian's kernel with tun and vhost_net loaded does).
#
# Builds tests/integration/vhost_net_guest_tool.c statically against LIBVIRTIO_A (the static
# libvirtio), puts it into the guest's initramfs as /tests/vkfe (tests/support/guest), boots
# the guest and prints the program's PASS / FAIL / INFO lines. The program (see its header)
# drives vhost-net's two rings from our driver-side queues through a tap: the guest kernel's
# ARP and ICMP echo replies are verified byte by byte, the tap counters against the frames on
# the rings, GET_VRING_BASE after stop, then bad memory tables and rings are refused by the
# kernel and reported with the ioctl's name.
#
# Hook for more programs in the same guest (e.g. vio-pktgen --vhost-net, built statically):
#   VIO_VHOST_NET_GUEST_EXTRA="NAME=FILE ..."  each FILE becomes /tests/NAME and runs after
#                                              vkfe (a failing one fails the test)
#   VIO_VHOST_NET_GUEST_ADD="SRC:DEST ..."     more files for the image (mkinitramfs --add)
#   VIO_VHOST_NET_GUEST_VIO="KEY=VALUE ..."    more vio.KEY=VALUE kernel parameters (the guest's
#                                              tests see them as VIO_KEY in their environment)
#   VIO_VHOST_NET_GUEST_CONSOLE=PATH           copy the guest's console (escapes and CRs removed)
#                                              there, e.g. to parse a program's JSON summary
#   VIO_VHOST_NET_GUEST_KEEP=1                 keep the work directory (log, image) on success
# The extra programs' output is printed with an "extra:" prefix.
# Exit: 0 pass, 1 fail, 77 skip (no QEMU, no Debian kernel, no static busybox, no static libc).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest=$here/../support/guest
inc=$here/../../include
lib=${1:?usage: vhost_net_guest.sh LIBVIRTIO_A}
name=vhost_net_guest

log() { printf '%s: %s\n' "$name" "$*" >&2; }
skip() { printf '%s: SKIP: %s\n' "$name" "$*" >&2; exit 77; }
failed=0
fail() { printf '%s: FAIL: %s\n' "$name" "$*" >&2; failed=1; exit 1; }

[[ -f $lib ]] || fail "no static library at $lib"
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 not installed (qemu-system-x86)"
bb=${VIO_BUSYBOX:-/bin/busybox}
[[ -x $bb ]] || skip "no static busybox at $bb (busybox-static)"
command -v cpio >/dev/null 2>&1 || skip "cpio not installed"
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || skip "no C compiler ($cc) for the guest program"
fk=$("$guest/fetch-kernel.sh") || skip "fetch-kernel.sh could not provide Debian's kernel"
eval "$fk"
export VIO_VMLINUX VIO_MODULES

dir=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
cleanup() {
    if [[ $failed -eq 0 && ${VIO_VHOST_NET_GUEST_KEEP:-0} != 1 ]]; then
        rm -rf "$dir"
    else
        log "work directory kept: $dir"
    fi
}
trap cleanup EXIT
trap 'failed=1; exit 130' INT
trap 'failed=1; exit 143' TERM

# --- the static guest program ------------------------------------------------------------
if ! "$cc" -static -O2 -std=c11 -Wall -I"$inc" -o "$dir/vkfe" "$here/vhost_net_guest_tool.c" \
        "$lib" -lpthread 2>"$dir/cc.err"; then
    if grep -q 'cannot find -lc\|cannot find -lpthread' "$dir/cc.err"; then
        skip "no static C library ($(head -n 1 "$dir/cc.err")); install libc6-dev"
    fi
    if ! grep -q '__asan\|__ubsan\|__tsan' "$dir/cc.err"; then
        cat "$dir/cc.err" >&2
        fail "cannot build the guest program"
    fi
    # A sanitizer build's library cannot be linked statically: build the library's sources
    # into the program without the sanitizers instead (same code, plain flags).
    log "the library was built with sanitizers: compiling its sources into the guest program"
    srcs=()
    for d in core transport device backend; do srcs+=("$here/../../src/$d"/*.c); done
    "$cc" -static -O2 -std=c11 -D_GNU_SOURCE -I"$inc" -I"$here/../../src" -o "$dir/vkfe" \
        "$here/vhost_net_guest_tool.c" "${srcs[@]}" -lpthread 2>"$dir/cc.err" ||
        { cat "$dir/cc.err" >&2; fail "cannot build the guest program from the library's sources"; }
fi

# --- image: the default harness + vkfe (+ the extra programs) --------------------------
tests=vkfe
mk=(--test "vkfe=$dir/vkfe")
for e in ${VIO_VHOST_NET_GUEST_EXTRA:-}; do
    [[ $e == *=* && -f ${e#*=} ]] || fail "VIO_VHOST_NET_GUEST_EXTRA: '$e' is not NAME=FILE"
    mk+=(--test "$e")
    tests+=",${e%%=*}"
done
for a in ${VIO_VHOST_NET_GUEST_ADD:-}; do mk+=(--add "$a"); done
vio=()
for kv in ${VIO_VHOST_NET_GUEST_VIO:-}; do vio+=(--vio "$kv"); done
"$guest/mkinitramfs.sh" "$dir/initrd.cpio.gz" --busybox "$bb" "${mk[@]}" 2>"$dir/mkinitramfs.err" ||
    { cat "$dir/mkinitramfs.err" >&2; fail "mkinitramfs.sh failed"; }

# --- the guest ---------------------------------------------------------------------------------
rc=0
"$guest/run-guest.sh" --kernel "$VIO_VMLINUX" --initrd "$dir/initrd.cpio.gz" \
    --timeout "${VIO_VHOST_NET_GUEST_TIMEOUT:-240}" --log "$dir/guest.log" --test "$tests" \
    "${vio[@]}" >"$dir/run-guest.out" 2>&1 &
qpid=$!
wait "$qpid" || rc=$?
[[ $rc -ne 77 ]] || skip "run-guest.sh: QEMU or the kernel is missing"

# the console without terminal escapes and CRs (a file: grep -q on a pipe trips pipefail)
sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$dir/guest.log" >"$dir/console.txt" 2>/dev/null || true
console() { cat "$dir/console.txt"; }
console | grep -a -E '^(PASS|FAIL|INFO): ' | sed "s/^/$name: guest: /" >&2 || true
# the extra programs' whole output (e.g. vio-pktgen's summary), and the console for a caller
console | awk '/^vio-guest: running test / { on = ($4 != "vkfe") } /^VIO-GUEST-RESULT: / { on = 0 }
               on' | sed "s/^/$name: extra: /" >&2 || true
[[ -z ${VIO_VHOST_NET_GUEST_CONSOLE:-} ]] || cp "$dir/console.txt" "$VIO_VHOST_NET_GUEST_CONSOLE"
npass=$(console | grep -a -c '^PASS: ' || true)
nfail=$(console | grep -a -c '^FAIL: ' || true)
if [[ $rc -ne 0 ]]; then
    cat "$dir/run-guest.out" >&2
    console | grep -a '  libvirtio ' | tail -n 20 >&2 || true
    fail "guest run failed (run-guest status $rc, $npass PASS / $nfail FAIL lines)"
fi
[[ $nfail -eq 0 ]] || fail "$nfail FAIL line(s) in the guest"
# every check of the program printed its line (a program that stopped early has fewer)
want=30
[[ $npass -ge $want ]] || fail "only $npass PASS lines from the guest (want >= $want)"
grep -a -q '^vhost_net_guest_tool: all passed' "$dir/console.txt" || fail "the guest program did not finish"
log "PASS: vhost-net in the guest driven by the kernel frontend ($npass checks)"
