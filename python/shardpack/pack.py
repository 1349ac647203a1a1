"""pack(): a dataset from files of another format, through the library's import (sp_import_*), the
same code `shardpack pack` runs. With the same sources, parameters and metadata, and a fixed
dataset_id, both give the same files byte for byte.
"""

import ctypes
import os
from ctypes import byref, c_char_p, c_void_p
from typing import Any, Callable, Dict, Optional

from . import _lib
from ._args import fs_path, meta_item
from ._errors import ShardpackError, error
from ._lib import lib
from ._params import Params, doc_table
from ._sig import with_params
from .writer import _fields_of, _stats_dict


def kinds():
    """Names of the source kinds the library imports ('imagefolder', 'tsv', 'llmc', 'wds', 'npy')."""
    return [lib.sp_import_kind_name(i).decode() for i in range(lib.sp_import_kind_count())]


def pack(sources: Any, out: Any, kind: Optional[str] = None, meta: Optional[Dict[Any, Any]] = None,
         on_skip: Optional[Callable[[str, str, int], None]] = None,
         on_progress: Optional[Callable[[Dict[str, int]], None]] = None, **params: Any) -> Dict[str, Any]:
    """Builds the dataset directory out from sources; returns its stats.

    sources: one path (str, bytes, os.PathLike) or a list of them, all of one kind. kind: one of
    kinds() (or 'webdataset'/'tar' for 'wds'), or None to detect it from every path (a directory
    is an ImageFolder; .tsv, .tar, .npy, and .bin with an llm.c magic).
    meta: {key: value}, keys and values str (UTF-8) or bytes, as Writer.set_meta takes them,
    written before the library's own entries ("source", and the kind's: class_names, seq_len).
    on_skip(what, reason, nbytes): called for every input item that is skipped (unreadable, empty,
    not a decodable image, a bad line...); without it they are listed in the result.
    on_progress(dict): called after every item with samples, skipped, bytes, total_items and
    total_bytes (totals 0 when unknown).
    params: the writer's and the import's parameters (shard_size, block_size, compress, strict,
    seq_len, dataset_id, validate_images, ...):

{params}

    Image fields are checked by the library (validate_images): a PNG named .jpg is skipped here,
    as `shardpack pack` skips it and as Writer.add refuses it. Raises ShardpackError (its message
    names the file) when a source cannot be read, no sample came out, strict met a bad item, or
    the writer failed; nothing is published then. A KeyboardInterrupt raised in a callback stops
    the import (nothing is published) and is raised again here.

    Returns a dict: the writer's stats (samples, shards, blocks, raw_bytes, stored_bytes,
    file_bytes, field_raw_bytes), with skipped, input_bytes and, without on_skip, skipped_items
    (a list of (what, reason)).
    """
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("pack(): no source given")
    cpaths = [fs_path(s, "pack() source") for s in sources]
    cout = fs_path(out, "pack() out")
    p = Params(params, _lib.SP_SCOPE_WRITE | _lib.SP_SCOPE_IMPORT, "pack()")
    ckind = None if kind is None else str(kind).encode()
    arr = (c_char_p * len(cpaths))(*cpaths)
    imp = c_void_p()
    rc = lib.sp_import_open(ckind, arr, len(cpaths), cout, p.ptr, byref(imp))
    if rc:
        raise error(rc)
    imp = imp.value
    skipped = []
    pending = []  # an exception raised inside a callback, raised again once the import stopped

    def guard(fn):
        def call(*args):
            if pending:
                return
            try:
                fn(*args)
            except BaseException as e:  # KeyboardInterrupt included: stop, then raise it
                pending.append(e)
                lib.sp_import_abort(imp)
        return call

    def skip(user, what, reason, nbytes):
        w = os.fsdecode(what)
        r = reason.decode("utf-8", "replace")
        if on_skip is not None:
            on_skip(w, r, nbytes)
        else:
            skipped.append((w, r))

    def progress(user, pr):
        pr = pr.contents
        on_progress({n: getattr(pr, n) for n, _ in _lib.sp_import_progress._fields_ if n != "struct_size"})

    skip_cb = _lib.sp_import_skip_fn(guard(skip))
    progress_cb = _lib.sp_import_progress_fn(guard(progress)) if on_progress is not None \
        else ctypes.cast(None, _lib.sp_import_progress_fn)
    try:
        for k, v in (meta or {}).items():
            kb, b = meta_item(k, v, "pack() meta")
            rc = lib.sp_import_set_meta(imp, kb, b, len(b))
            if rc:
                raise error(rc, lib.sp_import_errmsg(imp))
        lib.sp_import_set_callbacks(imp, skip_cb, progress_cb, None)
        rc = lib.sp_import_run(imp)
        if pending:
            raise pending[0]
        if rc:
            raise ShardpackError(rc, (lib.sp_import_errmsg(imp) or b"").decode("utf-8", "replace"))
        return _result(imp, skipped, on_skip is None)
    finally:
        lib.sp_import_destroy(imp)


def _result(imp, skipped, listed):
    st = _lib.sp_write_stats()
    lib.sp_writer_stats(lib.sp_import_writer(imp), byref(st))
    pr = _lib.sp_import_progress(struct_size=ctypes.sizeof(_lib.sp_import_progress))
    lib.sp_import_progress_get(imp, byref(pr))
    d = _stats_dict(st, _fields_of(lib.sp_import_schema(imp)))  # the same stats as Writer.finish()
    d["skipped"] = pr.skipped
    d["input_bytes"] = pr.bytes
    if listed:
        d["skipped_items"] = skipped
    return d


pack.__doc__ = pack.__doc__.replace("{params}", doc_table(_lib.SP_SCOPE_WRITE | _lib.SP_SCOPE_IMPORT))
with_params(pack, _lib.SP_SCOPE_WRITE | _lib.SP_SCOPE_IMPORT)

__all__ = ["kinds", "pack"]
