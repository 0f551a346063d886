#!/usr/bin/env bash
# Install libvirtio into a staging prefix and build programs against it exactly as a user
# would: only `cc prog.c $(pkg-config --cflags --libs libvirtio)`, no access to the source tree.
# Each program is then run with LD_LIBRARY_PATH pointing at the staged library.
#
# Usage: scripts/install-test.sh [-B build-dir] [-p prefix] prog.c [prog.c ...]
#   default build dir build-install/, default prefix: a fresh temporary directory
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build-install
prefix=
while getopts B:p: opt; do
    case $opt in
    B) build=$OPTARG ;;
    p) prefix=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    echo "usage: $0 [-B build-dir] [-p prefix] prog.c..." >&2
    exit 2
fi
case $build in /*) ;; *) build=$PWD/$build ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -n "$prefix" ] || prefix=$work/stage
case $prefix in /*) ;; *) prefix=$PWD/$prefix ;; esac

# The prefix is baked into libvirtio.pc at configure time, so configure with it.
rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
cmake -S "$root" -B "$build" -DCMAKE_INSTALL_PREFIX="$prefix" -DVIO_BUILD_TESTS=OFF \
    -DVIO_BUILD_BENCH=OFF -DVIO_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --parallel "${JOBS:-$(nproc 2>/dev/null || echo 2)}" >/dev/null
cmake --install "$build" >"$work/install.log"
echo "installed into $prefix:"
(cd "$prefix" && find . -type f -o -type l | sort | sed 's|^\./|    |')

pc=$(find "$prefix" -name libvirtio.pc -print -quit)
[ -n "$pc" ] || { echo "FAIL: no libvirtio.pc installed" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir libvirtio)
[ -e "$libdir/libvirtio.so" ] || { echo "FAIL: $libdir/libvirtio.so missing" >&2; exit 1; }

CC=${CC:-cc}
for src in "$@"; do
    case $src in /*) ;; *) src=$PWD/$src ;; esac
    name=$(basename "$src" .c)
    # compile a copy outside the tree so nothing but the installed headers can be found
    mkdir -p "$work/$name"
    cp "$src" "$work/$name/$name.c"
    flags=$(pkg-config --cflags --libs libvirtio)
    echo "== $CC $name.c $flags"
    (cd "$work/$name" && $CC "$name.c" $flags -o "$name")
    deps=$(LD_LIBRARY_PATH=$libdir ldd "$work/$name/$name")
    if ! grep -qF "$libdir/libvirtio.so" <<<"$deps"; then
        echo "FAIL: $name is not linked against the staged $libdir/libvirtio.so" >&2
        echo "$deps" >&2
        exit 1
    fi
    echo "== run $name"
    (cd "$work/$name" && LD_LIBRARY_PATH=$libdir ./"$name" </dev/null)
    echo "ok   $name"
done
