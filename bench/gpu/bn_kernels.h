/* bn_kernels.h - the synthetic training step of bench_overlap, compiled by nvcc (bn_kernels.cu). */
#ifndef SP_BN_KERNELS_H
#define SP_BN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Queues on stream (a cudaStream_t) a kernel of `blocks` blocks that reads all `bytes` of data (so
 * it depends on the batch being there) and lasts step_us microseconds of GPU time, read from
 * %globaltimer so that clock boosting does not change it. sink (device memory, one uint32) takes
 * a value only to keep the reads from being optimized away. Returns the cudaError_t of the launch. */
int bn_launch_step(const void *data, size_t bytes, uint32_t step_us, uint32_t *sink, int blocks, void *stream);

#ifdef __cplusplus
}
#endif
#endif
