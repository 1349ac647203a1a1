#!/usr/bin/env python3
"""pack_bench.py - `shardpack pack` throughput against its limit, `zstd -T<threads>`.

Both sides get the same bytes at the same level in one run: the generated ImageNet-like JPEG
ImageFolder and generated llm.c token files. Each command runs several times and the fastest run
counts (the machine is shared; the minimum is the least disturbed). The last lines print the
ratios: pack MB/s over zstd MB/s, per dataset.

usage: bench/pack_bench.py [--build DIR] [--work DIR] [--images N] [--tokens N] [--threads T]
                           [--level L] [--repeat R]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def best_time(cmd, repeat, before=None):
    best = None
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        run(cmd, stdout=subprocess.DEVNULL)
        t = time.perf_counter() - t0
        best = t if best is None or t < best else best
    return best


def concat(files, out):
    """The bytes zstd gets: every input file, back to back, as pack reads them."""
    with open(out, "wb") as o:
        for f in files:
            with open(f, "rb") as i:
                shutil.copyfileobj(i, o)
    return os.path.getsize(out)


def warm(files):
    for f in files:
        with open(f, "rb") as i:
            while i.read(1 << 20):
                pass


def measure(name, shardpack, sources, extra, files, work, args):
    out = work / ("out-" + name)
    blob = work / (name + ".concat")
    nbytes = concat(files, blob)
    warm(files)
    pack = [shardpack, "pack", *map(str, sources), "-o", str(out), "--overwrite", "--quiet",
            "--threads", str(args.threads), "--level", str(args.level), *extra]
    t_pack = best_time(pack, args.repeat)
    zstd = ["zstd", "-q", "-f", "-T%d" % args.threads, "-%d" % args.level, str(blob), "-o", str(blob) + ".zst"]
    t_zstd = best_time(zstd, args.repeat)
    pack_json = [a for a in pack if a != "--quiet"] + ["--json"]
    summary = json.loads(run(pack_json, stdout=subprocess.PIPE, text=True).stdout)
    blob.unlink()
    pathlib.Path(str(blob) + ".zst").unlink()
    mb = nbytes / 1e6
    row = {"dataset": name, "input_mb": round(mb, 1), "pack_s": round(t_pack, 3), "zstd_s": round(t_zstd, 3),
           "pack_mb_s": round(mb / t_pack, 1), "zstd_mb_s": round(mb / t_zstd, 1),
           "ratio": round(t_zstd / t_pack, 3), "stored_mb": round(summary.get("stored_bytes", 0) / 1e6, 1),
           "samples": summary.get("samples")}
    print(json.dumps(row))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/shardpack-pack-bench")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--tokens", type=int, default=50_000_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    build = pathlib.Path(args.build).resolve()
    shardpack = build / "tools" / "shardpack"
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for tool in ("zstd",):
        if not shutil.which(tool):
            sys.exit("pack_bench: %s is not installed (apt-get install -y zstd)" % tool)

    images = work / "imagenet"
    if not images.exists():
        run([str(build / "datasets" / "sp-gen-imagefolder"), "--out", str(images), "--count", str(args.images),
             "--seed", "1"])
    tokens = work / "tokens.bin"
    if not tokens.exists():
        run([str(build / "datasets" / "sp-gen-tokens"), "--out", str(tokens), "--tokens", str(args.tokens),
             "--seed", "1"])

    jpgs = sorted(p for p in images.rglob("*") if p.is_file())
    print("machine: %d cores, threads=%d, level=%d, best of %d" % (os.cpu_count(), args.threads, args.level,
                                                                args.repeat))
    rows = [measure("imagenet", shardpack, [images], [], jpgs, work, args),
            measure("tokens", shardpack, [tokens], ["--seq-len", "1024"], [tokens], work, args)]
    for r in rows:
        print("pack_vs_zstd_ratio %s %.3f  (%.1f MB/s vs %.1f MB/s)" % (r["dataset"], r["ratio"], r["pack_mb_s"],
                                                                      r["zstd_mb_s"]))


if __name__ == "__main__":
    main()
