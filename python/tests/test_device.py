"""The device parameters from Python: keywords, the host fallback, and (on a machine with a CUDA
device and torch built for it) device batches reaching torch on the trainer's stream."""

import os
import unittest

import shardpack
from sp_testutil import TempDir, make_tokens

TMP = DS = None
GPUS = shardpack.cuda_device_count()

try:
    import torch
    TORCH_CUDA = GPUS > 0 and torch.cuda.is_available()
except ImportError:  # the keyword tests need no torch
    torch = None
    TORCH_CUDA = False


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tokens.sp"), n=400)


def tearDownModule():
    TMP.cleanup()


class TestDeviceKeywords(unittest.TestCase):
    def test_table(self):
        p = shardpack.params()
        self.assertEqual(p["device"].type, "device")
        self.assertEqual(p["device_dtype"].choices, ("none", "float16", "bfloat16", "float32"))
        self.assertEqual(p["device_layout"].choices, ("nchw", "nhwc"))

    def test_bad_values(self):
        with self.assertRaises(ValueError) as cm:
            shardpack.Loader(DS, device="gpu")
        self.assertIn("cuda:N", str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            shardpack.Loader(DS, device=1.5)
        self.assertIn("device", str(cm.exception))

    def test_cpu_spellings(self):
        spellings = ["cpu", -1] + ([torch.device("cpu")] if torch is not None else [])
        for dev in spellings:
            with shardpack.Loader(DS, device=dev, batch_size=8) as l:
                b = l.next()
                self.assertEqual(b["tokens"].__dlpack_device__(), (1, 0))
                self.assertEqual(l.stats()["device"], -1)


@unittest.skipIf(GPUS > 0, "a CUDA device is present: the no-device behaviour cannot be seen here")
class TestNoDevice(unittest.TestCase):
    def test_auto_stays_on_host(self):
        with shardpack.Loader(DS, device="auto", batch_size=8) as l:
            st = l.stats()
            self.assertEqual(st["device"], -1)
            self.assertIn("device=auto", st["device_note"])
            b = l.next()
            self.assertEqual(b["tokens"].__dlpack_device__(), (1, 0))

    def test_cuda_refused(self):
        with self.assertRaises(shardpack.ShardpackError) as cm:
            shardpack.Loader(DS, device="cuda:0")
        self.assertIn(cm.exception.name, ("SP_EDEVICE", "SP_ENOTSUP"))
        self.assertIn("cuda:0", cm.exception.message)


@unittest.skipUnless(TORCH_CUDA, "needs a CUDA device and torch built with CUDA")
class TestTorchOnDevice(unittest.TestCase):
    def test_batches_equal_host_batches(self):
        from shardpack.torch import TorchLoader
        host = TorchLoader(DS, batch_size=16, seed=3)
        dev = TorchLoader(DS, batch_size=16, seed=3, device="cuda:0")
        side = torch.cuda.Stream()
        n = 0
        with torch.cuda.stream(side):  # a non-default stream: the copy must be ordered on it
            for (hx, hy), (dx, dy) in zip(host, dev):
                self.assertEqual(dx.device.type, "cuda")
                self.assertTrue(torch.equal(hx.cuda(), dx))
                self.assertTrue(torch.equal(hy.cuda(), dy))
                n += 1
        torch.cuda.synchronize()
        self.assertGreater(n, 10)
        st = dev.loader.stats()
        self.assertEqual(st["device"], 0)
        self.assertGreater(st["bytes_copied"], 0)
        self.assertLessEqual(st["device_bytes_peak"], st["device_ring_bytes"])
        host.loader.close()
        dev.loader.close()

    def test_cuda_array_interface(self):
        with shardpack.Loader(DS, batch_size=8, device="cuda:0") as l:
            b = l.next()
            cai = b["tokens"].__cuda_array_interface__
            self.assertEqual(cai["shape"][0], 8)
            self.assertIsNone(cai["stream"])
            with self.assertRaises(AttributeError):
                b["tokens"].__array_interface__


if __name__ == "__main__":
    unittest.main()
