"""A real DistributedDataParallel run: torchrun, 4 CPU processes, gloo, one epoch, every sample once."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

from sp_testutil import TempDir, child_env, need

need("torch")
import torch.distributed  # noqa: E402

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    raise unittest.SkipTest("torch.distributed with gloo is not available")

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "ddp_train.py")


class TestDDP(unittest.TestCase):
    def test_torchrun_four_ranks(self):
        tmp = TempDir()
        try:
            data, out = os.path.join(tmp.path, "ddp.sp"), os.path.join(tmp.path, "result.json")
            env = child_env(OMP_NUM_THREADS="1")
            n = int(subprocess.run([sys.executable, EXAMPLE, "--make-data", data], env=env,
                                   check=True, capture_output=True, text=True, timeout=60).stdout)
            # --redirects/--tee 2: torch 1.13's parsing of the default "0" fails on Python 3.11.
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=4", "--redirects", "2", "--tee", "2",
                   "--log_dir", os.path.join(tmp.path, "logs"),
                   EXAMPLE, "--data", data, "--samples", str(n), "--out", out, "--timeout", "120"]
            # Generous limits: on a fresh 2-core machine four processes import torch from a cold
            # cache at once; the run itself takes about 15 s once warm.
            # Its own session, so that a timeout kills every rank, not only torchrun.
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
            try:
                stdout, stderr = p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                stdout, stderr = p.communicate()
                self.fail("torchrun did not finish in 300 s (a hang):\n" + stdout[-3000:] + stderr[-3000:])
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # nothing may outlive the test
                except ProcessLookupError:
                    pass
            self.assertEqual(p.returncode, 0, stdout[-3000:] + stderr[-3000:])
            with open(out) as f:
                res = json.load(f)
            self.assertTrue(res["ok"], res)
            self.assertEqual(res["world_size"], 4)
            self.assertEqual(len(set(res["steps"])), 1)
            self.assertEqual((res["samples_seen"], res["distinct"]), (n, n))
            self.assertEqual(res["dropped"], [0, 0, 0, 0])
        finally:
            tmp.cleanup()


if __name__ == "__main__":
    unittest.main()
