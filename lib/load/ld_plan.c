/* ld_plan.c - the epoch plan: which blocks each rank reads, in which order, and where each sample
 * lands. Everything here is a pure function of its inputs, which is what makes batches identical
 * across thread counts, runs and resumptions. */
#include <stdio.h>
#include <stdlib.h>

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
    sp_free(p->boff);
    sp_free(p->bcnt);
    sp_free(p->win);
    p->blocks = NULL;
    p->boff = NULL;
    p->bcnt = NULL;
    p->win = NULL;
}

/* The rank stream position of index j of the rank's partition o: batch j / bp takes bp samples of
 * each of the rank's partitions, partition o's at rows o*bp ..; the short last batch (from index
 * tail_j on) takes the same count of each, packed. */
static uint64_t rank_pos(const ld_plan *p, uint32_t o, uint64_t j)
{
    uint64_t bp = p->bp, b = p->cfg.batch;
    if (j >= p->tail_j)
        return p->tail_j / bp * b + o * (p->keep - p->tail_j) + (j - p->tail_j);
    return j / bp * b + o * bp + j % bp;
}

/* The stream offset (in the epoch's block order) of sample n * q / parts: partition q's start. */
static uint64_t part_start(uint64_t n, uint64_t q, uint64_t parts)
{
    return (uint64_t)((unsigned __int128)n * q / parts);
}

static int win_cmp(const void *a, const void *b)
{
    const ld_pwin *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->part < y->part ? -1 : x->part > y->part;
}

/* Cuts partition q (the rank's o-th) into windows of window_blocks blocks, appending them and
 * their blocks to p. order/off: the epoch's block order and each place's first stream offset. */
static void plan_partition(ld_plan *p, const uint64_t *order, const uint64_t *off, uint64_t nblocks, uint64_t total,
                           uint32_t o, uint64_t q)
{
    uint64_t a = part_start(total, q, p->cfg.parts), e = part_start(total, q + 1, p->cfg.parts);
    /* the first place whose block reaches past a */
    uint64_t lo = 0, hi = nblocks;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (off[mid + 1] > a)
            hi = mid;
        else
            lo = mid + 1;
    }
    uint64_t wb = p->cfg.window_blocks;
    for (uint64_t i = lo, index = 0; i < nblocks && off[i] < e; i += wb, index++) {
        uint64_t last = i + wb < nblocks ? i + wb : nblocks; /* one past */
        while (last > i + 1 && off[last - 1] >= e)
            last--;
        uint64_t s0 = off[i] > a ? off[i] : a, s1 = off[last] < e ? off[last] : e;
        uint64_t u = s0 - a;
        if (u >= p->keep)
            break;
        uint64_t kept_end = u + (s1 - s0) < p->keep ? u + (s1 - s0) : p->keep;
        ld_pwin *w = &p->win[p->nwindows++];
        *w = (ld_pwin){ .first_block = p->nblocks, .nblocks = (uint32_t)(last - i), .part = o, .q = q,
                        .s0 = s0, .n = s1 - s0, .u = u, .index = index,
                        .start = rank_pos(p, o, u), .end = rank_pos(p, o, kept_end - 1) + 1 };
        for (uint64_t k = i; k < last; k++) {
            p->blocks[p->nblocks] = order[k];
            p->boff[p->nblocks] = off[k];
            p->bcnt[p->nblocks++] = (uint32_t)(off[k + 1] - off[k]);
        }
    }
    /* rank_pad: a partition one short of keep repeats its first sample in the block order (at
     * stream offset a, in place lo) as its last index, from a window of that one block. */
    if (p->cfg.pad && e - a < p->keep) {
        uint64_t u = e - a;
        p->win[p->nwindows++] = (ld_pwin){ .first_block = p->nblocks, .nblocks = 1, .part = o, .q = q, .s0 = a,
                                           .n = 1, .u = u, .index = UINT64_MAX, .start = rank_pos(p, o, u),
                                           .end = rank_pos(p, o, u) + 1, .pad = true };
        p->blocks[p->nblocks] = order[lo];
        p->boff[p->nblocks] = off[lo];
        p->bcnt[p->nblocks++] = (uint32_t)(off[lo + 1] - off[lo]);
        p->padded++;
    }
}

uint64_t ld_plan_places(const ld_mix *m, const uint32_t *block_samples, uint64_t nblocks)
{
    if (!m)
        return nblocks;
    uint64_t places = 0;
    for (uint32_t d = 0; d < m->n; d++) {
        uint64_t have = 0;
        for (uint64_t b = m->first_block[d]; b < m->first_block[d + 1]; b++)
            have += block_samples[b];
        uint64_t passes = have ? (m->take[d] + have - 1) / have : 1;
        places += (passes ? passes : 1) * (m->first_block[d + 1] - m->first_block[d]);
    }
    return places;
}

/* Pass `pass` over blocks a .. e - 1 (one source, or the dataset) into v[a .. e - 1]: in order, or
 * permuted (shuffle) on the seed, the epoch, the source d and the pass; pass 0 is the epoch's
 * permutation, a mixture's later passes (a source taking more than it holds) others. */
static void block_pass(const ld_plan_cfg *cfg, uint64_t *v, uint64_t a, uint64_t e, uint32_t d, uint64_t pass)
{
    for (uint64_t i = a; i < e; i++)
        v[i] = i;
    if (!cfg->shuffle)
        return;
    sp_rng r;
    sp_rng_seed(&r, cfg->seed, cfg->epoch, 0x626c6f636b73ull /* "blocks" */, d + pass * LD_MIX_MAX);
    shuffle_u64(&r, v + a, e - a);
}

/* The epoch's stream of blocks: order[i] the i-th block, whose samples are stream offsets
 * off[i] .. off[i + 1] - 1 (its first off[i + 1] - off[i] rows). One dataset: every block, permuted
 * (unless shuffle is off). A mixture: each source's blocks permuted on their own, each taking its
 * first take[d] samples (the last block cut; past its end, another pass over its blocks in
 * another permutation), and the sources interleaved block by block, always the one furthest
 * behind its share next. *n: the places (at most ld_plan_places). */
static int order_blocks(const ld_plan_cfg *cfg, const uint32_t *block_samples, uint64_t nblocks, uint64_t *order,
                        uint64_t *off, uint64_t *n, char *why, size_t whylen)
{
    for (uint64_t i = 0; i < nblocks; i++)
        if (block_samples[i] == 0) /* the format has none */
            return snprintf(why, whylen, "a block of no samples cannot be planned"), SP_EINVAL;
    const ld_mix *m = cfg->mix;
    off[0] = 0;
    if (!m) {
        block_pass(cfg, order, 0, nblocks, 0, 0);
        for (uint64_t i = 0; i < nblocks; i++)
            off[i + 1] = off[i] + block_samples[order[i]];
        *n = nblocks;
        return SP_OK;
    }
    uint32_t nsrc = m->n;
    /* interleave: src holds each source's current pass, next[d] its next block there, pass[d]
     * which pass, got[d] its samples so far */
    uint64_t next[LD_MIX_MAX], pass[LD_MIX_MAX] = { 0 }, got[LD_MIX_MAX] = { 0 }, k = 0;
    uint64_t *src = sp_malloc((nblocks ? nblocks : 1) * sizeof *src);
    if (!src)
        return snprintf(why, whylen, "out of memory planning %llu blocks", (unsigned long long)nblocks), SP_ENOMEM;
    for (uint32_t d = 0; d < nsrc; d++) {
        block_pass(cfg, src, m->first_block[d], m->first_block[d + 1], d, 0);
        next[d] = m->first_block[d];
    }
    for (;;) {
        int best = -1;
        for (uint32_t d = 0; d < nsrc; d++) {
            if (got[d] >= m->take[d])
                continue;
            /* got / take, compared without division */
            if (best < 0 || (unsigned __int128)got[d] * m->take[best] < (unsigned __int128)got[best] * m->take[d])
                best = (int)d;
        }
        if (best < 0)
            break;
        if (next[best] == m->first_block[best + 1]) { /* the source again, in another permutation */
            block_pass(cfg, src, m->first_block[best], m->first_block[best + 1], (uint32_t)best, ++pass[best]);
            next[best] = m->first_block[best];
        }
        uint64_t b = src[next[best]++];
        uint64_t c = block_samples[b] < m->take[best] - got[best] ? block_samples[b] : m->take[best] - got[best];
        order[k] = b;
        off[k + 1] = off[k] + c;
        got[best] += c;
        k++;
    }
    sp_free(src);
    *n = k;
    return SP_OK;
}

int ld_plan_build(ld_plan *p, const ld_plan_cfg *cfg, const uint32_t *block_samples, uint64_t nblocks,
                  char *why, size_t whylen)
{
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    uint32_t parts = cfg->parts, world = cfg->world;
    if (world == 0 || cfg->rank >= world || cfg->batch == 0 || cfg->window_blocks == 0 || parts == 0 ||
        parts % world != 0)
        return snprintf(why, whylen, "rank %u / world size %u / %u partitions is not valid", cfg->rank, world,
                        parts), SP_EINVAL;
    uint32_t per = parts / world; /* partitions per rank */
    if (((uint64_t)cfg->batch * world) % parts != 0)
        return snprintf(why, whylen, "the global batch (batch_size %u x world size %u) is not a multiple of the "
                        "%u partitions", cfg->batch, world, parts), SP_EINVAL;
    uint64_t places = ld_plan_places(cfg->mix, block_samples, nblocks); /* a mixture may repeat blocks */
    uint64_t *order = sp_malloc((places ? places : 1) * sizeof *order);
    uint64_t *off = sp_malloc((places + 1) * sizeof *off);
    /* a rank's partitions share at most per - 1 blocks among them; rank_pad adds one each */
    uint64_t pads = cfg->pad ? per : 0;
    uint64_t per_blocks = places + per + pads;
    p->blocks = sp_malloc(per_blocks * sizeof *p->blocks);
    p->boff = sp_malloc(per_blocks * sizeof *p->boff);
    p->bcnt = sp_malloc(per_blocks * sizeof *p->bcnt);
    p->win = sp_malloc((places / cfg->window_blocks + 2 * (uint64_t)per + pads + 1) * sizeof *p->win);
    int rc = order && off && p->blocks && p->boff && p->bcnt && p->win ? SP_OK : SP_ENOMEM;
    if (rc == SP_OK)
        rc = order_blocks(cfg, block_samples, nblocks, order, off, &places, why, whylen);
    nblocks = places;
    uint64_t total = rc == SP_OK ? off[nblocks] : 0;
    if (rc == SP_OK && total < parts) {
        snprintf(why, whylen, "the dataset has %llu samples, fewer than the %u partitions (world size %u)",
                 (unsigned long long)total, parts, world);
        rc = SP_EINVAL;
    }
    if (rc == SP_OK) {
        /* Every partition keeps as many as the smallest holds (they differ by one at most):
         * at most parts - 1 samples go per epoch; with pad, as many as the largest, the others
         * repeating one sample each. */
        p->bp = (uint64_t)cfg->batch * world / parts;
        p->keep = cfg->pad ? (total + parts - 1) / parts : total / parts;
        if (cfg->drop_last)
            p->keep -= p->keep % p->bp;
        p->tail_j = p->keep % p->bp ? p->keep - p->keep % p->bp : UINT64_MAX;
        p->samples = p->keep * per;
        uint64_t own = 0;
        for (uint32_t o = 0; o < per; o++) {
            uint64_t q = (uint64_t)cfg->rank * per + o;
            own += part_start(total, q + 1, parts) - part_start(total, q, parts);
            plan_partition(p, order, off, nblocks, total, o, q);
        }
        p->dropped = own + p->padded - p->samples;
        p->nbatches = (p->samples + cfg->batch - 1) / cfg->batch;
        qsort(p->win, p->nwindows, sizeof *p->win, win_cmp);
    }
    sp_free(order);
    sp_free(off);
    if (rc) {
        ld_plan_free(p);
        if (rc == SP_ENOMEM)
            snprintf(why, whylen, "out of memory planning %llu blocks", (unsigned long long)nblocks);
    }
    return rc;
}

int ld_window_build(const ld_plan *p, const uint32_t *block_samples, uint64_t index, ld_window *w,
                    uint32_t cap, uint32_t *scratch)
{
    const ld_pwin *pw = &p->win[index];
    w->index = index;
    w->start = pw->start;
    w->first_block = pw->first_block;
    w->nblocks = pw->nblocks;
    uint32_t base = 0;
    for (uint32_t k = 0; k < w->nblocks; k++) {
        w->row_base[k] = base;
        base += block_samples[p->blocks[w->first_block + k]];
    }
    if (base > cap)
        return SP_ELIMIT;
    w->nrows = base;
    w->nsamples = (uint32_t)pw->n;
    w->pad = pw->pad;
    for (uint32_t r = 0; r < base; r++)
        w->pos[r] = LD_POS_NONE; /* rows of the partial end blocks that are another partition's */
    /* scratch[i] = the window sample placed at partition index u + i. */
    for (uint32_t i = 0; i < w->nsamples; i++)
        scratch[i] = i;
    if (p->cfg.shuffle) {
        sp_rng r;
        sp_rng_seed(&r, p->cfg.seed, p->cfg.epoch, (pw->q << 32) | p->cfg.parts, pw->index + 1);
        for (uint32_t i = w->nsamples; i > 1; i--) {
            uint32_t j = (uint32_t)sp_rng_below(&r, i);
            uint32_t t = scratch[i - 1];
            scratch[i - 1] = scratch[j];
            scratch[j] = t;
        }
    }
    /* window sample s (stream offset s0 + s) is row off - boff of the last block starting at or
     * before it */
    const uint64_t *boff = p->boff + w->first_block;
    for (uint32_t i = 0; i < w->nsamples && pw->u + i < p->keep; i++) {
        uint64_t at = pw->s0 + scratch[i];
        uint32_t lo = (uint32_t)sp_floor_index(boff, w->nblocks, at); /* the block holding at */
        w->pos[w->row_base[lo] + (at - boff[lo])] = (uint32_t)(rank_pos(p, pw->part, pw->u + i) - pw->start);
    }
    return SP_OK;
}

int ld_plan_ids(const ld_plan *p, const uint32_t *block_samples, const uint64_t *block_first, uint64_t *ids,
                uint64_t n)
{
    uint64_t rows = 0, nb = 0;
    for (uint64_t i = 0; i < p->nwindows; i++) {
        uint64_t r = 0;
        for (uint32_t k = 0; k < p->win[i].nblocks; k++)
            r += block_samples[p->blocks[p->win[i].first_block + k]];
        rows = r > rows ? r : rows;
        nb = p->win[i].nblocks > nb ? p->win[i].nblocks : nb;
    }
    if (rows > UINT32_MAX)
        return SP_ELIMIT;
    uint32_t *pos = sp_malloc((rows ? rows : 1) * sizeof *pos), *scratch = sp_malloc((rows ? rows : 1) * sizeof *scratch);
    uint32_t *row_base = sp_malloc((nb ? nb : 1) * sizeof *row_base);
    int rc = pos && scratch && row_base ? SP_OK : SP_ENOMEM;
    for (uint64_t i = 0; rc == SP_OK && i < p->nwindows; i++) {
        ld_window w = { .pos = pos, .row_base = row_base };
        rc = ld_window_build(p, block_samples, i, &w, (uint32_t)rows, scratch);
        for (uint32_t k = 0; rc == SP_OK && k < w.nblocks; k++) {
            uint32_t end = k + 1 < w.nblocks ? w.row_base[k + 1] : w.nrows;
            uint64_t first = block_first[p->blocks[w.first_block + k]];
            for (uint32_t r = w.row_base[k]; r < end; r++) {
                if (w.pos[r] == LD_POS_NONE || w.start + w.pos[r] >= n)
                    continue;
                ids[w.start + w.pos[r]] = (first + (r - w.row_base[k])) | (w.pad ? LD_ID_PAD : 0);
            }
        }
    }
    sp_free(pos);
    sp_free(scratch);
    sp_free(row_base);
    return rc;
}
