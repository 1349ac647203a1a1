"""Loader over a weighted mixture: Loader([(path, weight), ...]) delivers each source's share, says
how many came from each, refuses sources of different schemas, and takes a URL as a source (a real
nginx from tests/remote/servers.py) with the batches of its local copy."""

import os
import sys
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens, tensor_bytes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "remote"))
import servers  # noqa: E402


class Mixture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir()
        cls.a = os.path.join(cls.tmp.path, "a")
        cls.b = os.path.join(cls.tmp.path, "b")
        make_tokens(cls.a, n=700)
        make_tokens(cls.b, n=500, dataset_id=3)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_shares(self):
        with shardpack.Loader([(self.a, 0.7), (self.b, 0.3)], batch_size=50, seed=5) as l:
            ids = [i for b in l for i in b.sample_ids()]
            st = l.stats()
        # M = min(700 / 0.7, 500 / 0.3) = 1000: all 700 of a, 300 of b
        self.assertEqual(len(ids), 1000)
        self.assertEqual(len(set(ids)), 1000)
        self.assertEqual(sum(1 for i in ids if i < 700), 700)
        self.assertEqual(st["source_samples"], [700, 300])
        self.assertEqual(l.path, [self.a, self.b])

    def test_epoch_samples(self):
        # mix_epoch_samples: 2,000 samples, 1,400 of a (all 700 twice) and 600 of b (500 and 100 again)
        with shardpack.Loader([(self.a, 0.7), (self.b, 0.3)], batch_size=50, seed=5, mix_epoch_samples=2000) as l:
            self.assertEqual(l.samples_per_epoch, 2000)
            ids = [i for b in l for i in b.sample_ids()]
            st = l.stats()
        self.assertEqual(len(ids), 2000)
        self.assertEqual(st["source_samples"], [1400, 600])
        self.assertTrue(all(ids.count(i) == 2 for i in range(0, 700, 37)))
        self.assertEqual(len(set(i for i in ids if i >= 700)), 500)

    def test_refused(self):
        other = os.path.join(self.tmp.path, "other")
        make_tokens(other, n=50, seq=5)
        with self.assertRaises(shardpack.ShardpackError) as e:
            shardpack.Loader([(self.a, 1), (other, 1)])
        self.assertIn("different schemas", e.exception.message)
        with self.assertRaises(shardpack.ShardpackError):
            shardpack.Loader([(self.a, 1), (self.b, 0)])

    def test_url_source(self):
        def batches(src):
            with shardpack.Loader(src, batch_size=40, seed=9, epochs=2) as l:
                return [(tuple(tensor_bytes(b[n]) for n in b), b.sample_ids()) for b in l]

        state = os.path.join(self.tmp.path, "servers")
        try:
            with servers.nginx_server(self.tmp.path, state) as env:
                url = env["SP_TEST_HTTP_URL"] + "/b"
                got = batches([(self.a, 0.7), (url, 0.3)])
        except servers.Missing as e:
            self.skipTest(str(e))
        want = batches([(self.a, 0.7), (self.b, 0.3)])
        self.assertGreater(len(want), 20)
        self.assertEqual(got, want)


if __name__ == "__main__":
    unittest.main()
