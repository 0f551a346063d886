#!/usr/bin/env bash
# The README's first command: install dependencies, build, run the demo.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ "${VIO_SKIP_DEPS:-0}" != 1 ]; then
  "$here/scripts/deps.sh"
fi
build=${VIO_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target vio-ring-demo
echo
"$build/examples/vio-ring-demo" "$@"
