/* fuzz_imp.c - the shared part of the importer fuzz targets (see fuzz_imp.h). */
#include "fuzz_imp.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define MAX_PATHS 16
#define PATH_BYTES 512

static char g_scratch[256], g_run[300], g_out[320], g_stage[340];
static char g_paths[MAX_PATHS][PATH_BYTES];
static int g_npaths;
static char *g_msg; /* the import's skipped items and message of the last run */
static size_t g_msglen;
static int g_verbose;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "fuzz_imp: cannot remove %s: %s\n", path, strerror(errno));
        abort();
    }
    return 0;
}

static void rm_tree(const char *path)
{
    if (access(path, F_OK) == 0)
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    rm_tree(g_scratch);
    free(g_msg);
    g_msg = NULL;
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_scratch, sizeof g_scratch, "%s/spfuzz-imp-XXXXXX", base);
    if (!mkdtemp(g_scratch)) {
        fprintf(stderr, "fuzz_imp: cannot create a scratch directory in %s: %s\n", base,
                strerror(errno));
        abort();
    }
    snprintf(g_run, sizeof g_run, "%s/run", g_scratch);
    snprintf(g_out, sizeof g_out, "%s/out", g_run);
    snprintf(g_stage, sizeof g_stage, "%s/.out.shardpack-tmp", g_run);
    const char *v = getenv("FUZZ_IMP_VERBOSE");
    g_verbose = v && *v && strcmp(v, "0") != 0;
    atexit(cleanup);
}

void fimp_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("fuzz_imp: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (g_msg)
        fprintf(stderr, "fuzz_imp: the import reported:\n%.*s\n", (int)g_msglen, g_msg);
    abort();
}

int fimp_parse(const uint8_t *data, size_t size, fimp_input *in)
{
    memset(in, 0, sizeof *in);
    if (size < 1)
        return 0;
    in->mode = data[0];
    data++;
    size--;
    if (in->mode & FIMP_SPLIT) {
        if (size < 2)
            return 0;
        size_t first = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2;
        size -= 2;
        if (first > size)
            first = size;
        in->nparts = 2;
        in->part[0] = data;
        in->len[0] = first;
        in->part[1] = data + first;
        in->len[1] = size - first;
    } else {
        in->nparts = 1;
        in->part[0] = data;
        in->len[0] = size;
    }
    return 1;
}

void fimp_begin(void)
{
    if (!g_scratch[0])
        setup();
    rm_tree(g_run);
    if (mkdir(g_run, 0755) != 0) {
        fprintf(stderr, "fuzz_imp: mkdir %s: %s\n", g_run, strerror(errno));
        abort();
    }
    g_npaths = 0;
}

const char *fimp_path(const char *name)
{
    if (g_npaths == MAX_PATHS)
        abort();
    char *p = g_paths[g_npaths++];
    snprintf(p, PATH_BYTES, "%s/%s", g_run, name);
    return p;
}

void fimp_mkdir(const char *name)
{
    const char *p = fimp_path(name);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz_imp: mkdir %s: %s\n", p, strerror(errno));
        abort();
    }
    g_npaths--; /* the slot is not needed any more */
}

const char *fimp_write(const char *name, const void *data, size_t n)
{
    const char *p = fimp_path(name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "fuzz_imp: cannot create %s: %s\n", p, strerror(errno));
        abort();
    }
    const uint8_t *b = data;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "fuzz_imp: cannot write %s: %s\n", p, strerror(errno));
            abort();
        }
        b += w;
        n -= (size_t)w;
    }
    close(fd);
    return p;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Every skipped item goes to the report, and must name itself and a reason. */
static void on_skip(void *user, const char *what, const char *reason, uint64_t bytes)
{
    FILE *log = user;
    if (!what || !*what || !reason || !*reason)
        fimp_fail("a skipped item without a name or a reason (%s: %s)", what ? what : "(null)",
                  reason ? reason : "(null)");
    fprintf(log, "skipped %s: %s (%llu bytes)\n", what, reason, (unsigned long long)bytes);
}

static void set(sp_params *p, const char *name, const char *value)
{
    if (sp_params_set_str(p, name, value) != 0)
        fimp_fail("parameter %s=%s refused: %s", name, value, sp_last_error());
}

static sp_params *mode_params(unsigned mode, const char *from, uint64_t seq_len)
{
    sp_params *p = sp_params_create();
    if (!p)
        abort();
    set(p, "block_size", "4K");
    /* the llm.c and .npy targets check sample i against the source's i-th window or row; their
     * shuffled order is checked in cli-pack-llmc and cli-pack-npy */
    if (strcmp(from, "llmc") == 0 || strcmp(from, "npy") == 0)
        set(p, "order", "source");
    set(p, "threads", "1");
    set(p, "level", "1");
    if (mode & FIMP_STRICT)
        set(p, "strict", "1");
    if (mode & FIMP_TIGHT) {
        set(p, "shard_size", "8K");
        set(p, "max_sample_bytes", "1K");
        set(p, "compress", "none");
    } else {
        set(p, "compress", "auto");
    }
    if (seq_len && sp_params_set(p, SP_PARAM_SEQ_LEN, (int64_t)seq_len) != 0)
        fimp_fail("seq_len %llu refused: %s", (unsigned long long)seq_len, sp_last_error());
    return p;
}

/* Opens and runs the import, its skipped items and message written to the report. */
static int run_import(unsigned mode, const char *kind, const char *const *srcs, size_t nsrcs,
                      const sp_params *params)
{
    free(g_msg);
    g_msg = NULL;
    g_msglen = 0;
    FILE *log = open_memstream(&g_msg, &g_msglen);
    if (!log)
        abort();
    sp_import *imp = NULL;
    int rc = sp_import_open(kind, srcs, nsrcs, g_out, params, &imp);
    if (rc == 0) {
        sp_import_set_callbacks(imp, on_skip, NULL, log);
        rc = sp_import_run(imp);
        fprintf(log, "%s\n", rc ? sp_import_errmsg(imp) : "published");
    } else {
        fprintf(log, "%s\n", sp_last_error());
    }
    sp_import_destroy(imp);
    if (fclose(log) != 0)
        abort();
    if (g_verbose) {
        fprintf(stderr, "fuzz_imp: import (mode 0x%02x, %s)", mode, kind ? kind : "detected");
        for (size_t i = 0; i < nsrcs; i++)
            fprintf(stderr, " %s", srcs[i]);
        fprintf(stderr, " -> %d\n%.*s", rc, (int)g_msglen, g_msg ? g_msg : "");
    }
    return rc;
}

int fimp_pack(unsigned mode, const char *from, const char *const *srcs, size_t nsrcs, uint64_t seq_len)
{
    if (nsrcs > FIMP_MAX_SRCS)
        abort();
    sp_params *params = mode_params(mode, from, seq_len);
    int rc = run_import(mode, (mode & FIMP_FROM) ? from : NULL, srcs, nsrcs, params);
    sp_params_destroy(params);

    if (rc == SP_EINVAL)
        fimp_fail("SP_EINVAL (a request error) from data");
    if (rc != 0) {
        /* A source, the output, or an item a source names (a TSV's image: all in the run
         * directory). */
        int named = g_msg && strstr(g_msg, g_run) != NULL;
        for (size_t i = 0; i < nsrcs && !named; i++)
            named = g_msg && strstr(g_msg, srcs[i]) != NULL;
        if (!named)
            fimp_fail("the failure message names no file");
        if (exists(g_out))
            fimp_fail("the import failed but %s exists", g_out);
        if (exists(g_stage))
            fimp_fail("the import failed and left its staging directory %s", g_stage);
    } else {
        char manifest[400];
        snprintf(manifest, sizeof manifest, "%s/manifest.spm", g_out);
        if (!exists(manifest))
            fimp_fail("the import succeeded without publishing %s", manifest);
        if (exists(g_stage))
            fimp_fail("the import succeeded and left its staging directory %s", g_stage);
        sp_verify_report rep = { .struct_size = sizeof rep };
        int vr = sp_verify(g_out, NULL, NULL, NULL, &rep);
        if (vr != 0 || rep.faults)
            fimp_fail("the imported dataset fails sp_verify (%d, %llu faults): %s", vr,
                      (unsigned long long)rep.faults, sp_last_error());
        if (rep.samples == 0)
            fimp_fail("the import succeeded with no sample");
    }
    return rc;
}

sp_dataset *fimp_open_output(void)
{
    sp_dataset *ds = NULL;
    if (sp_dataset_open(g_out, NULL, &ds) != 0)
        fimp_fail("cannot open the packed dataset: %s", sp_last_error());
    if (sp_dataset_num_samples(ds) == 0)
        fimp_fail("the packed dataset has no sample");
    return ds;
}

const uint8_t *fimp_field(const sp_block *blk, uint32_t row, size_t f, size_t *size)
{
    const void *data;
    if (sp_block_get(blk, row, f, &data, size) != 0)
        fimp_fail("sp_block_get(row %u, field %zu) refused", row, f);
    return data;
}

const uint8_t *fimp_image_of(const sp_block *blk, uint32_t row, uint64_t sample, size_t *size)
{
    size_t lsize;
    const uint8_t *img = fimp_field(blk, row, 0, size);
    fimp_field(blk, row, 1, &lsize);
    if (lsize != 8)
        fimp_fail("sample %llu: a label of %zu bytes", (unsigned long long)sample, lsize);
    return img;
}

void fimp_each_sample(sp_dataset *ds, fimp_sample_fn fn, void *user)
{
    uint64_t nblocks = sp_dataset_num_blocks(ds), s = 0;
    for (uint64_t b = 0; b < nblocks; b++) {
        sp_block *blk;
        if (sp_dataset_read_block(ds, b, &blk) != 0)
            fimp_fail("cannot read block %llu of the packed dataset: %s", (unsigned long long)b,
                      sp_last_error());
        uint32_t rows = sp_block_num_samples(blk);
        for (uint32_t r = 0; r < rows; r++)
            fn(user, s++, blk, r);
        sp_block_free(blk);
    }
    if (s != sp_dataset_num_samples(ds))
        fimp_fail("the blocks hold %llu samples, the dataset says %llu", (unsigned long long)s,
                  (unsigned long long)sp_dataset_num_samples(ds));
}

void fimp_end(void)
{
    rm_tree(g_run);
    free(g_msg);
    g_msg = NULL;
    g_msglen = 0;
    g_npaths = 0;
}
