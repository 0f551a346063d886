#!/usr/bin/env bash
# Every dynamic symbol a shared library exports must start with vio_ (STYLE.md "Shape of the API":
# symbols are hidden by default and exported with one macro).
# Usage: scripts/check-symbols.sh <libvirtio.so> [more .so ...]
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 <shared-library>..." >&2
    exit 2
fi
NM=${NM:-nm}
status=0
for lib in "$@"; do
    if [ ! -f "$lib" ]; then
        echo "check-symbols: $lib: no such file" >&2
        status=1
        continue
    fi
    # nm -D --defined-only: "<addr> <type> <name>[@@VERSION]". Drop version suffixes, and the
    # absolute (type A) symbols that only name a symbol-version node of a version script.
    syms=$("$NM" -D --defined-only "$lib" | awk '
        NF >= 3 {
            name = $3; ver = ""
            if (match(name, /@+/)) { ver = substr(name, RSTART + RLENGTH); name = substr(name, 1, RSTART - 1) }
            if (ver != "") node[ver] = 1
            type[NR] = $2; nm[NR] = name
        }
        END { for (i in nm) if (!(type[i] == "A" && nm[i] in node)) print nm[i] }' | sort -u)
    total=$(grep -c . <<<"$syms" || true)
    bad=$(grep -v '^vio_' <<<"$syms" | grep . || true)
    if [ -n "$bad" ]; then
        echo "FAIL $lib exports $(grep -c . <<<"$bad") symbol(s) without the vio_ prefix:"
        sed 's/^/    /' <<<"$bad"
        status=1
    elif [ "$total" -eq 0 ]; then
        echo "FAIL $lib exports no symbols at all"
        status=1
    else
        echo "ok   $lib: $total exported symbols, all vio_*"
    fi
done
exit $status
