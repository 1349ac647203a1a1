/* tg_kernels.h - test-only CUDA kernels, compiled by nvcc (tg_kernels.cu) and launched from the C
 * tests: a consumer that holds on to a batch for a set time before it reads it, so that a device
 * slot the loader reuses too early shows up as the wrong bytes. */
#ifndef SP_TG_KERNELS_H
#define SP_TG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Queues on stream (a cudaStream_t, NULL for the legacy default stream) a kernel that spins for
 * spin_us microseconds of GPU time (%globaltimer, so clock boosting does not change it) and then
 * copies n bytes from src to dst, both device memory. Returns the cudaError_t of the launch. */
int tg_launch_spin_copy(const void *src, void *dst, size_t n, uint32_t spin_us, void *stream);

#ifdef __cplusplus
}
#endif
#endif
