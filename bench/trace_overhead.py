#!/usr/bin/env python3
"""trace_overhead.py - what a trace costs: the same loader run over one dataset with and without
the trace parameter, interleaved (untraced, traced, traced, untraced, ...) so that drift on a
shared machine falls on both sides, in one process. Prints each run's samples/s and CPU time per
sample (every thread of the process: getrusage), the medians, the trace's size and events, and
last the two ratios traced / untraced: throughput (1.00: free; 0.98: 2% slower) and CPU per sample
(1.02: 2% more work). On a machine other jobs share, the CPU ratio is the steadier of the two.

usage: SHARDPACK_LIBRARY=build/lib/libshardpack.so PYTHONPATH=python \\
       bench/trace_overhead.py DATASET [--rounds R] [--epochs E] [--out DIR] [NAME=VALUE ...]
e.g.   bench/trace_overhead.py /tmp/ds --rounds 6 batch_size=64 image_size=224 threads=2
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import shardpack


def run(dataset, epochs, params, trace):
    os.environ.pop("SHARDPACK_TRACE", None)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    n = 0
    with shardpack.Loader(dataset, epochs=epochs, trace=trace, **params) as loader:
        for b in loader:
            n += b.size
            del b
    t = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return n / t, cpu / n


def value(s):
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default=None, help="where the trace goes (default: a temporary directory)")
    ap.add_argument("params", nargs="*", help="loader parameters, NAME=VALUE")
    a = ap.parse_intermixed_args()
    params = dict((k, value(v)) for k, v in (p.split("=", 1) for p in a.params))
    trace = os.path.join(a.out or tempfile.mkdtemp(prefix="sp-trace-overhead-"), "trace.json")
    rates = {False: [], True: []}
    cpus = {False: [], True: []}
    run(a.dataset, a.epochs, params, None)  # warm-up: page cache, allocator
    for r in range(a.rounds):
        for traced in ((False, True) if r % 2 == 0 else (True, False)):
            sps, cps = run(a.dataset, a.epochs, params, trace if traced else None)
            rates[traced].append(sps)
            cpus[traced].append(cps)
            print("round %d %-9s %8.1f samples/s %8.1f us CPU/sample" % (r, "traced" if traced else "untraced",
                                                                         sps, cps * 1e6), flush=True)
    with open(trace) as f:
        other = json.load(f).get("otherData", {})
    print("trace: %s, %d bytes, %d events (%d dropped)" % (trace, os.path.getsize(trace), other.get("events", 0),
                                                          other.get("dropped_events", 0)))
    m = {k: statistics.median(v) for k, v in rates.items()}
    c = {k: statistics.median(v) for k, v in cpus.items()}
    print("untraced median %.1f samples/s %.1f us CPU/sample; traced median %.1f samples/s %.1f us CPU/sample"
          % (m[False], c[False] * 1e6, m[True], c[True] * 1e6))
    print("trace_throughput_ratio %.3f" % (m[True] / m[False]))
    print("trace_cpu_ratio %.3f" % (c[True] / c[False]))


if __name__ == "__main__":
    sys.exit(main())
