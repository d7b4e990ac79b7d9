#!/usr/bin/env bash
# Instructions per call from callgrind: bench/count.mjs at N and 3N, (I(3N) - I(N)) / 2N.
# Usage: bash bench/count.sh reserve|many [N]   (from bindings/node; the addon must be built)
# Writes the callgrind files to /tmp/node2-cg-<tag><mode>-<n>.out (TAG=... to keep runs apart)
# for callgrind_annotate or bench/cgdiff.py. NODE_FLAGS=--single-threaded (no concurrent JIT or GC
# threads) makes the totals steadier from run to run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-reserve}
n=${2:-$([ "$mode" = many ] && echo 20000 || echo 19200)}
total() {
  local out=/tmp/node2-cg-${TAG:-}$mode-$1.out
  valgrind --tool=callgrind --callgrind-out-file="$out" node ${NODE_FLAGS:-} bench/count.mjs "$mode" "$1" \
    > /dev/null 2>&1
  # The "summary:" line of the main thread's file; add any per-thread files too.
  cat "$out"* | awk '/^summary:/ { s += $2 } END { printf "%.0f\n", s }'
}
a=$(total "$n")
b=$(total $((3 * n)))
echo "$mode: N=$n I(N)=$a I(3N)=$b per call: $(( (b - a) / (2 * n) ))"
