/* ld_device.h - the device stage as the loader sees it: the last hop of the pipeline, from the
 * pinned batch ring to a ring of device slots on the loader's own CUDA stream. The loader owns this
 * interface; lib/cuda/ implements it (cu_stage.c, or its host-only stand-in cu_none.c when the
 * library is built without CUDA) and sees the host stage only through ld_host.h, from its copy
 * thread. So load/ never includes a cuda/ header and the dependency runs one way.
 *
 * Threads: cu_next, cu_halt, cu_seek, cu_open and cu_close are called by the consumer's thread;
 * cu_release, cu_batch_wait, cu_position, cu_leases and cu_stats by any thread. Lock order:
 * ld_host.h. */
#ifndef SP_LD_DEVICE_H
#define SP_LD_DEVICE_H

#include "ld_host.h"

typedef struct cu_stage cu_stage;

/* The device parameters, read by the loader at open. */
typedef struct cu_config {
    int device;     /* the CUDA device (cu_resolve) */
    int dtype;      /* device_dtype: SP_DEVICE_DTYPE_* */
    int layout;     /* device_layout: SP_DEVICE_LAYOUT_* */
    int img_dtype;  /* the SP_IMAGE_* dtype device_dtype converts images to (uint8: none) */
    uint64_t budget; /* device_memory, 0: auto */
} cu_config;

/* Resolves the device parameter into *device (-1: host batches), writing why into note when auto
 * falls back to the host. SP_EDEVICE (into eb) for cuda:N when that device cannot be used,
 * SP_ENOTSUP when the library has no CUDA. */
int cu_resolve(int64_t param, int *device, char *note, size_t notelen, sp_errbuf *eb);
/* Pins the host batch ring of loader `host` and creates the stream, the events and the device
 * ring within cfg->budget. SP_ELIMIT (naming the minimum) when the budget holds fewer than two
 * batches. Messages go to the loader's buffer (ld_host_geom.eb). */
int cu_open(sp_loader *host, const cu_config *cfg, cu_stage **out);
/* Stops the copy thread, waits for the GPU to finish with every slot, frees everything. */
void cu_close(cu_stage *c);
/* Batches still leased to the consumer. */
uint64_t cu_leases(cu_stage *c);
int cu_next(cu_stage *c, sp_batch **out, int timeout_ms);
int cu_release(cu_stage *c, sp_batch *b, void *stream);
int cu_batch_wait(cu_stage *c, const sp_batch *b, void *stream);
int cu_batch_sync(cu_stage *c, const sp_batch *b);
/* Stops the copy thread and drops the batches it prepared that were not handed out (it ran ahead
 * of the consumer: the host stage must then be repositioned, see cu_position). Leased batches
 * stay valid. */
void cu_halt(cu_stage *c);
/* The consumer's position: the epoch and batch it will be handed next. */
void cu_position(cu_stage *c, uint64_t *epoch, uint64_t *next_k);
/* Sets that position (after the host stage was repositioned). */
void cu_seek(cu_stage *c, uint64_t epoch, uint64_t next_k);
/* Fills the device fields of *st. */
void cu_stats(cu_stage *c, sp_loader_stats *st);

#endif
