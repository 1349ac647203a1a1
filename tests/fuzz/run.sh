#!/bin/sh
# run.sh - builds the libFuzzer targets with clang and fuzzes each for a while.
#
#   tests/fuzz/run.sh [SECONDS] [BUILD_DIR]      (defaults: 180 s, build-fuzz)
#
# Each target starts from a scratch copy of its checked-in corpus (tests/fuzz/corpus/<target>), so
# new inputs do not pile up in the source tree; crashes land in BUILD_DIR/fuzz-<target>/ as
# crash-*, leak-*, oom-* or timeout-*. Add any such file to the corpus once it is fixed, so that
# `meson test --suite fuzz` replays it from then on. Targets run one after the other; set JOBS to
# run that many targets at once, TARGETS to a list of some of them (e.g. TARGETS="imp_tar imp_npy").
set -eu
secs=${1:-180}
build=${2:-build-fuzz}
jobs=${JOBS:-1}
src=$(cd "$(dirname "$0")/../.." && pwd)
cd "$src"

if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dfuzzing=true -Dtools=false -Dbuildtype=debugoptimized -Db_lundef=false
fi
ninja -C "$build" tests/fuzz/fuzz_shard tests/fuzz/fuzz_manifest tests/fuzz/fuzz_jpeg tests/fuzz/fuzz_png tests/fuzz/fuzz_webp \
    tests/fuzz/fuzz_imp_llmc tests/fuzz/fuzz_imp_tar tests/fuzz/fuzz_imp_npy tests/fuzz/fuzz_imp_tsv

run_one() {
    t=$1
    work="$build/fuzz-$t"
    mkdir -p "$work/corpus"
    cp -n tests/fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
    echo "fuzzing $t for $secs s (log: $work/log.txt)"
    # -rss_limit_mb bounds memory: the shard target caps blocks at 4 MiB (max_block_bytes); the
    # importer targets pack with 4 KiB blocks and print nothing (the CLI's messages are captured).
    ( cd "$work" && "../tests/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=131072 -rss_limit_mb=1024 \
        -timeout=20 -print_final_stats=1 corpus > log.txt 2>&1 ) || echo "fuzz_$t: FOUND A PROBLEM, see $work"
    tail -n 12 "$work/log.txt"
}

n=0
for t in ${TARGETS:-shard manifest jpeg png webp imp_llmc imp_tar imp_npy imp_tsv}; do
    run_one "$t" &
    n=$((n + 1))
    if [ "$n" -ge "$jobs" ]; then
        wait
        n=0
    fi
done
wait
ls "$build"/fuzz-*/crash-* "$build"/fuzz-*/leak-* "$build"/fuzz-*/oom-* "$build"/fuzz-*/timeout-* 2>/dev/null && exit 1
echo "no crashes"
