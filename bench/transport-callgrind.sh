#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per trapped register access of the device-side MMIO and PCI transports under
# callgrind: for each hot register (notify, ISR read, queue select) it runs
#   bench_transport OP ACCESSES   and   bench_transport OP 0
# and prints (Ir(ACCESSES) - Ir(0)) / ACCESSES as RESULT transport/instr_<op> lines.
#
# usage: bench/transport-callgrind.sh [BENCH_TRANSPORT] [ACCESSES]
#   BENCH_TRANSPORT  default ./bench/bench_transport (run from the build dir)
#   ACCESSES         default 20000
set -eu
bin=${1:-./bench/bench_transport}
n=${2:-20000}
if [ ! -x "$bin" ]; then
    echo "transport-callgrind.sh: $bin is not an executable" >&2
    exit 2
fi
case "$n" in '' | *[!0-9]* | 0)
    echo "transport-callgrind.sh: ACCESSES must be a positive count" >&2
    exit 2
    ;;
esac
command -v valgrind >/dev/null || {
    echo "transport-callgrind.sh: valgrind not found" >&2
    exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
ir() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$@" >"$tmp/stdout" \
        2>"$tmp/stderr" || {
        echo "transport-callgrind.sh: run failed: $bin $*" >&2
        cat "$tmp/stderr" >&2
        exit 1
    }
    sed -n 's/^summary: *\([0-9][0-9]*\).*/\1/p' "$tmp/out"
}
for op in mmio-notify mmio-isr mmio-qsel pci-notify pci-isr pci-qsel; do
    full=$(ir "$op" "$n")
    base=$(ir "$op" 0)
    awk -v f="$full" -v z="$base" -v n="$n" -v op="$op" \
        'BEGIN { gsub("-", "_", op); printf "RESULT transport/instr_%s %.1f instr\n", op, (f - z) / n }'
done
