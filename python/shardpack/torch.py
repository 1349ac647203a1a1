"""PyTorch adapter: (inputs, labels) torch tensors on the loader's device, without a copy.

    from shardpack.torch import TorchLoader
    for images, labels in TorchLoader("photos.sp", batch_size=256, transform="train",
                                      image_size=224, image_dtype="bfloat16", image_layout="nchw"):
        ...                                    # [256, 3, 224, 224] normalized bf16, int64 labels
    for inputs, labels in TorchLoader("fineweb.sp", batch_size=8):   # tokens: next-token pairs
        ...
    for inputs, labels in TorchLoader("feats.sp", inputs="x", labels="label", batch_size=64):
        ...

Images are decoded, cropped, resized, flipped and normalized by the library's C workers:
transform ("train": random-resized crop and flip; "eval": resize and centre crop), image_size,
resize, image_dtype (uint8 pixels, or float16/bfloat16/float32 normalized by mean and std),
image_layout (nhwc, nchw), max_pixels... (the table in help(TorchLoader)); device="cuda:N"
delivers them on a GPU, device_dtype converting them there.

With labels=None and a token field (kind "tokens" in the dataset's schema), inputs are
tokens[:, :-1] and labels tokens[:, 1:] (views of one [B, T+1] batch, as llm.c trains); any other
input is passed whole, with the field named "label" as its labels when there is one. Given a path,
token_dtype defaults to "int32"; a Loader given whole must have been opened with
token_dtype="int32" for its token fields, else TypeError saying so (PyTorch cannot take uint16 or
uint32). Large tensors (images, tokens) keep the batch's lease: the slot goes back to the loader
when they are gone (clone one to keep it longer). Small ones (labels, and any field of at most
small_field_bytes, 64 KiB, per batch) are copies the tensor owns: keeping them costs no slot.

Device batches (device="cuda:N" or "auto"): the current CUDA stream is passed to __dlpack__, so
that stream waits, on the GPU, for the batch's copy, and the batch is released on it when the
tensors are gone: the loader overwrites the memory only after the work queued there. Nothing on
the host waits. Host batches need neither and pass straight through.
"""

import os as _os
from typing import Any, Dict, Iterator, Optional, Tuple

import torch as _torch
import torch.utils.data as _tud

from . import _lib
from ._args import index_arg
from ._errors import ShardpackError
from ._params import Params, doc_table
from ._sig import with_params
from .loader import Loader, PathLike
from .writer import Dataset


_SCOPE = _lib.SP_SCOPE_LOAD | _lib.SP_SCOPE_READ  # the library's parameters a Loader takes
_c = Loader.__init__.__code__
_LOADER_OWN = frozenset(_c.co_varnames[:_c.co_argcount + _c.co_kwonlyargcount])  # timeout, ...
del _c


def _check_params(params, what):
    """Refuses a keyword the Loader would refuse, naming what (the call the user made)."""
    Params({k: v for k, v in params.items() if k not in _LOADER_OWN}, _SCOPE, what)


def _current_stream(view):
    devtype, devid = view.__dlpack_device__()
    if devtype in (2, 13) and _torch.cuda.is_available():  # kDLCUDA, kDLCUDAManaged
        s = _torch.cuda.current_stream(devid)
        return s.cuda_stream or 1  # 1: the legacy default stream, as DLPack asks
    return None


def to_torch(view: Any) -> "_torch.Tensor":
    """A torch tensor over a shardpack Tensor's memory (no copy)."""
    stream = _current_stream(view)
    if stream is None:
        return _torch.utils.dlpack.from_dlpack(view.__dlpack__())
    return _torch.utils.dlpack.from_dlpack(view.__dlpack__(stream=stream))


class TorchLoader(_tud.IterableDataset):
    """Iterates one epoch at a time, yielding (inputs, labels); labels may be None.

    The fast path: the loader's C threads read and decode in parallel in this process and the
    tensors are views of its ring. It is an IterableDataset, so DataLoader(tl, batch_size=None)
    takes it as it is (num_workers=0); for DataLoader workers use ShardpackIterable, which opens
    a loader in each worker (a loader opened here cannot be used in a forked worker).

    TorchLoader(loader_or_path, inputs=None, labels=None, with_ids=False, **params): inputs is
    the field name (default: the only token field, else the first field: the image of an
    ImageFolder pack), labels a field name, or None for next-token pairs from a token field, or
    the field named "label" beside any other input (images and their classes). A name that is
    not one of the dataset's fields is a ValueError listing them. with_ids=True
    yields (inputs, labels, sample_ids). Given a path, params go to the Loader (token_dtype
    defaults to "int32", epochs to 0: each `for` is one epoch); they are the library's:

{params}
    """

    def __init__(self, source: "Loader | PathLike", inputs: Optional[str] = None,
                 labels: Optional[str] = None, with_ids: bool = False, **params: Any) -> None:
        if isinstance(source, Loader):
            if params:
                raise TypeError("parameters go to the Loader itself when one is given")
            self.loader = source
        else:
            params.setdefault("token_dtype", "int32")
            _check_params(params, "TorchLoader()")  # refusals named for this call, not Loader()
            self.loader = Loader(source, **params)
        self.inputs, self.labels, self.with_ids = inputs, labels, with_ids
        try:
            self._kinds = _field_kinds(self.loader)
            for what, name in (("inputs", inputs), ("labels", labels)):
                if name is not None and name not in self._kinds:
                    raise ValueError("TorchLoader: %s=%r is not a field of %s; its fields: %s"
                                     % (what, name, self.loader.path, ", ".join(self._kinds)))
        except BaseException:
            if self.loader is not source:  # opened here: not left to the collector
                self.loader.close()
            raise

    def _tensor(self, batch, name):
        """Field name of batch as a torch tensor (no copy); refuses token dtypes torch lacks."""
        view = batch[name]
        if self._kinds.get(name) == "tokens" and view.dtype in ("uint16", "uint32"):
            raise TypeError("TorchLoader: token field %r arrives as %s, which PyTorch cannot take; "
                            "pass token_dtype='int32' to the Loader" % (name, view.dtype))
        return to_torch(view)

    def __iter__(self) -> Iterator[Tuple[Any, ...]]:
        if self.loader._h.foreign:
            raise RuntimeError("TorchLoader: this loader was opened in process %d and cannot be used "
                               "in a forked child such as a DataLoader worker; use "
                               "shardpack.torch.ShardpackIterable, which opens one in each worker"
                               % _os.getppid())
        for batch in self.loader:
            name = self.inputs or next(iter(batch))
            x = self._tensor(batch, name)
            if self.labels:
                inputs, labels = x, self._tensor(batch, self.labels)
            elif self._kinds.get(name) == "tokens":
                inputs, labels = x[:, :-1], x[:, 1:]
            elif name != "label" and "label" in batch:  # an image or tensor with its class
                inputs, labels = x, self._tensor(batch, "label")
            else:
                inputs, labels = x, None
            if self.with_ids:
                ids = batch.sample_ids()
                batch.release()
                yield inputs, labels, ids
            else:
                batch.release()  # the tensors keep the lease; the Batch object is done
                yield inputs, labels

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """As Loader.set_epoch: the next `for` delivers epoch `epoch` from its beginning."""
        self.loader.set_epoch(epoch)

    def state_dict(self) -> Dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def stats(self) -> Dict[str, Any]:
        return self.loader.stats()

    def close(self) -> None:
        self.loader.close()

    def __enter__(self) -> "TorchLoader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ShardpackIterable(_tud.IterableDataset):
    """An IterableDataset for code that expects torch's DataLoader:

        ds = ShardpackIterable("train.sp", batch_size=256, transform="train", image_size=224)
        dl = DataLoader(ds, batch_size=None, num_workers=2, pin_memory=True)
        for epoch in range(2):
            ds.set_epoch(epoch)
            for images, labels in dl: ...

    ShardpackIterable(path, inputs=None, labels=None, with_ids=False, rank=None, world_size=None,
    **params): yields what TorchLoader(path, inputs, labels, with_ids, **params) yields, whole
    batches (so batch_size=None in the DataLoader; batch_size here is the loader's). Nothing is
    opened here: each DataLoader worker opens its own Loader in __iter__ (a loader cannot cross a
    fork), and the workers split the data as ranks do: rank = R * num_workers + worker id,
    world_size = W * num_workers, where R and W are rank/world_size given here, else
    torch.distributed's when it is initialized, else RANK and WORLD_SIZE, else 0 and 1. No
    sample goes to two workers; the split is by sample, as between ranks (docs/loader.md,
    "Order"), so every worker delivers the same number of batches and at most world_size x
    num_workers - 1 samples of an epoch are left out, a different few each epoch; a dataset of
    one block splits too. A world size the library refuses (partitions, batch sizes) is a
    ShardpackError naming the workers. Each worker's batches cross to the main process through
    shared memory (a copy made by torch); pin_memory then copies them again into pinned memory.

    Epochs: set_epoch(n) before each epoch, as with DistributedSampler, orders epoch n; with
    num_workers=0, or persistent_workers=True, each further `for` without set_epoch goes on to
    the next epoch (the workers' copies of the dataset count on their own; set_epoch after the
    workers started does not reach them). Without set_epoch, DataLoader workers started afresh
    for each `for` (the default) cannot see how many came before: on one rank (world_size 1)
    each `for` then takes its epoch from the DataLoader's base seed (drawn from torch's
    generator, so torch.manual_seed repeats the sequence), a new order and new crops each
    time, as DataLoader(shuffle=True) reshuffles; across ranks, call set_epoch, which every
    rank must agree on (without it each `for` repeats the same epoch, as DistributedSampler).

    TorchLoader is the fast path: one process whose C threads decode in parallel and whose
    tensors are views of the ring, with no copy and no worker processes; use this class where
    code needs a DataLoader.
    """

    def __init__(self, path: PathLike, inputs: Optional[str] = None, labels: Optional[str] = None,
                 with_ids: bool = False, rank: Optional[int] = None,
                 world_size: Optional[int] = None, **params: Any) -> None:
        super().__init__()
        for k in ("epochs",):
            if k in params:
                raise TypeError("ShardpackIterable: %r is not taken: each `for` over the "
                                "DataLoader is one epoch" % k)
        # Checked here, in the main process: not first in each worker, at the first batch.
        _check_params(params, "ShardpackIterable()")
        self.path = path
        self.inputs, self.labels, self.with_ids = inputs, labels, with_ids
        self.rank, self.world_size = rank, world_size
        self.params = params
        self._base, self._fors, self._epoch_set = 0, 0, False

    def set_epoch(self, epoch: int) -> None:
        """The next `for` delivers epoch `epoch` (any integer >= 0)."""
        self._base = index_arg(epoch, "set_epoch() epoch", (1 << 63) - 1)
        self._fors, self._epoch_set = 0, True

    def _split(self):
        info = _tud.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            dist = _torch.distributed
            if dist.is_available() and dist.is_initialized():
                r, w = dist.get_rank(), dist.get_world_size()
            else:
                r, w = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
            rank = r if rank is None else rank
            world = w if world is None else world
        return rank * nw + wid, world * nw

    def _explain_world(self, e, world):
        """Raises, in place of e, the library's refusal of this world size with the dataset and
        where the world size came from: the caller may never have set one (num_workers=2 on one
        rank is world size 2 here)."""
        if e.code != _lib.SP_EINVAL or "world size" not in e.message:
            return
        info = _tud.get_worker_info()
        nw = info.num_workers if info is not None else 1
        raise ShardpackError(e.code, "ShardpackIterable over %s: %s; world size %d here is %d "
                             "rank%s x num_workers=%d (each DataLoader worker opens a loader of "
                             "its own, as a rank): use fewer workers or ranks"
                             % (self.path, e.message, world, world // nw,
                                "" if world // nw == 1 else "s", nw)) from e

    def __iter__(self) -> Iterator[Tuple[Any, ...]]:
        rank, world = self._split()
        epoch = self._base + self._fors
        info = _tud.get_worker_info()
        if not self._epoch_set and info is not None and world == info.num_workers:
            # One rank, no set_epoch: fresh workers get a copy with _fors 0 on every `for`, which
            # would repeat epoch 0; the base seed (the same in every worker) differs each time.
            epoch = (info.seed - info.id + self._fors) % (1 << 63)
        self._fors += 1
        try:
            loader = Loader(self.path, rank=rank, world_size=world,
                            **dict({"token_dtype": "int32"}, **self.params))
        except ShardpackError as e:
            self._explain_world(e, world)
            raise
        try:
            loader.set_epoch(epoch)
            yield from TorchLoader(loader, self.inputs, self.labels, self.with_ids)
        finally:
            loader.close()


def _env_int(name, default):
    v = _os.environ.get(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError("ShardpackIterable: %s=%r is not an integer" % (name, v)) from None


def _field_kinds(loader):
    """{field name: kind} of the loader's dataset, from its schema (a batch does not say whether
    an integer [B, N] field holds tokens or a tensor)."""
    with Dataset(loader.path) as d:
        return {f.name: f.kind for f in d.fields}


_DEFAULTS = {"epochs": 0, "token_dtype": "int32"}  # TorchLoader's, where the library's differ
TorchLoader.__doc__ = TorchLoader.__doc__.format(params=doc_table(_lib.SP_SCOPE_LOAD, _DEFAULTS))
with_params(TorchLoader.__init__, _SCOPE, defaults=_DEFAULTS)
with_params(ShardpackIterable.__init__, _SCOPE,
            skip=("epochs",), defaults={"token_dtype": "int32"})
