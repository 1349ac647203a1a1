/* emu_cudart.h - a CUDA runtime that runs on the CPU, for testing the device stage's own logic
 * (its copy thread, ring, stream-ordered releases, halts and errors) where no GPU is, under the
 * sanitizers. It implements, with the real API's signatures and ordering rules, the runtime calls
 * lib/cuda/cu_stage.c makes: "device memory" is host memory, each stream is a thread running its
 * operations in order, and events complete when their stream reaches them. It is linked instead of
 * cudart into test_device_stage_emu; what only a real GPU shows (the kernel, DMA from pinned
 * memory, speed) is test_cuda_loader's, on a GPU. */
#ifndef SP_EMU_CUDART_H
#define SP_EMU_CUDART_H

#include <cuda_runtime_api.h>
#include <stdint.h>

/* Devices the emulated driver reports (default 1; 0 makes cudaGetDeviceCount fail). */
void emu_set_devices(int n);
/* Every host-to-device copy sleeps this long before it copies (default 0): a copy that is read
 * before it ran, or a host slot given back before its copy ran, then shows. */
void emu_set_copy_delay_us(uint32_t us);
/* The n-th cudaEventSynchronize from now (1: the next) fails with cudaErrorLaunchFailure, as
 * after a kernel fault; 0 disarms it. */
void emu_fail_event_sync(int n);
/* Queues fn(arg) on stream, in order with its other work: the test's stand-in for a kernel. */
cudaError_t emu_launch_host(cudaStream_t stream, void (*fn)(void *arg), void *arg);
/* Streams and events alive now (a close must leave none of the loader's). */
int emu_live_streams(void);
int emu_live_events(void);
/* Bytes of emulated device memory allocated now, and host ranges registered now. */
uint64_t emu_device_bytes(void);
int emu_registered(void);

#endif
