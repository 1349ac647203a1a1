/* ld_host.h - the host stage as a later stage sees it. The device stage (lib/cuda) takes ready
 * batches from the host ring and gives them back through these few functions, and learns the
 * layout of a host batch from ld_host_geometry; it never sees the loader's struct (ld_internal.h).
 *
 * Threads: ld_host_next is a consumer call of the host stage, made by one thread at a time (the
 * caller's, or the device stage's copy thread while it runs); ld_host_release and
 * ld_host_interrupt may be called from any thread.
 *
 * The loader's locks, for both stages, in the only order in which they may nest:
 *   1. the consumer's turn (ld_consumer.busy): not a lock that waits, a compare-exchange that
 *      refuses a second caller with SP_EBUSY; held for the whole of a consumer call;
 *   2. the device stage's mutex (cu_stage.mu, cu_stage.c): its slots, queue and position;
 *   3. the host ring's mutex (ld_ring.mu, ld_internal.h): the batch slots' states, the read
 *      ring's regions, the job queue, the failure record and the statistics.
 * No path takes 3 while holding 2: the device stage lets go of its mutex before every ld_host_*
 * call (each takes 3 inside and returns with it released), and nothing under 3 calls into the
 * device stage. No lock is held across I/O, decoding, or a wait for the GPU.
 * The trace's counter mutex (sp_trace.h) is a leaf: taken under either, never holding another. */
#ifndef SP_LD_HOST_H
#define SP_LD_HOST_H

#include <dlpack/dlpack.h>

#include "img.h"
#include "sp_internal.h"
#include "sp_trace.h"

/* Trace tracks (sp_trace.h), one per thread: the caller inside next(), the reader, the device
 * stage's copy thread, and worker i at LD_TRACK_WORKER + i. */
enum { LD_TRACK_CONSUMER, LD_TRACK_READER, LD_TRACK_COPY, LD_TRACK_WORKER };

/* A batch handed out: the descriptor every slot of either ring holds. */
struct sp_batch {
    sp_loader *owner;
    uint32_t slot;   /* in the host ring, or in the device ring when on_device */
    bool on_device;
    uint64_t epoch, index;
    uint32_t rows;
    size_t nfields;
    const char *const *names; /* nfields names, shared by every batch of the loader */
    DLTensor *t;              /* nfields tensors, each with a shape array of its own */
    uint64_t *ids;
};

/* One batch tensor as the host stage lays it out in a slot's rows. */
typedef struct ld_host_field {
    uint64_t offset; /* of the tensor in the slot's rows */
    DLDataType dt;
    int ndim;
    int64_t shape[SP_MAX_DIMS + 1]; /* shape[0]: the batch size */
    bool image;                     /* uint8 RGB pixels, [B, S, S, 3] on the host */
} ld_host_field;

/* What a later stage needs to know of host batches; fixed once the loader is open. */
typedef struct ld_host_geom {
    uint32_t batch;       /* rows a batch slot holds (batch_size, or fewer when no epoch fills it) */
    uint64_t slot_bytes;  /* one slot's rows, every tensor of the batch */
    size_t nfields;
    const char *const *names;
    ld_host_field field[SP_MAX_FIELDS];
    uint8_t *ring;        /* the rows of every host slot, one allocation (to page-lock it) */
    uint64_t ring_bytes;
    const img_cfg *img;   /* the image transform, NULL when no image field is batched */
    sp_errbuf *eb;        /* the loader's own error buffer: messages for the caller of the API */
    sp_trace *trace;      /* the loader's timeline, or NULL (the device stage adds its spans) */
} ld_host_geom;

void ld_host_geometry(const sp_loader *l, ld_host_geom *g);

/* Takes the next batch of the host ring, in order: SP_OK with *out, or SP_EEPOCH at the end of an
 * epoch, SP_EDONE after the last, SP_ETIMEDOUT (also when interrupted), or the batch's failure.
 * The message goes to the buffer given to ld_host_attach. */
int ld_host_next(sp_loader *l, sp_batch **out, int timeout_ms);
/* Gives a batch taken by ld_host_next back to the host ring. SP_EINVAL when it is not leased. */
int ld_host_release(sp_loader *l, sp_batch *b);
/* The rows of host batch b (ld_host_geom.slot_bytes of them). */
const uint8_t *ld_host_rows(const sp_loader *l, const sp_batch *b);
/* From now on the host stage's consumer errors are written into eb (the device stage's copy
 * thread is the consumer); NULL gives them back to the loader's own buffer. Called while no
 * ld_host_next runs. */
void ld_host_attach(sp_loader *l, sp_errbuf *eb);
/* on: a wait in ld_host_next returns SP_ETIMEDOUT at once, and every later one until off (the
 * device stage halting its copy thread). */
void ld_host_interrupt(sp_loader *l, bool on);

/* The DLPack dtype of an image tensor of image dtype SP_IMAGE_*. */
DLDataType ld_image_dltype(int image_dtype);

#endif
