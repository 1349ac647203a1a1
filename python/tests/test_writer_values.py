"""Writer values: typed data must be of the field's dtype (big-endian is converted), numbers must fit; metadata keys and values are str or bytes."""

import array
import ctypes
import os
import unittest

import shardpack
from sp_testutil import TempDir, need

FIELDS = [("x", "tensor", "float32", (2,)), ("y", "tensor", "int16", (2,)), ("lab", "label")]


def setUpModule():
    global TMP
    TMP = TempDir()


def tearDownModule():
    TMP.cleanup()


def f32(*vals):
    return array.array("f", vals)


def i16(*vals):
    return array.array("h", vals)


class WriterCase(unittest.TestCase):
    """Each test writes its own dataset of FIELDS and reads back what it added."""

    def setUp(self):
        self.path = os.path.join(TMP.path, self.id().rsplit(".", 1)[-1] + ".sp")
        self.w = shardpack.Writer(self.path, FIELDS)

    def tearDown(self):
        self.w.close()

    def read_back(self):
        self.w.finish()
        with shardpack.Dataset(self.path) as d:
            return [(list(memoryview(s["x"]).cast("f")), list(memoryview(s["y"]).cast("h")),
                     memoryview(s["lab"]).cast("q")[0]) for s in (d[i] for i in range(len(d)))]

    def assertRefused(self, exc, values, *words):
        with self.assertRaises(exc) as cm:
            self.w.add(*values)
        for word in words:
            self.assertIn(word, str(cm.exception))
        return cm.exception


class TestTypedBuffers(WriterCase):
    def test_buffer_of_another_dtype_is_refused(self):
        # 8 bytes of float64 are the size of float32[2]: stored raw, they read back as [0, 1.9375].
        self.assertRefused(TypeError, (array.array("d", [1.5]), i16(1, 2), 0), "'x'", "float32", "'d'")
        self.assertRefused(TypeError, (f32(1, 2), array.array("H", [1, 2]), 0), "'y'", "int16", "'H'")
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), array.array("i", [3])), "'lab'", "'i'")
        self.assertRefused(TypeError, (f32(1, 2), (ctypes.c_uint16 * 2)(1, 2), 0), "'y'", "'<H'")

    def test_buffers_of_the_dtype_and_raw_bytes_are_stored(self):
        self.w.add(f32(1.5, 2.5), i16(-1, 2), 1)
        self.w.add((ctypes.c_float * 2)(3, 4), memoryview(i16(5, 6)), array.array("q", [2]))
        self.w.add(bytes(f32(5, 6)), bytearray(i16(7, 8)), memoryview(array.array("q", [3])).cast("B"))
        # Big-endian typed buffers (memoryview formats '>f', '>h') are converted.
        self.w.add((ctypes.c_float.__ctype_be__ * 2)(1.5, 2.5),
                   (ctypes.c_int16.__ctype_be__ * 2)(9, -10), 4)
        self.assertEqual(self.read_back(), [([1.5, 2.5], [-1, 2], 1), ([3, 4], [5, 6], 2),
                                            ([5, 6], [7, 8], 3), ([1.5, 2.5], [9, -10], 4)])

    def test_wrong_count_names_the_field(self):
        e = self.assertRefused(shardpack.ShardpackError, (f32(1, 2), i16(1, 2, 3), 0), "'y'", "3")
        self.assertEqual(e.name, "SP_ESCHEMA")
        e = self.assertRefused(shardpack.ShardpackError, ([1.0], i16(1, 2), 0), "'x'", "2 values")
        self.assertEqual(e.name, "SP_ESCHEMA")


class TestNumbers(WriterCase):
    def test_labels_out_of_range_name_the_field_and_range(self):
        for bad in (2 ** 63, -2 ** 63 - 1):
            self.assertRefused(ValueError, (f32(1, 2), i16(1, 2), bad), "'lab'", str(bad),
                               str(-2 ** 63), str(2 ** 63 - 1))
        self.w.add(f32(1, 2), i16(1, 2), 2 ** 63 - 1)
        self.w.add(f32(1, 2), i16(1, 2), -2 ** 63)
        self.assertEqual([s[2] for s in self.read_back()], [2 ** 63 - 1, -2 ** 63])

    def test_non_integer_and_bool_labels_are_refused(self):
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), 3.7), "'lab'", "float")
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), True), "'lab'", "bool")
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), "3"), "'lab'")

    def test_sequences_out_of_range_name_field_and_item(self):
        self.assertRefused(ValueError, (f32(1, 2), [1, 70000], 0), "'y'", "70000", "item 1",
                           "[-32768, 32767]")
        self.assertRefused(TypeError, (f32(1, 2), [1, 2.5], 0), "'y'", "2.5", "item 1")
        self.assertRefused(ValueError, ([1e40, 1], i16(1, 2), 0), "'x'", "float32", "item 0")
        self.w.add([0.5, -1], (-32768, 32767), 9)
        self.assertEqual(self.read_back(), [([0.5, -1.0], [-32768, 32767], 9)])

    def test_bool_field_takes_only_true_and_false(self):
        path = os.path.join(TMP.path, "bool.sp")
        with shardpack.Writer(path, [("m", "tensor", "bool", (3,))]) as w:
            with self.assertRaises(ValueError) as cm:
                w.add([True, 2, False])
            self.assertIn("'m'", str(cm.exception))
            w.add([True, 0, 1])
        with shardpack.Dataset(path) as d:
            self.assertEqual(d[0]["m"], b"\x01\x00\x01")


class TestNumPy(WriterCase):
    def setUp(self):
        global np
        np = need("numpy")
        super().setUp()

    def test_big_endian_arrays_are_converted(self):
        self.w.add(np.array([1.5, 2.5], ">f4"), np.array([1, -2], ">i2"), np.array(7, ">i8"))
        self.w.add(np.array([[1.5], [2.5]], ">f4")[:, 0], np.array([-3, 4, 5, 6], ">i2")[::2], 8)
        self.w.add(memoryview(np.array([3, 4], ">f4")), np.array([5, 6], "<i2"), np.int64(9))
        self.assertEqual(self.read_back(), [([1.5, 2.5], [1, -2], 7), ([1.5, 2.5], [-3, 5], 8),
                                            ([3, 4], [5, 6], 9)])

    def test_arrays_of_another_dtype_are_refused(self):
        self.assertRefused(TypeError, (np.array([1, 2], "f8"), i16(1, 2), 0), "'x'", "float64")
        self.assertRefused(TypeError, (f32(1, 2), np.array([1, 2], ">u2"), 0), "'y'", "uint16")
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), np.array([3], "i4")), "'lab'", "int32")
        e = self.assertRefused(shardpack.ShardpackError, (np.zeros(3, "f4"), i16(1, 2), 0), "'x'")
        self.assertEqual(e.name, "SP_ESCHEMA")

    def test_numpy_scalars_as_labels(self):
        self.w.add(f32(1, 2), i16(1, 2), np.int32(-5))
        self.w.add(f32(1, 2), i16(1, 2), np.uint64(2 ** 63 - 1))
        self.assertRefused(ValueError, (f32(1, 2), i16(1, 2), np.uint64(2 ** 63)), "'lab'")
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), np.bool_(True)), "'lab'")
        self.assertRefused(TypeError, (f32(1, 2), i16(1, 2), np.float64(1.0)), "'lab'")
        self.assertEqual([s[2] for s in self.read_back()], [-5, 2 ** 63 - 1])


class TestMetaArguments(unittest.TestCase):
    def test_bytes_and_str_keys(self):
        path = os.path.join(TMP.path, "meta.sp")
        with shardpack.Writer(path, [("lab", "label")]) as w:
            w.set_meta(b"class_names", b"cat\ndog")  # was stored as the key "b'class_names'"
            w.set_meta("caf\u00e9", "na\u00efve")
            w.set_meta("view", memoryview(b"mv"))
            for key, value in ((7, "x"), (None, "x"), (bytearray(b"k"), "x"), ("n", 5),
                               ("n", 2.5), ("n", True)):
                with self.assertRaises(TypeError) as cm:
                    w.set_meta(key, value)
                self.assertIn("set_meta()", str(cm.exception))
                self.assertIn(repr(value) if isinstance(key, str) else repr(key), str(cm.exception))
            w.add(1)  # the refusals left the writer usable
        with shardpack.Dataset(path) as d:
            meta = d.meta()
        self.assertEqual(meta, {"class_names": b"cat\ndog", "caf\u00e9": "na\u00efve".encode(),
                                "view": b"mv"})


if __name__ == "__main__":
    unittest.main()
