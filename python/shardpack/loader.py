"""Loader: batches streamed from a dataset, each a mapping of field names to zero-copy Tensors.

Lifetime. A batch is a lease on one slot of the loader's ring. The lease goes back to the ring
when the Batch and every Tensor, NumPy array, PyTorch tensor, capsule... viewing it are gone, or,
when no view of it is alive, as soon as Batch.release() is called. Small fields are the exception:
a host field of at most small_field_bytes (64 KiB) per batch, and any field of one value per row
(labels, sample ids, per-sample scalars), is copied into memory its Tensor owns when first read,
so keeping labels for metrics holds no slot; only large fields (images, tokens, tensors) are
zero-copy views that hold the batch's slot while they live. Loader.close() with views still
alive only marks the loader closed: the C loader (and the memory under the views) is freed when the
last lease comes back. Nothing can free memory that a live view points into.
"""

import array
import collections.abc
import ctypes
import gc
import os
import re
import threading
import time
from ctypes import byref, c_uint32, c_void_p
from typing import Any, Dict, Iterator, List, Optional, Union

from . import _dlpack, _fork, _lib
from ._args import fs_path, index_arg, timeout_ms
from ._dlpack import NoCopy, Tensor
from ._errors import ShardpackError, check, error
from ._lib import lib
from ._params import Params, doc_table
from ._sig import with_params

PathLike = Union[str, bytes, os.PathLike]

_POLL_MS = 200  # next() waits in slices this long so that Ctrl-C (and close) is seen

# Host fields of at most this many bytes per batch, and every field of one value per row (labels,
# ids, scalars), are copied out of the ring when first read: keeping them holds no slot.
SMALL_FIELD_BYTES = 64 << 10


class _Handle:
    """The C loader, shared by the Loader and every lease; freed when the last of them goes.

    The library takes one consumer call (next, set_epoch, the state and count functions, close) at
    a time and refuses a second with SP_EBUSY; here they take turns instead: `caller` is the thread
    inside one, and the others wait on `turn`. Releases may come from any thread at any time."""

    __slots__ = ("ptr", "lock", "turn", "caller", "leases", "closing", "names", "index", "foreign",
                 "small", "__weakref__")

    def __init__(self, ptr, small=0):
        self.ptr = ptr
        self.small = small  # fields up to this many bytes (or one value per row) are copied
        # ptr, caller, leases, closing. Reentrant: a collection run while it is held may finalize
        # another lease of this loader on the same thread, whose give_back takes it again.
        self.lock = threading.RLock()
        self.turn = threading.Condition(self.lock)
        self.caller = None  # ident of the thread inside a consumer call
        self.leases = 0  # leases holding a batch and counted (see _Lease)
        self.closing = False
        self.names = None  # field names: the same for every batch of a loader
        self.index = None
        self.foreign = False  # in a forked child: the C loader is the parent's (see _fork)
        _fork.track(self)

    def _forked(self):
        """In a child just forked: fresh locks (a parent thread may have held these), no caller,
        and the C loader left alone from now on (calls on it raise SP_ESTATE)."""
        self.lock = threading.RLock()
        self.turn = threading.Condition(self.lock)
        self.caller = None
        self.foreign = True

    def enter(self, deadline=None, limit_ms=0):
        """Waits for this thread's turn at a consumer call; returns the C loader. deadline: the
        time.monotonic() by which the turn must come (None: no limit), else SP_ETIMEDOUT naming
        limit_ms, the caller's timeout."""
        me = threading.get_ident()
        with self.lock:
            while True:
                if self.closing or self.ptr is None:
                    raise ValueError("shardpack: the loader is closed")
                if self.caller is None:
                    self.caller = me
                    return self.ptr
                if self.caller == me:  # a signal handler or finalizer called in from inside a call
                    raise RuntimeError("shardpack: Loader call made from inside another call on the same thread")
                if deadline is None:
                    self.turn.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ShardpackError(_lib.SP_ETIMEDOUT, "not ready within %g s: another thread's "
                                         "call held the loader" % (limit_ms / 1000.0))
                self.turn.wait(left)

    def leave(self):
        with self.lock:
            self.caller = None
            self.turn.notify_all()
            if self.closing and self.leases == 0:
                self._close_locked()  # close() was called from inside the call (a signal handler)

    def count(self, lease):
        """The batch sp_loader_next put in lease's slot is now counted as leased."""
        with self.lock:
            # No call between the two statements: an asynchronous exception (Ctrl-C) cannot land
            # between them, so the count and the lease's flag always agree.
            self.leases += 1
            lease.counted = True

    def give_back(self, lease, stream=None):
        """Returns lease's batch, if it holds one; may run on any thread, any number of times.

        sp_loader_release takes the loader's mutex; the lock orders it against the deferred close.
        A device batch is released on the last stream a consumer named (__dlpack__(stream=...)):
        the loader's copy stream waits, on the GPU, for the work queued there before it reuses the
        slot."""
        sh = _dlpack.stream_handle(stream)
        with self.lock:
            # Taken out of the lease without a call in between, so a second give_back (its
            # finalizer after an interrupted one) finds nothing to return.
            bptr = lease.slot.value
            lease.slot.value = None
            counted = lease.counted
            lease.counted = False
            try:
                if bptr and self.ptr is not None and not self.foreign:
                    lib.sp_loader_release_on(self.ptr, bptr, sh)
            finally:
                if counted:
                    self.leases -= 1
                if self.closing and self.leases == 0 and self.caller is None:
                    self._close_locked()

    def close(self):
        """Marks the loader closed and closes the C loader once no lease is out: waits for a call in
        flight on another thread (it sees `closing` within one poll slice and ends)."""
        me = threading.get_ident()
        with self.lock:
            self.closing = True
            self.turn.notify_all()
            while self.caller is not None and self.caller != me:
                self.turn.wait()
            if self.caller is None and self.leases == 0:
                self._close_locked()

    def _close_locked(self):
        ptr = self.ptr
        if ptr is None:
            return
        if self.foreign:  # the parent's: only this process's hold on it goes
            self.ptr = None
            return
        rc = lib.sp_loader_close(ptr)
        if rc:  # a batch is out that no lease accounts for: keep the loader, say so
            raise error(rc, lib.sp_loader_errmsg(ptr))
        self.ptr = None

    def __del__(self):
        # Every lease holds the handle, so none is out here.
        try:
            self.close()
        except Exception:
            pass


class _Lease(NoCopy):
    """One leased sp_batch; returns it to the ring when the last reference goes. Never copied: a
    copy would give the batch back twice.

    It exists before the batch does: sp_loader_next writes the batch into its slot, so a Ctrl-C
    landing anywhere after that call returns finds the batch already owned by an object whose
    finalizer gives it back. `counted` says whether the handle's lease count includes it."""

    _NO_COPY = "batch lease"
    __slots__ = ("handle", "slot", "counted", "stream", "__weakref__")

    def __init__(self, handle):
        self.slot = c_void_p()
        self.counted = False
        self.stream = None  # the consumer's CUDA stream, for a device batch's release
        self.handle = handle

    @property
    def bptr(self):
        return self.slot.value

    def give_back(self):
        h = self.handle
        if h is not None:
            h.give_back(self, self.stream)

    def __del__(self):
        # A finalizer cannot raise: Ctrl-C landing in here is dropped, as CPython would drop it,
        # after give_back's finally has returned the batch and its count.
        try:
            self.give_back()
        except BaseException:
            pass


class Batch(NoCopy, collections.abc.Mapping):
    """One batch: field name -> Tensor (zero-copy), plus epoch, index, size and sample ids.
    It cannot be copied or pickled (TypeError); copies of its arrays can (np.array(b["x"]))."""

    _NO_COPY = "Batch"
    __slots__ = ("_lease", "_handle", "_bptr", "_views", "epoch", "index", "size")

    def __init__(self, handle, lease):
        bptr = lease.bptr
        self._lease = lease
        self._handle = handle
        self._bptr = bptr
        self._views = {}
        self.epoch = lib.sp_batch_epoch(bptr)
        self.index = lib.sp_batch_index(bptr)
        self.size = lib.sp_batch_size(bptr)

    def _live(self):
        if self._lease is None:
            raise ValueError("shardpack: batch %d of epoch %d was released" % (self.index, self.epoch))
        return self._bptr

    def __getitem__(self, name: str) -> Tensor:
        v = self._views.get(name)
        if v is not None:
            return v
        bptr = self._live()
        i = self._handle.index.get(name)
        if i is None:
            raise KeyError(name)
        v = self._views[name] = Tensor(self._lease, lib.sp_batch_tensor(bptr, i), self._handle.small)
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(self._handle.names)

    def __len__(self) -> int:
        return len(self._handle.names)

    def __contains__(self, name):
        return name in self._handle.index

    def sample_ids(self) -> List[Optional[int]]:
        """Global dataset index of each row (None for a row filled in for a skipped sample)."""
        bptr = self._live()
        f = lib.sp_batch_sample_id
        ids = [f(bptr, r) for r in range(self.size)]
        return [None if i == 0xFFFFFFFFFFFFFFFF else i for i in ids]

    def padding(self) -> List[bool]:
        """For each row, whether it repeats a sample to fill this rank's share of the epoch
        (rank_pad=True; its sample id is the sample repeated): leave such rows out of metrics."""
        bptr = self._live()
        f = lib.sp_batch_is_padding
        return [f(bptr, r) == 1 for r in range(self.size)]

    @property
    def released(self) -> bool:
        return self._lease is None

    def release(self) -> None:
        """Gives up this object's hold on the batch: the slot goes back to the loader now if no
        view of the batch is alive, else as soon as the last one goes. The Batch is unusable after."""
        self._lease = None
        self._views = {}

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self):
        state = "released" if self._lease is None else ", ".join(
            "%s: %s%s" % (n, self[n].dtype, list(self[n].shape)) for n in self._handle.names)
        return "<shardpack.Batch epoch %d index %d rows %d {%s}>" % (self.epoch, self.index,
                                                                      self.size, state)


class Loader:
    """Streams a dataset (directory, manifest, shard file, glob of shards, or URL) as Batches.

    Loader(path, *, timeout=None, **params). The keyword parameters come from the library's table:

{params}

    path: str, bytes or os.PathLike (a name that is not UTF-8 works, as with open()), or a URL:
    s3://bucket/prefix or http(s)://host/path of the manifest, of the prefix holding it, or of
    one shard (credentials and endpoints from the AWS_* variables; docs/remote.md; with
    cache_dir="/local/dir", cache_size="50G" its blocks are kept on local disk for later epochs,
    evicted by next use: docs/remote.md, "The cache"; stats() counts remote_bytes and cache_*); or a
    weighted mixture, a list of (path, weight) pairs: one loader over several datasets with the
    same schema (sp_loader_open_mix; docs/loader.md, Mixtures), each a local path or a URL, in
    any mix; an epoch ends when the first source runs out, or after mix_epoch_samples=M samples,
    each source's share by weight.
    small_field_bytes: a host field of at most this many bytes per batch, or of one value per
    row (a label, an id, a per-sample scalar), is copied out of the ring when first read, so
    that keeping it (labels for metrics) holds no ring slot; larger fields are zero-copy views
    that hold the batch's slot while they live (clone them to keep them). Default 64 KiB; 0
    copies nothing.
    timeout: seconds next() may wait for a batch before raising ShardpackError(SP_ETIMEDOUT);
    0 does not wait; None (or math.inf) waits without limit (Ctrl-C still interrupts). A negative
    or NaN timeout is a ValueError.

    Epochs, as with a PyTorch DataLoader: each `for` over the Loader is one whole epoch and the
    next `for` the next epoch:
        for epoch in range(2):
            loader.set_epoch(epoch)        # optional, as DistributedSampler.set_epoch
            for batch in loader: ...
    epochs defaults to 0 here (no bound: as many `for`s as you run; the library's and the CLI's
    default is 1); epochs=N ends after N epochs (a further `for` yields nothing, done is True).
    set_epoch(n), any n >= 0, restarts at the beginning of epoch n, whose order depends only on
    seed and n. A `for` left early (break, exception) leaves the rest of its epoch: the next `for`
    starts the following epoch at its beginning. next() is the low-level call: it goes on where
    the last batch was taken and returns None once at each epoch's end.
    Resume: state_dict() records where the next batch would start; after load_state_dict() the
    next `for` continues that epoch from there to its end (a state saved after a whole epoch
    starts the next one). A Batch maps field names to Tensors that NumPy, PyTorch, CuPy and JAX
    take without a copy.

    Processes: a Loader belongs to the process that opened it. In a child made by os.fork()
    (multiprocessing, DataLoader workers), every call on an inherited Loader raises
    ShardpackError SP_ESTATE ("loader opened in process P, used in child C; open it after fork"),
    and close() or its finalizer there only drop the child's reference: the parent's loader goes on
    untouched. Open a Loader in each worker instead, splitting the data as ranks do:
        info = torch.utils.data.get_worker_info()
        Loader(path, rank=info.id, world_size=info.num_workers, ...)   # inside __iter__
    (docs/loader.md, "Processes and fork()", shows the whole IterableDataset).
    """

    def __init__(self, path: PathLike, *, timeout: Optional[float] = None,
                 small_field_bytes: int = SMALL_FIELD_BYTES, **params: Any) -> None:
        # Unbounded unless asked: each `for` is one epoch (the library's and the CLI's default of
        # one epoch would make a second `for` yield nothing).
        params.setdefault("epochs", 0)
        self._params = Params(params, _lib.SP_SCOPE_LOAD | _lib.SP_SCOPE_READ, "Loader()")
        self._timeout_ms = timeout_ms(timeout, "Loader()")
        small = index_arg(small_field_bytes, "Loader() small_field_bytes", 1 << 40)
        ptr = c_void_p()
        if isinstance(path, (list, tuple)):  # a mixture: [(path, weight), ...]
            if not path or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in path):
                raise TypeError("Loader() path: a path, or a list of (path, weight) pairs for a mixture; got %r"
                                % (path,))
            pairs = [(fs_path(p, "Loader() mixture path"), float(w)) for p, w in path]
            paths = (ctypes.c_char_p * len(pairs))(*[p for p, _ in pairs])
            weights = (ctypes.c_double * len(pairs))(*[w for _, w in pairs])
            rc = lib.sp_loader_open_mix(paths, weights, len(pairs), self._params.ptr, byref(ptr))
            self.path = [os.fspath(p) for p, _ in path]
        else:
            cpath = fs_path(path, "Loader() path")
            rc = lib.sp_loader_open(cpath, self._params.ptr, byref(ptr))
            self.path = os.fspath(path)
        if rc:
            raise error(rc)
        self._h = _Handle(ptr.value, small)
        self._done = False
        # The epoch a `for` left before its end (break, exception), else None: the next `for`
        # starts the epoch after it.
        self._left = None

    # -- iteration
    def _call(self, fn, *args):
        """fn(C loader, *args) as a consumer call, in this thread's turn."""
        h = self._h
        ptr = h.enter()
        try:
            return fn(ptr, *args)
        finally:
            h.leave()

    def next(self, timeout: Optional[float] = None) -> Optional[Batch]:
        """The next Batch of the current epoch, or None at its end (and after the last epoch).

        Safe from several threads: calls take turns (each batch goes to one of them). close() from
        another thread makes a waiting next() raise ValueError within one poll slice.
        timeout: seconds, as Loader()'s; None uses the Loader's own."""
        ms = self._timeout_ms if timeout is None else timeout_ms(timeout, "next()")
        h = self._h
        if ms < 0:
            ptr = h.enter()
            left = ms
        else:  # the wait for the turn counts against the timeout
            start = time.monotonic()
            ptr = h.enter(start + ms / 1000.0, ms)
            left = max(0, ms - int((time.monotonic() - start) * 1000))
        try:
            return self._next(h, ptr, left, ms)
        finally:
            h.leave()

    def _next(self, h, ptr, ms, limit):
        retried = False
        lease = _Lease(h)  # sp_loader_next writes the batch straight into it
        try:
            while True:
                if h.closing:
                    raise ValueError("shardpack: the loader was closed while next() waited")
                wait = _POLL_MS if ms < 0 or ms > _POLL_MS else ms
                rc = lib.sp_loader_next(ptr, byref(lease.slot), wait)
                if rc == 0:
                    h.count(lease)
                    if h.names is None:
                        self._learn_fields(lease.bptr)
                    return Batch(h, lease)
                if rc == _lib.SP_EEPOCH:
                    return None
                if rc == _lib.SP_EDONE:
                    self._done = True
                    return None
                if rc == _lib.SP_ETIMEDOUT and (ms < 0 or ms > wait):
                    if ms > 0:
                        ms -= wait
                    continue
                if rc == _lib.SP_EBUSY and not retried:
                    # Views caught in reference cycles hold leases until the collector runs.
                    retried = True
                    gc.collect()
                    continue
                e = error(rc, lib.sp_loader_errmsg(ptr))
                if rc == _lib.SP_ETIMEDOUT:
                    # The library saw one poll slice; the caller asked for `limit`.
                    e = ShardpackError(rc, _timeout_message(e.message, limit))
                raise e
        except BaseException:
            lease.give_back()  # whatever landed after sp_loader_next returned, no batch is lost
            raise

    def _learn_fields(self, bptr):
        n = lib.sp_batch_num_fields(bptr)
        names = tuple(lib.sp_batch_field_name(bptr, i).decode() for i in range(n))
        self._h.index = {nm: i for i, nm in enumerate(names)}
        self._h.names = names

    def __iter__(self) -> Iterator[Batch]:
        """One epoch: from where the loader stands (the start of an epoch, or the position
        load_state_dict() restored) to the epoch's end. After a `for` that stopped early, the
        next `for` starts the following epoch at its beginning."""
        if self._left is not None:
            self.set_epoch(self._left + 1)
        while True:
            b = self.next()
            if b is None:
                self._left = None
                return
            self._left = b.epoch
            yield b

    @property
    def done(self) -> bool:
        """True once every epoch has been delivered."""
        return self._done

    # -- control
    def set_epoch(self, epoch: int) -> None:
        """Restarts at the beginning of epoch (0-based); leased batches stay valid. epoch: an
        integer from 0 to 2**63 - 1 (TypeError for another type, ValueError out of range)."""
        e = index_arg(epoch, "set_epoch() epoch", (1 << 63) - 1)
        self._call(lambda ptr: check(lib.sp_loader_set_epoch(ptr, e), lib.sp_loader_errmsg(ptr)))
        self._done = False
        self._left = None

    def _count(self, fn):
        n = self._call(fn)
        if n == 0 and self._h.foreign:  # the library's refusal in a forked child, not a count
            raise error(_lib.SP_ESTATE)
        return n

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._count(lib.sp_loader_batches_per_epoch)

    @property
    def samples_per_epoch(self) -> int:
        return self._count(lib.sp_loader_samples_per_epoch)

    def epoch_order(self, epoch: int) -> "array.array[int]":
        """The sample ids this rank's epoch delivers, in order (batch after batch, row after row),
        computed from the order alone (sp_loader_epoch_order): nothing is read and the loader's
        position does not move. An array.array of unsigned 64-bit ids ('Q'; numpy.frombuffer(a,
        numpy.uint64) or numpy.asarray(a) take it without a copy, list(a) makes it a list). A row
        that repeats a sample to fill this rank's share (rank_pad=True, Batch.padding()) has bit
        63 set: ``i & ~(1 << 63)`` is the sample Batch.sample_ids() names, ``i >> 63`` its padding
        flag. epoch: an integer from 0 to 2**63 - 1 (TypeError for another type, ValueError out
        of range)."""
        e = index_arg(epoch, "epoch_order() epoch", (1 << 63) - 1)

        def order(ptr):
            n = check(lib.sp_loader_epoch_order(ptr, e, None, 0), lib.sp_loader_errmsg(ptr))
            ids = array.array("Q", bytes(8 * n))
            if n:
                view = (ctypes.c_uint64 * n).from_buffer(ids)
                got = check(lib.sp_loader_epoch_order(ptr, e, view, n), lib.sp_loader_errmsg(ptr))
                del view  # (an array exporting its buffer cannot shrink)
                del ids[got:]
            return ids

        return self._call(order)

    def stats(self) -> Dict[str, Any]:
        """The loader's statistics as a dict (sp_loader_stats)."""
        st = _lib.sp_loader_stats()
        h = self._h
        with h.lock:  # any thread, any time: only the close waits for it
            if h.closing or h.ptr is None:
                raise ValueError("shardpack: the loader is closed")
            check(lib.sp_loader_stats_get(h.ptr, byref(st)), lib.sp_loader_errmsg(h.ptr))
        d = {}
        for name, _ in _lib.sp_loader_stats._fields_[1:]:  # all but struct_size
            d[name] = getattr(st, name)
        d["io"] = _lib.SP_IO_NAMES.get(st.io, str(st.io))
        d["direct_io"] = bool(st.direct_io)
        for note in ("io_note", "bad_note", "device_note", "threads_note", "rank_note",
                     "host_memory_note", "memory_note"):
            d[note] = getattr(st, note).decode("utf-8", "replace")
        d["host_pinned"] = bool(st.host_pinned)
        d["source_samples"] = list(st.source_samples)[:st.sources]
        d["leases"] = self._h.leases
        return d

    # -- resume, in the style of torchdata's StatefulDataLoader
    def state_dict(self) -> Dict[str, Any]:
        """{'shardpack_state': bytes, 'abi': int}: where the next batch would start."""
        n = lib.sp_loader_state_size()
        buf = ctypes.create_string_buffer(n)
        self._call(lambda ptr: check(lib.sp_loader_save_state(ptr, buf, n), lib.sp_loader_errmsg(ptr)))
        return {"shardpack_state": buf.raw, "abi": _lib.ABI_VERSION}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Makes the next batch the one that would have followed state_dict(); refuses a state
        from another dataset, seed, batch size, rank or world size (ShardpackError SP_EINVAL)."""
        if not isinstance(state, dict) or "shardpack_state" not in state:
            raise TypeError("load_state_dict takes the dict state_dict() returned")
        raw = state["shardpack_state"]
        if isinstance(raw, (int, str)):  # bytes(64) would be 64 zero bytes
            raise TypeError("load_state_dict: 'shardpack_state' holds the bytes state_dict() "
                            "returned, not %s %r" % (type(raw).__name__, raw))
        raw = bytes(raw)
        self._call(lambda ptr: check(lib.sp_loader_load_state(ptr, raw, len(raw)), lib.sp_loader_errmsg(ptr)))
        self._done = False
        self._left = None

    # -- closing
    def close(self) -> None:
        """Stops the loader. Memory under live views stays valid until the last one is gone.

        A next() waiting on another thread raises ValueError within one poll slice, and close()
        waits for it to end. ShardpackError when the library still counts a batch as leased
        that no Batch or view accounts for (the loader then stays open, not leaked silently)."""
        self._h.close()

    @property
    def closed(self) -> bool:
        return self._h.closing

    def __enter__(self) -> "Loader":
        return self

    def __reduce_ex__(self, protocol):
        # Not "cannot pickle '_thread.RLock' object": what is refused, why, and what to do.
        raise TypeError("a shardpack Loader cannot be pickled or copied (a spawned DataLoader "
                        "worker or multiprocessing child would need it): it belongs to the "
                        "process that opened it. Send the path and open a Loader there; for "
                        "DataLoader workers, shardpack.torch.ShardpackIterable does that")

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None:
            h.close()


def _timeout_message(msg, limit_ms):
    """The library's timeout message restated for the caller's own limit, not the poll slice."""
    said = "within %g s" % (limit_ms / 1000.0)
    out, n = re.subn(r"within \d+ ms", said, msg)
    return out if n else "%s (next() waited %s)" % (msg, said[len("within "):])


_DEFAULTS = {"epochs": 0}  # Python's, where the library's differ
Loader.__doc__ = Loader.__doc__.format(params=doc_table(_lib.SP_SCOPE_LOAD, _DEFAULTS))
with_params(Loader.__init__, _lib.SP_SCOPE_LOAD | _lib.SP_SCOPE_READ, defaults=_DEFAULTS)

# ShardpackError is re-exported here so `from shardpack.loader import *` is complete.
__all__ = ["Loader", "Batch", "Tensor", "ShardpackError"]
