/* fuzz_shard.c - libFuzzer target: an input written to a file is opened with sp_dataset_open, every block and field read, and verified. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "fuzz_target.h"
#include "shardpack.h"

#define MAX_BLOCKS 64
#define MAX_ROWS 256

static char g_dir[256], g_path[300];
static sp_params *g_params;

static void cleanup(void)
{
    unlink(g_path);
    rmdir(g_dir);
    sp_params_destroy(g_params);
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/spfuzz-XXXXXX", base);
    if (!mkdtemp(g_dir))
        abort();
    snprintf(g_path, sizeof g_path, "%s/input.sps", g_dir);
    /* Bounded memory per block, so the fuzzer's RSS limit flags leaks, not legal 256 MiB blocks. */
    g_params = sp_params_create();
    if (!g_params || sp_params_set_str(g_params, "max_block_bytes", "4M") != 0)
        abort();
    atexit(cleanup);
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void st64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Rewrites the checksums of a would-be shard (format v1 layout) so that the fuzzer's mutations are
 * judged by the parsers rather than stopped at the first checksum. */
static void fix_checksums(uint8_t *b, size_t n, unsigned mode)
{
    if (n >= 64)
        st64(b + 56, sp_checksum64(b, 56));
    if (n < 64 + 48 + 64)
        return;
    uint8_t *tr = b + n - 64;
    if (mode & FUZZ_FIX_FILE_SIZE)
        st64(tr + 24, n);
    uint64_t io = ld64(tr), is = ld64(tr + 8);
    if (io >= 64 && is >= 48 && io <= n - 64 && is == n - 64 - io) {
        uint8_t *ix = b + io;
        uint64_t table = (48 + (uint64_t)ld32(ix + 36) + ld32(ix + 40) + 7) & ~7ull;
        for (uint64_t q = table; q + 48 <= is; q += 48) {
            uint8_t *e = ix + q;
            uint64_t off = ld64(e);
            uint32_t stored = ld32(e + 16), raw = ld32(e + 20);
            if (off > n || stored > n - off)
                continue;
            uint64_t cs = sp_checksum64(b + off, stored);
            st64(e + 32, cs);
            if (e[28] == SP_CODEC_STORED) {
                st64(e + 40, cs);
            } else if (raw <= (1u << 20)) {
                void *tmp = malloc(raw ? raw : 1);
                size_t r = ZSTD_decompress(tmp, raw, b + off, stored);
                if (!ZSTD_isError(r))
                    st64(e + 40, sp_checksum64(tmp, r));
                free(tmp);
            }
        }
        st64(tr + 16, sp_checksum64(ix, is));
    }
    st32(tr + 52, (uint32_t)sp_checksum64(tr, 52));
}

static volatile uint8_t g_sink;

static void exercise(sp_dataset *ds)
{
    uint64_t nblocks = sp_dataset_num_blocks(ds), nsamples = sp_dataset_num_samples(ds);
    size_t nfields = sp_schema_num_fields(sp_dataset_schema(ds));
    for (size_t i = 0; i < sp_dataset_meta_count(ds); i++) {
        const char *k;
        const void *v;
        size_t len;
        if (sp_dataset_meta_at(ds, i, &k, &v, &len) == 0 && len)
            g_sink ^= (uint8_t)(k[0] ^ ((const uint8_t *)v)[len - 1]);
    }
    for (uint64_t s = 0; s < sp_dataset_num_shards(ds); s++) {
        sp_shard_info si = { .struct_size = sizeof si };
        if (sp_dataset_shard_info(ds, s, &si) != 0)
            abort(); /* in range by construction */
    }
    if (nsamples) {
        uint64_t blk;
        uint32_t row;
        if (sp_dataset_locate(ds, nsamples - 1, &blk, &row) != 0 || blk >= nblocks)
            abort();
    }
    for (uint64_t b = 0; b < nblocks && b < MAX_BLOCKS; b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        if (sp_dataset_block_info(ds, b, &bi) != 0)
            continue;
        sp_block *blk;
        if (sp_dataset_read_block(ds, b, &blk) != 0)
            continue;
        uint32_t rows = sp_block_num_samples(blk);
        if (rows != bi.samples)
            abort();
        for (uint32_t r = 0; r < rows && r < MAX_ROWS; r++) {
            for (size_t f = 0; f < nfields; f++) {
                const void *data;
                size_t size;
                if (sp_block_get(blk, r, f, &data, &size) != 0)
                    abort();
                if (size)
                    g_sink ^= ((const uint8_t *)data)[0] ^ ((const uint8_t *)data)[size - 1];
            }
        }
        sp_block_free(blk);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_params)
        setup();
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    size--;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size);
    if (mode & FUZZ_FIX_CHECKSUMS)
        fix_checksums(buf, size, mode);
    FILE *f = fopen(g_path, "wb");
    if (!f || (size && fwrite(buf, 1, size, f) != size) || fclose(f) != 0)
        abort();
    free(buf);
    sp_dataset *ds = NULL;
    if (sp_dataset_open(g_path, g_params, &ds) == 0) {
        exercise(ds);
        sp_dataset_close(ds);
    } else if (ds != NULL || sp_last_error()[0] == '\0') {
        abort(); /* a failed open hands out nothing and always says why */
    }
    sp_verify_report rep = { .struct_size = sizeof rep };
    int rc = sp_verify(g_path, g_params, NULL, NULL, &rep);
    if (rc == 0 && rep.faults)
        abort();
    return 0;
}
