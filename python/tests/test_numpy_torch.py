"""Zero copy into NumPy and PyTorch, views outliving batch and loader, the torch adapter (token fields told apart by kind), and leases that refuse copy and pickle."""

import gc
import os
import unittest

from sp_testutil import TempDir, make_tokens, need

np = need("numpy")
torch = need("torch")

import shardpack  # noqa: E402
from shardpack.torch import TorchLoader, to_torch  # noqa: E402


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tok.sp"), n=400)


def tearDownModule():
    TMP.cleanup()


class TestZeroCopy(unittest.TestCase):
    def test_numpy_and_torch_share_the_c_pointer(self):
        with shardpack.Loader(DS, batch_size=8, token_dtype="int32") as l:
            b = l.next()
            t = b["tokens"]
            a = np.asarray(t)
            d = np.from_dlpack(b["label"])
            x = torch.from_dlpack(t)
            self.assertEqual(a.ctypes.data, t.data_ptr)
            self.assertEqual(x.data_ptr(), t.data_ptr)
            self.assertEqual(d.ctypes.data, b["label"].data_ptr)
            self.assertEqual(a.dtype, np.int32)
            self.assertEqual(x.dtype, torch.int32)
            self.assertTrue((x.numpy() == a).all())
            self.assertEqual(list(d), b.sample_ids())

    def test_views_outlive_batch_and_loader(self):
        l = shardpack.Loader(DS, batch_size=8, seed=2, token_dtype="int32", small_field_bytes=0)
        b = l.next()
        a = np.asarray(b["tokens"])
        x = torch.from_dlpack(b["label"])
        ref_a, ref_x = a.copy(), x.clone()
        del b
        for _ in range(20):  # the ring moves on; the held slots are not handed out again
            l.next()
        l.close()
        gc.collect()
        self.assertTrue((a == ref_a).all())
        self.assertTrue(torch.equal(x, ref_x))
        self.assertIsNotNone(l._h.ptr)
        del a
        self.assertIsNotNone(l._h.ptr)
        del x
        gc.collect()
        self.assertIsNone(l._h.ptr)

    def test_torch_adapter(self):
        with TorchLoader(DS, batch_size=16, seed=4, with_ids=True) as tl:
            n = 0
            for inputs, labels, ids in tl:
                self.assertEqual(inputs.shape, (16, 32) if len(ids) == 16 else (len(ids), 32))
                self.assertTrue(torch.equal(inputs[:, 1:], labels[:, :-1]))
                self.assertEqual(inputs.device.type, "cpu")
                n += 1
            self.assertEqual(n, len(tl))
            del inputs, labels
            self.assertEqual(tl.stats()["leases"], 0)
        with shardpack.Loader(DS, batch_size=16, seed=4, token_dtype="int32") as l:
            for x, y in TorchLoader(l, inputs="tokens", labels="label"):
                self.assertEqual(y.dtype, torch.int64)
                break

    def test_torch_epoch_loop_with_set_epoch(self):
        """for epoch: set_epoch(epoch); for x, y in tl: the last x, y are still alive at set_epoch,
        and the new epoch must not wait for them (small ring: their slot is needed early)."""
        params = dict(batch_size=8, seed=1, epochs=0, host_memory="4M", prefetch=1)
        with shardpack.Loader(DS, **params) as l:
            want = [[b.sample_ids() for b in l] for _ in range(3)]
        with TorchLoader(DS, with_ids=True, timeout=20, **params) as tl:
            for epoch in range(3):
                tl.set_epoch(epoch)
                got = []
                for x, y, ids in tl:
                    got.append(list(ids))
                self.assertEqual(got, want[epoch], "epoch %d" % epoch)
            for x, y, ids in tl:  # leave an epoch at once, holding its first batch
                break
            tl.set_epoch(1)
            got = []
            for x, y, ids in tl:
                got.append(list(ids))
            self.assertEqual(got, want[1], "epoch 1 again")
            del x, y

    def test_writer_takes_numpy(self):
        path = os.path.join(TMP.path, "np.sp")
        with shardpack.Writer(path, [("x", "tensor", "float16", (3, 2)), ("label", "label")]) as w:
            for i in range(50):
                w.add(np.full((3, 2), i, np.float16), np.int64(i))
            with self.assertRaises(TypeError):
                w.add(np.zeros((3, 2), np.float32), 1)
        with shardpack.Loader(path, batch_size=50, shuffle=False) as l:
            b = l.next()
            x = np.asarray(b["x"])
            self.assertEqual(x.dtype, np.float16)
            self.assertTrue((x[:, 0, 0] == np.arange(50)).all())



class TestTorchFieldKinds(unittest.TestCase):
    def test_integer_tensor_with_a_label_is_not_split_as_tokens(self):
        # A 2-D int32 tensor field looks like a token batch; the schema says it is a tensor, so it
        # passes whole, with the real label field as labels.
        path = os.path.join(TMP.path, "feat.sp")
        feats = np.arange(40 * 6, dtype=np.int32).reshape(40, 6)
        with shardpack.Writer(path, [("feat", "tensor", "int32", (6,)), ("label", "label")]) as w:
            for i in range(40):
                w.add(feats[i], 1000 + i)
        with TorchLoader(path, batch_size=4, shuffle=False, with_ids=True) as tl:
            n = 0
            for x, y, ids in tl:
                self.assertEqual(tuple(x.shape), (4, 6))
                self.assertEqual(y.dtype, torch.int64)
                self.assertEqual(y.tolist(), [1000 + i for i in ids])
                self.assertTrue(torch.equal(x, torch.from_numpy(feats[ids])))
                n += 1
            self.assertEqual(n, 10)
            del x, y

    def test_unknown_field_names_are_refused_at_once(self):
        # Not a bare KeyError at the first batch: the field, the dataset and its fields.
        for kw, said in ((dict(inputs="tokenz"), "inputs='tokenz'"),
                         (dict(inputs="tokens", labels="labl"), "labels='labl'")):
            with self.assertRaises(ValueError) as cm:
                TorchLoader(DS, batch_size=8, **kw)
            msg = str(cm.exception)
            self.assertIn(said, msg)
            self.assertIn(DS, msg)
            self.assertIn("its fields: tokens, label", msg)
        with shardpack.Loader(DS, batch_size=8, token_dtype="int32") as l:
            with self.assertRaises(ValueError):
                TorchLoader(l, labels="labl")
            self.assertFalse(l.closed)  # a Loader given whole is the caller's to close
            self.assertEqual(len(list(TorchLoader(l, labels="label"))), len(l))

    def test_bad_parameters_named_for_the_call_made(self):
        # TorchLoader's refusals said "Loader() got an unexpected keyword argument"; and
        # ShardpackIterable's came only from inside each DataLoader worker, at the first batch.
        from shardpack.torch import ShardpackIterable
        for cls in (TorchLoader, ShardpackIterable):
            with self.assertRaises(TypeError) as cm:
                cls(DS, batchsize=8)
            self.assertTrue(str(cm.exception).startswith(
                "%s() got an unexpected keyword argument 'batchsize'" % cls.__name__), cm.exception)
            with self.assertRaises(ValueError) as cm:
                cls(DS, batch_size=0)
            self.assertIn("batch_size", str(cm.exception))

    def test_uint16_tokens_loader_says_to_ask_for_int32(self):
        with shardpack.Loader(DS, batch_size=8) as l:  # tokens as stored: uint16
            tl = TorchLoader(l)
            with self.assertRaises(TypeError) as cm:
                next(iter(tl))
            self.assertIn("token_dtype='int32'", str(cm.exception))
            self.assertIn("'tokens'", str(cm.exception))
            self.assertEqual(l.stats()["leases"], 0)
            with self.assertRaises(TypeError):  # named as inputs too
                next(iter(TorchLoader(l, inputs="tokens", labels="label")))


class TestNoCopy(unittest.TestCase):
    def test_leases_refuse_copy_and_pickle(self):
        import copy
        import pickle
        with shardpack.Loader(DS, batch_size=8, token_dtype="int32") as l:
            b = l.next()
            for obj in (b, b["tokens"], b._lease):
                for how in (copy.copy, copy.deepcopy, pickle.dumps):
                    with self.assertRaises(TypeError, msg="%s of %s" % (how.__name__, type(obj).__name__)) as cm:
                        how(obj)
                    self.assertIn("lease on loader memory", str(cm.exception))
                    self.assertIn("np.array(", str(cm.exception))
            self.assertEqual(l.stats()["leases"], 1)  # no copy of the lease was made

            # What the message suggests works, and arrays made from the views copy and pickle.
            ref = bytes(np.asarray(b["tokens"]).tobytes())
            owned = np.array(b["tokens"])
            view = np.asarray(b["tokens"])
            t = torch.from_dlpack(b["tokens"])
            copies = [owned, copy.deepcopy(view), pickle.loads(pickle.dumps(view)),
                      t.clone().numpy(), copy.deepcopy(t).numpy(),
                      pickle.loads(pickle.dumps(t.clone())).numpy()]
            del b, view, t, obj, cm  # the last exception's traceback holds the lease too
            gc.collect()
            self.assertEqual(l.stats()["leases"], 0)
            for _ in range(30):  # the ring reuses the slot; the copies keep their data
                l.next()
            for c in copies:
                self.assertEqual(c.tobytes(), ref)


if __name__ == "__main__":
    unittest.main()
