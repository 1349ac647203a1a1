/* cu_kern.h - the device stage's kernels, compiled by nvcc (cu_kernels.cu) and called from C.
 * Each launcher queues its work on stream and returns the cudaError_t of the launch (0 when
 * queued). */
#ifndef SP_CU_KERN_H
#define SP_CU_KERN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* uint8 RGB images [n, size, size, 3] at src become [n, 3, size, size] (nchw) or [n, size, size, 3]
 * at dst, each byte v of channel c replaced by lut[c * 256 + v], an element of elem_bytes (2:
 * float16 or bfloat16 bits, 4: float32). The table is the host image stage's own, so the device
 * gives, bit for bit, what image_dtype gives on the host. */
int cu_launch_convert(const uint8_t *src, void *dst, const void *lut, int elem_bytes, uint64_t n, uint32_t size,
                      int nchw, void *stream);

#ifdef __cplusplus
}
#endif
#endif
