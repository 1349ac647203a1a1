#!/usr/bin/env python3
"""soak.py - runs the loader without end for a given time and checks that memory and descriptors
stay flat.

`shardpack bench DATASET --epochs 1000000` streams the dataset (threads = cores unless given) while
this script samples the process's resident memory (VmRSS) and its open file descriptors once a
second. After a warm-up it fits a least-squares line to each series and prints the slopes (KiB per
minute, descriptors per minute) and the spread; it exits 1 when RSS grows by more than --max-growth
over the run or the descriptor count moves at all, 0 otherwise.

usage: bench/soak.py DATASET [--build build] [--seconds 1800] [--warmup 30] [loader options...]
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def slope(xs, ys):
    """Least-squares slope of ys over xs (per unit of x)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--max-growth", type=float, default=0.02, help="largest RSS growth allowed (fraction)")
    args, loader_opts = ap.parse_known_args()
    cmd = [os.path.join(args.build, "tools", "shardpack"), "bench", args.dataset, "--epochs", "1000000",
           "--quiet", "--json"] + loader_opts
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    samples = []
    try:
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            if proc.poll() is not None:
                sys.exit("soak: the loader exited early (%d): %s" % (proc.returncode, proc.stderr.read()[-2000:]))
            t = time.monotonic() - t0
            if t >= args.warmup:
                samples.append((t / 60.0, rss_kib(proc.pid), fds(proc.pid)))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if len(samples) < 2:
        sys.exit("soak: too short to measure (raise --seconds above --warmup)")
    mins = [s[0] for s in samples]
    rss = [s[1] for s in samples]
    fd = [s[2] for s in samples]
    rss_slope, fd_slope = slope(mins, rss), slope(mins, fd)
    growth = (rss[-1] - rss[0]) / rss[0] if rss[0] else 0.0
    print("soak: %.0f s after %.0f s warm-up, %d samples" % (args.seconds - args.warmup, args.warmup, len(samples)))
    print("rss_kib first %d last %d min %d max %d, slope %.1f KiB/min, growth %.2f%%"
          % (rss[0], rss[-1], min(rss), max(rss), rss_slope, 100 * growth))
    print("fds first %d last %d min %d max %d, slope %.3f /min" % (fd[0], fd[-1], min(fd), max(fd), fd_slope))
    ok = growth <= args.max_growth and min(fd) == max(fd)
    print("soak: %s" % ("flat" if ok else "NOT FLAT"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
