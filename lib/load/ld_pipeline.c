/* ld_pipeline.c - the loader's threads: one reader that plans windows, claims batch slots and
 * reads whole compressed blocks into the read ring, and N workers that verify, decompress and
 * scatter each sample into its row. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ld_internal.h"
#include "ld_rows.h"

/* ---------------------------------------------------------------- descriptors (reader only) */

/* A block fetched ahead: its GET out, arrived, failed (read again in its window, so that the
 * failure is reported as any read's), or a mixture's local block whose ring region is taken in the
 * plan's order and read in its window (its index read already, or to be read then after a failure). */
enum { AHEAD_INFLIGHT, AHEAD_ARRIVED, AHEAD_FAILED, AHEAD_RESERVED };
#define LD_WIN_AHEAD UINT32_MAX        /* ld_job.win of a read fetched ahead, not yet in a window */
#define LD_WIN_DROP (UINT32_MAX - 1u)  /* ... of one whose block its window turned out not to need */

/* Block reads in flight at once: a mixture's remote ones (rm_fetch's depth) and local ones (ld_io's)
 * together, each with its own tag; a lazy dataset's index reads are tagged from LD_READS on. */
#define LD_READS (LD_RM_DEPTH + LD_IO_DEPTH)

typedef struct ld_reader {
    ld_job inflight[LD_READS]; /* by tag; a local dataset uses the first LD_IO_DEPTH */
    uint64_t submitted[LD_READS]; /* trace clock at each read's submission */
    double wait_s;
    /* a lazy remote dataset: how far ahead shard indexes are requested (window, block in it, of
     * the plan la_plan), and the shard whose index the reader waits for with its fetch's failure */
    const ld_plan *la_plan; /* a plan slot, holding epoch la_epoch */
    uint64_t la_epoch, la_w;
    uint32_t la_k;
    uint64_t await;
    int await_rc;
    char await_why[SP_ERRMSG_MAX];
    /* a remote dataset: blocks fetched ahead of their windows, in the order read_window takes them
     * (a FIFO of a_n entries from a_head), and where fetching ahead goes on (window fa_w of plan
     * slot fa_pi, its block fa_k); fa_plan NULL until the first window */
    ld_ahead ahead[LD_AHEAD_MAX];
    uint32_t a_head, a_n;
    const ld_plan *fa_plan;
    uint32_t fa_pi, fa_k;
    uint64_t fa_w;
    /* the epoch read_epochs reads now (cur_e, UINT64_MAX before the first; cur_base its global
     * batch 0), and the next one when fetching ahead planned it early (early_e, UINT64_MAX if not;
     * early_rc its planning's result) */
    uint64_t cur_e, cur_base, early_e;
    int early_rc;
} ld_reader;

/* Reads queued or in flight, on both paths the loader reads (a mixture of local and remote sources
 * has both); whether the remote path (remote) or the local one has no room for another. */
static unsigned io_inflight(const sp_loader *l)
{
    return (l->rdr.rf ? rm_fetch_pending(l->rdr.rf) : 0) + (l->rdr.io ? ld_io_inflight(l->rdr.io) : 0);
}
static bool io_full(const sp_loader *l, bool remote)
{
    return remote ? rm_fetch_pending(l->rdr.rf) >= rm_fetch_depth(l->rdr.rf)
                  : ld_io_inflight(l->rdr.io) >= ld_io_depth(l->rdr.io);
}
/* Whether global block b lives on a server (its read goes through rm_fetch). */
static bool block_remote(const sp_loader *l, uint64_t b) { return ld_shard_site(l, l->tab.block_shard[b]) != NULL; }

/* Whether a read in flight uses shard's descriptor: pread mode reads only when the request is
 * reaped, and io_uring resubmits a short read on the same descriptor number. */
static bool fd_busy(const sp_loader *l, const ld_reader *rd, uint64_t shard)
{
    for (unsigned t = 0; t < LD_READS; t++) /* a mixture's remote reads share the tags */
        if (rd->inflight[t].buf && l->tab.block_shard[rd->inflight[t].block] == shard)
            return true;
    return false;
}

/* Closes the least recently used descriptor no read in flight uses; false when there is none. */
static bool fd_evict_one(sp_loader *l, const ld_reader *rd)
{
    uint64_t best = UINT64_MAX;
    uint64_t victim = UINT64_MAX;
    for (uint64_t i = 0; i < l->tab.nshards; i++)
        if (l->rdr.fd[i] >= 0 && l->rdr.fd_tick[i] < best && !fd_busy(l, rd, i))
            best = l->rdr.fd_tick[i], victim = i;
    if (victim == UINT64_MAX)
        return false;
    close(l->rdr.fd[victim]);
    l->rdr.fd[victim] = -1;
    l->rdr.fds_open--;
    return true;
}

/* Whether ld_pipeline_stop has asked the threads to end (it sets ring.stop under mu). */
static bool reader_stopping(sp_loader *l)
{
    pthread_mutex_lock(&l->ring.mu);
    bool stop = l->ring.stop;
    pthread_mutex_unlock(&l->ring.mu);
    return stop;
}

/* Stops using O_DIRECT for the rest of the loader's life, saying why in the stats. */
static void direct_off(sp_loader *l, const char *why)
{
    pthread_mutex_lock(&l->ring.mu);
    l->rdr.direct = false;
    l->stats.s.direct_io = 0;
    snprintf(l->stats.s.io_note, sizeof l->stats.s.io_note, "%s; buffered reads", why);
    pthread_mutex_unlock(&l->ring.mu);
}

/* sp_open_regular, closing idle cached descriptors while the process is out of them. */
static int open_evicting(sp_loader *l, const ld_reader *rd, const char *path, int flags, struct stat *st)
{
    int fd;
    while (sp_out_of_fds(fd = sp_open_regular(path, flags, st)) && fd_evict_one(l, rd))
        ;
    return fd;
}

/* fd, opened with O_DIRECT or not, becomes shard's cached descriptor. */
static void fd_keep(sp_loader *l, uint32_t shard, int fd, bool direct)
{
    l->rdr.fd[shard] = fd;
    l->rdr.fd_direct[shard] = direct;
    l->rdr.fd_tick[shard] = ++l->rdr.tick;
    l->rdr.fds_open++;
}

/* The shard's descriptor, O_DIRECT when allowed, checked to be the file the loader opened; about
 * sp_fd_budget() stay open. A negative code with e->why on failure; *starved when the process is
 * out of descriptors and every cached one is in use by a read in flight. */
static int shard_fd(sp_loader *l, const ld_reader *rd, uint32_t shard, bool direct, fmt_err *e, bool *starved)
{
    const fmt_shard_mark *mk = &l->tab.marks[shard];
    const char *path = ld_shard_path(l, shard);
    *starved = false;
    /* O_DIRECT needs page-aligned offsets and lengths; shards with a smaller alignment are read
     * through the page cache, and their last block is never read past its stored size. */
    if (mk->h.align % LD_PAGE)
        direct = false;
    if (l->rdr.fd[shard] >= 0 && l->rdr.fd_direct[shard] == direct) {
        l->rdr.fd_tick[shard] = ++l->rdr.tick;
        return l->rdr.fd[shard];
    }
    if (l->rdr.fd[shard] >= 0) {
        close(l->rdr.fd[shard]);
        l->rdr.fd[shard] = -1;
        l->rdr.fds_open--;
    }
    /* A soft bound: while every cached descriptor serves a read in flight, one more is opened. */
    if (l->rdr.fds_open >= sp_fd_budget(LD_MIN_FDS, LD_MAX_FDS))
        fd_evict_one(l, rd);
    struct stat st;
    int fd = open_evicting(l, rd, path, direct ? O_DIRECT : 0, &st);
    if (direct && fd < 0) {
        bool short_of_fds = sp_out_of_fds(fd);
        fd = open_evicting(l, rd, path, 0, &st);
        if (fd >= 0 && !short_of_fds)
            direct_off(l, "O_DIRECT refused at open by the file system");
        direct = false;
    }
    if (fd < 0) {
        *starved = sp_out_of_fds(fd);
        return fmt_errf(e, sp_open_code(fd), 0, "cannot reopen: %s", sp_open_why(fd, &st));
    }
    int rc = fmt_mark_check_file(mk, fd, &st, e);
    if (rc) {
        close(fd);
        return rc;
    }
    fd_keep(l, shard, fd, direct);
    return fd;
}

/* ---------------------------------------------------------------- errors */

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Sleeps ns nanoseconds, signals notwithstanding (the simulated costs, sim_sample_us and sim_read_us). */
static void sleep_ns(uint64_t ns)
{
    struct timespec t = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* src into dst[cap], cut short when longer. */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src) < cap - 1 ? strlen(src) : cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Records a failure that makes batch k and every later one fail, if it is the earliest so far. */
static void fail_batch_locked(sp_loader *l, uint64_t k, int code, const char *msg)
{
    if (k < l->fail.batch) {
        l->fail.batch = k;
        l->fail.code = code;
        copy_cut(l->fail.msg, sizeof l->fail.msg, msg);
        pthread_cond_broadcast(&l->ring.c_consumer);
    }
}

/* Keeps where and why the slot's lowest bad row went bad (o NULL: its whole block), for the
 * message of a batch with no good row to fill the bad ones from: the lowest row, so the message
 * does not depend on thread timing. Called with mu held. */
static void note_row_locked(ld_slot *s, uint32_t row, uint64_t block, uint32_t r, const ld_out *o, const char *why)
{
    if (row < s->note_row) {
        s->note_row = row;
        s->note_block = block;
        s->note_r = r;
        s->note_out = o;
        copy_cut(s->note_why, sizeof s->note_why, why);
    }
}

/* Keeps msg (truncated) as the stats' latest bad block or image. Called with mu held. */
static void note_bad(sp_loader *l, const char *msg) { copy_cut(l->stats.s.bad_note, sizeof l->stats.s.bad_note, msg); }

/* ---------------------------------------------------------------- batch completion */

static void copy_row(const sp_loader *l, ld_slot *to, uint32_t dst, const ld_slot *from, uint32_t src)
{
    for (size_t f = 0; f < l->lay.nout; f++) {
        const ld_out *o = &l->lay.out[f];
        memcpy(to->mem + o->offset + dst * o->row_bytes, from->mem + o->offset + src * o->row_bytes, o->row_bytes);
    }
}

/* Rows of skipped corrupt samples take a copy of the next good row of the same batch: the choice
 * depends only on which rows are bad, so it is as deterministic as the rest of the batch. */
static bool fill_bad_rows(sp_loader *l, ld_slot *s)
{
    uint32_t n = s->rows_expected;
    for (uint32_t i = 0; i < n; i++) {
        if (!s->bad[i])
            continue;
        uint32_t j = (i + 1) % n;
        while (j != i && s->bad[j])
            j = (j + 1) % n;
        if (j == i)
            return false;
        copy_row(l, s, i, s, j);
    }
    return true;
}

const char *ld_shard_path(const sp_loader *l, uint64_t i)
{
    if (l->tab.shards[i])
        return l->tab.shards[i]->path;
    uint64_t local, base;
    const sp_dataset *ds = ld_shard_source(l, i, &local, &base);
    return ds_shard_path(ds, local);
}

/* Global block's number within its shard. */
static uint64_t block_in_shard(const sp_loader *l, uint64_t block)
{
    uint64_t first, n, local, base;
    const fmt_shard *sh = l->tab.shards[l->tab.block_shard[block]];
    if (sh)
        return (uint64_t)(l->tab.block_entry[block] - sh->index.blocks);
    const sp_dataset *ds = ld_shard_source(l, l->tab.block_shard[block], &local, &base);
    ds_shard_blocks(ds, local, &first, &n);
    return block - base - first;
}

/* "SHARD: block B, sample S (row r of the block): FIELD: why", for a sample whose value for output
 * o cannot be delivered. */
static void row_message(const sp_loader *l, uint64_t block, uint32_t r, const ld_out *o, const char *why, char *msg,
                        size_t len)
{
    snprintf(msg, len, "%s: block %llu, sample %llu (row %u of the block): %s: %s",
             ld_shard_path(l, l->tab.block_shard[block]), (unsigned long long)block_in_shard(l, block),
             (unsigned long long)(l->tab.block_first[block] + r), r,
             o->convert == CONVERT_IMAGE ? "image" : l->tab.schema->f[o->field].name, why);
}

/* "SHARD: block B at byte O (samples F..L): why", for a block that cannot be used; without "at
 * byte O" for a block of a lazy remote dataset whose shard index could not be read. */
static void block_message(const sp_loader *l, uint64_t block, const char *why, char *msg, size_t len)
{
    const fmt_block_entry *be = l->tab.block_entry[block];
    const char *path = ld_shard_path(l, l->tab.block_shard[block]);
    if (!be) {
        snprintf(msg, len, "%s: block %llu (samples %llu..%llu): %s", path, (unsigned long long)block_in_shard(l, block),
                 (unsigned long long)l->tab.block_first[block],
                 (unsigned long long)(l->tab.block_first[block] + l->tab.block_samples[block] - 1), why);
        return;
    }
    snprintf(msg, len, "%s: block %llu at byte %llu (samples %llu..%llu): %s", path,
             (unsigned long long)block_in_shard(l, block), (unsigned long long)be->offset,
             (unsigned long long)l->tab.block_first[block],
             (unsigned long long)(l->tab.block_first[block] + l->tab.block_samples[block] - 1), why);
}

static void rows_done(sp_loader *l, ld_slot *s, unsigned n, unsigned track)
{
    /* rows_expected is read before this job's rows are counted: until then the batch cannot be
     * complete, so the slot cannot be handed out, released and claimed for another batch (with
     * another rows_expected) under a worker that has counted its rows but not yet compared. */
    unsigned expected = s->rows_expected;
    unsigned before = atomic_fetch_add_explicit(&s->rows_done, n, memory_order_acq_rel);
    if (before + n != expected)
        return;
    uint64_t t0 = sp_trace_begin(l->trace, SPT_BATCH_DONE);
    bool any_bad = false;
    for (uint32_t i = 0; i < s->rows_expected && !any_bad; i++)
        any_bad = s->bad[i];
    bool ok = !any_bad || fill_bad_rows(l, s);
    uint64_t index = s->b.index; /* once ready, the slot may be taken, released and claimed again */
    pthread_mutex_lock(&l->ring.mu);
    if (ok) {
        s->state = SLOT_READY;
        l->stats.s.batches_ready++;
        /* Only the batch the consumer is waiting for wakes it: batches of a window complete in
         * bursts, and waking it for each would cost a system call per batch. */
        if (l->ring.waiting_for == s->k)
            pthread_cond_signal(&l->ring.c_consumer);
        if (l->trace)
            ld_trace_counters_locked(l);
    } else {
        char why[SP_ERRMSG_MAX], msg[SP_ERRMSG_MAX + 512]; /* cut to SP_ERRMSG_MAX when recorded */
        if (s->note_out)
            row_message(l, s->note_block, s->note_r, s->note_out, s->note_why, why, sizeof why);
        else
            block_message(l, s->note_block, s->note_why, why, sizeof why);
        snprintf(msg, sizeof msg,
                 "%s: epoch %llu, batch %llu: every sample in it is bad, so on_error=skip has no good row to fill it "
                 "with; the first (row %u): %s",
                 l->name, (unsigned long long)s->b.epoch, (unsigned long long)s->b.index, s->note_row, why);
        fail_batch_locked(l, s->k, SP_ECORRUPT, msg);
    }
    pthread_mutex_unlock(&l->ring.mu);
    sp_trace_end(l->trace, track, SPT_BATCH_DONE, t0, index);
}

/* ---------------------------------------------------------------- trace counters */

void ld_trace_counters_locked(sp_loader *l)
{
    sp_trace_count(l->trace, SPC_SLOTS, (int64_t)l->ring.slots_in_use);
    sp_trace_count(l->trace, SPC_READY, (int64_t)l->stats.s.batches_ready);
    sp_trace_count(l->trace, SPC_INFLIGHT, (int64_t)l->ring.active);
    /* what holds data now: the read ring's regions in use, the batch slots not free, and the
     * workers' buffers (reserved while the loader is open) */
    uint64_t host = l->ring.ring_head - l->ring.ring_tail + l->ring.slots_in_use * l->lay.batch_bytes +
                    l->stats.s.scratch_bytes;
    sp_trace_count(l->trace, SPC_HOST_BYTES, (int64_t)host);
}

/* ---------------------------------------------------------------- decode workers */

typedef struct ld_worker {
    sp_loader *l;
    int id;
} ld_worker;

/* A sample whose value for output o cannot be delivered (an image that could not be decoded, a
 * token that does not fit int32): its batch fails, or (on_error=skip) its row is marked for filling.
 * Returns true: the row is bad either way. */
static bool row_failed(sp_loader *l, const ld_job *j, uint32_t r, uint64_t g, ld_slot *s, uint32_t row,
                       const ld_out *o, int code, const char *why)
{
    bool image = o->convert == CONVERT_IMAGE;
    char msg[SP_ERRMSG_MAX + 512];
    row_message(l, j->block, r, o, why, msg, sizeof msg);
    pthread_mutex_lock(&l->ring.mu);
    if (image)
        l->stats.s.images_bad++;
    note_bad(l, msg);
    note_row_locked(s, row, j->block, r, o, why);
    if (l->cfg.on_error == SP_ON_ERROR_SKIP)
        l->stats.s.samples_skipped++;
    else
        fail_batch_locked(l, g, code, msg);
    pthread_mutex_unlock(&l->ring.mu);
    s->bad[row] = 1; /* under fail the row is never published: its batch cannot complete */
    return true;
}

/* The work of a decode worker on one row: row r of decoded block v, sample `sample`, written
 * into every batch tensor at row `row` of the slot rows at mem. Returns SP_OK, or the code of the
 * first field that cannot be delivered (an image that cannot be decoded, a token that does not fit
 * int32), with *field its output and why the reason. *images counts the images decoded. */
static int fill_row(const sp_loader *l, int id, const fmt_block_view *v, uint32_t r, uint64_t epoch, uint64_t sample,
                    uint8_t *mem, uint32_t row, uint64_t *images, size_t *field, char *why, size_t whylen)
{
    if (l->cfg.sim_sample_ns)
        sleep_ns(l->cfg.sim_sample_ns);
    for (size_t f = 0; f < l->lay.nout; f++) {
        const ld_out *o = &l->lay.out[f];
        const uint8_t *src;
        size_t size;
        fmt_block_get(v, r, o->field, &src, &size);
        uint8_t *dst = mem + o->offset + row * o->row_bytes;
        int rc = SP_OK;
        if (o->convert == CONVERT_IMAGE) {
            rc = SP_ELIMIT;
            if (size > l->cfg.max_sample) /* checked before libjpeg sees a byte of it */
                snprintf(why, whylen, "%zu bytes is more than max_sample_bytes %llu", size,
                         (unsigned long long)l->cfg.max_sample);
            else {
                uint64_t t0 = sp_trace_begin(l->trace, SPT_IMAGE);
                rc = img_process(l->pool.imgc[id], src, size, epoch, sample, dst, NULL, why, whylen);
                sp_trace_end(l->trace, LD_TRACK_WORKER + (unsigned)id, SPT_IMAGE, t0, sample);
            }
            *images += rc == SP_OK;
        } else if (o->convert == CONVERT_COPY) {
            ld_row_copy(dst, src, o->row_bytes);
        } else if (o->convert == CONVERT_U16_I32) {
            ld_row_widen16(dst, src, o->row_bytes / 4);
        } else if (!ld_row_widen32(dst, src, o->row_bytes / 4)) {
            size_t at = ld_row_first_big32(src, o->row_bytes / 4);
            snprintf(why, whylen, "token %u (position %zu) does not fit int32 (token_dtype=int32)",
                     sp_ld32(src + 4 * at), at);
            rc = SP_ERANGE;
        }
        if (rc) {
            *field = f;
            return rc;
        }
    }
    return SP_OK;
}

/* Writes samples [r0, r1) of a decoded block into their rows; rows outside this rank's kept range
 * or before the resume point are not part of any batch. */
static void scatter(sp_loader *l, const ld_job *j, const fmt_block_view *v, int id, uint32_t r0, uint32_t r1)
{
    const ld_window *w = &l->rdr.win[j->win];
    uint32_t pi = l->rdr.win_plan[j->win];
    uint64_t lo = l->rdr.rlo[pi], hi = l->rdr.rplan[pi].samples, gbase = l->rdr.rbase[pi];
    uint32_t base = w->row_base[j->kblock];
    /* Rows are counted per batch here and published once per block: a locked add after every
     * row would wait each time for the row's stores to drain. The window's batches are a range
     * of at most bpw batches starting at gfirst. */
    uint64_t gfirst = gbase + (w->start > lo ? w->start : lo) / l->cfg.batch, glast = gfirst;
    uint32_t *count = l->pool.row_counts[id];
    memset(count, 0, l->pool.bpw * sizeof *count);
    uint64_t epoch = l->rdr.rplan[pi].cfg.epoch, images = 0;
    for (uint32_t r = r0; r < r1; r++) {
        if (w->pos[base + r] == LD_POS_NONE)
            continue;
        uint64_t p = w->start + w->pos[base + r];
        if (p < lo || p >= hi)
            continue;
        uint64_t g = gbase + p / l->cfg.batch;
        uint32_t row = (uint32_t)(p % l->cfg.batch);
        ld_slot *s = ld_slot_of(l, g);
        uint64_t sample = l->tab.block_first[j->block] + r;
        char why[SP_ERRMSG_MAX];
        size_t f;
        int rc = fill_row(l, id, v, r, epoch, sample, s->mem, row, &images, &f, why, sizeof why);
        bool bad = rc != SP_OK && row_failed(l, j, r, g, s, row, &l->lay.out[f], rc, why);
        s->b.ids[row] = bad ? UINT64_MAX : w->pad ? sample | LD_ID_PAD : sample;
        assert(g - gfirst < l->pool.bpw);
        if (bad && l->cfg.on_error != SP_ON_ERROR_SKIP)
            continue; /* the batch has failed; like a failed block's, its rows are not counted */
        count[g - gfirst]++;
        glast = g > glast ? g : glast;
    }
    if (images) {
        pthread_mutex_lock(&l->ring.mu);
        l->stats.s.images_decoded += images;
        pthread_mutex_unlock(&l->ring.mu);
    }
    ld_rows_fence();
    for (uint64_t g = gfirst; g <= glast; g++)
        if (count[g - gfirst])
            rows_done(l, ld_slot_of(l, g), count[g - gfirst], LD_TRACK_WORKER + (unsigned)id);
}

/* A block that cannot be used: fail its batches, or (on_error=skip) mark its rows for filling. */
static void block_failed(sp_loader *l, const ld_job *j, int code, const char *why, unsigned track)
{
    const ld_window *w = &l->rdr.win[j->win];
    uint32_t pi = l->rdr.win_plan[j->win];
    uint64_t lo = l->rdr.rlo[pi], hi = l->rdr.rplan[pi].samples, gbase = l->rdr.rbase[pi];
    uint32_t base = w->row_base[j->kblock], n = l->tab.block_samples[j->block];
    char msg[SP_ERRMSG_MAX + 512];
    block_message(l, j->block, why, msg, sizeof msg);
    uint64_t first = UINT64_MAX, skipped = 0;
    for (uint32_t r = 0; r < n; r++) {
        uint64_t p = w->start + w->pos[base + r];
        if (w->pos[base + r] != LD_POS_NONE && p >= lo && p < hi) {
            first = min_u64(first, gbase + p / l->cfg.batch);
            skipped++;
        }
    }
    /* Counted (or failed) before any row is published, so a consumer that sees the batches sees
     * the statistics that explain them. */
    pthread_mutex_lock(&l->ring.mu);
    note_bad(l, msg);
    if (l->cfg.on_error == SP_ON_ERROR_SKIP) {
        l->stats.s.blocks_skipped++;
        l->stats.s.samples_skipped += skipped;
    } else if (first != UINT64_MAX) {
        fail_batch_locked(l, first, code, msg);
    }
    pthread_mutex_unlock(&l->ring.mu);
    for (uint32_t r = 0; l->cfg.on_error == SP_ON_ERROR_SKIP && r < n; r++) {
        uint64_t p = w->start + w->pos[base + r];
        if (w->pos[base + r] == LD_POS_NONE || p < lo || p >= hi)
            continue;
        ld_slot *s = ld_slot_of(l, gbase + p / l->cfg.batch);
        uint32_t row = (uint32_t)(p % l->cfg.batch);
        pthread_mutex_lock(&l->ring.mu);
        note_row_locked(s, row, j->block, r, NULL, why);
        pthread_mutex_unlock(&l->ring.mu);
        s->bad[row] = 1;
        s->b.ids[row] = UINT64_MAX;
        rows_done(l, s, 1, track);
    }
}

/* Verifies and decompresses j's block (into scratch, when it is compressed) and parses it into v, with
 * worker id's zstd context. */
static int job_decode(sp_loader *l, const ld_job *j, int id, uint8_t *scratch, fmt_block_view *v, char *why,
                      size_t whylen)
{
    const fmt_block_entry *be = l->tab.block_entry[j->block];
    fmt_err e = { .block = -1 };
    int rc;
    if (j->result < 0) {
        rc = fmt_errf(&e, j->result == -ENODATA ? SP_ETRUNC : SP_EIO, be->offset, "read failed: %s",
                      j->result == -ENODATA ? "the file is shorter than its index says" : strerror((int)-j->result));
    } else {
        /* A stored block is used where it was read; only zstd blocks need the worker's buffer. */
        uint8_t *raw = be->codec == SP_CODEC_STORED ? j->buf : scratch;
        rc = fmt_block_decode(be, j->buf, raw, l->pool.dctx[id], &e);
        if (rc == SP_OK)
            rc = fmt_block_parse(l->tab.schema, raw, be->raw_size, be->nsamples, v, &e);
    }
    /* Damage in a file that is no longer the one the loader opened is a replaced dataset. */
    if (rc)
        rc = fmt_mark_recheck(ld_shard_path(l, l->tab.block_shard[j->block]), &l->tab.marks[l->tab.block_shard[j->block]],
                              rc, &e);
    if (rc)
        snprintf(why, whylen, "%s", e.why);
    return rc;
}

/* The block is decoded, or failed: its ring region and its place in the counts are given back. */
static void job_done(sp_loader *l, const ld_job *j, double busy)
{
    pthread_mutex_lock(&l->ring.mu);
    l->ring.regions[j->region].done = true;
    l->ring.win_remaining[j->win]--;
    l->ring.rpending[l->rdr.win_plan[j->win]]--;
    l->ring.pending--;
    l->stats.s.decode_busy_s += busy;
    pthread_cond_signal(&l->ring.c_reader); /* ring space or a window slot may have come free */
    if (l->ring.reader_polls) {
        l->ring.reader_polls = false;
        rm_fetch_wakeup(l->rdr.rf);
    }
    if (l->ring.pending == 0 && l->ring.reader_blocked)
        pthread_cond_signal(&l->ring.c_consumer); /* lets next() see a ring that cannot advance */
    pthread_mutex_unlock(&l->ring.mu);
}

/* Counted before the rows are published: a consumer that has seen the block's batches then sees
 * the block in the statistics too. */
static void count_block(sp_loader *l, const ld_job *j, int rc)
{
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.blocks_read++;
    if (!rc)
        l->stats.s.bytes_decompressed += l->tab.block_entry[j->block]->raw_size;
    pthread_mutex_unlock(&l->ring.mu);
}

/* Gives decoded-block entry k back, with mu held. */
static void dec_put_locked(sp_loader *l, uint32_t k)
{
    l->ring.dec_free[l->ring.dec_nfree++] = k;
    pthread_cond_signal(&l->ring.c_worker); /* a block job may have waited for an entry */
}

static void part_end(sp_loader *l, uint32_t k, double busy);

/* A block job, with decoded-block entry k (its scratch). A block whose rows are expensive is
 * split: its parts are queued for every worker (this one included) and the last part gives the
 * block back; any other block is written here whole. */
static void job_run(sp_loader *l, const ld_job *j, int id, uint32_t k)
{
    ld_dec *d = &l->pool.dec[k];
    char why[SP_ERRMSG_MAX];
    double t0 = sp_now();
    unsigned track = LD_TRACK_WORKER + (unsigned)id;
    uint64_t tb = sp_trace_begin(l->trace, SPT_BLOCK), td = sp_trace_begin(l->trace, SPT_DECODE);
    int rc = job_decode(l, j, id, l->pool.scratch[k], &d->v, why, sizeof why);
    sp_trace_end(l->trace, track, SPT_DECODE, td, j->block);
    count_block(l, j, rc);
    uint32_t n = rc ? 0 : d->v.n, nparts = n < (uint32_t)l->cfg.threads ? n : (uint32_t)l->cfg.threads;
    if (rc == SP_OK && l->cfg.split && nparts > 1) {
        d->job = *j;
        d->next = 0;
        d->part = (n + nparts - 1) / nparts;
        /* writing the block's cache entry holds its region as a part does */
        d->left = (n + d->part - 1) / d->part + (j->keep ? 1u : 0u);
        pthread_mutex_lock(&l->ring.mu);
        l->ring.parts[(l->ring.part_head + l->ring.part_count) % (uint32_t)l->cfg.threads] = k;
        l->ring.part_count++;
        l->stats.s.decode_busy_s += sp_now() - t0;
        if (d->left > 1)
            pthread_cond_broadcast(&l->ring.c_worker);
        pthread_mutex_unlock(&l->ring.mu);
        if (j->keep) { /* while the other workers write its rows */
            double t1 = sp_now();
            ld_cache_keep(l, j, true, track);
            part_end(l, k, sp_now() - t1);
        }
        sp_trace_end(l->trace, track, SPT_BLOCK, tb, j->block);
        return;
    }
    if (rc)
        block_failed(l, j, rc, why, track);
    else
        scatter(l, j, &d->v, id, 0, n);
    ld_cache_keep(l, j, rc == SP_OK, track); /* after its rows: they are not kept waiting for the disk */
    sp_trace_end(l->trace, track, SPT_BLOCK, tb, j->block);
    job_done(l, j, sp_now() - t0);
    pthread_mutex_lock(&l->ring.mu);
    dec_put_locked(l, k);
    pthread_mutex_unlock(&l->ring.mu);
}

/* One part of split block k is done (busy: its time); the last gives the block and its entry back. */
static void part_end(sp_loader *l, uint32_t k, double busy)
{
    ld_dec *d = &l->pool.dec[k];
    pthread_mutex_lock(&l->ring.mu);
    bool last = --d->left == 0;
    ld_job j = d->job;
    l->stats.s.decode_busy_s += busy;
    if (last)
        dec_put_locked(l, k);
    pthread_mutex_unlock(&l->ring.mu);
    if (last)
        job_done(l, &j, 0);
}

/* Rows [r0, r1) of split block k. */
static void part_run(sp_loader *l, int id, uint32_t k, uint32_t r0, uint32_t r1)
{
    ld_dec *d = &l->pool.dec[k];
    double t0 = sp_now();
    uint64_t tb = sp_trace_begin(l->trace, SPT_BLOCK);
    scatter(l, &d->job, &d->v, id, r0, r1);
    sp_trace_end(l->trace, LD_TRACK_WORKER + (unsigned)id, SPT_BLOCK, tb, d->job.block);
    part_end(l, k, sp_now() - t0);
}

static void *worker_main(void *arg)
{
    ld_worker *wk = arg;
    sp_loader *l = wk->l;
    unsigned track = LD_TRACK_WORKER + (unsigned)wk->id;
    pthread_mutex_lock(&l->ring.mu);
    for (;;) {
        if (!l->ring.stop && l->ring.job_count == 0 && l->ring.part_count == 0 && !l->ring.reader_done) {
            uint64_t t0 = sp_trace_begin(l->trace, SPT_IDLE);
            while (!l->ring.stop && l->ring.job_count == 0 && l->ring.part_count == 0 && !l->ring.reader_done)
                pthread_cond_wait(&l->ring.c_worker, &l->ring.mu);
            sp_trace_end(l->trace, track, SPT_IDLE, t0, UINT64_MAX);
        }
        if (l->ring.stop || (l->ring.job_count == 0 && l->ring.part_count == 0 && l->ring.reader_done))
            break;
        if (l->ring.part_count == 0 && l->ring.dec_nfree == 0) {
            /* every entry holds a split block whose last parts are being written: one comes back */
            pthread_cond_wait(&l->ring.c_worker, &l->ring.mu);
            continue;
        }
        if (++l->ring.active > l->stats.s.jobs_in_flight_peak)
            l->stats.s.jobs_in_flight_peak = l->ring.active;
        if (l->trace)
            ld_trace_counters_locked(l);
        if (l->ring.part_count) { /* parts first: a started block finishes before another starts */
            uint32_t k = l->ring.parts[l->ring.part_head];
            ld_dec *d = &l->pool.dec[k];
            uint32_t r0 = d->next, r1 = r0 + d->part < d->v.n ? r0 + d->part : d->v.n;
            d->next = r1;
            if (r1 == d->v.n) {
                l->ring.part_head = (l->ring.part_head + 1) % (uint32_t)l->cfg.threads;
                l->ring.part_count--;
            }
            pthread_mutex_unlock(&l->ring.mu);
            part_run(l, wk->id, k, r0, r1);
        } else {
            ld_job j = l->ring.jobs[l->ring.job_head];
            l->ring.job_head = (l->ring.job_head + 1) % l->ring.jobs_cap;
            l->ring.job_count--;
            uint32_t k = l->ring.dec_free[--l->ring.dec_nfree];
            pthread_mutex_unlock(&l->ring.mu);
            job_run(l, &j, wk->id, k);
        }
        pthread_mutex_lock(&l->ring.mu);
        l->ring.active--;
        if (l->trace)
            ld_trace_counters_locked(l);
    }
    pthread_mutex_unlock(&l->ring.mu);
    sp_free(wk);
    return NULL;
}

/* ---------------------------------------------------------------- limit mode */

int64_t ld_bench_block(sp_loader *l, int id, uint64_t block, uint8_t *buf, uint64_t first, uint64_t nslots,
                       uint64_t *cursor)
{
    ld_job j = { .block = block, .buf = buf, .result = l->tab.block_entry[block]->stored_size };
    fmt_block_view v;
    char why[SP_ERRMSG_MAX], msg[SP_ERRMSG_MAX + 512];
    int rc = job_decode(l, &j, id, l->pool.scratch[id], &v, why, sizeof why);
    if (rc && l->cfg.on_error == SP_ON_ERROR_SKIP)
        return 0; /* as the workers skip it */
    if (rc) {
        block_message(l, block, why, msg, sizeof msg);
        return sp_fail(NULL, rc, "%s", msg);
    }
    uint64_t images = 0;
    for (uint32_t r = 0; r < v.n; r++) {
        /* a batch among the share by a mixing hash: a shuffled window's rows land anywhere in the ring */
        uint64_t n = (*cursor)++, z = (n / 8 + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
        ld_slot *s = &l->ring.slots[first + (z ^ (z >> 29)) % nslots];
        size_t f;
        rc = fill_row(l, id, &v, r, 0, l->tab.block_first[block] + r, s->mem, (uint32_t)(n % l->lay.rows), &images,
                      &f, why, sizeof why);
        if (rc && l->cfg.on_error != SP_ON_ERROR_SKIP) {
            row_message(l, block, r, &l->lay.out[f], why, msg, sizeof msg);
            return sp_fail(NULL, rc, "%s", msg);
        }
    }
    ld_rows_fence();
    return v.n;
}

/* ---------------------------------------------------------------- reader */

/* Reclaims read-ring space freed by workers, oldest first. Called with mu held. */
static void ring_reclaim(sp_loader *l)
{
    while (l->ring.reg_count) {
        ld_region *r = &l->ring.regions[l->ring.reg_head];
        if (!r->done)
            break;
        l->ring.ring_tail = r->pos + r->len;
        l->ring.reg_head = (l->ring.reg_head + 1) % l->ring.nregions;
        l->ring.reg_count--;
    }
    if (l->ring.reg_count == 0)
        l->ring.ring_tail = l->ring.ring_head;
}

/* Tries to carve len bytes from the ring; a region never wraps, so the tail of the buffer may be
 * skipped. Returns the region index, or -1 when there is no room yet (ring_place: where it would
 * start, or UINT64_MAX). Called with mu held. */
static uint64_t ring_place(sp_loader *l, uint64_t len)
{
    ring_reclaim(l);
    uint64_t pos = l->ring.ring_head, phys = pos % l->pool.read_ring_bytes;
    if (phys + len > l->pool.read_ring_bytes)
        pos += l->pool.read_ring_bytes - phys;
    if (pos + len - l->ring.ring_tail > l->pool.read_ring_bytes || l->ring.reg_count == l->ring.nregions)
        return UINT64_MAX;
    return pos;
}

static int64_t ring_alloc(sp_loader *l, uint64_t len, uint8_t **buf)
{
    uint64_t pos = ring_place(l, len);
    if (pos == UINT64_MAX)
        return -1;
    uint32_t idx = (l->ring.reg_head + l->ring.reg_count) % l->ring.nregions;
    l->ring.regions[idx] = (ld_region){ pos, len, false };
    l->ring.reg_count++;
    l->ring.ring_head = pos + len;
    uint64_t used = l->ring.ring_head - l->ring.ring_tail;
    if (used > l->stats.s.read_ring_peak)
        l->stats.s.read_ring_peak = used;
    *buf = l->pool.read_ring + pos % l->pool.read_ring_bytes;
    if (l->trace)
        ld_trace_counters_locked(l);
    return idx;
}

/* Queues a job for the workers. The queue has a slot per ring region, so it cannot overflow. */
static void push_job_locked(sp_loader *l, const ld_job *j)
{
    l->ring.jobs[(l->ring.job_head + l->ring.job_count) % l->ring.jobs_cap] = *j;
    l->ring.job_count++;
    pthread_cond_signal(&l->ring.c_worker);
}

static uint64_t read_len(const sp_loader *l, uint64_t block, bool direct)
{
    uint64_t n = l->tab.block_entry[block]->stored_size;
    return direct ? sp_align_up(n, LD_PAGE) : n;
}

static int reap(sp_loader *l, ld_reader *rd, bool wait);

/* A block whose read failed (the file cannot be opened, the server's answer) fails here. */
static void read_failed(sp_loader *l, const ld_job *j, int code, const char *why)
{
    count_block(l, j, code);
    block_failed(l, j, code, why, LD_TRACK_READER);
    job_done(l, j, 0);
}

/* A GET queued on the remote driver: counted, with the most outstanding at once. */
static void count_request(sp_loader *l)
{
    unsigned n = rm_fetch_pending(l->rdr.rf);
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.remote_requests++;
    if (n > l->stats.s.remote_pending_peak)
        l->stats.s.remote_pending_peak = n;
    pthread_mutex_unlock(&l->ring.mu);
}

void ld_install_shard(sp_loader *l, uint64_t i, fmt_shard *sh)
{
    uint64_t first, n, local, base;
    sp_dataset *ds = ld_shard_source(l, i, &local, &base);
    ds_shard_blocks(ds, local, &first, &n);
    for (uint64_t k = 0; k < n; k++)
        l->tab.block_entry[base + first + k] = &sh->index.blocks[k];
    l->tab.marks[i] = fmt_shard_mark_of(sh);
    l->tab.shards[i] = sh;
    l->tab.opened[i] = 1;
}

int ld_load_local_shard(sp_loader *l, uint64_t i, int fd, const struct stat *st, sp_errbuf *eb)
{
    fmt_shard *sh;
    uint64_t local, base;
    sp_dataset *ds = ld_shard_source(l, i, &local, &base);
    int rc = ds_shard_load(ds, local, fd, st, &sh, eb);
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.shard_indexes_read++;
    pthread_mutex_unlock(&l->ring.mu);
    if (rc)
        return rc;
    uint64_t first, n;
    ds_shard_blocks(ds, local, &first, &n);
    for (uint64_t k = 0; k < n; k++) {
        l->tab.entries[base + first + k] = sh->index.blocks[k];
        l->tab.block_entry[base + first + k] = &l->tab.entries[base + first + k];
    }
    l->tab.marks[i] = fmt_shard_mark_of(sh);
    l->tab.opened[i] = 1;
    fmt_shard_close(sh);
    return SP_OK;
}

/* Queues bytes [off, off + len) of remote shard i into buf (room bytes there are the read's), through
 * the site of the shard's source; rm_fetch_submit_at's result. */
static int fetch_submit(sp_loader *l, uint64_t i, uint8_t *buf, uint64_t len, uint64_t room, uint64_t off, uint64_t tag)
{
    uint64_t local, base;
    sp_dataset *ds = ld_shard_source(l, i, &local, &base);
    return rm_fetch_submit_at(l->rdr.rf, ds_site(ds), ds_shard_obj(ds, local), buf, len, room, off, tag);
}

/* Queues job's ranged GET on a remote dataset. */
static void submit_remote(sp_loader *l, ld_reader *rd, ld_job *j)
{
    unsigned tag = 0;
    while (rd->inflight[tag].buf)
        tag++;
    const fmt_block_entry *be = l->tab.block_entry[j->block];
    j->keep = false;
    if (ld_cache_copy(l, j->block, l->rdr.win_plan[j->win], l->rdr.win[j->win].start, j->buf)) {
        /* its bytes are in the ring already, a worker to write them to the cache */
        j->result = (int64_t)be->stored_size;
        pthread_mutex_lock(&l->ring.mu);
        l->stats.s.bytes_read += be->stored_size;
        push_job_locked(l, j);
        pthread_mutex_unlock(&l->ring.mu);
        return;
    }
    rd->inflight[tag] = *j;
    rd->submitted[tag] = l->trace ? sp_trace_clock() : 0;
    int rc = fetch_submit(l, l->tab.block_shard[j->block], j->buf, be->stored_size, l->ring.regions[j->region].len,
                          be->offset, tag);
    if (rc < 0) {
        /* full only when a stop cut the wait for room short: the block is given back */
        rd->inflight[tag].buf = NULL;
        job_done(l, j, 0);
        return;
    }
    if (rc == SP_OK) /* a GET; not a block the cache served */
        count_request(l);
}

/* Submits job's read; a job whose file cannot be opened fails here, with the reason. */
/* The process is out of descriptors and every cached one serves a read in flight: waits for one
 * (reaps a read), or, with none of ours in flight, for someone else in the process (another
 * loader, a checkpoint being written) to give theirs back, up to LD_FD_WAIT_S from the first wait
 * (*give_up), as a read that keeps failing with EAGAIN is retried. false when the wait is over,
 * with e->why saying so. */
static bool fd_wait(sp_loader *l, ld_reader *rd, double *give_up, fmt_err *e)
{
    if (ld_io_inflight(l->rdr.io)) {
        reap(l, rd, true);
        return true;
    }
    double now = sp_now();
    if (!*give_up)
        *give_up = now + LD_FD_WAIT_S;
    if (now >= *give_up || reader_stopping(l)) {
        snprintf(e->why + strlen(e->why), sizeof e->why - strlen(e->why),
                 " (the process had no descriptor free for %.0f s)", LD_FD_WAIT_S);
        return false;
    }
    struct timespec pause = { 0, 2000000L };
    nanosleep(&pause, NULL);
    return true;
}

/* A lazy local dataset: shard's index read now (ld_load_local_shard), through a descriptor the
 * reader then keeps for the shard's blocks. SP_OK, or the failure's code with why (the shard's
 * path left out: the block's message names it). */
static int local_index(sp_loader *l, ld_reader *rd, uint32_t shard, char *why, size_t whylen)
{
    const char *path = ld_shard_path(l, shard);
    if (l->rdr.fds_open >= sp_fd_budget(LD_MIN_FDS, LD_MAX_FDS))
        fd_evict_one(l, rd);
    fmt_err e = { .block = -1 };
    struct stat st;
    double give_up = 0;
    int fd;
    while (sp_out_of_fds(fd = open_evicting(l, rd, path, 0, &st)) && fd_wait(l, rd, &give_up, &e))
        ;
    sp_errbuf eb;
    int rc = ld_load_local_shard(l, shard, fd, &st, &eb);
    if (rc) {
        if (fd >= 0)
            close(fd);
        size_t n = strlen(path);
        const char *m = strncmp(eb.msg, path, n) == 0 && strncmp(eb.msg + n, ": ", 2) == 0 ? eb.msg + n + 2 : eb.msg;
        snprintf(why, whylen, "%.400s%.100s", m, e.why);
        return rc;
    }
    fd_keep(l, shard, fd, false);
    return SP_OK;
}

static void submit(sp_loader *l, ld_reader *rd, ld_job *j)
{
    if (block_remote(l, j->block)) {
        submit_remote(l, rd, j);
        return;
    }
    uint32_t shard = l->tab.block_shard[j->block];
    fmt_err e = { .block = -1 };
    bool starved;
    int fd;
    double give_up = 0;
    while ((fd = shard_fd(l, rd, shard, l->rdr.direct, &e, &starved)) < 0 && starved && fd_wait(l, rd, &give_up, &e))
        ;
    if (fd < 0) {
        read_failed(l, j, fd, e.why);
        return;
    }
    if (l->cfg.sim_read_ns)
        sleep_ns(l->cfg.sim_read_ns);
    unsigned tag = 0;
    while (rd->inflight[tag].buf)
        tag++;
    bool direct = l->rdr.fd_direct[shard];
    rd->inflight[tag] = *j;
    rd->submitted[tag] = l->trace ? sp_trace_clock() : 0;
    if (ld_io_submit(l->rdr.io, fd, j->buf, read_len(l, j->block, direct), l->tab.block_entry[j->block]->offset, tag) ==
        SP_OK)
        return;
    rd->inflight[tag].buf = NULL;
    j->result = -EIO;
    pthread_mutex_lock(&l->ring.mu);
    push_job_locked(l, j);
    pthread_mutex_unlock(&l->ring.mu);
}

/* ---------------------------------------------------------------- lazy shard indexes (remote) */

/* The bytes of shard i's tail that its GET asks for: its whole index when the manifest tells its
 * length and the tail buffers hold it (a larger one is read by ds_shard_from_tail's second GET). */
static uint64_t tail_len(const sp_loader *l, uint64_t i)
{
    uint64_t local, base;
    sp_dataset *ds = ld_shard_source(l, i, &local, &base);
    uint64_t n = ds_shard_tail_len(ds, local);
    return n < l->rdr.tail_size ? n : l->rdr.tail_size;
}

/* Queues the GET of shard i's tail (its index); false when every tail buffer is busy or the
 * driver is full. */
static bool tail_request(sp_loader *l, uint64_t i)
{
    if (io_full(l, true))
        return false;
    unsigned t = 0;
    while (t < l->rdr.ntails && l->rdr.tail_shard[t] != UINT64_MAX)
        t++;
    if (t == l->rdr.ntails)
        return false;
    uint64_t local, base;
    sp_dataset *ds = ld_shard_source(l, i, &local, &base);
    uint64_t n = tail_len(l, i);
    if (fetch_submit(l, i, l->rdr.tails + (size_t)(t * l->rdr.tail_size), n, n, ds_shard_obj(ds, local)->size - n,
                     LD_READS + t) < 0)
        return false; /* full only on a stop */
    l->rdr.tail_shard[t] = i;
    l->rdr.idx_asked[i] = 1;
    count_request(l);
    return true;
}

/* Tail t has arrived (code 0) or failed: the shard is opened from it and its blocks enter the
 * table; a failure matters to the block the reader waits for (a prefetch that failed is tried
 * again when its shard is needed). */
static void tail_done(sp_loader *l, ld_reader *rd, unsigned t, int code, const char *why)
{
    uint64_t i = l->rdr.tail_shard[t];
    char msg[SP_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "its index cannot be read: %.400s", why);
    if (code == SP_OK) {
        fmt_shard *sh;
        uint64_t local, base;
        sp_dataset *ds = ld_shard_source(l, i, &local, &base);
        uint64_t n = tail_len(l, i);
        pthread_mutex_lock(&l->ring.mu);
        l->rdr.tail_bytes += n;
        l->stats.s.shard_indexes_read++;
        pthread_mutex_unlock(&l->ring.mu);
        code = ds_shard_from_tail(ds, local, l->rdr.tails + (size_t)(t * l->rdr.tail_size), n, &sh);
        if (code == SP_OK)
            ld_install_shard(l, i, sh);
        else
            snprintf(msg, sizeof msg, "%s", sp_dataset_errmsg(ds));
    }
    l->rdr.tail_shard[t] = UINT64_MAX;
    l->rdr.idx_asked[i] = 0;
    if (code && i == rd->await) {
        rd->await_rc = code;
        snprintf(rd->await_why, sizeof rd->await_why, "%s", msg);
    }
}

/* Requests the indexes of the shards the plan reads next, from window wi's block k on, as far as
 * the tail buffers allow and at most a few windows ahead, so that the reader seldom waits for one. */
static unsigned index_ahead(sp_loader *l, ld_reader *rd, const ld_plan *plan, uint64_t wi, uint32_t k)
{
    unsigned sent = 0;
    if (!l->rdr.idx_asked) /* no lazy remote source */
        return 0;
    if (rd->la_plan != plan || rd->la_epoch != plan->cfg.epoch || rd->la_w < wi || (rd->la_w == wi && rd->la_k < k)) {
        rd->la_plan = plan;
        rd->la_epoch = plan->cfg.epoch;
        rd->la_w = wi;
        rd->la_k = k;
    }
    uint64_t ahead = LD_RM_DEPTH / l->cfg.window_blocks + 2; /* windows */
    while (rd->la_w < plan->nwindows && rd->la_w <= wi + ahead) {
        const ld_pwin *pw = &plan->win[rd->la_w];
        if (rd->la_k >= pw->nblocks) {
            rd->la_w++;
            rd->la_k = 0;
            continue;
        }
        uint32_t i = l->tab.block_shard[plan->blocks[pw->first_block + rd->la_k]];
        if (!l->tab.opened[i] && !l->rdr.idx_asked[i] && ld_shard_site(l, i)) { /* a local one is read when needed */
            if (!tail_request(l, i))
                return sent; /* no room now: from here next time */
            sent++;
        }
        rd->la_k++;
    }
    return sent;
}

static void reader_wait_io(sp_loader *l, ld_reader *rd);

/* Shard i's index, fetched now unless it has arrived already; SP_OK, SP_ECANCELED on a stop, or the
 * fetch's failure with why. */
static int shard_ready(sp_loader *l, ld_reader *rd, uint64_t i, char *why, size_t whylen)
{
    rd->await = i;
    rd->await_rc = SP_OK;
    int rc = SP_OK;
    while (!l->tab.opened[i] && rc == SP_OK) {
        if (reader_stopping(l))
            rc = SP_ECANCELED;
        else if (l->rdr.idx_asked[i] || tail_request(l, i) || io_inflight(l))
            reader_wait_io(l, rd); /* its tail, or room for it */
        rc = rc ? rc : rd->await_rc;
    }
    if (rc && rc != SP_ECANCELED)
        snprintf(why, whylen, "%s", rd->await_why);
    rd->await = UINT64_MAX;
    return rc;
}

/* ---------------------------------------------------------------- fetching ahead (remote) */

/* Gives a ring region back that no job will decode (a block fetched ahead and not needed). */
static void region_free(sp_loader *l, uint32_t region)
{
    pthread_mutex_lock(&l->ring.mu);
    l->ring.regions[region].done = true;
    pthread_cond_signal(&l->ring.c_reader);
    pthread_mutex_unlock(&l->ring.mu);
}

/* A read fetched ahead has ended: kept for its window (arrived, or failed: read again then, so
 * that its failure is reported as any read's), or its region given back when it was dropped. */
static void ahead_arrived(sp_loader *l, ld_reader *rd, const ld_job *j, int code)
{
    if (j->win == LD_WIN_DROP) {
        region_free(l, j->region);
        return;
    }
    rd->ahead[j->kblock].state = code ? AHEAD_FAILED : AHEAD_ARRIVED;
    rd->ahead[j->kblock].keep = j->keep;
    rd->ahead[j->kblock].keep_now = j->keep_now;
    if (!code) {
        pthread_mutex_lock(&l->ring.mu);
        l->stats.s.bytes_read += l->tab.block_entry[j->block]->stored_size;
        pthread_mutex_unlock(&l->ring.mu);
    }
}

/* Fetching ahead goes on after block k of window wi of plan slot pi, which read_window handles
 * now (nothing is queued ahead of it unless it is the queue's head). */
static void ahead_sync(sp_loader *l, ld_reader *rd, uint32_t pi, uint64_t wi, uint32_t k)
{
    const ld_plan *plan = &l->rdr.rplan[pi];
    if (rd->fa_plan == plan && (rd->fa_w > wi || (rd->fa_w == wi && rd->fa_k > k)))
        return;
    if (rd->fa_plan && rd->fa_plan != plan && rd->fa_plan->cfg.epoch > plan->cfg.epoch)
        return; /* already in the next epoch (planned early) */
    rd->fa_plan = plan;
    rd->fa_pi = pi;
    rd->fa_w = wi;
    rd->fa_k = k + 1;
}

/* The next block to fetch ahead (the cursor moved past windows read_epochs skips and past the
 * ends of windows), or UINT64_MAX when the plan has no more. */
static uint64_t ahead_next(sp_loader *l, ld_reader *rd)
{
    const ld_plan *plan = rd->fa_plan;
    uint64_t lo = l->rdr.rlo[rd->fa_pi], hi = plan->samples;
    while (rd->fa_w < plan->nwindows) {
        const ld_pwin *pw = &plan->win[rd->fa_w];
        if (rd->fa_k < pw->nblocks && pw->end > lo && pw->start < hi) {
            return plan->blocks[pw->first_block + rd->fa_k]; /* a mixture's local block too */
        }
        rd->fa_w++;
        rd->fa_k = 0;
    }
    return UINT64_MAX;
}

/* Whether fetching ahead, past the end of the epoch being read, may plan the next epoch now: there
 * is one, it is not planned yet, and its plan slot is free (every block of the epoch before this
 * one decoded, as plan_epoch waits for). Without it the link would stand idle at every epoch's end
 * until the consumer had nearly finished the epoch (the reader plans the next epoch only once it
 * has claimed the batches of this one's last window), while curl-like readers keep it busy. Called
 * with mu held. */
static bool early_plan_due_locked(const sp_loader *l, const ld_reader *rd)
{
    uint64_t e = rd->cur_e;
    if (!l->rdr.rf || e == UINT64_MAX || rd->early_e != UINT64_MAX || rd->fa_plan != &l->rdr.rplan[e % 2] ||
        rd->fa_plan->cfg.epoch != e || (l->cfg.epochs && e + 1 >= l->cfg.epochs))
        return false;
    return l->ring.rpending[(e + 1) % 2] == 0;
}

static int plan_into(sp_loader *l, uint64_t e, uint64_t base, char *why, size_t whylen);

/* Plans the epoch after the one being read into its free plan slot, and moves fetching ahead to
 * its first window: false when it cannot (read_epochs plans it again then, and reports the
 * failure at its first batch as always). */
static bool plan_early(sp_loader *l, ld_reader *rd)
{
    uint64_t e = rd->cur_e + 1;
    uint32_t pi = (uint32_t)(e % 2);
    char why[SP_ERRMSG_MAX];
    rd->early_e = e;
    rd->early_rc = plan_into(l, e, rd->cur_base + l->rdr.rplan[rd->cur_e % 2].nbatches, why, sizeof why);
    if (rd->early_rc != SP_OK)
        return false;
    rd->fa_plan = &l->rdr.rplan[pi];
    rd->fa_pi = pi;
    rd->fa_w = 0;
    rd->fa_k = 0;
    return true;
}

/* Whether fetch_ahead would queue a GET now: a block's (its index known, room in the ring) or
 * its shard index's, or plan the next epoch to go on. Called with mu held, so that a reader that
 * finds nothing to do waits without having let a wake-up pass. */
static bool ahead_ready_locked(sp_loader *l, ld_reader *rd)
{
    if (!rd->fa_plan || l->ring.stop || rd->a_n >= LD_AHEAD_MAX || io_full(l, true))
        return false;
    uint64_t block = ahead_next(l, rd);
    if (block == UINT64_MAX)
        return early_plan_due_locked(l, rd);
    const fmt_block_entry *be = l->tab.block_entry[block];
    if (!be && !block_remote(l, block))
        return ring_place(l, 0) != UINT64_MAX; /* a local index, read by fetch_ahead */
    if (!be) {
        uint32_t i = l->tab.block_shard[block];
        for (unsigned t = 0; !l->rdr.idx_asked[i] && t < l->rdr.ntails; t++)
            if (l->rdr.tail_shard[t] == UINT64_MAX)
                return true;
        return false;
    }
    return ring_place(l, sp_align_up(be->stored_size, LD_PAGE)) != UINT64_MAX;
}

/* A mixture's local block met while fetching ahead: its ring region taken now, in the plan's order,
 * and the read left to its window (a page-cache read costs less than holding the region longer).
 * Skipping it instead would let the remote blocks after it fill the ring, and read_window, reaching
 * it, would wait for space that only the blocks after it hold: a mixture stalled for good. A lazy
 * shard's index is read first (the region's size); when that fails the region is empty, and the
 * window reads the index again and fails the block as any. False when the ring has no room now. */
static bool reserve_local(sp_loader *l, ld_reader *rd, uint64_t block)
{
    uint32_t shard = l->tab.block_shard[block];
    char why[SP_ERRMSG_MAX];
    bool ok = !l->tab.lazy || l->tab.opened[shard] || local_index(l, rd, shard, why, sizeof why) == SP_OK;
    uint64_t len = ok ? sp_align_up(l->tab.block_entry[block]->stored_size, LD_PAGE) : 0;
    uint8_t *buf;
    pthread_mutex_lock(&l->ring.mu);
    int64_t region = l->ring.stop ? -1 : ring_alloc(l, len, &buf);
    pthread_mutex_unlock(&l->ring.mu);
    if (region < 0)
        return false;
    uint32_t slot = (rd->a_head + rd->a_n) % LD_AHEAD_MAX;
    rd->ahead[slot] = (ld_ahead){ block, buf, (uint32_t)region, 0, AHEAD_RESERVED, false, 0 };
    rd->a_n++;
    rd->fa_k++;
    return true;
}

/* Fetches the blocks read_window will take next into the read ring, as far as ring space, the
 * driver's queue and the table of reads ahead allow: many ranged GETs in flight while the windows
 * before them are decoded (remote_inflight transfers, remote_part_size each, the ring sized for
 * that product within host_memory). A block whose shard index has not arrived stops it there (the
 * index is requested). Returns the GETs queued. */
static unsigned fetch_ahead(sp_loader *l, ld_reader *rd)
{
    unsigned sent = 0;
    if (!l->rdr.rf || !rd->fa_plan)
        return 0;
    while (rd->a_n < LD_AHEAD_MAX && !io_full(l, true)) {
        uint64_t block = ahead_next(l, rd);
        if (block == UINT64_MAX) { /* on into the next epoch, once it can be planned */
            pthread_mutex_lock(&l->ring.mu);
            bool due = early_plan_due_locked(l, rd);
            pthread_mutex_unlock(&l->ring.mu);
            if (!due || !plan_early(l, rd))
                return sent;
            continue;
        }
        if (!block_remote(l, block)) { /* a mixture's local block */
            if (!reserve_local(l, rd, block))
                return sent;
            continue;
        }
        const fmt_block_entry *be = l->tab.block_entry[block];
        if (!be) { /* its shard's index first (again, if a fetch ahead of it failed), then the next ones */
            uint32_t i = l->tab.block_shard[block];
            sent += !l->rdr.idx_asked[i] && tail_request(l, i);
            return sent + index_ahead(l, rd, rd->fa_plan, rd->fa_w, rd->fa_k);
        }
        uint8_t *buf;
        pthread_mutex_lock(&l->ring.mu);
        int64_t region = l->ring.stop ? -1 : ring_alloc(l, sp_align_up(be->stored_size, LD_PAGE), &buf);
        pthread_mutex_unlock(&l->ring.mu);
        if (region < 0)
            return sent;
        unsigned tag = 0;
        while (rd->inflight[tag].buf)
            tag++;
        uint32_t slot = (rd->a_head + rd->a_n) % LD_AHEAD_MAX;
        if (ld_cache_copy(l, block, rd->fa_pi, rd->fa_plan->win[rd->fa_w].start, buf)) {
            /* in the ring already, a worker to write it to the cache: arrived */
            rd->ahead[slot] = (ld_ahead){ block, buf, (uint32_t)region, 0, AHEAD_ARRIVED, false, 0 };
            pthread_mutex_lock(&l->ring.mu);
            l->stats.s.bytes_read += be->stored_size;
            pthread_mutex_unlock(&l->ring.mu);
            rd->a_n++;
            rd->fa_k++;
            sent++;
            continue;
        }
        int rc = fetch_submit(l, l->tab.block_shard[block], buf, be->stored_size, sp_align_up(be->stored_size, LD_PAGE),
                              be->offset, tag);
        if (rc < 0) {
            region_free(l, (uint32_t)region);
            return sent;
        }
        sent++;
        if (rc == SP_OK) /* a GET; not a block the cache served */
            count_request(l);
        rd->inflight[tag] = (ld_job){ .block = block, .win = LD_WIN_AHEAD, .kblock = slot, .buf = buf,
                                      .region = (uint32_t)region };
        rd->submitted[tag] = l->trace ? sp_trace_clock() : 0;
        rd->ahead[slot] = (ld_ahead){ block, buf, (uint32_t)region, tag, AHEAD_INFLIGHT, false, 0 };
        rd->a_n++;
        rd->fa_k++;
    }
    return sent;
}

/* The block read_window handles now, when it was fetched ahead: taken off the queue into *a. A
 * queue whose head is another block (cannot happen while both walk the plan alike) is dropped. */
static void ahead_drop(sp_loader *l, ld_reader *rd, const ld_ahead *a);

static bool ahead_take(sp_loader *l, ld_reader *rd, uint64_t block, ld_ahead *a)
{
    if (rd->a_n && rd->ahead[rd->a_head].block == block) {
        *a = rd->ahead[rd->a_head];
        rd->a_head = (rd->a_head + 1) % LD_AHEAD_MAX;
        rd->a_n--;
        return true;
    }
    while (rd->a_n) {
        ahead_drop(l, rd, &rd->ahead[rd->a_head]);
        rd->a_head = (rd->a_head + 1) % LD_AHEAD_MAX;
        rd->a_n--;
    }
    rd->fa_plan = NULL;
    return false;
}

/* A block fetched ahead that its window does not need: its region is given back now, or when its
 * read ends. */
static void ahead_drop(sp_loader *l, ld_reader *rd, const ld_ahead *a)
{
    if (a->state == AHEAD_INFLIGHT) {
        rd->inflight[a->tag].win = LD_WIN_DROP;
        return;
    }
    if (a->keep)
        ld_cache_release(l, a->block); /* its bytes go unwritten: the region is given back now */
    region_free(l, a->region);
}

static void reader_wait_io(sp_loader *l, ld_reader *rd);
static void submit(sp_loader *l, ld_reader *rd, ld_job *j);

/* Job j (its window's block, counted as pending by the caller) read from what was fetched ahead:
 * handed to the workers when it has arrived, to the read's end when still in flight, or read
 * again after a failure. */
static void ahead_use(sp_loader *l, ld_reader *rd, const ld_ahead *a, ld_job *j)
{
    j->buf = a->buf;
    j->region = a->region;
    if (a->state == AHEAD_INFLIGHT) {
        rd->inflight[a->tag].win = j->win;
        rd->inflight[a->tag].kblock = j->kblock;
        return;
    }
    if (a->state == AHEAD_ARRIVED) {
        j->result = (int64_t)l->tab.block_entry[j->block]->stored_size;
        j->keep = a->keep;
        j->keep_now = a->keep_now;
        pthread_mutex_lock(&l->ring.mu);
        push_job_locked(l, j);
        pthread_mutex_unlock(&l->ring.mu);
        return;
    }
    bool remote = block_remote(l, j->block);
    if (!remote && l->ring.regions[j->region].len == 0) {
        /* reserved empty: its index could not be read then, and the region cannot hold the block
         * (nor can a larger one be waited for here: the regions after it hold the ring); the
         * block fails as it would have in its window */
        uint32_t shard = l->tab.block_shard[j->block];
        char why[SP_ERRMSG_MAX];
        int irc = l->tab.opened[shard] ? SP_OK : local_index(l, rd, shard, why, sizeof why);
        if (irc == SP_OK) {
            irc = SP_EIO;
            snprintf(why, sizeof why, "its index could not be read when its read was planned ahead (it can be "
                                      "now: a later epoch reads the block)");
        }
        read_failed(l, j, irc, why);
        return;
    }
    while (io_full(l, remote) && !reader_stopping(l))
        reader_wait_io(l, rd);
    submit(l, rd, j);
}

/* Takes one finished read (waiting for it when wait) and hands it to the workers. */
static int reap_remote(sp_loader *l, ld_reader *rd, bool wait)
{
    uint64_t tag;
    int code;
    char why[SP_ERRMSG_MAX];
    int got = rm_fetch_reap(l->rdr.rf, wait, &tag, &code, why, sizeof why);
    if (got <= 0)
        return got;
    if (tag >= LD_READS) {
        tail_done(l, rd, (unsigned)(tag - LD_READS), code, why);
        return 1;
    }
    ld_job j = rd->inflight[tag];
    rd->inflight[tag].buf = NULL;
    sp_trace_async(l->trace, LD_TRACK_READER, SPT_READ, rd->submitted[tag], j.block);
    j.keep = false;
    if (code == SP_OK && j.win != LD_WIN_DROP)
        ld_cache_hold(l, &j); /* fetched for the cache: its worker writes the entry */
    if (j.win == LD_WIN_AHEAD || j.win == LD_WIN_DROP) {
        ahead_arrived(l, rd, &j, code);
        return 1;
    }
    if (code == SP_ECANCELED) { /* the run is stopping: the block is given back, not failed */
        job_done(l, &j, 0);
        return 1;
    }
    if (code) {
        read_failed(l, &j, code, why);
        return 1;
    }
    uint64_t n = l->tab.block_entry[j.block]->stored_size;
    j.result = (int64_t)n;
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.bytes_read += n;
    push_job_locked(l, &j);
    pthread_mutex_unlock(&l->ring.mu);
    return 1;
}

static int reap_local(sp_loader *l, ld_reader *rd, bool wait);

/* Takes one finished read, local or remote. A mixture of both reads its local sources by pread,
 * done when reaped: taken first, never waited for, so the wait is libcurl's alone. */
static int reap(sp_loader *l, ld_reader *rd, bool wait)
{
    if (l->rdr.io && (!l->rdr.rf || ld_io_inflight(l->rdr.io))) {
        int got = reap_local(l, rd, wait && !l->rdr.rf);
        if (got || !l->rdr.rf)
            return got;
    }
    return reap_remote(l, rd, wait);
}

static int reap_local(sp_loader *l, ld_reader *rd, bool wait)
{
    uint64_t tag;
    int64_t res;
    int got = ld_io_reap(l->rdr.io, wait, &tag, &res);
    if (got <= 0)
        return got;
    ld_job j = rd->inflight[tag];
    rd->inflight[tag].buf = NULL;
    sp_trace_async(l->trace, LD_TRACK_READER, SPT_READ, rd->submitted[tag], j.block);
    uint32_t shard = l->tab.block_shard[j.block];
    if (res == -EINVAL && l->rdr.fd_direct[shard]) {
        direct_off(l, "O_DIRECT refused at read time by the file system");
        submit(l, rd, &j);
        return 1;
    }
    j.result = res;
    pthread_mutex_lock(&l->ring.mu);
    if (res > 0)
        l->stats.s.bytes_read += (uint64_t)res;
    push_job_locked(l, &j);
    pthread_mutex_unlock(&l->ring.mu);
    return 1;
}

/* Waits for progress: a read to finish when any is in flight, else a wake-up from a worker or the
 * consumer. Called with mu held; returns with it held. */
static void reader_wait(sp_loader *l, ld_reader *rd, sp_trace_name why)
{
    double t0 = sp_now();
    if (ahead_ready_locked(l, rd)) {
        /* a remote dataset: the held-up reader fetches ahead meanwhile, then lets its caller look
         * again (what it waits for may have come while mu was let go) */
        pthread_mutex_unlock(&l->ring.mu);
        fetch_ahead(l, rd);
        pthread_mutex_lock(&l->ring.mu);
        return;
    }
    if (io_inflight(l)) {
        /* A remote reader sleeps in libcurl's poll, where the workers' signal does not reach: the
         * next block they finish wakes it there (it may be what this waits for), or it would
         * sleep until some read ends, however long after its window drained. */
        l->ring.reader_polls = l->rdr.rf != NULL;
        pthread_mutex_unlock(&l->ring.mu);
        uint64_t tt = sp_trace_begin(l->trace, SPT_READ_WAIT);
        reap(l, rd, true);
        sp_trace_end(l->trace, LD_TRACK_READER, SPT_READ_WAIT, tt, UINT64_MAX);
        pthread_mutex_lock(&l->ring.mu);
        l->ring.reader_polls = false;
    } else {
        uint64_t tt = sp_trace_begin(l->trace, why);
        pthread_cond_wait(&l->ring.c_reader, &l->ring.mu);
        sp_trace_end(l->trace, LD_TRACK_READER, why, tt, UINT64_MAX);
    }
    /* Counted to what holds the reader up, even while it reaps a read meanwhile: a read that
     * completes does not give it a slot or ring space. */
    double waited = sp_now() - t0;
    rd->wait_s += waited;
    *(why == SPT_SLOT_WAIT ? &l->stats.s.read_wait_slot_s : &l->stats.s.read_wait_space_s) += waited; /* mu held */
}

/* Waits for a read while every I/O slot is in use: the reader held up by the disk. */
static void reader_wait_io(sp_loader *l, ld_reader *rd)
{
    double t0 = sp_now();
    uint64_t tt = sp_trace_begin(l->trace, SPT_READ_WAIT);
    reap(l, rd, true);
    sp_trace_end(l->trace, LD_TRACK_READER, SPT_READ_WAIT, tt, UINT64_MAX);
    double waited = sp_now() - t0; /* busy time for read_busy_s, as it always was */
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.read_wait_io_s += waited;
    pthread_mutex_unlock(&l->ring.mu);
}

/* Whether the consumer, waiting for global batch g, waits because of the slot limit: the reader
 * is held by it while claiming a window that g belongs to, or one before it. Then the limit grows
 * by one slot (true). Called with mu held. */
bool ld_grow_slots_locked(sp_loader *l, uint64_t g)
{
    if (!l->ring.reader_blocked || l->ring.claim_first > g || l->ring.slot_limit >= l->ring.nslots ||
        l->ring.slots_in_use < l->ring.slot_limit)
        return false;
    l->ring.slot_limit++;
    l->stats.s.batch_ring_limit = l->ring.slot_limit;
    l->stats.s.batch_ring_grown++;
    pthread_cond_signal(&l->ring.c_reader);
    if (l->rdr.rf)
        rm_fetch_wakeup(l->rdr.rf); /* a remote reader may wait for its reads ahead meanwhile */
    return true;
}

/* Claims slots for plan pi's batches [from, to] (epoch-local) for a window, waiting while none is
 * free or slot_limit are in use: for the consumer to release a batch, or to wait for one the limit
 * holds back (then the limit grows). Called with mu held. */
static bool claim_batches(sp_loader *l, ld_reader *rd, uint32_t pi, uint64_t from, uint64_t to)
{
    uint64_t gbase = l->rdr.rbase[pi];
    for (uint64_t g = gbase + from > l->rdr.next_assign ? gbase + from : l->rdr.next_assign; g <= gbase + to; g++) {
        uint64_t k = g - gbase;
        while (!l->ring.stop && (l->ring.nfree == 0 || l->ring.slots_in_use >= l->ring.slot_limit)) {
            l->ring.reader_blocked = true;
            l->ring.claim_first = gbase + from;
            /* A consumer already asleep on a batch this window holds gets the slot it needs now. */
            if (l->ring.waiting_for != UINT64_MAX && ld_grow_slots_locked(l, l->ring.waiting_for))
                continue;
            /* When no block is pending, no worker will wake next() to see that the ring is
             * stuck: do it here, or a consumer waiting without timeout never returns SP_EBUSY. */
            pthread_cond_signal(&l->ring.c_consumer);
            reader_wait(l, rd, SPT_SLOT_WAIT);
        }
        l->ring.reader_blocked = false;
        if (l->ring.stop)
            return false;
        uint32_t i = l->ring.free_slots[--l->ring.nfree];
        ld_slot *s = &l->ring.slots[i];
        l->ring.slot_of[g % l->ring.nslots] = i;
        uint64_t rows = l->rdr.rplan[pi].samples - k * l->cfg.batch;
        s->k = g;
        s->state = SLOT_FILLING;
        s->rows_expected = (uint32_t)(rows < l->cfg.batch ? rows : l->cfg.batch);
        atomic_store(&s->rows_done, 0);
        memset(s->bad, 0, l->lay.rows);
        s->note_row = UINT32_MAX;
        s->b.epoch = l->rdr.rplan[pi].cfg.epoch;
        s->b.index = k;
        s->b.rows = s->rows_expected;
        l->rdr.next_assign = g + 1;
        if (++l->ring.slots_in_use > l->stats.s.batch_ring_peak_slots)
            l->stats.s.batch_ring_peak_slots = l->ring.slots_in_use;
        l->stats.s.batch_ring_in_use = l->ring.slots_in_use;
        if (l->trace)
            ld_trace_counters_locked(l);
    }
    return true;
}

/* Whether block kblock of window w has any row this epoch delivers. */
static bool block_needed(const sp_loader *l, const ld_plan *plan, const ld_window *w, uint32_t kblock,
                         uint64_t lo, uint64_t hi)
{
    uint32_t base = w->row_base[kblock], n = l->tab.block_samples[plan->blocks[w->first_block + kblock]];
    for (uint32_t r = 0; r < n; r++) {
        uint64_t p = w->start + w->pos[base + r];
        if (w->pos[base + r] != LD_POS_NONE && p >= lo && p < hi)
            return true;
    }
    return false;
}

/* Waits until *count (a window's or a plan's blocks still to decode) is zero; false on a stop. */
static bool wait_drained(sp_loader *l, ld_reader *rd, const uint64_t *count)
{
    pthread_mutex_lock(&l->ring.mu);
    while (!l->ring.stop && *count > 0)
        reader_wait(l, rd, SPT_SPACE_WAIT);
    bool stop = l->ring.stop; /* read under mu: ld_pipeline_stop sets it from another thread */
    pthread_mutex_unlock(&l->ring.mu);
    return !stop;
}

static bool read_window(sp_loader *l, ld_reader *rd, uint32_t pi, uint64_t wi)
{
    const ld_plan *plan = &l->rdr.rplan[pi];
    uint64_t lo = l->rdr.rlo[pi], hi = plan->samples;
    uint32_t ws = (uint32_t)(wi % 2);
    if (!wait_drained(l, rd, &l->ring.win_remaining[ws]))
        return false;
    ld_window *w = &l->rdr.win[ws];
    l->rdr.win_plan[ws] = pi;
    if (ld_window_build(plan, l->tab.block_samples, wi, w, l->rdr.win_cap, l->rdr.win_perm) != SP_OK) {
        /* Cannot happen: win_cap bounds every window. Should a sizing mistake make it happen, the
         * consumer gets an error at the window's first batch rather than waiting forever. */
        uint64_t from = plan->win[wi].start > lo ? plan->win[wi].start : lo;
        char msg[SP_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s: epoch %llu: window %llu holds more rows than the %llu the loader sized for "
                 "(a defect in shardpack: please report it with the dataset's inspect output)", l->name,
                 (unsigned long long)plan->cfg.epoch, (unsigned long long)wi, (unsigned long long)l->rdr.win_cap);
        pthread_mutex_lock(&l->ring.mu);
        fail_batch_locked(l, l->rdr.rbase[pi] + from / l->cfg.batch, SP_ESTATE, msg);
        pthread_mutex_unlock(&l->ring.mu);
        return false;
    }
    uint64_t end = plan->win[wi].end < hi ? plan->win[wi].end : hi;
    uint64_t first = (w->start > lo ? w->start : lo) / l->cfg.batch, last = (end - 1) / l->cfg.batch;
    uint32_t count = 0;
    for (uint32_t k = 0; k < w->nblocks; k++)
        count += block_needed(l, plan, w, k, lo, hi);
    pthread_mutex_lock(&l->ring.mu);
    bool ok = claim_batches(l, rd, pi, first, last);
    l->ring.win_remaining[ws] = count;
    pthread_mutex_unlock(&l->ring.mu);
    for (uint32_t k = 0; ok && k < w->nblocks; k++) {
        ld_ahead a = { 0 }; /* set by ahead_take when the block was fetched ahead */
        bool remote = block_remote(l, plan->blocks[w->first_block + k]);
        /* with a remote source, every block of the plan goes through the queue of reads ahead (a
         * mixture's local ones as regions reserved in order: reserve_local) */
        bool ahead = l->rdr.rf != NULL;
        bool fetched = ahead && ahead_take(l, rd, plan->blocks[w->first_block + k], &a);
        if (ahead)
            ahead_sync(l, rd, pi, wi, k);
        if (!block_needed(l, plan, w, k, lo, hi)) {
            if (fetched)
                ahead_drop(l, rd, &a);
            continue;
        }
        ld_job j = { .block = plan->blocks[w->first_block + k], .win = ws, .kblock = k };
        if (fetched) {
            pthread_mutex_lock(&l->ring.mu);
            l->ring.pending++;
            l->ring.rpending[pi]++;
            pthread_mutex_unlock(&l->ring.mu);
            ahead_use(l, rd, &a, &j);
            fetch_ahead(l, rd);
            while (reap(l, rd, false) > 0)
                ;
            continue;
        }
        /* a lazy dataset: the block's shard index first, fetched (remote) or read here (local); a
         * block whose index cannot be read fails as an unreadable block, taking no ring space */
        char iwhy[SP_ERRMSG_MAX];
        int irc = SP_OK;
        index_ahead(l, rd, plan, wi, k);
        uint32_t shard = l->tab.block_shard[j.block];
        if (l->tab.lazy && !l->tab.opened[shard] && !block_remote(l, j.block)) {
            irc = local_index(l, rd, shard, iwhy, sizeof iwhy);
        } else if (l->tab.lazy && !l->tab.opened[shard] &&
                   (irc = shard_ready(l, rd, shard, iwhy, sizeof iwhy)) == SP_ECANCELED) {
            return false;
        }
        uint64_t len = irc ? 0 : sp_align_up(l->tab.block_entry[j.block]->stored_size, LD_PAGE);
        pthread_mutex_lock(&l->ring.mu);
        int64_t idx = -1; /* set by ring_alloc unless stop */
        while (!l->ring.stop && (idx = ring_alloc(l, len, &j.buf)) < 0)
            reader_wait(l, rd, SPT_SPACE_WAIT);
        if (l->ring.stop) {
            pthread_mutex_unlock(&l->ring.mu);
            return false;
        }
        j.region = (uint32_t)idx;
        l->ring.pending++;
        l->ring.rpending[pi]++;
        pthread_mutex_unlock(&l->ring.mu);
        if (irc) {
            read_failed(l, &j, irc, iwhy);
            continue;
        }
        while (io_full(l, remote) && !reader_stopping(l))
            reader_wait_io(l, rd);
        submit(l, rd, &j);
        fetch_ahead(l, rd);
        while (reap(l, rd, false) > 0)
            ;
    }
    return ok;
}

/* Plans epoch e, whose global batch 0 is base, into plan slot e % 2 (the blocks of the plan it
 * held all decoded); SP_OK or the failure with why. */
static int plan_into(sp_loader *l, uint64_t e, uint64_t base, char *why, size_t whylen)
{
    uint32_t pi = (uint32_t)(e % 2);
    ld_plan_free(&l->rdr.rplan[pi]);
    uint64_t t0 = sp_trace_begin(l->trace, SPT_PLAN);
    int rc = ld_epoch_plan(l, e, &l->rdr.rplan[pi], why, whylen);
    sp_trace_end(l->trace, LD_TRACK_READER, SPT_PLAN, t0, e);
    if (rc == SP_OK)
        ld_cache_plan(l, pi, e);
    pthread_mutex_lock(&l->ring.mu);
    l->rdr.rbase[pi] = base;
    l->rdr.rlo[pi] = e == l->rdr.run_epoch ? l->rdr.run_k * l->cfg.batch : 0;
    pthread_mutex_unlock(&l->ring.mu);
    return rc;
}

/* Plans epoch e into plan slot pi once the blocks of the plan it held are all decoded (at once
 * when fetching ahead planned it already). */
static bool plan_epoch(sp_loader *l, ld_reader *rd, uint64_t e, uint64_t base)
{
    uint32_t pi = (uint32_t)(e % 2);
    bool early = rd->early_e == e && rd->early_rc == SP_OK;
    rd->early_e = UINT64_MAX;
    rd->cur_e = e;
    rd->cur_base = base;
    if (early)
        return true;
    if (!wait_drained(l, rd, &l->ring.rpending[pi]))
        return false;
    char why[SP_ERRMSG_MAX];
    int rc = plan_into(l, e, base, why, sizeof why);
    if (rc) {
        pthread_mutex_lock(&l->ring.mu);
        fail_batch_locked(l, base, rc, why);
        pthread_mutex_unlock(&l->ring.mu);
    }
    return rc == SP_OK;
}

/* Reads epoch after epoch, from (run_epoch, run_k), until the last epoch or a stop: the next
 * epoch's first windows are read while the consumer still works through this one's batches. */
static void read_epochs(sp_loader *l, ld_reader *rd)
{
    uint64_t base = l->rdr.run_base;
    for (uint64_t e = l->rdr.run_epoch; l->cfg.epochs == 0 || e < l->cfg.epochs; e++) {
        if (!plan_epoch(l, rd, e, base))
            return;
        uint32_t pi = (uint32_t)(e % 2);
        const ld_plan *plan = &l->rdr.rplan[pi];
        uint64_t lo = l->rdr.rlo[pi], hi = plan->samples;
        /* Windows in order of their first position; with several partitions a rank's windows
         * overlap, so every one that reaches past lo is read. */
        for (uint64_t wi = 0; wi < plan->nwindows; wi++)
            if (plan->win[wi].end > lo && plan->win[wi].start < hi && !read_window(l, rd, pi, wi))
                return;
        base += plan->nbatches;
    }
}

static void *reader_main(void *arg)
{
    sp_loader *l = arg;
    ld_reader *rd = sp_calloc(1, sizeof *rd);
    double t0 = sp_now();
    if (rd) {
        rd->await = UINT64_MAX;
        rd->cur_e = rd->early_e = UINT64_MAX;
        read_epochs(l, rd);
        while (io_inflight(l)) {
            if (l->rdr.rf && reader_stopping(l))
                rm_fetch_cancel(l->rdr.rf); /* a stop does not wait for transfers and their retries */
            reap(l, rd, true);
        }
    }
    pthread_mutex_lock(&l->ring.mu);
    if (!rd)
        fail_batch_locked(l, 0, SP_ENOMEM, "out of memory starting the reader");
    l->stats.s.read_busy_s += sp_now() - t0 - (rd ? rd->wait_s : 0);
    l->ring.reader_done = true;
    pthread_cond_broadcast(&l->ring.c_worker);
    pthread_cond_broadcast(&l->ring.c_consumer);
    pthread_mutex_unlock(&l->ring.mu);
    sp_free(rd);
    return NULL;
}

/* ---------------------------------------------------------------- start and stop */

static void reset_epoch_state(sp_loader *l)
{
    /* A batch the consumer still holds stays leased: its slot is reused only after release (which
     * may come from any thread, hence mu). */
    pthread_mutex_lock(&l->ring.mu);
    l->ring.slots_in_use = 0;
    l->ring.nfree = 0;
    for (uint64_t i = l->ring.nslots; i-- > 0;) { /* slot 0 on top: the ring reuses its first slots */
        if (l->ring.slots[i].state != SLOT_LEASED) {
            l->ring.slots[i].state = SLOT_FREE;
            l->ring.free_slots[l->ring.nfree++] = (uint32_t)i;
        } else {
            l->ring.slots_in_use++;
        }
        l->ring.slots[i].k = UINT64_MAX;
    }
    l->stats.s.batch_ring_in_use = l->ring.slots_in_use;
    l->rdr.run_base = 0; /* any slot free serves any batch: the numbering need not dodge the held ones */
    pthread_mutex_unlock(&l->ring.mu);
    l->ring.win_remaining[0] = l->ring.win_remaining[1] = 0;
    l->ring.reg_head = l->ring.reg_count = 0;
    l->ring.ring_head = l->ring.ring_tail = 0;
    l->ring.job_head = l->ring.job_count = 0;
    l->ring.part_head = l->ring.part_count = 0;
    l->ring.dec_nfree = (uint32_t)l->cfg.threads;
    for (uint32_t k = 0; k < l->ring.dec_nfree; k++)
        l->ring.dec_free[k] = k;
    l->ring.active = 0;
    l->ring.pending = 0;
    l->ring.reader_blocked = false;
    l->rdr.run_epoch = l->cons.epoch;
    l->rdr.run_k = l->cons.start_k;
    l->cons.cons_base = l->rdr.run_base;
    l->rdr.next_assign = l->rdr.run_base + l->cons.start_k;
    l->ring.rpending[0] = l->ring.rpending[1] = 0;
    l->fail.batch = UINT64_MAX;
    l->fail.code = 0;
    l->fail.msg[0] = '\0';
    l->ring.reader_done = false;
    l->ring.stop = false;
    pthread_mutex_lock(&l->ring.mu); /* stats are read from any thread */
    l->stats.s.batches_ready = 0;
    pthread_mutex_unlock(&l->ring.mu);
}

int ld_pipeline_start(sp_loader *l)
{
    reset_epoch_state(l);
    ld_cache_reset(l);
    for (int i = 0; i < l->cfg.threads; i++) {
        ld_worker *wk = sp_malloc(sizeof *wk);
        if (!wk)
            return sp_fail(l->cons.eb, SP_ENOMEM, "out of memory starting workers");
        *wk = (ld_worker){ l, i };
        int e = pthread_create(&l->thr.workers[i], NULL, worker_main, wk);
        if (e) {
            sp_free(wk);
            return sp_fail(l->cons.eb, SP_ESYS, "cannot start decode worker %d: %s", i, strerror(e));
        }
        l->thr.nworkers++;
    }
    int e = pthread_create(&l->thr.reader, NULL, reader_main, l);
    if (e)
        return sp_fail(l->cons.eb, SP_ESYS, "cannot start the reader thread: %s", strerror(e));
    l->thr.reader_up = true;
    l->thr.running = true;
    return SP_OK;
}

/* Joins every thread; called without mu held. In-flight reads finish before the reader exits. */
void ld_pipeline_stop(sp_loader *l)
{
    pthread_mutex_lock(&l->ring.mu);
    l->ring.stop = true;
    pthread_cond_broadcast(&l->ring.c_reader);
    pthread_cond_broadcast(&l->ring.c_worker);
    pthread_mutex_unlock(&l->ring.mu);
    if (l->rdr.rf)
        rm_fetch_wakeup(l->rdr.rf); /* the reader may be waiting in curl_multi_poll */
    if (l->thr.reader_up)
        pthread_join(l->thr.reader, NULL);
    for (int i = 0; i < l->thr.nworkers; i++)
        pthread_join(l->thr.workers[i], NULL);
    if (l->rdr.rf)
        rm_fetch_park(l->rdr.rf); /* the receive threads end with the others (the reader reaped every read) */
    l->thr.reader_up = false;
    l->thr.nworkers = 0;
    l->thr.running = false;
    l->ring.stop = false;
}
