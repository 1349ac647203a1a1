#!/usr/bin/python3
"""real_corpus.py - the image loader over real-world images taken from Debian packages.

Downloads a pinned list of Debian packages with `apt-get download` (nothing is installed) into a
cache, unpacks them with `dpkg-deb -x`, and finds every JPEG, PNG and WebP among their files by its
first bytes (never its name). GIF, SVG, BMP, TIFF, ICO, XPM and XCF files are counted as left out.
The images go into an ImageFolder tree, one class per package, each named as it was found (its
path below usr/share with '/' turned into '__'; a name whose extension torchvision's ImageFolder
would not take gets the format's extension appended, and is counted). A class `zz-renamed` holds
copies with a wrong extension (a PNG named .jpg, a WebP named .png, a JPEG named .webp and .png).

Then, in one run:
  1. every file through our image stage on its own (sp_image_transform_apply, eval transform with
     resize = the shorter side and image_size = that or 1024 if less, so the centre square comes
     out at scale 1) against
     PIL's decode of the same square (Image.convert("RGB"), what torchvision trains on; 16-bit gray
     by its high byte), with the JPEG tests' tolerance (no channel off by more than 1, at most 1%
     off at all); a file either side refuses is listed with the reason;
  2. `shardpack pack --strict` and `shardpack pack` (files found, packed, skipped with reasons);
  3. `shardpack inspect --full` (counts by format);
  4. `shardpack bench --transform train --image-size 224` (E epochs) and one `--transform eval`
     epoch, both with on_error=fail, so one bad image fails the run;
  5. bench/image_peer.py (PyTorch DataLoader + torchvision ImageFolder) on the same tree;
and prints per-format and per-package counts, images/s both ways, the load average.

usage: /usr/bin/python3 bench/real_corpus.py BUILD [--cache DIR] [--work DIR] [--per-package N]
           [--threads T] [--epochs E] [--no-peer] [--no-check] [--offline] [--json FILE]
Exit status: 0 when every file was packed, checked and benched cleanly, 1 otherwise.
"""
import argparse
import collections
import ctypes
import json
import os
import shutil
import subprocess
import sys
import time

# The pinned corpus: Debian 12 (bookworm) packages and the versions measured (docs in bench/README.md).
# About 237 MB of .debs. A version that left the archive is replaced by the candidate, and said.
PACKAGES = [
    ("desktop-base", "12.0.6+nmu1~deb12u1"),         # Debian's themes: PNG, JPEG (+ SVG)
    ("gnome-backgrounds", "43.1-1"),                 # lossy WebP wallpapers
    ("mate-backgrounds", "1.26.0-1"),                # photos: large JPEG and PNG
    ("sway-backgrounds", "1.7-6"),                   # large PNG
    ("lomiri-wallpapers", "20.04.0-2"),
    ("lomiri-wallpapers-20.04", "20.04.0-2"),        # JPEG photos
    ("ukui-wallpapers", "20.04.3-1.1"),
    ("xplanet-images", "1.3.1-3"),                   # JPEG/PNG maps of planets
    ("python3-skimage", "0.19.3-8"),                 # scikit-image's sample data
    ("gnome-icon-theme", "3.12.0-5"),                # icons: RGBA, palette, gray+alpha PNG
    ("tango-icon-theme", "0.8.90-11"),
    ("imagemagick-6-doc", "8:6.9.11.60+dfsg-1.6+deb12u16"),  # documentation images
    ("python-pil-doc", "9.4.0-1.1+deb12u1"),
    ("gimp-data", "2.10.34-1+deb12u10"),             # brushes, patterns, splash
    ("frozen-bubble-data", "2.212-11"),              # game sprites (palette PNG)
    ("pingus-data", "0.7.6-5.1"),                    # game sprites and JPEG backgrounds
    ("neverball-data", "1.6.0+git20180603-3"),       # game textures: JPEG
    ("mypaint-data-extras", "2.0.1-9"),              # paper textures
    ("xfdesktop4-data", "4.18.1-1"),
]

# torchvision.datasets.folder.IMG_EXTENSIONS (and lib/import/imp_util.c's list).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FORMAT_EXT = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
CHECK_SIDE = 1024  # the centre square compared: at most this side (still at scale 1)
TOL_MAX, TOL_FRAC = 1, 0.01  # tests/image/test_image_transform.c's REF_MAX and REF_FRAC


def kind_of(head, name):
    """The format of a file from its first bytes; left-out kinds by bytes or, for text ones, name."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM" and len(head) > 14:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"\x00\x00\x01\x00" and name.lower().endswith(".ico"):
        return "ico"
    if head[:9] == b"gimp xcf ":
        return "xcf"
    if head[:9] == b"/* XPM */":
        return "xpm"
    low = name.lower()
    if low.endswith((".svg", ".svgz")):
        return "svg"
    return None


def sh(cmd, **kw):
    return subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def download(cache, offline):
    """The .debs into cache; returns [(package, version, path)] and notes."""
    os.makedirs(cache, exist_ok=True)
    debs, notes = [], []
    for pkg, ver in PACKAGES:
        prefix = pkg + "_"
        have = [f for f in os.listdir(cache) if f.startswith(prefix) and f.endswith(".deb")]
        quoted = ver.replace(":", "%3a")
        exact = [f for f in have if f.startswith(prefix + quoted + "_")]
        if not exact and not offline:
            r = sh(["apt-get", "download", pkg + "=" + ver], cwd=cache)
            if r.returncode != 0:
                notes.append(f"{pkg}={ver} not in the archive ({r.stderr.strip().splitlines()[-1:]}); "
                             "took the candidate version")
                r = sh(["apt-get", "download", pkg], cwd=cache)
                if r.returncode != 0:
                    notes.append(f"{pkg}: download failed: {r.stderr.strip()}")
            have = [f for f in os.listdir(cache) if f.startswith(prefix) and f.endswith(".deb")]
            exact = [f for f in have if f.startswith(prefix + quoted + "_")]
        pick = exact or sorted(have)
        if not pick:
            notes.append(f"{pkg}: no .deb in {cache}; left out")
            continue
        f = pick[0]
        debs.append((pkg, f.split("_")[1].replace("%3a", ":"), os.path.join(cache, f)))
    return debs, notes


def unpack(deb, dest):
    mark = dest + ".done"
    if os.path.exists(mark) and os.path.getmtime(mark) >= os.path.getmtime(deb):
        return
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    subprocess.run(["dpkg-deb", "-x", deb, dest], check=True)
    open(mark, "w").close()


def survey(root):
    """[(relpath, kind)] of every regular file (symlinks skipped) under root, sorted."""
    out = []
    for dp, dn, fn in os.walk(root):
        dn.sort()
        for f in sorted(fn):
            p = os.path.join(dp, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as fh:
                head = fh.read(16)
            out.append((os.path.relpath(p, root), kind_of(head, f)))
    return out


def spread(items, n):
    """At most n of items, evenly spread over the (sorted) list."""
    if n <= 0 or len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def tree_name(rel, kind):
    name = rel[len("usr/share/"):] if rel.startswith("usr/share/") else rel
    name = name.replace("/", "__")
    renamed = not name.lower().endswith(IMG_EXTENSIONS)
    if renamed:
        name += FORMAT_EXT[kind]
    return name, renamed


def build_tree(debs, cache, corpus, per_package):
    """The ImageFolder tree; returns the file table and the survey counts."""
    shutil.rmtree(corpus, ignore_errors=True)
    os.makedirs(corpus)
    files = []  # dicts: path, package, kind, found_as
    left_out = collections.Counter()
    other = collections.Counter()
    found = collections.Counter()
    mismatched = collections.Counter()
    renamed_ext = 0
    for pkg, ver, deb in debs:
        src = os.path.join(cache, "x", pkg)
        unpack(deb, src)
        by_kind = collections.defaultdict(list)
        for rel, kind in survey(src):
            if kind in FORMAT_EXT:
                by_kind[kind].append(rel)
                found[(pkg, kind)] += 1
            elif kind:
                left_out[(pkg, kind)] += 1
            else:
                other[pkg] += 1
        os.makedirs(os.path.join(corpus, pkg))
        for kind in sorted(by_kind):
            for rel in spread(by_kind[kind], per_package):
                name, renamed = tree_name(rel, kind)
                renamed_ext += renamed
                low = name.lower()
                if not renamed and not low.endswith({"jpeg": (".jpg", ".jpeg"), "png": (".png",),
                                                     "webp": (".webp",)}[kind]):
                    mismatched[(kind, os.path.splitext(low)[1])] += 1
                dst = os.path.join(corpus, pkg, name)
                shutil.copyfile(os.path.join(src, rel), dst)
                files.append({"path": dst, "package": pkg, "kind": kind, "found_as": rel})
    # Copies with a wrong extension, from the first file of each format.
    first = {}
    for f in files:
        first.setdefault(f["kind"], f)
    os.makedirs(os.path.join(corpus, "zz-renamed"))
    for kind, ext in (("png", ".jpg"), ("webp", ".png"), ("jpeg", ".webp"), ("jpeg", ".png"), ("webp", ".jpg")):
        if kind in first:
            dst = os.path.join(corpus, "zz-renamed", f"{kind}-named{ext}")
            shutil.copyfile(first[kind]["path"], dst)
            files.append({"path": dst, "package": "zz-renamed", "kind": kind,
                          "found_as": "copy of " + first[kind]["found_as"]})
    return files, {"left_out": left_out, "other": other, "found": found, "mismatched": mismatched,
                   "renamed_ext": renamed_ext}


# ---- our decode against PIL's ----

class Ours:
    def __init__(self, build, max_image_memory=None):
        self.extra = (("max_image_memory", max_image_memory),) if max_image_memory else ()
        self.lib = ctypes.CDLL(os.path.join(build, "lib", "libshardpack.so"))
        L = self.lib
        L.sp_params_create.restype = ctypes.c_void_p
        L.sp_params_destroy.argtypes = [ctypes.c_void_p]
        L.sp_params_set_str.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        L.sp_image_transform_create.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        L.sp_image_transform_destroy.argtypes = [ctypes.c_void_p]
        L.sp_image_transform_errmsg.argtypes = [ctypes.c_void_p]
        L.sp_image_transform_errmsg.restype = ctypes.c_char_p
        L.sp_image_transform_apply.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64,
                                               ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p]

    def centre(self, data, side, resize):
        """Our eval decode of the centre side x side square of an image whose shorter side is resize
        (so at scale 1): (rc, bytes or message)."""
        L = self.lib
        p = L.sp_params_create()
        # Every other parameter at its default (max_pixels, max_image_memory), as the loader's.
        for k, v in (("transform", "eval"), ("image_size", str(side)), ("resize", str(resize))) + self.extra:
            if L.sp_params_set_str(p, k.encode(), v.encode()) != 0:
                raise RuntimeError(f"sp_params_set_str {k}={v}")
        t = ctypes.c_void_p()
        rc = L.sp_image_transform_create(p, ctypes.byref(t))
        L.sp_params_destroy(p)
        if rc != 0:
            return rc, f"sp_image_transform_create: {rc}"
        out = ctypes.create_string_buffer(side * side * 3)
        rc = L.sp_image_transform_apply(t, data, len(data), 0, 0, out, None)
        msg = L.sp_image_transform_errmsg(t).decode(errors="replace") if rc else None
        L.sp_image_transform_destroy(t)
        return rc, (msg if rc else out.raw)


def pil_rgb(path):
    """What torchvision's pil_loader gives (convert("RGB")), with 16-bit gray by its high byte
    (PIL's I;16 -> RGB clips every value above 255 to white: not a reference)."""
    import numpy as np
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I") or (im.mode == "I" and im.format == "PNG"):
            a = np.asarray(im).astype(np.uint32) >> 8
            a = a.astype(np.uint8)
            return np.repeat(a[:, :, None], 3, axis=2), im.mode
        mode = im.mode
        return np.asarray(im.convert("RGB")), mode


def check_all(files, build, max_image_memory):
    import numpy as np
    # The loader over the packed set grows its whole-image allowance to the largest image's need
    # (image_sizes); the transform on its own has no dataset to ask, so it is given 256M.
    ours = Ours(build, max_image_memory or "256M")
    for f in files:
        try:
            ref, mode = pil_rgb(f["path"])
            f["mode"] = mode
        except Exception as e:  # PIL refuses it: torchvision would fail on it too
            f["pil_error"] = f"{type(e).__name__}: {e}"
            ref = None
        with open(f["path"], "rb") as fh:
            data = fh.read()
        if ref is not None:
            h, w = ref.shape[:2]
        else:
            h = w = 0
        side = min(w, h, CHECK_SIDE)
        if ref is None or side < 8:
            # Decode only (a 224 eval crop): too small to compare at scale 1, or PIL failed.
            rc, res = ours.centre(data, 224, 256)
            if rc:
                f["our_error"] = res
            continue
        rc, res = ours.centre(data, side, min(w, h))
        if rc:
            f["our_error"] = res
            continue
        got = np.frombuffer(res, np.uint8).reshape(side, side, 3)
        left, top = round((w - side) / 2), round((h - side) / 2)
        want = ref[top:top + side, left:left + side, :3]
        d = np.abs(got.astype(np.int16) - want.astype(np.int16))
        f["max_diff"] = int(d.max())
        f["frac_off"] = float((d > 0).mean())
        if f["max_diff"] > TOL_MAX or f["frac_off"] > TOL_FRAC:
            f["mismatch"] = f"max diff {f['max_diff']}, {100 * f['frac_off']:.2f}% of values off"


# ---- the CLI runs ----

def run_json(cmd):
    t0 = time.perf_counter()
    r = sh(cmd)
    dt = time.perf_counter() - t0
    try:
        js = json.loads(r.stdout) if r.stdout.strip() else None
    except json.JSONDecodeError:
        js = None
    return r.returncode, js, r.stderr.strip(), dt


def load():
    return os.getloadavg()


def main():
    ap = argparse.ArgumentParser(
        description="The image loader over real-world JPEG, PNG and WebP files from 19 pinned Debian "
                    "packages (about 240 MB of .debs, downloaded once with apt-get download, nothing "
                    "installed); the module's docstring has the steps.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("build", help="the meson build directory with shardpack in it")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/shardpack-real-corpus"),
                    help="where the downloaded .deb files are kept (not the loader's cache_dir)")
    ap.add_argument("--work", default="/tmp/shardpack-real-corpus", help="the image tree, packs and results")
    ap.add_argument("--per-package", type=int, default=150,
                    help="at most this many files of each format from each package (0: all)")
    ap.add_argument("--threads", type=int, default=2, help="loader worker threads (and the peer's workers)")
    ap.add_argument("--epochs", type=int, default=2, help="train epochs of the bench")
    ap.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    ap.add_argument("--max-image-memory",
                    help="passed to shardpack bench (default: not passed) and to the check (default: 256M)")
    ap.add_argument("--no-peer", action="store_true", help="leave out the torchvision peer")
    ap.add_argument("--no-check", action="store_true", help="leave out the per-file check against PIL")
    ap.add_argument("--offline", action="store_true", help="use only the .debs already in the cache")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    exe = os.path.join(args.build, "tools", "shardpack")
    here = os.path.dirname(os.path.abspath(__file__))
    ok = True

    debs, notes = download(args.cache, args.offline)
    for n in notes:
        print("note:", n)
    if not debs:
        print("no package available: nothing to do")
        return 1
    deb_bytes = sum(os.path.getsize(d[2]) for d in debs)
    os.makedirs(args.work, exist_ok=True)
    corpus = os.path.join(args.work, "corpus")
    files, sv = build_tree(debs, args.cache, corpus, args.per_package)
    print(f"packages: {len(debs)}, {deb_bytes / 1e6:.1f} MB of .debs in {args.cache}")
    for pkg, ver, _ in debs:
        print(f"  {pkg} {ver}")
    found_total = collections.Counter(k for (_, k), n in sv["found"].items() for _ in range(n))
    print("images found by their bytes (all files of the packages):",
          ", ".join(f"{k} {n}" for k, n in sorted(found_total.items())))
    lo = collections.Counter()
    for (_, k), n in sv["left_out"].items():
        lo[k] += n
    print("left out (not JPEG/PNG/WebP):", ", ".join(f"{k} {n}" for k, n in sorted(lo.items())) or "none",
          f"; other files {sum(sv['other'].values())}")
    print(f"in the tree: {len(files)} files ({args.per_package or 'all'} per package and format at most), "
          f"{sv['renamed_ext']} given an image extension, real extension mismatches: "
          + (", ".join(f"{k} named {e} {n}" for (k, e), n in sorted(sv["mismatched"].items())) or "none")
          + ", plus zz-renamed copies")

    results = {"packages": [{"package": p, "version": v} for p, v, _ in debs], "deb_bytes": deb_bytes,
               "notes": notes, "tree_files": len(files)}

    if not args.no_check:
        t0 = time.perf_counter()
        check_all(files, args.build, args.max_image_memory)
        modes = collections.Counter((f["kind"], f.get("mode", "?")) for f in files)
        print(f"decode check ({time.perf_counter() - t0:.0f} s): formats x PIL modes:",
              ", ".join(f"{k}/{m} {n}" for (k, m), n in sorted(modes.items())))
        listed = [f for f in files if "our_error" in f or "mismatch" in f or "pil_error" in f]
        for f in listed:
            print(f"  {f['path']} ({f['kind']}, {f.get('mode', '?')}): "
                  + "; ".join(f"{k}: {f[k]}" for k in ("our_error", "pil_error", "mismatch") if k in f))
        # Genuinely bad: both refuse it (torchvision's ImageFolder would fail on it too). A defect:
        # ours refuses what PIL decodes, or decodes it differently.
        genuinely_bad = {f["path"] for f in files if "our_error" in f and "pil_error" in f}
        defects = [f for f in files if ("our_error" in f and "pil_error" not in f) or "mismatch" in f]
        print(f"  {len(files) - len(listed)} of {len(files)} match PIL within max {TOL_MAX} / {100 * TOL_FRAC:.0f}%"
              f"; refused by both (genuinely bad) {len(genuinely_bad)}; ours refuses, PIL decodes"
              f" {sum('our_error' in f and 'pil_error' not in f for f in files)}; PIL refuses, ours decodes"
              f" {sum('pil_error' in f and 'our_error' not in f for f in files)}; decoded differently"
              f" {sum('mismatch' in f for f in files)}")
        ok &= not defects
        results["check"] = [{k: f[k] for k in f if k != "path"} | {"path": os.path.relpath(f["path"], corpus)}
                            for f in files]

    if args.no_check:
        genuinely_bad = set()
    for strict in (True, False):
        out = os.path.join(args.work, "pack-strict.sp" if strict else "pack.sp")
        cmd = [exe, "pack", corpus, "-o", out, "--overwrite", "--json", "--quiet", "--dataset-id", "18"]
        if strict:
            cmd.append("--strict")
        rc, js, err, dt = run_json(cmd)
        tag = "pack --strict" if strict else "pack"
        if rc != 0 or not js:
            print(f"{tag}: exit {rc}: {err}")
            # --strict stops at a genuinely bad file, naming it: what it is for.
            ok &= strict and (args.no_check or any(p in err for p in genuinely_bad))
            continue
        skipped = js.get("skipped_items", [])
        print(f"{tag}: {js['samples']} samples of {len(files)} in {dt:.1f} s, skipped {js.get('skipped', 0)}")
        for s in skipped:
            print(f"  skipped {s['path']}: {s['reason']}")
        if not args.no_check:  # without the check, what is genuinely bad is not known: listed only
            ok &= js["samples"] == len(files) - len(genuinely_bad)
            ok &= all(s["path"] in genuinely_bad for s in skipped)
        results[tag] = {"samples": js["samples"], "skipped": skipped, "seconds": dt}
    dataset = os.path.join(args.work, "pack.sp")

    # Per package and per format: in the tree / packed (pack without --strict) / refused by our
    # decode (the check; "-" without it).
    skipped = {s["path"] for s in results.get("pack", {}).get("skipped", [])}
    table = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0, 0]))
    for f in files:
        for key in (f["package"], "ALL"):
            for k in (f["kind"], "all"):
                row = table[key][k]
                row[0] += 1
                row[1] += f["path"] not in skipped and "pack" in results
                row[2] += "our_error" in f
    print("files in the tree / packed / refused by our decode, per package and format:")
    for pkg in sorted(table, key=lambda p: (p == "ALL", p)):
        print(f"  {pkg:26s} " + "  ".join(f"{k} {r[0]}/{r[1]}/{r[2] if not args.no_check else '-'}"
                                          for k, r in sorted(table[pkg].items())))
    results["table"] = {p: dict(v) for p, v in table.items()}

    rc, js, err, _ = run_json([exe, "inspect", dataset, "--json", "--full"])
    if rc == 0 and js:
        fmts = {}
        for fld in js.get("fields", []):
            if "formats" in fld:
                fmts = fld["formats"]
        want = collections.Counter(f["kind"] for f in files)
        print("inspect formats:", json.dumps(fmts), " expected:", dict(want))
        results["inspect_formats"] = fmts
    else:
        print(f"inspect: exit {rc}: {err}")
        ok = False

    common = ["--threads", str(args.threads), "--batch-size", str(args.batch_size), "--image-size", "224",
              "--on-error", "fail", "--json", "--quiet"]
    if args.max_image_memory:
        common += ["--max-image-memory", args.max_image_memory]
    for name, extra in (("train", ["--transform", "train", "--image-layout", "nchw", "--drop-last",
                                   "--epochs", str(args.epochs)]),
                        ("eval", ["--transform", "eval", "--epochs", "1"])):
        la = load()
        rc, js, err, dt = run_json([exe, "bench", dataset] + common + extra)
        if rc != 0 or not js:
            print(f"bench {name}: exit {rc}: {err}")
            ok = False
            continue
        sps = js.get("samples_per_s") or js.get("samples_per_second")
        print(f"bench {name}: {sps:.1f} images/s, {js.get('samples')} samples, skipped "
              f"{js.get('samples_skipped', 0)} (load {la[0]:.2f})")
        results["bench_" + name] = {"images_per_s": sps, "load": la, "json": js}

    if not args.no_peer:
        # The peer reads the files the pack kept (hard links): torchvision's ImageFolder stops the
        # whole run at a file PIL cannot decode (a genuinely bad one), where pack skipped it.
        peer_root = os.path.join(args.work, "corpus-peer")
        shutil.rmtree(peer_root, ignore_errors=True)
        for f in files:
            if f["path"] in skipped:
                continue
            dst = os.path.join(peer_root, os.path.relpath(f["path"], corpus))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.link(f["path"], dst)
        la = load()
        r = sh(["/usr/bin/python3", os.path.join(here, "image_peer.py"), peer_root, "--workers", str(args.threads),
                "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--image-size", "224"])
        if r.returncode != 0:
            print("peer: failed:", r.stderr.strip()[-2000:])
            ok = False
        else:
            pj = json.loads(r.stdout)
            print(f"peer (torchvision ImageFolder + DataLoader, {args.threads} workers): "
                  f"{pj['images_per_s']:.1f} images/s over {pj['dataset_images']} files (load {la[0]:.2f})")
            results["peer"] = {"images_per_s": pj["images_per_s"], "load": la, "dataset_images": pj["dataset_images"]}
            if "bench_train" in results:
                ratio = results["bench_train"]["images_per_s"] / pj["images_per_s"]
                print(f"peer_ratio {ratio:.2f}")
                results["peer_ratio"] = ratio
    print("load average at the end: %.2f %.2f %.2f" % load())
    print("RESULT:", "every file packed, decoded and benched cleanly" if ok else "FAILURES above")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
