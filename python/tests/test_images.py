"""Image fields through the Python bindings: JPEGs made here with Pillow, decoded and transformed
by the loader's workers, reaching NumPy and PyTorch without a copy."""

import io
import unittest

import shardpack
from sp_testutil import TempDir, need

np = need("numpy")
torch = need("torch")
need("PIL", "(Debian: python3-pil)")
from PIL import Image as PIL_Image  # noqa: E402
from shardpack.torch import TorchLoader  # noqa: E402  (needs torch)

N = 96
SIZE = 64


def jpeg(i):
    """A small picture: a colour ramp whose hue depends on i, encoded at quality 90."""
    w, h = 80 + (i * 13) % 70, 60 + (i * 29) % 90
    x = np.arange(w, dtype=np.float32)[None, :, None]
    y = np.arange(h, dtype=np.float32)[:, None, None]
    base = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32)[None, None, :]
    img = np.clip(base * 0.5 + x * 1.5 + y * 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PIL_Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class ImageTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir()
        cls.path = cls.tmp.path + "/img"
        with shardpack.Writer(cls.path, [("image", "image"), ("label", "label")], block_size="16K") as w:
            for i in range(N):
                w.add(jpeg(i), i % 10)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def batches(self, **params):
        params.setdefault("batch_size", 16)
        params.setdefault("image_size", SIZE)
        out = []
        with shardpack.Loader(self.path, **params) as loader:
            for b in loader:
                out.append((np.array(b["image"]), b.sample_ids()))
                b.release()
        return out

    def test_uint8_nhwc_zero_copy(self):
        with shardpack.Loader(self.path, batch_size=16, image_size=SIZE) as loader:
            b = next(iter(loader))
            t = torch.from_dlpack(b["image"])
            a = np.asarray(b["image"])
            self.assertEqual(tuple(t.shape), (16, SIZE, SIZE, 3))
            self.assertEqual(t.dtype, torch.uint8)
            self.assertEqual(t.data_ptr(), b["image"].data_ptr)
            self.assertEqual(a.ctypes.data, b["image"].data_ptr)
            self.assertGreater(int(a.std()), 0)  # a picture, not a constant fill
            st = loader.stats()
            self.assertGreaterEqual(st["images_decoded"], 16)
            self.assertEqual(st["images_bad"], 0)
            del t, a
            b.release()

    def test_float_dtypes_and_layout(self):
        u8 = self.batches(transform="eval", shuffle=False)[0][0].astype(np.float32)
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        want = (u8 / 255.0 - mean) / std  # NHWC
        f32 = self.batches(transform="eval", shuffle=False, image_dtype="float32", image_layout="nchw")[0][0]
        self.assertEqual(f32.shape, (16, 3, SIZE, SIZE))
        np.testing.assert_allclose(f32.transpose(0, 2, 3, 1), want, rtol=1e-5, atol=1e-5)
        f16 = self.batches(transform="eval", shuffle=False, image_dtype="float16")[0][0]
        self.assertEqual(f16.dtype, np.float16)
        np.testing.assert_allclose(f16.astype(np.float32), want, rtol=2e-3, atol=2e-3)
        with shardpack.Loader(self.path, batch_size=8, image_size=SIZE, image_dtype="bfloat16") as loader:
            b = next(iter(loader))
            t = torch.from_dlpack(b["image"])
            self.assertEqual(t.dtype, torch.bfloat16)
            del t
            b.release()
        custom = self.batches(transform="eval", shuffle=False, image_dtype="float32", mean=(0.5, 0.5, 0.5),
                              std=[0.5, 0.5, 0.5])[0][0]
        np.testing.assert_allclose(custom, u8 / 127.5 - 1.0, rtol=1e-5, atol=1e-5)

    def test_same_batches_for_any_thread_count(self):
        one = self.batches(threads=1, seed=7, transform="train")
        three = self.batches(threads=3, seed=7, transform="train")
        self.assertEqual(len(one), len(three))
        for (a, ia), (b, ib) in zip(one, three):
            self.assertEqual(ia, ib)
            self.assertTrue(np.array_equal(a, b))
        other = self.batches(threads=1, seed=8, transform="train")
        self.assertFalse(all(np.array_equal(a, b) for (a, _), (b, _) in zip(one, other)))

    def test_bad_parameters(self):
        with self.assertRaisesRegex(ValueError, "mean"):
            shardpack.Loader(self.path, mean=(0.5, 0.5))
        with self.assertRaisesRegex(ValueError, "std"):
            shardpack.Loader(self.path, std="0,1,1")
        with self.assertRaisesRegex(ValueError, "image_dtype"):
            shardpack.Loader(self.path, image_dtype="int7")
        with self.assertRaisesRegex(shardpack.ShardpackError, "resize"):
            shardpack.Loader(self.path, transform="eval", image_size=224, resize=200)

    def test_max_sample_bytes(self):
        # Every image here is over 1 KiB: the first batch fails before libjpeg sees a byte, and
        # the message names the shard, the sample and the limit.
        with shardpack.Loader(self.path, batch_size=8, image_size=SIZE, max_sample_bytes="1K") as loader:
            with self.assertRaisesRegex(shardpack.ShardpackError, "max_sample_bytes.*|.*sample") as cm:
                next(iter(loader))
            self.assertIn("max_sample_bytes", str(cm.exception))
            self.assertIn(".sps", str(cm.exception))
            self.assertGreater(loader.stats()["images_bad"], 0)

    def test_torch_adapter_pairs_images_with_labels(self):
        seen = 0
        for inputs, labels in TorchLoader(self.path, batch_size=16, image_size=SIZE, shuffle=False):
            self.assertEqual(tuple(inputs.shape[1:]), (SIZE, SIZE, 3))
            self.assertIsNotNone(labels)
            self.assertEqual(labels.dtype, torch.int64)
            self.assertTrue(bool(((labels >= 0) & (labels < 10)).all()))
            seen += inputs.shape[0]
        self.assertEqual(seen, N)


if __name__ == "__main__":
    unittest.main()
