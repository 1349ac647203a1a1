"""shardpack.pack() and the library's import: `shardpack pack`, pack(), a C program on shardpack.h
alone (tests/import/pack_c.c) and, where it applies, Writer build byte-identical datasets from the
same ImageFolder, WebDataset tar, .npy and llm.c inputs; a PNG named .jpg is skipped (or refused)
the same way by each; pack()'s callbacks, strict and interruption."""

import io
import os
import shutil
import struct
import subprocess
import tarfile
import unittest

import shardpack
from sp_testutil import TempDir

CLI = os.environ.get("SHARDPACK_CLI")
PACK_C = os.environ.get("SP_PACK_C")
GEN = os.environ.get("SP_GEN_IMAGEFOLDER")

# A PNG signature and IHDR: what a .jpg holding a PNG starts with.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x08\x00\x00\x00\x08\x08\x02\x00\x00\x00"
# Every way gets these: several blocks and shards, a fixed id.
PARAMS = {"dataset_id": 7, "block_size": "4K", "shard_size": "16K", "threads": 2}


def npy_bytes(dtype, shape, data):
    """A version 1.0 .npy file (no NumPy needed)."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join("%d," % d for d in shape))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def llmc_bytes(tokens):
    head = struct.pack("<3i", 20240520, 1, len(tokens)) + b"\0" * (1024 - 12)
    return head + struct.pack("<%dH" % len(tokens), *tokens)


def files_of(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


class Identity(unittest.TestCase):
    """Each input packed every way into the same OUT path (so "created_by" and "source" can be the
    same), moved aside after each, then compared file by file."""

    @classmethod
    def setUpClass(cls):
        if not CLI or not os.path.exists(CLI):
            raise unittest.SkipTest("the shardpack tool is not built (-Dtools=false)")
        if not PACK_C or not GEN:
            raise unittest.SkipTest("SP_PACK_C / SP_GEN_IMAGEFOLDER not set (run under meson test)")
        cls.tmp = TempDir()
        t = cls.tmp.path
        cls.folder = os.path.join(t, "folder")
        subprocess.run([GEN, "--out", cls.folder, "--count", "40", "--classes", "3", "--seed", "5",
                        "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(cls.folder, "class_01", "img_999999.jpg"), "wb") as f:
            f.write(PNG)  # a PNG named .jpg: skipped by every way
        cls.tar = os.path.join(t, "shard.tar")
        with tarfile.open(cls.tar, "w", format=tarfile.USTAR_FORMAT) as tf:
            for i, (cls_dir, name) in enumerate(cls.images()):
                with open(os.path.join(cls.folder, cls_dir, name), "rb") as f:
                    data = f.read()
                for member, body in (("s/%03d.jpg" % i, data), ("s/%03d.cls" % i, b"%d" % (i % 5))):
                    ti = tarfile.TarInfo(member)
                    ti.size, ti.mtime = len(body), 0
                    tf.addfile(ti, io.BytesIO(body))
        rows = 3000
        cls.npy = [os.path.join(t, "feat.npy"), os.path.join(t, "label.npy")]
        with open(cls.npy[0], "wb") as f:
            f.write(npy_bytes("<f4", (rows, 6), struct.pack("<%df" % (rows * 6),
                                                            *[i * 0.25 for i in range(rows * 6)])))
        with open(cls.npy[1], "wb") as f:
            f.write(npy_bytes("<i8", (rows,), struct.pack("<%dq" % rows, *range(rows))))
        cls.tokens = [(i * 7919) % 50257 for i in range(40000)]
        cls.bin = os.path.join(t, "tokens.bin")
        with open(cls.bin, "wb") as f:
            f.write(llmc_bytes(cls.tokens))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def images(cls):
        for c in sorted(os.listdir(cls.folder)):
            for n in sorted(os.listdir(os.path.join(cls.folder, c))):
                if not n.startswith("img_999999"):
                    yield c, n

    def out(self):
        return os.path.join(self.tmp.path, "out")

    def aside(self, tag):
        dest = os.path.join(self.tmp.path, "%s-%s" % (self.id().rsplit(".", 1)[1], tag))
        os.rename(self.out(), dest)
        return dest

    def cli(self, srcs, extra=()):
        args = [CLI, "pack"] + srcs + ["-o", self.out(), "-q"] + list(extra)
        for k, v in PARAMS.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        created_by = shardpack.Dataset(self.out()).meta()["created_by"]
        return self.aside("cli"), created_by.decode()

    def python(self, srcs, created_by, **extra):
        skipped = []
        st = shardpack.pack(srcs, self.out(), meta={"created_by": created_by},
                            on_skip=lambda w, r, n: skipped.append((w, r)), **dict(PARAMS, **extra))
        return self.aside("py"), st, skipped

    def c(self, srcs, created_by, extra=()):
        args = [PACK_C, self.out(), "-"] + ["--%s=%s" % kv for kv in PARAMS.items()]
        args += list(extra) + ["+created_by=" + created_by] + srcs
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return self.aside("c"), r.stdout.decode()

    def assertSameFiles(self, a, b):
        fa, fb = files_of(a), files_of(b)
        self.assertEqual(sorted(fa), sorted(fb))
        self.assertGreater(sum(n.endswith(".sps") for n in fa), 1, "one shard only: %s" % sorted(fa))
        for name in fa:
            self.assertTrue(fa[name] == fb[name], "%s differs between %s and %s" % (name, a, b))

    def three_ways(self, srcs, cli_extra=(), c_extra=(), **py_extra):
        cli, created_by = self.cli(srcs, cli_extra)
        py, st, skipped = self.python(srcs, created_by, **py_extra)
        c, c_out = self.c(srcs, created_by, c_extra)
        self.assertSameFiles(cli, py)
        self.assertSameFiles(cli, c)
        return cli, created_by, st, skipped, c_out

    def test_imagefolder_shuffled(self):
        # The default order: the same seeded permutation from all three, classes mixed.
        cli = self.three_ways([self.folder])[0]
        ds = shardpack.Dataset(cli)
        labels = [int.from_bytes(ds[i]["label"], "little") for i in range(len(ds))]
        ds.close()
        self.assertEqual(len(labels), 40)
        self.assertNotEqual(labels, sorted(labels))

    def test_imagefolder(self):
        # order=source: class by class, as the Writer below is fed.
        cli, created_by, st, skipped, c_out = self.three_ways([self.folder], cli_extra=["--order", "source"],
                                                              c_extra=["--order=source"], order="source")
        png = os.path.join(self.folder, "class_01", "img_999999.jpg")
        self.assertEqual(len(skipped), 1)
        self.assertEqual(skipped[0][0], png)
        self.assertIn("not a decodable image", skipped[0][1])
        self.assertIn("skipped %s: not a decodable image" % png, c_out)
        self.assertEqual(st["samples"], 40)
        # Writer, fed the same images, metadata and parameters, writes the same files; the PNG it
        # refuses as the import skipped it.
        ds = shardpack.Dataset(cli)
        meta = ds.meta()
        ds.close()
        with shardpack.Writer(self.out(), [("image", "image"), ("label", "label")], **PARAMS) as w:
            for key in ("created_by", "source", "class_names"):
                w.set_meta(key, meta[key])
            classes = sorted(os.listdir(self.folder))
            for c_dir, name in self.images():
                with open(os.path.join(self.folder, c_dir, name), "rb") as f:
                    w.add(f.read(), classes.index(c_dir))
                if name == "img_000010.jpg":
                    with self.assertRaises(shardpack.ShardpackError) as e:
                        w.add(PNG, 1)
                    self.assertEqual(e.exception.name, "SP_EBADINPUT")
                    self.assertIn("'image'", e.exception.message)
        self.assertSameFiles(cli, self.aside("writer"))

    def test_tar(self):
        self.three_ways([self.tar])

    def test_npy(self):
        self.three_ways(self.npy)

    def test_llmc_shuffled(self):
        # The default order: every window once, in the same seeded permutation from all three.
        cli = self.three_ways([self.bin], cli_extra=["--seq-len", "64"], c_extra=["--seq_len=64"], seq_len=64)[0]
        ds = shardpack.Dataset(cli)
        got = [bytes(ds[i]["tokens"]) for i in range(len(ds))]
        ds.close()
        windows = [struct.pack("<65H", *self.tokens[i * 64:i * 64 + 65]) for i in range((len(self.tokens) - 1) // 64)]
        self.assertEqual(sorted(got), sorted(windows))
        self.assertNotEqual(got, windows)

    def test_llmc(self):
        # order=source: window after window, as the Writer below is fed.
        cli, created_by, st, _, _ = self.three_ways([self.bin], cli_extra=["--seq-len", "64", "--order", "source"],
                                                     c_extra=["--seq_len=64", "--order=source"], seq_len=64,
                                                     order="source")
        with shardpack.Writer(self.out(), [("tokens", "tokens", "uint16", (65,))], **PARAMS) as w:
            w.set_meta("created_by", created_by)
            w.set_meta("source", self.bin)
            w.set_meta("seq_len", "64")
            for i in range((len(self.tokens) - 1) // 64):
                w.add(struct.pack("<65H", *self.tokens[i * 64:i * 64 + 65]))
        self.assertSameFiles(cli, self.aside("writer"))


class PackAPI(unittest.TestCase):
    def setUp(self):
        self.tmp = TempDir()
        self.bin = os.path.join(self.tmp.path, "t.bin")
        with open(self.bin, "wb") as f:
            f.write(llmc_bytes(list(range(3000))))

    def tearDown(self):
        self.tmp.cleanup()

    def test_kinds_and_errors(self):
        self.assertEqual(shardpack.import_kinds(), ["imagefolder", "tsv", "llmc", "wds", "npy"])
        out = os.path.join(self.tmp.path, "o")
        with self.assertRaisesRegex(shardpack.ShardpackError, "SP_EINVAL.*seq_len"):
            shardpack.pack(self.bin, out)
        with self.assertRaisesRegex(shardpack.ShardpackError, "SP_EINVAL.*unknown source kind 'png'"):
            shardpack.pack(self.bin, out, kind="png", seq_len=8)
        with self.assertRaisesRegex(TypeError, "does not take 'batch_size'"):
            shardpack.pack(self.bin, out, seq_len=8, batch_size=4)
        self.assertFalse(os.path.exists(out))
        st = shardpack.pack(self.bin, out, seq_len=8)
        self.assertEqual(st["samples"], (3000 - 1) // 8)
        self.assertEqual(st["skipped_items"], [])

    def test_progress_and_interrupt(self):
        out = os.path.join(self.tmp.path, "o")
        seen = []
        shardpack.pack(self.bin, out, seq_len=8, on_progress=seen.append)
        self.assertEqual(seen[-1]["samples"], (3000 - 1) // 8)
        self.assertEqual(seen[-1]["total_items"], (3000 - 1) // 8)

        def stop(p):
            if p["samples"] == 100:
                raise KeyboardInterrupt
        out2 = os.path.join(self.tmp.path, "o2")
        with self.assertRaises(KeyboardInterrupt):
            shardpack.pack(self.bin, out2, seq_len=8, on_progress=stop)
        self.assertFalse(os.path.exists(out2))
        self.assertEqual([n for n in os.listdir(self.tmp.path) if "shardpack-tmp" in n], [])

    def test_strict_and_skips(self):
        d = os.path.join(self.tmp.path, "in")
        os.makedirs(os.path.join(d, "a"))
        with open(os.path.join(d, "a", "x.jpg"), "wb") as f:
            f.write(PNG)
        with open(os.path.join(d, "a", "y.jpg"), "wb") as f:
            f.write(b"")
        out = os.path.join(self.tmp.path, "o")
        with self.assertRaisesRegex(shardpack.ShardpackError, "SP_EBADINPUT.*no samples to pack"):
            shardpack.pack(d, out)
        with self.assertRaisesRegex(shardpack.ShardpackError, r"SP_EBADINPUT.*x\.jpg: not a decodable image.*\(strict\)"):
            shardpack.pack(d, out, strict=True)
        self.assertFalse(os.path.exists(out))

    def test_meta_keys_and_values(self):
        # bytes keys are stored as they are (str(b'k') was stored as the key "b'k'"); other key
        # types and numeric values are refused before anything is written.
        out = os.path.join(self.tmp.path, "o")
        shardpack.pack(self.bin, out, seq_len=8,
                       meta={b"class_names": b"cat\ndog", "caf\u00e9": "x", "note": bytearray(b"n")})
        with shardpack.Dataset(out) as d:
            meta = d.meta()
        self.assertEqual(meta["class_names"], b"cat\ndog")
        self.assertEqual(meta["caf\u00e9"], b"x")
        self.assertEqual(meta["note"], b"n")
        self.assertNotIn("b'class_names'", meta)
        out2 = os.path.join(self.tmp.path, "o2")
        for bad in ({7: "seven"}, {None: "x"}, {("a",): "x"}, {"n": 5}, {"n": 1.5}):
            with self.assertRaises(TypeError) as cm:
                shardpack.pack(self.bin, out2, seq_len=8, meta=bad)
            self.assertIn("pack() meta", str(cm.exception))
        self.assertFalse(os.path.exists(out2))


if __name__ == "__main__":
    unittest.main()
