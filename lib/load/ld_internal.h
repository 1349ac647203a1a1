/* ld_internal.h - the loader object, shared by its API (ld_loader.c) and its threads
 * (ld_pipeline.c). Lock order: only `mu`; no lock is held across I/O or decoding. */
#ifndef SP_LD_INTERNAL_H
#define SP_LD_INTERNAL_H

#include <dlpack/dlpack.h>
#include <pthread.h>
#include <stdatomic.h>

#include "img.h"
#include "ld.h"
#include "ld_host.h"
#include "ld_io.h"

#define LD_PAGE 4096u
#define LD_FIELD_ALIGN 256u
#define LD_IO_DEPTH 32u
#define LD_MAX_FDS 64u /* shard descriptors kept open: a quarter of RLIMIT_NOFILE, within these */
#define LD_MIN_FDS 4u
#define LD_READ_RING_MAX (1ull << 30) /* one registered buffer: the kernel's limit */

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_LEASED };
enum { CONVERT_COPY, CONVERT_U16_I32, CONVERT_U32_I32, CONVERT_IMAGE };

typedef struct cu_stage cu_stage;

typedef struct ld_slot {
    sp_batch b;
    uint8_t *mem;
    uint64_t k; /* batch held, UINT64_MAX for none */
    int state;
    atomic_uint rows_done;
    uint32_t rows_expected;
    uint8_t *bad; /* per row: filled in for a skipped corrupt sample */
    uint64_t taken;          /* under mu: when the consumer took it (sp_loader.taken then) */
    uint32_t note_row;       /* under mu: the lowest bad row, UINT32_MAX for none */
    char note[SP_ERRMSG_MAX]; /* under mu: why that row is bad */
} ld_slot;

/* How one schema field becomes one batch tensor. */
typedef struct ld_out {
    size_t field;       /* schema index */
    uint64_t src_bytes; /* per sample in a block; 0 for an image (variable) */
    uint64_t row_bytes; /* per row in the batch */
    uint64_t offset;    /* of the tensor in a slot's memory */
    int convert;
    DLDataType dt;
    int ndim;
    int64_t shape[SP_MAX_DIMS + 1];
} ld_out;

typedef struct ld_job {
    uint64_t block;  /* global */
    uint32_t win;    /* window slot 0/1 */
    uint32_t kblock; /* block index within the window */
    uint8_t *buf;
    uint32_t region;
    int64_t result;  /* bytes read, or -errno */
} ld_job;

typedef struct ld_region {
    uint64_t pos, len;
    bool done;
} ld_region;

struct sp_loader {
    sp_errbuf eb;
    char name[256];       /* what was opened (a path, a glob, the first of the shards), for messages */
    sp_errbuf *ceb;       /* where the host stage's consumer writes its errors: eb, or the
                           * device stage's own buffer while its copy thread is the consumer */
    bool consumer_abort;  /* under mu: the host consumer's wait returns at once (device stage halt) */
    sp_dataset *ds;

    /* configuration */
    uint32_t batch, window_blocks, rank, world;
    int threads, io_mode, on_error, token_dtype;
    int direct_mode; /* the direct_io parameter: 1, 0, or -1 for auto */
    bool shuffle, drop_last, direct;
    uint64_t seed, epochs, host_memory, prefetch, max_sample;

    /* the dataset, flattened per global block */
    const sp_schema *schema;
    uint64_t nblocks, nshards;
    uint32_t *block_samples;
    uint64_t *block_first;
    uint32_t *block_shard;
    const fmt_block_entry **block_entry;
    fmt_shard **shards;
    uint32_t max_block_samples;
    uint64_t max_raw, max_read;

    /* batch layout */
    ld_out out[SP_MAX_FIELDS];
    size_t nout;
    uint64_t batch_bytes;
    const char *names[SP_MAX_FIELDS]; /* of the batch tensors, for every batch */
    uint64_t ndims;                    /* dimensions of all batch tensors together */

    /* pools, allocated at open */
    uint8_t *read_ring;
    uint64_t read_ring_bytes;
    uint8_t *batch_mem;
    ld_slot *slots;
    uint64_t nslots;
    DLTensor *tensors; /* nout per slot */
    int64_t *shapes;   /* ndims per slot */
    uint8_t **scratch;
    uint32_t **row_counts; /* per worker: rows per batch of the block being scattered */
    uint64_t bpw;          /* most batches one window's samples can touch */
    ZSTD_DCtx **dctx;
    img_cfg img;       /* the image transform, when an image field is batched */
    bool has_image;
    img_ctx **imgc;    /* per worker */
    uint64_t scratch_bytes;
    ld_window win[2];
    uint32_t *win_perm;
    uint32_t win_cap;
    uint64_t win_remaining[2];
    ld_region *regions;
    uint32_t nregions, reg_head, reg_count;
    uint64_t ring_head, ring_tail, ring_used_peak;
    ld_job *jobs;
    uint32_t jobs_cap, job_head, job_count;
    uint64_t allocated;

    /* descriptors, reader thread only */
    int *fd;
    bool *fd_direct;
    uint64_t *fd_tick;
    uint64_t tick;
    uint32_t fds_open;

    /* threads */
    pthread_mutex_t mu;
    pthread_cond_t c_reader, c_worker, c_consumer;
    pthread_t reader;
    pthread_t *workers;
    int nworkers;
    bool reader_up, reader_done, stop, running;
    ld_io *io;
    uint64_t pending; /* blocks handed to I/O or workers and not yet decoded */
    uint64_t slots_in_use; /* batch slots not free */
    uint64_t waiting_for;  /* global batch the consumer sleeps on, UINT64_MAX when awake */
    int64_t blocked_slot;

    /* The reader's plans: it runs on into the next epoch while the consumer finishes this one, so
     * two plans may be live. Batches are numbered globally within a run: epoch-local batch k of
     * plan slot i is global batch rbase[i] + k, held in slot (global % nslots). */
    ld_plan rplan[2];
    uint64_t rbase[2], rlo[2], rpending[2];
    uint32_t win_plan[2]; /* plan slot of each window slot */
    uint64_t run_epoch;   /* the epoch a run starts at, and its first batch */
    uint64_t run_k;
    uint64_t run_base;    /* global number of run_epoch's batch 0 (below nslots; see run_base_locked) */

    /* The consumer contract (shardpack.h): 1 while a consumer call (next, set_epoch, the state
     * and count functions, close) runs. Taken by compare-exchange at entry, so a second thread
     * gets SP_EBUSY before it reads or writes anything below. */
    atomic_int consumer_busy;

    /* the consumer's position; `plan` is its own copy of its epoch's plan */
    ld_plan plan;
    bool plan_valid;
    uint64_t epoch, start_k, next_k, cons_base, next_assign;
    bool done;
    uint64_t leases;
    uint64_t taken; /* under mu: batches the host consumer has taken, ever (orders the leases) */

    /* the first failure of this run, by global batch */
    uint64_t err_batch;
    int err_code;
    char err_msg[SP_ERRMSG_MAX];

    /* the device stage (cu.h): device >= 0 when batches go to CUDA device `device` */
    int device;
    int dev_dtype, dev_layout; /* device_dtype, device_layout */
    int dev_img_dtype;         /* the SP_IMAGE_* dtype device_dtype converts to (uint8: none) */
    uint64_t dev_budget;       /* device_memory */
    cu_stage *dev;

    sp_loader_stats st;
    double t_first;
};

/* ld_pipeline.c */
int ld_pipeline_start(sp_loader *l);
void ld_pipeline_stop(sp_loader *l);

#endif
