"""Writer (samples in, a dataset directory out) and Dataset (random access to samples).

Schema: a list of fields, each a Field or a tuple (name, kind[, dtype[, shape]]):
    kind 'label'  -> one int64 (dtype and shape not needed)
    kind 'tokens' -> dtype 'uint16' or 'uint32', shape (sequence length,)
    kind 'tensor' -> any numeric dtype, shape of 0..8 dims
    kind 'bytes' / 'image' -> variable-length bytes (image: a JPEG, PNG or WebP; with
        validate_images on, the default, add() refuses bytes the loader could not decode, or
        declaring more than max_pixels, with ShardpackError SP_EBADINPUT naming the field, and the
        writer goes on)
Values, for each field in schema order (Writer.add):
    bytes, bytearray, or any buffer of format 'B' -> the field's raw bytes, taken as they are
        (little-endian). A bytes or image field takes any buffer (NumPy arrays too) as raw bytes.
    typed data of a label, tokens or tensor field -> NumPy arrays (read in place when
        C-contiguous), array.array, ctypes arrays, typed memoryviews. Its element type must be the
        field's dtype, else TypeError naming the field (convert it first, e.g. a.astype("float32"));
        data of that dtype in big-endian byte order (NumPy '>f4', memoryview '>f') is converted,
        one copy. The element count must be the field's (ShardpackError SP_ESCHEMA naming it).
    numbers -> ints and floats, NumPy scalars, or sequences of them, packed as the field's dtype: a
        label takes one integer, a tensor field as many numbers as it holds. A value the dtype
        cannot hold (a label outside int64, 70000 for int16, 2.5 for an integer) is refused
        (ValueError, or TypeError for the wrong kind of number) naming the field and its range. A
        bool field takes only True/False (or 0/1); any other field refuses a bool scalar.
Paths (Writer, Dataset) are str, bytes or os.PathLike; names that are not UTF-8 work, as with open().
"""

import collections
import ctypes
import numbers
import os
import re
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Union
import struct
import sys
import threading
from ctypes import byref, c_size_t, c_uint32, c_uint64, c_void_p

from . import _fork, _lib
from ._args import fs_path, meta_item
from ._errors import ShardpackError, check, error
from ._lib import lib
from ._params import Params
from ._sig import with_params

if TYPE_CHECKING:
    from .loader import PathLike

Field = collections.namedtuple("Field", "name kind dtype shape")
Field.__new__.__defaults__ = (None, ())

# dtype name -> (kind, bytes per element); kind as in NumPy typestrs ('i' signed integer,
# 'u' unsigned, 'f' float, 'b' bool), and 'bf16' for bfloat16, which has no letter of its own.
_DTYPES = {"uint8": ("u", 1), "int8": ("i", 1), "uint16": ("u", 2), "int16": ("i", 2),
           "uint32": ("u", 4), "int32": ("i", 4), "uint64": ("u", 8), "int64": ("i", 8),
           "float16": ("f", 2), "bfloat16": ("bf16", 2), "float32": ("f", 4), "float64": ("f", 8),
           "bool": ("b", 1)}
# struct codes packing Python numbers as each dtype (bool as a byte, so that 2 is refused)
_PACK = {"uint8": "B", "int8": "b", "uint16": "H", "int16": "h", "uint32": "I", "int32": "i",
         "uint64": "Q", "int64": "q", "float16": "e", "float32": "f", "float64": "d", "bool": "B"}
_TYPED_KINDS = ("label", "tokens", "tensor")
_RAW_FORMATS = ("B", "c")  # buffers of these formats (bytes, bytearray) are raw bytes
_ONE_NUMBER = re.compile(r"([@=<>!]?)([bBhHiIlLqQnNefd?])$")
_DEFAULT_DTYPE = {"label": "int64", "image": "uint8", "bytes": "uint8"}


def _schema_ptr(fields):
    s = lib.sp_schema_create()
    if not s:
        raise MemoryError("sp_schema_create")
    try:
        for f in fields:
            f = Field(*f) if not isinstance(f, Field) else f
            kind = lib.sp_field_kind_from_name(str(f.kind).encode())
            if kind < 0:
                raise ValueError("field %r: unknown kind %r (label, tokens, tensor, bytes, image)"
                                 % (f.name, f.kind))
            dtname = f.dtype or _DEFAULT_DTYPE.get(f.kind)
            if dtname is None:
                raise ValueError("field %r: kind %r needs a dtype" % (f.name, f.kind))
            dtype = lib.sp_dtype_from_name(_dtype_name(dtname).encode())
            if dtype < 0:
                raise ValueError("field %r: unknown dtype %r" % (f.name, dtname))
            shape = (tuple(f.shape) if isinstance(f.shape, (tuple, list)) else (f.shape,)) \
                if f.shape is not None else ()
            dims = (c_uint64 * max(1, len(shape)))(*[int(d) for d in shape])
            rc = lib.sp_schema_add(s, str(f.name).encode(), kind, dtype, len(shape), dims)
            if rc:
                raise ValueError("field %r: %s" % (f.name, _lib.last_error() or error(rc)))
    except BaseException:
        lib.sp_schema_destroy(s)
        raise
    return s


def _dtype_name(d):
    return getattr(d, "name", None) or str(d)  # NumPy dtypes and classes have .name / __name__


def _fields_of(schema_ptr):
    out = []
    for i in range(lib.sp_schema_num_fields(schema_ptr)):
        fi = _lib.sp_field_info()
        check(lib.sp_schema_field(schema_ptr, i, byref(fi)))
        kind = lib.sp_field_kind_name(fi.kind).decode()
        out.append((Field(fi.name.decode(), kind, lib.sp_dtype_name(fi.dtype).decode(),
                          tuple(fi.shape[d] for d in range(fi.ndim))), fi.fixed_bytes))
    return out


class Writer:
    """Writes a dataset directory; the dataset appears at path only when finish() succeeds.

    Writer(path, fields, **params): params from the library's table (shard_size, block_size,
    level, threads, compress, overwrite, max_block_bytes, max_shards, max_sample_bytes,
    dataset_id, validate_images). As a context manager it finishes on a clean exit and discards
    everything on an exception. A fixed dataset_id makes the files a function of the samples,
    metadata and parameters alone (byte-identical to shardpack.pack()'s for the same samples).

    Threads: any thread may call it; calls take turns (the C writer takes one at a time), so
    samples added from several threads each land once, whole, in the order their add() calls got
    their turn. A call made from inside another on the same thread (a signal handler) is refused.

    Processes: in a child made by os.fork(), every call on an inherited Writer raises
    ShardpackError SP_ESTATE ("writer opened in process P, used in child C; open it after fork"),
    and close() or its finalizer there only drop the child's reference: the parent's writer, its
    threads and its staging directory are untouched. Open a Writer (to another path) in the child.
    """

    def __init__(self, path: "PathLike", fields: Sequence[Any], **params: Any) -> None:
        # Held through every call on _w (and _vals); first: close() (from __del__) needs it even
        # when __init__ fails.
        self._lock = threading.RLock()
        self._w = None
        self._foreign = False  # in a forked child: the C writer is the parent's (see _fork)
        self._params = Params(params, _lib.SP_SCOPE_WRITE, "Writer()")
        s = _schema_ptr(fields)
        try:
            self.fields = _fields_of(s)
            w = c_void_p()
            rc = lib.sp_writer_open(fs_path(path, "Writer() path"), s, self._params.ptr, byref(w))
            if rc:
                raise error(rc)
            self._w = w.value
        finally:
            lib.sp_schema_destroy(s)
        self.path = os.fspath(path)
        self._names = {f.name: i for i, (f, _) in enumerate(self.fields)}
        self._vals = (_lib.sp_value * len(self.fields))()
        _fork.track(self)

    def _forked(self):
        """In a child just forked: a fresh lock (a parent thread may have held it), and the C
        writer left alone from now on (calls on it raise SP_ESTATE; close only lets go of it)."""
        self._lock = threading.RLock()
        self._foreign = True

    def _turn(self):
        """The lock, for `with self._turn():` around a call. Refuses a call made from inside another
        on the same thread (a signal handler or finalizer) rather than letting it free or change
        what that call uses. (The with statement takes the lock atomically: an interrupt cannot
        leave it held.)"""
        if self._lock._is_owned():
            raise RuntimeError("shardpack: Writer call made from inside another call on the same thread")
        return self._lock

    def _ptr(self):
        """The C writer; called holding the lock."""
        if self._w is None:
            raise ValueError("shardpack: the writer is finished or closed")
        return self._w

    def set_meta(self, key: Union[str, bytes], value: Union[str, bytes]) -> None:
        """Dataset metadata, before the first shard is complete. The key (str, stored as UTF-8,
        or bytes, stored as they are) is text of 1..255 bytes as UTF-8, without control
        characters (ShardpackError otherwise); the value is str (stored as UTF-8) or bytes.
        Another type of key or value is a TypeError."""
        k, v = meta_item(key, value, "set_meta()")
        with self._turn():
            w = self._ptr()
            check(lib.sp_writer_set_meta(w, k, v, len(v)), lib.sp_writer_errmsg(w))

    def add(self, *values: Any, **named: Any) -> None:
        """Adds one sample: the fields' values in schema order, or by name (or one dict)."""
        if len(values) == 1 and isinstance(values[0], dict) and not named:
            named, values = values[0], ()
        if named:
            if values:
                raise TypeError("add() takes values by position or by name, not both")
            missing = [f.name for f, _ in self.fields if f.name not in named]
            extra = [k for k in named if k not in self._names]
            if missing or extra:
                raise TypeError("add(): missing fields %s, unknown fields %s" % (missing, extra))
            values = [named[f.name] for f, _ in self.fields]
        if len(values) != len(self.fields):
            raise TypeError("add() takes %d values (%s), got %d" % (
                len(self.fields), ", ".join(f.name for f, _ in self.fields), len(values)))
        keep = []  # objects whose memory the sp_values point into, alive until the call returns
        bufs = [_buffer(v, f, fixed, keep) for v, (f, fixed) in zip(values, self.fields)]
        with self._turn():  # the shared sp_value array and the C call, as one
            w = self._ptr()
            for i, (addr, size) in enumerate(bufs):
                self._vals[i].data = addr
                self._vals[i].size = size
            rc = lib.sp_writer_add(w, self._vals, len(self.fields))
            if rc:
                raise error(rc, lib.sp_writer_errmsg(w))

    def stats(self):
        st = _lib.sp_write_stats()
        with self._turn():
            w = self._ptr()
            check(lib.sp_writer_stats(w, byref(st)), lib.sp_writer_errmsg(w))
        return _stats_dict(st, self.fields)

    def finish(self):
        """Publishes the dataset; returns the final stats. The writer is closed after."""
        with self._turn():
            w = self._ptr()
            rc = lib.sp_writer_finish(w)
            if rc:
                e = error(rc, lib.sp_writer_errmsg(w))
                self._close_in_turn()
                raise e
            st = _lib.sp_write_stats()
            lib.sp_writer_stats(w, byref(st))
            self._close_in_turn()
        return _stats_dict(st, self.fields)

    def close(self):
        """Discards an unfinished dataset (nothing appears at path); frees the writer. Waits for
        a call in flight on another thread."""
        with self._turn():
            self._close_in_turn()

    def _close_in_turn(self):
        w, self._w = self._w, None
        if w is not None and not self._foreign:
            lib.sp_writer_destroy(w)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None and self._w is not None:
            self.finish()
        else:
            self.close()

    def __del__(self):
        self.close()


def _stats_dict(st, fields):
    d = {n: getattr(st, n) for n, _ in _lib.sp_write_stats._fields_ if n not in ("struct_size", "field_raw_bytes")}
    d["field_raw_bytes"] = {f.name: st.field_raw_bytes[i] for i, (f, _) in enumerate(fields)}
    return d


def _buffer(v, f, fixed, keep):
    """(address, size) of v's bytes as field f stores them; keep holds what must stay alive."""
    if isinstance(v, bytes):
        keep.append(v)
        return _address(v), len(v)
    if isinstance(v, numbers.Number):  # Python and NumPy scalars
        if isinstance(v, bool) and f.dtype != "bool":
            raise TypeError("%s takes numbers, not the bool %r (pass int(value) if you mean %d)"
                            % (_what(f), v, v))
        return _pack((v,), f, fixed, keep, scalar=True)
    typed = f.kind in _TYPED_KINDS  # bytes and image fields take any buffer as its raw bytes
    ai = getattr(v, "__array_interface__", None)
    if ai is not None:  # NumPy (and anything else speaking the array interface)
        swap = typed and _check_typed(f, fixed, _typestr_type(v, ai["typestr"]),
                                      _prod(ai["shape"]), "an array of " + _array_dtype(v, ai))
        contiguous = ai.get("strides") is None and ai["data"] is not None
        if contiguous and not swap:
            keep.append(v)
            size = getattr(v, "nbytes", None)
            if size is None:
                size = len(memoryview(v).cast("B"))
            return ai["data"][0], size
        b = memoryview(v).tobytes()  # not contiguous, or big-endian: one copy
        if swap:
            b = _swapped(b, _DTYPES[f.dtype][1])
        keep.append(b)
        return _address(b), len(b)
    try:
        mv = memoryview(v)
    except TypeError:
        mv = None
    if mv is not None:
        if typed and mv.format.lstrip("@=<>!") not in _RAW_FORMATS:
            got = _format_type(mv.format)
            count = mv.nbytes // mv.itemsize if mv.itemsize else 0
            if _check_typed(f, fixed, got, count, "a buffer of format %r" % mv.format):
                b = _swapped(mv.tobytes(), mv.itemsize)
                keep.append(b)
                return _address(b), len(b)
        if not mv.c_contiguous:
            b = mv.tobytes()
            keep.append(b)
            return _address(b), len(b)
        mv = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        if mv.readonly:
            b = mv.tobytes()
            keep.append(b)
            return _address(b), len(b)
        keep.append(mv)
        if len(mv) == 0:
            return None, 0
        return ctypes.addressof(ctypes.c_char.from_buffer(mv)), len(mv)
    if isinstance(v, str):
        raise TypeError("field %r: str is not bytes; encode it" % f.name)
    try:
        values = v if isinstance(v, (list, tuple)) else list(v)
    except TypeError:
        raise TypeError("%s cannot take %s" % (_what(f), type(v).__name__)) from None
    return _pack(values, f, fixed, keep)


def _address(b):
    return ctypes.cast(ctypes.c_char_p(b), c_void_p).value


def _what(f):
    """'field 'x' (float32 [2, 3])' for messages."""
    if f.kind == "label":
        return "field %r (label)" % f.name
    kind = "" if f.kind == "tensor" else f.kind + " "
    shape = " [%s]" % ", ".join(str(d) for d in f.shape) if f.shape else ""
    return "field %r (%s%s%s)" % (f.name, kind, f.dtype, shape)


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _count_error(f, fixed, count):
    return ShardpackError(_lib.SP_ESCHEMA, "%s takes %d values, got %d"
                          % (_what(f), fixed // _DTYPES[f.dtype][1], count))


def _check_typed(f, fixed, got, count, what):
    """Refuses typed data (an array, a typed buffer) whose element type or count is not field f's;
    returns True when it is f's type but big-endian, so that it must be byte-swapped."""
    kind, size = _DTYPES[f.dtype]
    if got is None or got[:2] != (kind, size):
        how = "ml_dtypes.bfloat16" if kind == "bf16" else "NumPy: a.astype(%r)" % f.dtype
        raise TypeError("%s: got %s; convert it to %s first (%s)" % (_what(f), what, f.dtype, how))
    if fixed and count * size != fixed:
        raise _count_error(f, fixed, count)
    return got[2] and size > 1


def _typestr_type(v, typestr):
    """(kind, size, big-endian) of an array interface's typestr ('<f4', '>i2', '|b1')."""
    if getattr(getattr(v, "dtype", None), "name", None) == "bfloat16":  # ml_dtypes: '<V2'
        kind = "bf16"
    else:
        kind = typestr[1]
    try:
        size = int(typestr[2:])
    except ValueError:
        return None
    return kind, size, typestr[0] == ">" or (typestr[0] == "=" and sys.byteorder == "big")


def _array_dtype(v, ai):
    name = getattr(getattr(v, "dtype", None), "name", None)
    return "%s (%r)" % (name, ai["typestr"]) if name else repr(ai["typestr"])


def _format_type(fmt):
    """(kind, size, big-endian) of a buffer whose struct format is one number, else None."""
    m = _ONE_NUMBER.match(fmt)
    if m is None:
        return None
    order, code = m.groups()
    if code in "efd":
        kind = "f"
    elif code == "?":
        kind = "b"
    else:
        kind = "u" if code.isupper() else "i"
    big = order in (">", "!") or (order in ("", "@", "=") and sys.byteorder == "big")
    return kind, struct.calcsize(fmt), big


def _swapped(b, size):
    """b with the bytes of every size-byte element reversed (big-endian to little)."""
    out = bytearray(len(b))
    for k in range(size):
        out[k::size] = b[size - 1 - k::size]
    return bytes(out)


def _pack(values, f, fixed, keep, scalar=False):
    """Python numbers as field f's little-endian bytes; refuses values the dtype cannot hold."""
    code = _PACK.get(f.dtype)
    if code is None:
        raise TypeError("%s cannot take Python numbers; pass an array of %s or its raw bytes"
                        % (_what(f), f.dtype))
    if fixed and len(values) * _DTYPES[f.dtype][1] != fixed:
        raise _count_error(f, fixed, len(values))
    try:
        b = struct.pack("<%d%s" % (len(values), code), *values)
    except (struct.error, OverflowError, TypeError, ValueError):
        for i, x in enumerate(values):
            try:
                struct.pack("<" + code, x)
            except (struct.error, OverflowError, TypeError, ValueError):
                raise _value_error(f, x, "" if scalar else " (item %d)" % i) from None
        raise
    if f.dtype == "bool" and b and max(b) > 1:
        i = next(i for i, x in enumerate(b) if x > 1)
        raise ValueError("%s takes True or False (or 0 and 1), not %r%s"
                         % (_what(f), values[i], "" if scalar else " (item %d)" % i))
    keep.append(b)
    return _address(b), len(b)


def _value_error(f, x, where):
    kind, size = _DTYPES[f.dtype]
    if kind == "f":
        if not isinstance(x, numbers.Real):
            return TypeError("%s takes real numbers, not %s %r%s"
                             % (_what(f), type(x).__name__, x, where))
        return ValueError("%s: %r%s is too large for %s" % (_what(f), x, where, f.dtype))
    if not isinstance(x, numbers.Integral):
        return TypeError("%s takes integers, not %s %r%s" % (_what(f), type(x).__name__, x, where))
    lo, hi = (0, (1 << 8 * size) - 1) if kind in "ub" else (-(1 << 8 * size - 1),
                                                             (1 << 8 * size - 1) - 1)
    return ValueError("%s: %d%s is out of range [%d, %d]" % (_what(f), x, where, lo, hi))


class Dataset:
    """Random access to a dataset's samples (for inspection and tests; train with Loader).

    Threads: any number of threads may read samples at once (D[i] keeps the last block read,
    shared, and frees a block only once no thread reads from it). After close() every call raises
    ValueError; calls already in flight on other threads finish, and the last closes the files.
    """

    def __init__(self, path: "PathLike", **params: Any) -> None:
        self._lock = threading.Lock()  # _d, _closed, _calls, _cache and its pins
        self._d = None
        self._closed = True  # until the open succeeds
        self._calls = 0  # threads inside a call on _d
        self._cache = None  # the _Block read last
        self._params = Params(params, _lib.SP_SCOPE_READ, "Dataset()")
        cpath = fs_path(path, "Dataset() path")
        d = c_void_p()
        rc = lib.sp_dataset_open(cpath, self._params.ptr, byref(d))
        if rc:
            raise error(rc)
        self._d = d.value
        self._closed = False
        self.fields = [f for f, _ in _fields_of(lib.sp_dataset_schema(self._d))]

    def _enter(self):
        """The C dataset, counted as in use until _leave(): it is not closed before."""
        with self._lock:
            if self._closed:
                raise ValueError("shardpack: the dataset is closed")
            self._calls += 1
            return self._d

    def _leave(self):
        with self._lock:
            self._calls -= 1
            if self._closed and self._calls == 0:
                self._close_locked()

    def _query(self, fn):
        d = self._enter()
        try:
            return fn(d)
        finally:
            self._leave()

    def __len__(self) -> int:
        return self._query(lib.sp_dataset_num_samples)

    @property
    def num_blocks(self) -> int:
        return self._query(lib.sp_dataset_num_blocks)

    @property
    def num_shards(self) -> int:
        return self._query(lib.sp_dataset_num_shards)

    @property
    def fingerprint(self) -> int:
        return self._query(lib.sp_dataset_fingerprint)

    def meta(self) -> Dict[str, bytes]:
        """The metadata as {key: bytes}. Keys are decoded as UTF-8 with errors="surrogateescape": a
        key written by another tool that is not UTF-8 comes back as a str holding its bytes as lone
        surrogates (key.encode("utf-8", "surrogateescape") gives them back) instead of making
        every entry unreadable."""
        return self._query(_meta_of)

    @property
    def class_names(self) -> List[str]:
        """The class names in label order (label i is class_names[i]): the metadata entry
        class_names that an ImageFolder pack writes, one name per line; [] when there is none."""
        raw = self.meta().get("class_names")
        if not raw:
            return []
        return raw.decode("utf-8", "replace").split("\n")

    def block_samples(self) -> List[int]:
        """Sample count of every block, in order."""
        def counts(d):
            out = []
            for b in range(lib.sp_dataset_num_blocks(d)):
                bi = _lib.sp_block_info()
                check(lib.sp_dataset_block_info(d, b, byref(bi)))
                out.append(bi.samples)
            return out
        return self._query(counts)

    def __getitem__(self, i):
        """Sample i as {field name: bytes} (copies)."""
        d = self._enter()
        try:
            if not 0 <= i < lib.sp_dataset_num_samples(d):
                raise IndexError(i)
            blk, row = c_uint64(), c_uint32()
            check(lib.sp_dataset_locate(d, i, byref(blk), byref(row)))
            b = self._pin(d, blk.value)
            try:
                out = {}
                for fi, f in enumerate(self.fields):
                    p, n = c_void_p(), c_size_t()
                    check(lib.sp_block_get(b.ptr, row.value, fi, byref(p), byref(n)))
                    out[f.name] = ctypes.string_at(p.value, n.value) if n.value else b""
                return out
            finally:
                self._unpin(b)
        finally:
            self._leave()

    def _pin(self, d, index):
        """Block `index`, pinned: the cached one, or read now and cached in its place."""
        with self._lock:
            b = self._cache
            if b is not None and b.index == index:
                b.pins += 1
                return b
        ptr = c_void_p()  # read outside the lock: sp_dataset_read_block may run on many threads
        check(lib.sp_dataset_read_block(d, index, byref(ptr)))
        b = _Block(index, ptr.value)
        with self._lock:
            old, self._cache = self._cache, b
            if old is not None and old.pins == 0:
                old.free()
        return b

    def _unpin(self, b):
        with self._lock:
            b.pins -= 1
            if b.pins == 0 and b is not self._cache:
                b.free()

    def close(self):
        """Closes the dataset; every later call raises ValueError. A call in flight on another
        thread finishes first: the dataset is closed when the last of them returns."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ failed before anything was opened
            return
        with lock:
            self._closed = True
            if self._calls == 0:
                self._close_locked()

    def _close_locked(self):
        d, self._d = self._d, None
        b, self._cache = self._cache, None
        if b is not None and b.pins == 0:
            b.free()
        if d:
            lib.sp_dataset_close(d)

    def __reduce_ex__(self, protocol):
        raise TypeError("a shardpack Dataset cannot be pickled or copied (a spawned DataLoader "
                        "worker or multiprocessing child would need it): send the path and open "
                        "a Dataset there")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class _Block:
    """A block read by Dataset.__getitem__: freed when uncached and no thread reads from it."""

    __slots__ = ("index", "ptr", "pins")

    def __init__(self, index, ptr):
        self.index, self.ptr, self.pins = index, ptr, 1

    def free(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            lib.sp_block_free(ptr)


def _meta_of(d):
    out = {}
    for i in range(lib.sp_dataset_meta_count(d)):
        k, v, n = ctypes.c_char_p(), c_void_p(), c_size_t()
        check(lib.sp_dataset_meta_at(d, i, byref(k), byref(v), byref(n)))
        out[_meta_key(k.value)] = ctypes.string_at(v.value, n.value) if n.value else b""
    return out


def _meta_key(raw):
    """A metadata key (bytes as stored) as str: UTF-8, any other byte kept as a lone surrogate
    (errors="surrogateescape"), so that raw == _meta_key(raw).encode("utf-8", "surrogateescape")."""
    return raw.decode("utf-8", "surrogateescape")


with_params(Writer.__init__, _lib.SP_SCOPE_WRITE)
with_params(Dataset.__init__, _lib.SP_SCOPE_READ)

__all__ = ["Writer", "Dataset", "Field", "ShardpackError"]
