"""Writer and Dataset shared between threads (every sample added once and whole, reads that match one thread's), calls after Dataset.close(), and metadata keys that are not UTF-8."""

import os
import random
import struct
import threading
import unittest

import shardpack
from shardpack import _lib, writer
from sp_testutil import TempDir, make_tokens

THREADS = 4
PER_THREAD = 1000
WIDTH = 16  # int32 values per sample


def setUpModule():
    global TMP
    TMP = TempDir()


def tearDownModule():
    TMP.cleanup()


def run_threads(target, n):
    """Runs target(k) on n threads at once; returns the exceptions they raised."""
    errors, start = [], threading.Barrier(n)

    def body(k):
        try:
            start.wait()
            target(k)
        except BaseException as e:  # reported by the test, not lost in a thread
            errors.append(e)

    ts = [threading.Thread(target=body, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    if any(t.is_alive() for t in ts):
        errors.append(AssertionError("a thread did not finish within 120 s"))
    return errors


class TestWriterThreads(unittest.TestCase):
    def test_add_from_several_threads(self):
        # Small blocks, so that blocks are sealed and handed to the compression threads while
        # other threads add: every sample must land once, its fields from the same add().
        path = os.path.join(TMP.path, "wthreads.sp")
        w = shardpack.Writer(path, [("x", "tensor", "int32", (WIDTH,)), ("label", "label")],
                             block_size="4K", threads=2)

        def add(k):
            for j in range(PER_THREAD):
                i = k * PER_THREAD + j
                w.add(struct.pack("<%di" % WIDTH, *([i] * WIDTH)), i)

        self.assertEqual(run_threads(add, THREADS), [])
        st = w.finish()
        n = THREADS * PER_THREAD
        self.assertEqual(st["samples"], n)
        seen = [0] * n
        with shardpack.Dataset(path) as d:
            self.assertEqual(len(d), n)
            for s in range(n):
                row = d[s]
                label = struct.unpack("<q", row["label"])[0]
                xs = struct.unpack("<%di" % WIDTH, row["x"])
                self.assertEqual(xs, (label,) * WIDTH, "sample %d: x and label of different adds" % s)
                seen[label] += 1
        self.assertEqual([i for i, c in enumerate(seen) if c != 1], [], "samples not written exactly once")

    def test_calls_after_finish_from_other_threads(self):
        # A finish() between other threads' adds: each later add is refused, none touches the
        # freed writer.
        path = os.path.join(TMP.path, "wfinish.sp")
        w = shardpack.Writer(path, [("label", "label")], block_size="4K")
        finished = threading.Event()
        refused = []

        def body(k):
            if k == 0:
                for i in range(200):
                    w.add(i)
                w.finish()
                finished.set()
                return
            finished.wait(60)
            try:
                w.add(k)
            except ValueError as e:
                refused.append(str(e))

        self.assertEqual(run_threads(body, THREADS), [])
        self.assertEqual(len(refused), THREADS - 1)
        self.assertIn("finished or closed", refused[0])
        with shardpack.Dataset(path) as d:
            self.assertEqual(len(d), 200)

    def test_call_from_inside_a_call_is_refused(self):
        # What a signal handler calling close() while add() is in the C library would do: refused,
        # the writer left whole (no deadlock, nothing freed under the call).
        path = os.path.join(TMP.path, "wreenter.sp")
        w = shardpack.Writer(path, [("label", "label")])
        seen = []
        real = _lib.lib.sp_writer_add

        def add_(ptr, vals, n):
            try:
                w.close()
            except RuntimeError as e:
                seen.append(str(e))
            return real(ptr, vals, n)

        _lib.lib.sp_writer_add = add_
        try:
            w.add(7)
        finally:
            _lib.lib.sp_writer_add = real
        self.assertEqual(len(seen), 1)
        self.assertIn("from inside another call on the same thread", seen[0])
        w.add(8)
        self.assertEqual(w.finish()["samples"], 2)


class TestDatasetThreads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = make_tokens(os.path.join(TMP.path, "dthreads.sp"), n=3000)
        with shardpack.Dataset(cls.path) as d:
            cls.expected = [d[i] for i in range(len(d))]
            assert d.num_blocks > 20, d.num_blocks

    def test_random_reads_from_several_threads(self):
        # Each thread jumps between blocks, so the cached block is replaced (and the old one freed)
        # while other threads read rows out of it.
        with shardpack.Dataset(self.path) as d:
            wrong = []

            def read(k):
                rnd = random.Random(k)
                for _ in range(3000):
                    i = rnd.randrange(len(d))
                    if d[i] != self.expected[i]:
                        wrong.append(i)

            self.assertEqual(run_threads(read, THREADS), [])
            self.assertEqual(wrong, [])

    def test_close_while_other_threads_read(self):
        d = shardpack.Dataset(self.path)
        stop = threading.Event()
        outcomes = []

        def read(k):
            rnd = random.Random(k)
            try:
                while True:
                    i = rnd.randrange(len(self.expected))
                    if d[i] != self.expected[i]:
                        outcomes.append("wrong sample %d" % i)
                        return
            except ValueError as e:
                outcomes.append(str(e))

        def closer(k):
            if k == 0:
                stop.wait(0.2)
                d.close()
            else:
                read(k)

        self.assertEqual(run_threads(closer, THREADS), [])
        self.assertEqual(outcomes, ["shardpack: the dataset is closed"] * (THREADS - 1))

    def test_calls_after_close_raise(self):
        d = shardpack.Dataset(self.path)
        d.close()
        d.close()  # twice is fine
        for call in (len, lambda d: d.meta(), lambda d: d[0], lambda d: d.num_blocks,
                     lambda d: d.num_shards, lambda d: d.fingerprint, lambda d: d.block_samples()):
            with self.assertRaises(ValueError) as cm:
                call(d)
            self.assertIn("the dataset is closed", str(cm.exception))


class TestMetaKeys(unittest.TestCase):
    def test_key_decoding_keeps_every_byte(self):
        # The decoding Dataset.meta() uses: UTF-8 keys as they are; any other byte comes back as a
        # lone surrogate, and encoding with surrogateescape gives the stored bytes again.
        self.assertEqual(writer._meta_key(b"source"), "source")
        self.assertEqual(writer._meta_key("caf\u00e9".encode()), "caf\u00e9")
        raw = b"\xff\x1b]0;odd\x07\nkey"
        key = writer._meta_key(raw)
        self.assertIsInstance(key, str)
        self.assertEqual(key.encode("utf-8", "surrogateescape"), raw)

    def test_writer_refuses_a_key_that_is_not_utf8(self):
        # Such keys reach Dataset.meta() only from files written elsewhere (test_hostile's
        # evil_meta opens and verifies one; the decoding is the test above). This library's
        # writer refuses them, naming the key escaped, and goes on.
        path = os.path.join(TMP.path, "oddmeta.sp")
        raw = b"\xff\x1b]0;odd\x07\nkey"
        w = shardpack.Writer(path, [("label", "label")])
        try:
            rc = _lib.lib.sp_writer_set_meta(w._w, raw, b"v", 1)
            self.assertEqual(rc, _lib.SP_EINVAL)
            msg = _lib.lib.sp_writer_errmsg(w._w).decode()
            self.assertIn("\\xff", msg)
            self.assertNotIn("\x1b", msg)
            w.set_meta("plain", "p")
            w.add(1)
            w.finish()
        finally:
            w.close()
        with shardpack.Dataset(path) as d:
            self.assertEqual(d.meta()["plain"], b"p")


if __name__ == "__main__":
    unittest.main()
