"""The trace keyword: a str or os.PathLike path, the timeline written at close as JSON with a track per thread; None leaves tracing off."""

import json
import os
import pathlib
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tok.sp"), n=256)


def tearDownModule():
    TMP.cleanup()


class Trace(unittest.TestCase):
    def run_loader(self, **kw):
        with shardpack.Loader(DS, batch_size=8, threads=2, timeout=60, **kw) as l:
            n = sum(b.size for b in l)
            stats = l.stats()
        self.assertEqual(n, 256)
        return stats

    def test_path_like(self):
        path = pathlib.Path(TMP.path) / "py-trace.json"
        stats = self.run_loader(trace=path)
        self.assertGreater(stats["trace_events"], 0)
        self.assertEqual(stats["trace_events_dropped"], 0)
        with open(path) as f:
            doc = json.load(f)
        tracks = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
        self.assertTrue({"reader", "consumer (next)", "worker 0", "worker 1"} <= tracks, tracks)
        self.assertTrue(any(e["name"] == "block decode" and e["ph"] == "X" for e in doc["traceEvents"]))

    def test_none_is_off(self):
        os.environ.pop("SHARDPACK_TRACE", None)
        self.assertEqual(self.run_loader(trace=None)["trace_events"], 0)
        self.assertIsNone(shardpack.params()["trace"].default)
        self.assertEqual(shardpack.params()["trace"].type, "str")

    def test_bad_type(self):
        with self.assertRaises(TypeError):
            shardpack.Loader(DS, trace=3)


if __name__ == "__main__":
    unittest.main()
