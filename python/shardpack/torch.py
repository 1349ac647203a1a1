"""PyTorch adapter: (inputs, labels) torch tensors on the loader's device, without a copy.

    from shardpack.torch import TorchLoader
    for inputs, labels in TorchLoader("fineweb.sp", batch_size=8):   # tokens: next-token pairs
        ...
    for inputs, labels in TorchLoader("feats.sp", inputs="x", labels="label", batch_size=64):
        ...

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

import torch as _torch

from .loader import Loader
from .writer import Dataset


def _current_stream(view):
    devtype, devid = view.__dlpack_device__()
    if devtype in (2, 13) and _torch.cuda.is_available():  # kDLCUDA, kDLCUDAManaged
        s = _torch.cuda.current_stream(devid)
        return s.cuda_stream or 1  # 1: the legacy default stream, as DLPack asks
    return None


def to_torch(view):
    """A torch tensor over a shardpack Tensor's memory (no copy)."""
    stream = _current_stream(view)
    if stream is None:
        return _torch.utils.dlpack.from_dlpack(view.__dlpack__())
    return _torch.utils.dlpack.from_dlpack(view.__dlpack__(stream=stream))


class TorchLoader:
    """Iterates one epoch at a time, yielding (inputs, labels); labels may be None.

    TorchLoader(loader_or_path, inputs=None, labels=None, **params): inputs is the field name
    (default: the only token field, else the first field), labels a field name, or None for
    next-token pairs from a token field, or the field named "label" beside any other input. with_ids=True yields (inputs, labels, sample_ids).
    """

    def __init__(self, source, inputs=None, labels=None, with_ids=False, **params):
        if isinstance(source, Loader):
            if params:
                raise TypeError("parameters go to the Loader itself when one is given")
            self.loader = source
        else:
            params.setdefault("token_dtype", "int32")
            self.loader = Loader(source, **params)
        self.inputs, self.labels, self.with_ids = inputs, labels, with_ids
        try:
            self._kinds = _field_kinds(self.loader)
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

    def __iter__(self):
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

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        self.loader.set_epoch(epoch)

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)

    def stats(self):
        return self.loader.stats()

    def close(self):
        self.loader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _field_kinds(loader):
    """{field name: kind} of the loader's dataset, from its schema (a batch does not say whether
    an integer [B, N] field holds tokens or a tensor)."""
    with Dataset(loader.path) as d:
        return {f.name: f.kind for f in d.fields}
