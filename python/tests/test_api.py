"""Core bindings (standard library only): params, errors, C-identical batches, resume, writer, lifetime."""

import ctypes
import ctypes.util
import gc
import glob
import os
import shutil
import subprocess
import sys
import unittest

import shardpack
from shardpack import _dlpack, _lib
from sp_testutil import SEQ, TempDir, make_tokens, tensor_bytes, token_value


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tok.sp"), n=600)


def tearDownModule():
    TMP.cleanup()


def c_api_batches(path, n_epochs, **params):
    """Every batch as [(field bytes...), sample ids], through the C API called directly."""
    L = _lib.lib
    p = L.sp_params_create()
    for k, v in params.items():
        assert L.sp_params_set_str(p, k.encode(), str(v).encode()) == 0
    lp = ctypes.c_void_p()
    assert L.sp_loader_open(path.encode(), p, ctypes.byref(lp)) == 0, _lib.last_error()
    L.sp_params_destroy(p)
    out, b, done = [], ctypes.c_void_p(), 0
    while done < n_epochs:
        rc = L.sp_loader_next(lp, ctypes.byref(b), -1)
        if rc == _lib.SP_EEPOCH:
            done += 1
            continue
        assert rc == 0, _lib.last_error()
        fields = []
        for i in range(L.sp_batch_num_fields(b)):
            t = L.sp_batch_tensor(b, i).contents
            n = t.dtype.bits // 8
            for d in range(t.ndim):
                n *= t.shape[d]
            fields.append(ctypes.string_at(t.data, n))
        ids = [L.sp_batch_sample_id(b, r) for r in range(L.sp_batch_size(b))]
        out.append((tuple(fields), ids))
        assert L.sp_loader_release(lp, b) == 0
    assert L.sp_loader_close(lp) == 0
    return out


def py_batches(loader, epochs):
    out = []
    for _ in range(epochs):
        for b in loader:
            out.append((tuple(tensor_bytes(b[n]) for n in b), b.sample_ids()))
    return out


class TestLibrary(unittest.TestCase):
    def test_abi_and_version(self):
        self.assertEqual(_lib.lib.sp_abi_version(), shardpack.ABI_VERSION)
        self.assertTrue(shardpack.library_version.count(".") == 2)
        self.assertTrue(os.path.exists(shardpack.library_path) or "/" not in shardpack.library_path)

    def test_wrong_library_is_refused(self):
        libc = ctypes.util.find_library("c")
        for lib, expect in ((os.path.join(TMP.path, "missing.so"), "cannot load libshardpack"),
                            (libc, "not libshardpack")):
            env = dict(os.environ, SHARDPACK_LIBRARY=lib)
            r = subprocess.run([sys.executable, "-c", "import shardpack"], env=env,
                               capture_output=True, text=True, cwd=os.path.dirname(shardpack.__path__[0]))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("ImportError", r.stderr)
            self.assertIn(expect, r.stderr)


# Imports shardpack from the tree given, with ctypes.util.find_library refusing to run: it must
# not be reached while a library of the tree loads. Prints the library loaded.
_TREE_IMPORT = """
import ctypes.util, sys
def refuse(name):
    raise AssertionError("find_library(%r) was called" % name)
ctypes.util.find_library = refuse
sys.path.insert(0, sys.argv[1])
import shardpack
print(shardpack.library_path)
"""


class TestLibrarySearch(unittest.TestCase):
    """Which library `import shardpack` picks in a source tree holding several builds."""

    @classmethod
    def setUpClass(cls):
        cls.real = shardpack.library_path
        if not os.path.isfile(cls.real):
            raise unittest.SkipTest("the library under test is not a file path: %s" % cls.real)
        with open(cls.real, "rb") as f:
            if any(rt in f.read() for rt in (b"libasan.so", b"libtsan.so")):
                raise unittest.SkipTest("the library under test is a sanitizer build")
        cls.tmp = TempDir()
        # A library linked against the ASan runtime: loading it in a process started without
        # that runtime ends the process ("ASan runtime does not come first").
        src = os.path.join(cls.tmp.path, "fake.c")
        with open(src, "w") as f:
            f.write("int sp_fake(int x) { return x + 1; }\n")
        cls.fake = os.path.join(cls.tmp.path, "fake-asan.so")
        cc = shutil.which("cc") or shutil.which("gcc")
        r = subprocess.run([cc or "cc", "-shared", "-fPIC", "-fsanitize=address", "-o", cls.fake, src],
                           capture_output=True) if cc else None
        if r is None or r.returncode != 0 or not os.path.isfile(cls.fake):
            cls.tmp.cleanup()
            raise unittest.SkipTest("no C compiler with -fsanitize=address to make a sanitizer library")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def tree(self, name, builds):
        """A source tree: include/shardpack.h, python/shardpack, and BUILD/lib/libshardpack.so.N
        for each (BUILD, library) of builds, the later ones newer."""
        root = os.path.join(self.tmp.path, name)
        os.makedirs(os.path.join(root, "include"))
        open(os.path.join(root, "include", "shardpack.h"), "w").close()
        shutil.copytree(os.path.dirname(shardpack.__file__), os.path.join(root, "python", "shardpack"),
                        ignore=shutil.ignore_patterns("__pycache__", "libshardpack.so*", "_install.py"))
        for age, (build, lib) in enumerate(builds):
            dest = os.path.join(root, build, "lib", _lib.SONAME)
            os.makedirs(os.path.dirname(dest))
            shutil.copy(lib, dest)
            os.utime(dest, (1e9 + age * 1000, 1e9 + age * 1000))
        return root

    def run_import(self, root, library=None):
        env = {k: v for k, v in os.environ.items() if k not in ("SHARDPACK_LIBRARY", "LD_PRELOAD")}
        if library is not None:
            env["SHARDPACK_LIBRARY"] = library
        return subprocess.run([sys.executable, "-c", _TREE_IMPORT, os.path.join(root, "python")],
                              env=env, capture_output=True, text=True, timeout=60, cwd=self.tmp.path)

    def test_build_first_and_sanitizer_builds_skipped(self):
        # build/ is taken although a sanitizer build is newer (it was the newest that was tried).
        root = self.tree("t1", [("build", self.real), ("build-asan", self.fake)])
        r = self.run_import(root)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout.strip(), os.path.join(root, "build", "lib", _lib.SONAME))
        # Without build/, the sanitizer build (first by name, and newest) is skipped.
        root = self.tree("t2", [("release", self.real), ("build-asan", self.fake)])
        r = self.run_import(root)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout.strip(), os.path.join(root, "release", "lib", _lib.SONAME))

    def test_only_a_sanitizer_build(self):
        root = self.tree("t3", [("build-asan", self.fake)])
        r = self.run_import(root, library=os.path.join(root, "build-asan", "lib", _lib.SONAME))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ImportError", r.stderr)
        self.assertIn("sanitizer runtime libasan", r.stderr)
        self.assertNotIn("runtime does not come first", r.stderr)

    def test_library_variable_names_a_directory(self):
        root = self.tree("t4", [("build", self.real)])
        for d in (os.path.join(root, "build"), os.path.join(root, "build", "lib")):
            r = self.run_import(root, library=d)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            self.assertEqual(r.stdout.strip(), os.path.join(root, "build", "lib", _lib.SONAME))


class TestParams(unittest.TestCase):
    def test_table_comes_from_library(self):
        table = shardpack.params()
        self.assertEqual(len(table), _lib.lib.sp_param_count())
        bs = table["batch_size"]
        self.assertEqual((bs.min, bs.max, bs.default), (1, 1 << 20, 32))
        self.assertEqual(table["io"].choices, ("auto", "uring", "pread"))
        self.assertIn("batch_size", shardpack.Loader.__doc__)

    def test_unknown_keyword(self):
        with self.assertRaises(TypeError) as cm:
            shardpack.Loader(DS, batch_sise=4)
        self.assertIn("batch_sise", str(cm.exception))
        self.assertIn("batch_size", str(cm.exception))  # lists what it takes

    def test_writer_only_keyword(self):
        with self.assertRaises(TypeError) as cm:
            shardpack.Loader(DS, level=3)
        self.assertIn("level", str(cm.exception))

    def test_out_of_range(self):
        for kw, bound in (({"batch_size": 0}, "1048576"), ({"shuffle_window": 1 << 17}, "65536"),
                          ({"host_memory": "2000T"}, "batch")):
            with self.assertRaises(ValueError) as cm:
                shardpack.Loader(DS, **kw)
            name = next(iter(kw))
            self.assertIn(name, str(cm.exception))
            if name != "host_memory":
                self.assertIn(bound, str(cm.exception))

    def test_bad_types_and_choices(self):
        with self.assertRaises(TypeError) as cm:
            shardpack.Loader(DS, shuffle=[1])
        self.assertIn("shuffle", str(cm.exception))
        with self.assertRaises(TypeError):
            shardpack.Loader(DS, batch_size=2.5)
        with self.assertRaises(ValueError) as cm:
            shardpack.Loader(DS, io="mmap")
        self.assertIn("uring", str(cm.exception))

    def test_values_reach_the_library(self):
        with shardpack.Loader(DS, batch_size=7, shuffle=False, threads=1, host_memory="8M",
                              io="pread", direct_io=None, token_dtype=1) as l:
            b = l.next()
            self.assertEqual(b.size, 7)
            self.assertEqual(b["tokens"].dtype, "int32")
            self.assertEqual(b.sample_ids(), list(range(7)))
            st = l.stats()
            self.assertEqual((st["threads"], st["io"], st["host_memory_bytes"]), (1, "pread", 8 << 20))


class TestErrors(unittest.TestCase):
    def test_missing_dataset(self):
        with self.assertRaises(shardpack.ShardpackError) as cm:
            shardpack.Loader(os.path.join(TMP.path, "nope.sp"))
        e = cm.exception
        self.assertEqual((e.code, e.name), (-4, "SP_ENOENT"))
        self.assertIn("nope.sp", e.message)

    def test_corrupt_block(self):
        bad = make_tokens(os.path.join(TMP.path, "bad.sp"), n=300, compress="none")
        shard = sorted(glob.glob(os.path.join(bad, "*.sps")))[0]
        with open(shard, "r+b") as f:
            data = bytearray(f.read())
            # a token value of sample 100 (stored raw): its bytes are the little-endian u16s
            needle = bytes(ctypes.c_uint16(token_value(100, 5))) + bytes(ctypes.c_uint16(token_value(100, 6)))
            at = data.find(needle)
            self.assertGreater(at, 0)
            f.seek(at)
            f.write(bytes([data[at] ^ 0xFF]))
        with self.assertRaises(shardpack.ShardpackError) as cm:
            with shardpack.Loader(bad, batch_size=10, shuffle=False) as l:
                for _ in l:
                    pass
        e = cm.exception
        self.assertEqual(e.name, "SP_ECHECKSUM")
        self.assertIn(".sps", e.message)
        self.assertIn("block", e.message)

    def test_closed_loader(self):
        l = shardpack.Loader(DS)
        l.close()
        l.close()
        with self.assertRaises(ValueError):
            l.next()
        with self.assertRaises(ValueError):
            l.stats()

    def test_foreign_state(self):
        with shardpack.Loader(DS, batch_size=8, seed=1) as a, shardpack.Loader(DS, batch_size=8, seed=2) as b:
            st = a.state_dict()
            with self.assertRaises(shardpack.ShardpackError) as cm:
                b.load_state_dict(st)
            self.assertEqual(cm.exception.name, "SP_EINVAL")
            self.assertIn("seed", cm.exception.message)


class TestBatches(unittest.TestCase):
    def test_identical_to_c_api(self):
        params = dict(batch_size=16, seed=42, threads=2, shuffle_window=3, epochs=2)
        want = c_api_batches(DS, 2, **params)
        with shardpack.Loader(DS, **params) as l:
            got = py_batches(l, 2)
        self.assertEqual(len(got), len(want))
        self.assertEqual(got, want)
        ids = sorted(i for _, ids in got[:len(got) // 2] for i in ids)
        self.assertEqual(ids, list(range(600)))

    def test_contents(self):
        with shardpack.Loader(DS, batch_size=5, seed=9) as l:
            b = l.next()
            self.assertEqual(set(b), {"tokens", "label"})
            self.assertEqual(b["tokens"].shape, (5, SEQ))
            self.assertEqual(b["tokens"].dtype, "uint16")
            self.assertEqual(b["label"].dtype, "int64")
            toks = tensor_bytes(b["tokens"])
            labels = list(memoryview(tensor_bytes(b["label"])).cast("q"))
            self.assertEqual(labels, b.sample_ids())
            row1 = list(memoryview(toks).cast("H")[SEQ:2 * SEQ])
            self.assertEqual(row1, [token_value(labels[1], j) for j in range(SEQ)])
            self.assertEqual(b["tokens"].__dlpack_device__(), (1, 0))
            self.assertEqual(b["tokens"].__array_interface__["typestr"], "<u2")
            with self.assertRaises(AttributeError):
                b["tokens"].__cuda_array_interface__
            with self.assertRaises(KeyError):
                b["nope"]

    def test_resume_state_dict(self):
        params = dict(batch_size=16, seed=5, epochs=2)
        with shardpack.Loader(DS, **params) as l:
            for _ in range(10):
                l.next()
            state = l.state_dict()
            rest = py_batches(l, 1) + py_batches(l, 1)
        with shardpack.Loader(DS, **params) as l:
            l.load_state_dict(state)
            again = py_batches(l, 1) + py_batches(l, 1)
        self.assertEqual(len(rest), 2 * 38 - 10)
        self.assertEqual(again, rest)

    def test_set_epoch(self):
        with shardpack.Loader(DS, batch_size=50, seed=1, epochs=3) as l:
            e0 = py_batches(l, 1)
            e1 = py_batches(l, 1)
            l.set_epoch(1)
            self.assertEqual(py_batches(l, 1), e1)
            l.set_epoch(0)
            self.assertEqual(py_batches(l, 1), e0)
            self.assertNotEqual(e0, e1)
            self.assertEqual(len(l), 12)
            self.assertEqual(l.samples_per_epoch, 600)

    def test_seek_with_previous_batch_alive(self):
        """The usual epoch loop keeps the last batch alive across set_epoch and load_state_dict;
        the new position must not wait for it (small ring: the held slot is needed early)."""
        params = dict(batch_size=8, seed=1, epochs=0, host_memory="4M", prefetch=1)
        with shardpack.Loader(DS, **params) as l:
            want = py_batches(l, 3)
        n = len(want) // 3

        def epoch_of(l):
            got = []
            for b in l:  # rebinds the caller's kind of loop variable, as a training loop does
                got.append((tuple(tensor_bytes(b[f]) for f in b), b.sample_ids()))
            return got, b

        with shardpack.Loader(DS, timeout=20, **params) as l:
            state = l.state_dict()
            b = None
            for epoch in range(3):
                l.set_epoch(epoch)
                got, b = epoch_of(l)
                self.assertEqual(got, want[epoch * n:(epoch + 1) * n], "epoch %d" % epoch)
            # Break out early, holding a batch, and seek again: by set_epoch and by a state.
            for b in l:
                break
            self.assertEqual((b.epoch, b.index), (3, 0))
            l.set_epoch(1)
            got, b = epoch_of(l)
            self.assertEqual(got, want[n:2 * n])
            for b in l:
                break
            self.assertEqual((b.epoch, b.index), (2, 0))
            l.load_state_dict(state)
            got, b = epoch_of(l)
            self.assertEqual(got, want[:n])
            del b


class TestLifetime(unittest.TestCase):
    def test_view_outlives_batch_loader_and_ring(self):
        l = shardpack.Loader(DS, batch_size=8, seed=3, epochs=0, host_memory="4M", prefetch=1,
                             small_field_bytes=0)  # the views hold the ring, as large fields do
        b = l.next()
        view = b["tokens"]
        before = tensor_bytes(view)
        del b
        self.assertEqual(l.stats()["leases"], 1)
        slots = l.stats()["batch_ring_slots"]
        # Twice round the ring while the view holds its slot: any free slot serves any batch, so
        # the ring goes round the view's slot until the view goes.
        n = 0
        while n < 2 * slots:
            b2 = l.next()  # None at each end of epoch
            n += b2 is not None
            del b2
        self.assertEqual(tensor_bytes(view), before)
        l.close()  # deferred: a lease is out
        self.assertTrue(l.closed)
        self.assertIsNotNone(l._h.ptr)
        self.assertEqual(tensor_bytes(view), before)
        cap = view.__dlpack__()
        del view
        gc.collect()
        self.assertIsNotNone(l._h.ptr)  # the unconsumed capsule still holds the lease
        del cap
        self.assertIsNone(l._h.ptr)  # the last reference went: the C loader is closed

    def test_small_fields_hold_no_slot(self):
        """Labels kept from every batch, for three times the ring's slots: no SP_EBUSY, the
        copies right; a large field (over small_field_bytes) still views the slot in place."""
        with shardpack.Loader(DS, batch_size=8, seed=4, host_memory="4M", prefetch=1) as l, \
                shardpack.Loader(DS, batch_size=8, seed=4, small_field_bytes=0) as ref:
            slots = l.stats()["batch_ring_slots"]
            kept, want = [], []
            for _ in range(3 * slots):
                b = l.next()
                if b is None:  # the next epoch
                    b = l.next()
                kept.append(b["label"])
                self.assertTrue(kept[-1].owns_memory)
                self.assertTrue(b["tokens"].owns_memory)  # 528 bytes: under 64 KiB
                b.release()
                r = ref.next() or ref.next()
                want.append(tensor_bytes(r["label"]))
                self.assertFalse(r["label"].owns_memory)
                r.release()
            self.assertGreater(3 * slots, len(l))
            self.assertEqual([tensor_bytes(v) for v in kept], want)
            self.assertEqual(l.stats()["leases"], 0)
        with shardpack.Loader(DS, batch_size=8, small_field_bytes=256) as l:
            b = l.next()
            tok, lab = b["tokens"], b["label"]  # 528 bytes: a view; 64 bytes: a copy
            self.assertEqual((tok.owns_memory, lab.owns_memory), (False, True))
            b.release()
            self.assertEqual(l.stats()["leases"], 1)
            del tok
            self.assertEqual(l.stats()["leases"], 0)
            with self.assertRaises(TypeError):
                shardpack.Loader(DS, small_field_bytes=1.5)
            with self.assertRaises(ValueError):
                shardpack.Loader(DS, small_field_bytes=-1)

    def test_explicit_release(self):
        with shardpack.Loader(DS, batch_size=8, small_field_bytes=0) as l:
            b = l.next()
            v = b["label"]
            b.release()
            self.assertTrue(b.released)
            with self.assertRaises(ValueError):
                b["label"]
            self.assertEqual(l.stats()["leases"], 1)  # v still views it
            del v
            self.assertEqual(l.stats()["leases"], 0)
            with l.next() as b:
                pass
            self.assertEqual(l.stats()["leases"], 0)

    def test_capsule_deleter(self):
        start = _dlpack.live_capsules()
        with shardpack.Loader(DS, batch_size=8) as l:
            b = l.next()
            caps = [b["tokens"].__dlpack__() for _ in range(3)]
            self.assertEqual(_dlpack.live_capsules(), start + 3)
            del caps
            self.assertEqual(_dlpack.live_capsules(), start)
            del b
            self.assertEqual(l.stats()["leases"], 0)


# Views of a batch that a reference cycle keeps until the interpreter's last collection at exit;
# each mode ends the script with the cycle alive. The consumers' deleters then run during (or
# after) shutdown.
_EXIT_SCRIPT = """
import gc, sys, shardpack
mode = sys.argv[2]
L = shardpack.Loader(sys.argv[1], batch_size=8, token_dtype="int32", small_field_bytes=0)
class Holder: pass
h = Holder(); h.me = h
b = L.next()
if mode == "capsule":  # never consumed: the capsule's destructor calls the deleter
    h.view = b["tokens"].__dlpack__()
elif mode == "numpy":
    import numpy; h.view = numpy.from_dlpack(b["tokens"])
elif mode == "torch":
    import torch; h.view = torch.from_dlpack(b["tokens"])
elif mode == "torch_list":
    import torch; lst = [torch.from_dlpack(b["label"])]; lst.append(lst)
elif mode == "torch_gc_off":
    import torch; gc.disable(); h.view = torch.from_dlpack(b["tokens"])
del b
"""


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


class TestExit(unittest.TestCase):
    def test_views_in_cycles_at_exit(self):
        """A DLPack view (or an unconsumed capsule) alive in a cycle at exit: the process ends with
        status 0 and says nothing (it used to call a freed ctypes trampoline: SIGSEGV)."""
        modes = ["capsule"]
        if _importable("numpy"):
            modes.append("numpy")
        if _importable("torch"):
            modes += ["torch", "torch_list", "torch_gc_off"]
        for mode in modes:
            with self.subTest(mode=mode):
                r = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, DS, mode],
                                   capture_output=True, text=True, timeout=120,
                                   cwd=os.path.dirname(shardpack.__path__[0]))
                self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_deleters_work_before_exit(self):
        """The exit-safe deleter still returns the lease at once while the program runs."""
        with shardpack.Loader(DS, batch_size=8, small_field_bytes=0) as l:
            cap = l.next()["tokens"].__dlpack__()
            self.assertEqual(l.stats()["leases"], 1)
            del cap
            self.assertEqual(l.stats()["leases"], 0)


class TestWriter(unittest.TestCase):
    def test_round_trip(self):
        path = os.path.join(TMP.path, "rt.sp")
        fields = [("blob", "bytes"), ("x", "tensor", "float32", (2, 2)), ("label", "label"),
                  ("tok", "tokens", "uint32", (4,))]
        samples = [(bytes(range(i % 256)) * (i % 3), [float(i), 0.5, -1.0, 2.0 * i], i - 50,
                    [i, i + 1, 1 << 31, 7]) for i in range(300)]
        with shardpack.Writer(path, fields, block_size="4K", threads=1) as w:
            w.set_meta("source", "unit test")
            for s in samples[:150]:
                w.add(*s)
            for s in samples[150:]:
                w.add(blob=s[0], x=s[1], label=s[2], tok=s[3])
            self.assertEqual(w.stats()["samples"], 300)
        self.assertIsNone(w._w)
        with shardpack.Dataset(path) as d:
            self.assertEqual(len(d), 300)
            self.assertEqual(d.meta()["source"], b"unit test")
            self.assertEqual([f.name for f in d.fields], ["blob", "x", "label", "tok"])
            for i in (0, 1, 2, 149, 150, 299):
                s = d[i]
                self.assertEqual(s["blob"], samples[i][0])
                self.assertEqual(list(memoryview(s["x"]).cast("f")), samples[i][1])
                self.assertEqual(memoryview(s["label"]).cast("q")[0], samples[i][2])
                self.assertEqual(list(memoryview(s["tok"]).cast("I")), samples[i][3])

    def test_writer_errors(self):
        path = os.path.join(TMP.path, "werr.sp")
        with self.assertRaises(ValueError):
            shardpack.Writer(path, [("x", "tensor")])  # no dtype
        with self.assertRaises(TypeError):
            shardpack.Writer(path, [("l", "label")], batch_size=3)  # a loader parameter
        with self.assertRaises(ValueError) as cm:
            shardpack.Writer(path, [("l", "label")], level=99)
        self.assertIn("level", str(cm.exception))
        w = shardpack.Writer(path, [("t", "tokens", "uint16", (4,))])
        with self.assertRaises(shardpack.ShardpackError) as cm:
            w.add(b"\0" * 6)
        self.assertEqual(cm.exception.name, "SP_ESCHEMA")
        with self.assertRaises(TypeError):
            w.add(b"\0" * 8, b"")
        with self.assertRaises(RuntimeError):
            with w:
                w.add([1, 2, 3, 4])
                raise RuntimeError("abandon")
        self.assertFalse(os.path.exists(path))  # nothing published


if __name__ == "__main__":
    unittest.main()
