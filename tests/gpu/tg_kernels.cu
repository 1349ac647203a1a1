// tg_kernels.cu - test-only kernels (see tg_kernels.h).
#include <cuda_runtime.h>

#include "tg_kernels.h"

namespace {

__device__ __forceinline__ uint64_t now_ns()
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// The wait comes first and the read last: the kernel reads the slot at the end of its life, the
// moment an early reuse by the loader's copy stream would have overwritten it.
__global__ void spin_copy(const uint8_t *__restrict__ src, uint8_t *__restrict__ dst, uint64_t n, uint64_t spin_ns)
{
    const uint64_t t0 = now_ns();
    while (now_ns() - t0 < spin_ns) {
    }
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = src[i];
}

} // namespace

extern "C" int tg_launch_spin_copy(const void *src, void *dst, size_t n, uint32_t spin_us, void *stream)
{
    // A few blocks are plenty for the small tensors of the tests and keep most SMs free, so the
    // copies and conversions of the loader run beside the consumer as they would in training.
    spin_copy<<<8, 256, 0, (cudaStream_t)stream>>>((const uint8_t *)src, (uint8_t *)dst, (uint64_t)n,
                                                   (uint64_t)spin_us * 1000u);
    return (int)cudaGetLastError();
}
