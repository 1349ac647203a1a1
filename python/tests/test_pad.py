"""rank_pad: the ranks' shares of an epoch are filled by repeating samples instead of dropping
them, and Batch.padding() marks the repeats, so the rows it does not mark hold every sample once."""

import os
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens


class RankPad(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir()
        cls.path = os.path.join(cls.tmp.path, "t")
        make_tokens(cls.path, n=301)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def epoch(self, world, **kw):
        real, pads, counts = [], [], []
        for rank in range(world):
            with shardpack.Loader(self.path, batch_size=8, seed=3, rank=rank, world_size=world, **kw) as l:
                n, before = 0, len(pads)
                for b in l:
                    for i, p in zip(b.sample_ids(), b.padding()):
                        (pads if p else real).append(i)
                    n += 1
                counts.append(n)
                st = l.stats()
                self.assertEqual(st["samples_padded"], len(pads) - before)
                self.assertEqual(st["samples_padded_per_epoch"], len(pads) - before)
        self.assertEqual(len(set(counts)), 1)
        return real, pads

    def test_padded(self):
        for world in (1, 2, 3, 4, 8):
            real, pads = self.epoch(world, rank_pad=True)
            self.assertEqual(sorted(real), list(range(301)), world)
            self.assertEqual(len(pads), -301 % world, world)
            self.assertTrue(set(pads) <= set(real))

    def test_dropped_without(self):
        real, pads = self.epoch(4)
        self.assertEqual(pads, [])
        self.assertEqual(len(real), 300)  # 301 = 4 x 75 + 1: one sample goes


if __name__ == "__main__":
    unittest.main()
