#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per buffer of bench_ring's single-thread mode under callgrind:
# libvirtio's engine ("ours") against the bare unvalidated reference ring.
#
# usage: bench/ring-callgrind.sh [-a] [BENCH_RING] [BUFFERS]
#   -a          also print the top functions (callgrind_annotate) of ours, batch 32, event-idx on
#   BENCH_RING  the bench_ring binary (default: ./bench/bench_ring, i.e. run from the build dir)
#   BUFFERS     buffers per measured run (default 100000)
#
# For every case (batch 32/1, event-idx on/off) and implementation it runs
#   bench_ring --single-thread --only IMPL --batch B --evidx E --buffers BUFFERS
# and the same with --buffers 0 (setup only), and prints
#   (Ir(BUFFERS) - Ir(0)) / BUFFERS
# Both counts include the harness (free-buffer stack, writing and reading the
# 64-byte payload), which is the same code for both implementations.
# The headline lines RESULT ring/instr_per_buf_ours|bare are batch 32, event-idx on.
set -eu

annotate=0
if [ "${1:-}" = "-a" ]; then
    annotate=1
    shift
fi
case "${1:-}" in
-h | --help)
    sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
bin=${1:-./bench/bench_ring}
n=${2:-100000}
if [ ! -x "$bin" ]; then
    echo "ring-callgrind.sh: $bin is not an executable (give the bench_ring path)" >&2
    exit 2
fi
case "$n" in
'' | *[!0-9]*)
    echo "ring-callgrind.sh: BUFFERS must be a positive count, got '$n'" >&2
    exit 2
    ;;
esac
if [ "$n" -eq 0 ]; then
    echo "ring-callgrind.sh: BUFFERS must be a positive count, got '$n'" >&2
    exit 2
fi
command -v valgrind >/dev/null || {
    echo "ring-callgrind.sh: valgrind not found" >&2
    exit 2
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ir OUTFILE ARGS...: total Ir of one single-thread run
ir() {
    out=$1
    shift
    if ! valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --single-thread "$@" \
        >"$tmp/stdout" 2>"$tmp/stderr"; then
        echo "ring-callgrind.sh: run failed: $bin --single-thread $*" >&2
        cat "$tmp/stderr" >&2
        exit 1
    fi
    sed -n 's/^summary: *\([0-9][0-9]*\).*/\1/p' "$out"
}

head_ours=
head_bare=
for b in 32 1; do
    for e in on off; do
        case $e in on) cn=b${b}_evidx ;; *) cn=b${b}_noevidx ;; esac
        ours=
        for impl in ours bare; do
            full=$(ir "$tmp/$impl.$cn.out" --only "$impl" --batch "$b" --evidx "$e" --buffers "$n")
            base=$(ir "$tmp/$impl.$cn.0.out" --only "$impl" --batch "$b" --evidx "$e" --buffers 0)
            per=$(awk -v f="$full" -v z="$base" -v n="$n" 'BEGIN { printf "%.1f", (f - z) / n }')
            echo "RESULT ring/instr_per_buf_${impl}_$cn $per instr"
            if [ "$impl" = ours ]; then
                ours=$per
            else
                # bare/ours: the throughput ratio an instruction-bound run would show
                awk -v o="$ours" -v r="$per" -v c="$cn" \
                    'BEGIN { printf "RESULT ring/instr_ratio_%s %.2f ratio\n", c, (o > 0 ? r / o : 0) }'
            fi
            if [ "$cn" = b32_evidx ]; then
                if [ "$impl" = ours ]; then head_ours=$per; else head_bare=$per; fi
            fi
        done
    done
done
echo "RESULT ring/instr_per_buf_ours $head_ours instr"
echo "RESULT ring/instr_per_buf_bare $head_bare instr"

if [ "$annotate" -eq 1 ]; then
    for cn in b32_evidx b1_evidx; do
        echo
        echo "top functions (self Ir, $n buffers + setup), ours $cn:"
        callgrind_annotate --inclusive=no --auto=no --threshold=100 "$tmp/ours.$cn.out" | grep -E '^ *[0-9][0-9,]* ' |
            grep -v 'PROGRAM TOTALS' | head -12
    done
fi
