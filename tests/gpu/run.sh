#!/usr/bin/env bash
# run.sh - every GPU check in one go, on a machine with an NVIDIA GPU and the CUDA toolkit:
# configure and build with -Dcuda=enabled (release), the meson suite 'gpu', compute-sanitizer
# (memcheck with leak check, racecheck) over test_cuda_loader, then bench_copy and bench_overlap,
# whose ratio lines are repeated at the end.
#
#   tests/gpu/run.sh [BUILD_DIR]          default BUILD_DIR: build-gpu in the source tree
#
# Every step runs even when an earlier one failed; the exit status is 1 when any step failed. A
# step that skips (exit 77, no CUDA device) counts as failed when nvidia-smi lists a GPU, since
# then the library should have found it. The whole run stays within GPU_RUN_BUDGET_S seconds
# (default 480): each step's limit is cut to what is left. With $OUT set, everything printed also
# goes to $OUT/gpu-run.log. compute-sanitizer is taken from $COMPUTE_SANITIZER, PATH, the
# toolkit, or a pip-installed nvidia-cuda-sanitizer-api wheel; without it those steps are skipped.
# The step functions below run through `bash -c` (exported), which shellcheck cannot follow.
# shellcheck disable=SC2317
set -u -o pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$SRC/build-gpu}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
BUDGET=${GPU_RUN_BUDGET_S:-480}

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu-run.log") 2>&1
fi

# A toolkit installed but not on PATH is the common case on a fresh machine.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    PATH=/usr/local/cuda/bin:$PATH
fi

PASSED=() SKIPPED=() FAILED=()
GPU_SEEN=0
T0=$SECONDS
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/sp-gpu-run.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT

# step NAME LIMIT_S COMMAND...: runs COMMAND under a time limit and records how it ended.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - T0)))
    echo
    if [ "$left" -lt 10 ]; then
        echo "=== $name: NOT RUN, the run's budget of ${BUDGET}s is spent"
        FAILED+=("$name (not run: budget spent)")
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name ($(date +%T), limit ${limit}s): $*"
    local t=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    local dt=$((SECONDS - t))
    case $rc in
    0)
        PASSED+=("$name")
        echo "=== $name: ok (${dt}s)"
        ;;
    78)
        SKIPPED+=("$name (tool not found)")
        echo "=== $name: skipped, tool not found (${dt}s)"
        ;;
    77)
        if [ "$GPU_SEEN" = 1 ]; then
            FAILED+=("$name (skipped: no CUDA device, but nvidia-smi lists a GPU)")
            echo "=== $name: SKIPPED although nvidia-smi lists a GPU: counted as a failure (${dt}s)"
        else
            SKIPPED+=("$name")
            echo "=== $name: skipped, no CUDA device (${dt}s)"
        fi
        ;;
    124 | 137)
        FAILED+=("$name (timed out after ${limit}s)")
        echo "=== $name: TIMED OUT after ${limit}s"
        ;;
    *)
        FAILED+=("$name (exit $rc)")
        echo "=== $name: FAILED, exit $rc (${dt}s)"
        ;;
    esac
    return 0
}

# Steps that are shell functions run in a child bash, so that timeout can stop them.
configure() {
    local opts=(-Dcuda=enabled -Dbuildtype=release)
    if [ -f "$BUILD/meson-private/coredata.dat" ]; then
        # A build tree from another checkout or meson version cannot always be reconfigured.
        meson setup --reconfigure "$BUILD" "$SRC" "${opts[@]}" || meson setup --wipe "$BUILD" "$SRC" "${opts[@]}"
    else
        meson setup "$BUILD" "$SRC" "${opts[@]}"
    fi
}

# The suite, then a check that the CUDA test really ran: meson counts a skip as success.
gpu_suite() {
    meson test -C "$BUILD" --no-rebuild --suite gpu --print-errorlogs
    local rc=$?
    if [ "$GPU_SEEN" = 1 ] && ! python3 - "$BUILD/meson-logs/testlog.json" <<'PY'; then
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["name"].endswith("/ cuda_loader") and t["result"] == "SKIP":
        sys.exit(1)
PY
        echo "cuda_loader skipped although nvidia-smi lists a GPU; it said:"
        "$BUILD/tests/gpu/test_cuda_loader" 2>&1 | head -5
        return 1
    fi
    return "$rc"
}

# The compute-sanitizer to use, printed; nonzero when there is none.
find_sanitizer() {
    local c
    for c in "${COMPUTE_SANITIZER:-}" "$(command -v compute-sanitizer)" \
        "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")/compute-sanitizer" \
        /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [ -n "$c" ] && [ -x "$c" ] && echo "$c" && return 0
    done
    # The PyPI wheel (nvidia-cuda-sanitizer-api) ships the tool inside site-packages/nvidia.
    python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
for d in dirs:
    for p in sorted(glob.glob(os.path.join(d, "nvidia", "**", "compute-sanitizer"), recursive=True)):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            print(p)
            raise SystemExit(0)
raise SystemExit(1)
PY
}

# sanitize TOOL CASES: compute-sanitizer over the CUDA test, in one process (Check's forks would
# each need their own sanitizer attach, and a failure in a child would only count as a test
# failure). CASES picks Check test cases (CK_RUN_CASE), empty for all.
sanitize() {
    local tool=$1 cases=$2 san
    if ! san=$(find_sanitizer); then
        echo "compute-sanitizer not found: set COMPUTE_SANITIZER, or install the CUDA toolkit's or pip's"
        return 78
    fi
    echo "using $san"
    local args=(--tool "$tool" --error-exitcode 1)
    [ "$tool" = memcheck ] && args+=(--leak-check full)
    # An empty CK_RUN_CASE would match no case at all.
    if [ -n "$cases" ]; then
        export CK_RUN_CASE=$cases
    fi
    CK_FORK=no "$san" "${args[@]}" "$BUILD/tests/gpu/test_cuda_loader"
}

# bench NAME: runs a benchmark, keeping its output for the summary.
bench() {
    "$BUILD/bench/gpu/$1" 2>&1 | tee "$LOGDIR/$1.out"
    return "${PIPESTATUS[0]}"
}

export BUILD SRC GPU_SEEN LOGDIR
export -f configure gpu_suite find_sanitizer sanitize bench

echo "=== shardpack GPU run: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n)"
echo "source $SRC ($(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo 'no git')), build $BUILD"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L | grep -q '^GPU'; then
    GPU_SEEN=1
    nvidia-smi -L
    nvidia-smi --query-gpu=driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader \
        2>/dev/null | sed 's/^/driver, memory, PCIe gen, width: /'
else
    echo "nvidia-smi lists no GPU: the CUDA steps will skip"
fi
export GPU_SEEN
for t in meson ninja nvcc; do
    printf '%-6s %s\n' "$t" "$({ "$t" --version 2>/dev/null || echo 'NOT FOUND'; } | tail -1)"
done

step configure 120 bash -c configure
step build 300 ninja -C "$BUILD"
step "meson test --suite gpu" 180 bash -c gpu_suite
step "compute-sanitizer memcheck" 180 bash -c 'sanitize memcheck ""'
step "compute-sanitizer racecheck" 120 bash -c 'sanitize racecheck images'
step bench_copy 90 bash -c 'bench bench_copy'
step bench_overlap 90 bash -c 'bench bench_overlap'

echo
echo "=== summary ($(date +%T), $((SECONDS - T0))s)"
grep -h -E '^(copy_ratio|overlap_ratio|loader_h2d_gbps|plain_h2d_gbps|batches_per_s|step_fed_ms|step_resident_ms) ' \
    "$LOGDIR"/*.out 2>/dev/null
# ${a[@]+...}: an empty array is "unbound" to set -u in bash before 4.4.
for s in ${PASSED[@]+"${PASSED[@]}"}; do echo "ok       $s"; done
for s in ${SKIPPED[@]+"${SKIPPED[@]}"}; do echo "skipped  $s"; done
for s in ${FAILED[@]+"${FAILED[@]}"}; do echo "FAILED   $s"; done
if [ ${#FAILED[@]} -gt 0 ]; then
    exit 1
fi
exit 0
