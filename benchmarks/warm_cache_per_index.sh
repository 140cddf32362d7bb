#!/usr/bin/env bash
# One `frugal run` process per index of one program of a grid: the compile cache off against a cache
# that another index of the program filled (its vmappable values differ, its programs are the same).
#
#   bash benchmarks/warm_cache_per_index.sh [GRID] [FIRST] [OTHERS...]
#   bash benchmarks/warm_cache_per_index.sh configs/merl/MERL_mc_medqn.json 1 2 3 10
#
# Prints the wall seconds of each run, then whether each index's CSVs are the same both ways.
set -euo pipefail
grid=${1:-configs/merl/MERL_mc_medqn.json}
first=${2:-1}
others=("${@:3}")
[ ${#others[@]} -gt 0 ] || others=(2 3 10)
out=$(mktemp -d /tmp/frugal-warm-cache.XXXX)
trap 'rm -rf "$out"' EXIT

seconds() {  # seconds of one command, which must succeed
  local began
  began=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  echo "$(date +%s.%N) - $began" | bc
}

echo "idx $first, fills the cache: $(FRUGAL_XLA_CACHE="$out/cache" seconds frugal run "$grid" --idx "$first" --logs "$out/first" --no-progress) s"
for idx in "${others[@]}"; do
  echo "idx $idx, cache off: $(FRUGAL_XLA_CACHE=off seconds frugal run "$grid" --idx "$idx" --logs "$out/off" --no-progress) s"
  echo "idx $idx, warm cache: $(FRUGAL_XLA_CACHE="$out/cache" seconds frugal run "$grid" --idx "$idx" --logs "$out/warm" --no-progress) s"
done
name=$(basename "$grid" .json)
for idx in "${others[@]}"; do
  for csv in result_Train.csv result_Test.csv metrics.csv; do
    cmp -s "$out/off/$name/$idx/$csv" "$out/warm/$name/$idx/$csv" && same=same || same=DIFFERENT
    echo "idx $idx $csv: $same"
  done
done
