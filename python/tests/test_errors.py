"""ShardpackError keeps its code, name and message through pickle, multiprocessing and a DataLoader worker's re-raise, and is rebuilt from a text naming the error."""

import multiprocessing
import os
import pickle
import unittest

import shardpack
from shardpack import _lib
from sp_testutil import TempDir


def setUpModule():
    global TMP, MISSING
    TMP = TempDir()
    MISSING = os.path.join(TMP.path, "missing.sp")


def tearDownModule():
    TMP.cleanup()


def open_missing(_):
    shardpack.Loader(MISSING)


class Errors(unittest.TestCase):
    def raised(self):
        with self.assertRaises(shardpack.ShardpackError) as cm:
            shardpack.Loader(MISSING)
        return cm.exception

    def test_pickle_keeps_code_name_message(self):
        e = self.raised()
        self.assertEqual(e.code, _lib.SP_ENOENT)
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            r = pickle.loads(pickle.dumps(e, proto))
            self.assertIs(type(r), shardpack.ShardpackError)
            self.assertEqual((r.code, r.name, r.message, str(r)), (e.code, e.name, e.message, str(e)))

    def test_rebuilt_from_text(self):
        r = shardpack.ShardpackError("Caught ShardpackError in worker.\nshardpack.ShardpackError: "
                                     "SP_ECHECKSUM: a.sps block 3: checksum mismatch")
        self.assertEqual((r.code, r.name), (-9, "SP_ECHECKSUM"))
        self.assertIn("block 3", r.message)
        r = shardpack.ShardpackError("no name in here")
        self.assertEqual((r.code, r.name, str(r)), (None, "SP_UNKNOWN", "no name in here"))
        self.assertEqual(pickle.loads(pickle.dumps(r)).message, "no name in here")
        with self.assertRaises(TypeError):
            shardpack.ShardpackError(1.5, "x")

    def test_multiprocessing_hands_it_on(self):
        with multiprocessing.get_context("fork").Pool(1) as pool:
            with self.assertRaises(shardpack.ShardpackError) as cm:
                # With a timeout: an error that cannot be unpickled stops the pool's result
                # thread, and a plain map() would wait for ever.
                pool.map_async(open_missing, [0]).get(timeout=60)
        self.assertEqual((cm.exception.code, cm.exception.name), (_lib.SP_ENOENT, "SP_ENOENT"))
        self.assertIn("missing.sp", cm.exception.message)

    def test_dataloader_reraise(self):
        try:
            import torch.utils.data as tud
        except ImportError as e:
            self.skipTest("torch is not installed (%s)" % e)

        class Opens(tud.IterableDataset):
            def __iter__(self):
                return iter(shardpack.Loader(MISSING))

        dl = tud.DataLoader(Opens(), batch_size=None, num_workers=2)
        with self.assertRaises(shardpack.ShardpackError) as cm:
            for _ in dl:
                pass
        e = cm.exception
        self.assertEqual((e.code, e.name), (_lib.SP_ENOENT, "SP_ENOENT"))
        self.assertIn("missing.sp", e.message)
        self.assertIn("worker process", e.message)


if __name__ == "__main__":
    unittest.main()
