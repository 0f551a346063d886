#!/usr/bin/env bash
# Public header hygiene (STYLE.md "Layering"):
#  - no include/virtio/*.h includes <linux/...> or <ev.h>;
#  - each header compiles on its own as C11 (gcc -std=c11 -pedantic) and as C++ (g++ -fsyntax-only).
# Usage: scripts/check-headers.sh [repo-root]   (exits non-zero and lists every problem)
set -euo pipefail

root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
inc=$root/include
CC=${CC:-cc}
CXX=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail=0
shopt -s nullglob
headers=("$inc"/virtio/*.h)
if [ ${#headers[@]} -eq 0 ]; then
    echo "check-headers: no headers under $inc/virtio" >&2
    exit 1
fi

for h in "${headers[@]}"; do
    name=virtio/$(basename "$h")
    before=$fail
    fail=0
    # forbidden includes, in any spelling: #include <linux/x.h>, # include "linux/x.h", <ev.h>
    # ("ev.h" in quotes is the sibling virtio/ev.h, which is fine)
    if bad=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*([<"]linux/[^>"]*[>"]|<ev\.h>)' "$h"); then
        echo "FAIL $name includes a forbidden header:"
        sed 's/^/    /' <<<"$bad"
        fail=1
    fi

    printf '#include <%s>\n' "$name" >"$tmp/t.c"
    if ! out=$($CC -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/t.c" 2>&1); then
        echo "FAIL $name does not compile alone as C11:"
        sed 's/^/    /' <<<"$out"
        fail=1
    fi
    # twice in a row: include guards work
    printf '#include <%s>\n#include <%s>\n' "$name" "$name" >"$tmp/t2.c"
    if ! out=$($CC -std=c11 -fsyntax-only -I"$inc" "$tmp/t2.c" 2>&1); then
        echo "FAIL $name cannot be included twice:"
        sed 's/^/    /' <<<"$out"
        fail=1
    fi

    printf '#include <%s>\n' "$name" >"$tmp/t.cpp"
    if ! out=$($CXX -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/t.cpp" 2>&1); then
        echo "FAIL $name does not compile alone as C++:"
        sed 's/^/    /' <<<"$out"
        fail=1
    fi
    if [ $fail -eq 0 ]; then echo "ok   $name"; fi
    if [ "$before" -ne 0 ]; then fail=1; fi
done

# all of them together, C and C++ (no clashing names between headers)
: >"$tmp/all.c"
for h in "${headers[@]}"; do printf '#include <virtio/%s>\n' "$(basename "$h")" >>"$tmp/all.c"; done
cp "$tmp/all.c" "$tmp/all.cpp"
if ! out=$($CC -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/all.c" 2>&1 &&
           $CXX -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/all.cpp" 2>&1); then
    echo "FAIL the public headers do not compile together:"
    sed 's/^/    /' <<<"$out"
    fail=1
fi

if [ $fail -ne 0 ]; then
    echo "check-headers: FAILED" >&2
    exit 1
fi
echo "check-headers: ${#headers[@]} headers OK"
