/* wr_writer.c - builds blocks from samples, compresses them on a pool of threads, writes them in
 * order into shards that rotate at a target size, and publishes the dataset atomically.
 *
 * Threads: the caller's thread owns the block builder, the shard file and everything written to
 * disk; worker threads only turn a sealed raw block into its stored form. Jobs travel through a
 * fixed ring, so memory is bounded by (ring size) x (block size) whatever the input size. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fmt.h"
#include "rm.h"
#include "sp_file.h"
#include "wr.h"

enum { JOB_FREE, JOB_PENDING, JOB_TAKEN, JOB_DONE };

typedef struct wr_job {
    int state;
    int rc;
    uint8_t *raw;    /* sealed raw block */
    uint8_t *stored; /* compressed form, or NULL when stored raw */
    uint64_t raw_size, stored_size;
    uint32_t nsamples;
    int codec;
    uint64_t checksum, raw_checksum;
    char err[SP_ERRMSG_MAX];
} wr_job;

/* The largest images of one image field, written at finish into the manifest's "image_sizes"
 * (shardpack.h), from which the loader sizes its decoders' buffers. */
typedef struct wr_img_sizes {
    uint64_t width, height, pixels;
    uint64_t whole; /* the most whole-image memory one needs: a JPEG's coefficients (were it
                     * progressive), an interlaced PNG's rows */
    bool webp;      /* libwebp's planes: the loader keeps max_image_memory for those */
    bool unknown;   /* a value that is no image (validate_images=false): nothing is written */
} wr_img_sizes;

/* One field's column while a block is being built. */
typedef struct wr_column {
    sp_buf data;
    sp_buf offsets; /* uint32 per sample end, variable fields only */
} wr_column;

struct sp_writer {
    sp_errbuf eb;
    char *dir;
    sp_schema schema;
    fmt_meta meta;
    uint64_t schema_bytes, meta_bytes; /* encoded sizes, for the shard size */
    int64_t shard_size, block_size, max_block;
    uint64_t max_sample; /* max_sample_bytes */
    int level, compress, overwrite;
    bool validate_images; /* image fields must pass sp_image_probe */
    uint64_t max_pixels;  /* ... within this many pixels */
    uint64_t dataset_id;
    int64_t max_shards;
    wr_staging staging;
    bool failed, finished;
    int pid; /* the process that opened it (sp_proc_self): a forked child has none of its threads */
    atomic_int abort_req; /* sp_writer_abort: set from any thread or a signal handler */

    wr_img_sizes img[SP_MAX_FIELDS];

    /* block builder */
    wr_column col[SP_MAX_FIELDS];
    uint32_t nrows;
    uint64_t var_bytes;

    /* compression pool */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    wr_job *ring;
    size_t ring_cap, head, tail, next_take;
    bool stop;
    pthread_t *threads;
    int nthreads;

    /* current shard */
    int fd;
    uint64_t offset;
    fmt_block_entry *blocks;
    size_t nblocks, blocks_cap;
    uint64_t shard_samples;

    /* published so far */
    fmt_manifest man;
    size_t man_shards_cap, man_blocks_cap;
    char shard_path[4096]; /* the shard being written */

    sp_write_stats st;

    /* publishing to s3:// (dir is its URL): staged and published in a local directory first,
     * then uploaded shard by shard, the manifest last */
    rm_site *site;
    char *upload_tmp; /* the private local directory; the dataset is its "ds" */
    char local[4200]; /* upload_tmp/ds */
};

static int wfail(sp_writer *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int wfail(sp_writer *w, int code, const char *fmt, ...)
{
    char msg[SP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sp_fail(&w->eb, code, "%s: %s", w->dir, msg);
}

/* ---------------------------------------------------------------- compression workers */

static void job_compress(sp_writer *w, wr_job *j, ZSTD_CCtx *cctx)
{
    j->raw_checksum = sp_checksum64(j->raw, j->raw_size);
    j->codec = SP_CODEC_STORED;
    j->stored_size = j->raw_size;
    if (w->compress != SP_COMPRESS_NONE) {
        size_t bound = ZSTD_compressBound(j->raw_size);
        j->stored = sp_malloc(bound);
        if (!j->stored) {
            j->rc = SP_ENOMEM;
            snprintf(j->err, sizeof j->err, "out of memory for a %zu-byte compression buffer", bound);
            return;
        }
        size_t r = ZSTD_compressCCtx(cctx, j->stored, bound, j->raw, j->raw_size, w->level);
        if (ZSTD_isError(r)) {
            j->rc = SP_EIO;
            snprintf(j->err, sizeof j->err, "zstd: %s", ZSTD_getErrorName(r));
            return;
        }
        /* auto keeps zstd only when it saves at least 3%: JPEG bytes barely compress, and storing
         * them raw spares every reader a decompression pass. */
        bool keep = w->compress == SP_COMPRESS_ZSTD ? r < j->raw_size : r * 100 <= j->raw_size * 97;
        if (keep) {
            j->codec = SP_CODEC_ZSTD;
            j->stored_size = r;
        } else {
            sp_free(j->stored);
            j->stored = NULL;
        }
    }
    j->checksum = j->codec == SP_CODEC_ZSTD ? sp_checksum64(j->stored, j->stored_size) : j->raw_checksum;
}

static void *worker_main(void *arg)
{
    sp_writer *w = arg;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->next_take == w->tail)
            pthread_cond_wait(&w->work, &w->mu);
        if (w->stop)
            break;
        wr_job *j = &w->ring[w->next_take % w->ring_cap];
        w->next_take++;
        j->state = JOB_TAKEN;
        pthread_mutex_unlock(&w->mu);
        if (cctx)
            job_compress(w, j, cctx);
        else {
            j->rc = SP_ENOMEM;
            snprintf(j->err, sizeof j->err, "out of memory for a zstd context");
        }
        pthread_mutex_lock(&w->mu);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

/* The workers start with every signal blocked (a thread inherits its creator's mask), so the
 * process's handlers run on the application's threads only: a handler calling sp_writer_abort
 * never runs on a thread that sp_writer_destroy is about to join. */
static int pool_start(sp_writer *w, int n)
{
    w->ring_cap = (size_t)n * 2 + 1;
    w->ring = sp_calloc(w->ring_cap, sizeof *w->ring);
    w->threads = sp_calloc((size_t)n, sizeof *w->threads);
    if (!w->ring || !w->threads)
        return wfail(w, SP_ENOMEM, "out of memory for %d compression threads", n);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = 0;
    for (; w->nthreads < n; w->nthreads++)
        if ((e = pthread_create(&w->threads[w->nthreads], NULL, worker_main, w)))
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
        return wfail(w, SP_ESYS, "cannot start compression thread: %s", strerror(e));
    return SP_OK;
}

static void pool_stop(sp_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    w->nthreads = 0;
    for (size_t i = 0; w->ring && i < w->ring_cap; i++) {
        sp_free(w->ring[i].raw);
        sp_free(w->ring[i].stored);
    }
    sp_free(w->ring);
    sp_free(w->threads);
    w->ring = NULL;
    w->threads = NULL;
}

/* ---------------------------------------------------------------- shard files */

/* Shards are written under their final names inside the staging directory; the trailer, written
 * last, is what makes one readable, and the directory is published only when all are done. */
static int shard_begin(sp_writer *w)
{
    uint64_t no = w->man.nshards;
    if (no >= (uint64_t)w->max_shards)
        return wfail(w, SP_ELIMIT, "more than max_shards (%lld) shards; raise shard_size", (long long)w->max_shards);
    if (no >= w->man_shards_cap) {
        size_t cap = w->man_shards_cap ? w->man_shards_cap * 2 : 16;
        fmt_manifest_shard *s = sp_realloc(w->man.shards, cap * sizeof *s);
        if (!s)
            return wfail(w, SP_ENOMEM, "out of memory for the shard list");
        w->man.shards = s;
        w->man_shards_cap = cap;
    }
    w->man.shards[no] = (fmt_manifest_shard){ 0 };
    char name[64];
    snprintf(name, sizeof name, SHARD_NAME_FMT, (unsigned long long)no);
    wr_staging_path(&w->staging, name, w->shard_path, sizeof w->shard_path);
    w->fd = wr_staging_create(&w->staging, name);
    if (w->fd < 0) {
        int e = -w->fd;
        w->fd = -1;
        return wfail(w, SP_EIO, "cannot create %s: %s", w->shard_path, strerror(e));
    }
    uint8_t *page = sp_calloc(1, FMT_ALIGN);
    if (!page)
        return wfail(w, SP_ENOMEM, "out of memory");
    fmt_header_encode(page, &(fmt_header){ w->dataset_id, (uint32_t)no, FMT_ALIGN });
    int rc = sp_write_all(w->fd, page, FMT_ALIGN);
    sp_free(page);
    if (rc)
        return wfail(w, SP_EIO, "cannot write %s: %s", w->shard_path, strerror(-rc));
    w->offset = FMT_ALIGN;
    w->nblocks = 0;
    w->shard_samples = 0;
    return SP_OK;
}

static int manifest_add_blocks(sp_writer *w)
{
    size_t need = w->man.nblocks + w->nblocks;
    if (need > w->man_blocks_cap) {
        size_t cap = w->man_blocks_cap ? w->man_blocks_cap : 256;
        while (cap < need)
            cap *= 2;
        uint32_t *b = sp_realloc(w->man.block_samples, cap * sizeof *b);
        if (!b)
            return wfail(w, SP_ENOMEM, "out of memory for the block list");
        w->man.block_samples = b;
        w->man_blocks_cap = cap;
    }
    for (size_t i = 0; i < w->nblocks; i++)
        w->man.block_samples[w->man.nblocks++] = w->blocks[i].nsamples;
    return SP_OK;
}

/* Writes the index and trailer, fsyncs and closes the shard. */
static int shard_end(sp_writer *w)
{
    uint64_t no = w->man.nshards;
    const char *tmp = w->shard_path;
    sp_buf b = { 0 };
    fmt_index_encode(&(fmt_header){ w->dataset_id, (uint32_t)no, FMT_ALIGN }, &w->schema, &w->meta,
                     w->blocks, w->nblocks, w->shard_samples, &b);
    if (b.failed) {
        sp_buf_free(&b);
        return wfail(w, SP_ENOMEM, "out of memory for the index");
    }
    fmt_trailer t = { w->offset, b.len, sp_checksum64(b.data, b.len), w->offset + b.len + FMT_TRAILER_BYTES,
                      w->nblocks, w->shard_samples };
    uint8_t tr[FMT_TRAILER_BYTES];
    fmt_trailer_encode(tr, &t);
    int rc = sp_write_all(w->fd, b.data, b.len);
    if (!rc)
        rc = sp_write_all(w->fd, tr, sizeof tr);
    if (!rc && fsync(w->fd) != 0)
        rc = -errno;
    sp_buf_free(&b);
    if (close(w->fd) != 0 && !rc)
        rc = -errno;
    w->fd = -1;
    if (rc)
        return wfail(w, SP_EIO, "cannot write %s: %s", tmp, strerror(-rc));
    w->man.shards[no] = (fmt_manifest_shard){ NULL, t.file_size, w->nblocks, w->shard_samples, t.index_checksum, 0, 0 };
    for (size_t i = 0; i < w->nblocks; i++) { /* what a loader sizes its buffers by, before any index */
        const fmt_block_entry *be = &w->blocks[i];
        fmt_manifest_shard *ms = &w->man.shards[no];
        if (be->stored_size > ms->max_stored)
            ms->max_stored = be->stored_size;
        if (be->codec != SP_CODEC_STORED && be->raw_size > ms->max_raw)
            ms->max_raw = be->raw_size;
    }
    if ((rc = manifest_add_blocks(w)))
        return rc;
    w->man.nshards++;
    w->man.nsamples += w->shard_samples;
    w->st.shards++;
    w->st.file_bytes += t.index_size + FMT_TRAILER_BYTES;
    return SP_OK;
}

/* Exact size of the index of a shard of nblocks blocks (fmt_index_encode's layout). */
static uint64_t index_bytes(const sp_writer *w, size_t nblocks)
{
    return sp_align_up(FMT_INDEX_HEADER_BYTES + w->schema_bytes + w->meta_bytes, 8) +
           (uint64_t)nblocks * FMT_BLOCK_ENTRY_BYTES;
}

static int shard_put_block(sp_writer *w, wr_job *j)
{
    int rc;
    uint64_t padded = sp_align_up(j->stored_size, FMT_ALIGN);
    if (w->fd >= 0 && w->nblocks > 0 &&
        w->offset + padded + index_bytes(w, w->nblocks + 1) + FMT_TRAILER_BYTES > (uint64_t)w->shard_size &&
        (rc = shard_end(w)))
        return rc;
    if (w->fd < 0 && (rc = shard_begin(w)))
        return rc;
    if (w->nblocks == w->blocks_cap) {
        size_t cap = w->blocks_cap ? w->blocks_cap * 2 : 64;
        fmt_block_entry *b = sp_realloc(w->blocks, cap * sizeof *b);
        if (!b)
            return wfail(w, SP_ENOMEM, "out of memory for block entries");
        w->blocks = b;
        w->blocks_cap = cap;
    }
    static const uint8_t zeros[FMT_ALIGN];
    struct iovec iov[2] = { { j->codec == SP_CODEC_ZSTD ? j->stored : j->raw, j->stored_size },
                            { (void *)zeros, padded - j->stored_size } };
    for (int i = 0; i < 2; i++)
        if ((rc = sp_write_all(w->fd, iov[i].iov_base, iov[i].iov_len)))
            return wfail(w, SP_EIO, "cannot write %s: %s", w->shard_path, strerror(-rc));
    w->blocks[w->nblocks++] = (fmt_block_entry){ w->offset, w->shard_samples, (uint32_t)j->stored_size,
                                                 (uint32_t)j->raw_size, j->nsamples, (uint8_t)j->codec,
                                                 j->checksum, j->raw_checksum };
    /* Start writeback now, block by block, so the fsync that publishes the shard finds little
     * left to do instead of flushing the whole shard at once. */
    sync_file_range(w->fd, (off_t)w->offset, (off_t)padded, SYNC_FILE_RANGE_WRITE);
    w->offset += padded;
    w->shard_samples += j->nsamples;
    w->st.blocks++;
    w->st.blocks_stored_raw += j->codec == SP_CODEC_STORED;
    w->st.stored_bytes += j->stored_size;
    w->st.file_bytes += padded + (w->nblocks == 1 ? FMT_ALIGN : 0);
    return SP_OK;
}

/* SP_ECANCELED once sp_writer_abort was called; the writer is failed from then on. */
static int check_abort(sp_writer *w)
{
    if (!atomic_load(&w->abort_req))
        return SP_OK;
    w->failed = true;
    return wfail(w, SP_ECANCELED, "stopped by sp_writer_abort; nothing was published");
}

enum { DRAIN_READY, DRAIN_ONE, DRAIN_ALL };

/* Writes finished jobs at the head of the ring, in order: those ready now (DRAIN_READY), at least
 * one, waiting for it (DRAIN_ONE, when the ring is full), or every queued job (DRAIN_ALL). */
static int drain(sp_writer *w, int mode)
{
    int rc = SP_OK;
    bool wait = mode != DRAIN_READY;
    pthread_mutex_lock(&w->mu);
    while (w->head != w->tail) {
        wr_job *j = &w->ring[w->head % w->ring_cap];
        if (j->state != JOB_DONE && !wait)
            break;
        while (j->state != JOB_DONE)
            pthread_cond_wait(&w->done, &w->mu);
        pthread_mutex_unlock(&w->mu);
        rc = check_abort(w);
        if (!rc)
            rc = j->rc ? wfail(w, j->rc, "%s", j->err) : shard_put_block(w, j);
        sp_free(j->raw);
        sp_free(j->stored);
        *j = (wr_job){ .state = JOB_FREE };
        pthread_mutex_lock(&w->mu);
        w->head++;
        if (rc)
            break;
        wait = mode == DRAIN_ALL;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* ---------------------------------------------------------------- block builder */

/* Exact raw size of the block being built, with the sample `add` appended when it is not NULL. */
static uint64_t builder_raw_size(const sp_writer *w, const sp_value *add)
{
    uint64_t n = 0, rows = (uint64_t)w->nrows + (add != NULL);
    for (size_t f = 0; f < w->schema.n; f++) {
        n = sp_align_up(n, 8);
        const sp_field *fd = &w->schema.f[f];
        if (fd->fixed_bytes)
            n += fd->fixed_bytes * rows;
        else
            n += 4 * (rows + 1) + w->col[f].data.len + (add ? add[f].size : 0);
    }
    return n;
}

/* Raw size of a block holding only the sample v. */
static uint64_t single_sample_size(const sp_writer *w, const sp_value *v)
{
    uint64_t n = 0;
    for (size_t f = 0; f < w->schema.n; f++) {
        n = sp_align_up(n, 8);
        n += w->schema.f[f].fixed_bytes ? w->schema.f[f].fixed_bytes : 8 + v[f].size;
    }
    return n;
}

/* Lays the columns out as the format prescribes (fmt_block_parse reads exactly this). */
static int builder_seal(sp_writer *w, wr_job *j)
{
    uint64_t size = builder_raw_size(w, NULL);
    uint8_t *raw = sp_malloc(size);
    if (!raw)
        return wfail(w, SP_ENOMEM, "out of memory for a %llu-byte block", (unsigned long long)size);
    uint64_t pos = 0;
    for (size_t f = 0; f < w->schema.n; f++) {
        uint64_t start = sp_align_up(pos, 8);
        memset(raw + pos, 0, start - pos);
        pos = start;
        wr_column *c = &w->col[f];
        if (!w->schema.f[f].fixed_bytes) {
            sp_st32(raw + pos, 0);
            memcpy(raw + pos + 4, c->offsets.data, c->offsets.len);
            pos += 4 + c->offsets.len;
        }
        if (c->data.len)
            memcpy(raw + pos, c->data.data, c->data.len);
        pos += c->data.len;
        c->data.len = 0;
        c->offsets.len = 0;
    }
    if (pos != size) {
        sp_free(raw);
        return wfail(w, SP_EIO, "internal error: block layout %llu != %llu", (unsigned long long)pos,
                     (unsigned long long)size);
    }
    *j = (wr_job){ .state = JOB_PENDING, .raw = raw, .raw_size = size, .nsamples = w->nrows };
    w->st.raw_bytes += size;
    w->nrows = 0;
    w->var_bytes = 0;
    return SP_OK;
}

/* Seals the current block and queues it, writing finished blocks while the ring is full. */
static int flush_block(sp_writer *w)
{
    if (w->nrows == 0)
        return SP_OK;
    int rc;
    if (w->tail - w->head == w->ring_cap && (rc = drain(w, DRAIN_ONE)))
        return rc;
    wr_job j;
    if ((rc = builder_seal(w, &j)))
        return rc;
    pthread_mutex_lock(&w->mu);
    w->ring[w->tail % w->ring_cap] = j;
    w->tail++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    return drain(w, DRAIN_READY);
}

/* A JPEG's coefficients, 2 bytes a sample, every component counted at full size and padded to the
 * largest MCU: what libjpeg keeps of it were it progressive (at least; the loader adds headroom). */
static uint64_t jpeg_whole_bytes(const sp_image_info *in)
{
    return 2ull * (uint64_t)in->components * ((uint64_t)in->width + 31) * ((uint64_t)in->height + 31);
}

static void note_image(wr_img_sizes *z, const sp_image_info *in)
{
    uint64_t w = (uint64_t)in->width, h = (uint64_t)in->height;
    uint64_t whole = in->format == SP_IMAGE_FORMAT_JPEG                      ? jpeg_whole_bytes(in)
                     : in->format == SP_IMAGE_FORMAT_PNG && in->progressive ? w * h * 4
                                                                             : 0;
    z->width = w > z->width ? w : z->width;
    z->height = h > z->height ? h : z->height;
    z->pixels = w * h > z->pixels ? w * h : z->pixels;
    z->whole = whole > z->whole ? whole : z->whole;
    z->webp |= in->format == SP_IMAGE_FORMAT_WEBP;
}

/* An image field takes only what the loader can decode: a GIF or a damaged header stored as an
 * image would pass verify (its checksums are right) and fail every epoch of training instead.
 * Without validate_images the value is only measured: one that is no image leaves the field's
 * sizes unknown. */
static int check_image(sp_writer *w, size_t f, const sp_field *fd, const sp_value *v)
{
    sp_image_info info = { .struct_size = sizeof info };
    int rc = v->size ? sp_image_probe(v->data, v->size, w->max_pixels, &info) : SP_EBADINPUT;
    if (rc == SP_OK)
        note_image(&w->img[f], &info);
    if (rc == SP_OK || !w->validate_images) {
        w->img[f].unknown |= rc != SP_OK;
        sp_clear_error();
        return SP_OK;
    }
    char why[SP_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", v->size ? sp_last_error() : "empty");
    if (rc == SP_ENOMEM)
        return wfail(w, rc, "sample %llu field '%s': %s", (unsigned long long)w->st.samples, fd->name, why);
    return wfail(w, SP_EBADINPUT, "sample %llu field '%s': not a decodable image (validate_images): %s",
                 (unsigned long long)w->st.samples, fd->name, why);
}

static int check_values(sp_writer *w, const sp_value *v, size_t nv, uint64_t *var)
{
    if (nv != w->schema.n)
        return wfail(w, SP_ESCHEMA, "sample %llu has %zu values, the schema has %zu fields",
                     (unsigned long long)w->st.samples, nv, w->schema.n);
    *var = 0;
    for (size_t f = 0; f < nv; f++) {
        const sp_field *fd = &w->schema.f[f];
        if (v[f].size && !v[f].data)
            return wfail(w, SP_EINVAL, "sample %llu field '%s': NULL data", (unsigned long long)w->st.samples,
                         fd->name);
        if (fd->fixed_bytes && v[f].size != fd->fixed_bytes)
            return wfail(w, SP_ESCHEMA, "sample %llu field '%s': %zu bytes, the schema says %llu",
                         (unsigned long long)w->st.samples, fd->name, v[f].size,
                         (unsigned long long)fd->fixed_bytes);
        /* One value above the limit is refused before it is summed: a caller's (size_t)-1 added to
         * the other sizes would wrap past 2^64 and slip under it. With every value at most
         * max_sample_bytes (under 2^31) the sums below cannot wrap. */
        if (!fd->fixed_bytes && v[f].size > w->max_sample)
            return wfail(w, SP_ELIMIT, "sample %llu field '%s': %zu bytes, above max_sample_bytes %llu",
                         (unsigned long long)w->st.samples, fd->name, v[f].size, (unsigned long long)w->max_sample);
        if (!fd->fixed_bytes)
            *var += v[f].size;
        int rc = fd->kind == SP_FIELD_IMAGE ? check_image(w, f, fd, &v[f]) : SP_OK;
        if (rc)
            return rc;
    }
    uint64_t one = single_sample_size(w, v);
    if (one > w->max_sample)
        return wfail(w, SP_ELIMIT, "sample %llu is %llu bytes, above max_sample_bytes %llu",
                     (unsigned long long)w->st.samples, (unsigned long long)one, (unsigned long long)w->max_sample);
    if (one > (uint64_t)w->max_block)
        return wfail(w, SP_ELIMIT, "sample %llu is %llu bytes, above max_block_bytes %lld",
                     (unsigned long long)w->st.samples, (unsigned long long)one, (long long)w->max_block);
    return SP_OK;
}

int sp_writer_add(sp_writer *w, const sp_value *values, size_t nvalues)
{
    sp_clear_error();
    if (!w || (!values && nvalues))
        return sp_fail(NULL, SP_EINVAL, "sp_writer_add: NULL argument");
    int rc = sp_proc_check(w->pid, "sp_writer_add", "writer");
    if (rc)
        return rc;
    w->eb.msg[0] = '\0';
    if (w->failed || w->finished)
        return wfail(w, SP_ESTATE, "writer has %s", w->finished ? "finished" : "failed");
    rc = check_abort(w);
    if (rc)
        return rc;
    uint64_t var = 0;
    rc = check_values(w, values, nvalues, &var);
    if (rc)
        return rc;
    if (w->nrows && (builder_raw_size(w, values) > (uint64_t)w->block_size ||
                     w->var_bytes + var > UINT32_MAX || w->nrows == FMT_MAX_BLOCK_SAMPLES) &&
        (rc = flush_block(w))) {
        w->failed = true;
        return rc;
    }
    for (size_t f = 0; f < nvalues; f++) {
        wr_column *c = &w->col[f];
        sp_buf_put(&c->data, values[f].data, values[f].size);
        if (!w->schema.f[f].fixed_bytes)
            sp_buf_u32(&c->offsets, (uint32_t)c->data.len);
        if (c->data.failed || c->offsets.failed) {
            w->failed = true;
            return wfail(w, SP_ENOMEM, "out of memory building a block");
        }
        w->st.field_raw_bytes[f] += values[f].size;
    }
    w->nrows++;
    w->var_bytes += var;
    w->st.samples++;
    return SP_OK;
}

/* ---------------------------------------------------------------- open, finish, destroy */

/* ---------------------------------------------------------------- publishing to S3 */

/* dir's URL without trailing '/' in w->dir; the site; a dataset already there refused unless
 * overwrite (which also finds bad credentials before any work); the local directory. */
static int remote_open(sp_writer *w, const sp_params *params)
{
    size_t n = strlen(w->dir);
    while (n > 0 && w->dir[n - 1] == '/')
        w->dir[--n] = '\0';
    int rc = rm_site_open(w->dir, params, &w->site, &w->eb);
    if (rc)
        return rc;
    if (!rm_site_is_s3(w->site))
        return sp_fail(&w->eb, SP_ENOTSUP, "%s: a dataset is published to a directory or to s3://, not over http(s)",
                       w->dir);
    char *murl = rm_join(w->dir, MANIFEST_NAME);
    rm_obj mo;
    rc = murl ? rm_obj_init(w->site, murl, &mo, &w->eb) : sp_fail(&w->eb, SP_ENOMEM, "out of memory");
    sp_free(murl);
    if (rc)
        return rc;
    rc = rm_exists(w->site, &mo, &w->eb);
    rm_obj_free(&mo);
    if (rc < 0)
        return rc;
    if (rc == 1 && !w->overwrite)
        return sp_fail(&w->eb, SP_EEXIST, "%s: a dataset is there already (its %s); set overwrite to replace it",
                       w->dir, MANIFEST_NAME);
    const char *tmp = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/shardpack-upload-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl))
        return sp_fail(&w->eb, SP_EIO, "%s: cannot make a local directory to stage it in (%s): %s", w->dir, tmpl,
                       strerror(errno));
    if (!(w->upload_tmp = sp_strdup(tmpl))) {
        rmdir(tmpl);
        return sp_fail(&w->eb, SP_ENOMEM, "out of memory");
    }
    snprintf(w->local, sizeof w->local, "%s/ds", tmpl);
    return SP_OK;
}

/* Uploads the published local dataset: every shard, then the manifest, so that a reader never
 * sees a manifest whose shards are not all there. */
static int remote_publish(sp_writer *w)
{
    char name[64], path[4600];
    int rc = SP_OK;
    uint64_t i;
    for (i = 0; rc == SP_OK && i <= w->man.nshards; i++) {
        if (i < w->man.nshards)
            snprintf(name, sizeof name, SHARD_NAME_FMT, (unsigned long long)i);
        else
            snprintf(name, sizeof name, "%s", MANIFEST_NAME);
        snprintf(path, sizeof path, "%s/%s", w->local, name);
        char *url = rm_join(w->dir, name);
        rm_obj o;
        rc = url ? rm_obj_init(w->site, url, &o, &w->eb) : sp_fail(&w->eb, SP_ENOMEM, "out of memory");
        sp_free(url);
        if (rc == SP_OK) {
            rc = check_abort(w);
            if (rc == SP_OK)
                rc = rm_put_file(w->site, &o, path, &w->eb);
            rm_obj_free(&o);
        }
    }
    if (rc) {
        char why[SP_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", w->eb.msg);
        uint64_t up = i - 1; /* shards uploaded before the failure */
        if (up > w->man.nshards)
            up = w->man.nshards;
        return wfail(w, rc, "%s: publishing stopped at %s: %s; no %s was written, so readers do not see it; "
                     "%llu shard(s) uploaded (%s/shard-000000.sps ...): delete them or publish again", w->dir, name, why,
                     MANIFEST_NAME, (unsigned long long)up, w->dir);
    }
    return SP_OK;
}

/* Removes the local copy of a dataset published to S3 (files the writer made, in its own
 * private directory). */
static void remote_cleanup(sp_writer *w)
{
    if (!w->upload_tmp)
        return;
    DIR *dh = opendir(w->local);
    struct dirent *de;
    char path[4600];
    while (dh && (de = readdir(dh))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", w->local, de->d_name);
        unlink(path);
    }
    if (dh)
        closedir(dh);
    rmdir(w->local);
    rmdir(w->upload_tmp);
}

int sp_writer_open(const char *dir, const sp_schema *schema, const sp_params *params, sp_writer **out)
{
    sp_clear_error();
    if (!out)
        return sp_fail(NULL, SP_EINVAL, "sp_writer_open: NULL out");
    *out = NULL;
    if (!dir || !*dir || !schema || schema->n == 0)
        return sp_fail(NULL, SP_EINVAL, "sp_writer_open: a directory and a schema with fields are required");
    sp_writer *w = sp_calloc(1, sizeof *w);
    if (!w || !(w->dir = sp_strdup(dir))) {
        sp_free(w);
        return sp_fail(NULL, SP_ENOMEM, "%s: out of memory", dir);
    }
    w->fd = -1;
    w->pid = sp_proc_self();
    atomic_init(&w->abort_req, 0);
    w->staging.parent_fd = w->staging.dir_fd = -1;
    w->schema = *schema;
    sp_buf enc = { 0 };
    fmt_schema_encode(&w->schema, &enc);
    w->schema_bytes = enc.len;
    sp_buf_free(&enc);
    fmt_meta_encode(&w->meta, &enc);
    w->meta_bytes = enc.len;
    sp_buf_free(&enc);
    w->shard_size = sp_params_get(params, SP_PARAM_SHARD_SIZE);
    w->block_size = sp_params_get(params, SP_PARAM_BLOCK_SIZE);
    w->max_block = sp_params_get(params, SP_PARAM_MAX_BLOCK_BYTES);
    w->max_sample = (uint64_t)sp_params_get(params, SP_PARAM_MAX_SAMPLE_BYTES);
    if (w->block_size > w->max_block)
        w->block_size = w->max_block; /* a block past max_block_bytes would be refused by readers */
    w->level = (int)sp_params_get(params, SP_PARAM_LEVEL);
    w->compress = (int)sp_params_get(params, SP_PARAM_COMPRESS);
    w->overwrite = (int)sp_params_get(params, SP_PARAM_OVERWRITE);
    w->max_shards = sp_params_get(params, SP_PARAM_MAX_SHARDS);
    int nthreads = (int)sp_params_get(params, SP_PARAM_THREADS);
    if (nthreads == 0)
        nthreads = sp_online_cores();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->done, NULL);
    w->validate_images = sp_params_get(params, SP_PARAM_VALIDATE_IMAGES) != 0;
    w->max_pixels = (uint64_t)sp_params_get(params, SP_PARAM_MAX_PIXELS);
    w->dataset_id = (uint64_t)sp_params_get(params, SP_PARAM_DATASET_ID);
    if (w->dataset_id == 0 && getrandom(&w->dataset_id, sizeof w->dataset_id, 0) != sizeof w->dataset_id)
        w->dataset_id = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(sp_now() * 1e9);
    int rc = rm_is_url(dir) ? remote_open(w, params) : SP_OK;
    if (rc == SP_OK)
        rc = wr_staging_open(&w->staging, w->site ? w->local : dir, w->overwrite, &w->eb);
    if (rc == SP_OK)
        rc = pool_start(w, nthreads);
    if (rc) {
        sp_writer_destroy(w);
        return rc;
    }
    *out = w;
    return SP_OK;
}

/* What is wrong with a metadata key (shardpack.h: 1..255 bytes of UTF-8 text without control
 * characters) into why; false when nothing is. */
static bool meta_key_bad(const char *key, size_t n, char *why, size_t whylen)
{
    if (n == 0 || n > FMT_MAX_META_KEY)
        return snprintf(why, whylen, "it is %zu bytes, not 1..%u", n, FMT_MAX_META_KEY), true;
    for (size_t i = 0, len; i < n; i += len)
        if ((len = sp_text_char_len(key + i, n - i)) == 0)
            return snprintf(why, whylen, "byte %zu (0x%02x) is %s", i, (unsigned)(uint8_t)key[i],
                            (uint8_t)key[i] < 0x20 || key[i] == 0x7F ? "a control character"
                                                                      : "not UTF-8 text or a control character"),
                   true;
    return false;
}

int sp_writer_set_meta(sp_writer *w, const char *key, const void *value, size_t len)
{
    sp_clear_error();
    if (!w || !key || (len && !value))
        return sp_fail(NULL, SP_EINVAL, "sp_writer_set_meta: NULL argument");
    int rc = sp_proc_check(w->pid, "sp_writer_set_meta", "writer");
    if (rc)
        return rc;
    w->eb.msg[0] = '\0';
    char shown[4 * FMT_MAX_META_KEY + 1], why[96];
    size_t klen = strlen(key);
    sp_text_escape(key, klen, shown, sizeof shown);
    if (w->finished || w->man.nshards > 0)
        return wfail(w, SP_ESTATE, "metadata '%s' must be set before the first shard is complete", shown);
    if (meta_key_bad(key, klen, why, sizeof why))
        return wfail(w, SP_EINVAL, "metadata key '%s' refused: %s; a key is 1..%u bytes of UTF-8 text without "
                     "control characters", shown, why, FMT_MAX_META_KEY);
    rc = fmt_meta_set(&w->meta, key, value, len);
    if (rc == SP_OK) {
        sp_buf b = { 0 };
        fmt_meta_encode(&w->meta, &b);
        w->meta_bytes = b.len;
        sp_buf_free(&b);
    }
    if (rc == SP_EINVAL)
        return wfail(w, rc, "metadata '%s': a value is at most %u bytes, not %zu", shown, FMT_MAX_META_VALUE, len);
    if (rc)
        return wfail(w, rc, "metadata '%s': %s", shown, sp_strerror(rc));
    return SP_OK;
}

int sp_writer_stats(const sp_writer *w, sp_write_stats *out)
{
    if (!w)
        return sp_fail(NULL, SP_EINVAL, "sp_writer_stats: NULL writer");
    int rc = sp_proc_check(w->pid, "sp_writer_stats", "writer");
    if (rc == SP_OK)
        rc = sp_out_check("sp_writer_stats", "sp_write_stats", out);
    if (rc)
        return rc;
    sp_out_put(out, &w->st, sizeof w->st);
    return SP_OK;
}

/* "image_sizes": a first line "image_sizes 1", then a line a measured image field: its schema
 * index, the widest and tallest image, the most pixels, the most whole-image bytes, and 1 when
 * any is a WebP. Only the manifest carries it: the shards were written before the sizes were
 * known. */
static int image_sizes_meta(sp_writer *w)
{
    char buf[64 * (SP_MAX_FIELDS + 1)];
    size_t len = (size_t)snprintf(buf, sizeof buf, "image_sizes 1\n"), lines = 0;
    for (size_t f = 0; f < w->schema.n; f++) {
        const wr_img_sizes *z = &w->img[f];
        if (w->schema.f[f].kind != SP_FIELD_IMAGE || z->unknown || !z->pixels)
            continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%zu %llu %llu %llu %llu %d\n", f,
                                (unsigned long long)z->width, (unsigned long long)z->height,
                                (unsigned long long)z->pixels, (unsigned long long)z->whole, z->webp);
        lines++;
    }
    if (!lines)
        return SP_OK;
    int rc = fmt_meta_set(&w->meta, "image_sizes", buf, len);
    return rc ? wfail(w, rc, "out of memory for the manifest's image sizes") : SP_OK;
}

static int publish_manifest(sp_writer *w)
{
    if (image_sizes_meta(w) != SP_OK)
        return SP_ENOMEM;
    w->man.dataset_id = w->dataset_id;
    w->man.schema = w->schema;
    char names[64];
    for (uint64_t i = 0; i < w->man.nshards; i++) {
        snprintf(names, sizeof names, SHARD_NAME_FMT, (unsigned long long)i);
        if (!(w->man.shards[i].name = sp_strdup(names)))
            return wfail(w, SP_ENOMEM, "out of memory");
    }
    sp_buf b = { 0 };
    /* Borrowed only for the encode: an early return above must not leave w->man owning it too,
     * or sp_writer_destroy frees the metadata twice. */
    w->man.meta = w->meta;
    fmt_manifest_encode(&w->man, &b);
    w->man.meta = (fmt_meta){ 0 }; /* owned by w->meta */
    if (b.failed) {
        sp_buf_free(&b);
        return wfail(w, SP_ENOMEM, "out of memory for the manifest");
    }
    char final[4096];
    wr_staging_path(&w->staging, MANIFEST_NAME, final, sizeof final);
    int fd = wr_staging_create(&w->staging, MANIFEST_NAME);
    int rc = fd < 0 ? fd : sp_write_all(fd, b.data, b.len);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = -errno;
    sp_buf_free(&b);
    if (rc)
        return wfail(w, SP_EIO, "cannot write %s: %s", final, strerror(-rc));
    return SP_OK;
}

int sp_writer_finish(sp_writer *w)
{
    sp_clear_error();
    if (!w)
        return sp_fail(NULL, SP_EINVAL, "sp_writer_finish: NULL writer");
    int rc = sp_proc_check(w->pid, "sp_writer_finish", "writer");
    if (rc)
        return rc;
    w->eb.msg[0] = '\0';
    if (w->failed || w->finished)
        return wfail(w, SP_ESTATE, "writer has %s", w->finished ? "finished" : "failed");
    if (w->st.samples == 0)
        return wfail(w, SP_EINVAL, "no samples were added; an empty dataset is not published");
    rc = check_abort(w);
    if (!rc)
        rc = flush_block(w);
    if (!rc)
        rc = drain(w, DRAIN_ALL);
    if (!rc && w->fd >= 0)
        rc = shard_end(w);
    if (!rc)
        rc = check_abort(w);
    if (!rc)
        rc = publish_manifest(w);
    if (!rc)
        rc = wr_staging_publish(&w->staging, &w->abort_req, &w->eb); /* checks it once more */
    if (!rc && w->site)
        rc = remote_publish(w);
    if (rc) {
        w->failed = true;
        return rc;
    }
    w->finished = true;
    return SP_OK;
}

void sp_writer_destroy(sp_writer *w)
{
    /* In a forked child: nothing, so that the parent's staging directory, compression threads and
     * descriptors stay its own; the child's copy of the memory goes when the child exits. */
    if (!w || sp_proc_check(w->pid, "sp_writer_destroy", "writer"))
        return;
    pool_stop(w);
    if (w->fd >= 0)
        close(w->fd);
    wr_staging_close(&w->staging); /* removes everything staged unless it was published */
    remote_cleanup(w);
    rm_site_free(w->site);
    sp_free(w->upload_tmp);
    for (size_t f = 0; f < SP_MAX_FIELDS; f++) {
        sp_buf_free(&w->col[f].data);
        sp_buf_free(&w->col[f].offsets);
    }
    fmt_meta_free(&w->meta);
    fmt_manifest_free(&w->man);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    sp_free(w->blocks);
    sp_free(w->dir);
    sp_free(w);
}

void sp_writer_abort(sp_writer *w)
{
    if (w)
        atomic_store(&w->abort_req, 1);
}

int sp_writer_failed(const sp_writer *w)
{
    if (w && sp_proc_check(w->pid, "sp_writer_failed", "writer"))
        return 1; /* a forked child takes no samples with it */
    return w && (w->failed || atomic_load(&w->abort_req));
}

const char *sp_writer_errmsg(const sp_writer *w) { return w ? w->eb.msg : ""; }
