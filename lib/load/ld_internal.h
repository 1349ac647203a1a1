/* ld_internal.h - the loader object, shared by its API (ld_loader.c) and its threads
 * (ld_pipeline.c), split into parts by the thread or lock that owns each. */
#ifndef SP_LD_INTERNAL_H
#define SP_LD_INTERNAL_H

#include <dlpack/dlpack.h>
#include <pthread.h>
#include <stdatomic.h>

#include "img.h"
#include "ld.h"
#include "ld_host.h"
#include "ld_io.h"
#include "ds.h"

#define LD_PAGE 4096u
#define LD_FIELD_ALIGN 256u
#define LD_IO_DEPTH 32u
#define LD_RM_DEPTH 256u /* blocks queued or in flight on a remote dataset (rm_fetch) */
#define LD_RM_TAILS_MAX 64u /* shard tails (their indexes) fetched at once on a lazy remote dataset */
/* ... and the most their buffers take: 64 tails of 64 KiB, or fewer of a larger index each */
#define LD_RM_TAILS_BYTES (LD_RM_TAILS_MAX * FMT_TAIL_READ)
#define LD_AHEAD_MAX 1024u  /* remote blocks fetched ahead of their windows, at most */
#define LD_MAX_FDS 64u /* shard descriptors kept open: a quarter of RLIMIT_NOFILE, within these */
#define LD_MIN_FDS 4u
#define LD_FD_WAIT_S 1.0 /* out of descriptors with none of its own to close: the reader waits this long */
#define LD_READ_RING_MAX (1ull << 30) /* one registered buffer: the kernel's limit */
#define LD_NOTE_WHY 128u /* a slot's reason for its lowest bad row, cut to this */

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_LEASED };
enum { CONVERT_COPY, CONVERT_U16_I32, CONVERT_U32_I32, CONVERT_IMAGE };

typedef struct cu_stage cu_stage;
typedef struct ld_cache ld_cache;

typedef struct ld_slot {
    sp_batch b;
    uint8_t *mem;
    uint64_t k; /* batch held, UINT64_MAX for none */
    int state;
    atomic_uint rows_done;
    uint32_t rows_expected;
    uint8_t *bad; /* per row: filled in for a skipped corrupt sample */
    uint64_t taken;          /* under ring.mu: when the consumer took it (ring.taken then) */
    /* Under ring.mu: the lowest bad row (UINT32_MAX for none) and where and why it went bad, kept
     * as numbers and a short reason so that every slot does not carry a whole message; the
     * message is built only for a batch with no good row. */
    uint32_t note_row;
    uint32_t note_r;            /* its row within its block */
    uint64_t note_block;
    const struct ld_out *note_out; /* the field whose value was bad; NULL: the whole block */
    char note_why[LD_NOTE_WHY];
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
    /* fetched for the remote cache: the worker that verifies the block writes its entry (ld_cache.c
     * ld_cache_keep) before the region is given back; keep_now: when it was read (rm_use.now) */
    bool keep;
    uint64_t keep_now;
} ld_job;

/* A decoded block whose rows several workers write, a part each (image fields and other expensive
 * ones): its stored bytes stay in the read ring and its decompressed bytes in scratch[k] (k: its
 * index in pool.dec) until the last part is done. Under ring.mu, but for the view, which the decoding
 * worker writes before it queues the block's parts and nobody writes after. */
typedef struct ld_dec {
    ld_job job;
    fmt_block_view v;
    uint32_t next, part; /* the next row to hand out; rows per part */
    uint32_t left;       /* parts not finished */
} ld_dec;

/* A remote block fetched ahead of its window (ld_pipeline.c fetch_ahead): its ring region, and its
 * read's tag while in flight. */
typedef struct ld_ahead {
    uint64_t block;
    uint8_t *buf;
    uint32_t region;
    unsigned tag;
    int state;
    bool keep; /* arrived, for the cache (ld_job.keep), read at keep_now */
    uint64_t keep_now;
} ld_ahead;

typedef struct ld_region {
    uint64_t pos, len;
    bool done;
} ld_region;

/* ---- the loader, split by owner ----
 * Each part below is written by one owner, named at the top of its struct; everything else only
 * reads it, as that comment allows. "The consumer" is the thread inside a consumer call
 * (shardpack.h: next, set_epoch, the state and count functions, close), or the device stage's
 * copy thread while it runs (it calls ld_host_next). The lock order is in ld_host.h. */

/* Configuration: written by open, read-only afterwards by every thread. */
typedef struct ld_config {
    uint32_t batch, window_blocks, rank, world;
    int threads, io_mode, on_error, token_dtype;
    bool threads_auto; /* threads=0: as many as the usable cores, and as host_memory holds */
    bool host_memory_auto; /* host_memory=0: the default, or what the configuration needs when more */
    int direct_mode; /* the direct_io parameter: 1, 0, or -1 for auto */
    bool shuffle, drop_last;
    bool pad; /* rank_pad */
    uint64_t seed, epochs, host_memory, prefetch, max_sample;
    uint64_t sim_sample_ns, sim_read_ns; /* testing: sleeps per sample written, per block read */
    int remote_threads;                  /* the parameter: -1 none, 0 auto, else that many */
    img_cfg img;    /* the image transform, when an image field is batched */
    bool has_image;
    bool split;     /* a block's rows are written in parts by several workers (image fields, sim_sample_us) */
    /* the device stage (ld_device.h): device >= 0 when batches go to CUDA device `device` */
    int device;
    int dev_dtype, dev_layout; /* device_dtype, device_layout */
    int dev_img_dtype;         /* the SP_IMAGE_* dtype device_dtype converts to (uint8: none) */
    uint64_t dev_budget;       /* device_memory */
    uint32_t local_world;      /* ranks on this node (1 when no launcher says), for the defaults */
    uint32_t parts;            /* canonical partitions of the order (ld_plan.c) */
} ld_config;

/* The dataset, flattened per global block: written by open, read-only afterwards. */
typedef struct ld_tables {
    const sp_schema *schema;
    uint64_t nblocks, nshards;
    uint32_t *block_samples;
    uint64_t *block_first;
    uint32_t *block_shard;
    const fmt_block_entry **block_entry;
    fmt_shard **shards;
    uint32_t max_block_samples;
    uint64_t max_raw, max_read;
    /* lazy: some source (the dataset, or a mixture's source, local or remote) has a manifest that
     * records its largest blocks: the block_entry of its shard i's blocks stay NULL, and opened[i]
     * 0, until the reader has read shard i's index (it alone writes them, before it queues a job
     * of the shard; sp_loader_bench_block, between runs); opened[] is 1 from the open for the
     * shards of other sources. A remote one's shards[i] is then its dataset's shard; a local one's
     * index is read by the loader alone (ds_shard_load), its block entries copied to entries[] and
     * the index let go at once (shards[i] stays NULL), so the loader holds per shard only its mark
     * and per block its entry, all counted in host_memory. */
    bool lazy;
    uint8_t *opened;
    fmt_block_entry *entries; /* when a source is lazy and local: nblocks of them (by global block) */
    /* per shard: what a reopened file is checked against (every mode) */
    fmt_shard_mark *marks;
} ld_tables;

/* The batch layout: written by open, read-only afterwards. */
typedef struct ld_layout {
    uint32_t rows; /* rows a batch slot holds: batch_size, or the most an epoch of a rank can fill */
    ld_out out[SP_MAX_FIELDS];
    size_t nout;
    uint64_t batch_bytes;
    const char *names[SP_MAX_FIELDS]; /* of the batch tensors, for every batch */
    uint64_t ndims;                    /* dimensions of all batch tensors together */
} ld_layout;

/* Memory allocated at open; the pointers never change. What they hold belongs to: the read ring's
 * bytes, to the region they were carved for (ld_ring); batch_mem, tensors and shapes, to their
 * slot; scratch[k], to the block decoded-block entry dec[k] holds (taken from ring.dec_free); the
 * other per-worker arrays, to worker [i] (and all of them to a caller of sp_loader_bench_block
 * while no worker runs). */
typedef struct ld_pools {
    uint8_t *read_ring;
    uint64_t read_ring_bytes;
    uint8_t *batch_mem;
    DLTensor *tensors; /* nout per slot */
    int64_t *shapes;   /* ndims per slot */
    uint8_t **scratch;
    uint32_t **row_counts; /* per worker: rows per batch of the block being scattered */
    uint64_t bpw;          /* most batches one window's samples can touch */
    ZSTD_DCtx **dctx;
    img_ctx **imgc;        /* per worker */
    ld_dec *dec;           /* threads of them; dec[k] decompresses into scratch[k] */
    img_share *img_share;  /* libjpeg's whole-image memory, max_image_memory for all the workers */
} ld_pools;

/* The reader's state: the reader thread while a run is on; the consumer between runs (open,
 * ld_pipeline_start, after ld_pipeline_stop). The workers read the windows and plans of the jobs
 * the reader has queued (published by ring.mu). */
typedef struct ld_reader_state {
    ld_io *io;
    rm_fetch *rf;    /* a remote dataset's driver, in io's place */
    /* its transfers (0: every source local), largest part and the bytes its read ring aims to keep
     * in flight: chosen once the block tables are known (ld_loader.c, remote_reads) */
    unsigned transfers;
    uint64_t part, goal;
    uint64_t max_get; /* the largest block of the remote sources (page-rounded): one GET's size */
    bool direct;     /* O_DIRECT reads; switched off under ring.mu (the stats say why) */
    /* descriptors */
    int *fd;
    bool *fd_direct;
    uint64_t *fd_tick;
    uint64_t tick;
    uint32_t fds_open;
    /* windows */
    ld_window win[2];
    uint32_t *win_perm;
    uint32_t win_cap;
    uint32_t win_plan[2]; /* plan slot of each window slot */
    /* The reader's plans: it runs on into the next epoch while the consumer finishes this one, so
     * two plans may be live. Batches are numbered globally within a run: epoch-local batch k of
     * plan slot i is global batch rbase[i] + k, held in slot ld_slot_of(global). */
    ld_plan rplan[2];
    uint64_t rbase[2], rlo[2];
    uint64_t next_assign; /* the next global batch whose slot the reader claims */
    /* where a run starts, set by the consumer before it starts the reader */
    uint64_t run_epoch, run_k;
    uint64_t run_base; /* global number of run_epoch's batch 0 */
    /* a lazy remote dataset's index fetches: ntails tail buffers of tail_size bytes (the largest
     * tail a shard needs to hold its whole index, within LD_RM_TAILS_BYTES), the shard each one is
     * fetching (UINT64_MAX: free), and per shard whether its tail is being fetched */
    uint8_t *tails;
    uint64_t *tail_shard;
    unsigned ntails;
    uint64_t tail_size;
    uint8_t *idx_asked;
    uint64_t tail_bytes; /* of the tails fetched (under ring.mu): not block bytes, so not remote_bytes */
} ld_reader_state;

/* The rings shared by the reader, the workers and the consumer: everything here is read and
 * written under `mu`, except the slots' rows (written by the workers that own their rows while
 * a slot is SLOT_FILLING, read by the consumer once it is SLOT_READY) and what open sets once. */
typedef struct ld_ring {
    pthread_mutex_t mu;
    pthread_cond_t c_reader, c_worker, c_consumer;
    bool stop, reader_done;
    /* batch slots */
    ld_slot *slots;
    uint64_t nslots;       /* fixed at open: the most the ring may use (the budget's) */
    uint64_t slots_in_use; /* batch slots not free */
    /* Which slot holds global batch g, at slot_of[g % nslots]: written when the reader claims g,
     * read (by the consumer and the workers) until the consumer takes g. The batches claimed and
     * not taken are consecutive and each holds a slot, so no two of them share an entry. */
    uint32_t *slot_of;
    uint32_t *free_slots, nfree; /* free slots, a stack: the one freed last is used first, so the
                                  * ring touches only as many slots as it has used at once */
    /* Prefetch that follows need: the reader uses at most slot_limit slots; it starts at one
     * window of batches and two more (all nslots when prefetch is given) and grows by one, up to
     * nslots, each time the consumer waits for a batch the limit keeps from being read. */
    uint64_t slot_limit;
    bool reader_blocked;   /* the reader waits for a slot (none free, or slot_limit in use) */
    /* the reader waits in rm_fetch_reap for workers (ring space, a window drained), not for a
     * read: the next block a worker finishes wakes it (once) */
    bool reader_polls;
    uint64_t claim_first;  /* then: the first global batch of the window it claims */
    uint64_t waiting_for;  /* global batch the consumer sleeps on, UINT64_MAX when awake */
    uint64_t leases;
    uint64_t taken; /* batches the host consumer has taken, ever (orders the leases) */
    bool consumer_abort; /* the host consumer's wait returns at once (device stage halt) */
    /* regions of the read ring, and the decode jobs queued on them */
    ld_region *regions;
    uint32_t nregions, reg_head, reg_count;
    uint64_t ring_head, ring_tail;
    ld_job *jobs;
    uint32_t jobs_cap, job_head, job_count;
    uint32_t active;             /* jobs a worker is running now (the stats keep the peak) */
    uint32_t *dec_free, dec_nfree; /* pool.dec entries free (a stack) */
    uint32_t *parts, part_head, part_count; /* pool.dec entries with parts still to hand out (a FIFO) */
    uint64_t pending;            /* blocks handed to I/O or workers and not yet decoded */
    uint64_t win_remaining[2];   /* blocks of each window slot still to decode */
    uint64_t rpending[2];        /* blocks of each plan slot still to decode */
} ld_ring;

/* The first failure of this run, by global batch: under ring.mu; reset by the consumer between
 * runs. */
typedef struct ld_failure {
    uint64_t batch;
    int code;
    char msg[SP_ERRMSG_MAX];
} ld_failure;

/* The threads of a run: the consumer's (ld_pipeline_start, ld_pipeline_stop). */
typedef struct ld_threads {
    pthread_t reader;
    pthread_t *workers;
    int nworkers;
    bool reader_up, running;
} ld_threads;

/* The consumer's position: the consumer's. `plan` is its own copy of its epoch's plan. */
typedef struct ld_consumer {
    /* 1 while a consumer call runs. Taken by compare-exchange at entry, so a second thread gets
     * SP_EBUSY before it reads or writes anything else of the loader. */
    atomic_int busy;
    sp_errbuf *eb; /* where the host stage's consumer writes its errors: the loader's eb, or the
                    * device stage's own buffer while its copy thread is the consumer */
    unsigned track; /* the host consumer's trace track: LD_TRACK_CONSUMER, or LD_TRACK_COPY */
    ld_plan plan;
    bool plan_valid;
    uint64_t epoch, start_k, next_k, cons_base;
    bool done;
} ld_consumer;

/* Statistics: under ring.mu (sp_loader_stats_get reads them from any thread). */
typedef struct ld_stats {
    sp_loader_stats s;
    double t_first;
} ld_stats;

struct sp_loader {
    sp_errbuf eb;  /* the API caller's messages */
    char name[256]; /* what was opened (a path, a glob, the first of the shards), for messages */
    int pid;        /* the process that opened it (sp_proc_self): a forked child has none of its threads */
    sp_dataset *ds;
    /* a weighted mixture (sp_loader_open_mix): ds is mix_ds[0]; mix.n is 0 for one dataset */
    ld_mix mix;
    sp_dataset *mix_ds[LD_MIX_MAX];
    double mix_w[LD_MIX_MAX];
    uint64_t mix_first_sample[LD_MIX_MAX + 1];
    uint64_t mix_first_shard[LD_MIX_MAX + 1]; /* global number of each source's shard 0 */
    cu_stage *dev; /* the device stage (ld_device.h), or NULL: the consumer's */
    ld_config cfg;
    ld_tables tab;
    ld_layout lay;
    ld_pools pool;
    ld_reader_state rdr;
    ld_ring ring;
    ld_failure fail;
    ld_threads thr;
    ld_consumer cons;
    ld_stats stats;
    sp_trace *trace; /* the timeline (the trace parameter), or NULL: open creates it, close writes it */
    ld_cache *cache; /* a remote dataset's local cache (ld_cache.c), or NULL */
    /* sp_loader_bench_block's calls may run at once: a lazy shard's index is read and its entries
     * written into the tables under this, and every call looks for its block's entry under it */
    pthread_mutex_t bench_mu;
    /* and a remote block one call fetched is kept for the calls after it in the read ring, idle
     * until the pipeline starts: bench_at[block] its offset + 1 (0: not kept; NULL until the first),
     * bench_used the ring's bytes taken. Let go when the pipeline starts. Under bench_mu. */
    uint64_t *bench_at;
    uint64_t bench_used;
};

/* The slot of global batch g, claimed by the reader and not yet taken by the consumer (any other
 * g gives a slot whose k is not g). */
static inline ld_slot *ld_slot_of(const sp_loader *l, uint64_t g)
{
    return &l->ring.slots[l->ring.slot_of[g % l->ring.nslots]];
}

/* ld_pipeline.c: when the consumer waits for global batch g because the slot limit holds the
 * reader back from it, the limit grows by one slot (true). Called with ring.mu held. */
bool ld_grow_slots_locked(sp_loader *l, uint64_t g);
/* ld_pipeline.c: the trace's host counters from the ring's state. Called with ring.mu held. */
void ld_trace_counters_locked(sp_loader *l);

/* ld_loader.c: the dataset that holds global shard i (a mixture's source, or the one dataset), with
 * i's number there in *local and the global number of that dataset's block 0 in *first_block; the
 * site of shard i (NULL: a local file); whether any source is remote. */
sp_dataset *ld_shard_source(const sp_loader *l, uint64_t i, uint64_t *local, uint64_t *first_block);
rm_site *ld_shard_site(const sp_loader *l, uint64_t i);
bool ld_any_remote(const sp_loader *l);
/* ld_loader.c: builds the plan of `epoch` for this loader's rank into p. */
/* ld_ranks.c: rank and world size from the parameters or the launchers' variables, the local
 * world size, and stats' rank fields and rank_note; SP_EINVAL with a message naming the
 * variables. */
int ld_read_ranks(sp_loader *l, const sp_params *p);
int ld_epoch_plan(const sp_loader *l, uint64_t epoch, ld_plan *p, char *why, size_t whylen);
/* The same for another rank of the job. */
int ld_rank_plan(const sp_loader *l, uint64_t epoch, uint32_t rank, ld_plan *p, char *why, size_t whylen);

/* ld_cache.c: the remote cache's side in the loader. config (after the ranks are read) notes
 * cache_dir and cache_size for a remote dataset; bytes is what it holds in host_memory (plan: one
 * plan's bytes); open (after the remote driver) opens the directory; plan (the reader, after it
 * planned epoch into slot pi) notes when the next epoch reads each block; stats fills the cache's
 * fields.
 * Entries are written by the decode workers, not by the reader (which drives every transfer):
 * copy (the reader, before a remote submit of block into buf, read in the window of plan slot pi
 * that starts at start, its rank stream position) copies a held block (below) into buf instead
 * of fetching it again (true; the entry's next use moves to this read's), or else tells the driver
 * what the read is to the cache (false). hold (the reader, after reaping j's fetch) marks j->keep
 * when the bytes are the cache's to keep, and notes j->buf as the block's copy until keep (the
 * worker that has verified the block: ok) writes its entry and lets it go, before the region is
 * given back; release lets a held copy go unwritten (a block fetched ahead and dropped); reset
 * forgets every hold (at pipeline start: a stopped pipeline's jobs are gone). */
int ld_cache_config(sp_loader *l, const sp_params *p);
uint64_t ld_cache_bytes(const sp_loader *l, uint64_t plan);
int ld_cache_open(sp_loader *l);
void ld_cache_close(sp_loader *l);
void ld_cache_plan(sp_loader *l, uint32_t pi, uint64_t epoch);
void ld_cache_hold(sp_loader *l, ld_job *j);
void ld_cache_keep(sp_loader *l, const ld_job *j, bool ok, unsigned track);
void ld_cache_release(sp_loader *l, uint64_t block);
bool ld_cache_copy(sp_loader *l, uint64_t block, uint32_t pi, uint64_t start, uint8_t *buf);
void ld_cache_reset(sp_loader *l);
void ld_cache_stats(const sp_loader *l, sp_loader_stats *st);

/* ld_pipeline.c */
/* A lazy remote source's shard i (global number), now open: its index's blocks in the block table. */
void ld_install_shard(sp_loader *l, uint64_t i, fmt_shard *sh);
/* A lazy local source's shard i (global number): its index read through fd (ds_shard_load: fd, st and a negative
 * fd as there; fd stays the caller's), its block entries copied into the tables and the index let
 * go. SP_OK, or the failure's code with its message in eb. */
int ld_load_local_shard(sp_loader *l, uint64_t i, int fd, const struct stat *st, sp_errbuf *eb);
/* Shard i's path, for messages and opening. */
const char *ld_shard_path(const sp_loader *l, uint64_t i);
int ld_pipeline_start(sp_loader *l);
void ld_pipeline_stop(sp_loader *l);
/* Limit mode (sp_loader_bench_block): block's stored bytes, already in buf, verified, decompressed
 * and written row by row as decode worker id writes them; the n-th row (n = (*cursor)++) goes to
 * row n % batch of a slot among [first, first + nslots). Touches nothing the pipeline shares; a
 * failure's message goes to the calling thread only. The samples written, or a negative code. */
int64_t ld_bench_block(sp_loader *l, int id, uint64_t block, uint8_t *buf, uint64_t first, uint64_t nslots,
                       uint64_t *cursor);

#endif
