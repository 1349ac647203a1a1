"""shardpack: Python bindings of libshardpack over ctypes (standard library only).

    import shardpack
    with shardpack.Loader("fineweb.sp", batch_size=8, token_dtype="int32") as loader:
        for batch in loader:                      # one epoch
            tokens = torch.from_dlpack(batch["tokens"])   # no copy; numpy.asarray works too

shardpack.pack(sources, out, **params) builds a dataset from an ImageFolder, TSV list, llm.c token
files, WebDataset tars or .npy files, as `shardpack pack` does; Writer adds samples one by one.
Loader keywords come from the library's parameter table (shardpack.params()). Batches map field
names to Tensors implementing __dlpack__, __dlpack_device__ and __array_interface__ (or
__cuda_array_interface__ for device memory). See loader.py for the lifetime rules and
shardpack.torch for a PyTorch adapter.
"""

from ._lib import ABI_VERSION, version as library_version, path as library_path
from ._errors import ShardpackError
from ._params import ParamInfo, params
from ._dlpack import Tensor
from .loader import Batch, Loader
from .writer import Dataset, Field, Writer
from .pack import kinds as import_kinds, pack

__version__ = library_version


def cuda_device_count():
    """CUDA devices the library can deliver batches to (device="cuda:N"): 0 when it was built
    without CUDA or the driver finds none."""
    from ._lib import lib
    return lib.sp_cuda_device_count()


__all__ = ["ABI_VERSION", "Batch", "Dataset", "Field", "Loader", "ParamInfo", "ShardpackError",
           "Tensor", "Writer", "cuda_device_count", "import_kinds", "library_path", "library_version",
           "pack", "params"]
