"""Zero-copy tensor views of leased batch memory: DLPack capsules and the array interfaces.

A Tensor describes one field of one batch (the DLTensor the library hands out) and holds a
reference to the batch's lease. Every consumer keeps the Tensor (or a DLPack capsule made from it)
alive for as long as it uses the memory:

- numpy.asarray(t) goes through __array_interface__ and keeps t as the array's base;
- cupy/numba go through __cuda_array_interface__ and keep t alive the same way;
- torch.from_dlpack(t), numpy.from_dlpack(t), jax.dlpack.from_dlpack(t) and cupy.from_dlpack(t)
  call __dlpack__, which returns a PyCapsule named "dltensor" over a DLManagedTensor; its deleter,
  called by the consumer when its tensor dies (or by the capsule's destructor when the capsule was
  never consumed), drops the reference to t.

So the lease goes back to the loader only when the batch and every view of it are gone. Views
still alive when the interpreter exits keep their lease: from the exit hook on, their deleter is
NULL, so a consumer freeing them during or after shutdown calls nothing (see _KEPT).
"""

import atexit
import ctypes
import sys
import threading
from ctypes import POINTER, c_char_p, c_int, c_int64, c_void_p, py_object

from . import _lib
from ._errors import check as _check
from ._lib import DLDeleter, DLManagedTensor, lib

# ------------------------------------------------------------------------------ capsule plumbing

_pyapi = ctypes.pythonapi
_PyCapsule_New = _pyapi.PyCapsule_New
_PyCapsule_New.restype = py_object
_PyCapsule_New.argtypes = [c_void_p, c_void_p, c_void_p]
_PyCapsule_IsValid = _pyapi.PyCapsule_IsValid
_PyCapsule_IsValid.restype = c_int
_PyCapsule_IsValid.argtypes = [c_void_p, c_char_p]
_PyCapsule_GetPointer = _pyapi.PyCapsule_GetPointer
_PyCapsule_GetPointer.restype = c_void_p
_PyCapsule_GetPointer.argtypes = [c_void_p, c_char_p]

# PyCapsule keeps the name pointer, not a copy: it must outlive every capsule.
_CAPSULE_NAME = ctypes.create_string_buffer(b"dltensor")

# Address of each live DLManagedTensor -> (the struct, its shape/strides arrays, the Tensor).
# A consumer may call the deleter from any thread (PyTorch frees tensors on autograd threads);
# ctypes takes the GIL for the callback, and the lock keeps the table consistent regardless.
_live = {}
_live_lock = threading.Lock()
_NULL_DELETER = DLDeleter()  # DLPack allows a NULL deleter: consumers then call nothing


def _make_callbacks(live, lock, is_finalizing, cast, c_void_p, POINTER, DLManagedTensor,
                    is_valid, get_pointer, name):
    """The DLPack deleter and the capsule destructor. They use only what they are given here,
    never this module's globals, which interpreter shutdown clears while consumers still hold
    views (a view in a reference cycle dies in the last collection, after that)."""

    def deleter(ptr):
        if is_finalizing():  # the process is ending: leave the view's memory and lease as they are
            return
        addr = cast(ptr, c_void_p).value
        with lock:
            entry = live.pop(addr, None)
        del entry  # dropping the Tensor may release the lease, outside the lock

    def destructor(cap):
        # Still named "dltensor": nobody consumed it, so the producer's deleter runs here. A
        # consumer renames it "used_dltensor" and becomes responsible for calling the deleter.
        if is_finalizing():
            return
        if is_valid(cap, name.value):
            ptr = get_pointer(cap, name.value)
            if ptr:
                deleter(cast(ptr, POINTER(DLManagedTensor)))

    return deleter, destructor


_managed_deleter, _capsule_destructor = _make_callbacks(
    _live, _live_lock, sys.is_finalizing, ctypes.cast, c_void_p, POINTER, DLManagedTensor,
    _PyCapsule_IsValid, _PyCapsule_GetPointer, _CAPSULE_NAME)
_DELETER = DLDeleter(_managed_deleter)
_DESTRUCTOR = ctypes.CFUNCTYPE(None, c_void_p)(_capsule_destructor)
_DESTRUCTOR_ADDR = ctypes.cast(_DESTRUCTOR, c_void_p).value

# Interpreter shutdown must not free what a consumer may still call or read: the ctypes
# trampolines (their code is freed with the CFUNCTYPE objects), the DLManagedTensor structs of
# live views (their deleter field is read) and the capsule name. One reference to all of them is
# never dropped, so they stay until the process ends. And at exit, before the last collections,
# every live struct's deleter is set to NULL: a view dying after that (in a cycle collected at
# shutdown, on a daemon thread, or in a C++ destructor after Python is gone) calls nothing, so
# no Python code runs while or after the interpreter is torn down. Leases still out then are
# left to the ending process.
_exiting = []  # non-empty once the exit hook ran: new structs get no deleter either
_KEPT = (_DELETER, _DESTRUCTOR, _CAPSULE_NAME, _NULL_DELETER, _live, _live_lock, _exiting,
         _managed_deleter, _capsule_destructor)
_pyapi.Py_IncRef(py_object(_KEPT))


def _at_exit(live=_live, lock=_live_lock, exiting=_exiting, null=_NULL_DELETER):
    with lock:
        exiting.append(True)
        for m, _arr, _t in live.values():
            m.deleter = null


atexit.register(_at_exit)


def live_capsules():
    """Number of DLManagedTensors handed out and not yet deleted (for tests)."""
    return len(_live)


# ------------------------------------------------------------------------------------ dtypes

_NUMPY_KIND = {_lib.kDLInt: "i", _lib.kDLUInt: "u", _lib.kDLFloat: "f", _lib.kDLComplex: "c",
               _lib.kDLBool: "b"}
_NAMES = {(_lib.kDLInt, 8): "int8", (_lib.kDLInt, 16): "int16", (_lib.kDLInt, 32): "int32",
          (_lib.kDLInt, 64): "int64", (_lib.kDLUInt, 8): "uint8", (_lib.kDLUInt, 16): "uint16",
          (_lib.kDLUInt, 32): "uint32", (_lib.kDLUInt, 64): "uint64",
          (_lib.kDLFloat, 16): "float16", (_lib.kDLFloat, 32): "float32",
          (_lib.kDLFloat, 64): "float64", (_lib.kDLBfloat, 16): "bfloat16",
          (_lib.kDLBool, 8): "bool"}


def _typestr(code, bits):
    kind = _NUMPY_KIND.get(code)
    if kind is None:  # bfloat16 and opaque types have no array-interface kind: raw bytes
        return "|V%d" % (bits // 8)
    return ("|" if bits == 8 else "<") + kind + str(bits // 8)


_HOST_DEVICES = (_lib.kDLCPU, _lib.kDLCUDAHost, _lib.kDLROCMHost)
_CUDA_DEVICES = (_lib.kDLCUDA, _lib.kDLCUDAManaged)


# ------------------------------------------------------------------------------ copy and pickle

class NoCopy:
    """Refuses copy.copy, copy.deepcopy and pickle: the object stands for a lease on loader memory,
    and a copy would either share the lease (and return it twice) or mean nothing in another
    process. _NO_COPY names what the object is; the message says what to copy instead."""

    __slots__ = ()
    _NO_COPY = "object"

    def _refuse(self, *args):
        raise TypeError("a shardpack %s is a lease on loader memory and cannot be copied or pickled; "
                        "copy its arrays instead, e.g. np.array(batch['x']) or "
                        "torch.from_dlpack(batch['x']).clone()" % self._NO_COPY)

    __copy__ = __deepcopy__ = __reduce__ = __reduce_ex__ = _refuse


# ------------------------------------------------------------------------------------- Tensor

class Owned:
    """Host memory a Tensor owns (a copy of a small field): freed with the last view of it."""

    __slots__ = ("buf", "__weakref__")
    bptr = None  # no batch behind it

    def __init__(self, nbytes):
        # 8-byte words: aligned for every dtype a field can have (at most 8 bytes wide).
        self.buf = (ctypes.c_uint64 * max(1, (nbytes + 7) // 8))()


class Tensor(NoCopy):
    """One field of a batch. A large field is viewed in place and keeps the batch's lease while
    it lives; a small one (Loader's small_field_bytes) is a copy in memory the Tensor owns and
    keeps nothing of the batch. It cannot be copied or pickled (TypeError); copies of its data
    can: np.array(t), torch.from_dlpack(t).clone()."""

    _NO_COPY = "Tensor"
    __slots__ = ("_lease", "_data", "_shape", "_code", "_bits", "_lanes", "_devtype", "_devid",
                 "__weakref__")

    def __init__(self, lease, dlt, copy_below=0):
        """copy_below: a host field of at most this many bytes, or of one value per row, is
        copied into memory of its own instead of keeping lease."""
        t = dlt.contents
        self._lease = lease
        self._data = (t.data or 0) + t.byte_offset
        nd = t.ndim
        self._shape = tuple(t.shape[i] for i in range(nd))
        if t.strides:
            # The library promises compact row-major; refuse anything else rather than misread it.
            if tuple(t.strides[i] for i in range(nd)) != _compact(self._shape):
                raise ValueError("shardpack: non-compact DLTensor strides are not supported")
        dt = t.dtype
        self._code, self._bits, self._lanes = dt.code, dt.bits, dt.lanes
        self._devtype, self._devid = t.device.device_type, t.device.device_id
        if copy_below > 0 and self._devtype in _HOST_DEVICES:
            n = self.nbytes
            if n <= copy_below or nd <= 1:
                own = Owned(n)
                ctypes.memmove(own.buf, self._data, n)
                self._lease = own
                self._data = ctypes.addressof(own.buf)
                self._devtype, self._devid = _lib.kDLCPU, 0

    @property
    def owns_memory(self):
        """True for a copy the Tensor owns (a small field), False for a view of the batch."""
        return isinstance(self._lease, Owned)

    # -- description
    @property
    def shape(self):
        return self._shape

    @property
    def ndim(self):
        return len(self._shape)

    @property
    def dtype(self):
        """The element type's name: 'int32', 'float16', 'bfloat16', ..."""
        return _NAMES.get((self._code, self._bits), "dl(%d,%d)" % (self._code, self._bits))

    @property
    def itemsize(self):
        return self._bits * self._lanes // 8

    @property
    def nbytes(self):
        n = self.itemsize
        for d in self._shape:
            n *= d
        return n

    @property
    def data_ptr(self):
        """Address of the first element (as torch.Tensor.data_ptr())."""
        return self._data

    @property
    def device(self):
        return (self._devtype, self._devid)

    def __len__(self):
        return self._shape[0] if self._shape else 0

    def __repr__(self):
        return "<shardpack.Tensor %s %s on %s at 0x%x>" % (
            self.dtype, list(self._shape), _device_name(self._devtype, self._devid), self._data)

    def numpy(self):
        """A NumPy array over the same memory (needs NumPy; host memory only)."""
        import numpy
        return numpy.asarray(self)

    # -- DLPack
    def __dlpack_device__(self):
        return (self._devtype, self._devid)

    def __dlpack__(self, stream=None):
        """A "dltensor" PyCapsule over this memory; the consumer's deleter drops the reference.

        stream: the consumer's stream (CUDA: an integer handle, 1 for the legacy default stream,
        2 for the per-thread one; None means 1), None for host memory. Host batches are complete
        before next() hands them out. For device memory the consumer's stream is made to wait,
        on the GPU, for the batch's copy, and the batch is later released on that stream (the
        loader reuses its memory only after the work queued there at release). One stream is
        kept per batch: the last one named. Work on a batch from two streams must be joined
        into the last one (or synchronized) before its views die, and that stream must outlive
        them.
        """
        if stream is not None and self._devtype in _HOST_DEVICES and stream != -1:
            raise ValueError("shardpack: stream must be None for host memory")
        if self._devtype in _CUDA_DEVICES:
            if stream == 0 or stream == -1:
                raise ValueError("shardpack: stream %d is not a CUDA stream (1: legacy default, 2: per-thread)"
                                 % stream)
            s = 1 if stream is None else stream
            _check(lib.sp_batch_wait(self._lease.bptr, stream_handle(s)))
            # The release may run on another thread (wherever the last view dies), where 2 would
            # name that thread's own stream: release on the legacy stream instead, which orders
            # after every blocking stream, per-thread default streams included.
            self._lease.stream = 1 if s == 2 else s
        nd = len(self._shape)
        arr = (c_int64 * (2 * nd if nd else 1))()
        st = _compact(self._shape)
        for i in range(nd):
            arr[i] = self._shape[i]
            arr[nd + i] = st[i]
        m = DLManagedTensor()
        t = m.dl_tensor
        t.data = self._data
        t.device.device_type = self._devtype
        t.device.device_id = self._devid
        t.ndim = nd
        t.dtype.code, t.dtype.bits, t.dtype.lanes = self._code, self._bits, self._lanes
        base = ctypes.addressof(arr)
        t.shape = ctypes.cast(base, POINTER(c_int64))
        t.strides = ctypes.cast(base + 8 * nd, POINTER(c_int64))
        t.byte_offset = 0
        addr = ctypes.addressof(m)
        m.manager_ctx = addr
        with _live_lock:
            m.deleter = _NULL_DELETER if _exiting else _DELETER
            _live[addr] = (m, arr, self)
        try:
            return _PyCapsule_New(addr, ctypes.addressof(_CAPSULE_NAME), _DESTRUCTOR_ADDR)
        except BaseException:
            with _live_lock:
                _live.pop(addr, None)
            raise

    # -- array interfaces
    def _interface(self):
        return {"shape": self._shape, "typestr": _typestr(self._code, self._bits),
                "data": (self._data, False), "strides": None, "version": 3}

    @property
    def __array_interface__(self):
        if self._devtype not in _HOST_DEVICES:
            raise AttributeError("__array_interface__: the tensor is in device memory (%s)"
                                 % _device_name(self._devtype, self._devid))
        return self._interface()

    @property
    def __cuda_array_interface__(self):
        if self._devtype not in _CUDA_DEVICES:
            raise AttributeError("__cuda_array_interface__: the tensor is in host memory")
        d = self._interface()
        # Readers of this interface take no stream: the host waits here for the batch's copy,
        # so the data is complete on every stream ("stream": None). The release then orders on
        # the legacy default stream.
        _check(lib.sp_batch_sync(self._lease.bptr))
        d["stream"] = None
        return d


def stream_handle(stream):
    """The cudaStream_t (as a void pointer) of a DLPack stream number: None for the legacy
    default stream (NULL), else the integer itself (1 is cudaStreamLegacy, 2 cudaStreamPerThread,
    anything else a stream's address)."""
    return None if stream is None else c_void_p(stream)


def _compact(shape):
    st = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        st[i] = st[i + 1] * shape[i + 1]
    return tuple(st)


def _device_name(devtype, devid):
    name = {_lib.kDLCPU: "cpu", _lib.kDLCUDA: "cuda", _lib.kDLCUDAHost: "cuda_host",
            _lib.kDLCUDAManaged: "cuda_managed", _lib.kDLROCM: "rocm"}.get(devtype, str(devtype))
    return name if devtype == _lib.kDLCPU else "%s:%d" % (name, devid)
