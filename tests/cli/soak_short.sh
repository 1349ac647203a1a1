#!/bin/sh
# soak_short.sh - the soak of bench/soak.py, short enough for every CI run: the loader streams a
# small JPEG dataset without end (train transform, 2 threads) for 40 s while its RSS and open
# descriptors are sampled each second; fails when RSS grows more than 10% after the warm-up (glibc's
# per-thread arenas move RSS by a few percent on a loaded machine; a leak of a kilobyte per image
# would be 40%) or the descriptor count moves. The 30-minute runs are in docs/performance.md.
#   soak_short.sh PYTHON SOAK_PY BUILD_ROOT SP_GEN_IMAGEFOLDER
set -eu
PY=$1
SOAK=$2
BUILD=$3
GEN_IMG=$4
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sp-soak.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$GEN_IMG" --out "$WORK/images" --count 96 --classes 4 --seed 9 >/dev/null
"$BUILD/tools/shardpack" pack "$WORK/images" -o "$WORK/img.sp" --block-size 256K --quiet >/dev/null
# Under ThreadSanitizer (its test setup sets TSAN_OPTIONS) the RSS is mostly its shadow memory and
# per-thread history, which keep growing as the threads touch new addresses: 10.03% in one CI run
# where the plain build grew 2.27% and ASan 0.70%. There the bound is 30%, which the leak above
# still crosses; the plain and ASan runs keep 10%.
GROWTH=0.10
if [ -n "${TSAN_OPTIONS:-}" ]; then
    GROWTH=0.30
fi
exec "$PY" "$SOAK" "$WORK/img.sp" --build "$BUILD" --seconds 40 --warmup 12 --max-growth "$GROWTH" --threads 2 \
    --batch-size 16 --image-size 96 --transform train
