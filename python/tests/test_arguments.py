"""Path, timeout and integer arguments: bytes, os.PathLike and non-UTF-8 paths reach C intact; bad timeouts, epochs and states are refused."""

import math
import numbers
import os
import pathlib
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens

# A Latin-1 name: not valid UTF-8, so os.listdir returns it with a surrogate escape ('\udce9').
LATIN1 = b"lat\xe9.sp"


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tok.sp"), n=64)


def tearDownModule():
    TMP.cleanup()


def count_samples(path):
    with shardpack.Dataset(path) as d:
        n = len(d)
    with shardpack.Loader(path, batch_size=8, timeout=60) as l:
        rows = sum(b.size for b in l)
    return n, rows


class TestPaths(unittest.TestCase):
    def test_bytes_and_pathlike(self):
        for path in (DS.encode(), pathlib.Path(DS), pathlib.PurePosixPath(DS)):
            self.assertEqual(count_samples(path), (64, 64), repr(path))
        old = os.getcwd()
        os.chdir(TMP.path)  # the old code wrote into a relative directory named "b'"
        try:
            out = os.path.join(TMP.path, "bw.sp").encode()
            with shardpack.Writer(out, [("x", "label")]) as w:
                for i in range(5):
                    w.add(i)
            self.assertEqual(w.path, out)
            self.assertFalse(os.path.exists(os.path.join(TMP.path, "b'")))
        finally:
            os.chdir(old)
        self.assertEqual(count_samples(out), (5, 5))

    def test_name_that_is_not_utf8(self):
        out = os.path.join(TMP.path.encode(), LATIN1)
        try:
            with shardpack.Writer(out, [("x", "label")]) as w:
                for i in range(7):
                    w.add(i)
        except shardpack.ShardpackError as e:
            if "Invalid or incomplete multibyte" in str(e) or "Illegal byte" in str(e):
                self.skipTest("this file system refuses non-UTF-8 names: %s" % e)
            raise
        name = [n for n in os.listdir(TMP.path) if n.startswith("lat")]
        self.assertEqual(name, ["lat\udce9.sp"])
        path = os.path.join(TMP.path, name[0])
        self.assertEqual(count_samples(path), (7, 7))
        self.assertEqual(count_samples(pathlib.Path(path)), (7, 7))
        self.assertEqual(count_samples(out), (7, 7))

    def test_bad_paths(self):
        for bad in ([DS], None, 3):
            with self.assertRaises(TypeError) as cm:
                shardpack.Loader(bad, batch_size=8)
            self.assertIn("Loader() path", str(cm.exception))
        for entry in (shardpack.Loader, shardpack.Dataset):
            with self.assertRaises(ValueError) as cm:
                entry(DS + "\0junk")
            self.assertIn("NUL", str(cm.exception))
        with self.assertRaises(TypeError):
            shardpack.Writer(None, [("x", "label")])


class TestTimeouts(unittest.TestCase):
    def test_negative_and_nan_are_refused(self):
        for bad in (-3, -0.001, float("nan"), -math.inf):
            with self.assertRaises(ValueError) as cm:
                shardpack.Loader(DS, batch_size=8, timeout=bad)
            self.assertIn("timeout", str(cm.exception))
        for bad in ("5", True):
            with self.assertRaises(TypeError):
                shardpack.Loader(DS, batch_size=8, timeout=bad)
        with shardpack.Loader(DS, batch_size=8) as l:
            with self.assertRaises(ValueError) as cm:
                l.next(timeout=-1)
            self.assertIn("next()", str(cm.exception))
            self.assertIsNotNone(l.next(timeout=60))  # the refusal left the loader usable

    def test_none_zero_and_infinity_keep_their_meaning(self):
        for timeout in (None, math.inf):
            with shardpack.Loader(DS, batch_size=8, timeout=timeout) as l:
                self.assertEqual(sum(b.size for b in l), 64)
        with shardpack.Loader(DS, batch_size=8, timeout=0) as l:
            # 0 does not wait: a batch if one is ready, else SP_ETIMEDOUT at once.
            try:
                b = l.next()
            except shardpack.ShardpackError as e:
                self.assertEqual(e.name, "SP_ETIMEDOUT")
            else:
                self.assertEqual(b.size, 8)
            rows = sum(b.size for b in iter(lambda: l.next(timeout=60), None))
            self.assertIn(rows, (56, 64))


class _Index:
    """An integral type that is not int (as numpy.int64 is)."""

    def __init__(self, v):
        self.v = v

    def __index__(self):
        return self.v

    def __int__(self):
        return self.v


numbers.Integral.register(_Index)


class TestIntegerArguments(unittest.TestCase):
    def test_set_epoch_takes_integers_in_range(self):
        with shardpack.Loader(DS, batch_size=8, seed=3, epochs=0) as l:
            l.set_epoch(1)
            b = l.next(timeout=60)
            self.assertEqual((b.epoch, b.index), (1, 0))
            # Values ctypes used to wrap or truncate: 2**64 restarted epoch 0, -1 became
            # 2**64 - 1, 1.5 and '3' were taken as 1 and 3.
            for bad in (1 << 64, 1 << 63, -1):
                with self.assertRaises(ValueError) as cm:
                    l.set_epoch(bad)
                self.assertIn("set_epoch() epoch %d" % bad, str(cm.exception))
            for bad in (1.5, "3", True, None, 1.0):
                with self.assertRaises(TypeError) as cm:
                    l.set_epoch(bad)
                self.assertIn(repr(bad), str(cm.exception))
            b = l.next(timeout=60)  # the refusals left the loader where it was
            self.assertEqual((b.epoch, b.index), (1, 1))
            l.set_epoch((1 << 63) - 1)  # the largest epoch is taken
            l.set_epoch(_Index(2))  # and any integral type
            b = l.next(timeout=60)
            self.assertEqual((b.epoch, b.index), (2, 0))

    def test_load_state_dict_refuses_a_number(self):
        with shardpack.Loader(DS, batch_size=8) as l:
            state = l.state_dict()
            with self.assertRaises(TypeError) as cm:
                l.load_state_dict({"shardpack_state": len(state["shardpack_state"])})
            self.assertIn("shardpack_state", str(cm.exception))
            l.load_state_dict({"shardpack_state": list(state["shardpack_state"])})


if __name__ == "__main__":
    unittest.main()
