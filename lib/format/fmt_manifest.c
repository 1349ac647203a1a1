/* fmt_manifest.c - the dataset manifest: schema, metadata, shard list and per-block sample counts,
 * so a loader can plan an epoch over thousands of shards after reading one file. */
#include <errno.h>
#include <stdio.h>

#include "fmt.h"

#define MANIFEST_HEADER_BYTES 64
#define MANIFEST_SHARD_BYTES 40

bool fmt_shard_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > FMT_MAX_SHARD_NAME || memchr(name, '/', len) || memchr(name, '\0', len))
        return false;
    return !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.');
}

void fmt_manifest_free(fmt_manifest *m)
{
    for (uint64_t i = 0; m->shards && i < m->nshards; i++)
        sp_free(m->shards[i].name);
    sp_free(m->shards);
    sp_free(m->block_samples);
    fmt_meta_free(&m->meta);
    memset(m, 0, sizeof *m);
}

void fmt_manifest_encode(const fmt_manifest *m, sp_buf *b)
{
    sp_buf sch = { 0 }, met = { 0 }, names = { 0 };
    fmt_schema_encode(&m->schema, &sch);
    fmt_meta_encode(&m->meta, &met);
    for (uint64_t i = 0; i < m->nshards; i++) {
        size_t len = strlen(m->shards[i].name);
        sp_buf_u16(&names, (uint16_t)len);
        sp_buf_put(&names, m->shards[i].name, len);
    }
    if (sch.failed || met.failed || names.failed)
        b->failed = true; /* a part cut short by a failed allocation must not be written */
    sp_buf_put(b, FMT_MAGIC_MANIFEST, FMT_MAGIC_LEN);
    sp_buf_u16(b, FMT_VERSION_MAJOR);
    sp_buf_u16(b, FMT_MANIFEST_MINOR);
    sp_buf_u32(b, 0);
    sp_buf_u64(b, m->dataset_id);
    sp_buf_u64(b, m->nshards);
    sp_buf_u64(b, m->nblocks);
    sp_buf_u64(b, m->nsamples);
    sp_buf_u32(b, (uint32_t)sch.len);
    sp_buf_u32(b, (uint32_t)met.len);
    sp_buf_u32(b, (uint32_t)names.len);
    sp_buf_u32(b, 0);
    sp_buf_put(b, sch.data, sch.len);
    sp_buf_put(b, met.data, met.len);
    sp_buf_put(b, names.data, names.len);
    sp_buf_pad(b, 8);
    for (uint64_t i = 0; i < m->nshards; i++) {
        const fmt_manifest_shard *s = &m->shards[i];
        sp_buf_u64(b, s->file_size);
        sp_buf_u64(b, s->nblocks);
        sp_buf_u64(b, s->nsamples);
        sp_buf_u64(b, s->index_checksum);
        sp_buf_u32(b, s->max_stored);
        sp_buf_u32(b, s->max_raw);
    }
    for (uint64_t i = 0; i < m->nblocks; i++)
        sp_buf_u32(b, m->block_samples[i]);
    sp_buf_pad(b, 8);
    uint64_t sum = b->failed ? 0 : sp_checksum64(b->data, b->len);
    sp_buf_u64(b, sum);
    sp_buf_free(&sch);
    sp_buf_free(&met);
    sp_buf_free(&names);
}

static int names_decode(sp_cursor *c, uint64_t at, fmt_manifest *m, fmt_err *e)
{
    const uint8_t *start = c->p;
    for (uint64_t i = 0; i < m->nshards; i++) {
        uint16_t len = sp_cursor_u16(c);
        const uint8_t *name = sp_cursor_take(c, len);
        uint64_t here = at + (uint64_t)(c->p - start);
        if (!c->ok || !fmt_shard_name_ok((const char *)name, len))
            return fmt_errf(e, SP_ECORRUPT, here, "shard name %llu is cut short or not a plain file name",
                            (unsigned long long)i);
        if (!(m->shards[i].name = sp_malloc((size_t)len + 1)))
            return fmt_errf(e, SP_ENOMEM, here, "out of memory");
        memcpy(m->shards[i].name, name, len);
        m->shards[i].name[len] = '\0';
    }
    if (c->left)
        return fmt_errf(e, SP_ECORRUPT, at, "shard name list has %zu trailing bytes", c->left);
    return SP_OK;
}

/* Shard entries and block counts, each checked against the totals before anything is trusted. */
static int tables_decode(const uint8_t *p, uint64_t at, const fmt_limits *lim, fmt_manifest *m, fmt_err *e)
{
    uint64_t blocks = 0, samples = 0, bi = 0;
    for (uint64_t i = 0; i < m->nshards; i++, p += MANIFEST_SHARD_BYTES, at += MANIFEST_SHARD_BYTES) {
        fmt_manifest_shard *s = &m->shards[i];
        s->file_size = sp_ld64(p);
        s->nblocks = sp_ld64(p + 8);
        s->nsamples = sp_ld64(p + 16);
        s->index_checksum = sp_ld64(p + 24);
        s->max_stored = sp_ld32(p + 32);
        s->max_raw = sp_ld32(p + 36);
        /* 1.0 left them zero; a raw size above max_block_bytes is refused as the index refuses it */
        if (s->max_raw > lim->max_block_bytes)
            return fmt_errf(e, SP_ELIMIT, at + 36, "shard entry %llu: largest block is %u bytes raw, above "
                            "max_block_bytes %llu", (unsigned long long)i, s->max_raw,
                            (unsigned long long)lim->max_block_bytes);
        if (s->max_stored == 0 && s->max_raw)
            return fmt_errf(e, SP_ECORRUPT, at + 32, "shard entry %llu records a largest raw block but no largest "
                            "stored block", (unsigned long long)i);
        if (s->nblocks == 0 || s->nblocks > m->nblocks - blocks ||
            s->nsamples > m->nsamples - samples)
            return fmt_errf(e, SP_ECORRUPT, at, "shard entry %llu has counts that do not add up",
                            (unsigned long long)i);
        blocks += s->nblocks;
        samples += s->nsamples;
    }
    if (blocks != m->nblocks || samples != m->nsamples)
        return fmt_errf(e, SP_ECORRUPT, at, "shard entries count %llu blocks and %llu samples, header says %llu and %llu",
                        (unsigned long long)blocks, (unsigned long long)samples,
                        (unsigned long long)m->nblocks, (unsigned long long)m->nsamples);
    for (uint64_t i = 0; i < m->nshards; i++) {
        uint64_t sum = 0;
        for (uint64_t k = 0; k < m->shards[i].nblocks; k++, bi++) {
            m->block_samples[bi] = sp_ld32(p + 4 * bi);
            if (m->block_samples[bi] == 0 || m->block_samples[bi] > FMT_MAX_BLOCK_SAMPLES)
                return fmt_errf(e, SP_ECORRUPT, at + 4 * bi, "block %llu of shard %llu holds %u samples",
                                (unsigned long long)k, (unsigned long long)i, m->block_samples[bi]);
            sum += m->block_samples[bi];
        }
        if (sum != m->shards[i].nsamples)
            return fmt_errf(e, SP_ECORRUPT, at, "block counts of shard %llu add to %llu, entry says %llu",
                            (unsigned long long)i, (unsigned long long)sum,
                            (unsigned long long)m->shards[i].nsamples);
    }
    return SP_OK;
}

static int manifest_header(const uint8_t *p, size_t n, const fmt_limits *lim, fmt_manifest *m,
                           uint32_t sizes[3], fmt_err *e)
{
    if (n < MANIFEST_HEADER_BYTES + 8)
        return fmt_errf(e, n >= FMT_MAGIC_LEN && !memcmp(p, FMT_MAGIC_MANIFEST, FMT_MAGIC_LEN) ? SP_ETRUNC : SP_EFORMAT,
                        n, "file is %zu bytes, too short for a manifest", n);
    if (memcmp(p, FMT_MAGIC_MANIFEST, FMT_MAGIC_LEN) != 0)
        return fmt_errf(e, SP_EFORMAT, 0, "bad magic: not a shardpack manifest");
    if (sp_ld16(p + 8) != FMT_VERSION_MAJOR)
        return fmt_errf(e, SP_EVERSION, 8, "manifest version %u.%u; this library reads %u.x",
                        sp_ld16(p + 8), sp_ld16(p + 10), FMT_VERSION_MAJOR);
    if (sp_ld64(p + n - 8) != sp_checksum64(p, n - 8))
        return fmt_errf(e, SP_ECHECKSUM, n - 8, "manifest checksum mismatch (truncated or damaged)");
    m->dataset_id = sp_ld64(p + 16);
    m->nshards = sp_ld64(p + 24);
    m->nblocks = sp_ld64(p + 32);
    m->nsamples = sp_ld64(p + 40);
    for (int i = 0; i < 3; i++)
        sizes[i] = sp_ld32(p + 48 + 4 * i);
    if (sp_ld32(p + 12) || sp_ld32(p + 60))
        return fmt_errf(e, SP_ECORRUPT, 12, "manifest reserved fields are not zero");
    if (m->nshards == 0 || m->nshards > lim->max_shards)
        return fmt_errf(e, m->nshards ? SP_ELIMIT : SP_ECORRUPT, 24, "manifest names %llu shards (allowed 1..%llu)",
                        (unsigned long long)m->nshards, (unsigned long long)lim->max_shards);
    return SP_OK;
}

int fmt_manifest_decode(const uint8_t *p, size_t n, const fmt_limits *lim, fmt_manifest *m,
                        fmt_err *e)
{
    memset(m, 0, sizeof *m);
    e->block = -1;
    uint32_t sz[3] = { 0 };
    int rc = manifest_header(p, n, lim, m, sz, e);
    if (rc)
        return rc;
    sp_cursor c = sp_cursor_make(p + MANIFEST_HEADER_BYTES, n - 8 - MANIFEST_HEADER_BYTES);
    sp_cursor sc = sp_cursor_make(sp_cursor_take(&c, sz[0]), sz[0]);
    sp_cursor mc = sp_cursor_make(sp_cursor_take(&c, sz[1]), sz[1]);
    sp_cursor nc = sp_cursor_make(sp_cursor_take(&c, sz[2]), sz[2]);
    uint64_t tables = sp_align_up(MANIFEST_HEADER_BYTES + (uint64_t)sz[0] + sz[1] + sz[2], 8), need, t2;
    /* Sizes first, allocations after: the tables must fit the bytes actually present. */
    if (!c.ok || sp_mul_overflow(m->nshards, MANIFEST_SHARD_BYTES, &need) ||
        sp_mul_overflow(m->nblocks, 4, &t2) || sp_add_overflow(need, sp_align_up(t2, 8), &need) ||
        tables > n - 8 || n - 8 - tables != need) {
        m->nshards = 0;
        return fmt_errf(e, SP_ECORRUPT, 48, "manifest section sizes do not match its %zu bytes", n);
    }
    if ((rc = fmt_schema_decode(&sc, MANIFEST_HEADER_BYTES, &m->schema, e)) ||
        (rc = fmt_meta_decode(&mc, MANIFEST_HEADER_BYTES + sz[0], &m->meta, e))) {
        m->nshards = 0;
        return rc;
    }
    if (sc.left || mc.left) {
        fmt_meta_free(&m->meta);
        m->nshards = 0;
        return fmt_errf(e, SP_ECORRUPT, MANIFEST_HEADER_BYTES, "manifest %s section has trailing bytes",
                        sc.left ? "schema" : "metadata");
    }
    m->shards = sp_calloc(m->nshards, sizeof *m->shards);
    m->block_samples = sp_calloc(m->nblocks ? m->nblocks : 1, sizeof *m->block_samples);
    if (!m->shards || !m->block_samples)
        rc = fmt_errf(e, SP_ENOMEM, 0, "out of memory for %llu shard entries", (unsigned long long)m->nshards);
    if (rc == SP_OK)
        rc = names_decode(&nc, MANIFEST_HEADER_BYTES + (uint64_t)sz[0] + sz[1], m, e);
    if (rc == SP_OK)
        rc = tables_decode(p + tables, tables, lim, m, e);
    if (rc)
        fmt_manifest_free(m);
    return rc;
}

bool fmt_manifest_replaced(const char *mpath, const sp_file_id *read, char *why, size_t whylen)
{
    struct stat st;
    if (stat(mpath, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return false; /* cannot tell (EACCES, EIO): no sign of a replacement */
        snprintf(why, whylen, "the dataset was removed or replaced while being read (%s is gone)", mpath);
        return true;
    }
    sp_file_id now = sp_file_id_of(&st);
    if (sp_file_id_equal(&now, read))
        return false;
    char was[96], is[96];
    sp_file_id_describe(read, was, sizeof was);
    sp_file_id_describe(&now, is, sizeof is);
    snprintf(why, whylen, "the dataset was replaced while being read (its manifest %s was %s; now %s)", mpath, was,
             is);
    return true;
}
