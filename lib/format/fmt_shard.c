/* fmt_shard.c - shard header, trailer and index: encoding, checked decoding, and opening a shard
 * file with one read of its tail. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmt.h"
#include "sp_file.h"

int fmt_errf(fmt_err *e, int code, uint64_t offset, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->why, sizeof e->why, fmt, ap);
        va_end(ap);
        e->offset = offset;
    }
    return code;
}

void fmt_limits_from_params(fmt_limits *l, const sp_params *p)
{
    l->max_block_bytes = (uint64_t)sp_params_get(p, SP_PARAM_MAX_BLOCK_BYTES);
    l->max_shards = (uint64_t)sp_params_get(p, SP_PARAM_MAX_SHARDS);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static bool align_ok(uint32_t a) { return a >= FMT_ALIGN_MIN && a <= FMT_ALIGN_MAX && (a & (a - 1)) == 0; }

void fmt_header_encode(uint8_t out[FMT_HEADER_BYTES], const fmt_header *h)
{
    memset(out, 0, FMT_HEADER_BYTES);
    memcpy(out, FMT_MAGIC_SHARD, FMT_MAGIC_LEN);
    sp_st16(out + 8, FMT_VERSION_MAJOR);
    sp_st16(out + 10, FMT_VERSION_MINOR);
    sp_st32(out + 12, FMT_HEADER_BYTES);
    sp_st32(out + 16, h->align);
    sp_st64(out + 24, h->dataset_id);
    sp_st32(out + 32, h->shard_no);
    sp_st64(out + 56, sp_checksum64(out, 56));
}

int fmt_header_decode(const uint8_t *p, size_t n, fmt_header *h, fmt_err *e)
{
    if (n < FMT_HEADER_BYTES)
        return fmt_errf(e, SP_ETRUNC, n, "file ends inside the %u-byte header", FMT_HEADER_BYTES);
    if (memcmp(p, FMT_MAGIC_SHARD, FMT_MAGIC_LEN) != 0)
        return fmt_errf(e, SP_EFORMAT, 0, "bad magic at start: not a shardpack shard");
    if (sp_ld16(p + 8) != FMT_VERSION_MAJOR)
        return fmt_errf(e, SP_EVERSION, 8, "format version %u.%u; this library reads %u.x",
                        sp_ld16(p + 8), sp_ld16(p + 10), FMT_VERSION_MAJOR);
    if (sp_ld64(p + 56) != sp_checksum64(p, 56))
        return fmt_errf(e, SP_ECHECKSUM, 56, "header checksum mismatch");
    h->align = sp_ld32(p + 16);
    h->dataset_id = sp_ld64(p + 24);
    h->shard_no = sp_ld32(p + 32);
    if (sp_ld32(p + 12) != FMT_HEADER_BYTES || !align_ok(h->align) || sp_ld32(p + 20) != 0 ||
        !all_zero(p + 36, 20))
        return fmt_errf(e, SP_ECORRUPT, 12, "header fields out of range");
    return SP_OK;
}

static uint32_t trailer_check(const uint8_t *p) { return (uint32_t)sp_checksum64(p, 52); }

void fmt_trailer_encode(uint8_t out[FMT_TRAILER_BYTES], const fmt_trailer *t)
{
    memset(out, 0, FMT_TRAILER_BYTES);
    sp_st64(out + 0, t->index_offset);
    sp_st64(out + 8, t->index_size);
    sp_st64(out + 16, t->index_checksum);
    sp_st64(out + 24, t->file_size);
    sp_st64(out + 32, t->nblocks);
    sp_st64(out + 40, t->nsamples);
    sp_st16(out + 48, FMT_VERSION_MAJOR);
    sp_st16(out + 50, FMT_VERSION_MINOR);
    sp_st32(out + 52, trailer_check(out));
    memcpy(out + 56, FMT_MAGIC_SHARD, FMT_MAGIC_LEN);
}

int fmt_trailer_decode(const uint8_t *p, uint64_t file_size, fmt_trailer *t, fmt_err *e)
{
    uint64_t at = file_size - FMT_TRAILER_BYTES;
    if (memcmp(p + 56, FMT_MAGIC_SHARD, FMT_MAGIC_LEN) != 0)
        return fmt_errf(e, SP_ETRUNC, at + 56,
                        "no trailer magic at the end: the file is truncated or not a shard");
    if (sp_ld16(p + 48) != FMT_VERSION_MAJOR)
        return fmt_errf(e, SP_EVERSION, at + 48, "format version %u.%u; this library reads %u.x",
                        sp_ld16(p + 48), sp_ld16(p + 50), FMT_VERSION_MAJOR);
    if (sp_ld32(p + 52) != trailer_check(p))
        return fmt_errf(e, SP_ECHECKSUM, at + 52, "trailer checksum mismatch");
    *t = (fmt_trailer){ sp_ld64(p), sp_ld64(p + 8), sp_ld64(p + 16), sp_ld64(p + 24), sp_ld64(p + 32),
                        sp_ld64(p + 40) };
    if (t->file_size != file_size)
        return fmt_errf(e, t->file_size > file_size ? SP_ETRUNC : SP_ECORRUPT, at + 24,
                        "trailer says the file has %llu bytes, it has %llu",
                        (unsigned long long)t->file_size, (unsigned long long)file_size);
    uint64_t end;
    if (t->index_size > FMT_MAX_INDEX_BYTES)
        return fmt_errf(e, SP_ELIMIT, at + 8, "index of %llu bytes exceeds the %u-byte limit",
                        (unsigned long long)t->index_size, FMT_MAX_INDEX_BYTES);
    if (t->index_size < FMT_INDEX_HEADER_BYTES || sp_add_overflow(t->index_offset, t->index_size, &end) ||
        end != at || t->index_offset < FMT_HEADER_BYTES)
        return fmt_errf(e, SP_ECORRUPT, at, "trailer places the index at %llu+%llu, outside the file",
                        (unsigned long long)t->index_offset, (unsigned long long)t->index_size);
    return SP_OK;
}

void fmt_index_encode(const fmt_header *h, const sp_schema *s, const fmt_meta *m,
                      const fmt_block_entry *blocks, uint64_t nblocks, uint64_t nsamples, sp_buf *b)
{
    sp_buf sch = { 0 }, met = { 0 };
    fmt_schema_encode(s, &sch);
    fmt_meta_encode(m, &met);
    if (sch.failed || met.failed)
        b->failed = true; /* a part cut short by a failed allocation must not be written */
    size_t start = b->len;
    sp_buf_put(b, FMT_MAGIC_INDEX, 4);
    sp_buf_u32(b, h->align);
    sp_buf_u64(b, nblocks);
    sp_buf_u64(b, nsamples);
    sp_buf_u64(b, h->dataset_id);
    sp_buf_u32(b, h->shard_no);
    sp_buf_u32(b, (uint32_t)sch.len);
    sp_buf_u32(b, (uint32_t)met.len);
    sp_buf_u32(b, 0);
    sp_buf_put(b, sch.data, sch.len);
    sp_buf_put(b, met.data, met.len);
    while (!b->failed && (b->len - start) % 8)
        sp_buf_u8(b, 0);
    for (uint64_t i = 0; i < nblocks; i++) {
        const fmt_block_entry *be = &blocks[i];
        sp_buf_u64(b, be->offset);
        sp_buf_u64(b, be->first_sample);
        sp_buf_u32(b, be->stored_size);
        sp_buf_u32(b, be->raw_size);
        sp_buf_u32(b, be->nsamples);
        sp_buf_u8(b, be->codec);
        sp_buf_u8(b, 0);
        sp_buf_u16(b, 0);
        sp_buf_u64(b, be->checksum);
        sp_buf_u64(b, be->raw_checksum);
    }
    sp_buf_free(&sch);
    sp_buf_free(&met);
}

void fmt_index_free(fmt_index *ix)
{
    fmt_meta_free(&ix->meta);
    sp_free(ix->blocks);
    ix->blocks = NULL;
}

/* Checks one block entry against its predecessor's end and the shard's limits. */
static int block_entry_check(const fmt_block_entry *be, uint64_t i, uint64_t expect_offset,
                             uint64_t expect_first, uint64_t index_offset, uint64_t min_sample,
                             const fmt_limits *lim, uint64_t at, fmt_err *e)
{
    e->block = (int64_t)i;
    if (be->offset != expect_offset)
        return fmt_errf(e, SP_ECORRUPT, at, "block %llu starts at %llu, expected %llu", (unsigned long long)i,
                        (unsigned long long)be->offset, (unsigned long long)expect_offset);
    if (be->first_sample != expect_first)
        return fmt_errf(e, SP_ECORRUPT, at + 8, "block %llu first sample is %llu, expected %llu",
                        (unsigned long long)i, (unsigned long long)be->first_sample,
                        (unsigned long long)expect_first);
    if (be->nsamples == 0 || be->nsamples > FMT_MAX_BLOCK_SAMPLES)
        return fmt_errf(e, SP_ECORRUPT, at + 24, "block %llu holds %u samples (allowed 1..%u)",
                        (unsigned long long)i, be->nsamples, FMT_MAX_BLOCK_SAMPLES);
    if (be->raw_size > lim->max_block_bytes)
        return fmt_errf(e, SP_ELIMIT, at + 20, "block %llu is %u bytes raw, above max_block_bytes %llu",
                        (unsigned long long)i, be->raw_size, (unsigned long long)lim->max_block_bytes);
    if ((uint64_t)be->raw_size < (uint64_t)be->nsamples * min_sample)
        return fmt_errf(e, SP_ECORRUPT, at + 20, "block %llu: %u raw bytes cannot hold %u samples",
                        (unsigned long long)i, be->raw_size, be->nsamples);
    bool size_ok = be->codec == SP_CODEC_STORED ? be->stored_size == be->raw_size &&
                                                      be->checksum == be->raw_checksum
                 : be->codec == SP_CODEC_ZSTD   ? be->stored_size > 0 &&
                                                    be->stored_size <= ZSTD_compressBound(be->raw_size)
                                                : false;
    if (!size_ok)
        return fmt_errf(e, SP_ECORRUPT, at + 16, "block %llu: codec %u with %u stored and %u raw bytes",
                        (unsigned long long)i, be->codec, be->stored_size, be->raw_size);
    if (be->offset + be->stored_size > index_offset)
        return fmt_errf(e, SP_ECORRUPT, at, "block %llu runs past the index", (unsigned long long)i);
    e->block = -1;
    return SP_OK;
}

static int index_header_decode(sp_cursor *c, const fmt_trailer *t, fmt_index *out,
                               uint32_t *schema_bytes, uint32_t *meta_bytes, fmt_err *e)
{
    uint64_t at = t->index_offset;
    const uint8_t *magic = sp_cursor_take(c, 4);
    if (!magic || memcmp(magic, FMT_MAGIC_INDEX, 4) != 0)
        return fmt_errf(e, SP_ECORRUPT, at, "bad index magic");
    out->id.align = sp_cursor_u32(c);
    out->nblocks = sp_cursor_u64(c);
    out->nsamples = sp_cursor_u64(c);
    out->id.dataset_id = sp_cursor_u64(c);
    out->id.shard_no = sp_cursor_u32(c);
    *schema_bytes = sp_cursor_u32(c);
    *meta_bytes = sp_cursor_u32(c);
    uint32_t reserved = sp_cursor_u32(c);
    if (!align_ok(out->id.align) || reserved)
        return fmt_errf(e, SP_ECORRUPT, at + 4, "index header fields out of range");
    if (out->nblocks != t->nblocks || out->nsamples != t->nsamples)
        return fmt_errf(e, SP_ECORRUPT, at + 8, "index counts (%llu blocks, %llu samples) differ from the trailer's",
                        (unsigned long long)out->nblocks, (unsigned long long)out->nsamples);
    if (out->nblocks == 0)
        return fmt_errf(e, SP_ECORRUPT, at + 8, "shard has no blocks");
    if (t->index_offset % out->id.align)
        return fmt_errf(e, SP_ECORRUPT, at, "index offset is not aligned to %u", out->id.align);
    return SP_OK;
}

int fmt_index_decode(const uint8_t *p, size_t n, const fmt_trailer *t, const fmt_limits *lim,
                     fmt_index *out, fmt_err *e)
{
    memset(out, 0, sizeof *out);
    e->block = -1;
    sp_cursor c = sp_cursor_make(p, n);
    uint32_t schema_bytes = 0, meta_bytes = 0;
    int rc = index_header_decode(&c, t, out, &schema_bytes, &meta_bytes, e);
    if (rc)
        return rc;
    uint64_t at = t->index_offset + FMT_INDEX_HEADER_BYTES;
    sp_cursor sc = sp_cursor_make(sp_cursor_take(&c, schema_bytes), schema_bytes);
    sp_cursor mc = sp_cursor_make(sp_cursor_take(&c, meta_bytes), meta_bytes);
    if (!c.ok)
        return fmt_errf(e, SP_ECORRUPT, at, "schema and metadata sizes run past the index");
    if ((rc = fmt_schema_decode(&sc, at, &out->schema, e)))
        return rc;
    if (sc.left)
        return fmt_errf(e, SP_ECORRUPT, at, "schema has %zu trailing bytes", sc.left);
    if ((rc = fmt_meta_decode(&mc, at + schema_bytes, &out->meta, e)))
        return rc;
    size_t table = sp_align_up(FMT_INDEX_HEADER_BYTES + (uint64_t)schema_bytes + meta_bytes, 8);
    uint64_t want;
    /* The block table must fill the rest of the index exactly; checking this before allocating
     * bounds the allocation by the bytes actually present. */
    if (mc.left || sp_mul_overflow(out->nblocks, FMT_BLOCK_ENTRY_BYTES, &want) || table > n ||
        n - table != want) {
        fmt_index_free(out);
        return fmt_errf(e, SP_ECORRUPT, t->index_offset + table,
                        "index is %zu bytes, not what %llu block entries need", n,
                        (unsigned long long)out->nblocks);
    }
    out->blocks = sp_calloc(out->nblocks, sizeof *out->blocks);
    if (!out->blocks) {
        fmt_index_free(out);
        return fmt_errf(e, SP_ENOMEM, t->index_offset, "out of memory for %llu block entries",
                        (unsigned long long)out->nblocks);
    }
    uint64_t offset = out->id.align, first = 0, min_sample = fmt_schema_min_sample_bytes(&out->schema);
    for (uint64_t i = 0; i < out->nblocks; i++) {
        const uint8_t *q = p + table + i * FMT_BLOCK_ENTRY_BYTES;
        fmt_block_entry *be = &out->blocks[i];
        *be = (fmt_block_entry){ sp_ld64(q), sp_ld64(q + 8), sp_ld32(q + 16), sp_ld32(q + 20),
                                 sp_ld32(q + 24), q[28], sp_ld64(q + 32), sp_ld64(q + 40) };
        uint64_t q_at = t->index_offset + table + i * FMT_BLOCK_ENTRY_BYTES;
        if (q[29] || sp_ld16(q + 30))
            rc = fmt_errf(e, SP_ECORRUPT, q_at + 29, "block %llu entry has nonzero reserved bytes",
                          (unsigned long long)i);
        else
            rc = block_entry_check(be, i, offset, first, t->index_offset, min_sample, lim, q_at, e);
        if (rc) {
            fmt_index_free(out);
            return rc;
        }
        offset = sp_align_up(be->offset + be->stored_size, out->id.align);
        first += be->nsamples;
    }
    if (offset != t->index_offset || first != out->nsamples) {
        fmt_index_free(out);
        return fmt_errf(e, SP_ECORRUPT, t->index_offset,
                        "blocks end at %llu holding %llu samples; index is at %llu and counts %llu",
                        (unsigned long long)offset, (unsigned long long)first,
                        (unsigned long long)t->index_offset, (unsigned long long)out->nsamples);
    }
    return SP_OK;
}

void fmt_shard_close(fmt_shard *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    fmt_index_free(&s->index);
    sp_free(s->path);
    sp_free(s);
}

/* The index checksum is checked before a single field of the index is trusted. */
static int index_check_decode(const uint8_t *p, const fmt_trailer *t, const fmt_limits *lim,
                              fmt_index *ix, fmt_err *e)
{
    if (sp_checksum64(p, t->index_size) != t->index_checksum)
        return fmt_errf(e, SP_ECHECKSUM, t->index_offset, "index checksum mismatch");
    return fmt_index_decode(p, t->index_size, t, lim, ix, e);
}

/* The index through the shard's own descriptor, for fmt_shard_open. */
static int read_fd(void *ctx, uint8_t *buf, uint64_t len, uint64_t off, fmt_err *e)
{
    int rc = sp_pread_all(*(const int *)ctx, buf, len, off);
    if (rc)
        return fmt_errf(e, rc == SP_ETRUNC ? SP_ETRUNC : SP_EIO, off, "cannot read the index: %s",
                        rc == SP_ETRUNC ? "file shrank" : strerror(-rc));
    return SP_OK;
}

static int shard_read_index(fmt_shard *s, const fmt_limits *lim, const uint8_t *tail, size_t tail_len,
                            fmt_read_fn read, void *ctx, fmt_err *e)
{
    const fmt_trailer *t = &s->trailer;
    uint64_t tail_start = s->file_size - tail_len;
    if (t->index_offset >= tail_start)
        return index_check_decode(tail + (t->index_offset - tail_start), t, lim, &s->index, e);
    /* Index larger than the first read: one more read, bounded by the file's real size. */
    uint8_t *ix = sp_malloc(t->index_size);
    if (!ix)
        return fmt_errf(e, SP_ENOMEM, t->index_offset, "out of memory for a %llu-byte index",
                        (unsigned long long)t->index_size);
    int rc = read(ctx, ix, t->index_size, t->index_offset, e);
    if (rc == SP_OK)
        rc = index_check_decode(ix, t, lim, &s->index, e);
    sp_free(ix);
    return rc;
}

/* Trailer and index from the tail bytes; s->file_size set. */
static int shard_decode_tail(fmt_shard *s, const uint8_t *tail, size_t tail_len, fmt_read_fn read, void *ctx,
                             const fmt_limits *lim, fmt_err *e)
{
    if (s->file_size < FMT_HEADER_BYTES + FMT_INDEX_HEADER_BYTES + FMT_TRAILER_BYTES)
        return fmt_errf(e, s->file_size ? SP_ETRUNC : SP_EFORMAT, s->file_size,
                        "file is %llu bytes, too short for a shard", (unsigned long long)s->file_size);
    if (tail_len == s->file_size && memcmp(tail, FMT_MAGIC_SHARD, FMT_MAGIC_LEN) != 0)
        return fmt_errf(e, SP_EFORMAT, 0, "bad magic at start: not a shardpack shard");
    int rc = fmt_trailer_decode(tail + tail_len - FMT_TRAILER_BYTES, s->file_size, &s->trailer, e);
    if (rc == SP_OK)
        rc = shard_read_index(s, lim, tail, tail_len, read, ctx, e);
    return rc;
}

int fmt_shard_open_tail(const char *path, uint64_t file_size, const uint8_t *tail, size_t tail_len,
                        fmt_read_fn read, void *ctx, const fmt_limits *lim, fmt_shard **out, fmt_err *e)
{
    *out = NULL;
    e->block = -1;
    fmt_shard *s = sp_calloc(1, sizeof *s);
    if (s)
        s->fd = -1;
    if (!s || !(s->path = sp_strdup(path))) {
        fmt_shard_close(s);
        return fmt_errf(e, SP_ENOMEM, 0, "out of memory");
    }
    s->file_size = file_size;
    s->id.size = file_size;
    int rc = tail_len > file_size || tail_len < (file_size < FMT_TAIL_READ ? file_size : FMT_TAIL_READ)
                 ? fmt_errf(e, SP_EINVAL, 0, "fmt_shard_open_tail: %zu tail bytes of %llu", tail_len,
                            (unsigned long long)file_size)
                 : shard_decode_tail(s, tail, tail_len, read, ctx, lim, e);
    if (rc) {
        fmt_shard_close(s);
        return rc;
    }
    *out = s;
    return SP_OK;
}

int fmt_shard_open_fd(const char *path, int fd, const struct stat *st, const fmt_limits *lim, fmt_shard **out,
                      fmt_err *e)
{
    *out = NULL;
    e->block = -1;
    fmt_shard *s = sp_calloc(1, sizeof *s);
    uint8_t *tail = sp_malloc(FMT_TAIL_READ);
    int rc;
    if (s)
        s->fd = -1;
    if (!s || !tail || !(s->path = sp_strdup(path))) {
        rc = fmt_errf(e, SP_ENOMEM, 0, "out of memory");
        goto fail;
    }
    s->id = sp_file_id_of(st);
    s->file_size = (uint64_t)st->st_size;
    size_t tail_len = s->file_size < FMT_TAIL_READ ? (size_t)s->file_size : FMT_TAIL_READ;
    rc = s->file_size < FMT_HEADER_BYTES + FMT_INDEX_HEADER_BYTES + FMT_TRAILER_BYTES
             ? SP_OK
             : sp_pread_all(fd, tail, tail_len, s->file_size - tail_len);
    if (rc) {
        rc = fmt_errf(e, rc == SP_ETRUNC ? SP_ETRUNC : SP_EIO, s->file_size - tail_len,
                      "cannot read the trailer: %s", rc == SP_ETRUNC ? "file shrank" : strerror(-rc));
        goto fail;
    }
    rc = shard_decode_tail(s, tail, tail_len, read_fd, &fd, lim, e);
    if (rc)
        goto fail;
    sp_free(tail);
    *out = s;
    return SP_OK;
fail:
    sp_free(tail);
    fmt_shard_close(s);
    return rc;
}

int fmt_shard_open(const char *path, const fmt_limits *lim, fmt_shard **out, fmt_err *e)
{
    *out = NULL;
    e->block = -1;
    struct stat st;
    int fd = sp_open_regular(path, 0, &st);
    if (fd < 0)
        return fmt_errf(e, sp_open_code(fd), 0, "cannot open: %s", sp_open_why(fd, &st));
    /* The index is all an open shard needs; the descriptor is reopened on the first block read,
     * so a dataset of 10,000 shards does not hold 10,000 descriptors after planning. */
    int rc = fmt_shard_open_fd(path, fd, &st, lim, out, e);
    close(fd);
    return rc;
}

/* Whether the header at fd names another dataset or shard than s's index: a file written in place
 * of s (its inode number reused) rather than s itself, damaged. */
static bool other_shard_header(const fmt_shard_mark *m, int fd, fmt_header *h)
{
    uint8_t buf[FMT_HEADER_BYTES];
    return sp_pread_all(fd, buf, sizeof buf, 0) == 0 && fmt_header_decode(buf, sizeof buf, h, NULL) == SP_OK &&
           (h->dataset_id != m->h.dataset_id || h->shard_no != m->h.shard_no);
}

fmt_shard_mark fmt_shard_mark_of(const fmt_shard *s) { return (fmt_shard_mark){ s->id, s->index.id }; }

int fmt_mark_check_file(const fmt_shard_mark *m, int fd, const struct stat *now, fmt_err *e)
{
    sp_file_id id = sp_file_id_of(now);
    if (sp_file_id_equal(&id, &m->id))
        return SP_OK;
    char was[96], is[96];
    sp_file_id_describe(&m->id, was, sizeof was);
    sp_file_id_describe(&id, is, sizeof is);
    fmt_header h;
    if (id.dev != m->id.dev || id.ino != m->id.ino)
        return fmt_errf(e, SP_ECHANGED, 0, "replaced since it was opened (was %s; now %s); reopen the dataset",
                        was, is);
    /* The same inode, changed: damage to the file the index came from, for the reads to report,
     * unless its header shows another shard written under the same inode number. */
    if (!other_shard_header(m, fd, &h))
        return SP_OK;
    return fmt_errf(e, SP_ECHANGED, 0,
                    "replaced since it was opened by shard %u of dataset %016llx (was shard %u of dataset %016llx, %s; "
                    "now %s); reopen the dataset",
                    h.shard_no, (unsigned long long)h.dataset_id, m->h.shard_no,
                    (unsigned long long)m->h.dataset_id, was, is);
}

int fmt_shard_check_file(const fmt_shard *s, int fd, const struct stat *now, fmt_err *e)
{
    fmt_shard_mark m = fmt_shard_mark_of(s);
    return fmt_mark_check_file(&m, fd, now, e);
}

int fmt_mark_recheck(const char *path, const fmt_shard_mark *m, int rc, fmt_err *e)
{
    if (rc != SP_ECHECKSUM && rc != SP_ECORRUPT && rc != SP_ETRUNC)
        return rc;
    struct stat now;
    int fd = sp_open_regular(path, 0, &now);
    if (fd < 0)
        return rc;
    uint64_t offset = e->offset;
    fmt_err why;
    int changed = fmt_mark_check_file(m, fd, &now, &why);
    close(fd);
    if (changed == SP_OK)
        return rc;
    memcpy(e->why, why.why, sizeof e->why);
    e->offset = offset;
    return changed;
}

int fmt_shard_recheck(const fmt_shard *s, int rc, fmt_err *e)
{
    fmt_shard_mark m = fmt_shard_mark_of(s);
    return fmt_mark_recheck(s->path, &m, rc, e);
}

/* A new descriptor of s->path, checked to be the file opened: the descriptor, or a negative code. */
static int shard_reopen(const fmt_shard *s, fmt_err *e)
{
    struct stat st;
    int fd = sp_open_regular(s->path, 0, &st);
    if (fd < 0)
        return fmt_errf(e, sp_open_code(fd), 0, "cannot reopen: %s", sp_open_why(fd, &st));
    int rc = fmt_shard_check_file(s, fd, &st, e);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int fmt_shard_fd(fmt_shard *s, fmt_err *e)
{
    int fd = __atomic_load_n(&s->fd, __ATOMIC_ACQUIRE);
    if (fd >= 0)
        return fd;
    if ((fd = shard_reopen(s, e)) < 0)
        return fd;
    int expected = -1;
    /* Two threads may race to open; one descriptor wins, the other is closed. */
    if (!__atomic_compare_exchange_n(&s->fd, &expected, fd, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        close(fd);
        return expected;
    }
    return fd;
}

int fmt_shard_decode_block(const fmt_shard *s, uint64_t i, uint8_t *stored, ZSTD_DCtx *dctx, uint8_t **raw_out,
                           fmt_block_view *v, fmt_err *e)
{
    const fmt_block_entry *be = &s->index.blocks[i];
    e->block = (int64_t)i;
    *raw_out = NULL;
    /* A stored block is decoded in place. A zstd block gets its raw buffer only once its frame is
     * seen to declare the raw size the index claims, so a damaged index cannot make a reader
     * allocate up to max_block_bytes for a few stored bytes. */
    uint8_t *raw = NULL;
    int rc;
    if (be->codec == SP_CODEC_STORED) {
        raw = stored;
    } else if ((rc = fmt_zstd_frame_check(be, stored, e)) != SP_OK) {
        if (sp_checksum64(stored, be->stored_size) != be->checksum) /* damaged bytes: say so */
            rc = fmt_errf(e, SP_ECHECKSUM, be->offset, "checksum mismatch in the stored bytes");
        return rc;
    } else if (!(raw = sp_malloc(be->raw_size))) {
        return fmt_errf(e, SP_ENOMEM, be->offset, "out of memory for a %u-byte block", be->raw_size);
    }
    rc = fmt_block_decode(be, stored, raw, dctx, e);
    if (rc == SP_OK && (rc = fmt_block_parse(&s->index.schema, raw, be->raw_size, be->nsamples, v, e)))
        e->offset = be->offset; /* layout offsets are within the raw block; name the block */
    if (rc && raw != stored)
        sp_free(raw);
    else if (rc == SP_OK)
        *raw_out = raw;
    return rc;
}

int fmt_shard_read_block(fmt_shard *s, int fd, uint64_t i, ZSTD_DCtx *dctx, uint8_t **raw_out,
                         fmt_block_view *v, fmt_err *e)
{
    const fmt_block_entry *be = &s->index.blocks[i];
    e->block = (int64_t)i;
    *raw_out = NULL;
    uint8_t *stored = sp_malloc(be->stored_size);
    int rc = stored ? sp_pread_all(fd, stored, be->stored_size, be->offset) : SP_ENOMEM;
    if (rc) {
        rc = rc == SP_ENOMEM ? fmt_errf(e, rc, be->offset, "out of memory for a %u-byte block", be->stored_size)
                             : fmt_errf(e, rc == SP_ETRUNC ? SP_ETRUNC : SP_EIO, be->offset, "cannot read: %s",
                                        rc == SP_ETRUNC ? "file ends early" : strerror(-rc));
    } else {
        rc = fmt_shard_decode_block(s, i, stored, dctx, raw_out, v, e);
    }
    if (rc)
        rc = fmt_shard_recheck(s, rc, e);
    if (*raw_out != stored)
        sp_free(stored);
    return rc;
}
