/* gen_corpus.c - writes the seed corpora of the fuzz targets: small valid shards and manifests
 * made by the writer, each with and without checksum repair, plus a few damaged variants.
 * Run once by hand (tests/README.md); its output is checked in under tests/fuzz/corpus/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_target.h"
#include "shardpack.h"

static const char *g_out;
static int g_count;

static void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, sp_last_error());
    exit(1);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n)
        die(path);
    fclose(f);
    return b;
}

/* Writes mode byte + the first n bytes of p as corpus/<kind>/<name>. */
static void emit(const char *kind, const char *name, unsigned mode, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", g_out, kind, name);
    FILE *f = fopen(path, "wb");
    uint8_t m = (uint8_t)mode;
    if (!f || fwrite(&m, 1, 1, f) != 1 || (n && fwrite(p, 1, n, f) != n) || fclose(f))
        die(path);
    g_count++;
}

/* Large files (over 32 KiB) get only the valid and the repaired copy, to keep the corpus small. */
static void variants(const char *kind, const char *tag, const uint8_t *p, size_t n)
{
    char name[128];
    snprintf(name, sizeof name, "%s-valid", tag);
    emit(kind, name, 0, p, n);
    snprintf(name, sizeof name, "%s-fixed", tag);
    emit(kind, name, FUZZ_FIX_CHECKSUMS | FUZZ_FIX_FILE_SIZE, p, n);
    if (n > 32768)
        return;
    uint8_t *copy = malloc(n);
    snprintf(name, sizeof name, "%s-cut", tag);
    emit(kind, name, FUZZ_FIX_CHECKSUMS, p, n / 2);
    memcpy(copy, p, n);
    copy[n - 70] ^= 0x40; /* inside the shard index, or the manifest's tables */
    snprintf(name, sizeof name, "%s-flip", tag);
    emit(kind, name, 0, copy, n);
    snprintf(name, sizeof name, "%s-flipfixed", tag);
    emit(kind, name, FUZZ_FIX_CHECKSUMS, copy, n);
    free(copy);
}

typedef struct spec {
    const char *tag, *block_size, *shard_size, *compress;
    int nsamples;
    int tokens, tensor, meta;
} spec;

static void one_dataset(const spec *s, const char *tmp)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, s->tag);
    sp_schema *sch = sp_schema_create();
    uint64_t len = 5, shape[2] = { 2, 3 };
    sp_schema_add(sch, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL);
    sp_schema_add(sch, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL);
    if (s->tokens)
        sp_schema_add(sch, "tok", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, &len);
    if (s->tensor)
        sp_schema_add(sch, "t", SP_FIELD_TENSOR, SP_DTYPE_F16, 2, shape);
    sp_params *p = sp_params_create();
    sp_params_set_str(p, "block_size", s->block_size);
    sp_params_set_str(p, "shard_size", s->shard_size);
    sp_params_set_str(p, "compress", s->compress);
    sp_writer *w;
    if (sp_writer_open(dir, sch, p, &w))
        die("open");
    if (s->meta && (sp_writer_set_meta(w, "class_names", "cat\ndog", 7) || sp_writer_set_meta(w, "source", "gen", 3)))
        die("meta");
    uint8_t img[700], tok[10] = { 1, 0, 2, 0, 3, 0, 4, 0, 5, 0 }, t[12] = { 0 };
    for (int i = 0; i < s->nsamples; i++) {
        size_t n = (size_t)(i * 37 % 700);
        for (size_t k = 0; k < n; k++)
            img[k] = (uint8_t)(s->compress[0] == 'n' ? (k * 2654435761u + (unsigned)i) >> 13 : 'a' + k % 3);
        int64_t label = i % 10;
        sp_value v[4] = { { img, n }, { &label, 8 }, { tok, 10 }, { t, 12 } };
        if (!s->tokens)
            v[2] = v[3];
        if (sp_writer_add(w, v, 2 + (size_t)s->tokens + (size_t)s->tensor))
            die("add");
    }
    if (sp_writer_finish(w))
        die("finish");
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(sch);

    char path[600], tag[128];
    size_t n;
    uint8_t *b;
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/shard-%06d.sps", dir, k);
        if (access(path, F_OK))
            break;
        b = slurp(path, &n);
        snprintf(tag, sizeof tag, "%s-shard%d", s->tag, k);
        variants("shard", tag, b, n);
        free(b);
    }
    snprintf(path, sizeof path, "%s/manifest.spm", dir);
    b = slurp(path, &n);
    variants("manifest", s->tag, b, n);
    snprintf(tag, sizeof tag, "%s-manifest", s->tag);
    emit("shard", tag, 0, b, n); /* a manifest where a shard is expected */
    free(b);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CORPUS_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    g_out = argv[1];
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/shard", g_out);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/manifest", g_out);
    mkdir(sub, 0755);
    static const spec specs[] = {
        { "tiny", "4K", "64K", "auto", 6, 0, 0, 0 },
        { "raw", "4K", "64K", "none", 25, 0, 0, 1 },
        { "mixed", "4K", "64K", "zstd", 40, 1, 1, 1 },
        { "multi", "4K", "64K", "none", 260, 1, 0, 0 },
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        one_dataset(&specs[i], argv[2]);
    /* a few non-files */
    emit("shard", "empty", 0, NULL, 0);
    emit("manifest", "empty", 1, NULL, 0);
    emit("shard", "magic-only", 0, (const uint8_t *)"\x89SPK\r\n\x1a\n", 8);
    emit("manifest", "magic-only", 1, (const uint8_t *)"\x89SPM\r\n\x1a\n", 8);
    printf("wrote %d corpus files to %s\n", g_count, g_out);
    return 0;
}
