#!/usr/bin/env bash
# Build the documentation with Doxygen (docs/Doxyfile): the API reference of include/virtio,
# README.md as the main page, every docs/*.md as a guide page, docs/examples.md with snippets
# cut from the compiled and tested examples.
# Any warning is an error: an undocumented public symbol, a @snippet marker missing from its
# example, fails the run. Before Doxygen, two checks of the guides themselves:
#   - the main page (README.md) links every docs/*.md guide;
#   - every relative Markdown link in README.md and docs/*.md names a file that exists.
# Usage: scripts/docs.sh [output-dir]    (default: build/docs; HTML lands in <output-dir>/html)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/build/docs}
case $out in /*) ;; *) out=$PWD/$out ;; esac
mkdir -p "$out"
cd "$root"

bad=0
for guide in docs/*.md; do
    if ! grep -qF "]($guide)" README.md; then
        echo "docs: README.md (the main page) does not link $guide" >&2
        bad=1
    fi
done
for page in README.md docs/*.md; do
    dir=$(dirname "$page")
    # [text](target) and [text](target#anchor); absolute URLs and pure anchors are skipped
    while IFS= read -r target; do
        case $target in http://* | https://* | mailto:* | '#'*) continue ;; esac
        file=${target%%#*}
        if [ ! -e "$dir/$file" ]; then
            echo "docs: $page links $target, which does not exist" >&2
            bad=1
        fi
    done < <(grep -o '\]([^) ]*)' "$page" | sed 's/^](//; s/)$//')
done
[ $bad -eq 0 ] || exit 1

VIO_DOXYGEN_OUTPUT=$out doxygen docs/Doxyfile
echo "docs: $out/html/index.html"
