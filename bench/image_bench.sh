#!/bin/sh
# image_bench.sh - the image loader benchmark: ours against its limit and against PyTorch, in one run
# on the same image files (JPEG, or with --format the same photos as PNG or WebP).
#
#  1. sp-gen-imagefolder writes an ImageNet-like ImageFolder (COUNT JPEGs in CLASSES classes; kept
#     in WORK and reused by later runs with the same count, classes and seed); --format png|webp
#     converts it with bench/image_convert.py (Pillow: PNG at zlib level 6, lossy WebP at quality
#     90), also kept;
#  2. `shardpack pack --strict` packs it (byte-identical JPEGs, every file or nothing);
#  3. ours: `shardpack bench DATASET --transform train --image-size 224 --image-layout nchw
#     --drop-last --threads T --batch-size B --epochs E --json` (uint8 [B, 3, 224, 224] batches,
#     as the peer's): samples/s, the single-thread limit x threads, peak RSS;
#  4. the peer: bench/image_peer.py, run by /usr/bin/python3 (Debian's torch and torchvision):
#     DataLoader(ImageFolder(..., RandomResizedCrop(224), RandomHorizontalFlip(), PILToTensor()),
#     num_workers=T, batch_size=B, shuffle=True, drop_last=True), E epochs, PyTorch's defaults for
#     everything else (persistent_workers=False, prefetch_factor=2, pin_memory=False, fork).
# Both commands run under bench/tree_rss.py, which sums the RSS of the command's process and all its
# descendants from /proc every 50 ms and keeps the peak. Before each side the files that side reads
# are read once (page cache warm for both). Throughput counts every epoch, the first included, on
# both sides. The last three lines are the ratios: limit_ratio, peer_ratio, memory_ratio. Raw
# results: WORK/image_bench.json.
#
# usage: bench/image_bench.sh BUILD_DIR [--count N] [--threads T] [--batch-size B] [--epochs E]
#                             [--work DIR] [--classes C] [--seed S] [--format jpeg|png|webp]
set -eu

usage() {
    echo "usage: $0 BUILD_DIR [--count N (>= 2000, default 2000)] [--threads T (default: cores)]" >&2
    echo "       [--batch-size B (default 64)] [--epochs E (default 2)] [--work DIR]" >&2
    echo "       [--classes C (default 100)] [--seed S (default 1)] [--format jpeg|png|webp]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
case $1 in -*) usage ;; esac
BUILD=$1
shift
COUNT=2000
THREADS=$(nproc)
BATCH=64
EPOCHS=2
WORK=/tmp/shardpack-image-bench
CLASSES=100
SEED=1
IMAGE_SIZE=224
FORMAT=jpeg
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case $1 in
    --count) COUNT=$2 ;;
    --threads) THREADS=$2 ;;
    --batch-size) BATCH=$2 ;;
    --epochs) EPOCHS=$2 ;;
    --work) WORK=$2 ;;
    --classes) CLASSES=$2 ;;
    --seed) SEED=$2 ;;
    --format) FORMAT=$2 ;;
    *) usage ;;
    esac
    shift 2
done
case $FORMAT in jpeg | png | webp) ;; *) usage ;; esac
for v in "$COUNT" "$THREADS" "$BATCH" "$EPOCHS" "$CLASSES" "$SEED"; do
    case $v in '' | *[!0-9]*) echo "$0: '$v' is not a whole number" >&2 && exit 2 ;; esac
done
[ "$COUNT" -ge 2000 ] || { echo "$0: --count must be at least 2000 (got $COUNT)" >&2; exit 2; }
[ "$THREADS" -ge 1 ] && [ "$BATCH" -ge 1 ] && [ "$EPOCHS" -ge 1 ] && [ "$CLASSES" -ge 2 ] ||
    { echo "$0: --threads, --batch-size and --epochs must be >= 1, --classes >= 2" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3 # Debian's, with python3-torch and python3-torchvision (not a pyenv python)
GEN="$BUILD/datasets/sp-gen-imagefolder"
SP="$BUILD/tools/shardpack"
for f in "$GEN" "$SP"; do
    [ -x "$f" ] || { echo "$0: $f not found; build first (ninja -C $BUILD)" >&2; exit 2; }
done
"$PY" -c "import torch, torchvision" 2>/dev/null ||
    { echo "$0: $PY cannot import torch and torchvision (apt-get install python3-torchvision)" >&2; exit 2; }
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

IMAGES="$WORK/imagefolder-n$COUNT-c$CLASSES-s$SEED"
SUFFIX=$([ "$FORMAT" = jpeg ] && echo "" || echo "-$FORMAT")
DATASET="$WORK/imagefolder-n$COUNT-c$CLASSES-s$SEED$SUFFIX.sp"
OURS="$WORK/ours.json"
OURS_MEM="$WORK/ours_tree_rss.json"
PEER="$WORK/peer.json"
PEER_MEM="$WORK/peer_tree_rss.json"
PACK="$WORK/pack.json"
LOAD="$WORK/loadavg.txt"
rm -f "$OURS" "$OURS_MEM" "$PEER" "$PEER_MEM" "$PACK" "$LOAD" "$WORK/image_bench.json"

# Reads every file under $1 once, so the side that reads them starts with a warm page cache.
warm() {
    find "$1" -type f -exec cat {} + >/dev/null
}

echo "image_bench: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"\
" $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "image_bench: $COUNT images, $CLASSES classes, threads/workers $THREADS, batch $BATCH, $EPOCHS epochs, $IMAGE_SIZE px, work $WORK"

# 1. The images (a marker beside the folder says a generation finished; ImageFolder sees only it).
if [ ! -f "$IMAGES.complete" ]; then
    rm -rf "$IMAGES"
    "$GEN" --out "$IMAGES" --count "$COUNT" --classes "$CLASSES" --seed "$SEED"
    touch "$IMAGES.complete"
else
    echo "image_bench: reusing $IMAGES"
fi
if [ "$FORMAT" != jpeg ]; then # the same photos in another format
    if [ ! -f "$IMAGES-$FORMAT.complete" ]; then
        rm -rf "$IMAGES-$FORMAT"
        "$PY" "$HERE/image_convert.py" "$IMAGES" "$IMAGES-$FORMAT" "$FORMAT"
        touch "$IMAGES-$FORMAT.complete"
    fi
    IMAGES="$IMAGES-$FORMAT"
fi

# 2. The dataset: every image or a failure (--strict), so both sides get the same files.
"$SP" pack "$IMAGES" -o "$DATASET" --overwrite --strict --quiet --json >"$PACK"

# 3. Ours.
warm "$DATASET"
echo "ours $(cut -d' ' -f1-3 /proc/loadavg)" >"$LOAD"
echo "image_bench: ours: shardpack bench (limit, then $EPOCHS epochs through the loader)"
"$PY" "$HERE/tree_rss.py" --out "$OURS_MEM" -- \
    "$SP" bench "$DATASET" --transform train --image-size "$IMAGE_SIZE" --image-layout nchw \
    --threads "$THREADS" --batch-size "$BATCH" --drop-last --epochs "$EPOCHS" --json >"$OURS"

# 4. The peer.
warm "$IMAGES"
echo "peer $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOAD"
echo "image_bench: peer: torch DataLoader over torchvision ImageFolder ($EPOCHS epochs)"
"$PY" "$HERE/tree_rss.py" --out "$PEER_MEM" -- \
    "$PY" "$HERE/image_peer.py" "$IMAGES" --workers "$THREADS" --batch-size "$BATCH" --epochs "$EPOCHS" \
    --image-size "$IMAGE_SIZE" >"$PEER"
echo "after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOAD"

# 5. The report; its last three lines are the ratios.
"$PY" - "$WORK" "$COUNT" "$CLASSES" "$SEED" "$THREADS" "$BATCH" "$EPOCHS" "$IMAGE_SIZE" "$FORMAT" <<'EOF'
import json
import os
import sys

work = sys.argv[1]
count, classes, seed, threads, batch, epochs, size = map(int, sys.argv[2:9])
fmt = sys.argv[9]


def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)


pack, ours, ours_mem, peer, peer_mem = (load(n) for n in
                                        ("pack.json", "ours.json", "ours_tree_rss.json", "peer.json",
                                         "peer_tree_rss.json"))
with open(os.path.join(work, "loadavg.txt")) as f:
    loadavg = dict(line.split(" ", 1) for line in f.read().splitlines())
MiB = 1024.0 * 1024.0

# Our process forks one child, only to time the limit (so that its buffers stay out of the loader's
# RSS); the loader runs in the process alone. Our memory is the tree's peak over the samples where
# the process was alone (loader open, then streaming); the peak with the limit child alive is shown.
ours_rss = ours_mem["peak_rss_bytes_by_nproc"].get("1", 0)
ours_rss_all = ours_mem["peak_rss_bytes"]
ours_pss = ours_mem["peak_pss_bytes_by_nproc"].get("1")
peer_rss = peer_mem["peak_rss_bytes"]
ours_ips = ours["samples_per_s"]
limit_ips = ours["limit_samples_per_s"]
peer_ips = peer["images_per_s"]
limit_ratio = ours_ips / limit_ips if limit_ips else 0.0
peer_ratio = ours_ips / peer_ips if peer_ips else 0.0
memory_ratio = ours_rss / peer_rss if peer_rss else 0.0

# CPU seconds of the loader's run: the command's total less what it had used when the limit's child
# had ended (the sampler logs the CPU time at each change in the number of processes).
ours_cpu_total = ours_mem["cpu_user_s"] + ours_mem["cpu_sys_s"]
ours_loader_cpu = ours_cpu_total
ph = ours_mem["phases"]
for i in range(len(ph) - 1, 0, -1):
    if ph[i]["processes"] == 1 and ph[i - 1]["processes"] > 1 and ph[i]["cpu_s"] is not None:
        ours_loader_cpu = ours_cpu_total - ph[i]["cpu_s"]
        break
peer_loop_cpu = peer["loop_cpu_s"]
ours_ms = 1e3 * ours_loader_cpu / ours["samples"] if ours["samples"] else 0.0
peer_ms = 1e3 * peer_loop_cpu / peer["images"] if peer["images"] else 0.0

per_epoch_ours = ours["samples"] // max(ours["epochs"], 1)
checks = []
if pack["samples"] != count or pack.get("skipped", 0):
    checks.append("packed %s samples of %d images (skipped %s)" % (pack["samples"], count, pack.get("skipped")))
if peer["dataset_images"] != count:
    checks.append("ImageFolder found %d images, not %d" % (peer["dataset_images"], count))
if ours["samples"] != peer["images"]:
    checks.append("ours delivered %d images, the peer %d" % (ours["samples"], peer["images"]))

result = {
    "config": {"format": fmt, "count": count, "classes": classes, "seed": seed, "threads": threads, "batch_size": batch,
               "epochs": epochs, "image_size": size, "drop_last": True, "first_epoch_included": True,
               "cores": os.cpu_count(), "loadavg": loadavg, "rss_sample_interval_s": ours_mem["interval_s"]},
    "pack": pack,
    "ours": {"bench": ours, "tree": ours_mem, "peak_rss_loader_bytes": ours_rss,
             "peak_pss_loader_bytes": ours_pss, "loader_cpu_s": ours_loader_cpu,
             "cpu_ms_per_image": ours_ms},
    "peer": {"loader": peer, "tree": peer_mem, "peak_rss_bytes": peer_rss, "cpu_ms_per_image": peer_ms},
    "ratios": {"limit_ratio": limit_ratio, "peer_ratio": peer_ratio, "memory_ratio": memory_ratio,
               "peer_cpu_per_image_over_ours": peer_ms / ours_ms if ours_ms else None},
    "checks": checks,
}
with open(os.path.join(work, "image_bench.json"), "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")


def mib(b):
    return "%.1f MiB" % (b / MiB) if b is not None else "-"


def cpu(m):
    return m["cpu_user_s"] + m["cpu_sys_s"]


print()
print("== image_bench: %d %s images (%.1f MB, %d classes) -> uint8 [%d, 3, %d, %d] batches, train transform,"
      % (count, fmt.upper(), pack["input_bytes"] / 1e6, classes, batch, size, size))
print("   %d epochs of %d images (drop_last), %d threads/workers, page cache warm; first epoch included"
      % (epochs, per_epoch_ours, threads))
print("ours   shardpack bench --transform train --image-layout nchw --drop-last (load avg before: %s)"
      % loadavg.get("ours", "?"))
print("   throughput   %.1f img/s: %d images in %.2f s (%d batches)"
      % (ours_ips, ours["samples"], ours["seconds"], ours["batches"]))
print("   limit        %.1f img/s on one thread x %d = %.1f img/s; the same loop on %d threads at once: %.1f img/s"
      % (ours["single_thread_samples_per_s"], ours["threads"], limit_ips, ours["threads"],
         ours["parallel_samples_per_s"]))
print("   pipeline     stalled in next() %.2f s; workers busy %.2f s (decode), reader %.2f s; io %s, %s"
      % (ours["stall_s"], ours["decode_busy_s"], ours["read_busy_s"], ours["io"],
         "O_DIRECT" if ours["direct_io"] else "page cache"))
print("   memory       tree peak RSS %s while the loader ran alone (self-reported %s; %s before the loader);"
      % (mib(ours_rss), mib(ours["peak_rss_bytes"]), mib(ours["rss_before_loader_bytes"])))
print("                %s with the limit's child process alive; PSS peak %s (loader alone); host_memory %s, %s"
      % (mib(ours_rss_all), mib(ours_pss), mib(ours["host_memory_bytes"]), mib(ours["host_allocated_bytes"])))
print("                allocated by the loader's pools")
print("   cpu          %.2f s user+sys while streaming = %.2f ms per image (%.1f s for the whole command, the limit"
      % (ours_loader_cpu, ours_ms, ours_cpu_total))
print("                measurement included; wall %.1f s); CPU given to it while streaming: %.2f of %d cores"
      % (ours_mem["wall_s"], ours_loader_cpu / ours["seconds"] if ours["seconds"] else 0, os.cpu_count()))
print("peer   torch %s / torchvision %s DataLoader, num_workers=%d, persistent_workers=False, prefetch_factor=2 (defaults),"
      % (peer["torch"], peer["torchvision"], peer["num_workers"]))
print("       start method %s (load avg before: %s)" % (peer["start_method"], loadavg.get("peer", "?")))
print("   throughput   %.1f img/s: %d images in %.2f s; per epoch: %s; after the first epoch: %s"
      % (peer_ips, peer["images"], peer["seconds"],
         ", ".join("%.1f img/s (first batch %.2f s)" % (e["images"] / e["seconds"], e["first_batch_s"] or 0)
                   for e in peer["epochs"]),
         "%.1f img/s" % peer["images_per_s_after_first_epoch"] if peer["images_per_s_after_first_epoch"] else "-"))
print("   memory       tree peak RSS %s (%d processes at most; the main process alone %s after importing torch);"
      % (mib(peer_rss), peer_mem["max_processes"], mib(peer["rss_after_import_bytes"])))
print("                PSS peak %s (pages the forked workers share with the main process counted once;"
      % mib(peer_mem["peak_pss_bytes"]))
print("                PSS is read every %d samples, so its peak is coarser than RSS's)" % peer_mem["pss_every"])
print("   cpu          %.2f s user+sys in the loop (main process and workers) = %.2f ms per image (%.1f s for the"
      % (peer_loop_cpu, peer_ms, cpu(peer_mem)))
print("                whole command, start-up and imports included; wall %.1f s); CPU used in the loop: %.2f of %d cores"
      % (peer_mem["wall_s"], peer_loop_cpu / peer["seconds"] if peer["seconds"] else 0, os.cpu_count()))
print("cpu per image: peer / ours = %.2f (what peer_ratio would be if both sides got the same CPU time)"
      % (peer_ms / ours_ms if ours_ms else 0))
print("load average after both: %s; raw results: %s" % (loadavg.get("after", "?"), os.path.join(work, "image_bench.json")))
for c in checks:
    print("CHECK FAILED: " + c)
print("limit_ratio %.2f (ours %.0f img/s / limit %.0f img/s; target >= 0.85)" % (limit_ratio, ours_ips, limit_ips))
print("peer_ratio %.2f (ours %.0f img/s / peer %.0f img/s; target >= 2.5)" % (peer_ratio, ours_ips, peer_ips))
print("memory_ratio %.2f (ours %.0f MiB / peer %.0f MiB peak RSS of the process tree; target <= 0.33)"
      % (memory_ratio, ours_rss / MiB, peer_rss / MiB))
EOF
