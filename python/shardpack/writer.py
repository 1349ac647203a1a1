"""Writer (samples in, a dataset directory out) and Dataset (random access to samples).

Schema: a list of fields, each a Field or a tuple (name, kind[, dtype[, shape]]):
    kind 'label'  -> one int64 (dtype and shape not needed)
    kind 'tokens' -> dtype 'uint16' or 'uint32', shape (sequence length,)
    kind 'tensor' -> any numeric dtype, shape of 0..8 dims
    kind 'bytes' / 'image' -> variable-length bytes (image: JPEG)
Values: bytes-like objects (bytes, bytearray, memoryview, array.array, NumPy arrays: read in place
when C-contiguous), ints (a label, or a one-element tensor), or sequences of numbers (converted to
the field's dtype).
Paths (Writer, Dataset) are str, bytes or os.PathLike; names that are not UTF-8 work, as with open().
"""

import array
import collections
import ctypes
import os
import struct
from ctypes import byref, c_size_t, c_uint32, c_uint64, c_void_p

from . import _lib
from ._args import fs_path
from ._errors import ShardpackError, check, error
from ._lib import lib
from ._params import Params

Field = collections.namedtuple("Field", "name kind dtype shape")
Field.__new__.__defaults__ = (None, ())

_ARRAY_CODES = {"uint8": "B", "int8": "b", "uint16": "H", "int16": "h", "uint32": "I",
                "int32": "i", "uint64": "Q", "int64": "q", "float32": "f", "float64": "d",
                "bool": "B"}
_STRUCT_CODES = {"uint8": "<B", "int8": "<b", "uint16": "<H", "int16": "<h", "uint32": "<I",
                 "int32": "<i", "uint64": "<Q", "int64": "<q", "float32": "<f", "float64": "<d",
                 "float16": "<e", "bool": "<?"}
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
    level, threads, compress, overwrite, max_block_bytes, max_shards). As a context manager it
    finishes on a clean exit and discards everything on an exception.
    """

    def __init__(self, path, fields, **params):
        self._w = None
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

    def _ptr(self):
        if self._w is None:
            raise ValueError("shardpack: the writer is finished or closed")
        return self._w

    def set_meta(self, key, value):
        """Dataset metadata (str or bytes value), before the first shard is complete."""
        w = self._ptr()
        v = value.encode() if isinstance(value, str) else bytes(value)
        check(lib.sp_writer_set_meta(w, str(key).encode(), v, len(v)), lib.sp_writer_errmsg(w))

    def add(self, *values, **named):
        """Adds one sample: the fields' values in schema order, or by name (or one dict)."""
        w = self._ptr()
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
        for i, v in enumerate(values):
            f, fixed = self.fields[i]
            addr, size = _buffer(v, f, fixed, keep)
            self._vals[i].data = addr
            self._vals[i].size = size
        rc = lib.sp_writer_add(w, self._vals, len(self.fields))
        if rc:
            raise error(rc, lib.sp_writer_errmsg(w))

    def stats(self):
        st = _lib.sp_write_stats()
        w = self._ptr()
        check(lib.sp_writer_stats(w, byref(st)), lib.sp_writer_errmsg(w))
        return _stats_dict(st, self.fields)

    def finish(self):
        """Publishes the dataset; returns the final stats. The writer is closed after."""
        w = self._ptr()
        rc = lib.sp_writer_finish(w)
        if rc:
            e = error(rc, lib.sp_writer_errmsg(w))
            self.close()
            raise e
        st = _lib.sp_write_stats()
        lib.sp_writer_stats(w, byref(st))
        self.close()
        return _stats_dict(st, self.fields)

    def close(self):
        """Discards an unfinished dataset (nothing appears at path); frees the writer."""
        w, self._w = self._w, None
        if w is not None:
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
    d = {n: getattr(st, n) for n, _ in _lib.sp_write_stats._fields_ if n != "field_raw_bytes"}
    d["field_raw_bytes"] = {f.name: st.field_raw_bytes[i] for i, (f, _) in enumerate(fields)}
    return d


def _buffer(v, f, fixed, keep):
    """(address, size) of v's bytes as field f stores them; keep holds what must stay alive."""
    if isinstance(v, bytes):
        keep.append(v)
        return ctypes.cast(ctypes.c_char_p(v), c_void_p).value, len(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool) or isinstance(v, bool):
        code = _STRUCT_CODES.get(f.dtype)
        if code is None:
            raise TypeError("field %r (%s): cannot take a scalar" % (f.name, f.dtype))
        b = struct.pack(code, v)
        keep.append(b)
        return ctypes.cast(ctypes.c_char_p(b), c_void_p).value, len(b)
    ai = getattr(v, "__array_interface__", None)
    if ai is not None:  # NumPy (and anything else speaking the array interface)
        dt = getattr(v, "dtype", None)
        if dt is not None and f.kind in ("tokens", "tensor", "label") and \
                _dtype_name(dt) != f.dtype:
            raise TypeError("field %r: array of %s, the field stores %s"
                            % (f.name, _dtype_name(dt), f.dtype))
        if ai.get("strides") is None and ai["data"] is not None:
            keep.append(v)
            size = getattr(v, "nbytes", None)
            if size is None:
                size = len(memoryview(v).cast("B"))
            return ai["data"][0], size
        v = memoryview(v).tobytes()  # not contiguous: one copy
        keep.append(v)
        return ctypes.cast(ctypes.c_char_p(v), c_void_p).value, len(v)
    try:
        mv = memoryview(v)
    except TypeError:
        mv = None
    if mv is not None:
        if not mv.c_contiguous:
            b = mv.tobytes()
            keep.append(b)
            return ctypes.cast(ctypes.c_char_p(b), c_void_p).value, len(b)
        mv = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        if mv.readonly:
            b = mv.tobytes()
            keep.append(b)
            return ctypes.cast(ctypes.c_char_p(b), c_void_p).value, len(b)
        keep.append(mv)
        if len(mv) == 0:
            return None, 0
        return ctypes.addressof(ctypes.c_char.from_buffer(mv)), len(mv)
    if isinstance(v, str):
        raise TypeError("field %r: str is not bytes; encode it" % f.name)
    code = _ARRAY_CODES.get(f.dtype)
    if code is None:
        raise TypeError("field %r (%s): cannot convert %s" % (f.name, f.dtype, type(v).__name__))
    a = array.array(code, v)
    keep.append(a)
    addr, n = a.buffer_info()
    return addr, n * a.itemsize


class Dataset:
    """Random access to a dataset's samples (for inspection and tests; train with Loader)."""

    def __init__(self, path, **params):
        self._params = Params(params, _lib.SP_SCOPE_READ, "Dataset()")
        cpath = fs_path(path, "Dataset() path")
        d = c_void_p()
        rc = lib.sp_dataset_open(cpath, self._params.ptr, byref(d))
        if rc:
            raise error(rc)
        self._d = d.value
        self.fields = [f for f, _ in _fields_of(lib.sp_dataset_schema(self._d))]
        self._cache = (None, None)

    def __len__(self):
        return lib.sp_dataset_num_samples(self._d)

    @property
    def num_blocks(self):
        return lib.sp_dataset_num_blocks(self._d)

    @property
    def num_shards(self):
        return lib.sp_dataset_num_shards(self._d)

    @property
    def fingerprint(self):
        return lib.sp_dataset_fingerprint(self._d)

    def meta(self):
        out = {}
        for i in range(lib.sp_dataset_meta_count(self._d)):
            k, v, n = ctypes.c_char_p(), c_void_p(), c_size_t()
            check(lib.sp_dataset_meta_at(self._d, i, byref(k), byref(v), byref(n)))
            out[k.value.decode()] = ctypes.string_at(v.value, n.value) if n.value else b""
        return out

    def block_samples(self):
        """Sample count of every block, in order."""
        out = []
        for b in range(self.num_blocks):
            bi = _lib.sp_block_info()
            check(lib.sp_dataset_block_info(self._d, b, byref(bi)))
            out.append(bi.samples)
        return out

    def __getitem__(self, i):
        """Sample i as {field name: bytes} (copies)."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        blk, row = c_uint64(), c_uint32()
        check(lib.sp_dataset_locate(self._d, i, byref(blk), byref(row)))
        if self._cache[0] != blk.value:
            b = c_void_p()
            check(lib.sp_dataset_read_block(self._d, blk.value, byref(b)))
            old = self._cache[1]
            self._cache = (blk.value, b.value)
            if old:
                lib.sp_block_free(old)
        bptr = self._cache[1]
        out = {}
        for fi, f in enumerate(self.fields):
            p, n = c_void_p(), c_size_t()
            check(lib.sp_block_get(bptr, row.value, fi, byref(p), byref(n)))
            out[f.name] = ctypes.string_at(p.value, n.value) if n.value else b""
        return out

    def close(self):
        d, self._d = getattr(self, "_d", None), None
        old = getattr(self, "_cache", (None, None))[1]
        self._cache = (None, None)
        if old:
            lib.sp_block_free(old)
        if d:
            lib.sp_dataset_close(d)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


__all__ = ["Writer", "Dataset", "Field", "ShardpackError"]
