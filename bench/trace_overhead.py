#!/usr/bin/env python3
"""trace_overhead.py - what a trace costs: `shardpack bench` on one dataset with and without
--trace, interleaved (off, on, on, off, ...) so that drift on a shared machine falls on both sides,
in one run. Prints each run's samples/s, the medians, the trace's size and events, and last the
ratio traced / untraced (1.00: free; 0.98: 2% slower).

usage: bench/trace_overhead.py SHARDPACK DATASET [--rounds R] [--out DIR] [-- BENCH ARGS...]
e.g.   bench/trace_overhead.py build/tools/shardpack /tmp/ds --rounds 3 -- --epochs 2 --batch-size 64
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def bench(shardpack, dataset, args, trace):
    cmd = [shardpack, "bench", dataset, "--json", "--quiet"] + args
    if trace:
        cmd += ["--trace", trace]
    env = dict(os.environ)
    env.pop("SHARDPACK_TRACE", None)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env).stdout
    return json.loads(out)["samples_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shardpack")
    ap.add_argument("dataset")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None, help="where the trace goes (default: a temporary directory)")
    ap.add_argument("bench_args", nargs="*")
    a = ap.parse_args()
    tmp = a.out or tempfile.mkdtemp(prefix="sp-trace-overhead-")
    trace = os.path.join(tmp, "trace.json")
    off, on = [], []
    for r in range(a.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for traced in order:
            sps = bench(a.shardpack, a.dataset, a.bench_args, trace if traced else None)
            (on if traced else off).append(sps)
            print("round %d %-9s %.1f samples/s" % (r, "traced" if traced else "untraced", sps), flush=True)
    with open(trace) as f:
        doc = json.load(f)
    other = doc.get("otherData", {})
    print("trace: %s, %d bytes, %d events (%d dropped)" % (trace, os.path.getsize(trace), other.get("events", 0),
                                                          other.get("dropped_events", 0)))
    m_off, m_on = statistics.median(off), statistics.median(on)
    print("untraced median %.1f samples/s, traced median %.1f samples/s" % (m_off, m_on))
    print("trace_overhead_ratio %.3f" % (m_on / m_off if m_off else 0))


if __name__ == "__main__":
    sys.exit(main())
