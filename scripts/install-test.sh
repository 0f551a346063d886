#!/usr/bin/env bash
# Install libvirtio into a staging prefix and build programs against it exactly as a user
# would: only `cc prog.c $(pkg-config --cflags --libs libvirtio)`, no access to the source tree.
# Each program is then run with LD_LIBRARY_PATH pointing at the staged library.
#
# Also proved on the way:
#   - the default configuration builds without the Check test framework: configure runs with
#     pkg-config unable to see check.pc, must say that the tests are off, and the library, the
#     examples and the install must still build;
#   - installed programs start without LD_LIBRARY_PATH (their run path finds the staged
#     libvirtio): vio-vhost-user-net --help, vio-embed-net verifying frames, and
#     libvirtio-ev resolving libvirtio next to itself;
#   - the installed source of the embedding example (share/doc/libvirtio/examples/embed-net)
#     builds against the staged library with pkg-config and runs.
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

# The prefix is baked into libvirtio.pc at configure time, so configure with it. The default
# options, as a user's `cmake -S . -B build`, but with Check out of pkg-config's sight (an
# empty PKG_CONFIG_LIBDIR): the configure must succeed and turn the tests off.
rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles" "$build/tests"
mkdir -p "$work/no-pkgconfig"
if ! PKG_CONFIG_LIBDIR=$work/no-pkgconfig PKG_CONFIG_PATH= \
    cmake -S "$root" -B "$build" -DCMAKE_INSTALL_PREFIX="$prefix" >"$work/configure.log" 2>&1; then
    cat "$work/configure.log" >&2
    echo "FAIL: configure without Check failed" >&2
    exit 1
fi
if ! grep -q 'tests are off' "$work/configure.log"; then
    cat "$work/configure.log" >&2
    echo "FAIL: configure without Check did not say that the tests are off" >&2
    exit 1
fi
echo "ok   configure without Check: $(grep 'tests are off' "$work/configure.log" | sed 's/^-- //')"
cmake --build "$build" --parallel "${JOBS:-$(nproc 2>/dev/null || echo 2)}" >"$work/build.log" 2>&1 ||
    { tail -n 50 "$work/build.log" >&2; echo "FAIL: build without Check" >&2; exit 1; }
if [ -e "$build/tests" ]; then
    echo "FAIL: the tests were configured although Check was not found" >&2
    exit 1
fi
cmake --install "$build" >"$work/install.log"
echo "installed into $prefix:"
(cd "$prefix" && find . -type f -o -type l | sort | sed 's|^\./|    |')

# Installed programs run as they are: no LD_LIBRARY_PATH, the run path finds the library.
bindir=$prefix/bin
for prog in vio-vhost-user-net vio-embed-net; do
    [ -x "$bindir/$prog" ] || { echo "FAIL: $bindir/$prog not installed" >&2; exit 1; }
done
staged_lib=$(dirname "$(find "$prefix" -name 'libvirtio.so.0' -print -quit)")
[ -n "$staged_lib" ] && [ "$staged_lib" != . ] || { echo "FAIL: no libvirtio.so.0 installed" >&2; exit 1; }
# where the dynamic linker finds libvirtio.so.0 for an installed binary or library
resolved_lib() {
    env -u LD_LIBRARY_PATH ldd "$1" | awk '$1 == "libvirtio.so.0" { print $3 }'
}
for f in "$bindir/vio-vhost-user-net" "$bindir/vio-embed-net" \
    $(find "$prefix" -name 'libvirtio-ev.so.0' -print -quit); do
    got=$(resolved_lib "$f")
    if [ "$got" != "$staged_lib/libvirtio.so.0" ] &&
        [ "$(readlink -f "$got")" != "$(readlink -f "$staged_lib/libvirtio.so.0")" ]; then
        echo "FAIL: $f finds libvirtio.so.0 at '${got:-nothing}', not in $staged_lib" >&2
        readelf -d "$f" | grep -E 'RPATH|RUNPATH' >&2 || echo "  (no run path)" >&2
        exit 1
    fi
    echo "ok   $(basename "$f") finds $got by its run path ($(readelf -d "$f" |
        sed -n 's/.*(\(RPATH\|RUNPATH\)).*\[\(.*\)\]/\2/p'))"
done
if ! out=$(env -u LD_LIBRARY_PATH "$bindir/vio-vhost-user-net" --help 2>&1) ||
    ! grep -q 'vio-vhost-user-net' <<<"$out"; then
    echo "$out" >&2
    echo "FAIL: installed vio-vhost-user-net --help did not start" >&2
    exit 1
fi
echo "ok   installed vio-vhost-user-net --help starts without LD_LIBRARY_PATH"
if ! out=$(env -u LD_LIBRARY_PATH "$bindir/vio-embed-net" --frames 300 2>&1) ||
    ! grep -q '300 of 300 verified intact' <<<"$out"; then
    echo "$out" >&2
    echo "FAIL: installed vio-embed-net --frames 300" >&2
    exit 1
fi
echo "ok   installed vio-embed-net: $(grep 'verified intact' <<<"$out" | sed 's/^vio-embed-net: //')"

# The installed source of the embedding example is among the programs built below.
embed_src=$(find "$prefix" -path '*/share/doc/libvirtio/examples/embed-net/main.c' -print -quit)
[ -n "$embed_src" ] || { echo "FAIL: examples/embed-net/main.c not installed under share/doc" >&2; exit 1; }
mkdir -p "$work/src/embed-net"
cp "$embed_src" "$work/src/embed-net/embed-net.c"
set -- "$@" "$work/src/embed-net/embed-net.c"

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
