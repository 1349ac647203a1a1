"""fork() with a live Loader or Writer: the child gets ShardpackError SP_ESTATE at once on every use and closes nothing of the parent's, the parent goes on unchanged; and the working pattern, a torch DataLoader whose workers each open their own Loader with rank/world_size from get_worker_info(); pickling or copying a Loader, TorchLoader or Dataset (a spawned worker) is a TypeError saying what to use instead."""

import os
import select
import signal
import threading
import time
import unittest

from sp_testutil import TempDir, make_tokens, need, tensor_bytes

import shardpack  # noqa: E402

if not hasattr(os, "fork"):
    raise unittest.SkipTest("os.fork is not available")

N = 440  # 8 full blocks of 55 samples: two ranks split it with no sample dropped


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tok.sp"), n=N)


def tearDownModule():
    TMP.cleanup()


def in_child(fn, limit=20.0):
    """Runs fn() in a forked child; returns what it returned (a str), or 'hung' / the exception."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = str(fn())
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            out = "raised %s: %s" % (type(e).__name__, e)
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], limit)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return "hung (killed after %g s)" % limit
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def refused(call, what):
    """'' when call() raises ShardpackError SP_ESTATE naming this process as a child, else why not."""
    t0 = time.monotonic()
    try:
        call()
    except shardpack.ShardpackError as e:
        if e.name != "SP_ESTATE" or "%s opened in process %d, used in child %d; open it after fork" % (
                what, os.getppid(), os.getpid()) not in e.message:
            return "%s: %s" % (call, e)
        if time.monotonic() - t0 > 1.0:
            return "%s: refused only after %.1f s" % (call, time.monotonic() - t0)
        return ""
    except BaseException as e:  # noqa: BLE001
        return "%s raised %s: %s" % (call, type(e).__name__, e)
    return "%s did not raise" % call


def epoch_of(loader):
    """(sample ids, token bytes) of the rest of loader's current epoch."""
    ids, data = [], []
    for b in loader:
        ids += b.sample_ids()
        data.append(tensor_bytes(b["tokens"]))
    return ids, data


def reference():
    with shardpack.Loader(DS, batch_size=8, threads=2, epochs=0, seed=5) as l:
        return epoch_of(l)


class TestInheritedHandles(unittest.TestCase):
    def test_loader_refused_in_child_parent_goes_on(self):
        ref_ids, ref_data = reference()
        for io in ("pread", "auto"):
            l = shardpack.Loader(DS, batch_size=8, threads=2, epochs=0, seed=5, io=io)
            first = l.next()
            held = first  # a batch leased across the fork

            def child():
                why = [refused(lambda: l.next(timeout=3), "loader"),
                       refused(lambda: l.set_epoch(1), "loader"),
                       refused(l.state_dict, "loader"),
                       refused(lambda: len(l), "loader"),
                       refused(l.stats, "loader")]
                a = bytes(tensor_bytes(held["tokens"]))  # the leased batch's copy is readable
                del a
                l.close()  # closes nothing of the parent's; the handle is gone here
                try:
                    l.next()
                    why.append("next after close did not raise")
                except ValueError:
                    pass
                return "; ".join(w for w in why if w) or "ok"

            self.assertEqual(in_child(child), "ok", io)
            ids, data = first.sample_ids(), [tensor_bytes(first["tokens"])]
            del first, held
            more_ids, more_data = epoch_of(l)
            self.assertEqual(ids + more_ids, ref_ids, io)
            self.assertEqual(data + more_data, ref_data, io)
            self.assertIsNotNone(l.next())  # and the next epoch
            l.close()

    def test_fork_while_another_thread_is_inside_next(self):
        ref_ids, _ = reference()
        l = shardpack.Loader(DS, batch_size=8, threads=2, epochs=0, seed=5)
        seen, stop = [], threading.Event()

        def consume():
            while not stop.is_set():
                b = l.next()
                if b is None:
                    if len(seen) == N:
                        stop.wait()
                    continue
                if len(seen) < N:
                    seen.extend(b.sample_ids())
        t = threading.Thread(target=consume)
        t.start()
        try:
            for _ in range(5):
                time.sleep(0.01)
                self.assertEqual(in_child(lambda: refused(lambda: l.next(timeout=3), "loader") or "ok"), "ok")
        finally:
            stop.set()
            t.join()
        self.assertEqual(seen[:N], ref_ids)
        l.close()

    def test_writer_refused_in_child_parent_publishes(self):
        out = os.path.join(TMP.path, "wfork.sp")
        w = shardpack.Writer(out, [("x", "tensor", "float32", (64,)), ("label", "label")], block_size="4K",
                             threads=2)
        for i in range(100):
            w.add(bytes(256), i)

        def child():
            why = [refused(lambda: [w.add(bytes(256), i) for i in range(5000)], "writer"),
                   refused(lambda: w.set_meta("k", "v"), "writer"),
                   refused(w.finish, "writer")]
            w.close()  # lets go of it here; the parent's staging directory stays
            return "; ".join(x for x in why if x) or "ok"

        self.assertEqual(in_child(child), "ok")
        for i in range(100, 200):
            w.add(bytes(256), i)
        self.assertEqual(w.finish()["samples"], 200)
        with shardpack.Dataset(out) as d:
            self.assertEqual(len(d), 200)
            self.assertEqual([int.from_bytes(d[i]["label"], "little") for i in (0, 150, 199)], [0, 150, 199])


class TestDataLoaderWorkers(unittest.TestCase):
    """The documented pattern (docs/loader.md, "Processes and fork()")."""

    def test_each_worker_opens_its_own_loader(self):
        torch = need("torch")
        from torch.utils.data import DataLoader, IterableDataset, get_worker_info

        class Shards(IterableDataset):
            def __init__(self, path, **params):
                self.path, self.params = path, params

            def __iter__(self):
                info = get_worker_info()
                rank, world = (info.id, info.num_workers) if info else (0, 1)
                # Opened here, in the worker: never in the process that forks the workers.
                with shardpack.Loader(self.path, rank=rank, world_size=world, epochs=1, **self.params) as l:
                    for b in l:
                        yield torch.from_dlpack(b["label"]).clone()  # a copy crosses to the main process

        # A loader open in the main process meanwhile: the workers inherit it and leave it alone.
        mine = shardpack.Loader(DS, batch_size=8, threads=2, epochs=0, seed=5)
        first = mine.next().sample_ids()
        dl = DataLoader(Shards(DS, batch_size=16, threads=1, seed=3), batch_size=None, num_workers=2)
        ids = torch.cat(list(dl)).tolist()
        self.assertEqual(len(ids), N)
        self.assertEqual(sorted(ids), list(range(N)))  # every sample once, none twice
        rest, _ = epoch_of(mine)
        self.assertEqual(first + rest, reference()[0])
        mine.close()

    def test_pickling_a_loader_says_what_to_do(self):
        # What a spawned DataLoader worker (or multiprocessing) does to its dataset: the message
        # says what cannot cross and what to use instead, not "cannot pickle '_thread.RLock'".
        import copy
        import pickle
        with shardpack.Loader(DS, batch_size=8) as l, shardpack.Dataset(DS) as d:
            for obj, said in ((l, "ShardpackIterable"), (d, "open a Dataset there")):
                for fn in (pickle.dumps, copy.copy):
                    with self.assertRaises(TypeError) as cm:
                        fn(obj)
                    self.assertIn("cannot be pickled", str(cm.exception))
                    self.assertIn(said, str(cm.exception))
            self.assertEqual(len(l.next().sample_ids()), 8)  # both still work
            self.assertEqual(len(d), N)
        try:
            from shardpack.torch import TorchLoader
        except ImportError:
            return
        with TorchLoader(DS, batch_size=8) as tl:
            with self.assertRaises(TypeError) as cm:
                pickle.dumps(tl)
            self.assertIn("ShardpackIterable", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
