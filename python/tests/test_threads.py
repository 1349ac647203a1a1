"""Loader calls from several threads and interrupted calls: next() from many threads hands out each batch once, close() from another thread ends a waiting next(), a Ctrl-C landing right after the C call returns loses no lease, and a timeout message states the caller's timeout, which also bounds the wait for another thread's turn."""

import os
import random
import threading
import time
import unittest

import shardpack
from shardpack import _lib
from sp_testutil import TempDir, make_tokens, tensor_bytes

N = 600
BATCH = 8
NB = N // BATCH


def setUpModule():
    global TMP, DS
    TMP = TempDir()
    DS = make_tokens(os.path.join(TMP.path, "tok.sp"), n=N)


def tearDownModule():
    TMP.cleanup()


def os_threads():
    """Threads of this process, as the kernel counts them (the loader's C threads included). A
    Python thread just joined may still be leaving the kernel: wait for the count to settle."""
    n = len(os.listdir("/proc/self/task"))
    for _ in range(200):
        time.sleep(0.01)
        m = len(os.listdir("/proc/self/task"))
        if m == n:
            return n
        n = m
    return n


def reference(**params):
    """Epoch 0 as {batch index: (tokens bytes, sample ids)}, taken by one thread."""
    with shardpack.Loader(DS, **params) as l:
        return {b.index: (tensor_bytes(b["tokens"]), b.sample_ids()) for b in l}


class Patched:
    """Replaces one function of the C library (as the bindings look it up) for a with-block."""

    def __init__(self, name, make):
        self.name, self.make = name, make

    def __enter__(self):
        self.real = getattr(_lib.lib, self.name)
        setattr(_lib.lib, self.name, self.make(self.real))
        return self

    def __exit__(self, *exc):
        setattr(_lib.lib, self.name, self.real)


class TestThreads(unittest.TestCase):
    def test_next_from_many_threads(self):
        params = dict(batch_size=BATCH, seed=11, epochs=1, threads=2)
        want = reference(**params)
        self.assertEqual(len(want), NB)
        base = os_threads()
        for _ in range(3):
            l = shardpack.Loader(DS, **params)
            got, errors = [], []

            def consume():
                try:
                    while True:
                        b = l.next()
                        if b is None:
                            return
                        got.append((b.index, tensor_bytes(b["tokens"]), b.sample_ids()))
                        b.release()
                except BaseException as e:  # noqa: B036 - reported below
                    errors.append(e)

            ts = [threading.Thread(target=consume) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
                self.assertFalse(t.is_alive())
            self.assertEqual(errors, [])
            self.assertEqual(sorted(i for i, _, _ in got), list(range(NB)))  # each once
            for i, toks, ids in got:
                self.assertEqual((toks, ids), want[i])
            self.assertTrue(l.done)
            self.assertEqual(l.stats()["leases"], 0)
            l.close()
            self.assertIsNone(l._h.ptr)
            self.assertEqual(os_threads(), base)

    def test_other_calls_take_turns_with_next(self):
        # len(), state_dict() and stats() from other threads while one thread iterates.
        params = dict(batch_size=BATCH, seed=3, epochs=2)
        with shardpack.Loader(DS, **params) as l:
            stop, errors = threading.Event(), []

            def poke():
                try:
                    while not stop.is_set():
                        self.assertEqual(len(l), NB)
                        self.assertEqual(l.samples_per_epoch, N)
                        l.state_dict()
                        l.stats()
                except BaseException as e:  # noqa: B036
                    errors.append(e)

            t = threading.Thread(target=poke)
            t.start()
            n = sum(1 for _ in l) + sum(1 for _ in l)
            stop.set()
            t.join(60)
            self.assertEqual(errors, [])
            self.assertEqual(n, 2 * NB)

    def test_close_from_another_thread_while_next_waits(self):
        # The C call is made to wait (one poll slice that sees no batch) until the test says go;
        # close() from another thread must wait for it, and the waiting next() then ends.
        entered, go = threading.Event(), threading.Event()

        def held(real):
            def next_(ptr, out, ms):
                if not go.is_set():
                    entered.set()
                    go.wait(30)
                    return _lib.SP_ETIMEDOUT
                return real(ptr, out, ms)
            return next_

        base = os_threads()
        l = shardpack.Loader(DS, batch_size=BATCH)
        result = []

        def waiter():
            try:
                result.append(l.next())
            except BaseException as e:  # noqa: B036
                result.append(e)

        with Patched("sp_loader_next", held):
            a = threading.Thread(target=waiter)
            a.start()
            self.assertTrue(entered.wait(30))
            b = threading.Thread(target=l.close)
            b.start()
            time.sleep(0.3)
            self.assertTrue(b.is_alive())  # close waits for the call in flight ...
            self.assertIsNotNone(l._h.ptr)  # ... and frees nothing meanwhile
            go.set()
            a.join(30)
            b.join(30)
        self.assertFalse(a.is_alive() or b.is_alive())
        self.assertIsInstance(result[0], ValueError)
        self.assertIn("closed", str(result[0]))
        self.assertIsNone(l._h.ptr)
        self.assertEqual(os_threads(), base)
        with self.assertRaises(ValueError):
            l.next()

    def test_close_racing_a_consumer_thread(self):
        base = os_threads()
        rng = random.Random(7)
        for _ in range(20):
            l = shardpack.Loader(DS, batch_size=BATCH, epochs=0)
            errors = []

            def consume():
                try:
                    while True:
                        b = l.next()
                        if b is not None:
                            tensor_bytes(b["tokens"])
                            del b
                except ValueError:
                    return  # closed
                except BaseException as e:  # noqa: B036
                    errors.append(e)

            t = threading.Thread(target=consume)
            t.start()
            time.sleep(rng.random() * 0.02)
            l.close()
            t.join(30)
            self.assertFalse(t.is_alive())
            self.assertEqual(errors, [])
            self.assertIsNone(l._h.ptr)  # closed for real once the last batch came back
            self.assertEqual(os_threads(), base)


class TestInterrupts(unittest.TestCase):
    def test_ctrl_c_right_after_next_returns(self):
        # A KeyboardInterrupt lands between sp_loader_next handing out a batch and the Python
        # Batch existing, every third batch, over a ring small enough that a lost lease stalls it.
        params = dict(batch_size=BATCH, seed=5, epochs=3, host_memory="4M", prefetch=1)
        base = os_threads()
        calls = [0]

        def interrupting(real):
            def next_(ptr, out, ms):
                rc = real(ptr, out, ms)
                if rc == 0:
                    calls[0] += 1
                    if calls[0] % 3 == 0:
                        raise KeyboardInterrupt
                return rc
            return next_

        l = shardpack.Loader(DS, **params)
        slots = l.stats()["batch_ring_slots"]
        self.assertLess(slots, 2 * NB)  # the epochs go round the ring: a lost slot would be hit
        got, interrupted, ends = [], 0, 0
        with Patched("sp_loader_next", interrupting):
            while not l.done:
                try:
                    b = l.next(timeout=20)
                except KeyboardInterrupt:
                    interrupted += 1
                    self.assertEqual(l.stats()["leases"], 0)
                    continue
                if b is None:
                    ends += 1
                    continue
                got.append((b.epoch, b.index))
                b.release()
        self.assertEqual(ends, 4)  # three ends of epoch, then the end of the last
        self.assertEqual(interrupted, NB)
        self.assertEqual(len(got) + interrupted, 3 * NB)
        self.assertEqual(l.stats()["leases"], 0)
        l.close()
        self.assertIsNone(l._h.ptr)
        self.assertEqual(os_threads(), base)

    def test_ctrl_c_inside_a_release(self):
        # An interrupt inside the release a finalizer makes: the lease is still given back and
        # counted once, and nothing escapes the finalizer.
        def interrupting(real):
            def release(ptr, bptr, stream):
                real(ptr, bptr, stream)
                raise KeyboardInterrupt
            return release

        base = os_threads()
        l = shardpack.Loader(DS, batch_size=BATCH)
        b = l.next()
        with Patched("sp_loader_release_on", interrupting):
            del b
        self.assertEqual(l.stats()["leases"], 0)
        self.assertEqual(sum(1 for _ in l), NB - 1)  # the ring still turns
        l.close()
        self.assertIsNone(l._h.ptr)
        self.assertEqual(os_threads(), base)


class TestTimeout(unittest.TestCase):
    def test_message_states_the_callers_timeout(self):
        # Every poll slice sees no batch (the pipeline is restarted before each, and asked for a
        # batch at once), so next(timeout=1) runs out after several 200 ms slices.
        def starved(real):
            def next_(ptr, out, ms):
                while True:
                    _lib.lib.sp_loader_set_epoch(ptr, 0)
                    rc = real(ptr, out, 0)
                    if rc != 0:
                        break
                    _lib.lib.sp_loader_release(ptr, out._obj)
                time.sleep(ms / 1000.0)
                return rc
            return next_

        with shardpack.Loader(DS, batch_size=BATCH) as l:
            t0 = time.monotonic()
            with Patched("sp_loader_next", starved):
                with self.assertRaises(shardpack.ShardpackError) as cm:
                    l.next(timeout=1)
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        e = cm.exception
        self.assertEqual(e.name, "SP_ETIMEDOUT")
        self.assertIn("within 1 s", e.message)
        self.assertNotIn("ms", e.message)

    def test_timeout_bounds_the_wait_for_another_threads_turn(self):
        # Thread A sits inside next() (its C call held for 1.5 s); B's next(timeout=0.05) must give
        # up at its own limit, not wait for A's call to end, and not consume a batch.
        inside, go_on = threading.Event(), threading.Event()

        def slow(real):
            def next_(ptr, out, ms):
                if threading.current_thread() is a_thread:
                    inside.set()
                    go_on.wait(1.5)
                return real(ptr, out, ms)
            return next_

        got = {}
        with shardpack.Loader(DS, batch_size=BATCH, shuffle=False) as l:
            with Patched("sp_loader_next", slow):
                a_thread = threading.Thread(target=lambda: got.update(a=l.next()))
                a_thread.start()
                self.assertTrue(inside.wait(10))
                for timeout in (0.05, 0):
                    t0 = time.monotonic()
                    with self.assertRaises(shardpack.ShardpackError) as cm:
                        l.next(timeout=timeout)
                    waited = time.monotonic() - t0
                    self.assertLess(waited, 0.5, "next(timeout=%g) waited %.2f s" % (timeout, waited))
                    e = cm.exception
                    self.assertEqual(e.name, "SP_ETIMEDOUT")
                    self.assertIn("within %g s" % timeout, e.message)
                    self.assertIn("another thread", e.message)
                go_on.set()
                a_thread.join(10)
            self.assertEqual(got["a"].index, 0)
            b = l.next(timeout=10)  # the loader goes on where A left it
            self.assertEqual(b.index, 1)
            del got["a"], b


if __name__ == "__main__":
    unittest.main()
