"""Loader: batches streamed from a dataset, each a mapping of field names to zero-copy Tensors.

Lifetime. A batch is a lease on one slot of the loader's ring. The lease goes back to the ring
when the Batch and every Tensor, NumPy array, PyTorch tensor, capsule... viewing it are gone, or,
when no view of it is alive, as soon as Batch.release() is called. Loader.close() with views still
alive only marks the loader closed: the C loader (and the memory under the views) is freed when the
last lease comes back. Nothing can free memory that a live view points into.
"""

import collections.abc
import ctypes
import gc
import threading
from ctypes import byref, c_uint32, c_void_p

from . import _dlpack, _lib
from ._dlpack import Tensor
from ._errors import ShardpackError, check, error
from ._lib import lib
from ._params import Params, doc_table

_POLL_MS = 200  # next() waits in slices this long so that Ctrl-C is seen


class _Handle:
    """The C loader, shared by the Loader and every lease; freed when the last of them goes."""

    __slots__ = ("ptr", "lock", "leases", "closing", "names", "index", "__weakref__")

    def __init__(self, ptr):
        self.ptr = ptr
        self.lock = threading.Lock()
        self.leases = 0
        self.closing = False
        self.names = None  # field names: the same for every batch of a loader
        self.index = None

    def release(self, bptr, stream=None):
        # May run on any thread (a consumer frees its tensor there); sp_loader_release takes the
        # loader's mutex, and the lock orders it against the deferred close. A device batch is
        # released on the last stream a consumer named (__dlpack__(stream=...)): the loader's
        # copy stream waits, on the GPU, for the work queued there before it reuses the slot.
        with self.lock:
            ptr = self.ptr
            if ptr is None:
                return
            lib.sp_loader_release_on(ptr, bptr, _dlpack.stream_handle(stream))
            self.leases -= 1
            if self.closing and self.leases == 0:
                self._close_locked()

    def close(self):
        with self.lock:
            self.closing = True
            if self.leases == 0:
                self._close_locked()

    def _close_locked(self):
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.sp_loader_close(ptr)

    def __del__(self):
        # Every lease holds the handle, so none is out here.
        try:
            self.close()
        except Exception:
            pass


class _Lease:
    """One leased sp_batch; returns it to the ring when the last reference goes."""

    __slots__ = ("handle", "bptr", "stream", "__weakref__")

    def __init__(self, handle, bptr):
        self.handle = handle
        self.bptr = bptr
        self.stream = None  # the consumer's CUDA stream, for a device batch's release

    def __del__(self):
        h = self.handle
        if h is not None:
            self.handle = None
            try:
                h.release(self.bptr, self.stream)
            except Exception:
                pass


class Batch(collections.abc.Mapping):
    """One batch: field name -> Tensor (zero-copy), plus epoch, index, size and sample ids."""

    __slots__ = ("_lease", "_handle", "_bptr", "_views", "epoch", "index", "size")

    def __init__(self, handle, bptr):
        self._lease = _Lease(handle, bptr)
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

    def __getitem__(self, name):
        v = self._views.get(name)
        if v is not None:
            return v
        bptr = self._live()
        i = self._handle.index.get(name)
        if i is None:
            raise KeyError(name)
        v = self._views[name] = Tensor(self._lease, lib.sp_batch_tensor(bptr, i))
        return v

    def __iter__(self):
        return iter(self._handle.names)

    def __len__(self):
        return len(self._handle.names)

    def __contains__(self, name):
        return name in self._handle.index

    def sample_ids(self):
        """Global dataset index of each row (None for a row filled in for a skipped sample)."""
        bptr = self._live()
        f = lib.sp_batch_sample_id
        ids = [f(bptr, r) for r in range(self.size)]
        return [None if i == 0xFFFFFFFFFFFFFFFF else i for i in ids]

    @property
    def released(self):
        return self._lease is None

    def release(self):
        """Gives up this object's hold on the batch: the slot goes back to the loader now if no
        view of the batch is alive, else as soon as the last one goes. The Batch is unusable after."""
        self._lease = None
        self._views = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        state = "released" if self._lease is None else ", ".join(
            "%s: %s%s" % (n, self[n].dtype, list(self[n].shape)) for n in self._handle.names)
        return "<shardpack.Batch epoch %d index %d rows %d {%s}>" % (self.epoch, self.index,
                                                                      self.size, state)


class Loader:
    """Streams a dataset (directory, manifest, shard file or glob of shards) as Batches.

    Loader(path, *, timeout=None, **params). The keyword parameters come from the library's table:

{params}

    timeout: seconds next() may wait for a batch before raising ShardpackError(SP_ETIMEDOUT);
    None waits without limit (Ctrl-C still interrupts).

    Iterating yields the batches of the current epoch and stops at its end; iterate again for the
    next epoch (until `epochs` have been delivered; epochs=0 never ends). A Batch maps field names
    to Tensors that NumPy, PyTorch, CuPy and JAX take without a copy.
    """

    def __init__(self, path, *, timeout=None, **params):
        self._params = Params(params, _lib.SP_SCOPE_LOAD | _lib.SP_SCOPE_READ, "Loader()")
        ptr = c_void_p()
        rc = lib.sp_loader_open(str(path).encode(), self._params.ptr, byref(ptr))
        if rc:
            raise error(rc)
        self._h = _Handle(ptr.value)
        self._timeout_ms = -1 if timeout is None else max(0, int(timeout * 1000))
        self._out = c_void_p()
        self._done = False
        self.path = str(path)

    # -- iteration
    def _ptr(self):
        h = self._h
        if h.closing or h.ptr is None:
            raise ValueError("shardpack: the loader is closed")
        return h.ptr

    def next(self, timeout=None):
        """The next Batch of the current epoch, or None at its end (and after the last epoch)."""
        ptr = self._ptr()
        ms = self._timeout_ms if timeout is None else max(0, int(timeout * 1000))
        out = self._out
        h = self._h
        retried = False
        while True:
            wait = _POLL_MS if ms < 0 or ms > _POLL_MS else ms
            rc = lib.sp_loader_next(ptr, byref(out), wait)
            if rc == 0:
                with h.lock:
                    h.leases += 1
                if h.names is None:
                    self._learn_fields(out.value)
                return Batch(h, out.value)
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
            raise error(rc, lib.sp_loader_errmsg(ptr))

    def _learn_fields(self, bptr):
        n = lib.sp_batch_num_fields(bptr)
        names = tuple(lib.sp_batch_field_name(bptr, i).decode() for i in range(n))
        self._h.index = {nm: i for i, nm in enumerate(names)}
        self._h.names = names

    def __iter__(self):
        while True:
            b = self.next()
            if b is None:
                return
            yield b

    @property
    def done(self):
        """True once every epoch has been delivered."""
        return self._done

    # -- control
    def set_epoch(self, epoch):
        """Restarts at the beginning of epoch (0-based); leased batches stay valid."""
        ptr = self._ptr()
        check(lib.sp_loader_set_epoch(ptr, int(epoch)), lib.sp_loader_errmsg(ptr))
        self._done = False

    def __len__(self):
        """Batches per epoch on this rank."""
        return lib.sp_loader_batches_per_epoch(self._ptr())

    @property
    def samples_per_epoch(self):
        return lib.sp_loader_samples_per_epoch(self._ptr())

    def stats(self):
        """The loader's statistics as a dict (sp_loader_stats)."""
        st = _lib.sp_loader_stats()
        ptr = self._ptr()
        check(lib.sp_loader_stats_get(ptr, byref(st)), lib.sp_loader_errmsg(ptr))
        d = {}
        for name, _ in _lib.sp_loader_stats._fields_:
            d[name] = getattr(st, name)
        d["io"] = _lib.SP_IO_NAMES.get(st.io, str(st.io))
        d["direct_io"] = bool(st.direct_io)
        for note in ("io_note", "bad_note", "device_note"):
            d[note] = getattr(st, note).decode("utf-8", "replace")
        d["host_pinned"] = bool(st.host_pinned)
        d["leases"] = self._h.leases
        return d

    # -- resume, in the style of torchdata's StatefulDataLoader
    def state_dict(self):
        """{'shardpack_state': bytes, 'abi': int}: where the next batch would start."""
        ptr = self._ptr()
        n = lib.sp_loader_state_size()
        buf = ctypes.create_string_buffer(n)
        check(lib.sp_loader_save_state(ptr, buf, n), lib.sp_loader_errmsg(ptr))
        return {"shardpack_state": buf.raw, "abi": _lib.ABI_VERSION}

    def load_state_dict(self, state):
        """Makes the next batch the one that would have followed state_dict(); refuses a state
        from another dataset, seed, batch size, rank or world size (ShardpackError SP_EINVAL)."""
        if not isinstance(state, dict) or "shardpack_state" not in state:
            raise TypeError("load_state_dict takes the dict state_dict() returned")
        raw = bytes(state["shardpack_state"])
        ptr = self._ptr()
        check(lib.sp_loader_load_state(ptr, raw, len(raw)), lib.sp_loader_errmsg(ptr))
        self._done = False

    # -- closing
    def close(self):
        """Stops the loader. Memory under live views stays valid until the last one is gone."""
        self._h.close()

    @property
    def closed(self):
        return self._h.closing

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None:
            h.close()


Loader.__doc__ = Loader.__doc__.format(params=doc_table(_lib.SP_SCOPE_LOAD))

# ShardpackError is re-exported here so `from shardpack.loader import *` is complete.
__all__ = ["Loader", "Batch", "Tensor", "ShardpackError"]
