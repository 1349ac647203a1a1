#!/usr/bin/env python3
"""Per-batch cost of copying small fields out of the ring (Loader small_field_bytes).

On a generated token set (33 uint16 tokens and an int64 label per sample), at each --batch-sizes:
1. the cost itself: making the Tensors of every field of one held batch, as Batch[name] does,
   as views (small_field_bytes=0) and as copies (the default 64 KiB), best of --repeat runs of
   10000 (no loader work in the loop, so a loaded machine barely moves it);
2. end to end, best of --repeat runs: next() + reading every field + release() with each setting
   (the loader's own work included: noisy on a busy machine).
Prints microseconds per batch.
    /usr/bin/python3 bench/small_fields.py [--batch-sizes 1,256 --repeat 3]
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
sys.path.insert(0, os.path.join(ROOT, "python"))

import shardpack  # noqa: E402
import sp_testutil  # noqa: E402
from shardpack import _dlpack  # noqa: E402
from shardpack._lib import lib  # noqa: E402


def make_tensors(path, batch, repeat):
    """(views, copies): seconds to make every field's Tensor of one batch, each way."""
    with shardpack.Loader(path, batch_size=batch, seed=1, small_field_bytes=0) as l:
        b = l.next()
        n = lib.sp_batch_num_fields(b._bptr)
        dls = [lib.sp_batch_tensor(b._bptr, i) for i in range(n)]
        out = []
        for small in (0, shardpack.loader.SMALL_FIELD_BYTES):
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for _ in range(10000):
                    for dl in dls:
                        _dlpack.Tensor(b._lease, dl, small)
                best = min(best, (time.perf_counter() - t0) / 10000)
            out.append(best)
        b.release()
    return out


def per_batch(path, batch, small, repeat):
    best = float("inf")
    for _ in range(repeat):
        with shardpack.Loader(path, batch_size=batch, seed=1, small_field_bytes=small) as l:
            names = None
            n = 2000 if batch == 1 else 60
            for i in range(50 + n):
                if i == 50:
                    t0 = time.perf_counter()
                b = l.next() or l.next()  # None once at each epoch's end
                names = names or list(b)
                for f in names:
                    b[f]
                b.release()
            best = min(best, (time.perf_counter() - t0) / n)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-sizes", default="1,256")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sp-small-") as d:
        path = sp_testutil.make_tokens(os.path.join(d, "t.sp"), n=20000)
        for batch in (int(x) for x in args.batch_sizes.split(",")):
            view, copy = make_tensors(path, batch, args.repeat)
            print("batch %d: the Tensors of one batch: %.2f us as views, %.2f us as copies (%+.2f us)"
                  % (batch, view * 1e6, copy * 1e6, (copy - view) * 1e6))
            view = per_batch(path, batch, 0, args.repeat)
            copy = per_batch(path, batch, shardpack.loader.SMALL_FIELD_BYTES, args.repeat)
            print("batch %d: next + fields + release: %.1f us zero-copy, %.1f us with small fields copied (%+.1f us)"
                  % (batch, view * 1e6, copy * 1e6, (copy - view) * 1e6))


if __name__ == "__main__":
    main()
