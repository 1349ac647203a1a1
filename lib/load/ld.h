/* ld.h - the loader's stages and the small interfaces between them. ld_loader.c wires them. */
#ifndef SP_LD_H
#define SP_LD_H

#include <pthread.h>

#include "fmt.h"
#include "sp_rng.h"

/* ---- planner (ld_plan.c): a pure function of (seed, epoch, rank, world, blocks) ---- */

typedef struct ld_plan_cfg {
    uint64_t seed, epoch;
    uint32_t rank, world;
    uint32_t batch;
    uint32_t window_blocks;
    bool shuffle, drop_last;
} ld_plan_cfg;

/* One rank's epoch: its blocks in stream order, and the sample count every rank keeps. */
typedef struct ld_plan {
    ld_plan_cfg cfg;
    uint64_t *blocks;       /* global block ids, stream order */
    uint64_t nblocks;
    uint64_t samples;       /* kept by this rank (equal on all ranks) */
    uint64_t dropped;       /* this rank's samples past `samples` */
    uint64_t nbatches;
    uint64_t nwindows;
    uint64_t *window_start; /* stream position of each window's first sample; nwindows + 1 */
} ld_plan;

/* block_samples[b] for every global block b. SP_EINVAL when some rank would get no block. */
int ld_plan_build(ld_plan *p, const ld_plan_cfg *cfg, const uint32_t *block_samples, uint64_t nblocks,
                  char *why, size_t whylen);
void ld_plan_free(ld_plan *p);
/* The window holding stream position pos. */
uint64_t ld_plan_window_of(const ld_plan *p, uint64_t pos);

/* A window's sample permutation: row r of the window's concatenated blocks lands at stream
 * position start + pos[r]. */
typedef struct ld_window {
    uint64_t index, start;
    uint64_t first_block;  /* index into plan->blocks */
    uint32_t nblocks;
    uint32_t nsamples;
    uint32_t *pos;         /* nsamples entries */
    uint32_t *row_base;    /* nblocks entries: first window row of each block */
} ld_window;

/* Fills w (whose arrays hold at least cap samples and window_blocks blocks). */
int ld_window_build(const ld_plan *p, const uint32_t *block_samples, uint64_t index, ld_window *w,
                    uint32_t cap, uint32_t *scratch);

#endif
