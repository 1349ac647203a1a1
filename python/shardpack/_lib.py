"""Finding, loading and declaring libshardpack over ctypes (standard library only).

The library is searched, in order: the SHARDPACK_LIBRARY environment variable (a file, or a
directory holding it or a build directory; then nothing else is tried), a libshardpack.so* next
to this package (where `pip install .` puts it), the directory `meson install` installed it to
(_install.py), the build directories of a source tree this package sits in (ROOT/build/lib
first, then ROOT/*/lib by name), then the system's search path (find_library only when nothing
before loaded). A library linked against a sanitizer runtime that must come first (ASan, TSan...)
is skipped unless that runtime is already loaded: loading it would end the process. The
library's ABI version must equal ABI_VERSION, else ImportError says which file was found and
what it reports.
"""

import ctypes
import glob
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_int, c_int32,
                    c_int64, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)
from ctypes.util import find_library

# The ABI these bindings were written against (SP_ABI_VERSION in include/shardpack_version.h).
ABI_VERSION = 2

SONAME = "libshardpack.so.%d" % ABI_VERSION


# ----------------------------------------------------------------------------------------- DLPack
# dlpack.h 0.6 (DLPACK_VERSION 60): the layout the library describes batches with.

kDLCPU = 1
kDLCUDA = 2
kDLCUDAHost = 3
kDLROCM = 10
kDLROCMHost = 11
kDLCUDAManaged = 13

kDLInt, kDLUInt, kDLFloat, kDLOpaqueHandle, kDLBfloat, kDLComplex, kDLBool = 0, 1, 2, 3, 4, 5, 6


class DLDevice(Structure):
    _fields_ = [("device_type", c_int), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32),
                ("dtype", DLDataType), ("shape", POINTER(c_int64)),
                ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class DLManagedTensor(Structure):
    pass


DLDeleter = CFUNCTYPE(None, POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p),
                            ("deleter", DLDeleter)]


# ------------------------------------------------------------------------------- shardpack types

SP_MAX_FIELDS = 64
SP_MAX_DIMS = 8
SP_PTYPE_INT, SP_PTYPE_SIZE, SP_PTYPE_BOOL, SP_PTYPE_ENUM, SP_PTYPE_FLOAT3, SP_PTYPE_DEVICE = 1, 2, 3, 4, 5, 6
SP_PTYPE_STRING = 7
SP_DEVICE_AUTO, SP_DEVICE_CPU = -2, -1
SP_SCOPE_WRITE, SP_SCOPE_READ, SP_SCOPE_LOAD, SP_SCOPE_IMPORT = 1, 2, 4, 8
SP_IO_NAMES = {0: "auto", 1: "uring", 2: "pread"}

# Error codes the bindings act on (the rest come through sp_error_name/sp_strerror).
SP_OK = 0
SP_EINVAL = -1
SP_ENOENT = -4
SP_ERANGE = -11
SP_ESCHEMA = -12
SP_EBUSY = -15
SP_ETIMEDOUT = -16
SP_EEPOCH = -17
SP_ESTATE = -20
SP_EDONE = -21


SP_ERRMSG_MAX = 512


class _Sized(Structure):
    """A struct that begins with struct_size (shardpack.h's conventions): every new instance carries
    its own size, so the library fills exactly the fields declared here."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.struct_size = ctypes.sizeof(self)


# Each mirror below is checked against the library's own layout (sp_struct_layout/sp_struct_field)
# by python/tests/test_layout.py. _c_names_ maps a member renamed here to its C name.

class sp_param_info(_Sized):
    _c_names_ = {"default": "def"}  # def is a Python keyword
    _fields_ = [("struct_size", c_size_t), ("key", c_int), ("name", c_char_p), ("type", c_int), ("default", c_int64),
                ("min", c_int64), ("max", c_int64), ("choices", c_char_p), ("doc", c_char_p),
                ("scope", c_int)]


class sp_field_info(_Sized):
    _fields_ = [("struct_size", c_size_t), ("name", c_char_p), ("kind", c_int), ("dtype", c_int), ("ndim", c_uint32),
                ("shape", c_uint64 * SP_MAX_DIMS), ("fixed_bytes", c_uint64)]


class sp_value(Structure):
    _fields_ = [("data", c_void_p), ("size", c_size_t)]


class sp_write_stats(_Sized):
    _fields_ = [("struct_size", c_size_t), ("samples", c_uint64), ("raw_bytes", c_uint64), ("stored_bytes", c_uint64),
                ("file_bytes", c_uint64), ("blocks", c_uint64), ("blocks_stored_raw", c_uint64),
                ("shards", c_uint64), ("field_raw_bytes", c_uint64 * SP_MAX_FIELDS)]


class sp_import_progress(_Sized):
    _fields_ = [("struct_size", c_size_t), ("samples", c_uint64), ("skipped", c_uint64),
                ("bytes", c_uint64), ("total_items", c_uint64), ("total_bytes", c_uint64)]


# void (*)(void *user, const char *what, const char *reason, uint64_t bytes)
sp_import_skip_fn = CFUNCTYPE(None, c_void_p, c_char_p, c_char_p, c_uint64)
# void (*)(void *user, const sp_import_progress *progress)
sp_import_progress_fn = CFUNCTYPE(None, c_void_p, POINTER(sp_import_progress))


class sp_block_info(_Sized):
    _fields_ = [("struct_size", c_size_t), ("shard", c_uint64), ("index", c_uint64), ("offset", c_uint64),
                ("stored_bytes", c_uint64), ("raw_bytes", c_uint64), ("samples", c_uint64),
                ("first_sample", c_uint64), ("checksum", c_uint64), ("raw_checksum", c_uint64),
                ("codec", c_int)]


class sp_loader_stats(_Sized):
    _fields_ = [("struct_size", c_size_t), ("epoch", c_uint64), ("batches", c_uint64), ("samples", c_uint64),
                ("bytes_read", c_uint64), ("bytes_decompressed", c_uint64),
                ("blocks_read", c_uint64), ("blocks_skipped", c_uint64),
                ("samples_skipped", c_uint64), ("samples_dropped_per_epoch", c_uint64),
                ("stall_s", c_double), ("read_busy_s", c_double), ("decode_busy_s", c_double),
                ("elapsed_s", c_double),
                ("read_ring_bytes", c_uint64), ("read_ring_peak", c_uint64),
                ("batch_ring_bytes", c_uint64), ("batch_ring_slots", c_uint64),
                ("batch_ring_peak_slots", c_uint64), ("batches_ready", c_uint64),
                ("scratch_bytes", c_uint64), ("host_memory_bytes", c_uint64),
                ("host_allocated_bytes", c_uint64),
                ("threads", c_int), ("io", c_int), ("direct_io", c_int),
                ("io_note", c_char * SP_ERRMSG_MAX),
                ("images_decoded", c_uint64), ("images_bad", c_uint64),
                ("image_scratch_bytes", c_uint64), ("bad_note", c_char * SP_ERRMSG_MAX),
                ("device", c_int), ("host_pinned", c_int), ("device_note", c_char * SP_ERRMSG_MAX),
                ("device_memory_bytes", c_uint64),
                ("device_ring_bytes", c_uint64), ("device_ring_slots", c_uint64),
                ("device_bytes", c_uint64), ("device_bytes_peak", c_uint64),
                ("device_batches", c_uint64), ("bytes_copied", c_uint64),
                ("copy_s", c_double), ("device_empty_s", c_double),
                ("threads_note", c_char * SP_ERRMSG_MAX),
                ("rank", c_int), ("world_size", c_int), ("local_rank", c_int), ("local_world_size", c_int),
                ("rank_note", c_char * SP_ERRMSG_MAX), ("host_memory_note", c_char * SP_ERRMSG_MAX),
                ("partitions", c_int), ("sources", c_int), ("source_samples", c_uint64 * 16),
                ("trace_events", c_uint64), ("trace_events_dropped", c_uint64),
                ("jobs_in_flight_peak", c_uint64), ("read_wait_io_s", c_double),
                ("read_wait_slot_s", c_double), ("read_wait_space_s", c_double),
                ("memory_note", c_char * SP_ERRMSG_MAX),
                ("samples_padded_per_epoch", c_uint64), ("samples_padded", c_uint64),
                ("remote_bytes", c_uint64), ("cache_hits", c_uint64), ("cache_misses", c_uint64),
                ("cache_hit_bytes", c_uint64), ("cache_admitted", c_uint64), ("cache_evictions", c_uint64),
                ("cache_discarded", c_uint64), ("cache_bytes", c_uint64), ("cache_size", c_uint64),
                ("batch_ring_in_use", c_uint64), ("batch_ring_limit", c_uint64),
                ("batch_ring_grown", c_uint64),
                ("remote_requests", c_uint64), ("remote_pending_peak", c_uint64),
                ("shard_indexes_read", c_uint64), ("remote_gets", c_uint64),
                ("remote_transfers", c_uint64)]


# (name, restype, argtypes) of every function the bindings call.
_P = c_void_p
_PROTOTYPES = [
    ("sp_version", c_char_p, []),
    ("sp_abi_version", c_int, []),
    ("sp_struct_name", c_char_p, [c_size_t]),
    ("sp_struct_layout", c_int, [c_char_p, POINTER(c_size_t), POINTER(c_size_t), POINTER(c_size_t)]),
    ("sp_struct_field", c_int, [c_char_p, c_size_t, POINTER(c_char_p), POINTER(c_size_t), POINTER(c_size_t)]),
    ("sp_strerror", c_char_p, [c_int]),
    ("sp_error_name", c_char_p, [c_int]),
    ("sp_last_error", c_char_p, []),
    ("sp_dtype_name", c_char_p, [c_int]),
    ("sp_dtype_size", c_size_t, [c_int]),
    ("sp_dtype_from_name", c_int, [c_char_p]),
    ("sp_field_kind_name", c_char_p, [c_int]),
    ("sp_field_kind_from_name", c_int, [c_char_p]),
    ("sp_param_count", c_int, []),
    ("sp_param_describe", c_int, [c_int, POINTER(sp_param_info)]),
    ("sp_param_lookup", c_int, [c_char_p]),
    ("sp_params_create", _P, []),
    ("sp_params_destroy", None, [_P]),
    ("sp_params_set", c_int, [_P, c_int, c_int64]),
    ("sp_params_set_str", c_int, [_P, c_char_p, c_char_p]),
    ("sp_params_get", c_int64, [_P, c_int]),
    ("sp_params_get_float3", c_int, [_P, c_int, POINTER(c_double)]),
    ("sp_params_get_str", c_char_p, [_P, c_int]),
    ("sp_schema_create", _P, []),
    ("sp_schema_destroy", None, [_P]),
    ("sp_schema_add", c_int, [_P, c_char_p, c_int, c_int, c_uint32, POINTER(c_uint64)]),
    ("sp_schema_num_fields", c_size_t, [_P]),
    ("sp_schema_field", c_int, [_P, c_size_t, POINTER(sp_field_info)]),
    ("sp_writer_open", c_int, [c_char_p, _P, _P, POINTER(_P)]),
    ("sp_writer_set_meta", c_int, [_P, c_char_p, c_void_p, c_size_t]),
    ("sp_writer_add", c_int, [_P, POINTER(sp_value), c_size_t]),
    ("sp_writer_stats", c_int, [_P, POINTER(sp_write_stats)]),
    ("sp_writer_finish", c_int, [_P]),
    ("sp_writer_destroy", None, [_P]),
    ("sp_writer_errmsg", c_char_p, [_P]),
    ("sp_import_kind_count", c_int, []),
    ("sp_import_kind_name", c_char_p, [c_int]),
    ("sp_import_kind_lookup", c_int, [c_char_p]),
    ("sp_import_detect", c_int, [c_char_p]),
    ("sp_import_open", c_int, [c_char_p, POINTER(c_char_p), c_size_t, c_char_p, _P, POINTER(_P)]),
    ("sp_import_destroy", None, [_P]),
    ("sp_import_errmsg", c_char_p, [_P]),
    ("sp_import_kind", c_char_p, [_P]),
    ("sp_import_schema", _P, [_P]),
    ("sp_import_set_callbacks", c_int, [_P, sp_import_skip_fn, sp_import_progress_fn, c_void_p]),
    ("sp_import_set_meta", c_int, [_P, c_char_p, c_void_p, c_size_t]),
    ("sp_import_run", c_int, [_P]),
    ("sp_import_abort", None, [_P]),
    ("sp_import_progress_get", c_int, [_P, POINTER(sp_import_progress)]),
    ("sp_import_writer", _P, [_P]),
    ("sp_dataset_open", c_int, [c_char_p, _P, POINTER(_P)]),
    ("sp_dataset_close", None, [_P]),
    ("sp_dataset_schema", _P, [_P]),
    ("sp_dataset_num_samples", c_uint64, [_P]),
    ("sp_dataset_num_blocks", c_uint64, [_P]),
    ("sp_dataset_num_shards", c_uint64, [_P]),
    ("sp_dataset_fingerprint", c_uint64, [_P]),
    ("sp_dataset_meta_count", c_size_t, [_P]),
    ("sp_dataset_meta_at", c_int, [_P, c_size_t, POINTER(c_char_p), POINTER(c_void_p),
                                   POINTER(c_size_t)]),
    ("sp_dataset_block_info", c_int, [_P, c_uint64, POINTER(sp_block_info)]),
    ("sp_dataset_locate", c_int, [_P, c_uint64, POINTER(c_uint64), POINTER(c_uint32)]),
    ("sp_dataset_read_block", c_int, [_P, c_uint64, POINTER(_P)]),
    ("sp_block_free", None, [_P]),
    ("sp_block_num_samples", c_uint32, [_P]),
    ("sp_block_get", c_int, [_P, c_uint32, c_size_t, POINTER(c_void_p), POINTER(c_size_t)]),
    ("sp_loader_open", c_int, [c_char_p, _P, POINTER(_P)]),
    ("sp_loader_open_mix", c_int, [POINTER(c_char_p), POINTER(c_double), c_size_t, _P, POINTER(_P)]),
    ("sp_loader_close", c_int, [_P]),
    ("sp_loader_errmsg", c_char_p, [_P]),
    ("sp_loader_next", c_int, [_P, POINTER(_P), c_int]),
    ("sp_loader_release", c_int, [_P, _P]),
    ("sp_loader_release_on", c_int, [_P, _P, _P]),
    ("sp_batch_device", c_int, [_P]),
    ("sp_batch_wait", c_int, [_P, _P]),
    ("sp_batch_sync", c_int, [_P]),
    ("sp_cuda_device_count", c_int, []),
    ("sp_loader_set_epoch", c_int, [_P, c_uint64]),
    ("sp_loader_batches_per_epoch", c_uint64, [_P]),
    ("sp_loader_samples_per_epoch", c_uint64, [_P]),
    ("sp_loader_epoch_order", c_int64, [_P, c_uint64, POINTER(c_uint64), c_uint64]),
    ("sp_loader_stats_get", c_int, [_P, POINTER(sp_loader_stats)]),
    ("sp_loader_state_size", c_int, []),
    ("sp_loader_save_state", c_int, [_P, c_void_p, c_size_t]),
    ("sp_loader_load_state", c_int, [_P, c_void_p, c_size_t]),
    ("sp_batch_epoch", c_uint64, [_P]),
    ("sp_batch_index", c_uint64, [_P]),
    ("sp_batch_size", c_uint32, [_P]),
    ("sp_batch_num_fields", c_size_t, [_P]),
    ("sp_batch_field_name", c_char_p, [_P, c_size_t]),
    ("sp_batch_tensor", POINTER(DLTensor), [_P, c_size_t]),
    ("sp_batch_find", c_int, [_P, c_char_p]),
    ("sp_batch_sample_id", c_uint64, [_P, c_uint32]),
    ("sp_batch_is_padding", c_int, [_P, c_uint32]),
]


# Sanitizer runtimes that must be loaded before any other library: dlopen of a library linked
# against one, in a process started without it, ends the process (ASan: "runtime does not come
# first", exit 1) or fails. Such a library is tried only when its runtime is already loaded.
_FIRST_RUNTIMES = ("libasan.so", "libtsan.so", "libhwasan.so", "liblsan.so", "libmsan.so")


def _elf_needed(path):
    """The DT_NEEDED names of the ELF shared object at path (from its dynamic segment), or []
    when it cannot be read as one (dlopen then says what is wrong with it)."""
    import struct
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return []
    wide = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    addr = "Q" if wide else "I"
    try:
        if wide:
            phoff, = struct.unpack_from(end + "Q", data, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
        else:
            phoff, = struct.unpack_from(end + "I", data, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        loads, dyn = [], None
        for i in range(phnum):
            at = phoff + i * phentsize
            if wide:  # type, flags, offset, vaddr, paddr, filesz
                ptype, _, off, vaddr, _, filesz = struct.unpack_from(end + "IIQQQQ", data, at)
            else:  # type, offset, vaddr, paddr, filesz
                ptype, off, vaddr, _, filesz = struct.unpack_from(end + "IIIII", data, at)
            if ptype == 1:  # PT_LOAD
                loads.append((vaddr, off, filesz))
            elif ptype == 2:  # PT_DYNAMIC
                dyn = (off, filesz)
        if dyn is None:
            return []
        entry = struct.Struct(end + (("q" if wide else "i") + addr))
        needed, strtab = [], None
        for at in range(dyn[0], dyn[0] + dyn[1] - entry.size + 1, entry.size):
            tag, val = entry.unpack_from(data, at)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED: an offset into the string table
                needed.append(val)
            elif tag == 5:  # DT_STRTAB: an address, found in the file through the PT_LOADs
                strtab = next((off + val - vaddr for vaddr, off, size in loads
                               if vaddr <= val < vaddr + size), None)
        if strtab is None:
            return []
        names = []
        for n in needed:
            stop = data.index(b"\0", strtab + n)
            names.append(data[strtab + n:stop].decode("utf-8", "replace"))
        return names
    except (struct.error, ValueError):
        return []


def _loaded_runtimes():
    """Basenames of the sanitizer runtimes mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return set()
    return {os.path.basename(line.split()[-1]) for line in maps.splitlines()
            if line.split() and os.path.basename(line.split()[-1]).startswith(_FIRST_RUNTIMES)}


def _missing_runtime(path):
    """The sanitizer runtime path needs that is not loaded, or None when it can be loaded."""
    needs = [n for n in _elf_needed(path) if n.startswith(_FIRST_RUNTIMES)]
    if not needs:
        return None
    loaded = _loaded_runtimes()  # file names: the soname, or the soname with more version digits
    missing = [n for n in needs if not any(f == n or f.startswith(n + ".") for f in loaded)]
    return missing[0] if missing else None


def _candidates():
    """(candidate, explicit) in the order they are tried; lazily, so that the system search
    (find_library, which runs ldconfig or a compiler) happens only when nothing before loads."""
    env = os.environ.get("SHARDPACK_LIBRARY")
    if env:
        # An explicit choice is the only one tried: a wrong path must not silently pick another.
        # A directory names the library in it, or in its lib/ (a build directory).
        if os.path.isdir(env):
            inside = [os.path.join(env, SONAME), os.path.join(env, "lib", SONAME)]
            yield next((c for c in inside if os.path.exists(c)), inside[0]), True
        else:
            yield env, True
        return
    here = os.path.dirname(os.path.abspath(__file__))
    seen = set()
    for pattern in ("libshardpack.so.%d" % ABI_VERSION, "libshardpack.so*"):
        for c in sorted(glob.glob(os.path.join(here, pattern))):
            if c not in seen:
                seen.add(c)
                yield c, False
    # Installed by `meson install`: the library's directory, as _install.py records it.
    try:
        from ._install import LIBDIR
    except ImportError:
        LIBDIR = None
    if LIBDIR:
        yield os.path.join(LIBDIR, SONAME), False
    # A source tree: python/shardpack/ sits two levels below the root; builds are ROOT/*/lib.
    # A fixed order, not the newest: build/ (the README's), then the others by name (a sanitizer
    # build among them is skipped unless its runtime is loaded; see _load).
    root = os.path.dirname(os.path.dirname(here))
    if os.path.isfile(os.path.join(root, "include", "shardpack.h")):
        builds = sorted(glob.glob(os.path.join(root, "*", "lib", SONAME)),
                        key=lambda p: (os.path.basename(os.path.dirname(os.path.dirname(p))) != "build", p))
        for c in builds:
            yield c, False
    yield SONAME, False
    sys_name = find_library("shardpack")
    if sys_name:
        yield sys_name, False


def _load():
    errors = []
    for cand, explicit in _candidates():
        runtime = _missing_runtime(cand) if os.sep in cand else None
        if runtime is not None:
            errors.append("%s: skipped: it is linked against the sanitizer runtime %s, which is not "
                          "loaded (LD_PRELOAD it, or use a build without sanitizers)" % (cand, runtime))
            if explicit:
                break
            continue
        try:
            lib = ctypes.CDLL(cand)
        except OSError as e:
            errors.append("%s: %s" % (cand, e))
            if explicit:
                break
            continue
        return lib, cand
    raise ImportError("shardpack: cannot load libshardpack (set SHARDPACK_LIBRARY to the path of "
                      "libshardpack.so, or build the project: meson setup build && ninja -C build)."
                      " Tried:\n  " + "\n  ".join(errors))


def _declare(lib):
    for name, restype, argtypes in _PROTOTYPES:
        fn = getattr(lib, name)  # AttributeError names a symbol this library lacks
        fn.restype = restype
        fn.argtypes = argtypes


lib, path = _load()
try:
    lib.sp_abi_version.restype = c_int
    lib.sp_abi_version.argtypes = []
    _abi = lib.sp_abi_version()
except AttributeError:
    raise ImportError("shardpack: %s is not libshardpack (no sp_abi_version)" % path) from None
if _abi != ABI_VERSION:
    raise ImportError("shardpack: ABI mismatch: %s reports ABI version %d, these bindings need %d; "
                      "point SHARDPACK_LIBRARY at a libshardpack.so.%d"
                      % (path, _abi, ABI_VERSION, ABI_VERSION))
_declare(lib)

version = lib.sp_version().decode()


def last_error():
    return (lib.sp_last_error() or b"").decode("utf-8", "replace")
