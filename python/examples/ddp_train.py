#!/usr/bin/env python3
"""DistributedDataParallel training on a shardpack dataset, one epoch, CPU and gloo.

Every rank opens the same dataset; the loader takes its rank and world size from the RANK and
WORLD_SIZE variables torchrun sets, so no sampler is needed. At the end the ranks all-gather the
sample ids they saw and their step counts, and rank 0 checks that every sample was seen exactly
once and every rank took the same number of steps (writing the result as JSON with --out).

    python3 ddp_train.py --make-data /tmp/ddp.sp                 # a small dataset of 16-float rows
    python3 -m torch.distributed.run --standalone --nproc_per_node=4 ddp_train.py --data /tmp/ddp.sp
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import shardpack
except ImportError:  # not installed: the package of this source tree
    sys.path.insert(0, os.path.dirname(HERE))
    import shardpack

FEATURES, CLASSES = 16, 4


def make_data(path, blocks_per_rank=3, world=4, seed=0):
    """Writes a dataset whose blocks all hold the same number of samples and whose block count is
    a multiple of world, so that every rank gets exactly the same samples and none is dropped."""
    import random
    rng = random.Random(seed)

    def write(n):
        with shardpack.Writer(path, [("x", "tensor", "float32", (FEATURES,)), ("label", "label")],
                              block_size="4K", overwrite=True, threads=1) as w:
            for i in range(n):
                c = i % CLASSES
                w.add([c + rng.gauss(0, 0.5) for _ in range(FEATURES)], c)

    write(1024)  # a probe: how many samples one block holds
    with shardpack.Dataset(path) as d:
        per_block = d.block_samples()[0]
    n = per_block * world * blocks_per_rank
    write(n)
    with shardpack.Dataset(path) as d:
        counts = d.block_samples()
    assert len(counts) == world * blocks_per_rank and len(set(counts)) == 1, counts
    return n


def train(args):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from shardpack.torch import TorchLoader

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(FEATURES, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()

    seen, steps, loss = [], 0, None
    # rank and world_size are left to the library: it reads RANK and WORLD_SIZE from torchrun.
    with TorchLoader(args.data, inputs="x", labels="label", with_ids=True,
                     batch_size=args.batch_size, seed=args.seed, threads=1,
                     host_memory="16M") as loader:
        assert loader.stats()["threads"] == 1
        for x, y, ids in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()  # DDP all-reduces the gradients here: a rank short of steps would hang
            opt.step()
            seen.extend(ids)
            steps += 1
        dropped = loader.stats()["samples_dropped_per_epoch"]

    gathered = [None] * world
    dist.all_gather_object(gathered, {"rank": rank, "steps": steps, "ids": seen,
                                      "dropped": dropped, "loss": float(loss)})
    # The DDP reducer holds the process group: drop it first, or torch 1.13 tears gloo down at
    # interpreter exit, where its worker thread waits for the GIL the destructor holds (a hang).
    del model, opt
    dist.destroy_process_group()
    if rank != 0:
        return 0
    all_ids = [i for g in gathered for i in g["ids"]]
    result = {
        "world_size": world,
        "steps": [g["steps"] for g in gathered],
        "samples_seen": len(all_ids),
        "distinct": len(set(all_ids)),
        "min_id": min(all_ids) if all_ids else None,
        "max_id": max(all_ids) if all_ids else None,
        "dropped": [g["dropped"] for g in gathered],
        "loss": [g["loss"] for g in gathered],
    }
    ok = (len(set(result["steps"])) == 1 and result["distinct"] == len(all_ids)
          and (args.samples is None or sorted(all_ids) == list(range(args.samples))))
    result["ok"] = ok
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    print(json.dumps(result))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset to train on")
    ap.add_argument("--make-data", metavar="DIR", help="write a small dataset to DIR and exit")
    ap.add_argument("--samples", type=int, help="samples in the dataset (checked when given)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=60, help="seconds a collective may wait")
    ap.add_argument("--out", help="write rank 0's result as JSON here")
    args = ap.parse_args()
    if args.make_data:
        print(make_data(args.make_data))
        return 0
    if not args.data:
        ap.error("--data or --make-data is required")
    return train(args)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without the interpreter's teardown: torch 1.13's distributed objects can deadlock in
    # their destructors at exit. Everything this script writes is already flushed and closed.
    os._exit(code)
