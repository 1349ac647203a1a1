"""Loader.epoch_order(epoch): this rank's epoch as sample ids, in the order the batches deliver
them (a rank_pad repeat with bit 63 set), from the order alone: the loader's position stays."""

import array
import os
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens

PAD = 1 << 63


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "eo.sp"), n=301)


def tearDownModule():
    TMP.cleanup()


def delivered(loader):
    """The ids of the current epoch's batches, repeats marked with bit 63."""
    out = []
    while True:
        b = loader.next()
        if b is None:
            return out
        with b:
            out += [i | PAD if p else i for i, p in zip(b.sample_ids(), b.padding())]


class EpochOrder(unittest.TestCase):
    def check(self, world, epochs=(0, 1), **kw):
        for rank in range(world):
            with shardpack.Loader(DS, batch_size=8, seed=5, rank=rank, world_size=world, epochs=max(epochs) + 1,
                                  **kw) as l:
                for e in epochs:
                    l.set_epoch(e)
                    first = l.epoch_order(e)  # before the epoch's first batch: nothing moves
                    self.assertIsInstance(first, array.array)
                    self.assertEqual(first.typecode, "Q")
                    got = delivered(l)
                    self.assertEqual(list(first), got, (world, rank, e, kw))
                    self.assertEqual(len(first), l.samples_per_epoch)
                    self.assertEqual(l.epoch_order(e), first)

    def test_one_process(self):
        self.check(1)

    def test_ranks(self):
        self.check(3)
        self.check(4, shuffle_window=32)

    def test_rank_pad(self):
        self.check(4, rank_pad=True)
        with shardpack.Loader(DS, batch_size=1, rank=1, world_size=4, rank_pad=True) as l:
            ids = l.epoch_order(0)
        pads = [i & ~PAD for i in ids if i & PAD]
        self.assertEqual(len(pads), 1)  # 301 = 4 x 75 + 1: ranks 1-3 repeat one sample
        self.assertIn(pads[0], [i for i in ids if not i & PAD])

    def test_unshuffled(self):
        with shardpack.Loader(DS, batch_size=10, shuffle=False) as l:
            self.assertEqual(list(l.epoch_order(0)), list(range(301)))  # the short last batch too

    def test_numpy_view(self):
        try:
            import numpy
        except ImportError:
            self.skipTest("numpy is not installed")
        with shardpack.Loader(DS, batch_size=8, seed=5) as l:
            ids = l.epoch_order(2)
            a = numpy.frombuffer(ids, dtype=numpy.uint64)
            self.assertEqual(a.tolist(), list(ids))

    def test_bad_epoch(self):
        with shardpack.Loader(DS, batch_size=8) as l:
            self.assertRaises(TypeError, l.epoch_order, "1")
            self.assertRaises(TypeError, l.epoch_order, 1.0)
            self.assertRaises(ValueError, l.epoch_order, -1)
            self.assertRaises(ValueError, l.epoch_order, 1 << 63)
            self.assertEqual(l.epoch_order((1 << 63) - 1).typecode, "Q")
        self.assertRaises(ValueError, l.epoch_order, 0)  # closed


if __name__ == "__main__":
    unittest.main()
