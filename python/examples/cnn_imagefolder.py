#!/usr/bin/env python3
"""A small CNN trained on an ImageFolder for two epochs, with an eval loop, checkpoints and resume.

    python3 cnn_imagefolder.py --train photos/train --val photos/val --work run/
    python3 cnn_imagefolder.py --train photos/train --val photos/val --work run/ --resume

The folders are packed once (shardpack.pack, into WORK/train.sp and WORK/val.sp); the C loader
then decodes, crops, flips and normalizes the JPEGs in its own threads and hands the batches to
PyTorch without a copy (shardpack.torch.TorchLoader). Each `for` over a loader is one epoch.
A checkpoint (WORK/ckpt.pt: model, optimizer, the train loader's position, the epoch) is written
every --ckpt-every steps and at the end of each epoch; --resume continues from it exactly: the
train loader goes on from the batch after the saved one, with the same crops, so an interrupted
and resumed run ends with the same weights as one that was never stopped.
--stop-after N ends the process (without cleanup, as a kill would) right after step N and its
checkpoint (written for step N even when N is not a multiple of --ckpt-every), to try that.
--peer trains the same model on the same folders with torchvision's ImageFolder and
DataLoader(num_workers=2) instead, for comparison.
A JSON summary (per-epoch train loss, eval accuracy and seconds, and a checksum of the weights)
goes to --out.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import shardpack
except ImportError:  # not installed: the package of this source tree
    sys.path.insert(0, os.path.dirname(HERE))
    import shardpack
from shardpack.torch import TorchLoader  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SmallCNN(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.relu(self.c3(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def shardpack_loaders(args):
    """(train, val, classes): TorchLoaders over the packs of the two folders (packed once)."""
    packs = {}
    for name, folder in (("train", args.train), ("val", args.val)):
        out = os.path.join(args.work, name + ".sp")
        if not os.path.exists(out):
            shardpack.pack(folder, out, dataset_id=1)
        packs[name] = out
    with shardpack.Dataset(packs["train"]) as d:
        classes = d.class_names
    common = dict(batch_size=args.batch_size, image_size=args.image_size, image_dtype="float32",
                  image_layout="nchw", seed=args.seed)
    train = TorchLoader(packs["train"], transform="train", **common)
    val = TorchLoader(packs["val"], transform="eval", shuffle=False, **common)
    return train, val, classes


def peer_loaders(args):
    """The same with torchvision's ImageFolder and DataLoader(num_workers=2)."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    norm = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train_ds = ImageFolder(args.train, T.Compose([T.RandomResizedCrop(args.image_size),
                                                  T.RandomHorizontalFlip()] + norm))
    size = args.image_size
    val_ds = ImageFolder(args.val, T.Compose([T.Resize(size * 8 // 7), T.CenterCrop(size)] + norm))
    dl = dict(batch_size=args.batch_size, num_workers=2)
    return (torch.utils.data.DataLoader(train_ds, shuffle=True, **dl),
            torch.utils.data.DataLoader(val_ds, **dl), train_ds.classes)


def evaluate(model, val):
    model.eval()
    right = total = 0
    with torch.no_grad():
        for images, labels in val:  # one whole pass: each `for` is one epoch
            right += (model(images).argmax(1) == labels).sum().item()
            total += labels.shape[0]
    model.train()
    return right / max(total, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="ImageFolder of training images")
    ap.add_argument("--val", required=True, help="ImageFolder of evaluation images")
    ap.add_argument("--work", required=True, help="directory for the packs and the checkpoint")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=20, help="steps between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from WORK/ckpt.pt if present")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="checkpoint this step, then exit at once (to try --resume)")
    ap.add_argument("--peer", action="store_true", help="torchvision ImageFolder + DataLoader instead")
    ap.add_argument("--out", help="write the JSON summary here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    torch.manual_seed(args.seed)

    train, val, classes = peer_loaders(args) if args.peer else shardpack_loaders(args)
    model = SmallCNN(len(classes))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    ckpt = os.path.join(args.work, "ckpt.pt")
    start, step, history = 0, 0, []
    if args.resume and os.path.exists(ckpt):
        if args.peer:
            sys.exit("--resume is shown with shardpack's loaders only")
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        train.load_state_dict(state["loader"])  # the next `for` goes on from the saved batch
        start, step, history = state["epoch"], state["step"], state["history"]
        print("resumed at epoch %d, step %d" % (start, step), flush=True)

    def save(epoch):
        # Written aside, then renamed: a kill while saving leaves the previous checkpoint whole.
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                    "step": step, "history": history,
                    "loader": None if args.peer else train.state_dict()}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)

    for epoch in range(start, args.epochs):
        t0, loss_sum, batches = time.perf_counter(), 0.0, 0
        for images, labels in train:  # the rest of this epoch after a resume, else all of it
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            loss_sum, batches = loss_sum + loss.item(), batches + 1
            if step % args.ckpt_every == 0 or step == args.stop_after:
                save(epoch)
            if step == args.stop_after:  # also between two --ckpt-every steps: saved just above
                print("stopping after step %d" % step, flush=True)
                os._exit(3)  # as a kill: no cleanup, no final checkpoint
        seconds = time.perf_counter() - t0
        acc = evaluate(model, val)
        history.append({"epoch": epoch, "train_batches": batches,
                        "train_loss": loss_sum / max(batches, 1), "eval_accuracy": acc,
                        "train_seconds": seconds})
        print("epoch %d: %d batches, loss %.4f, eval accuracy %.3f, %.2f s"
              % (epoch, batches, loss_sum / max(batches, 1), acc, seconds), flush=True)
        save(epoch + 1)

    summary = {"classes": classes, "steps": step, "epochs": history, "shardpack": shardpack.__file__,
               "weights_checksum": sum(float(p.double().sum()) for p in model.parameters())}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f)
    print(json.dumps({"steps": step, "weights_checksum": summary["weights_checksum"]}))


if __name__ == "__main__":
    main()
