"""Type hints and signatures: py.typed ships with the package, Loader/TorchLoader/ShardpackIterable/Writer/Dataset/pack show the library's parameters as keywords with their defaults, help(TorchLoader) speaks of images, Dataset.class_names."""

import inspect
import os
import pydoc
import re
import typing
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "ty.sp"), n=50)


def tearDownModule():
    TMP.cleanup()


def kw(obj):
    return {n: p for n, p in inspect.signature(obj).parameters.items()
            if p.kind == p.KEYWORD_ONLY}


class Typing(unittest.TestCase):
    def test_py_typed_ships(self):
        self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(shardpack.__file__), "py.typed")))

    def test_signatures_list_the_parameters(self):
        k = kw(shardpack.Loader)
        self.assertEqual(k["batch_size"].default, 32)
        self.assertEqual(k["epochs"].default, 0)  # the Python default, not the library's 1
        for name in ("image_size", "transform", "image_dtype", "device", "timeout", "small_field_bytes"):
            self.assertIn(name, k)
        self.assertIn("block_size", kw(shardpack.Writer))
        self.assertIn("max_shards", kw(shardpack.Dataset))
        self.assertIn("dataset_id", kw(shardpack.pack))
        self.assertIn("seq_len", kw(shardpack.pack))
        # The calls still take keywords as before, and refuse unknown ones.
        with shardpack.Loader(DS, batch_size=10) as l:
            self.assertEqual(len(l), 5)
        with self.assertRaises(TypeError):
            shardpack.Loader(DS, batch_sise=10)

    def test_hints_resolve(self):
        hints = typing.get_type_hints(shardpack.Loader.next)
        self.assertEqual(hints["return"], typing.Optional[shardpack.Batch])
        self.assertEqual(typing.get_type_hints(shardpack.Loader.set_epoch)["epoch"], int)
        self.assertEqual(typing.get_type_hints(shardpack.Dataset.block_samples)["return"], typing.List[int])

    def test_torch_signatures_and_help(self):
        try:
            from shardpack.torch import ShardpackIterable, TorchLoader
        except ImportError as e:
            self.skipTest("torch is not installed (%s)" % e)
        k = kw(TorchLoader)
        self.assertEqual((k["token_dtype"].default, k["epochs"].default), ("int32", 0))
        self.assertIn("image_size", k)
        self.assertIn("inputs", inspect.signature(TorchLoader).parameters)
        self.assertNotIn("epochs", kw(ShardpackIterable))
        text = pydoc.render_doc(TorchLoader)
        for word in ("image_size", "transform", "image_layout", "ShardpackIterable", "fast path"):
            self.assertIn(word, text)
        self.assertIn("fast path", pydoc.render_doc(ShardpackIterable))

    def test_help_tables_give_the_signature_defaults(self):
        # help() shows both the signature and the table of parameters; they must not disagree
        # (the table once said epochs default 1 and token_dtype 'stored' where Python's are 0/int32).
        objs = [shardpack.Loader, shardpack.pack]
        try:
            from shardpack.torch import TorchLoader
            objs.append(TorchLoader)
        except ImportError:
            pass
        for obj in objs:
            k = kw(obj)
            rows = re.findall(r"^ *(\w+) \(\w+, default (.*?); ", obj.__doc__, re.M)
            self.assertGreater(len(rows), 10, obj)
            for name, default in rows:
                self.assertEqual(default, repr(k[name].default), "%s: %s" % (obj.__name__, name))

    def test_class_names(self):
        path = os.path.join(TMP.path, "cls.sp")
        with shardpack.Writer(path, [("x", "tensor", "uint8", (1,)), ("label", "label")]) as w:
            w.set_meta("class_names", "cat\ndog\nzèbre")
            for i in range(3):
                w.add(bytes([i]), i)
        with shardpack.Dataset(path) as d:
            self.assertEqual(d.class_names, ["cat", "dog", "zèbre"])
        with shardpack.Dataset(DS) as d:
            self.assertEqual(d.class_names, [])


if __name__ == "__main__":
    unittest.main()
