#!/usr/bin/env bash
# Build the API documentation of include/virtio with Doxygen (docs/Doxyfile).
# Any warning is an error: an undocumented public symbol fails the run.
# Usage: scripts/docs.sh [output-dir]    (default: build/docs; HTML lands in <output-dir>/html)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/build/docs}
case $out in /*) ;; *) out=$PWD/$out ;; esac
mkdir -p "$out"
cd "$root"
VIO_DOXYGEN_OUTPUT=$out doxygen docs/Doxyfile
echo "docs: $out/html/index.html"
