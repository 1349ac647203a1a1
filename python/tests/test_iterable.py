"""shardpack.torch with torch's DataLoader: ShardpackIterable opens a loader in each worker and the workers split the data (every sample once per epoch, 2 workers, pin_memory; a new epoch for each `for` without set_epoch; a dataset with fewer blocks than workers refused naming them); TorchLoader is taken as a dataset in-process, and names ShardpackIterable in a worker."""

import os
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens, need

torch = need("torch")
from torch.utils.data import DataLoader  # noqa: E402

from shardpack.torch import ShardpackIterable, TorchLoader  # noqa: E402

N, BATCH = 440, 11  # 8 blocks of 55 samples: 2, 4 and 8 ranks hold equal shares, none dropped


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "it.sp"), n=N)
    with shardpack.Dataset(DS) as d:
        assert d.block_samples() == [55] * 8, d.block_samples()


def tearDownModule():
    TMP.cleanup()


def epoch_ids(dl):
    ids = []
    for _x, _y, i in dl:
        ids.extend(i)
    return ids


class Iterable(unittest.TestCase):
    def test_two_workers_each_sample_once_per_epoch(self):
        ds = ShardpackIterable(DS, with_ids=True, batch_size=BATCH, seed=7, threads=1)
        dl = DataLoader(ds, batch_size=None, num_workers=2, pin_memory=torch.cuda.is_available())
        orders = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            ids = epoch_ids(dl)
            self.assertEqual(sorted(ids), list(range(N)), "epoch %d" % epoch)
            orders.append(ids)
        self.assertNotEqual(orders[0], orders[1])
        ds.set_epoch(0)
        self.assertEqual(epoch_ids(dl), orders[0])  # the same epoch, the same batches

    def test_fors_without_set_epoch_are_new_epochs(self):
        # Workers are started afresh for each `for` with a copy of the dataset: without set_epoch
        # every `for` was epoch 0 again (the same order, the same crops). Now a new epoch each
        # time, the same sequence again after torch.manual_seed; persistent workers go on too.
        def run(**kw):
            ds = ShardpackIterable(DS, with_ids=True, batch_size=BATCH, seed=7, threads=1)
            dl = DataLoader(ds, batch_size=None, num_workers=2, **kw)
            return [epoch_ids(dl) for _ in range(2)]
        torch.manual_seed(5)
        a = run()
        for ids in a:
            self.assertEqual(sorted(ids), list(range(N)))
        self.assertTrue(a[0] != a[1], "the same order twice")
        torch.manual_seed(5)
        self.assertEqual(run(), a)
        p = run(persistent_workers=True)
        self.assertEqual(sorted(p[1]), list(range(N)))
        self.assertTrue(p[0] != p[1], "the same order twice (persistent workers)")

    def test_ranks_and_workers_split(self):
        seen = []
        for rank in range(2):
            ds = ShardpackIterable(DS, with_ids=True, rank=rank, world_size=2, batch_size=BATCH,
                                   seed=7, threads=1)
            seen.extend(epoch_ids(DataLoader(ds, batch_size=None, num_workers=2)))
        self.assertEqual(sorted(seen), list(range(N)))

    def test_in_process_fors_go_on(self):
        ds = ShardpackIterable(DS, with_ids=True, batch_size=BATCH, seed=7)
        dl = DataLoader(ds, batch_size=None, num_workers=0)
        a, b = epoch_ids(dl), epoch_ids(dl)
        self.assertEqual(sorted(a), list(range(N)))
        self.assertEqual(sorted(b), list(range(N)))
        self.assertNotEqual(a, b)  # epoch 1 after epoch 0
        with self.assertRaises(TypeError):
            ShardpackIterable(DS, epochs=2)

    def test_fewer_blocks_than_workers_splits_samples(self):
        # A small pack is one block: num_workers=2 makes two loaders (ranks) share it. The split
        # is by sample (docs/loader.md, partitions), so both workers run and every sample comes
        # once, where a split by blocks refused ("fewer than world size 2").
        one = make_tokens(os.path.join(TMP.path, "one.sp"), n=20, block_size="1M")
        with shardpack.Dataset(one) as d:
            self.assertEqual(d.num_blocks, 1)
        ds = ShardpackIterable(one, batch_size=4, threads=1, with_ids=True)
        self.assertEqual(sorted(epoch_ids(DataLoader(ds, batch_size=None, num_workers=2))), list(range(20)))
        ds = ShardpackIterable(os.path.join(TMP.path, "none.sp"), batch_size=4, world_size=2, rank=0)
        with self.assertRaises(shardpack.ShardpackError) as cm:  # other errors pass unchanged
            next(iter(ds))
        self.assertEqual(cm.exception.name, "SP_ENOENT")
        self.assertEqual(len(list(DataLoader(ds.__class__(one, batch_size=4), batch_size=None,
                                             num_workers=1))), 5)

    def test_torch_loader_as_a_dataset(self):
        with TorchLoader(DS, batch_size=BATCH, seed=7, with_ids=True) as tl:
            dl = DataLoader(tl, batch_size=None)
            self.assertEqual(sorted(epoch_ids(dl)), list(range(N)))
            self.assertEqual(sorted(epoch_ids(dl)), list(range(N)))
            with self.assertRaises(RuntimeError) as cm:
                for _ in DataLoader(tl, batch_size=None, num_workers=1):
                    pass
            self.assertIn("ShardpackIterable", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
