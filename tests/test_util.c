/* test_util.c - helpers shared by the test programs (see test_util.h). */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ randomness */

uint64_t tu_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t tu_next(tu_rng *r)
{
    r->s += 0x9E3779B97F4A7C15ull;
    uint64_t x = r->s;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t tu_below(tu_rng *r, uint64_t n) { return tu_next(r) % n; }

void tu_fill_random(tu_rng *r, void *p, size_t n)
{
    uint8_t *b = p;
    while (n >= 8) {
        uint64_t v = tu_next(r);
        memcpy(b, &v, 8);
        b += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = tu_next(r);
        memcpy(b, &v, n);
    }
}

uint64_t tu_seed(uint64_t def)
{
    const char *s = getenv("SP_TEST_SEED");
    return s && *s ? strtoull(s, NULL, 0) : def;
}

/* ------------------------------------------------------------------------------------ files */

char *tu_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *p = malloc(strlen(base) + strlen(tag) + 32);
    TU_CHECK(p != NULL, "p is NULL");
    sprintf(p, "%s/sptest-%s-XXXXXX", base, tag);
    TU_CHECK(mkdtemp(p) != NULL, "mkdtemp %s: %s", p, strerror(errno));
    return p;
}

void tu_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        /* not tu_join: no Check call here, so main() and forked children may clean up too */
        char *p = malloc(strlen(path) + strlen(de->d_name) + 2);
        if (!p)
            continue;
        sprintf(p, "%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tu_rmtree(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

char *tu_dataset_dir(const char *tag, char **parent)
{
    *parent = tu_tmpdir(tag);
    return tu_join(*parent, "ds");
}

size_t tu_count_others(const char *parent, const char *keep)
{
    DIR *d = opendir(parent);
    TU_CHECK(d != NULL, "opendir %s", parent);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, keep);
    closedir(d);
    return n;
}

static bool is_hidden(const char *name) { return name[0] == '.'; }

size_t tu_count_hidden(const char *dir)
{
    if (!tu_exists(dir))
        return 0;
    return tu_count_files(dir, is_hidden);
}

char *tu_join(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    TU_CHECK(p != NULL, "p is NULL");
    sprintf(p, "%s/%s", dir, name);
    return p;
}

bool tu_exists(const char *path) { return access(path, F_OK) == 0; }

uint64_t tu_file_size(const char *path)
{
    struct stat st;
    TU_CHECK(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

uint8_t *tu_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    TU_CHECK(f != NULL, "open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    TU_CHECK(buf != NULL, "buf is NULL");
    TU_CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len, "fread(buf, 1, (size_t)len, f) == (size_t)len");
    fclose(f);
    *n = (size_t)len;
    return buf;
}

void tu_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    TU_CHECK(f != NULL, "create %s: %s", path, strerror(errno));
    TU_CHECK(n == 0 || fwrite(p, 1, n, f) == n, "n == 0 || fwrite(p, 1, n, f) == n");
    TU_CHECK(fclose(f) == 0, "fclose(f) == 0");
}

void tu_copy_file(const char *from, const char *to)
{
    size_t n;
    uint8_t *b = tu_read_file(from, &n);
    tu_write_file(to, b, n);
    free(b);
}

void tu_xor_byte(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    TU_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    uint8_t c;
    TU_CHECK(pread(fd, &c, 1, (off_t)off) == 1, "pread(fd, &c, 1, (off_t)off) == 1");
    c ^= mask;
    TU_CHECK(pwrite(fd, &c, 1, (off_t)off) == 1, "pwrite(fd, &c, 1, (off_t)off) == 1");
    close(fd);
}

void tu_rewrite_manifest(const char *dir, uint16_t minor, void (*set)(uint64_t shard, uint8_t *entry))
{
    char *path = tu_join(dir, "manifest.spm");
    size_t n;
    uint8_t *p = tu_read_file(path, &n);
    uint32_t sizes = 0;
    for (int i = 0; i < 3; i++) {
        uint32_t v;
        memcpy(&v, p + 48 + 4 * i, 4);
        sizes += v;
    }
    uint64_t nshards;
    memcpy(&nshards, p + 24, 8);
    size_t tbl = (64 + (size_t)sizes + 7) & ~(size_t)7;
    memcpy(p + 10, &minor, 2);
    for (uint64_t i = 0; set && i < nshards; i++)
        set(i, p + tbl + 40 * i + 32);
    uint64_t sum = sp_checksum64(p, n - 8);
    memcpy(p + n - 8, &sum, 8);
    tu_write_file(path, p, n);
    free(p);
    free(path);
}

void tu_manifest_unrecorded(uint64_t shard, uint8_t *entry)
{
    (void)shard;
    memset(entry, 0, 8);
}

size_t tu_count_files(const char *dir, bool (*pred)(const char *name))
{
    DIR *d = opendir(dir);
    TU_CHECK(d != NULL, "opendir %s", dir);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && (!pred || pred(de->d_name)))
            n++;
    closedir(d);
    return n;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **tu_list_shards(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    TU_CHECK(d != NULL, "opendir %s", dir);
    char **v = NULL;
    size_t cnt = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "shard-", 6) || len < 10 || strcmp(de->d_name + len - 4, ".sps"))
            continue;
        v = realloc(v, (cnt + 1) * sizeof *v);
        TU_CHECK(v != NULL, "v is NULL");
        v[cnt++] = tu_join(dir, de->d_name);
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof *v, cmp_str);
    *n = cnt;
    return v;
}

void tu_free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ------------------------------------------------------------------------------------ schemas */

static void random_name(tu_rng *r, size_t i, const char *kind, char *out, size_t cap)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    int n = snprintf(out, cap, "f%zu_%s", i, kind);
    size_t extra = tu_below(r, 8);
    for (size_t k = 0; k < extra && (size_t)n + 1 < cap; k++)
        out[n++] = chars[tu_below(r, sizeof chars - 1)];
    out[n] = '\0';
}

sp_schema *tu_random_schema(tu_rng *r, size_t max_fields)
{
    sp_schema *s = sp_schema_create();
    TU_CHECK(s != NULL, "s is NULL");
    size_t n = 1 + tu_below(r, max_fields);
    for (size_t i = 0; i < n; i++) {
        int kind = 1 + (int)tu_below(r, 5);
        int dtype = SP_DTYPE_U8;
        uint32_t ndim = 0;
        uint64_t shape[SP_MAX_DIMS] = { 0 };
        switch (kind) {
        case SP_FIELD_LABEL:
            dtype = SP_DTYPE_I64;
            break;
        case SP_FIELD_TOKENS:
            dtype = tu_below(r, 2) ? SP_DTYPE_U16 : SP_DTYPE_U32;
            ndim = 1;
            shape[0] = 1 + tu_below(r, 64);
            break;
        case SP_FIELD_TENSOR:
            dtype = 1 + (int)tu_below(r, 13);
            if (tu_below(r, 8) == 0) {
                ndim = 5 + (uint32_t)tu_below(r, SP_MAX_DIMS - 4);
                for (uint32_t d = 0; d < ndim; d++)
                    shape[d] = 1 + tu_below(r, 2);
            } else {
                ndim = (uint32_t)tu_below(r, 5);
                for (uint32_t d = 0; d < ndim; d++)
                    shape[d] = 1 + tu_below(r, 6);
            }
            break;
        default:
            break;
        }
        char name[SP_MAX_NAME + 1];
        random_name(r, i, sp_field_kind_name(kind), name, sizeof name);
        int rc = sp_schema_add(s, name, kind, dtype, ndim, shape);
        TU_CHECK(rc == 0, "sp_schema_add(%s): %s", name, sp_last_error());
    }
    return s;
}

/* ------------------------------------------------------------------------------------ values */

static tu_rng value_rng(const tu_data *d, uint64_t sample, size_t field)
{
    return (tu_rng){ tu_mix(d->seed ^ tu_mix(sample * 131 + field + 1)) };
}

static size_t size_from(const tu_data *d, tu_rng *r, size_t field)
{
    sp_field_info fi = { .struct_size = sizeof fi };
    TU_CHECK(sp_schema_field(d->schema, field, &fi) == 0, "sp_schema_field(d->schema, field, &fi) == 0");
    if (fi.fixed_bytes)
        return (size_t)fi.fixed_bytes;
    uint64_t pick = tu_below(r, 100);
    if ((int)pick < d->empty_pct)
        return 0;
    if (d->var_large && pick >= 97)
        return d->var_large;
    return (size_t)tu_below(r, (uint64_t)d->var_max + 1);
}

size_t tu_value_size(const tu_data *d, uint64_t sample, size_t field)
{
    tu_rng r = value_rng(d, sample, field);
    return size_from(d, &r, field);
}

void tu_value_fill(const tu_data *d, uint64_t sample, size_t field, uint8_t *buf)
{
    tu_rng r = value_rng(d, sample, field);
    size_t n = size_from(d, &r, field);
    if (!d->compressible) {
        tu_fill_random(&r, buf, n);
        return;
    }
    uint64_t salt = tu_next(&r);
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)('a' + ((k / 16 + salt) % 4));
}

int tu_add_samples(sp_writer *w, const tu_data *d, uint64_t from, uint64_t to)
{
    size_t nf = sp_schema_num_fields(d->schema);
    sp_value v[SP_MAX_FIELDS];
    uint8_t *bufs[SP_MAX_FIELDS];
    int rc = 0;
    for (uint64_t i = from; i < to && rc == 0; i++) {
        for (size_t f = 0; f < nf; f++) {
            size_t n = tu_value_size(d, i, f);
            bufs[f] = malloc(n ? n : 1);
            TU_CHECK(bufs[f] != NULL, "bufs[f] is NULL");
            tu_value_fill(d, i, f, bufs[f]);
            v[f] = (sp_value){ bufs[f], n };
        }
        rc = sp_writer_add(w, v, nf);
        for (size_t f = 0; f < nf; f++)
            free(bufs[f]);
    }
    return rc;
}

int tu_write_dataset(const char *dir, const tu_data *d, const sp_params *params, sp_write_stats *st)
{
    sp_writer *w = NULL;
    int rc = sp_writer_open(dir, d->schema, params, &w);
    if (rc)
        return rc;
    rc = tu_add_samples(w, d, 0, d->nsamples);
    if (rc == 0)
        rc = sp_writer_finish(w);
    if (rc == 0 && st)
        TU_CHECK(sp_writer_stats(w, st) == 0, "sp_writer_stats(w, st) == 0");
    sp_writer_destroy(w);
    return rc;
}

char *tu_shard_of(const char *dir, uint64_t sample, uint64_t *block)
{
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), 0);
    uint64_t global;
    uint32_t row;
    ck_assert_int_eq(sp_dataset_locate(ds, sample, &global, &row), 0);
    sp_block_info bi = { .struct_size = sizeof bi };
    ck_assert_int_eq(sp_dataset_block_info(ds, global, &bi), 0);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert_int_eq(sp_dataset_shard_info(ds, bi.shard, &si), 0);
    char *path = strdup(si.path);
    if (block)
        *block = bi.index;
    sp_dataset_close(ds);
    return path;
}

void tu_check_dataset(sp_dataset *ds, const tu_data *d, uint64_t first)
{
    const unsigned long long seed = (unsigned long long)d->seed;
    TU_CHECK(sp_schema_equal(sp_dataset_schema(ds), d->schema), "seed %llu: schema differs", seed);
    size_t nf = sp_schema_num_fields(d->schema);
    uint64_t n = sp_dataset_num_samples(ds);
    sp_block *b = NULL;
    uint64_t cur = UINT64_MAX, blocks_seen = 0;
    uint32_t expect_row = 0;
    uint8_t *want = NULL;
    size_t want_cap = 0;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t blk;
        uint32_t row;
        int rc = sp_dataset_locate(ds, j, &blk, &row);
        TU_CHECK(rc == 0, "seed %llu: locate(%llu): %s", seed, (unsigned long long)j, sp_last_error());
        if (blk != cur) {
            TU_CHECK(row == 0 && (cur == UINT64_MAX ? blk == 0 : blk == cur + 1),
                          "seed %llu: sample %llu starts block %llu at row %u", seed, (unsigned long long)j,
                          (unsigned long long)blk, row);
            sp_block_free(b);
            b = NULL;
            rc = sp_dataset_read_block(ds, blk, &b);
            TU_CHECK(rc == 0, "seed %llu: read_block(%llu): %s (%s)", seed, (unsigned long long)blk,
                          sp_error_name(rc), sp_last_error());
            sp_block_info bi = { .struct_size = sizeof bi };
            TU_CHECK(sp_dataset_block_info(ds, blk, &bi) == 0, "sp_dataset_block_info(ds, blk, &bi) == 0");
            TU_CHECK(bi.first_sample == j && bi.samples == sp_block_num_samples(b),
                          "seed %llu: block %llu info disagrees", seed, (unsigned long long)blk);
            TU_CHECK(bi.codec == SP_CODEC_STORED ? bi.stored_bytes == bi.raw_bytes : bi.codec == SP_CODEC_ZSTD,
                     "seed %llu: check failed at line %d", seed, __LINE__);
            cur = blk;
            expect_row = 0;
            blocks_seen++;
        }
        TU_CHECK(row == expect_row, "seed %llu: sample %llu at row %u, expected %u", seed,
                      (unsigned long long)j, row, expect_row);
        expect_row++;
        for (size_t f = 0; f < nf; f++) {
            const void *data;
            size_t size;
            rc = sp_block_get(b, row, f, &data, &size);
            TU_CHECK(rc == 0, "seed %llu: block_get", seed);
            size_t wsize = tu_value_size(d, first + j, f);
            TU_CHECK(size == wsize, "seed %llu: sample %llu field %zu: %zu bytes, expected %zu", seed,
                          (unsigned long long)(first + j), f, size, wsize);
            if (wsize > want_cap) {
                want_cap = wsize;
                want = realloc(want, want_cap);
                TU_CHECK(want != NULL, "want is NULL");
            }
            tu_value_fill(d, first + j, f, want);
            TU_CHECK(size == 0 || memcmp(data, want, size) == 0,
                          "seed %llu: sample %llu field %zu differs", seed, (unsigned long long)(first + j), f);
        }
        if (b && expect_row == sp_block_num_samples(b)) {
            const void *data;
            size_t size;
            TU_CHECK(sp_block_get(b, expect_row, 0, &data, &size) == SP_ERANGE,
                     "seed %llu: check failed at line %d", seed, __LINE__);
            TU_CHECK(sp_block_get(b, 0, nf, &data, &size) == SP_ERANGE,
                     "seed %llu: check failed at line %d", seed, __LINE__);
        }
    }
    TU_CHECK(blocks_seen == sp_dataset_num_blocks(ds), "seed %llu: %llu of %llu blocks visited", seed,
                  (unsigned long long)blocks_seen, (unsigned long long)sp_dataset_num_blocks(ds));
    uint64_t blk;
    uint32_t row;
    TU_CHECK(sp_dataset_locate(ds, n, &blk, &row) == SP_ERANGE, "sp_dataset_locate(ds, n, &blk, &row) == SP_ERANGE");
    sp_block *none = NULL;
    TU_CHECK(sp_dataset_read_block(ds, sp_dataset_num_blocks(ds), &none) == SP_ERANGE && none == NULL,
             "seed %llu: check failed at line %d", seed, __LINE__);
    sp_block_free(b);
    free(want);
}

sp_params *tu_params(const char *name, ...)
{
    sp_params *p = sp_params_create();
    TU_CHECK(p != NULL, "p is NULL");
    va_list ap;
    va_start(ap, name);
    for (const char *k = name; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        int rc = sp_params_set_str(p, k, v);
        TU_CHECK(rc == 0, "param %s=%s: %s", k, v, sp_last_error());
    }
    va_end(ap);
    return p;
}

/* ------------------------------------------------------------------------------------ check glue */

TCase *tu_tcase(Suite *s, const char *name, double timeout)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

int tu_run(Suite *s, uint64_t seed)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed)
        fprintf(stderr, "%d test(s) failed; rerun with SP_TEST_SEED=%llu to reproduce\n", failed,
                (unsigned long long)seed);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define TU_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TU_SANITIZED 1
#endif

void tu_check_trace(const char *path, const sp_loader_stats *st, const char *extra)
{
    const char *script = getenv("SP_TRACE_CHECK");
    ck_assert_msg(script && *script, "SP_TRACE_CHECK (set by meson) names check_trace.py");
    char cmd[8800];
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' --threads %d --budget %llu --slots %llu %s >&2", script, path,
             st->threads, (unsigned long long)st->host_memory_bytes, (unsigned long long)st->batch_ring_slots,
             extra);
    int rc = system(cmd);
    ck_assert_msg(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "check_trace.py failed on %s (%s)", path, cmd);
}

bool tu_sanitized(void)
{
#ifdef TU_SANITIZED
    return true;
#else
    return false;
#endif
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#endif

bool tu_asan(void)
{
#ifdef TU_ASAN
    return true;
#else
    return false;
#endif
}

tu_data tu_image_data(uint64_t n, uint64_t seed, size_t var_max)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    d.seed = seed;
    d.nsamples = n;
    d.var_max = var_max;
    return d;
}

const sp_params *tu_synthetic_images(void)
{
    static sp_params *p;
    if (!p)
        p = tu_params("validate_images", "0", NULL);
    return p;
}

void tu_child_deadline(unsigned seconds)
{
    signal(SIGALRM, SIG_DFL);
    alarm(seconds);
}

void tu_child_ok(int pid, const char *what)
{
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(!WIFSIGNALED(status), "%s: the child died of signal %d%s", what, WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (it hung)" : "");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child failed at step %d", what,
                  WEXITSTATUS(status));
}
