// cu_kernels.cu - the on-device conversion: uint8 NHWC pixels, as they crossed PCIe, to the
// normalized float16/bfloat16/float32 tensor the trainer wants, in one pass over the pixels.
#include <cuda_runtime.h>

#include "cu_kern.h"

namespace {

// One thread per pixel (three channels); grid-stride, so any batch fits one launch. The table
// lookup is the normalization: (v / 255 - mean) / std, rounded once on the host.
template <typename T, bool NCHW>
__global__ void convert_kernel(const uint8_t *__restrict__ src, T *__restrict__ dst, const T *__restrict__ lut,
                               uint64_t pixels, uint64_t plane)
{
    __shared__ T table[3 * 256];
    for (unsigned i = threadIdx.x; i < 3 * 256; i += blockDim.x)
        table[i] = lut[i];
    __syncthreads();
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t p = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += stride) {
        const uint8_t r = src[3 * p], g = src[3 * p + 1], b = src[3 * p + 2];
        if (NCHW) {
            const uint64_t n = p / plane, q = p - n * plane;
            T *o = dst + 3 * n * plane + q;
            o[0] = table[r];
            o[plane] = table[256 + g];
            o[2 * plane] = table[512 + b];
        } else {
            T *o = dst + 3 * p;
            o[0] = table[r];
            o[1] = table[256 + g];
            o[2] = table[512 + b];
        }
    }
}

template <typename T>
cudaError_t launch(const uint8_t *src, void *dst, const void *lut, uint64_t n, uint32_t size, int nchw,
                   cudaStream_t s)
{
    const uint64_t plane = (uint64_t)size * size, pixels = n * plane;
    if (pixels == 0)
        return cudaSuccess;
    (void)cudaGetLastError(); // what is returned below is this launch's error, not an older one
    const unsigned threads = 256;
    uint64_t blocks = (pixels + threads - 1) / threads;
    if (blocks > 8192) // enough to fill any current GPU; the grid-stride loop does the rest
        blocks = 8192;
    if (nchw)
        convert_kernel<T, true><<<(unsigned)blocks, threads, 0, s>>>(src, (T *)dst, (const T *)lut, pixels, plane);
    else
        convert_kernel<T, false><<<(unsigned)blocks, threads, 0, s>>>(src, (T *)dst, (const T *)lut, pixels, plane);
    return cudaGetLastError();
}

} // namespace

extern "C" int cu_launch_convert(const uint8_t *src, void *dst, const void *lut, int elem_bytes, uint64_t n,
                                 uint32_t size, int nchw, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    if (elem_bytes == 2)
        return (int)launch<uint16_t>(src, dst, lut, n, size, nchw, s);
    if (elem_bytes == 4)
        return (int)launch<uint32_t>(src, dst, lut, n, size, nchw, s);
    return (int)cudaErrorInvalidValue;
}
