/* ld.h - the loader's stages and the small interfaces between them. ld_loader.c wires them. */
#ifndef SP_LD_H
#define SP_LD_H

#include <pthread.h>

#include "fmt.h"
#include "sp_rng.h"

/* ---- planner (ld_plan.c): a pure function of (seed, epoch, parts, rank, world, blocks) ---- */

/* A weighted mixture of several datasets whose blocks follow each other in the block table:
 * source d holds blocks first_block[d] .. first_block[d + 1] - 1, and an epoch takes take[d] of its
 * samples (ld_mix_takes). */
#define LD_MIX_MAX 16
typedef struct ld_mix {
    uint32_t n;
    uint64_t first_block[LD_MIX_MAX + 1];
    uint64_t take[LD_MIX_MAX];
    /* mix_epoch_samples: 0, or the epoch's samples (the takes add up to it; a source may take more
     * than it holds: its blocks again, in another permutation each pass) */
    uint64_t epoch_samples;
} ld_mix;

typedef struct ld_plan_cfg {
    uint64_t seed, epoch;
    uint32_t rank, world;
    uint32_t batch;
    uint32_t window_blocks;
    uint32_t parts; /* canonical partitions: a multiple of world, dividing batch * world */
    bool shuffle, drop_last;
    bool pad; /* rank_pad: short partitions repeat a sample instead of the others dropping one */
    const ld_mix *mix; /* NULL: one dataset, every sample */
} ld_plan_cfg;

/* One window of the rank's plan: consecutive blocks of one partition (the first and last
 * possibly shared with the partitions beside it), whose samples are permuted together. */
typedef struct ld_pwin {
    uint64_t first_block; /* index into plan->blocks */
    uint32_t nblocks;
    uint32_t part;        /* which of the rank's partitions (0 .. parts / world - 1) */
    uint64_t q;           /* the partition's global index */
    uint64_t s0;          /* the epoch stream offset of its first sample */
    uint64_t n;           /* its samples */
    uint64_t u;           /* the partition index of its first sample */
    uint64_t index;       /* which window of its partition */
    uint64_t start, end;  /* the rank stream positions it fills: smallest, and one past the largest */
    bool pad;             /* a padding window: one block, whose sample s0 repeats at index u (rank_pad) */
} ld_pwin;

/* One rank's epoch. The epoch's order is a function of (seed, epoch, dataset, parts) alone: the
 * blocks are permuted, their samples cut into parts equal ranges (partitions), each partition cut
 * into windows of window_blocks blocks whose samples are permuted; global batch g takes indices
 * [g*bp, (g+1)*bp) of every partition (bp = batch * world / parts), and rank r's batch g is its
 * share of it: partitions r*parts/world .. (r+1)*parts/world - 1, each bp samples. */
typedef struct ld_plan {
    ld_plan_cfg cfg;
    uint64_t *blocks;       /* global block ids of every window, window after window */
    uint64_t *boff;         /* the epoch stream offset of each one's first sample */
    uint32_t *bcnt;         /* its samples in the stream: its first bcnt rows (a mixture's last
                             * block of a source may be cut) */
    uint64_t nblocks;
    ld_pwin *win;           /* ordered by start */
    uint64_t nwindows;
    uint64_t bp;            /* samples of each partition in a batch */
    uint64_t keep;          /* indices kept of every partition */
    uint64_t tail_j;        /* first index of the short last batch, or UINT64_MAX */
    uint64_t samples;       /* kept by this rank (equal on all ranks) */
    uint64_t dropped;       /* this rank's samples past `samples` */
    uint64_t padded;        /* this rank's padding rows (rank_pad): repeats filling short partitions */
    uint64_t nbatches;
} ld_plan;

/* block_samples[b] for every global block b. SP_EINVAL (why says so) for a world size that does
 * not divide parts, a global batch parts does not divide, or fewer samples than parts. */
int ld_plan_build(ld_plan *p, const ld_plan_cfg *cfg, const uint32_t *block_samples, uint64_t nblocks,
                  char *why, size_t whylen);
/* The most places (blocks, a block counted once per pass) an epoch's stream holds: nblocks for one
 * dataset; for a mixture, each source's blocks times its passes, ceil(take / its samples). */
uint64_t ld_plan_places(const ld_mix *m, const uint32_t *block_samples, uint64_t nblocks);
void ld_plan_free(ld_plan *p);

/* Set in a batch's sample id of a padding row (rank_pad); ids stay below 2^63, and UINT64_MAX (a
 * skipped row) is not padding. */
#define LD_ID_PAD (UINT64_C(1) << 63)

/* pos[] of a row that this window does not deliver (another partition's, or dropped). */
#define LD_POS_NONE UINT32_MAX

/* A window's rows: row r of the window's concatenated blocks lands at stream position
 * start + pos[r], or nowhere when pos[r] is LD_POS_NONE. */
typedef struct ld_window {
    uint64_t index, start;
    uint64_t first_block;  /* index into plan->blocks */
    uint32_t nblocks;
    uint32_t nsamples;     /* its partition's samples */
    uint32_t nrows;        /* rows of its blocks */
    bool pad;              /* its one sample is a repeat (rank_pad): its row's id is marked LD_ID_PAD */
    uint32_t *pos;         /* nrows entries */
    uint32_t *row_base;    /* nblocks entries: first window row of each block */
} ld_window;

/* Fills w (whose arrays hold at least cap rows and window_blocks blocks). */
int ld_window_build(const ld_plan *p, const uint32_t *block_samples, uint64_t index, ld_window *w,
                    uint32_t cap, uint32_t *scratch);

/* The rank's epoch as sample ids, without reading: ids[q] = the id of the sample at stream
 * position q, for q < n (n at most p->samples); block_first[b] the id of global block b's first
 * sample. A repeat (rank_pad) is its sample's id | LD_ID_PAD. SP_ENOMEM. */
int ld_plan_ids(const ld_plan *p, const uint32_t *block_samples, const uint64_t *block_first, uint64_t *ids,
                uint64_t n);

#endif
