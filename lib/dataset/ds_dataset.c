/* ds_dataset.c - a dataset opened from its manifest (shards opened on first use), from one shard,
 * or from a list of shards; block reads and random access to samples. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fmt.h"
#include "ds.h"
#include "rm.h"
#include "sp_file.h"

/* A manifest larger than this is refused before it is read. */
#define MAX_MANIFEST_BYTES (1ull << 31)
#define DCTX_POOL 16
/* Block reads keep up to a quarter of RLIMIT_NOFILE shard descriptors open, within these. */
#define RD_MIN_FDS 4u
#define RD_MAX_FDS 64u

typedef struct ds_shard {
    char *path;
    fmt_shard *sh; /* NULL until first use */
    int fd;        /* cached for block reads, -1 when closed; under the dataset's mu */
    uint32_t fd_users; /* reads using fd now: it is not closed under them */
    uint64_t fd_tick;  /* last use, for eviction */
    uint64_t file_size, nblocks, nsamples, index_checksum;
    uint64_t first_block, first_sample;
    uint32_t max_stored, max_raw; /* its largest blocks, as its manifest entry records them (0: not) */
    rm_obj obj; /* a remote dataset's: the shard's object (size from the manifest, ETag once read) */
} ds_shard;

struct sp_dataset {
    sp_errbuf eb;
    fmt_limits lim;
    sp_schema schema;
    fmt_meta meta;
    uint64_t dataset_id; /* 0 when opened from shards of mixed origin */
    rm_site *site;       /* a remote dataset's (s3://, http(s)://), else NULL */
    bool from_manifest;
    char *mpath;         /* the manifest read, when from_manifest */
    sp_file_id mid;      /* its identity then */
    uint64_t nshards, nblocks, nsamples, fingerprint;
    uint32_t max_stored, max_raw; /* over all shards, when the manifest records every shard's */
    bool bounds;
    /* A shard index's bytes before its block table (header, schema, metadata, padding) as the
     * manifest's schema and metadata imply; 0 when not from a manifest */
    uint64_t index_head;
    ds_shard *shards;
    uint64_t *block_first; /* nblocks + 1 cumulative sample counts */
    pthread_mutex_t mu;    /* lazy shard opening, the descriptor cache and the context pool */
    struct timespec opened; /* CLOCK_REALTIME_COARSE at open: the clock of file timestamps */
    uint32_t fds_open;
    uint64_t fd_clock;
    ZSTD_DCtx *dctx[DCTX_POOL];
    int ndctx;
};

struct sp_block {
    uint8_t *raw;
    fmt_block_view view;
};

/* "PATH: block B at byte O: why", or without the block part when e->block < 0. */
int ds_fail_at(sp_errbuf *eb, int code, const char *path, const fmt_err *e)
{
    if (e->block >= 0)
        return sp_fail(eb, code, "%s: block %lld at byte %llu: %s", path, (long long)e->block,
                       (unsigned long long)e->offset, e->why);
    return sp_fail(eb, code, "%s: at byte %llu: %s", path, (unsigned long long)e->offset, e->why);
}

static sp_dataset *dataset_new(const sp_params *params)
{
    sp_dataset *d = sp_calloc(1, sizeof *d);
    if (!d)
        return NULL;
    fmt_limits_from_params(&d->lim, params);
    pthread_mutex_init(&d->mu, NULL);
    clock_gettime(CLOCK_REALTIME_COARSE, &d->opened);
    return d;
}

void sp_dataset_close(sp_dataset *d)
{
    if (!d)
        return;
    for (uint64_t i = 0; d->shards && i < d->nshards; i++) {
        if (d->shards[i].fd >= 0)
            close(d->shards[i].fd);
        fmt_shard_close(d->shards[i].sh);
        sp_free(d->shards[i].path);
        rm_obj_free(&d->shards[i].obj);
    }
    for (int i = 0; i < d->ndctx; i++)
        ZSTD_freeDCtx(d->dctx[i]);
    sp_free(d->shards);
    sp_free(d->block_first);
    fmt_meta_free(&d->meta);
    sp_free(d->mpath);
    rm_site_free(d->site);
    pthread_mutex_destroy(&d->mu);
    sp_free(d);
}

/* The shard table, every descriptor closed. */
static ds_shard *shards_new(uint64_t n)
{
    ds_shard *v = sp_calloc(n, sizeof *v);
    for (uint64_t i = 0; v && i < n; i++)
        v[i].fd = -1;
    return v;
}

/* Cumulative sample counts per block, and the content fingerprint, from the shard table. */
static int dataset_index(sp_dataset *d, const uint32_t *block_samples)
{
    d->block_first = sp_malloc((d->nblocks + 1) * sizeof *d->block_first);
    if (!d->block_first)
        return sp_fail(&d->eb, SP_ENOMEM, "out of memory for %llu blocks", (unsigned long long)d->nblocks);
    uint64_t b = 0, s = 0;
    uint8_t h[24];
    d->fingerprint = 0;
    for (uint64_t i = 0; i < d->nshards; i++) {
        ds_shard *sh = &d->shards[i];
        sh->first_block = b;
        sh->first_sample = s;
        for (uint64_t k = 0; k < sh->nblocks; k++, b++) {
            d->block_first[b] = s;
            s += block_samples ? block_samples[b] : sh->sh->index.blocks[k].nsamples;
        }
        sp_st64(h, d->fingerprint); /* bytes, not host integers: the same on every machine */
        sp_st64(h + 8, sh->index_checksum);
        sp_st64(h + 16, sh->nsamples);
        d->fingerprint = sp_checksum64(h, sizeof h);
    }
    d->block_first[b] = s;
    return SP_OK;
}

/* The dataset named by the manifest bytes buf[0..n) (freed here) read from mpath in dir; a remote
 * one's shards are requested in req_dir (dir with the URL's user:password@, which dir, the one
 * messages show, leaves out). */
static int manifest_decode(sp_dataset *d, uint8_t *buf, size_t n, const char *mpath, const char *dir,
                           const char *req_dir)
{
    fmt_manifest m;
    fmt_err e;
    int rc = fmt_manifest_decode(buf, n, &d->lim, &m, &e);
    sp_free(buf);
    if (rc)
        return ds_fail_at(&d->eb, rc, mpath, &e);
    d->from_manifest = true;
    if (!(d->mpath = sp_strdup(mpath))) {
        fmt_manifest_free(&m);
        return sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", mpath);
    }
    d->dataset_id = m.dataset_id;
    d->schema = m.schema;
    d->meta = m.meta;
    m.meta = (fmt_meta){ 0 };
    /* The writer puts the manifest's schema and metadata in every shard's index: with a shard's block
     * count, they give the length of its index, so that one GET of a remote shard's tail fetches all
     * of it. A failed encoding leaves 0: the 64 KiB tail, and a second GET for a larger index. */
    sp_buf sch = { 0 }, met = { 0 };
    fmt_schema_encode(&d->schema, &sch);
    fmt_meta_encode(&d->meta, &met);
    if (!sch.failed && !met.failed)
        d->index_head = sp_align_up(FMT_INDEX_HEADER_BYTES + (uint64_t)sch.len + met.len, 8);
    sp_buf_free(&sch);
    sp_buf_free(&met);
    d->nshards = m.nshards;
    d->nblocks = m.nblocks;
    d->nsamples = m.nsamples;
    d->shards = shards_new(m.nshards);
    rc = d->shards ? SP_OK : sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", mpath);
    for (uint64_t i = 0; rc == SP_OK && i < m.nshards; i++) {
        const fmt_manifest_shard *ms = &m.shards[i];
        ds_shard *s = &d->shards[i];
        if (!(s->path = sp_path_join(dir, ms->name))) {
            rc = sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", mpath);
            break;
        }
        if (d->site) {
            char *req = rm_join(req_dir, ms->name);
            rc = req ? rm_obj_init(d->site, req, &s->obj, &d->eb) : sp_fail(&d->eb, SP_ENOMEM, "out of memory");
            sp_free(req);
            if (rc)
                break;
        }
        s->obj.size = ms->file_size; /* every response must agree with the manifest */
        s->obj.size_from = "the manifest";
        s->file_size = ms->file_size;
        s->nblocks = ms->nblocks;
        s->nsamples = ms->nsamples;
        s->index_checksum = ms->index_checksum;
        s->max_stored = ms->max_stored;
        s->max_raw = ms->max_raw;
        if (ms->max_stored > d->max_stored)
            d->max_stored = ms->max_stored;
        if (ms->max_raw > d->max_raw)
            d->max_raw = ms->max_raw;
    }
    d->bounds = true; /* every shard's largest blocks recorded (a 1.1 manifest) */
    for (uint64_t i = 0; rc == SP_OK && i < m.nshards; i++)
        d->bounds = d->bounds && m.shards[i].max_stored;
    if (rc == SP_OK)
        rc = dataset_index(d, m.block_samples);
    fmt_manifest_free(&m);
    return rc;
}

static int open_manifest(sp_dataset *d, const char *mpath, const char *dir)
{
    uint8_t *buf;
    size_t n;
    int err;
    int rc = sp_read_file(mpath, MAX_MANIFEST_BYTES, &buf, &n, &err, &d->mid);
    if (rc == SP_ELIMIT)
        return sp_fail(&d->eb, rc, "%s: manifest larger than %llu bytes", mpath, (unsigned long long)MAX_MANIFEST_BYTES);
    if (rc)
        return sp_fail(&d->eb, rc, "%s: cannot read: %s", mpath, sp_read_file_why(rc, err));
    return manifest_decode(d, buf, n, mpath, dir, NULL);
}

/* ---------------------------------------------------------------- remote shards */

typedef struct remote_ctx {
    sp_dataset *d;
    ds_shard *s;
} remote_ctx;

/* fmt_read_fn over a shard's object: the index when it begins before the tail read. */
static int remote_read(void *ctx, uint8_t *buf, uint64_t len, uint64_t off, fmt_err *e)
{
    remote_ctx *c = ctx;
    sp_errbuf eb;
    int rc = rm_get(c->d->site, &c->s->obj, off, len, buf, false, &eb);
    return rc ? fmt_errf(e, rc, off, "cannot read the index: %s", eb.msg) : SP_OK;
}

/* Shard s of a remote dataset from its tail bytes (tail_len of them, the last of its object). A
 * failure goes to d->eb. */
static int remote_shard_from_tail(sp_dataset *d, ds_shard *s, const uint8_t *tail, size_t tail_len, fmt_shard **out)
{
    fmt_err e;
    remote_ctx c = { d, s };
    int rc = fmt_shard_open_tail(s->path, s->obj.size, tail, tail_len, remote_read, &c, &d->lim, out, &e);
    return rc ? ds_fail_at(&d->eb, rc, s->path, &e) : SP_OK;
}

/* The bytes at the end of shard s that one GET fetches to open it: FMT_TAIL_READ, or its whole
 * index and trailer when the manifest implies more (its block count; an index beyond the format's
 * limit is refused once read, so it is not asked for); never more than the object. A manifest that
 * is wrong about the shard costs the second GET it would have cost anyway, and the shard is then
 * refused by shard_matches as before. */
static uint64_t shard_tail_len(const sp_dataset *d, const ds_shard *s)
{
    uint64_t want = FMT_TAIL_READ;
    if (d->from_manifest && d->index_head && s->nblocks <= FMT_MAX_INDEX_BYTES / FMT_BLOCK_ENTRY_BYTES) {
        uint64_t ix = d->index_head + s->nblocks * FMT_BLOCK_ENTRY_BYTES + FMT_TRAILER_BYTES;
        if (ix > want && ix <= (uint64_t)FMT_MAX_INDEX_BYTES + FMT_TRAILER_BYTES)
            want = ix;
    }
    return s->obj.size < want ? s->obj.size : want;
}

/* Shard s of a remote dataset: one GET of its tail, which holds its whole index when the manifest
 * tells its size (else a larger index takes a second GET). */
static int remote_shard_open(sp_dataset *d, ds_shard *s, fmt_shard **out)
{
    *out = NULL;
    uint64_t len = shard_tail_len(d, s);
    uint8_t *tail = sp_malloc(len);
    if (!tail)
        return sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory for its %llu-byte index", s->path,
                       (unsigned long long)len);
    uint64_t got;
    int rc = rm_get_tail(d->site, &s->obj, len, tail, &got, &d->eb);
    if (rc == SP_OK)
        rc = remote_shard_from_tail(d, s, tail, (size_t)got, out);
    sp_free(tail);
    return rc;
}

/* Ends with '/'-less suffix sfx. */
static bool ends_with(const char *s, const char *sfx)
{
    size_t n = strlen(s), k = strlen(sfx);
    return n >= k && strcmp(s + n - k, sfx) == 0;
}

static int open_shard_list(sp_dataset *d, const char *const *paths, size_t n);

/* A dataset on an HTTP(S) server or in S3: a manifest's URL, a prefix holding manifest.spm, or one
 * shard's URL. The manifest is read once, whole; shards are opened on first use. */
static int open_remote_shown(sp_dataset *d, const char *url, const char *shown, const sp_params *params);

static int open_remote(sp_dataset *d, const char *url, const sp_params *params)
{
    char *shown = rm_display_url(url);
    if (!shown)
        return sp_fail(&d->eb, SP_ENOMEM, "out of memory");
    int rc = open_remote_shown(d, url, shown, params);
    sp_free(shown);
    return rc;
}

/* open_remote, with url's form without user:password@ for messages. */
static int open_remote_shown(sp_dataset *d, const char *url, const char *shown, const sp_params *params)
{
    int rc = rm_site_open(url, params, &d->site, &d->eb);
    if (rc)
        return rc;
    if (ends_with(url, ".sps"))
        return open_shard_list(d, &url, 1);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    char *base = sp_malloc(n + 1);
    if (!base)
        return sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", shown);
    snprintf(base, n + 1, "%.*s", (int)n, url);
    char *murl = ends_with(base, ".spm") ? sp_strdup(base) : rm_join(base, MANIFEST_NAME);
    sp_free(base);
    if (!murl)
        return sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", shown);
    char *slash = strrchr(murl, '/');
    rm_obj mo;
    rc = rm_obj_init(d->site, murl, &mo, &d->eb);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == SP_OK)
        rc = rm_get_all(d->site, &mo, MAX_MANIFEST_BYTES, &buf, &len, &d->eb);
    if (rc == SP_OK && (len < FMT_MAGIC_LEN || memcmp(buf, FMT_MAGIC_MANIFEST, FMT_MAGIC_LEN) != 0)) {
        rc = sp_fail(&d->eb, SP_EFORMAT, "%s: not a shardpack manifest (%zu bytes, without its magic): %s is not a "
                     "dataset", mo.url, len, shown);
        sp_free(buf);
    } else if (rc == SP_ENOENT && !ends_with(url, ".spm")) {
        char was[SP_ERRMSG_MAX];
        snprintf(was, sizeof was, "%s", d->eb.msg);
        sp_fail(&d->eb, rc, "%s: no dataset there (its %s cannot be read): %s", shown, MANIFEST_NAME, was);
    }
    if (rc == SP_OK) {
        *slash = '\0';
        char *sdir = sp_strdup(mo.url); /* without user:password@ */
        char *sslash = sdir ? strrchr(sdir, '/') : NULL;
        if (sslash)
            *sslash = '\0';
        rc = sslash ? manifest_decode(d, buf, len, mo.url, sdir, murl)
                    : (sp_free(buf), sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", shown));
        sp_free(sdir);
    }
    rm_obj_free(&mo);
    sp_free(murl);
    return rc;
}

/* Checks a shard opened lazily against what the manifest promised, down to each block's sample
 * count, since sp_dataset_locate maps samples to rows from the manifest alone. */
static int shard_matches(sp_dataset *d, uint64_t i, const ds_shard *s, const fmt_shard *sh, sp_errbuf *eb)
{
    const char *what = NULL;
    if (sh->index.id.shard_no != i)
        what = "shard number";
    if (sh->file_size != s->file_size)
        what = "file size";
    else if (sh->trailer.index_checksum != s->index_checksum)
        what = "index checksum";
    else if (sh->index.nblocks != s->nblocks || sh->index.nsamples != s->nsamples)
        what = "block or sample count";
    else if (!sp_schema_equal(&sh->index.schema, &d->schema))
        what = "schema";
    else if (sh->index.id.dataset_id != d->dataset_id)
        what = "dataset id";
    for (uint64_t k = 0; !what && k < s->nblocks; k++) {
        uint64_t b = s->first_block + k;
        const fmt_block_entry *be = &sh->index.blocks[k];
        if (be->nsamples != d->block_first[b + 1] - d->block_first[b])
            what = "per-block sample count";
        /* a loader sizes its buffers by the manifest's largest blocks before it reads any index */
        else if (s->max_stored && (be->stored_size > s->max_stored ||
                                   (be->codec != SP_CODEC_STORED && be->raw_size > s->max_raw)))
            what = "largest block size";
    }
    if (!what)
        return SP_OK;
    return sp_fail(eb, SP_ECORRUPT, "%s: %s differs from the manifest (shard replaced or damaged)", s->path, what);
}

/* After shard path of a dataset opened from its manifest failed with rc: SP_ECHANGED, with a
 * message saying so, when the manifest path now names another dataset (the shard is the new one's,
 * or is gone with the old one), so that a dataset replaced while being read is not reported as
 * damaged; else rc, the message as it was (also an SP_ECHANGED of the shard's own). */
static int replaced_or(sp_dataset *d, const char *path, int rc, sp_errbuf *eb)
{
    char why[SP_ERRMSG_MAX / 2];
    if (!d->from_manifest || d->site || rc == SP_OK || rc == SP_ENOMEM || rc == SP_ECHANGED ||
        !fmt_manifest_replaced(d->mpath, &d->mid, why, sizeof why))
        return rc;
    return sp_fail(eb, SP_ECHANGED, "%s: %s; reopen the dataset", path, why);
}

/* Opens shard i on first use. Safe from several threads. */
int ds_shard_get(sp_dataset *d, uint64_t i, fmt_shard **out)
{
    ds_shard *s = &d->shards[i];
    pthread_mutex_lock(&d->mu);
    int rc = SP_OK;
    if (!s->sh) {
        /* Shards named by a manifest are checked against it; a list of shards has nothing to
         * check against (every one was opened and read at open). */
        fmt_err e;
        fmt_shard *sh;
        if (d->site)
            rc = remote_shard_open(d, s, &sh);
        else if ((rc = fmt_shard_open(s->path, &d->lim, &sh, &e)))
            ds_fail_at(&d->eb, rc, s->path, &e);
        if (rc == SP_OK && d->from_manifest && (rc = shard_matches(d, i, s, sh, &d->eb)))
            fmt_shard_close(sh);
        else if (rc == SP_OK)
            s->sh = sh;
        rc = replaced_or(d, s->path, rc, &d->eb);
    }
    *out = s->sh;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int ds_shard_load(sp_dataset *d, uint64_t i, int fd, const struct stat *st, fmt_shard **out, sp_errbuf *eb)
{
    ds_shard *s = &d->shards[i];
    fmt_err e = { .block = -1 };
    fmt_shard *sh = NULL;
    *out = NULL;
    int rc = fd < 0 ? fmt_errf(&e, sp_open_code(fd), 0, "cannot open: %s", sp_open_why(fd, st))
                    : fmt_shard_open_fd(s->path, fd, st, &d->lim, &sh, &e);
    if (rc)
        return replaced_or(d, s->path, ds_fail_at(eb, rc, s->path, &e), eb);
    if (!d->from_manifest || !(rc = shard_matches(d, i, s, sh, eb))) {
        *out = sh;
        return SP_OK;
    }
    int was = rc;
    rc = replaced_or(d, s->path, rc, eb);
    /* An intact index that disagrees with the manifest, in a file changed since the dataset was
     * opened (and the manifest still the one read): a shard put in its place (renamed over) while
     * the dataset was read, not damage; a reader that read the index at open would have found
     * another file (fmt_shard_check_file). */
    if (rc == was && (st->st_ctim.tv_sec > d->opened.tv_sec ||
                      (st->st_ctim.tv_sec == d->opened.tv_sec && st->st_ctim.tv_nsec >= d->opened.tv_nsec)))
        rc = sp_fail(eb, SP_ECHANGED, "%s: replaced since it was opened (now shard %u of dataset %016llx, changed at "
                     "%lld.%09ld, after the open; the manifest names shard %llu of dataset %016llx); reopen the "
                     "dataset", s->path, sh->index.id.shard_no, (unsigned long long)sh->index.id.dataset_id,
                     (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, (unsigned long long)i,
                     (unsigned long long)d->dataset_id);
    fmt_shard_close(sh);
    return rc;
}

bool ds_lazy_local(const sp_dataset *d) { return !d->site && d->from_manifest && d->bounds; }

uint64_t ds_table_bytes(const sp_dataset *d)
{
    uint64_t n = sizeof *d + d->nshards * sizeof(ds_shard) + (d->nblocks + 1) * sizeof(uint64_t);
    for (uint64_t i = 0; i < d->nshards; i++)
        n += strlen(d->shards[i].path) + 1;
    return n;
}

rm_site *ds_site(const sp_dataset *d) { return d->site; }
rm_obj *ds_shard_obj(sp_dataset *d, uint64_t i) { return &d->shards[i].obj; }
const char *ds_shard_path(const sp_dataset *d, uint64_t i) { return d->shards[i].path; }

void ds_shard_blocks(const sp_dataset *d, uint64_t i, uint64_t *first, uint64_t *n)
{
    *first = d->shards[i].first_block;
    *n = d->shards[i].nblocks;
}

uint32_t ds_block_samples(const sp_dataset *d, uint64_t block)
{
    return (uint32_t)(d->block_first[block + 1] - d->block_first[block]);
}

bool ds_block_bounds(const sp_dataset *d, uint32_t *max_stored, uint32_t *max_raw)
{
    *max_stored = d->max_stored;
    *max_raw = d->max_raw;
    return d->bounds;
}

uint64_t ds_shard_tail_len(const sp_dataset *d, uint64_t i) { return shard_tail_len(d, &d->shards[i]); }

int ds_shard_from_tail(sp_dataset *d, uint64_t i, const uint8_t *tail, uint64_t tail_len, fmt_shard **out)
{
    ds_shard *s = &d->shards[i];
    fmt_shard *sh;
    pthread_mutex_lock(&d->mu);
    int rc = s->sh ? SP_OK : remote_shard_from_tail(d, s, tail, (size_t)tail_len, &sh);
    if (rc == SP_OK && !s->sh && d->from_manifest && (rc = shard_matches(d, i, s, sh, &d->eb)))
        fmt_shard_close(sh);
    else if (rc == SP_OK && !s->sh)
        s->sh = sh;
    *out = s->sh;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Tails fetched at once while a remote dataset's shards are opened together, and the memory they
 * may take: 64 of 64 KiB, or fewer larger ones (a shard's whole index, shard_tail_len), at least one. */
#define RD_TAILS_INFLIGHT 64u
#define RD_TAILS_BYTES (16u << 20)

/* Opens the shards of a remote dataset not yet open: their tails go out RD_TAILS_INFLIGHT at a
 * time (fewer when their indexes are large) on one multi driver, each checked as ds_shard_get
 * checks it. */
static int remote_open_all(sp_dataset *d)
{
    rm_fetch *f;
    uint64_t stride = 0; /* the largest tail asked for: each slot's room */
    for (uint64_t i = 0; i < d->nshards; i++)
        if (!d->shards[i].sh && d->shards[i].obj.size != UINT64_MAX && shard_tail_len(d, &d->shards[i]) > stride)
            stride = shard_tail_len(d, &d->shards[i]);
    if (stride == 0)
        return SP_OK;
    uint64_t fit = RD_TAILS_BYTES / stride;
    unsigned depth = fit < 1 ? 1 : fit < RD_TAILS_INFLIGHT ? (unsigned)fit : RD_TAILS_INFLIGHT;
    uint8_t *tails = sp_malloc((size_t)(depth * stride));
    uint64_t *slot_shard = sp_malloc(depth * sizeof *slot_shard);
    int rc = tails && slot_shard ? rm_fetch_open(d->site, depth, depth, &f) : SP_ENOMEM;
    if (rc) {
        sp_free(tails);
        sp_free(slot_shard);
        return sp_fail(&d->eb, SP_ENOMEM, "out of memory opening %llu shards", (unsigned long long)d->nshards);
    }
    uint64_t next = 0;
    unsigned free_slot = 0;
    bool slot_busy[RD_TAILS_INFLIGHT] = { false };
    while (rc == SP_OK) {
        while (next < d->nshards && rm_fetch_pending(f) < depth) {
            ds_shard *s = &d->shards[next];
            if (s->sh || s->obj.size == UINT64_MAX) { /* open, or of unknown size: ds_shard_get's */
                next++;
                continue;
            }
            while (slot_busy[free_slot])
                free_slot = (free_slot + 1) % depth;
            uint64_t n = ds_shard_tail_len(d, next);
            slot_busy[free_slot] = true;
            slot_shard[free_slot] = next;
            rm_fetch_submit(f, &s->obj, tails + (size_t)(free_slot * stride), n, n, s->obj.size - n, free_slot);
            next++;
        }
        uint64_t tag;
        int code;
        char why[SP_ERRMSG_MAX];
        int got = rm_fetch_reap(f, true, &tag, &code, why, sizeof why);
        if (got == 0 && rm_fetch_pending(f) == 0 && next >= d->nshards)
            break;
        if (got == 0)
            continue;
        slot_busy[tag] = false;
        ds_shard *s = &d->shards[slot_shard[tag]];
        if (code) {
            rc = sp_fail(&d->eb, code, "%s: %s", s->path, why);
            break;
        }
        fmt_shard *sh;
        uint64_t i = slot_shard[tag];
        rc = ds_shard_from_tail(d, i, tails + (size_t)(tag * stride), ds_shard_tail_len(d, i), &sh);
    }
    rm_fetch_close(f);
    sp_free(tails);
    sp_free(slot_shard);
    return rc;
}

int ds_shard_open_all(sp_dataset *d)
{
    int rc = d->site ? remote_open_all(d) : SP_OK;
    for (uint64_t i = 0; rc == SP_OK && i < d->nshards; i++) {
        fmt_shard *sh;
        rc = ds_shard_get(d, i, &sh);
    }
    return rc;
}

/* Natural order, so shard-1000000 follows shard-999999. */
static int cmp_str(const void *a, const void *b) { return strverscmp(*(char *const *)a, *(char *const *)b); }

void ds_free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sp_free(v[i]);
    sp_free(v);
}

int ds_list_shards(const char *dir, uint64_t max, char ***out, size_t *n, sp_errbuf *eb)
{
    *out = NULL;
    *n = 0;
    DIR *dh = opendir(dir);
    if (!dh)
        return sp_fail(eb, SP_EIO, "%s: cannot list: %s", dir, strerror(errno));
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = SP_OK;
    struct dirent *de;
    while (rc == SP_OK && (de = readdir(dh))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || de->d_name[0] == '.' || strcmp(de->d_name + len - 4, ".sps") != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = sp_realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = sp_fail(eb, SP_ENOMEM, "%s: out of memory", dir);
                break;
            }
            v = nv;
        }
        if (!(v[cnt] = sp_path_join(dir, de->d_name))) {
            rc = sp_fail(eb, SP_ENOMEM, "%s: out of memory", dir);
            break;
        }
        cnt++;
    }
    closedir(dh);
    if (rc == SP_OK && cnt == 0)
        rc = sp_fail(eb, SP_ENOENT, "%s: no %s and no *.sps shard files", dir, MANIFEST_NAME);
    if (rc == SP_OK && cnt > max)
        rc = sp_fail(eb, SP_ELIMIT, "%s: %zu shards exceed max_shards %llu", dir, cnt, (unsigned long long)max);
    if (rc) {
        ds_free_list(v, cnt);
        return rc;
    }
    qsort(v, cnt, sizeof *v, cmp_str);
    *out = v;
    *n = cnt;
    return SP_OK;
}

int ds_glob_shards(const char *path, uint64_t max, char ***out, size_t *n, sp_errbuf *eb)
{
    *out = NULL;
    *n = 0;
    if (!strpbrk(path, "*?[") || access(path, F_OK) == 0)
        return 0;
    glob_t g;
    int r = glob(path, GLOB_NOSORT, NULL, &g);
    int rc = SP_OK;
    if (r == GLOB_NOMATCH)
        rc = sp_fail(eb, SP_ENOENT, "%s: no file matches%s", path,
                     strchr(path, '[') ? " ('[' and ']' are pattern characters: to match a name holding them, "
                                         "write \\[ and \\])" : "");
    else if (r != 0)
        rc = sp_fail(eb, r == GLOB_NOSPACE ? SP_ENOMEM : SP_EIO, "%s: cannot expand the pattern", path);
    else if (g.gl_pathc > max)
        rc = sp_fail(eb, SP_ELIMIT, "%s: %zu files match, above max_shards %llu", path, (size_t)g.gl_pathc,
                     (unsigned long long)max);
    char **v = NULL;
    size_t cnt = 0;
    if (rc == SP_OK && !(v = sp_calloc(g.gl_pathc, sizeof *v)))
        rc = sp_fail(eb, SP_ENOMEM, "%s: out of memory", path);
    for (; rc == SP_OK && cnt < g.gl_pathc; cnt++)
        if (!(v[cnt] = sp_strdup(g.gl_pathv[cnt])))
            rc = sp_fail(eb, SP_ENOMEM, "%s: out of memory", path);
    globfree(&g);
    if (rc) {
        ds_free_list(v, cnt);
        return rc;
    }
    qsort(v, cnt, sizeof *v, cmp_str);
    *out = v;
    *n = cnt;
    return 1;
}

/* What makes two opened shards the same one: its dataset id, number and index checksum (a copy
 * of a shard file has all three), then its position in the list. */
typedef struct shard_key {
    uint64_t dataset_id, index_checksum;
    uint32_t shard_no;
    size_t i;
} shard_key;

static int cmp_shard_key(const void *pa, const void *pb)
{
    const shard_key *a = pa, *b = pb;
    if (a->dataset_id != b->dataset_id)
        return a->dataset_id < b->dataset_id ? -1 : 1;
    if (a->shard_no != b->shard_no)
        return a->shard_no < b->shard_no ? -1 : 1;
    if (a->index_checksum != b->index_checksum)
        return a->index_checksum < b->index_checksum ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* A shard given twice (the same file under two names, or a copy of it) would deliver its samples
 * twice: SP_EINVAL naming both. */
static int refuse_duplicate_shards(sp_dataset *d)
{
    shard_key *k = sp_malloc(d->nshards * sizeof *k);
    if (!k)
        return sp_fail(&d->eb, SP_ENOMEM, "out of memory");
    for (size_t i = 0; i < d->nshards; i++) {
        const fmt_shard *sh = d->shards[i].sh;
        k[i] = (shard_key){ sh->index.id.dataset_id, sh->trailer.index_checksum, sh->index.id.shard_no, i };
    }
    qsort(k, d->nshards, sizeof *k, cmp_shard_key);
    int rc = SP_OK;
    for (size_t j = 1; rc == SP_OK && j < d->nshards; j++) {
        if (k[j - 1].dataset_id != k[j].dataset_id || k[j - 1].shard_no != k[j].shard_no ||
            k[j - 1].index_checksum != k[j].index_checksum)
            continue;
        const ds_shard *a = &d->shards[k[j - 1].i], *b = &d->shards[k[j].i];
        bool same_file = a->sh->id.dev == b->sh->id.dev && a->sh->id.ino == b->sh->id.ino;
        rc = sp_fail(&d->eb, SP_EINVAL, "%s and %s are the same shard (%s; dataset %016llx, shard %u): each shard "
                     "may be given once", a->path, b->path, same_file ? "one file" : "a copy",
                     (unsigned long long)k[j].dataset_id, k[j].shard_no);
    }
    sp_free(k);
    return rc;
}

static int open_shard_list(sp_dataset *d, const char *const *paths, size_t n)
{
    if (n == 0)
        return sp_fail(&d->eb, SP_EINVAL, "no shard files given");
    if (n > d->lim.max_shards)
        return sp_fail(&d->eb, SP_ELIMIT, "%zu shards exceed max_shards %llu", n, (unsigned long long)d->lim.max_shards);
    d->shards = shards_new(n);
    if (!d->shards)
        return sp_fail(&d->eb, SP_ENOMEM, "out of memory");
    d->nshards = n;
    for (size_t i = 0; i < n; i++) {
        ds_shard *s = &d->shards[i];
        fmt_err e;
        if (!(s->path = d->site ? rm_display_url(paths[i]) : sp_strdup(paths[i])))
            return sp_fail(&d->eb, SP_ENOMEM, "out of memory");
        int rc;
        if (d->site) {
            if (!rm_is_url(paths[i]))
                return sp_fail(&d->eb, SP_EINVAL, "%s and %s: local and remote shards cannot be mixed", paths[0],
                               paths[i]);
            if ((rc = rm_obj_init(d->site, paths[i], &s->obj, &d->eb)) || (rc = remote_shard_open(d, s, &s->sh)))
                return rc;
        } else if ((rc = fmt_shard_open(paths[i], &d->lim, &s->sh, &e))) {
            return ds_fail_at(&d->eb, rc, paths[i], &e);
        }
        const fmt_index *ix = &s->sh->index;
        if (i == 0) {
            d->schema = ix->schema;
            d->dataset_id = ix->id.dataset_id;
            for (size_t k = 0; k < ix->meta.n; k++)
                if (fmt_meta_set(&d->meta, ix->meta.e[k].key, ix->meta.e[k].value, ix->meta.e[k].len))
                    return sp_fail(&d->eb, SP_ENOMEM, "out of memory");
        } else if (!sp_schema_equal(&ix->schema, &d->schema)) {
            return sp_fail(&d->eb, SP_ESCHEMA, "%s: schema differs from %s", paths[i], paths[0]);
        }
        if (ix->id.dataset_id != d->dataset_id)
            d->dataset_id = 0;
        s->file_size = s->sh->file_size;
        s->nblocks = ix->nblocks;
        s->nsamples = ix->nsamples;
        s->index_checksum = s->sh->trailer.index_checksum;
        d->nblocks += ix->nblocks;
        d->nsamples += ix->nsamples;
    }
    int rc = refuse_duplicate_shards(d);
    return rc ? rc : dataset_index(d, NULL);
}

static int open_dir(sp_dataset *d, const char *dir)
{
    char *mpath = sp_path_join(dir, MANIFEST_NAME);
    if (!mpath)
        return sp_fail(&d->eb, SP_ENOMEM, "out of memory");
    int rc;
    if (access(mpath, F_OK) == 0) {
        rc = open_manifest(d, mpath, dir);
    } else {
        char **paths = NULL;
        size_t n = 0;
        rc = ds_list_shards(dir, d->lim.max_shards, &paths, &n, &d->eb);
        if (rc == SP_OK)
            rc = open_shard_list(d, (const char *const *)paths, n);
        ds_free_list(paths, n);
    }
    sp_free(mpath);
    return rc;
}

int ds_sniff_manifest(const char *path, char *dir, size_t dirlen, sp_errbuf *eb)
{
    uint8_t magic[FMT_MAGIC_LEN] = { 0 };
    struct stat st;
    int fd = sp_open_regular(path, 0, &st);
    if (fd < 0)
        return sp_fail(eb, sp_open_code(fd), "%s: cannot open: %s", path, sp_open_why(fd, &st));
    int got = sp_pread_all(fd, magic, sizeof magic, 0);
    close(fd);
    if (got != 0 || memcmp(magic, FMT_MAGIC_MANIFEST, FMT_MAGIC_LEN) != 0)
        return 0;
    const char *slash = strrchr(path, '/');
    int n = !slash ? snprintf(dir, dirlen, ".") : slash == path ? snprintf(dir, dirlen, "/")
                                                                : snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
    if (n < 0 || (size_t)n >= dirlen)
        return sp_fail(eb, SP_EINVAL, "%s: path too long", path);
    return 1;
}

/* A manifest file is told from a shard by its magic. */
static int open_file(sp_dataset *d, const char *path)
{
    char dir[4096];
    int rc = ds_sniff_manifest(path, dir, sizeof dir, &d->eb);
    if (rc < 0)
        return rc;
    return rc ? open_manifest(d, path, dir) : open_shard_list(d, &path, 1);
}

/* A missing dataset directory whose old contents a publication without RENAME_EXCHANGE set aside
 * (PARENT/.NAME.shardpack-tmp.old, wr_staging.c) and did not finish: the message says where it is. */
int ds_check_scheme(const char *path, sp_errbuf *eb)
{
    size_t n = strspn(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
    if (n == 0 || strncmp(path + n, "://", 3) != 0 || rm_is_url(path) || access(path, F_OK) == 0)
        return SP_OK;
    char *shown = rm_display_url(path);
    int rc = sp_fail(eb, SP_EINVAL, "%s: %.*s:// URLs are not supported: a dataset is a local path, or an s3://, "
                     "http:// or https:// URL", shown ? shown : path, (int)n, path);
    sp_free(shown);
    return rc;
}

/* A URL is never a glob (docs/remote.md): when one holding a wildcard names no object, say so
 * beside the server's 404. */
static void name_url_glob(const char *url, sp_errbuf *eb)
{
    const char *host = strstr(url, "://") + 3;
    const char *key = host + strcspn(host, "/");
    if (!strpbrk(key, strncmp(url, "s3://", 5) == 0 ? "*?[" : "*["))
        return;
    char was[SP_ERRMSG_MAX];
    snprintf(was, sizeof was, "%s", eb->msg);
    sp_fail(eb, SP_ENOENT, "%s; wildcards (*, ?, [...]) are expanded in local paths only, not in URLs: name the "
            "dataset's folder, its %s or one shard", was, MANIFEST_NAME);
}

static void name_set_aside(const char *path, sp_errbuf *eb)
{
    char aside[4200];
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    const char *slash = memrchr(path, '/', len);
    int n = slash ? snprintf(aside, sizeof aside, "%.*s/.%.*s.shardpack-tmp.old", (int)(slash - path), path,
                             (int)(len - (size_t)(slash - path) - 1), slash + 1)
                  : snprintf(aside, sizeof aside, ".%.*s.shardpack-tmp.old", (int)len, path);
    struct stat st;
    if (n < 0 || (size_t)n >= sizeof aside || lstat(path, &st) == 0 || errno != ENOENT ||
        lstat(aside, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    char was[SP_ERRMSG_MAX];
    snprintf(was, sizeof was, "%s", eb->msg);
    sp_fail(eb, SP_ENOENT, "%s; the dataset that was there is in %s, set aside by a publication interrupted on a "
            "file system without RENAME_EXCHANGE: the next writer on %s moves it back, or move it back by hand",
            was, aside, path);
}

int sp_dataset_open(const char *path, const sp_params *params, sp_dataset **out)
{
    sp_clear_error();
    if (!out || !path)
        return sp_fail(NULL, SP_EINVAL, "sp_dataset_open: NULL argument");
    *out = NULL;
    sp_dataset *d = dataset_new(params);
    if (!d)
        return sp_fail(NULL, SP_ENOMEM, "%s: out of memory", path);
    char **paths;
    size_t n;
    int rc = rm_is_url(path) ? open_remote(d, path, params) : ds_check_scheme(path, &d->eb);
    if (!rm_is_url(path) && rc == SP_OK)
        rc = ds_glob_shards(path, d->lim.max_shards, &paths, &n, &d->eb);
    if (rm_is_url(path)) {
        /* opened above */
    } else if (rc > 0) {
        rc = open_shard_list(d, (const char *const *)paths, n);
        ds_free_list(paths, n);
    } else if (rc == 0) {
        rc = sp_path_is_dir(path) ? open_dir(d, path) : open_file(d, path);
    }
    if (rc == SP_ENOENT && !rm_is_url(path))
        name_set_aside(path, &d->eb);
    else if (rc == SP_ENOENT)
        name_url_glob(path, &d->eb);
    if (rc) {
        sp_dataset_close(d);
        return rc;
    }
    *out = d;
    return SP_OK;
}

int sp_dataset_open_shards(const char *const *paths, size_t n, const sp_params *params, sp_dataset **out)
{
    sp_clear_error();
    if (!out || (!paths && n))
        return sp_fail(NULL, SP_EINVAL, "sp_dataset_open_shards: NULL argument");
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!paths[i])
            return sp_fail(NULL, SP_EINVAL, "sp_dataset_open_shards: path %zu is NULL", i);
    sp_dataset *d = dataset_new(params);
    if (!d)
        return sp_fail(NULL, SP_ENOMEM, "out of memory");
    int rc = n && rm_is_url(paths[0]) ? rm_site_open(paths[0], params, &d->site, &d->eb) : SP_OK;
    if (rc == SP_OK)
        rc = open_shard_list(d, paths, n);
    if (rc) {
        sp_dataset_close(d);
        return rc;
    }
    *out = d;
    return SP_OK;
}

const char *sp_dataset_errmsg(const sp_dataset *d) { return d ? d->eb.msg : ""; }
const sp_schema *sp_dataset_schema(const sp_dataset *d) { return d ? &d->schema : NULL; }
uint64_t sp_dataset_num_samples(const sp_dataset *d) { return d ? d->nsamples : 0; }
uint64_t sp_dataset_num_blocks(const sp_dataset *d) { return d ? d->nblocks : 0; }
uint64_t sp_dataset_num_shards(const sp_dataset *d) { return d ? d->nshards : 0; }
uint64_t sp_dataset_fingerprint(const sp_dataset *d) { return d ? d->fingerprint : 0; }
size_t sp_dataset_meta_count(const sp_dataset *d) { return d ? d->meta.n : 0; }

int sp_dataset_meta_at(const sp_dataset *d, size_t i, const char **key, const void **value, size_t *len)
{
    if (!d)
        return sp_fail(NULL, SP_ERANGE, "sp_dataset_meta_at: NULL dataset");
    if (i >= d->meta.n)
        return sp_fail(NULL, SP_ERANGE, "sp_dataset_meta_at: entry %zu is past the dataset's %zu metadata entries", i,
                       d->meta.n);
    if (key)
        *key = d->meta.e[i].key;
    if (value)
        *value = d->meta.e[i].value;
    if (len)
        *len = d->meta.e[i].len;
    return SP_OK;
}

int sp_dataset_meta_get(const sp_dataset *d, const char *key, const void **value, size_t *len)
{
    if (!d || !key)
        return sp_fail(NULL, SP_ENOENT, "sp_dataset_meta_get: NULL %s", d ? "key" : "dataset");
    const fmt_meta_entry *e = fmt_meta_find(&d->meta, key);
    if (!e)
        return sp_fail(NULL, SP_ENOENT, "sp_dataset_meta_get: the dataset has no metadata '%s'", key);
    if (value)
        *value = e->value;
    if (len)
        *len = e->len;
    return SP_OK;
}

int sp_dataset_shard_info(sp_dataset *d, uint64_t shard, sp_shard_info *out)
{
    if (!d)
        return sp_fail(NULL, SP_ERANGE, "sp_dataset_shard_info: NULL dataset");
    int rc = sp_out_check("sp_dataset_shard_info", "sp_shard_info", out);
    if (rc)
        return rc;
    if (shard >= d->nshards)
        return sp_fail(NULL, SP_ERANGE, "sp_dataset_shard_info: shard %llu is past the dataset's %llu shards",
                       (unsigned long long)shard, (unsigned long long)d->nshards);
    const ds_shard *s = &d->shards[shard];
    sp_shard_info si = { sizeof si, s->path, s->file_size, s->nblocks, s->nsamples, s->first_block, s->first_sample };
    sp_out_put(out, &si, sizeof si);
    return SP_OK;
}

/* The shard holding global block b: binary search over first blocks. */
static uint64_t shard_of_block(const sp_dataset *d, uint64_t b)
{
    uint64_t lo = 0, hi = d->nshards;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (d->shards[mid].first_block <= b)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The shard holding global block `block`, opened. */
static int block_shard(const char *fn, sp_dataset *d, uint64_t block, uint64_t *si, fmt_shard **sh)
{
    if (block >= d->nblocks)
        return sp_fail(&d->eb, SP_ERANGE, "%s: block %llu out of range (%llu blocks)", fn, (unsigned long long)block,
                     (unsigned long long)d->nblocks);
    *si = shard_of_block(d, block);
    return ds_shard_get(d, *si, sh);
}

int sp_dataset_block_info(sp_dataset *d, uint64_t block, sp_block_info *out)
{
    if (!d)
        return sp_fail(NULL, SP_EINVAL, "sp_dataset_block_info: NULL dataset");
    int rc = sp_out_check("sp_dataset_block_info", "sp_block_info", out);
    if (rc)
        return rc;
    uint64_t si = 0;
    fmt_shard *sh;
    rc = block_shard("sp_dataset_block_info", d, block, &si, &sh);
    if (rc)
        return rc;
    uint64_t local = block - d->shards[si].first_block;
    const fmt_block_entry *be = &sh->index.blocks[local];
    sp_block_info bi = { sizeof bi, si, local, be->offset, be->stored_size, be->raw_size, be->nsamples,
                         d->shards[si].first_sample + be->first_sample, be->checksum, be->raw_checksum,
                         be->codec };
    sp_out_put(out, &bi, sizeof bi);
    return SP_OK;
}

int sp_dataset_locate(const sp_dataset *d, uint64_t sample, uint64_t *block, uint32_t *row)
{
    if (!d || !block || !row)
        return sp_fail(NULL, SP_EINVAL, "sp_dataset_locate: NULL argument");
    if (sample >= d->nsamples)
        return sp_fail(NULL, SP_ERANGE, "sp_dataset_locate: sample %llu out of range (%llu samples)",
                       (unsigned long long)sample, (unsigned long long)d->nsamples);
    *block = sp_floor_index(d->block_first, d->nblocks, sample);
    *row = (uint32_t)(sample - d->block_first[*block]);
    return SP_OK;
}

static ZSTD_DCtx *dctx_get(sp_dataset *d)
{
    pthread_mutex_lock(&d->mu);
    ZSTD_DCtx *c = d->ndctx ? d->dctx[--d->ndctx] : NULL;
    pthread_mutex_unlock(&d->mu);
    return c ? c : ZSTD_createDCtx();
}

static void dctx_put(sp_dataset *d, ZSTD_DCtx *c)
{
    pthread_mutex_lock(&d->mu);
    if (d->ndctx < DCTX_POOL) {
        d->dctx[d->ndctx++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    ZSTD_freeDCtx(c);
}

/* Closes the least recently used cached descriptor no read is using; false when there is none.
 * Called with mu held. */
static bool fd_evict_locked(sp_dataset *d)
{
    uint64_t victim = UINT64_MAX, best = UINT64_MAX;
    for (uint64_t i = 0; i < d->nshards; i++) {
        const ds_shard *s = &d->shards[i];
        if (s->fd >= 0 && s->fd_users == 0 && s->fd_tick < best)
            best = s->fd_tick, victim = i;
    }
    if (victim == UINT64_MAX)
        return false;
    close(d->shards[victim].fd);
    d->shards[victim].fd = -1;
    d->fds_open--;
    return true;
}

/* Shard si's descriptor for a block read, held until fd_put: the cached one, or a new one checked
 * to be the file the shard was opened from. A negative code with e->why on failure. */
static int fd_get(sp_dataset *d, uint64_t si, const fmt_shard *sh, fmt_err *e)
{
    ds_shard *s = &d->shards[si];
    pthread_mutex_lock(&d->mu);
    int fd = s->fd;
    if (fd < 0) {
        if (d->fds_open >= sp_fd_budget(RD_MIN_FDS, RD_MAX_FDS))
            fd_evict_locked(d);
        struct stat st;
        while (sp_out_of_fds(fd = sp_open_regular(s->path, 0, &st)) && fd_evict_locked(d))
            ;
        int rc = fd < 0 ? fmt_errf(e, sp_open_code(fd), 0, "cannot reopen: %s", sp_open_why(fd, &st))
                        : fmt_shard_check_file(sh, fd, &st, e);
        if (rc && fd >= 0)
            close(fd);
        if (rc)
            fd = rc;
        else
            s->fd = fd, d->fds_open++;
    }
    if (fd >= 0) {
        s->fd_users++;
        s->fd_tick = ++d->fd_clock;
    }
    pthread_mutex_unlock(&d->mu);
    return fd;
}

static void fd_put(sp_dataset *d, uint64_t si)
{
    pthread_mutex_lock(&d->mu);
    d->shards[si].fd_users--;
    pthread_mutex_unlock(&d->mu);
}

int ds_pread_block(sp_dataset *d, uint64_t block, uint8_t *buf, fmt_err *e)
{
    uint64_t si = 0;
    fmt_shard *sh;
    int rc = block_shard("ds_pread_block", d, block, &si, &sh);
    if (rc)
        return fmt_errf(e, rc, 0, "%s", d->eb.msg);
    const fmt_block_entry *be = &sh->index.blocks[block - d->shards[si].first_block];
    e->block = (int64_t)(block - d->shards[si].first_block);
    if (d->site) {
        sp_errbuf eb;
        rc = rm_get(d->site, &d->shards[si].obj, be->offset, be->stored_size, buf, false, &eb);
        return rc ? fmt_errf(e, rc, be->offset, "%s", eb.msg) : SP_OK;
    }
    int fd = fd_get(d, si, sh, e);
    if (fd < 0)
        return fd;
    rc = sp_pread_all(fd, buf, be->stored_size, be->offset);
    fd_put(d, si);
    if (rc)
        return fmt_errf(e, rc == SP_ETRUNC ? SP_ETRUNC : SP_EIO, be->offset, "cannot read: %s",
                        rc == SP_ETRUNC ? "file ends early" : strerror(-rc));
    return SP_OK;
}

/* Block i of shard si of a remote dataset, read and decoded into b. */
static int remote_block(sp_dataset *d, uint64_t si, fmt_shard *sh, uint64_t i, ZSTD_DCtx *dctx, sp_block *b,
                        fmt_err *e)
{
    const fmt_block_entry *be = &sh->index.blocks[i];
    uint8_t *stored = sp_malloc(be->stored_size);
    if (!stored)
        return fmt_errf(e, SP_ENOMEM, be->offset, "out of memory for a %u-byte block", be->stored_size);
    sp_errbuf eb;
    int rc = rm_get(d->site, &d->shards[si].obj, be->offset, be->stored_size, stored, false, &eb);
    if (rc)
        fmt_errf(e, rc, be->offset, "%s", eb.msg);
    else
        rc = fmt_shard_decode_block(sh, i, stored, dctx, &b->raw, &b->view, e);
    if (b->raw != stored)
        sp_free(stored);
    return rc;
}

int sp_dataset_read_block(sp_dataset *d, uint64_t block, sp_block **out)
{
    sp_clear_error();
    if (!d || !out)
        return sp_fail(NULL, SP_EINVAL, "sp_dataset_read_block: NULL argument");
    *out = NULL;
    uint64_t si = 0;
    fmt_shard *sh;
    int rc = block_shard("sp_dataset_read_block", d, block, &si, &sh);
    if (rc)
        return rc;
    sp_block *b = sp_calloc(1, sizeof *b);
    ZSTD_DCtx *dctx = dctx_get(d);
    if (!b || !dctx) {
        sp_free(b);
        ZSTD_freeDCtx(dctx);
        return sp_fail(&d->eb, SP_ENOMEM, "%s: out of memory", d->shards[si].path);
    }
    fmt_err e = { .block = (int64_t)(block - d->shards[si].first_block) };
    int fd = d->site ? INT32_MAX : fd_get(d, si, sh, &e);
    if (d->site) {
        rc = remote_block(d, si, sh, (uint64_t)e.block, dctx, b, &e);
    } else if (fd >= 0) {
        rc = fmt_shard_read_block(sh, fd, block - d->shards[si].first_block, dctx, &b->raw, &b->view, &e);
        fd_put(d, si);
    } else {
        rc = fd;
        e.offset = sh->index.blocks[e.block].offset;
    }
    dctx_put(d, dctx);
    if (rc) {
        sp_free(b);
        return replaced_or(d, d->shards[si].path, ds_fail_at(&d->eb, rc, d->shards[si].path, &e), &d->eb);
    }
    /* The view must not point into the shard, which a block may outlive until the dataset closes. */
    b->view.schema = &d->schema;
    *out = b;
    return SP_OK;
}

void sp_block_free(sp_block *b)
{
    if (!b)
        return;
    sp_free(b->raw);
    sp_free(b);
}

uint32_t sp_block_num_samples(const sp_block *b) { return b ? b->view.n : 0; }

int sp_block_get(const sp_block *b, uint32_t row, size_t field, const void **data, size_t *size)
{
    if (!b || !data || !size)
        return sp_fail(NULL, SP_ERANGE, "sp_block_get: NULL %s", b ? "out pointer" : "block");
    if (row >= b->view.n)
        return sp_fail(NULL, SP_ERANGE, "sp_block_get: row %u is past the block's %u rows", row, b->view.n);
    if (field >= b->view.schema->n)
        return sp_fail(NULL, SP_ERANGE, "sp_block_get: field %zu is past the schema's %zu fields", field,
                       b->view.schema->n);
    const uint8_t *p;
    fmt_block_get(&b->view, row, field, &p, size);
    *data = p;
    return SP_OK;
}
