/* lt_util.c - helpers for the loader tests (see lt_util.h). */
#include "lt_util.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

double lt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------------------ values */

uint16_t lt_token(uint64_t salt, uint64_t id, uint32_t i)
{
    uint64_t h = tu_mix(salt * 0x100000001B3ull ^ (id << 16) ^ i);
    /* Every fourth token spans the full uint16 range (values above INT16_MAX included, for the
     * int32 conversion); the rest are small, so that zstd finds something to compress. */
    return (uint16_t)(i % 4 == 0 ? h & 0xffff : h & 0xff);
}

float lt_x(uint64_t salt, uint64_t id, uint32_t i)
{
    uint64_t h = tu_mix(salt ^ (id * 3 + i) ^ 0x7874656e736f72ull);
    return (float)(int32_t)(h >> 40) / 64.0f + (float)i;
}

/* ------------------------------------------------------------------------------------ datasets */

static char *lt_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *p = malloc(strlen(base) + strlen(tag) + 32);
    if (!p)
        return NULL;
    sprintf(p, "%s/spload-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) {
        fprintf(stderr, "mkdtemp %s: %s\n", p, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

static char *join(const char *a, const char *b)
{
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (p)
        sprintf(p, "%s/%s", a, b);
    return p;
}

static sp_schema *lt_schema(uint32_t seq)
{
    sp_schema *s = sp_schema_create();
    uint64_t tshape[1] = { seq }, xshape[1] = { 3 };
    if (!s || sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) ||
        sp_schema_add(s, "tokens", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, tshape) ||
        sp_schema_add(s, "x", SP_FIELD_TENSOR, SP_DTYPE_F32, 1, xshape)) {
        sp_schema_destroy(s);
        return NULL;
    }
    return s;
}

int lt_make(lt_ds *d, const char *tag, uint64_t n, uint32_t seq, uint64_t salt, const char *block_size,
            const char *shard_size)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->seq = seq;
    d->salt = salt;
    d->root = lt_mkdtemp(tag);
    if (!d->root)
        return SP_EIO;
    d->dir = join(d->root, "data");
    sp_schema *s = lt_schema(seq);
    sp_params *p = sp_params_create();
    int rc = s && p && d->dir ? SP_OK : SP_ENOMEM;
    if (rc == SP_OK && ((rc = sp_params_set_str(p, "block_size", block_size)) ||
                        (rc = sp_params_set_str(p, "shard_size", shard_size))))
        fprintf(stderr, "lt_make: %s\n", sp_last_error());
    sp_writer *w = NULL;
    if (rc == SP_OK && (rc = sp_writer_open(d->dir, s, p, &w)))
        fprintf(stderr, "lt_make: writer_open %s: %s\n", d->dir, sp_last_error());
    uint16_t *tok = malloc(seq * sizeof *tok);
    if (!tok)
        rc = SP_ENOMEM;
    for (uint64_t id = 0; rc == SP_OK && id < n; id++) {
        int64_t label = (int64_t)id;
        float x[3];
        for (uint32_t i = 0; i < seq; i++)
            tok[i] = lt_token(salt, id, i);
        for (uint32_t i = 0; i < 3; i++)
            x[i] = lt_x(salt, id, i);
        sp_value v[3] = { { &label, sizeof label }, { tok, seq * sizeof *tok }, { x, sizeof x } };
        if ((rc = sp_writer_add(w, v, 3)))
            fprintf(stderr, "lt_make: add %llu: %s\n", (unsigned long long)id, sp_last_error());
    }
    if (rc == SP_OK && (rc = sp_writer_finish(w)))
        fprintf(stderr, "lt_make: finish: %s\n", sp_last_error());
    sp_writer_destroy(w);
    free(tok);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    if (rc == SP_OK) {
        sp_dataset *ds;
        if ((rc = sp_dataset_open(d->dir, NULL, &ds)) == SP_OK) {
            d->blocks = sp_dataset_num_blocks(ds);
            d->shards = sp_dataset_num_shards(ds);
            if (sp_dataset_num_samples(ds) != n)
                rc = SP_ECORRUPT;
            sp_dataset_close(ds);
        }
    }
    return rc;
}

int lt_make_one_per_shard(lt_ds *d, const char *tag, uint64_t n, uint64_t salt)
{
    /* 2000 tokens of 2 bytes: one sample fills a 4 KiB block, and a block an 8 KiB shard */
    int rc = lt_make(d, tag, n, 2000, salt, "4K", "8K");
    if (rc)
        return rc;
    if (d->shards != n) {
        fprintf(stderr, "expected %llu shards, the writer made %llu\n", (unsigned long long)n,
                (unsigned long long)d->shards);
        return SP_ESTATE;
    }
    return 0;
}

void lt_ds_free(lt_ds *d)
{
    if (d->root)
        tu_rmtree(d->root);
    free(d->root);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int rc = in && out ? SP_OK : SP_EIO;
    char buf[65536];
    size_t k;
    while (rc == SP_OK && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k)
            rc = SP_EIO;
    if (in)
        fclose(in);
    if (out && fclose(out))
        rc = SP_EIO;
    return rc;
}

int lt_clone(const lt_ds *d, lt_ds *out, const char *tag)
{
    *out = *d;
    out->root = lt_mkdtemp(tag);
    if (!out->root)
        return SP_EIO;
    out->dir = join(out->root, "data");
    if (!out->dir || mkdir(out->dir, 0755))
        return SP_EIO;
    DIR *dd = opendir(d->dir);
    if (!dd)
        return SP_EIO;
    int rc = SP_OK;
    struct dirent *de;
    while (rc == SP_OK && (de = readdir(dd))) {
        if (de->d_name[0] == '.')
            continue;
        char *a = join(d->dir, de->d_name), *b = join(out->dir, de->d_name);
        rc = a && b ? copy_file(a, b) : SP_ENOMEM;
        free(a);
        free(b);
    }
    closedir(dd);
    return rc;
}

/* ------------------------------------------------------------------------------------ loaders */

sp_params *lt_params_v(const char *const *kv)
{
    sp_params *p = sp_params_create();
    if (!p)
        return NULL;
    for (size_t i = 0; kv[i]; i += 2) {
        if (sp_params_set_str(p, kv[i], kv[i + 1])) {
            fprintf(stderr, "param %s=%s: %s\n", kv[i], kv[i + 1], sp_last_error());
            sp_params_destroy(p);
            return NULL;
        }
    }
    return p;
}

int lt_open(const char *path, sp_loader **out, ...)
{
    const char *kv[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, out);
    for (const char *k; n + 2 < 64 && (k = va_arg(ap, const char *));) {
        kv[n++] = k;
        kv[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    kv[n] = NULL;
    return lt_open_kv(path, out, kv);
}

int lt_open_kv(const char *path, sp_loader **out, const char *const *extra)
{
    const char *kv[128] = { "host_memory", "64M", "threads", "2" };
    size_t n = 4;
    for (; extra && extra[0] && n + 2 < 128; extra += 2) {
        kv[n++] = extra[0];
        kv[n++] = extra[1];
    }
    kv[n] = NULL;
    *out = NULL;
    sp_params *p = lt_params_v(kv);
    if (!p)
        return SP_EINVAL;
    int rc = sp_loader_open(path, p, out);
    sp_params_destroy(p);
    return rc;
}

/* ------------------------------------------------------------------------------------ batches */

size_t lt_field_bytes(const sp_batch *b, size_t i)
{
    const DLTensor *t = sp_batch_tensor(b, i);
    if (!t)
        return 0;
    size_t n = (size_t)t->dtype.bits / 8 * t->dtype.lanes;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

uint64_t lt_batch_hash(const sp_batch *b)
{
    uint32_t rows = sp_batch_size(b);
    uint64_t h = tu_mix(sp_batch_epoch(b) * 1000003u ^ sp_batch_index(b)) ^ tu_mix(rows);
    for (uint32_t r = 0; r < rows; r++)
        h = tu_mix(h ^ sp_batch_sample_id(b, r));
    for (size_t i = 0; i < sp_batch_num_fields(b); i++)
        h = tu_mix(h ^ sp_checksum64(sp_batch_tensor(b, i)->data, lt_field_bytes(b, i)));
    return h;
}

static size_t elem_size(const DLTensor *t) { return (size_t)t->dtype.bits / 8; }

bool lt_row_ok(const lt_ds *d, const sp_batch *b, uint32_t row, char *why, size_t whylen)
{
    uint64_t id = sp_batch_sample_id(b, row);
    int fl = sp_batch_find(b, "label"), ft = sp_batch_find(b, "tokens"), fx = sp_batch_find(b, "x");
    if (fl < 0 || ft < 0 || fx < 0)
        return snprintf(why, whylen, "batch lacks a field (label %d tokens %d x %d)", fl, ft, fx), false;
    if (id >= d->n)
        return snprintf(why, whylen, "batch %llu row %u: sample id %llu out of range", (unsigned long long)sp_batch_index(b),
                        row, (unsigned long long)id), false;
    const DLTensor *tl = sp_batch_tensor(b, (size_t)fl), *tt = sp_batch_tensor(b, (size_t)ft),
                   *tx = sp_batch_tensor(b, (size_t)fx);
    int64_t label;
    memcpy(&label, (const uint8_t *)tl->data + (size_t)row * 8, 8);
    if (label != (int64_t)id)
        return snprintf(why, whylen, "batch %llu row %u: id %llu but label %lld", (unsigned long long)sp_batch_index(b),
                        row, (unsigned long long)id, (long long)label), false;
    const uint8_t *tp = (const uint8_t *)tt->data + (size_t)row * d->seq * elem_size(tt);
    for (uint32_t i = 0; i < d->seq; i++) {
        uint32_t v;
        if (elem_size(tt) == 2) {
            uint16_t u;
            memcpy(&u, tp + 2 * i, 2);
            v = u;
        } else {
            int32_t s;
            memcpy(&s, tp + 4 * i, 4);
            v = (uint32_t)s;
        }
        if (v != lt_token(d->salt, id, i))
            return snprintf(why, whylen, "batch %llu row %u (id %llu): token %u is %u, want %u",
                            (unsigned long long)sp_batch_index(b), row, (unsigned long long)id, i, v,
                            lt_token(d->salt, id, i)), false;
    }
    const uint8_t *xp = (const uint8_t *)tx->data + (size_t)row * 12;
    for (uint32_t i = 0; i < 3; i++) {
        float f, want = lt_x(d->salt, id, i);
        memcpy(&f, xp + 4 * i, 4);
        if (memcmp(&f, &want, 4))
            return snprintf(why, whylen, "batch %llu row %u (id %llu): x[%u] is %g, want %g",
                            (unsigned long long)sp_batch_index(b), row, (unsigned long long)id, i, f, want), false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------ records */

void lt_rec_free(lt_rec *r)
{
    free(r->hash);
    free(r->ids);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * elem);
    if (!q)
        abort(); /* a test helper: out of memory is not a result */
    *cap = c;
    return q;
}

void lt_rec_add(lt_rec *r, const lt_ds *d, const sp_batch *b)
{
    uint32_t rows = sp_batch_size(b);
    size_t capb = r->capb;
    r->hash = grow(r->hash, &capb, r->nb + 1, sizeof *r->hash);
    capb = r->capb;
    r->rows = grow(r->rows, &capb, r->nb + 1, sizeof *r->rows);
    r->capb = capb;
    r->ids = grow(r->ids, &r->capi, r->ni + rows, sizeof *r->ids);
    r->hash[r->nb] = lt_batch_hash(b);
    r->rows[r->nb++] = rows;
    for (uint32_t i = 0; i < rows; i++) {
        r->ids[r->ni++] = sp_batch_sample_id(b, i);
        char why[256];
        if (sp_batch_sample_id(b, i) == UINT64_MAX)
            r->filled++;
        else if (d && !lt_row_ok(d, b, i, why, sizeof why) && r->bad++ == 0)
            snprintf(r->why, sizeof r->why, "%s", why);
    }
}

int lt_drain(sp_loader *l, const lt_ds *d, lt_rec *r, uint64_t max, int timeout_ms)
{
    for (uint64_t k = 0; k < max; k++) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, timeout_ms);
        if (rc)
            return rc;
        lt_rec_add(r, d, b);
        rc = sp_loader_release(l, b);
        if (rc)
            return rc;
    }
    return 0;
}

int lt_epoch(sp_loader *l, const lt_ds *d, lt_rec *r) { return lt_drain(l, d, r, UINT64_MAX, 30000); }

void lt_probe_io(const lt_ds *d, bool *uring, bool *direct)
{
    sp_loader *l;
    *uring = lt_open(d->dir, &l, "io", "uring", NULL) == 0;
    sp_loader_close(l);
    char path[4096];
    snprintf(path, sizeof path, "%s/shard-000000.sps", d->dir);
    int fd = open(path, O_RDONLY | O_DIRECT);
    *direct = fd >= 0;
    if (fd >= 0)
        close(fd);
}
