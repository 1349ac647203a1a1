#!/usr/bin/python3
"""image_peer.py - the peer of `shardpack bench --transform train` on a JPEG ImageFolder: PyTorch.

torch.utils.data.DataLoader over torchvision.datasets.ImageFolder(ROOT, transform=Compose([
RandomResizedCrop(SIZE), RandomHorizontalFlip(), PILToTensor()])): uint8 [B, 3, SIZE, SIZE]
batches, shuffled, num_workers=--workers, drop_last as asked. Everything else is left at
PyTorch's defaults (persistent_workers=False, so the workers are started again every epoch;
prefetch_factor=2 per worker; pin_memory=False; the platform's start method, fork on Linux).
Every batch is touched as `shardpack bench` touches its batches (one byte per 4 KiB of the image
tensor, plus its last byte, and the labels) and then dropped.

Timed: each epoch from asking for its iterator to its last batch (worker start-up included).
The CPU time of the loop (this process and its reaped workers) is reported too. Printed, as one JSON object on stdout: images/s over all epochs, per epoch, and over the epochs
after the first.

usage: /usr/bin/python3 bench/image_peer.py ROOT [--workers T] [--batch-size B] [--epochs E]
                                             [--image-size S] [--no-drop-last] [--seed N]
"""
import argparse
import json
import os
import time

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import ImageFolder

TOUCH_STRIDE = 4096  # as shardpack bench: one byte per page


def rss_bytes():
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def touch(images, labels):
    flat = images.reshape(-1)
    return int(flat[::TOUCH_STRIDE].sum()) + int(flat[-1]) + int(labels.sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--no-drop-last", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rss_after_import = rss_bytes()
    torch.manual_seed(args.seed)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(args.image_size),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
    ])
    dataset = ImageFolder(args.root, transform=tf)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        drop_last=not args.no_drop_last)
    rss_before_loop = rss_bytes()

    cpu0 = os.times()
    epochs = []
    touch_sum = 0
    shape = None
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        first = None
        images = batches = 0
        for x, y in loader:
            if first is None:
                first = time.perf_counter() - t0
                shape = list(x.shape)
            touch_sum += touch(x, y)
            images += x.shape[0]
            batches += 1
        epochs.append({"images": images, "batches": batches, "seconds": time.perf_counter() - t0,
                       "first_batch_s": first})

    # Without persistent workers, each epoch's workers are joined when it ends, so their CPU time is
    # in children_* by now.
    cpu1 = os.times()
    loop_cpu = sum(cpu1[i] - cpu0[i] for i in range(4))
    total_images = sum(e["images"] for e in epochs)
    total_s = sum(e["seconds"] for e in epochs)
    later = epochs[1:]
    later_s = sum(e["seconds"] for e in later)
    out = {
        "root": args.root,
        "images_per_s": total_images / total_s if total_s else 0.0,
        "images_per_s_after_first_epoch": (sum(e["images"] for e in later) / later_s) if later_s else None,
        "images": total_images,
        "seconds": total_s,
        "epochs": epochs,
        "loop_cpu_s": loop_cpu,
        "dataset_images": len(dataset),
        "classes": len(dataset.classes),
        "batch_shape": shape,
        "batch_dtype": "uint8",
        "num_workers": args.workers,
        "batch_size": args.batch_size,
        "drop_last": not args.no_drop_last,
        "shuffle": True,
        "persistent_workers": False,
        "prefetch_factor": 2 if args.workers > 0 else None,
        "pin_memory": False,
        "start_method": torch.multiprocessing.get_start_method(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pil": __import__("PIL").__version__,
        "torch_threads_main": torch.get_num_threads(),
        "rss_after_import_bytes": rss_after_import,
        "rss_before_loop_bytes": rss_before_loop,
        "touch_sum": touch_sum,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
