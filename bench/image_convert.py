#!/usr/bin/env python3
"""image_convert.py - writes a copy of an ImageFolder tree with every image in another format (the
same photos, for comparing formats): PNG (Pillow's default zlib level 6) or WebP (lossy, quality
90, Pillow's default method 4), each file renamed to the new extension; or, with --megapixels M,
JPEGs enlarged to about M million pixels each (Pillow bicubic, quality 92), a high-resolution set
made from the small one.

usage: image_convert.py SRC DST png|webp|jpeg [--megapixels M] [--workers N]
"""
import argparse
import os
import sys
from multiprocessing import Pool

from PIL import Image

EXT = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}


def convert(job):
    src, dst, fmt, mp = job
    with Image.open(src) as im:
        im = im.convert("RGB")
        if mp:
            scale = (mp * 1e6 / (im.width * im.height)) ** 0.5
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
        if fmt == "png":
            im.save(dst, "PNG")
        elif fmt == "webp":
            im.save(dst, "WEBP", quality=90)
        else:
            im.save(dst, "JPEG", quality=92)
    return os.path.getsize(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("format", choices=sorted(EXT))
    ap.add_argument("--megapixels", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()
    jobs = []
    for cls in sorted(os.listdir(a.src)):
        d = os.path.join(a.src, cls)
        if not os.path.isdir(d):
            continue
        os.makedirs(os.path.join(a.dst, cls), exist_ok=True)
        for name in sorted(os.listdir(d)):
            stem = os.path.splitext(name)[0]
            jobs.append((os.path.join(d, name), os.path.join(a.dst, cls, stem + EXT[a.format]), a.format, a.megapixels))
    with Pool(a.workers) as p:
        total = sum(p.map(convert, jobs, chunksize=16))
    print("image_convert: %d images as %s%s, %.1f MB" % (len(jobs), a.format,
          " of %g Mpixel" % a.megapixels if a.megapixels else "", total / 1e6), file=sys.stderr)


if __name__ == "__main__":
    main()
