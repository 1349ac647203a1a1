#!/bin/sh
# image_resize_bench.sh - what pack-time resizing buys on a high-resolution set, in one run: COUNT
# photos of about 12 MP (sp-gen-imagefolder's JPEGs enlarged to 12 Mpixel by bench/image_convert.py,
# Pillow bicubic, JPEG quality 92) packed as they are and with --max-side SIDE (default 512), then each
# dataset through `shardpack bench --transform train --image-size 224` (uint8 NHWC, THREADS
# threads, one epoch after the bench's own limit run). Prints both datasets' sizes and images/s,
# and the ratios: size_ratio (resized / original bytes on disk) and speed_ratio (resized /
# original images/s).
#
# usage: bench/image_resize_bench.sh BUILD_DIR [--count N (default 200)] [--side S] [--threads T]
#                                    [--work DIR]
set -eu
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [--count N] [--side S] [--threads T] [--work DIR]" >&2; exit 2; }
BUILD=$1
shift
COUNT=200
SIDE=512
THREADS=$(nproc)
WORK=/tmp/shardpack-resize-bench
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
    case $1 in
    --count) COUNT=$2 ;;
    --side) SIDE=$2 ;;
    --threads) THREADS=$2 ;;
    --work) WORK=$2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
SP="$BUILD/tools/shardpack"
GEN="$BUILD/datasets/sp-gen-imagefolder"
mkdir -p "$WORK"
SMALL="$WORK/small-n$COUNT"
BIG="$WORK/big12mp-n$COUNT"
if [ ! -f "$BIG.complete" ]; then
    rm -rf "$SMALL" "$BIG"
    "$GEN" --out "$SMALL" --count "$COUNT" --classes 10 --seed 3
    "$PY" "$HERE/image_convert.py" "$SMALL" "$BIG" jpeg --megapixels 12
    touch "$BIG.complete"
fi
echo "image_resize_bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $COUNT photos in $BIG"
"$PY" - "$BIG" <<'PYEOF'
import os, sys
from PIL import Image
d = sys.argv[1]
sizes = [Image.open(os.path.join(d, c, n)).size for c in os.listdir(d) for n in os.listdir(os.path.join(d, c))]
mp = sum(w * h for w, h in sizes) / len(sizes) / 1e6
print("image_resize_bench: %d images, mean %.1f Mpixel (first %dx%d)" % (len(sizes), mp, sizes[0][0], sizes[0][1]))
PYEOF
run() { # name, extra pack options
    out="$WORK/$1.sp"
    t0=$(date +%s.%N)
    "$SP" pack "$BIG" -o "$out" --overwrite --strict --quiet $2
    t1=$(date +%s.%N)
    bytes=$(du -sb "$out" | cut -f1)
    find "$out" -type f -exec cat {} + >/dev/null
    "$SP" bench "$out" --transform train --image-size 224 --threads "$THREADS" --epochs 1 --json >"$WORK/$1.json"
    ips=$("$PY" -c "import json,sys; print('%.1f' % json.load(open(sys.argv[1]))['samples_per_s'])" "$WORK/$1.json")
    echo "$1: pack $(echo "$t1 - $t0" | bc) s, dataset $bytes bytes, $ips images/s (bench: $WORK/$1.json)"
    eval "${1}_bytes=$bytes ${1}_ips=$ips"
}
run original ""
run resized "--max-side $SIDE --quality 90"
"$PY" -c "print('size_ratio %.3f (resized / original bytes)' % ($resized_bytes / $original_bytes))"
"$PY" -c "print('speed_ratio %.2f (resized / original images/s)' % ($resized_ips / $original_ips))"
