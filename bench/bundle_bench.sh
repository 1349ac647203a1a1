#!/bin/sh
# Runs the loader benchmarks from a bundle of prebuilt binaries (BUNDLE/{shardpack,sp-gen-tokens,
# bench_first_batch} and BUNDLE/lib/*.so), on a machine without the build's dependencies installed:
# generated llm.c tokens and float32 tensors, packed, then `shardpack bench` at threads = cores and
# at a few lower counts. usage: bench/bundle_bench.sh BUNDLE [WORK] [TOKENS]
set -eu
B=$(cd "$1" && pwd)
W=${2:-/tmp/sp-bundle-bench}
TOKENS=${3:-536870912}
export LD_LIBRARY_PATH="$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$W"
CORES=$(nproc)
echo "machine: $CORES cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
free -g | head -2
"$B/sp-gen-tokens" --out "$W/tok.bin" --tokens "$TOKENS" --seed 3
"$B/shardpack" pack "$W/tok.bin" --seq-len 1024 -o "$W/tok.sp" --overwrite --quiet --json
for t in "$CORES" 8 4 1; do
    [ "$t" -le "$CORES" ] || continue
    for rep in 1 2 3; do
        out="$W/bench-t$t-r$rep.json"
        "$B/shardpack" bench "$W/tok.sp" --threads "$t" --batch-size 8 --token-dtype int32 --epochs 2 --json > "$out"
        [ -z "${OUT:-}" ] || cp "$out" "$OUT/"
        echo "threads=$t rep=$rep $(grep -o '"\(samples_per_s\|limit_ratio\|parallel_ratio\|single_thread_samples_per_s\|peak_rss_bytes\|direct_io\)":[^,]*' "$out" | tr '\n' ' ')"
    done
done
"$B/bench_first_batch" "$W/first-batch" 10000
