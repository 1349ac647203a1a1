"""python/examples/cnn_imagefolder.py on a generated ImageFolder: two epochs with eval, a run stopped after a checkpoint (or at a step between two of them) and resumed with --resume ends with the same weights as a run never stopped."""

import json
import os
import subprocess
import sys
import unittest

from sp_testutil import INSTALLED, SOURCE_ROOT, TempDir, child_env, need

need("torch")
GEN = os.environ.get("SP_GEN_IMAGEFOLDER")
if not GEN or not os.path.exists(GEN):
    raise unittest.SkipTest("SP_GEN_IMAGEFOLDER (datasets/sp-gen-imagefolder) is not set")
EXAMPLE = os.path.join(SOURCE_ROOT, "python", "examples", "cnn_imagefolder.py")


class CNNExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = TempDir()
        cls.train = os.path.join(cls.tmp.path, "train")
        cls.val = os.path.join(cls.tmp.path, "val")
        for out, count, seed in ((cls.train, 96, 1), (cls.val, 30, 2)):
            subprocess.run([GEN, "--out", out, "--count", str(count), "--classes", "3",
                            "--seed", str(seed), "--threads", "2"], check=True, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_example(self, work, *extra, rc=0):
        out = os.path.join(work, "summary.json")
        r = subprocess.run([sys.executable, EXAMPLE, "--train", self.train, "--val", self.val,
                            "--work", work, "--image-size", "32", "--batch-size", "16",
                            "--ckpt-every", "2", "--out", out] + list(extra),
                           env=child_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
        if rc:
            return r.stdout
        with open(out) as f:
            summary = json.load(f)
        summary["_stdout"] = r.stdout
        return summary

    def whole(self):
        """The summary of a run never stopped (run once, shared by the tests)."""
        if not hasattr(CNNExample, "_whole"):
            CNNExample._whole = self.run_example(os.path.join(self.tmp.path, "whole"))
        return CNNExample._whole

    def test_two_epochs_then_stop_and_resume(self):
        whole = self.whole()
        self.assertEqual(whole["classes"], ["class_00", "class_01", "class_02"])
        # The package under test: the installed one with run.py --installed, else this tree's.
        self.assertEqual(whole["shardpack"].startswith(SOURCE_ROOT + os.sep), not INSTALLED,
                         whole["shardpack"])
        self.assertEqual(whole["steps"], 12)  # 96 images, batches of 16, two epochs
        self.assertEqual([e["train_batches"] for e in whole["epochs"]], [6, 6])
        for e in whole["epochs"]:
            self.assertTrue(0.0 <= e["eval_accuracy"] <= 1.0)
        work = os.path.join(self.tmp.path, "stopped")
        said = self.run_example(work, "--stop-after", "4", rc=3)  # in epoch 0, after step 4
        self.assertIn("stopping after step 4", said)
        resumed = self.run_example(work, "--resume")
        self.assertEqual(resumed["steps"], 12)
        self.assertEqual([e["train_batches"] for e in resumed["epochs"]], [2, 6])
        self.assertEqual(resumed["weights_checksum"], whole["weights_checksum"])
        self.assertEqual(resumed["epochs"][-1]["eval_accuracy"], whole["epochs"][-1]["eval_accuracy"])

    def test_stop_between_checkpoints(self):
        # Step 7 (epoch 1) is not a multiple of --ckpt-every 2: the run still stops there, with a
        # checkpoint of that step, instead of running on to the end unstopped.
        whole = self.whole()
        work = os.path.join(self.tmp.path, "stopped7")
        said = self.run_example(work, "--stop-after", "7", rc=3)
        self.assertIn("stopping after step 7", said)
        resumed = self.run_example(work, "--resume")
        self.assertIn("resumed at epoch 1, step 7", resumed.pop("_stdout"))
        self.assertEqual(resumed["steps"], 12)
        self.assertEqual([e["train_batches"] for e in resumed["epochs"]], [6, 5])
        self.assertEqual(resumed["weights_checksum"], whole["weights_checksum"])


if __name__ == "__main__":
    unittest.main()
