/* ld_cache.c - the loader's side of the remote cache (cache_dir, cache_size; lib/remote/rm_cache.c):
 * when each block read will be read next. The order is a pure function of seed, epoch and
 * partitions, so when the reader plans epoch e it also plans epoch e + 1 for every rank of this
 * node and notes each block's first read there; a read of block b in epoch e then tells the cache
 * "now" (its window's place in epoch e) and "next" (b's first place in epoch e + 1). Places are on
 * one clock for every rank of the job: epoch << 32 plus the fraction of the epoch's samples before
 * the window.
 *
 * Entries are written by the decode workers, never by the reader, which drives every transfer: a
 * worker verifies each block's checksum before it decodes it, and one that has verified a block
 * fetched for the cache writes its entry from the read ring (rm_cache_put, not hashed again) before
 * the block's region is given back. Until then the block is "held": the reader notes where its
 * bytes are, and a read of the same block meanwhile (the next epoch's first windows) copies them
 * instead of fetching them again, as it would have found the entry. Everything else here runs on
 * the reader thread, but open, close and the counters. */
#include <stdio.h>
#include <string.h>

#include "ld_internal.h"

struct ld_cache {
    char *dir;
    uint64_t size;
    rm_cache *rc;
    uint64_t *next[2]; /* per reader plan slot: block -> first place in the epoch after, or UINT64_MAX */
    uint32_t first_rank, ranks; /* the ranks of this node, whose reads share the cache */
    /* under mu: per block, its bytes in the read ring while a worker is to write its entry (NULL:
     * none), and the entry's next use, moved on by a read that copies them meanwhile */
    pthread_mutex_t mu;
    uint8_t **held;
    uint64_t *held_next;
};

int ld_cache_config(sp_loader *l, const sp_params *p)
{
    const char *dir = sp_params_get_str(p, SP_PARAM_CACHE_DIR);
    bool has_dir = dir && dir[0], has_size = sp_params_get(p, SP_PARAM_CACHE_SIZE) > 0;
    /* half a cache would be no cache, without a word */
    if (has_dir && !has_size)
        return sp_fail(&l->eb, SP_EINVAL, "cache_dir %s is set but cache_size is not: give both (cache_size: the most "
                       "bytes the directory may hold)", dir);
    if (has_size && !has_dir)
        return sp_fail(&l->eb, SP_EINVAL, "cache_size is set but cache_dir is not: give both (cache_dir: the local "
                       "directory for the blocks)");
    if (!has_dir || !ld_any_remote(l)) /* no cache, or nothing remote to keep */
        return SP_OK;
    ld_cache *c = sp_calloc(1, sizeof *c);
    if (!c || !(c->dir = sp_strdup(dir))) {
        sp_free(c);
        return sp_fail(&l->eb, SP_ENOMEM, "out of memory setting up cache_dir");
    }
    c->size = (uint64_t)sp_params_get(p, SP_PARAM_CACHE_SIZE);
    pthread_mutex_init(&c->mu, NULL);
    c->first_rank = l->cfg.rank;
    c->ranks = 1;
    int lr = l->stats.s.local_rank;
    uint32_t lw = l->cfg.local_world;
    if (lr >= 0 && (uint32_t)lr <= l->cfg.rank && lw > 1) { /* a launcher numbers a node's ranks together */
        c->first_rank = l->cfg.rank - (uint32_t)lr;
        c->ranks = c->first_rank + lw <= l->cfg.world ? lw : l->cfg.world - c->first_rank;
    }
    l->cache = c;
    return SP_OK;
}

uint64_t ld_cache_bytes(const sp_loader *l, uint64_t plan)
{
    const ld_cache *c = l->cache;
    if (!c)
        return 0;
    /* the index the cache maps: an entry per block it can hold, with room to double (a lazy open
     * knows no block's size yet: then as many as it has blocks, doubled) */
    uint64_t smallest = UINT64_MAX;
    for (uint64_t b = 0; b < l->tab.nblocks; b++)
        if (l->tab.block_entry[b] && l->tab.block_entry[b]->stored_size < smallest)
            smallest = l->tab.block_entry[b]->stored_size;
    uint64_t entries = c->size / (64 + (smallest == UINT64_MAX ? 0 : smallest)) + 64;
    if (entries > 2 * l->tab.nblocks + 64)
        entries = 2 * l->tab.nblocks + 64;
    return 2 * l->tab.nblocks * sizeof(uint64_t) + 2 * l->tab.nblocks * sizeof(void *) + plan + 2 * entries * 32;
}

int ld_cache_open(sp_loader *l)
{
    ld_cache *c = l->cache;
    if (!c || !l->rdr.rf)
        return SP_OK;
    for (int i = 0; i < 2; i++)
        if (!(c->next[i] = sp_malloc(l->tab.nblocks * sizeof(uint64_t) + 1)))
            return sp_fail(&l->eb, SP_ENOMEM, "out of memory for the cache's next uses");
    c->held = sp_calloc(l->tab.nblocks + 1, sizeof *c->held);
    c->held_next = sp_calloc(l->tab.nblocks + 1, sizeof *c->held_next);
    if (!c->held || !c->held_next)
        return sp_fail(&l->eb, SP_ENOMEM, "out of memory for the cache's held blocks");
    int rc = rm_cache_open(c->dir, c->size, &c->rc, &l->eb);
    if (rc)
        return rc;
    rm_fetch_set_cache(l->rdr.rf, c->rc);
    size_t n = strlen(l->stats.s.io_note);
    snprintf(l->stats.s.io_note + n, sizeof l->stats.s.io_note - n, "; cache %s", c->dir);
    return SP_OK;
}

void ld_cache_close(sp_loader *l)
{
    ld_cache *c = l->cache;
    if (!c)
        return;
    rm_cache_close(c->rc);
    sp_free(c->next[0]);
    sp_free(c->next[1]);
    sp_free(c->held);
    sp_free(c->held_next);
    pthread_mutex_destroy(&c->mu);
    sp_free(c->dir);
    sp_free(c);
    l->cache = NULL;
}

static uint64_t place(uint64_t epoch, uint64_t start, uint64_t samples)
{
    uint64_t frac = samples && start < samples ? (uint64_t)(((unsigned __int128)start << 32) / samples) : 0xffffffffu;
    return epoch << 32 | frac;
}

void ld_cache_plan(sp_loader *l, uint32_t pi, uint64_t epoch)
{
    ld_cache *c = l->cache;
    if (!c || !c->rc)
        return;
    uint64_t *next = c->next[pi];
    for (uint64_t b = 0; b < l->tab.nblocks; b++)
        next[b] = UINT64_MAX;
    if (l->cfg.epochs && epoch + 1 >= l->cfg.epochs)
        return; /* the run ends: nothing is read again by it */
    for (uint32_t r = c->first_rank; r < c->first_rank + c->ranks; r++) {
        ld_plan p = { 0 };
        char why[SP_ERRMSG_MAX];
        if (ld_rank_plan(l, epoch + 1, r, &p, why, sizeof why) != SP_OK)
            continue; /* out of memory: those blocks only look further off */
        for (uint64_t w = 0; w < p.nwindows; w++) {
            uint64_t t = place(epoch + 1, p.win[w].start, p.samples);
            for (uint32_t k = 0; k < p.win[w].nblocks; k++) {
                uint64_t b = p.blocks[p.win[w].first_block + k];
                if (t < next[b])
                    next[b] = t;
            }
        }
        ld_plan_free(&p);
    }
}

bool ld_cache_copy(sp_loader *l, uint64_t block, uint32_t pi, uint64_t start, uint8_t *buf)
{
    ld_cache *c = l->cache;
    if (!c || !c->rc)
        return false;
    const ld_plan *p = &l->rdr.rplan[pi];
    rm_use u = { .sum = l->tab.block_entry[block]->checksum,
                 .now = place(p->cfg.epoch, start, p->samples),
                 .next = c->next[pi][block] };
    pthread_mutex_lock(&c->mu);
    uint8_t *src = c->held[block];
    bool copied = src && src != buf;
    if (copied) {
        /* valid while held: its worker lets it go before it gives the region back */
        memcpy(buf, src, l->tab.block_entry[block]->stored_size);
        c->held_next[block] = u.next; /* the entry's next use is now after this read */
    }
    pthread_mutex_unlock(&c->mu);
    if (!copied)
        rm_fetch_use(l->rdr.rf, &u);
    return copied;
}

void ld_cache_hold(sp_loader *l, ld_job *j)
{
    ld_cache *c = l->cache;
    rm_use u;
    j->keep = false;
    if (!c || !c->rc || !rm_fetch_reaped_use(l->rdr.rf, &u) || l->tab.block_entry[j->block]->stored_size >= c->size)
        return; /* (a block larger than the cache is never kept) */
    pthread_mutex_lock(&c->mu);
    if (!c->held[j->block]) { /* else another copy is to be written already */
        c->held[j->block] = j->buf;
        c->held_next[j->block] = u.next;
        j->keep = true;
        j->keep_now = u.now;
    }
    pthread_mutex_unlock(&c->mu);
}

void ld_cache_release(sp_loader *l, uint64_t block)
{
    ld_cache *c = l->cache;
    pthread_mutex_lock(&c->mu);
    c->held[block] = NULL;
    pthread_mutex_unlock(&c->mu);
}

void ld_cache_keep(sp_loader *l, const ld_job *j, bool ok, unsigned track)
{
    ld_cache *c = l->cache;
    if (!j->keep)
        return;
    const fmt_block_entry *be = l->tab.block_entry[j->block];
    if (ok) { /* the worker has compared the bytes with be->checksum: they are not hashed again */
        pthread_mutex_lock(&c->mu);
        rm_use u = { .sum = be->checksum, .now = j->keep_now, .next = c->held_next[j->block] };
        pthread_mutex_unlock(&c->mu);
        uint64_t local, first;
        sp_dataset *ds = ld_shard_source(l, l->tab.block_shard[j->block], &local, &first); /* a mixture's source */
        uint64_t t0 = sp_trace_begin(l->trace, SPT_CACHE_WRITE);
        rm_cache_put(c->rc, ds_shard_obj(ds, local), be->offset, be->stored_size, j->buf, &u, true);
        sp_trace_end(l->trace, track, SPT_CACHE_WRITE, t0, j->block);
    }
    ld_cache_release(l, j->block);
}

void ld_cache_reset(sp_loader *l)
{
    ld_cache *c = l->cache;
    if (c && c->held)
        memset(c->held, 0, l->tab.nblocks * sizeof *c->held);
}

void ld_cache_stats(const sp_loader *l, sp_loader_stats *st)
{
    if (l->rdr.rf) {
        pthread_mutex_lock((pthread_mutex_t *)&l->ring.mu);
        uint64_t tails = l->rdr.tail_bytes; /* a lazy open's shard indexes: not block bytes */
        pthread_mutex_unlock((pthread_mutex_t *)&l->ring.mu);
        st->remote_bytes = rm_fetch_bytes(l->rdr.rf) - tails;
        st->remote_gets = rm_fetch_gets(l->rdr.rf);
        st->remote_transfers = rm_fetch_transfers(l->rdr.rf);
    }
    if (!l->cache || !l->cache->rc)
        return;
    rm_cache_stats s;
    rm_cache_counters(l->cache->rc, &s);
    st->cache_hits = s.hits;
    st->cache_misses = s.misses;
    st->cache_hit_bytes = s.hit_bytes;
    st->cache_admitted = s.admitted;
    st->cache_evictions = s.evictions;
    st->cache_discarded = s.discarded;
    st->cache_bytes = s.bytes;
    st->cache_size = l->cache->size;
}
