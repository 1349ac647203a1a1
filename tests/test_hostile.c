/* test_hostile.c - well-formed files with valid checksums but evil counts, sizes, offsets and zstd framing are refused cleanly, without large allocations. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fmt.h"
#include "test_util.h"
#include "tu_alloc.h"

static uint64_t g_seed;

/* No open, read or verify of the small files below may ask for more than this at once. */
#define ALLOC_BOUND (1u << 20)

/* ------------------------------------------------------------------------------------ fixture */

typedef struct craft {
    char *dir, *shard, *manifest, *evil;
    uint8_t *file; /* the valid shard */
    size_t size;
    fmt_shard *sh; /* its decoded trailer and index */
    uint8_t *man;  /* the valid manifest */
    size_t man_size;
} craft;

/* What an evil shard is built from: the valid one's data area plus a re-encoded index. */
typedef struct build {
    fmt_header h;
    sp_schema schema;
    fmt_meta meta;
    fmt_block_entry blocks[16];
    uint64_t nblocks, nsamples;
    void (*ipatch)(uint8_t *ix, size_t n); /* edits the encoded index before it is checksummed */
    void (*tpatch)(fmt_trailer *t);        /* edits the trailer before it is checksummed */
} build;

static void limit_address_space(void)
{
    /* Under ASan or TSan the shadow memory needs terabytes of address space; the allocation
     * counter still bounds every request there. */
    if (tu_sanitized())
        return;
    struct rlimit rl = { 512u << 20, 512u << 20 };
    ck_assert(setrlimit(RLIMIT_AS, &rl) == 0);
}

static void craft_make(craft *c)
{
    memset(c, 0, sizeof *c);
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "b", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    d.seed = g_seed;
    d.nsamples = 50;
    d.var_max = 300;
    d.compressible = true;
    c->dir = tu_tmpdir("hostile");
    sp_params *p = tu_params("block_size", "4K", NULL);
    sp_writer *w;
    ck_assert(sp_writer_open(c->dir, d.schema, p, &w) == 0);
    ck_assert(sp_writer_set_meta(w, "source", "hostile", 7) == 0);
    ck_assert(tu_add_samples(w, &d, 0, d.nsamples) == 0);
    ck_assert(sp_writer_finish(w) == 0);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
    c->shard = tu_join(c->dir, "shard-000000.sps");
    c->manifest = tu_join(c->dir, "manifest.spm");
    c->evil = tu_join(c->dir, "evil.sps");
    c->file = tu_read_file(c->shard, &c->size);
    c->man = tu_read_file(c->manifest, &c->man_size);
    fmt_limits lim;
    fmt_limits_from_params(&lim, NULL);
    fmt_err e;
    ck_assert_msg(fmt_shard_open(c->shard, &lim, &c->sh, &e) == 0, "%s", e.why);
    ck_assert(c->sh->index.nblocks >= 2 && c->sh->index.nblocks <= 16);
    ck_assert_int_eq(c->sh->index.blocks[0].codec, SP_CODEC_ZSTD);
}

static void craft_free(craft *c)
{
    fmt_shard_close(c->sh);
    tu_rmtree(c->dir);
    free(c->dir);
    free(c->shard);
    free(c->manifest);
    free(c->evil);
    free(c->file);
    free(c->man);
}

static void build_init(const craft *c, build *b)
{
    memset(b, 0, sizeof *b);
    const fmt_index *ix = &c->sh->index;
    b->h = ix->id;
    b->schema = ix->schema;
    b->meta = ix->meta;
    memcpy(b->blocks, ix->blocks, ix->nblocks * sizeof *b->blocks);
    b->nblocks = ix->nblocks;
    b->nsamples = ix->nsamples;
}

/* Writes the data area of the valid shard, then b's index and trailer with correct checksums. */
static void emit(const craft *c, const build *b, const char *path)
{
    uint64_t data_len = c->sh->trailer.index_offset;
    sp_buf ix = { 0 };
    fmt_index_encode(&b->h, &b->schema, &b->meta, b->blocks, b->nblocks, b->nsamples, &ix);
    ck_assert(!ix.failed);
    if (b->ipatch)
        b->ipatch(ix.data, ix.len);
    fmt_trailer t = { data_len, ix.len, sp_checksum64(ix.data, ix.len), data_len + ix.len + FMT_TRAILER_BYTES,
                      b->nblocks, b->nsamples };
    if (b->tpatch)
        b->tpatch(&t);
    uint8_t tr[FMT_TRAILER_BYTES];
    fmt_trailer_encode(tr, &t);
    size_t total = (size_t)data_len + ix.len + FMT_TRAILER_BYTES;
    uint8_t *out = malloc(total);
    ck_assert_ptr_nonnull(out);
    memcpy(out, c->file, (size_t)data_len);
    memcpy(out + data_len, ix.data, ix.len);
    memcpy(out + data_len + ix.len, tr, sizeof tr);
    tu_write_file(path, out, total);
    free(out);
    sp_buf_free(&ix);
}

static bool clean_code(int rc)
{
    return rc == SP_ECORRUPT || rc == SP_ELIMIT || rc == SP_ECHECKSUM || rc == SP_ETRUNC || rc == SP_EFORMAT ||
           rc == SP_EVERSION;
}

/* Opening path (and verifying it) fails with a format error that names it, and no request for
 * memory exceeds ALLOC_BOUND. */
static void expect_refused(const char *what, const char *path, const char *named, const sp_params *p)
{
    tu_alloc_reset_max();
    sp_dataset *ds = NULL;
    int rc = sp_dataset_open(path, p, &ds);
    ck_assert_msg(rc != 0, "%s: evil file opened", what);
    ck_assert_ptr_null(ds);
    ck_assert_msg(clean_code(rc), "%s: open returned %s (%s)", what, sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_last_error(), named), "%s: message '%s' does not name %s", what, sp_last_error(), named);
    rc = sp_verify(path, p, NULL, NULL, NULL);
    ck_assert_msg(rc == SP_ECORRUPT, "%s: verify returned %s", what, sp_error_name(rc));
    ck_assert_msg(tu_alloc_max() <= ALLOC_BOUND, "%s: asked for %zu bytes at once", what, tu_alloc_max());
    ck_assert_msg(tu_alloc_max() > 0, "allocation hooks are not linked in");
}

/* ------------------------------------------------------------------------------------ shards */

static uint64_t g_u64;
static uint32_t g_u32;
static size_t g_at;

static void patch_ix_u64(uint8_t *ix, size_t n)
{
    ck_assert(g_at + 8 <= n);
    sp_st64(ix + g_at, g_u64);
}

static void patch_ix_u32(uint8_t *ix, size_t n)
{
    ck_assert(g_at + 4 <= n);
    sp_st32(ix + g_at, g_u32);
}

static void patch_ix_u16(uint8_t *ix, size_t n)
{
    ck_assert(g_at + 2 <= n);
    sp_st16(ix + g_at, (uint16_t)g_u32);
}

static void patch_nblocks_both(uint8_t *ix, size_t n)
{
    g_at = 8;
    patch_ix_u64(ix, n);
}

static void tpatch_nblocks(fmt_trailer *t) { t->nblocks = g_u64; }
static void tpatch_nsamples(fmt_trailer *t) { t->nsamples = g_u64; }
static void tpatch_index_offset(fmt_trailer *t) { t->index_offset = g_u64; }
static void tpatch_index_size(fmt_trailer *t) { t->index_size = g_u64; }
static void tpatch_file_size(fmt_trailer *t) { t->file_size = g_u64; }

static void patch_nsamples_both(uint8_t *ix, size_t n)
{
    g_at = 16;
    patch_ix_u64(ix, n);
}

START_TEST(huge_block_count)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    const uint64_t counts[] = { 1ull << 60, 1ull << 40, 1ull << 32, 100000, UINT64_MAX, 0 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        build b;
        build_init(&c, &b);
        g_u64 = counts[i];
        b.ipatch = patch_nblocks_both;
        b.tpatch = tpatch_nblocks;
        emit(&c, &b, c.evil);
        expect_refused("nblocks in index and trailer", c.evil, c.evil, NULL);
        b.ipatch = NULL; /* the trailer alone disagrees */
        emit(&c, &b, c.evil);
        expect_refused("nblocks in trailer", c.evil, c.evil, NULL);
    }
    craft_free(&c);
}
END_TEST

START_TEST(huge_sample_counts)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    build b;
    const uint64_t totals[] = { 1ull << 63, UINT64_MAX, 0 };
    for (size_t i = 0; i < 3; i++) {
        build_init(&c, &b);
        g_u64 = totals[i];
        b.ipatch = patch_nsamples_both;
        b.tpatch = tpatch_nsamples;
        emit(&c, &b, c.evil);
        expect_refused("nsamples in index and trailer", c.evil, c.evil, NULL);
    }
    const uint32_t per_block[] = { UINT32_MAX, FMT_MAX_BLOCK_SAMPLES + 1, FMT_MAX_BLOCK_SAMPLES, 0 };
    for (size_t i = 0; i < 4; i++) {
        build_init(&c, &b);
        b.nsamples += (uint64_t)per_block[i] - b.blocks[0].nsamples;
        for (uint64_t k = 1; k < b.nblocks; k++)
            b.blocks[k].first_sample += (uint64_t)per_block[i] - b.blocks[0].nsamples;
        b.blocks[0].nsamples = per_block[i];
        emit(&c, &b, c.evil);
        expect_refused("block sample count", c.evil, c.evil, NULL);
    }
    build_init(&c, &b);
    b.blocks[1].first_sample += 1;
    emit(&c, &b, c.evil);
    expect_refused("block first sample", c.evil, c.evil, NULL);
    craft_free(&c);
}
END_TEST

START_TEST(huge_block_sizes)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    build b;
    build_init(&c, &b);
    b.blocks[0].raw_size = UINT32_MAX;
    emit(&c, &b, c.evil);
    expect_refused("raw_size 4 GiB", c.evil, c.evil, NULL);

    /* Within the default limit but above a reader's own max_block_bytes. */
    build_init(&c, &b);
    b.blocks[0].raw_size = 200u << 20;
    emit(&c, &b, c.evil);
    sp_params *p = tu_params("max_block_bytes", "1M", NULL);
    expect_refused("raw_size above max_block_bytes", c.evil, c.evil, p);
    sp_params_destroy(p);

    build_init(&c, &b);
    b.blocks[0].stored_size = UINT32_MAX;
    emit(&c, &b, c.evil);
    expect_refused("stored_size 4 GiB", c.evil, c.evil, NULL);

    build_init(&c, &b);
    b.blocks[0].codec = SP_CODEC_STORED; /* stored, yet sizes and checksums differ */
    emit(&c, &b, c.evil);
    expect_refused("stored codec with zstd sizes", c.evil, c.evil, NULL);

    build_init(&c, &b);
    b.blocks[0].codec = 7;
    emit(&c, &b, c.evil);
    expect_refused("unknown codec", c.evil, c.evil, NULL);
    craft_free(&c);
}
END_TEST

/* A zstd block that claims a much larger raw size than its frame holds: the index is plausible,
 * so the shard opens; reading the block must fail cleanly. */
START_TEST(raw_size_lie_caught_at_read)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    build b;
    build_init(&c, &b);
    b.blocks[0].raw_size = 8u << 20;
    emit(&c, &b, c.evil);
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(c.evil, NULL, &ds) == 0, "%s", sp_last_error());
    sp_block *blk = NULL;
    tu_alloc_reset_max();
    int rc = sp_dataset_read_block(ds, 0, &blk);
    ck_assert_msg(rc == SP_ECORRUPT || rc == SP_ECHECKSUM, "read: %s", sp_error_name(rc));
    /* Bounded by max_block_bytes, not by the bytes on disk: the claim is believed until the
     * frame is decompressed. */
    printf("a %u-byte zstd block claiming %u raw bytes: largest allocation %zu bytes\n",
           b.blocks[0].stored_size, b.blocks[0].raw_size, tu_alloc_max());
    ck_assert_uint_le(tu_alloc_max(), sp_params_get(NULL, SP_PARAM_MAX_BLOCK_BYTES));
    ck_assert_ptr_null(blk);
    ck_assert(strstr(sp_last_error(), "block 0"));
    ck_assert(sp_dataset_read_block(ds, 1, &blk) == 0);
    sp_block_free(blk);
    sp_dataset_close(ds);
    ck_assert(sp_verify(c.evil, NULL, NULL, NULL, NULL) == SP_ECORRUPT);
    craft_free(&c);
}
END_TEST

START_TEST(bad_offsets)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    build b;
    const uint64_t idx = c.sh->trailer.index_offset;
    /* block offsets backwards, overlapping, unaligned, outside the file */
    const uint64_t offs[] = { 0, 64, 4095, c.sh->index.blocks[0].offset + 4096, idx, idx + 4096, 1ull << 62,
                              UINT64_MAX - 10 };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        build_init(&c, &b);
        b.blocks[0].offset = offs[i];
        emit(&c, &b, c.evil);
        expect_refused("block 0 offset", c.evil, c.evil, NULL);
        build_init(&c, &b);
        if (b.blocks[1].offset == offs[i])
            continue;
        b.blocks[1].offset = offs[i];
        emit(&c, &b, c.evil);
        expect_refused("block 1 offset", c.evil, c.evil, NULL);
    }
    build_init(&c, &b);
    b.blocks[1].offset = b.blocks[0].offset;
    emit(&c, &b, c.evil);
    expect_refused("blocks overlap", c.evil, c.evil, NULL);

    /* trailer: index offset and size pointing anywhere */
    const uint64_t ioffs[] = { 0, 63, 64, idx - 8, idx + 8, c.size, 1ull << 62, UINT64_MAX };
    for (size_t i = 0; i < sizeof ioffs / sizeof ioffs[0]; i++) {
        build_init(&c, &b);
        g_u64 = ioffs[i];
        b.tpatch = tpatch_index_offset;
        emit(&c, &b, c.evil);
        expect_refused("index offset", c.evil, c.evil, NULL);
    }
    const uint64_t isizes[] = { 0, 47, 200u << 20, FMT_MAX_INDEX_BYTES, FMT_MAX_INDEX_BYTES + 1ull, 1ull << 62,
                                UINT64_MAX };
    for (size_t i = 0; i < sizeof isizes / sizeof isizes[0]; i++) {
        build_init(&c, &b);
        g_u64 = isizes[i];
        b.tpatch = tpatch_index_size;
        emit(&c, &b, c.evil);
        expect_refused("index size", c.evil, c.evil, NULL);
    }
    const uint64_t fsizes[] = { 0, c.size - 1, c.size + 1, 1ull << 40, UINT64_MAX };
    for (size_t i = 0; i < sizeof fsizes / sizeof fsizes[0]; i++) {
        build_init(&c, &b);
        g_u64 = fsizes[i];
        b.tpatch = tpatch_file_size;
        emit(&c, &b, c.evil);
        expect_refused("file size", c.evil, c.evil, NULL);
    }
    /* index header: alignment */
    const uint32_t aligns[] = { 0, 3, 256, 4097, 1u << 21, UINT32_MAX };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        build_init(&c, &b);
        b.h.align = aligns[i];
        emit(&c, &b, c.evil);
        expect_refused("alignment", c.evil, c.evil, NULL);
    }
    craft_free(&c);
}
END_TEST

START_TEST(evil_schema)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    build b;
    /* A 1e9-element tensor: describable (1e9 bytes), but no block can hold a sample of it. */
    build_init(&c, &b);
    sp_field *f = &b.schema.f[1];
    f->kind = SP_FIELD_TENSOR;
    f->dtype = SP_DTYPE_U8;
    f->ndim = 1;
    f->shape[0] = 1000000000;
    emit(&c, &b, c.evil);
    expect_refused("1e9-element tensor", c.evil, c.evil, NULL);
    /* The same in float64, and a shape whose product overflows: not describable at all. */
    f->dtype = SP_DTYPE_F64;
    emit(&c, &b, c.evil);
    expect_refused("8e9-byte tensor", c.evil, c.evil, NULL);
    f->ndim = 4;
    f->shape[0] = f->shape[1] = f->shape[2] = f->shape[3] = 1ull << 20;
    emit(&c, &b, c.evil);
    expect_refused("overflowing shape", c.evil, c.evil, NULL);
    f->ndim = 2;
    f->shape[0] = 0;
    f->shape[1] = 5;
    emit(&c, &b, c.evil);
    expect_refused("zero dimension", c.evil, c.evil, NULL);
    /* kind, dtype and ndim outside the tables */
    build_init(&c, &b);
    b.schema.f[0].kind = 99;
    emit(&c, &b, c.evil);
    expect_refused("unknown kind", c.evil, c.evil, NULL);
    build_init(&c, &b);
    b.schema.f[1].dtype = 200;
    emit(&c, &b, c.evil);
    expect_refused("unknown dtype", c.evil, c.evil, NULL);
    build_init(&c, &b);
    strcpy(b.schema.f[1].name, "b");
    emit(&c, &b, c.evil);
    expect_refused("duplicate field name", c.evil, c.evil, NULL);
    build_init(&c, &b);
    strcpy(b.schema.f[1].name, "a/b");
    emit(&c, &b, c.evil);
    expect_refused("bad field name", c.evil, c.evil, NULL);

    /* Raw patches of the encoded schema, which starts right after the 48-byte index header. */
    const uint32_t nfields[] = { 0, 65, 0xFFFF };
    for (size_t i = 0; i < 3; i++) {
        build_init(&c, &b);
        g_at = FMT_INDEX_HEADER_BYTES;
        g_u32 = nfields[i];
        b.ipatch = patch_ix_u16;
        emit(&c, &b, c.evil);
        expect_refused("field count", c.evil, c.evil, NULL);
    }
    build_init(&c, &b);
    g_at = FMT_INDEX_HEADER_BYTES + 2 + 2; /* first field's ndim */
    g_u32 = 0xFF;
    b.ipatch = patch_ix_u16; /* ndim 255, name length 0 */
    emit(&c, &b, c.evil);
    expect_refused("ndim 255", c.evil, c.evil, NULL);
    /* schema and metadata sizes in the index header */
    const uint32_t sizes[] = { 0, 1, 0x7FFFFFFF, UINT32_MAX };
    for (size_t i = 0; i < 4; i++) {
        for (size_t at = 36; at <= 40; at += 4) {
            build_init(&c, &b);
            g_at = at;
            g_u32 = sizes[i];
            b.ipatch = patch_ix_u32;
            emit(&c, &b, c.evil);
            expect_refused("schema/meta byte count", c.evil, c.evil, NULL);
        }
    }
    craft_free(&c);
}
END_TEST

START_TEST(evil_meta)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    build b;
    sp_buf sch = { 0 };
    fmt_schema_encode(&c.sh->index.schema, &sch);
    const size_t meta_at = FMT_INDEX_HEADER_BYTES + sch.len;
    sp_buf_free(&sch);
    ck_assert_uint_eq(c.sh->index.meta.n, 1);
    /* count, key length and value length of the only entry */
    struct {
        size_t off;
        uint32_t v;
        void (*fn)(uint8_t *, size_t);
    } cases[] = {
        { 0, 2, patch_ix_u32 },          { 0, FMT_MAX_META_ENTRIES + 1, patch_ix_u32 },
        { 0, UINT32_MAX, patch_ix_u32 }, { 4, 0, patch_ix_u16 },
        { 4, 0xFFFF, patch_ix_u16 },     { 6, 0xFFFFFFF0u, patch_ix_u32 },
        { 6, FMT_MAX_META_VALUE + 1, patch_ix_u32 }, { 6, 100, patch_ix_u32 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        build_init(&c, &b);
        g_at = meta_at + cases[i].off;
        g_u32 = cases[i].v;
        b.ipatch = cases[i].fn;
        emit(&c, &b, c.evil);
        expect_refused("metadata entry", c.evil, c.evil, NULL);
    }
    /* A key the writer refuses (not UTF-8, control characters) is still a key to a reader: files
     * written elsewhere, or before the writer checked keys, open and verify. */
    static const char odd[] = "\xff\x1b]0;x\x07\nkey";
    build_init(&c, &b);
    fmt_meta m = { 0 };
    ck_assert(fmt_meta_set(&m, odd, "v", 1) == 0);
    b.meta = m;
    emit(&c, &b, c.evil);
    fmt_meta_free(&m);
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(c.evil, NULL, &ds) == 0, "%s", sp_last_error());
    const void *v;
    size_t len;
    ck_assert(sp_dataset_meta_get(ds, odd, &v, &len) == 0 && len == 1);
    sp_dataset_close(ds);
    ck_assert_msg(sp_verify(c.evil, NULL, NULL, NULL, NULL) == 0, "%s", sp_last_error());
    craft_free(&c);
}
END_TEST

/* Blocks whose checksums are right but whose layout lies: offset tables that do not start at 0,
 * decrease, or run past the block. The shard opens; the read fails. */
static void rewrite_block0(craft *c, void (*edit)(uint8_t *raw, size_t n))
{
    fmt_limits lim;
    fmt_limits_from_params(&lim, NULL);
    const fmt_block_entry *be = &c->sh->index.blocks[0];
    uint8_t *raw = malloc(be->raw_size);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ck_assert(ZSTD_decompressDCtx(dctx, raw, be->raw_size, c->file + be->offset, be->stored_size) == be->raw_size);
    ZSTD_freeDCtx(dctx);
    edit(raw, be->raw_size);
    /* Store it raw in place of the compressed block; it must fit the slot before block 1. */
    build b;
    build_init(c, &b);
    ck_assert(be->offset + be->raw_size <= b.blocks[1].offset);
    uint8_t *saved = malloc(be->raw_size);
    memcpy(saved, c->file + be->offset, be->raw_size);
    memcpy(c->file + be->offset, raw, be->raw_size);
    b.blocks[0].codec = SP_CODEC_STORED;
    b.blocks[0].stored_size = be->raw_size;
    b.blocks[0].checksum = b.blocks[0].raw_checksum = sp_checksum64(raw, be->raw_size);
    emit(c, &b, c->evil);
    memcpy(c->file + be->offset, saved, be->raw_size);
    free(saved);
    free(raw);
}

static void edit_none(uint8_t *raw, size_t n) { (void)raw, (void)n; }
static void edit_first_offset(uint8_t *raw, size_t n) { (void)n, sp_st32(raw, 1); }
static void edit_decreasing(uint8_t *raw, size_t n) { (void)n, sp_st32(raw + 4, sp_ld32(raw + 8) + 1); }
static uint32_t g_rows;
static void edit_last_offset(uint8_t *raw, size_t n) { (void)n, sp_st32(raw + 4 * (size_t)g_rows, 0x7FFFFFFF); }

START_TEST(evil_block_layout)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    g_rows = c.sh->index.blocks[0].nsamples;
    rewrite_block0(&c, edit_none);
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(c.evil, NULL, &ds) == 0, "%s", sp_last_error());
    sp_block *blk;
    ck_assert_msg(sp_dataset_read_block(ds, 0, &blk) == 0, "unedited stored copy: %s", sp_last_error());
    sp_block_free(blk);
    sp_dataset_close(ds);
    void (*edits[])(uint8_t *, size_t) = { edit_first_offset, edit_decreasing, edit_last_offset };
    for (size_t i = 0; i < 3; i++) {
        rewrite_block0(&c, edits[i]);
        tu_alloc_reset_max();
        ck_assert(sp_dataset_open(c.evil, NULL, &ds) == 0);
        blk = NULL;
        int rc = sp_dataset_read_block(ds, 0, &blk);
        ck_assert_msg(rc == SP_ECORRUPT, "layout edit %zu: %s", i, sp_error_name(rc));
        ck_assert_ptr_null(blk);
        ck_assert_msg(strstr(sp_last_error(), c.evil) && strstr(sp_last_error(), "block 0"), "%s", sp_last_error());
        sp_dataset_close(ds);
        ck_assert(sp_verify(c.evil, NULL, NULL, NULL, NULL) == SP_ECORRUPT);
        ck_assert_uint_le(tu_alloc_max(), ALLOC_BOUND);
    }
    craft_free(&c);
}
END_TEST

/* Block 0 (zstd) replaced by the given stored bytes, zero-padded, with its index entry and
 * checksum made to match; the bytes must fit the block's slot. */
static void replace_block0(craft *c, const uint8_t *stored, size_t n)
{
    build b;
    build_init(c, &b);
    const fmt_block_entry *be = &c->sh->index.blocks[0];
    size_t slot = (size_t)(b.blocks[1].offset - be->offset);
    ck_assert_uint_le(n, slot);
    uint8_t *saved = malloc(slot);
    memcpy(saved, c->file + be->offset, slot);
    memset(c->file + be->offset, 0, slot);
    memcpy(c->file + be->offset, stored, n);
    b.blocks[0].stored_size = (uint32_t)n;
    b.blocks[0].checksum = sp_checksum64(stored, n);
    emit(c, &b, c->evil);
    memcpy(c->file + be->offset, saved, slot);
    free(saved);
}

/* Every reader of block 0 refuses it with SP_ECORRUPT: a block read, verify, and the loader's
 * first batch (which holds the block's first rows). */
static void expect_block0_refused(const craft *c, const char *what)
{
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(c->evil, NULL, &ds) == 0, "%s: %s", what, sp_last_error());
    sp_block *blk = NULL;
    int rc = sp_dataset_read_block(ds, 0, &blk);
    ck_assert_msg(rc == SP_ECORRUPT, "%s: read gave %s (%s)", what, sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_last_error(), "block 0"), "%s: %s", what, sp_last_error());
    ck_assert(sp_dataset_read_block(ds, 1, &blk) == 0);
    sp_block_free(blk);
    sp_dataset_close(ds);
    rc = sp_verify(c->evil, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == SP_ECORRUPT, "%s: verify gave %s", what, sp_error_name(rc));
    sp_params *p = tu_params("shuffle", "0", "batch_size", "1", "threads", "1", NULL);
    sp_loader *l;
    ck_assert_msg(sp_loader_open(c->evil, p, &l) == 0, "%s: %s", what, sp_last_error());
    sp_batch *batch = NULL;
    rc = sp_loader_next(l, &batch, 10000);
    ck_assert_msg(rc == SP_ECORRUPT, "%s: the loader gave %s (%s)", what, sp_error_name(rc), sp_loader_errmsg(l));
    ck_assert_ptr_null(batch);
    ck_assert(sp_loader_close(l) == 0);
    sp_params_destroy(p);
}

/* A zstd block is exactly one frame that declares its raw size: the bytes of a valid block split
 * into two frames, a valid frame followed by an empty one or by a skippable frame, and a frame
 * without its content size all decompress to the right bytes, yet every reader refuses them alike
 * (the loader once took what verify refused). */
START_TEST(zstd_not_one_frame)
{
    craft c;
    craft_make(&c);
    const fmt_block_entry *be = &c.sh->index.blocks[0];
    size_t raw_n = be->raw_size, half = raw_n / 2;
    uint8_t *raw = malloc(raw_n);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ck_assert(ZSTD_decompressDCtx(dctx, raw, raw_n, c.file + be->offset, be->stored_size) == raw_n);
    ZSTD_freeDCtx(dctx);
    size_t cap = ZSTD_compressBound(raw_n) * 2 + 64, n;
    uint8_t *out = malloc(cap);

    /* two frames, one per half */
    n = ZSTD_compress(out, cap, raw, half, 3);
    ck_assert(!ZSTD_isError(n));
    size_t m = ZSTD_compress(out + n, cap - n, raw + half, raw_n - half, 3);
    ck_assert(!ZSTD_isError(m));
    replace_block0(&c, out, n + m);
    expect_block0_refused(&c, "two frames");

    /* the whole block, then an empty frame */
    n = ZSTD_compress(out, cap, raw, raw_n, 3);
    ck_assert(!ZSTD_isError(n));
    m = ZSTD_compress(out + n, cap - n, raw, 0, 3);
    ck_assert(!ZSTD_isError(m));
    replace_block0(&c, out, n + m);
    expect_block0_refused(&c, "a trailing empty frame");

    /* the whole block, then a skippable frame of 4 bytes */
    static const uint8_t skippable[12] = { 0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4 };
    memcpy(out + n, skippable, sizeof skippable);
    replace_block0(&c, out, n + sizeof skippable);
    expect_block0_refused(&c, "a trailing skippable frame");

    /* one frame that does not record its content size */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ck_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
    ZSTD_inBuffer in = { raw, raw_n, 0 };
    ZSTD_outBuffer ob = { out, cap, 0 };
    ck_assert(ZSTD_compressStream2(cctx, &ob, &in, ZSTD_e_end) == 0);
    ZSTD_freeCCtx(cctx);
    ck_assert(ZSTD_getFrameContentSize(out, ob.pos) == ZSTD_CONTENTSIZE_UNKNOWN);
    replace_block0(&c, out, ob.pos);
    expect_block0_refused(&c, "no content size");

    /* the same block as one frame, as the writer makes it: read by all */
    n = ZSTD_compress(out, cap, raw, raw_n, 3);
    replace_block0(&c, out, n);
    sp_dataset *ds;
    sp_block *blk;
    ck_assert(sp_dataset_open(c.evil, NULL, &ds) == 0);
    ck_assert_msg(sp_dataset_read_block(ds, 0, &blk) == 0, "%s", sp_last_error());
    sp_block_free(blk);
    sp_dataset_close(ds);
    ck_assert_msg(sp_verify(c.evil, NULL, NULL, NULL, NULL) == 0, "%s", sp_last_error());

    free(out);
    free(raw);
    craft_free(&c);
}
END_TEST

/* ------------------------------------------------------------------------------------ manifests */

static void reseal(uint8_t *m, size_t n) { sp_st64(m + n - 8, sp_checksum64(m, n - 8)); }

/* Writes the valid manifest with one 64-bit (or 32-bit) field replaced and its checksum redone. */
static void manifest_patch(craft *c, size_t at, uint64_t v, int width)
{
    uint8_t *m = malloc(c->man_size);
    memcpy(m, c->man, c->man_size);
    if (width == 8)
        sp_st64(m + at, v);
    else
        sp_st32(m + at, (uint32_t)v);
    reseal(m, c->man_size);
    tu_write_file(c->manifest, m, c->man_size);
    free(m);
}

static fmt_manifest manifest_decode(const craft *c)
{
    fmt_limits lim;
    fmt_limits_from_params(&lim, NULL);
    fmt_manifest m;
    fmt_err e;
    ck_assert_msg(fmt_manifest_decode(c->man, c->man_size, &lim, &m, &e) == 0, "%s", e.why);
    return m;
}

static void manifest_write(const craft *c, const fmt_manifest *m)
{
    sp_buf b = { 0 };
    fmt_manifest_encode(m, &b);
    ck_assert(!b.failed);
    tu_write_file(c->manifest, b.data, b.len);
    sp_buf_free(&b);
}

START_TEST(evil_manifest_counts)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    /* header: nshards at 24, nblocks at 32, nsamples at 40 */
    const uint64_t big[] = { 0, 2, 1000000, 1000001, 1ull << 32, 1ull << 60, UINT64_MAX };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        for (size_t at = 24; at <= 40; at += 8) {
            if (sp_ld64(c.man + at) == big[i])
                continue;
            manifest_patch(&c, at, big[i], 8);
            expect_refused("manifest count", c.dir, c.manifest, NULL);
        }
    }
    /* section sizes at 48, 52, 56 and the reserved words */
    const uint32_t sizes[] = { 0, 1, 0x10000, UINT32_MAX };
    for (size_t i = 0; i < 4; i++)
        for (size_t at = 48; at <= 56; at += 4) {
            manifest_patch(&c, at, sizes[i], 4);
            expect_refused("manifest section size", c.dir, c.manifest, NULL);
        }
    manifest_patch(&c, 12, 1, 4);
    expect_refused("manifest reserved", c.dir, c.manifest, NULL);
    manifest_patch(&c, 60, 1, 4);
    expect_refused("manifest reserved", c.dir, c.manifest, NULL);
    /* the original still opens, also at the tightest shard limit */
    tu_write_file(c.manifest, c.man, c.man_size);
    sp_params *p = tu_params("max_shards", "1", NULL);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(c.dir, p, &ds) == 0);
    sp_dataset_close(ds);
    sp_params_destroy(p);
    craft_free(&c);
}
END_TEST

START_TEST(evil_manifest_tables)
{
    limit_address_space();
    craft c;
    craft_make(&c);
    const char *names[] = { "../shard-000000.sps", "a/b", ".", "..", "/etc/passwd", "" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        fmt_manifest m = manifest_decode(&c);
        char *old = m.shards[0].name;
        m.shards[0].name = (char *)names[i];
        manifest_write(&c, &m);
        m.shards[0].name = old;
        fmt_manifest_free(&m);
        expect_refused("shard name", c.dir, c.manifest, NULL);
    }
    const uint32_t per_block[] = { 0, FMT_MAX_BLOCK_SAMPLES + 1, UINT32_MAX };
    for (size_t i = 0; i < 3; i++) {
        fmt_manifest m = manifest_decode(&c);
        m.block_samples[0] = per_block[i];
        manifest_write(&c, &m);
        fmt_manifest_free(&m);
        expect_refused("block sample count", c.dir, c.manifest, NULL);
    }
    {
        fmt_manifest m = manifest_decode(&c);
        m.block_samples[0] += 1; /* blocks no longer add up to the shard's samples */
        manifest_write(&c, &m);
        fmt_manifest_free(&m);
        expect_refused("block counts vs shard", c.dir, c.manifest, NULL);
        m = manifest_decode(&c);
        m.shards[0].nblocks = 0;
        manifest_write(&c, &m);
        fmt_manifest_free(&m);
        expect_refused("shard with no blocks", c.dir, c.manifest, NULL);
    }
    /* Plausible entries that disagree with the shard: the manifest opens, the shard is refused. */
    for (int k = 0; k < 3; k++) {
        fmt_manifest m = manifest_decode(&c);
        if (k == 0)
            m.shards[0].file_size += 4096;
        else if (k == 1)
            m.shards[0].index_checksum ^= 1;
        else
            m.dataset_id ^= 1;
        manifest_write(&c, &m);
        fmt_manifest_free(&m);
        sp_dataset *ds;
        ck_assert(sp_dataset_open(c.dir, NULL, &ds) == 0);
        sp_block *blk = NULL;
        int rc = sp_dataset_read_block(ds, 0, &blk);
        ck_assert_msg(rc == SP_ECORRUPT && blk == NULL, "entry %d: %s", k, sp_error_name(rc));
        ck_assert_msg(strstr(sp_last_error(), c.shard), "%s", sp_last_error());
        sp_dataset_close(ds);
        ck_assert(sp_verify(c.dir, NULL, NULL, NULL, NULL) == SP_ECORRUPT);
    }
    craft_free(&c);
}
END_TEST

/* ------------------------------------------------------------------------------------ loader */

/* A shard of one block holding FMT_MAX_BLOCK_SAMPLES one-byte samples: a few KiB on disk, yet a
 * loader needs a batch slot for every batch that one shuffle window of it can touch. */
static char *many_samples_shard(void)
{
    char *dir = tu_tmpdir("hostile-many");
    sp_schema *sc = sp_schema_create();
    ck_assert(sp_schema_add(sc, "b", SP_FIELD_TENSOR, SP_DTYPE_U8, 0, NULL) == 0);
    sp_params *p = tu_params("block_size", "16M", "compress", "zstd", NULL);
    sp_writer *w;
    ck_assert(sp_writer_open(dir, sc, p, &w) == 0);
    int rc = 0; /* each ck_assert writes to Check's pipe: not one per sample */
    for (uint32_t i = 0; i < FMT_MAX_BLOCK_SAMPLES && rc == 0; i++) {
        uint8_t v = (uint8_t)i;
        sp_value val = { &v, 1 };
        rc = sp_writer_add(w, &val, 1);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert(sp_writer_finish(w) == 0);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(sc);
    char *shard = tu_join(dir, "shard-000000.sps");
    ck_assert_msg(tu_file_size(shard) < 64 * 1024, "%llu bytes", (unsigned long long)tu_file_size(shard));
    free(shard);
    return dir;
}

static int loader_open(const char *dir, const char *budget, const char *batch, sp_loader **l)
{
    sp_params *p = tu_params("host_memory", budget, "batch_size", batch, "threads", "1", NULL);
    int rc = sp_loader_open(dir, p, l);
    sp_params_destroy(p);
    return rc;
}

START_TEST(loader_many_samples_per_block)
{
    limit_address_space();
    char *dir = many_samples_shard();
    /* Batches of 2: the minimum (a slot per 2 samples of the window, each with its descriptor) is
     * beyond 1.5 GiB, and is refused at open with nothing large asked for. */
    tu_alloc_reset_max();
    sp_loader *l = NULL;
    int rc = loader_open(dir, "1536M", "2", &l);
    ck_assert_msg(rc == SP_ELIMIT, "batch 2: %s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "need at least"), "%s", sp_last_error());
    ck_assert_msg(tu_alloc_max() <= ALLOC_BOUND, "refused open asked for %zu bytes at once", tu_alloc_max());
    fprintf(stderr, "hostile: %s\n", sp_last_error());
    /* Batches of 32 fit in 400 MiB: everything the loader allocates, at its peak while it streams
     * the whole block, is inside what it reports, which is inside the budget. */
    size_t before = tu_alloc_reset_peak();
    rc = loader_open(dir, "400M", "32", &l);
    ck_assert_msg(rc == 0, "batch 32: %s: %s", sp_error_name(rc), sp_last_error());
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    uint64_t rows = 0, wrong = 0;
    sp_batch *b;
    while ((rc = sp_loader_next(l, &b, 60000)) == 0) {
        const uint8_t *v = sp_batch_tensor(b, 0)->data;
        for (uint32_t r = 0; r < sp_batch_size(b); r++)
            wrong += v[r] != (uint8_t)sp_batch_sample_id(b, r);
        rows += sp_batch_size(b);
        if ((rc = sp_loader_release(l, b)) != 0)
            break;
    }
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_uint_eq(rows, FMT_MAX_BLOCK_SAMPLES);
    ck_assert_uint_eq(wrong, 0);
    size_t peak = tu_alloc_peak_bytes() - before;
    fprintf(stderr, "hostile: %u one-byte samples in one block, batch 32: %llu bytes counted, %zu allocated at "
            "the peak, budget 400 MiB\n", FMT_MAX_BLOCK_SAMPLES, (unsigned long long)st.host_allocated_bytes, peak);
    ck_assert_uint_le(st.host_allocated_bytes, st.host_memory_bytes);
    ck_assert_msg(peak <= st.host_allocated_bytes + (1u << 20), "%zu bytes allocated, %llu counted", peak,
                  (unsigned long long)st.host_allocated_bytes);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0006);
    Suite *s = suite_create("hostile");
    TCase *tc = tu_tcase(s, "shard", 60);
    tcase_add_test(tc, huge_block_count);
    tcase_add_test(tc, huge_sample_counts);
    tcase_add_test(tc, huge_block_sizes);
    tcase_add_test(tc, raw_size_lie_caught_at_read);
    tcase_add_test(tc, bad_offsets);
    tcase_add_test(tc, evil_schema);
    tcase_add_test(tc, evil_meta);
    tcase_add_test(tc, evil_block_layout);
    tcase_add_test(tc, zstd_not_one_frame);
    tc = tu_tcase(s, "manifest", 60);
    tcase_add_test(tc, evil_manifest_counts);
    tcase_add_test(tc, evil_manifest_tables);
    tc = tu_tcase(s, "loader", 60);
    tcase_add_test(tc, loader_many_samples_per_block);
    return tu_run(s, g_seed);
}
