/* ld_plan.c - the epoch plan: which blocks each rank reads, in which order, and where each sample
 * lands. Everything here is a pure function of its inputs, which is what makes batches identical
 * across thread counts, runs and resumptions. */
#include <stdio.h>

#include "ld.h"

static void shuffle_u64(sp_rng *r, uint64_t *v, uint64_t n)
{
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = sp_rng_below(r, i);
        uint64_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

void ld_plan_free(ld_plan *p)
{
    sp_free(p->blocks);
    sp_free(p->window_start);
    p->blocks = p->window_start = NULL;
}

/* A binary min-heap of (samples, rank): the next block goes to the rank holding fewest samples,
 * the lowest rank on ties, so ranks end within one block of each other. */
typedef struct heap_item {
    uint64_t samples;
    uint32_t rank;
} heap_item;

static bool heap_less(heap_item a, heap_item b)
{
    return a.samples < b.samples || (a.samples == b.samples && a.rank < b.rank);
}

static void heap_down(heap_item *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(h[l], h[m]))
            m = l;
        if (r < n && heap_less(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        heap_item t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Deals the permuted blocks; fills counts[rank] and, for cfg->rank, the block list (room for cap:
 * ranks are dealt by samples, so one holding small blocks gets more of them than an even share). */
static int deal_blocks(ld_plan *p, const uint64_t *order, const uint32_t *block_samples, uint64_t nblocks,
                       uint64_t *counts, uint64_t cap)
{
    uint32_t world = p->cfg.world;
    heap_item *h = sp_malloc((size_t)world * sizeof *h);
    if (!h)
        return SP_ENOMEM;
    for (uint32_t r = 0; r < world; r++)
        h[r] = (heap_item){ 0, r };
    for (uint64_t i = 0; i < nblocks; i++) {
        uint64_t b = order[i];
        if (h[0].rank == p->cfg.rank) {
            if (p->nblocks == cap) { /* a block of no samples: the format has none */
                sp_free(h);
                return SP_EINVAL;
            }
            p->blocks[p->nblocks++] = b;
        }
        h[0].samples += block_samples[b];
        heap_down(h, world, 0);
    }
    for (uint32_t r = 0; r < world; r++)
        counts[h[r].rank] = h[r].samples;
    sp_free(h);
    return SP_OK;
}

static int plan_windows(ld_plan *p, const uint32_t *block_samples)
{
    uint64_t wb = p->cfg.window_blocks;
    p->nwindows = (p->nblocks + wb - 1) / wb;
    p->window_start = sp_malloc((p->nwindows + 1) * sizeof *p->window_start);
    if (!p->window_start)
        return SP_ENOMEM;
    uint64_t pos = 0;
    for (uint64_t i = 0; i < p->nblocks; i++) {
        if (i % wb == 0)
            p->window_start[i / wb] = pos;
        pos += block_samples[p->blocks[i]];
    }
    p->window_start[p->nwindows] = pos;
    return SP_OK;
}

int ld_plan_build(ld_plan *p, const ld_plan_cfg *cfg, const uint32_t *block_samples, uint64_t nblocks,
                  char *why, size_t whylen)
{
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    if (cfg->world == 0 || cfg->rank >= cfg->world || cfg->batch == 0 || cfg->window_blocks == 0)
        return snprintf(why, whylen, "rank %u / world size %u is not valid", cfg->rank, cfg->world), SP_EINVAL;
    if (nblocks < cfg->world)
        return snprintf(why, whylen, "the dataset has %llu blocks, fewer than world size %u; repack it with a "
                        "smaller block_size", (unsigned long long)nblocks, cfg->world), SP_EINVAL;
    uint64_t *order = sp_malloc(nblocks * sizeof *order);
    uint64_t *counts = sp_calloc(cfg->world, sizeof *counts);
    /* Every rank is dealt one block at least (the first `world` go one to each, as a block has a
     * sample at least), so one rank holds at most nblocks - world + 1. */
    uint64_t cap = nblocks - cfg->world + 1;
    p->blocks = sp_malloc(cap * sizeof *p->blocks);
    int rc = order && counts && p->blocks ? SP_OK : SP_ENOMEM;
    if (rc == SP_OK) {
        for (uint64_t i = 0; i < nblocks; i++)
            order[i] = i;
        if (cfg->shuffle) {
            sp_rng r;
            sp_rng_seed(&r, cfg->seed, cfg->epoch, 0x626c6f636b73ull /* "blocks" */, 0);
            shuffle_u64(&r, order, nblocks);
        }
        rc = deal_blocks(p, order, block_samples, nblocks, counts, cap);
        if (rc == SP_EINVAL)
            snprintf(why, whylen, "a block of no samples cannot be dealt");
    }
    if (rc == SP_OK) {
        uint64_t keep = UINT64_MAX;
        for (uint32_t r = 0; r < cfg->world; r++)
            keep = counts[r] < keep ? counts[r] : keep;
        if (cfg->drop_last)
            keep -= keep % cfg->batch;
        p->samples = keep;
        p->dropped = counts[cfg->rank] - keep;
        p->nbatches = (keep + cfg->batch - 1) / cfg->batch;
        rc = plan_windows(p, block_samples);
    }
    sp_free(order);
    sp_free(counts);
    if (rc) {
        ld_plan_free(p);
        if (rc == SP_ENOMEM)
            snprintf(why, whylen, "out of memory planning %llu blocks", (unsigned long long)nblocks);
    }
    return rc;
}

uint64_t ld_plan_window_of(const ld_plan *p, uint64_t pos)
{
    return sp_floor_index(p->window_start, p->nwindows, pos);
}

int ld_window_build(const ld_plan *p, const uint32_t *block_samples, uint64_t index, ld_window *w,
                    uint32_t cap, uint32_t *scratch)
{
    uint64_t wb = p->cfg.window_blocks;
    w->index = index;
    w->start = p->window_start[index];
    w->first_block = index * wb;
    w->nblocks = (uint32_t)(p->nblocks - w->first_block < wb ? p->nblocks - w->first_block : wb);
    uint64_t n = p->window_start[index + 1] - w->start;
    if (n > cap)
        return SP_ELIMIT;
    w->nsamples = (uint32_t)n;
    uint32_t base = 0;
    for (uint32_t k = 0; k < w->nblocks; k++) {
        w->row_base[k] = base;
        base += block_samples[p->blocks[w->first_block + k]];
    }
    /* scratch[i] = the window row placed at position i; pos is its inverse. */
    for (uint32_t i = 0; i < w->nsamples; i++)
        scratch[i] = i;
    if (p->cfg.shuffle) {
        sp_rng r;
        sp_rng_seed(&r, p->cfg.seed, p->cfg.epoch, ((uint64_t)p->cfg.rank << 32) | p->cfg.world, index + 1);
        for (uint32_t i = w->nsamples; i > 1; i--) {
            uint32_t j = (uint32_t)sp_rng_below(&r, i);
            uint32_t t = scratch[i - 1];
            scratch[i - 1] = scratch[j];
            scratch[j] = t;
        }
    }
    for (uint32_t i = 0; i < w->nsamples; i++)
        w->pos[scratch[i]] = i;
    return SP_OK;
}
