#!/usr/bin/env bash
# Run the whole test suite: configure a fresh build tree, build everything, run CTest
# (unit tests, labelled "unit", and integration tests, labelled "integration").
#
# Usage: scripts/test.sh [-B build-dir] [-DNAME=VALUE ...] [ctest arguments ...]
#   -B DIR        build tree (default: build/ at the top of the repository)
#   -D...         passed to cmake at configure time (e.g. -DVIO_WERROR=ON)
#   anything else is passed to ctest (e.g. -L unit, -LE integration, -R check_status)
# Environment: CC (compiler for the fresh configure), CMAKE_ARGS (extra configure arguments,
# split on spaces), JOBS (parallel build jobs, default: number of CPUs), CTEST_PARALLEL_LEVEL.
#
# Exits non-zero when configuring, building or any test fails (or when no test ran).
# Integration tests need root and the packages from scripts/deps.sh; each one skips
# (CTest "Not Run"/skipped) with a reason when its peer cannot run on this machine.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build
cmake_args=()
ctest_args=()

while [ $# -gt 0 ]; do
    case $1 in
    -B)
        [ $# -ge 2 ] || { echo "test.sh: -B needs a directory" >&2; exit 2; }
        build=$2
        shift 2
        ;;
    -B?*)
        build=${1#-B}
        shift
        ;;
    -D?*)
        cmake_args+=("$1")
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        ctest_args+=("$1")
        shift
        ;;
    esac
done
if [ -n "${CMAKE_ARGS:-}" ]; then
    read -r -a extra <<<"$CMAKE_ARGS"
    cmake_args+=("${extra[@]}")
fi
case $build in /*) ;; *) build=$PWD/$build ;; esac

# On a fresh machine (nothing installed yet) fetch the dependencies first.
if ! command -v cmake >/dev/null 2>&1 || ! pkg-config --exists check 2>/dev/null ||
    ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v dpdk-testpmd >/dev/null 2>&1; then
    echo "== dependencies missing: running scripts/deps.sh"
    "$root/scripts/deps.sh"
fi
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# A fresh configuration: forget any cached options and compiler choice from an earlier run
# (object files are kept, so an unchanged tree rebuilds quickly).
mkdir -p "$build"
rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"

echo "== configure: $build ${cmake_args[*]}"
cmake -S "$root" -B "$build" "${cmake_args[@]}"
echo "== build (-j$jobs)"
cmake --build "$build" --parallel "$jobs"
echo "== test: ctest ${ctest_args[*]}"
cd "$build"
ctest --output-on-failure --no-tests=error "${ctest_args[@]}"
