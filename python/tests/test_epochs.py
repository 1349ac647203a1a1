"""Epochs as PyTorch users expect: each `for` is one whole epoch, the next `for` the next one; set_epoch as DistributedSampler's; a `for` after a break starts the next epoch; resume."""

import os
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens

N, BATCH = 200, 16


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "ep.sp"), n=N)


def tearDownModule():
    TMP.cleanup()


def one_for(loader, stop=None):
    """[(epoch, index, sample ids)] of one `for` over loader; stop: break after that many."""
    out = []
    for b in loader:
        out.append((b.epoch, b.index, b.sample_ids()))
        b.release()
        if stop is not None and len(out) == stop:
            break
    return out


def ids_of(batches):
    return sorted(i for _, _, ids in batches for i in ids)


def reference(epoch):
    """Epoch `epoch` as a fresh loader delivers it after set_epoch(epoch)."""
    with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
        l.set_epoch(epoch)
        return one_for(l)


class Epochs(unittest.TestCase):
    def test_each_for_is_one_epoch_without_end(self):
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            nb = len(l)
            for e in range(3):
                got = one_for(l)
                self.assertEqual(len(got), nb, "epoch %d" % e)
                self.assertEqual({ep for ep, _, _ in got}, {e})
                self.assertEqual([i for _, i, _ in got], list(range(nb)))
                self.assertEqual(ids_of(got), list(range(N)))
            self.assertFalse(l.done)

    def test_for_after_break_starts_the_next_epoch(self):
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            part = one_for(l, stop=3)
            self.assertEqual([(e, i) for e, i, _ in part], [(0, 0), (0, 1), (0, 2)])
            self.assertEqual(one_for(l), reference(1))
            # A break after the last batch, before the end was seen: the next epoch all the same.
            whole = one_for(l, stop=len(l))
            self.assertEqual({e for e, _, _ in whole}, {2})
            self.assertEqual(one_for(l), reference(3))

    def test_set_epoch_as_distributed_sampler(self):
        ref5 = reference(5)
        self.assertNotEqual([ids for _, _, ids in ref5], [ids for _, _, ids in reference(0)])
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            one_for(l, stop=2)
            for e in (5, 1, 5, 0):  # any epoch, any order, the same batches for the same epoch
                l.set_epoch(e)
                self.assertEqual(one_for(l), reference(e) if e != 5 else ref5)
            # The usual loop: set_epoch(e) before each `for`, after a whole epoch too.
            for e in range(2):
                l.set_epoch(e)
                self.assertEqual(one_for(l), reference(e))
            for bad, exc in ((-1, ValueError), (1.7, TypeError), ("1", TypeError), (True, TypeError)):
                with self.assertRaises(exc, msg=repr(bad)):
                    l.set_epoch(bad)

    def test_epochs_bounds_the_fors(self):
        with shardpack.Loader(DS, batch_size=BATCH, seed=9, epochs=2) as l:
            self.assertEqual(len(one_for(l)), len(l))
            self.assertEqual(len(one_for(l, stop=1)), 1)
            self.assertEqual(one_for(l), [])  # the break ended epoch 1, the last one
            self.assertTrue(l.done)
            l.set_epoch(1)
            self.assertEqual(one_for(l), reference(1))
            self.assertEqual(one_for(l), [])

    def test_resume_continues_the_saved_epoch(self):
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            first = one_for(l)
            taken = [l.next() for _ in range(4)]  # four batches of epoch 1, then a checkpoint
            state = l.state_dict()
            for b in taken:
                b.release()
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            l.load_state_dict(state)
            rest = one_for(l)  # the rest of epoch 1, from its fifth batch
            self.assertEqual(rest, reference(1)[4:])
            self.assertEqual(one_for(l), reference(2))
        self.assertEqual(first, reference(0))
        # A state saved at an epoch's end resumes at the next epoch's start.
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            one_for(l)
            state = l.state_dict()
        with shardpack.Loader(DS, batch_size=BATCH, seed=9) as l:
            l.load_state_dict(state)
            self.assertEqual(one_for(l), reference(1))

    def test_torch_loader_epochs(self):
        try:
            from shardpack.torch import TorchLoader
        except ImportError as e:
            self.skipTest("torch is not installed (%s)" % e)
        with TorchLoader(DS, batch_size=BATCH, seed=9) as tl:
            n = len(tl)
            for _ in range(2):
                self.assertEqual(sum(1 for _ in tl), n)
            for i, _ in enumerate(tl):
                if i == 1:
                    break
            counted = [x.shape[0] for x, _ in tl]
            self.assertEqual(len(counted), n)
            self.assertEqual(sum(counted), N)


if __name__ == "__main__":
    unittest.main()
