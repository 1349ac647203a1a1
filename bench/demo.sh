#!/bin/sh
# The main job, end to end, on generated data:
#  1. an ImageNet-like set of 2,000 JPEGs: pack it, inspect it, verify every block, draw a contact
#     sheet of training crops, and stream it through the loader decoding every JPEG with the train
#     transform to 224x224 (images/s, peak RSS, the limit ratio);
#  2. llm.c-style token files (20M tokens): pack them into 1024-token samples and stream them through
#     the loader with `shardpack bench`, which prints samples/s, MB/s, peak RSS against the memory
#     budget, stall time and the limit ratio.
# Each step also prints its wall time and peak RSS. usage: bench/demo.sh [BUILD_DIR] [WORK_DIR]
set -eu
BUILD=${1:-build}
WORK=${2:-/tmp/shardpack-demo}
HERE=$(dirname "$0")
SP="$BUILD/tools/shardpack"
mkdir -p "$WORK"
[ -d "$WORK/imagenet" ] ||
    "$HERE/measure.py" "$BUILD/datasets/sp-gen-imagefolder" --out "$WORK/imagenet" --count 2000 --seed 1
"$HERE/measure.py" "$SP" pack "$WORK/imagenet" -o "$WORK/imagenet.sp" --overwrite
"$HERE/measure.py" "$SP" inspect "$WORK/imagenet.sp"
"$HERE/measure.py" "$SP" verify "$WORK/imagenet.sp"
"$HERE/measure.py" "$SP" preview "$WORK/imagenet.sp" -o "$WORK/preview.jpg" --transform train
"$HERE/measure.py" "$SP" bench "$WORK/imagenet.sp" --transform train --image-size 224 --batch-size 64 --epochs 1

[ -f "$WORK/tokens.bin" ] ||
    "$HERE/measure.py" "$BUILD/datasets/sp-gen-tokens" --out "$WORK/tokens.bin" --tokens 20000000 --seed 1
"$HERE/measure.py" "$SP" pack "$WORK/tokens.bin" --seq-len 1024 -o "$WORK/tokens.sp" --overwrite
"$HERE/measure.py" "$SP" bench "$WORK/tokens.sp" --batch-size 8 --token-dtype int32
