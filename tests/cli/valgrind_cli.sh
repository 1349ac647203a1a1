#!/bin/sh
# valgrind_cli.sh - every shardpack command on a small dataset under valgrind memcheck: zero errors
# and zero leaks (definite, indirect, possible), or the test fails naming the command.
#   valgrind_cli.sh SHARDPACK SP_GEN_IMAGEFOLDER SP_GEN_TOKENS
# Exit 77 (skipped) when valgrind is not installed.
set -u
SP=$1
GEN_IMG=$2
GEN_TOK=$3
command -v valgrind >/dev/null 2>&1 || { echo "SKIP: valgrind is not installed (apt install valgrind)"; exit 77; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sp-valgrind.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$GEN_IMG" --out "$WORK/images" --count 24 --classes 3 --seed 5 >/dev/null || exit 1
"$GEN_TOK" --out "$WORK/tokens.bin" --tokens 40000 --seed 5 >/dev/null || exit 1

fail=0
run() {
    log="$WORK/vg.$$.log"
    valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible --track-fds=no --log-file="$log" "$@" >/dev/null 2>"$WORK/stderr"
    rc=$?
    if [ "$rc" -eq 99 ] || [ -s "$log" ]; then
        echo "FAIL (valgrind): $*"
        cat "$log"
        fail=1
    elif [ "$rc" -ne 0 ]; then
        echo "FAIL (exit $rc): $*"
        cat "$WORK/stderr"
        fail=1
    else
        echo "ok: $*"
    fi
}

run "$SP" pack "$WORK/images" -o "$WORK/img.sp" --threads 2 --block-size 64K
run "$SP" pack "$WORK/tokens.bin" --seq-len 64 -o "$WORK/tok.sp" --threads 2 --block-size 16K
run "$SP" inspect "$WORK/img.sp"
run "$SP" inspect "$WORK/tok.sp" --json
run "$SP" verify "$WORK/img.sp"
run "$SP" cat "$WORK/img.sp" --index 3 --field image --force
run "$SP" preview "$WORK/img.sp" -o "$WORK/grid.jpg" --count 4 --image-size 64
run "$SP" bench "$WORK/img.sp" --epochs 1 --threads 2 --batch-size 8 --image-size 64 --transform train --quiet
run "$SP" bench "$WORK/img.sp" --epochs 1 --threads 2 --batch-size 8 --image-size 64 --transform eval \
    --image-dtype bfloat16 --image-layout nchw --io pread --quiet
run "$SP" bench "$WORK/tok.sp" --epochs 2 --threads 2 --batch-size 8 --token-dtype int32 --quiet
exit $fail
