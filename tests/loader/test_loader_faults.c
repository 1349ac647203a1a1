/* test_loader_faults.c - faults injected into the loader one at a time: every allocation of open and of streaming fails in turn (and posix_memalign below the library's hook), pthread_create is refused for the first worker, a later worker and the reader, and reads come back short, interrupted (EINTR, EAGAIN) or failed (EIO) on the pread and io_uring paths. Each ends in a clean error naming what failed, or in an epoch identical to a clean one; everything is freed, every started thread joined, nothing hangs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "ld_io.h" /* ld_io_uring_result_hook, ld_io_refuse_register */
#include "lt_util.h"
#include "test_util.h"
#include "tu_alloc.h"
#include "tu_thread.h"

/* The library's allocation fault hook (lib/common/sp_alloc.c): when positive, the n-th following
 * allocation fails. */
extern atomic_long sp_alloc_fail_countdown;

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static bool g_uring;  /* io_uring works here */
static bool g_direct; /* O_DIRECT opens work where the dataset lives */

#define N_SAMPLES 1200
#define WAIT_MS 20000

/* pthread_create faults: tu_thread.c (--wrap=pthread_create). */

/* ------------------------------------------------------------------------------------ read faults
 * The pread path is faulted through -Wl,--wrap=pread,pread64 (the library calls pread64 where off_t
 * is 64 bits); the io_uring path through ld_io_uring_result_hook, which sees each completion's
 * result before the loader does. One mode at a time, armed after open and disarmed before close;
 * shard indexes, read with pread when a shard is first needed, see the faults too. */

enum { F_NONE, F_SHORT, F_EINTR, F_EAGAIN, F_EIO, F_EAGAIN_FOREVER };
static const char *const fault_names[] = { "none", "short reads", "EINTR", "EAGAIN", "EIO", "EAGAIN forever" };

static atomic_int g_fault;
static atomic_long g_fault_calls, g_injected;
/* The EIO target: reads that start in bytes [lo, hi) of the file with this device and inode (the
 * block's reads and their continuations; not the tail read of its shard's index, which in a small
 * shard covers the block too and is read when the shard is first needed). */
static dev_t g_tdev;
static ino_t g_tino;
static uint64_t g_tlo, g_thi;

static bool hits_target(int fd, uint64_t off)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == g_tdev && st.st_ino == g_tino && off < g_thi && off >= g_tlo;
}

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static ssize_t faulty_pread(pread_fn real, int fd, void *buf, size_t n, off_t off)
{
    int mode = atomic_load(&g_fault);
    long k = atomic_fetch_add(&g_fault_calls, 1);
    switch (mode) {
    case F_SHORT:
        if (n > 1) {
            /* 1 .. n-1 bytes; now and then a single byte */
            size_t m = k % 7 == 3 ? 1 : 1 + (size_t)(tu_mix((uint64_t)k) % (n - 1));
            atomic_fetch_add(&g_injected, 1);
            return real(fd, buf, m, off);
        }
        break;
    case F_EINTR:
    case F_EAGAIN:
        if (k % 2 == 0) {
            atomic_fetch_add(&g_injected, 1);
            errno = mode == F_EINTR ? EINTR : EAGAIN;
            return -1;
        }
        break;
    case F_EIO:
    case F_EAGAIN_FOREVER:
        if (hits_target(fd, (uint64_t)off)) {
            atomic_fetch_add(&g_injected, 1);
            errno = mode == F_EIO ? EIO : EAGAIN;
            return -1;
        }
        break;
    }
    return real(fd, buf, n, off);
}

ssize_t __real_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off);

ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off) { return faulty_pread(__real_pread, fd, buf, n, off); }
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
    return faulty_pread(__real_pread64, fd, buf, n, off);
}

static int uring_hook(int fd, uint64_t off, uint8_t *buf, unsigned len, int res)
{
    (void)len;
    int mode = atomic_load(&g_fault);
    long k = atomic_fetch_add(&g_fault_calls, 1);
    switch (mode) {
    case F_SHORT:
        if (res > 1) {
            atomic_fetch_add(&g_injected, 1);
            int m = k % 7 == 3 ? 1 : 1 + (int)(tu_mix((uint64_t)k) % (uint64_t)(res - 1));
            memset(buf + m, 0xa5, (size_t)(res - m)); /* the bytes it did not read */
            return m;
        }
        break;
    case F_EINTR:
    case F_EAGAIN:
        if (k % 2 == 0) {
            atomic_fetch_add(&g_injected, 1);
            return mode == F_EINTR ? -EINTR : -EAGAIN;
        }
        break;
    case F_EIO:
    case F_EAGAIN_FOREVER:
        if (hits_target(fd, off)) {
            atomic_fetch_add(&g_injected, 1);
            return mode == F_EIO ? -EIO : -EAGAIN;
        }
        break;
    }
    return res;
}

static void arm_reads(int mode)
{
    atomic_store(&g_fault_calls, 0);
    atomic_store(&g_injected, 0);
    atomic_store(&g_fault, mode);
}

static long disarm_reads(void)
{
    atomic_store(&g_fault, F_NONE);
    return atomic_load(&g_injected);
}

/* ------------------------------------------------------------------------------------ helpers */

/* Parameters shared by every loader here (on top of lt_open's host_memory 64M, threads 2), so that
 * each run is comparable with the reference epoch. */
#define LT_COMMON "seed", g_seedstr, "batch_size", "32", "shuffle_window", "4"

static lt_rec g_ref; /* epoch 0, io=pread, no fault */

static void make_reference(void)
{
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, LT_COMMON, "io", "pread", "direct_io", "false", NULL), 0);
    lt_rec_free(&g_ref);
    int rc = lt_epoch(l, &g_ds, &g_ref);
    ck_assert_msg(rc == SP_EEPOCH && g_ref.bad == 0, "reference: %s %s", sp_error_name(rc), g_ref.why);
    ck_assert_uint_eq(g_ref.ni, N_SAMPLES);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

/* Epoch r must equal the reference batch for batch. */
static void same_as_reference(const lt_rec *r, const char *what)
{
    ck_assert_msg(r->bad == 0 && r->filled == 0, "%s: %s", what, r->why);
    ck_assert_msg(r->nb == g_ref.nb, "%s: %zu batches, reference %zu", what, r->nb, g_ref.nb);
    for (size_t k = 0; k < r->nb; k++)
        ck_assert_msg(r->hash[k] == g_ref.hash[k], "%s: batch %zu differs from the clean epoch", what, k);
}

/* Block `block` of the dataset: its info and its shard's path (malloc'd). */
static char *block_of(const char *dir, uint64_t block, sp_block_info *bi)
{
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), 0);
    ck_assert_int_eq(sp_dataset_block_info(ds, block, bi), 0);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert_int_eq(sp_dataset_shard_info(ds, bi->shard, &si), 0);
    char *path = strdup(si.path);
    sp_dataset_close(ds);
    return path;
}

/* The first batch of r holding a sample of block bi. */
static size_t first_batch_with(const lt_rec *r, const sp_block_info *bi)
{
    size_t i = 0;
    for (size_t b = 0; b < r->nb; i += r->rows[b], b++)
        for (uint32_t k = 0; k < r->rows[b]; k++)
            if (r->ids[i + k] >= bi->first_sample && r->ids[i + k] < bi->first_sample + bi->samples)
                return b;
    ck_abort_msg("no batch holds samples of block %llu", (unsigned long long)bi->index);
    return 0;
}

/* The open descriptors below 1024, as a bitmap: a run must neither leak one nor close one it does
 * not own (stdout, Check's own files). */
typedef struct fd_set_ {
    uint64_t bits[16];
} fd_set_;

static fd_set_ open_fds(void)
{
    fd_set_ s = { { 0 } };
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            s.bits[fd / 64] |= 1ull << (fd % 64);
    return s;
}

static void same_fds(const fd_set_ *before, const char *what, long n)
{
    fd_set_ now = open_fds();
    for (int fd = 0; fd < 1024; fd++) {
        bool was = before->bits[fd / 64] >> (fd % 64) & 1, is = now.bits[fd / 64] >> (fd % 64) & 1;
        ck_assert_msg(was == is, "%s (%ld): descriptor %d was %s", what, n, fd, was ? "closed" : "leaked");
    }
}

/* ------------------------------------------------------------------------------------ allocations */

static long g_left; /* what the countdown had left when disarmed */

static void arm_alloc(long n) { atomic_store(&sp_alloc_fail_countdown, n); }
static void disarm_alloc(void) { g_left = atomic_exchange(&sp_alloc_fail_countdown, 0); }

typedef struct op_ctx {
    const char *path;      /* what to open */
    const lt_ds *ds;       /* rows to check against (NULL: not checked) */
    char **shards;         /* for sp_loader_open_shards */
    size_t nshards;
    const char *const *kv; /* loader parameters, NULL-terminated pairs */
} op_ctx;

typedef int (*op_fn)(const op_ctx *c, long n);

/* Runs op with the n-th library allocation failing, for n = 1, 2, ... until a run succeeds without
 * reaching the fault. Every failing run must return SP_ENOMEM with a message, and every run must
 * leave exactly the allocations it found. */
static void sweep(const char *what, op_fn op, const op_ctx *c, long max_n)
{
    long n;
    int failures = 0;
    for (n = 1; n <= max_n; n++) {
        long live = tu_alloc_live();
        fd_set_ fds = open_fds();
        g_left = 0;
        int rc = op(c, n);
        same_fds(&fds, what, n);
        ck_assert_msg(tu_alloc_live() == live, "%s, allocation %ld failing: %ld allocation(s) leaked (%s)", what, n,
                      tu_alloc_live() - live, sp_error_name(rc));
        if (rc == 0 && g_left > 0)
            break;
        if (rc != 0)
            failures++;
    }
    ck_assert_msg(n <= max_n, "%s: still failing after %ld allocations", what, max_n);
    printf("%s: %ld allocation points, %d failed cleanly\n", what, n - 1, failures);
    ck_assert_msg(failures > 0, "%s: no allocation failure was ever reported", what);
}

static void expect_enomem(int rc, const char *what, long n, const char *call)
{
    ck_assert_msg(rc == SP_ENOMEM, "%s, allocation %ld failing: %s returned %s, not SP_ENOMEM (%s)", what, n, call,
                  sp_error_name(rc), sp_last_error());
    ck_assert_msg(sp_last_error()[0] != '\0', "%s, allocation %ld failing: %s gave no message", what, n, call);
}

/* sp_loader_open (or _open_shards) with the n-th allocation failing; a loader that opens anyway
 * must stream its first batch correctly. */
static int op_open(const op_ctx *c, long n)
{
    sp_params *p = lt_params_v(c->kv);
    ck_assert_ptr_nonnull(p);
    sp_loader *l = (sp_loader *)1;
    arm_alloc(n);
    int rc = c->shards ? sp_loader_open_shards((const char *const *)c->shards, c->nshards, p, &l)
                       : sp_loader_open(c->path, p, &l);
    disarm_alloc();
    sp_params_destroy(p);
    if (rc) {
        expect_enomem(rc, c->path, n, "sp_loader_open");
        ck_assert_ptr_null(l);
        return rc;
    }
    lt_rec r = { 0 };
    int d = lt_drain(l, c->ds, &r, 1, WAIT_MS);
    ck_assert_msg(d == 0 && r.bad == 0, "after open with %ld allocations: %s %s", n, sp_error_name(d), r.why);
    lt_rec_free(&r);
    ck_assert_int_eq(sp_loader_close(l), 0);
    return 0;
}

/* A stretch of streaming with the n-th allocation failing: an epoch, part of the next with a saved
 * state, a jump back with set_epoch, the saved state loaded and the rest of the run. The first
 * error must be SP_ENOMEM; the loader must then recover (fault gone, set_epoch(0)) and deliver an
 * intact epoch, and close. */
static int op_stream(const op_ctx *c, long n)
{
    sp_params *p = lt_params_v(c->kv);
    ck_assert_ptr_nonnull(p);
    sp_loader *l;
    ck_assert_int_eq(sp_loader_open(c->path, p, &l), 0);
    sp_params_destroy(p);
    lt_rec r = { 0 };
    uint8_t state[SP_LOADER_STATE_BYTES];
    const char *step = "epoch 0";
    arm_alloc(n);
    int rc = lt_epoch(l, c->ds, &r);
    if (rc == SP_EEPOCH)
        step = "epoch 1", rc = lt_drain(l, c->ds, &r, 3, WAIT_MS);
    if (rc == 0)
        step = "save_state", rc = sp_loader_save_state(l, state, sizeof state);
    if (rc == 0)
        step = "set_epoch", rc = sp_loader_set_epoch(l, 0);
    if (rc == 0)
        step = "epoch 0 again", rc = lt_drain(l, c->ds, &r, 2, WAIT_MS);
    if (rc == 0)
        step = "load_state", rc = sp_loader_load_state(l, state, sizeof state);
    if (rc == 0)
        step = "rest of epoch 1", rc = lt_epoch(l, c->ds, &r);
    if (rc == SP_EEPOCH) {
        sp_batch *b;
        step = "past the last epoch";
        rc = sp_loader_next(l, &b, WAIT_MS);
        rc = rc == SP_EDONE ? 0 : rc;
    }
    disarm_alloc();
    if (rc)
        expect_enomem(rc, c->path, n, step);
    ck_assert_msg(r.bad == 0, "allocation %ld failing: a delivered row is wrong: %s", n, r.why);
    lt_rec_free(&r);
    if (rc) {
        /* The failure stays until the loader is repositioned; then it works again. */
        ck_assert_int_eq(sp_loader_set_epoch(l, 0), 0);
        int e = lt_epoch(l, c->ds, &r);
        ck_assert_msg(e == SP_EEPOCH && r.bad == 0 && r.filled == 0, "recovery after allocation %ld failed: %s: %s %s",
                      n, sp_error_name(e), sp_last_error(), r.why);
        lt_rec_free(&r);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
    return rc;
}

static const char *const g_kv_plain[] = { "host_memory", "64M", "threads", "2", "seed", "7", "batch_size", "32",
                                          "epochs", "2", "io", "auto", NULL };

START_TEST(open_allocations)
{
    op_ctx c = { .path = g_ds.dir, .ds = &g_ds, .kv = g_kv_plain };
    sweep("sp_loader_open of a directory", op_open, &c, 5000);
    char *glob = tu_join(g_ds.dir, "shard-*.sps");
    c.path = glob;
    sweep("sp_loader_open of a glob", op_open, &c, 5000);
    free(glob);
    c.path = g_ds.dir;
    c.shards = tu_list_shards(g_ds.dir, &c.nshards);
    sweep("sp_loader_open_shards", op_open, &c, 5000);
    tu_free_list(c.shards, c.nshards);
}
END_TEST

START_TEST(stream_allocations)
{
    op_ctx c = { .path = g_ds.dir, .ds = &g_ds, .kv = g_kv_plain };
    sweep("streaming (next, release, save/load state, set_epoch)", op_stream, &c, 5000);
    static const char *const kv4[] = { "host_memory", "64M", "threads", "4", "seed", "9", "batch_size", "48",
                                       "epochs", "2", "io", "pread", "shuffle", "false", NULL };
    c.kv = kv4;
    sweep("streaming, 4 threads, io=pread, no shuffle", op_stream, &c, 5000);
}
END_TEST

/* A small dataset of JPEGs, so that the image stage's per-worker decoders are allocated too. */
static char *make_image_dataset(char **root)
{
    *root = tu_tmpdir("ldfault-img");
    char *dir = tu_join(*root, "data");
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL), 0);
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_params *p = tu_params("block_size", "4K", "shard_size", "16K", "threads", "1", NULL);
    sp_writer *w;
    ck_assert_int_eq(sp_writer_open(dir, s, p, &w), 0);
    tjhandle tj = tjInitCompress();
    ck_assert_ptr_nonnull(tj);
    uint8_t rgb[16 * 16 * 3];
    for (int64_t i = 0; i < 160; i++) {
        for (size_t k = 0; k < sizeof rgb; k++)
            rgb[k] = (uint8_t)(k * 7 + (size_t)i * 13);
        unsigned char *jpeg = NULL;
        unsigned long size = 0;
        ck_assert_int_eq(tjCompress2(tj, rgb, 16, 0, 16, TJPF_RGB, &jpeg, &size, TJSAMP_420, 80, 0), 0);
        sp_value v[2] = { { jpeg, size }, { &i, sizeof i } };
        ck_assert_int_eq(sp_writer_add(w, v, 2), 0);
        tjFree(jpeg);
    }
    tjDestroy(tj);
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    return dir;
}

START_TEST(image_allocations)
{
    char *root;
    char *dir = make_image_dataset(&root);
    static const char *const kv[] = { "host_memory", "64M", "threads", "2", "seed", "3", "batch_size", "16",
                                      "epochs", "2", "image_size", "8", "max_image_memory", "1M", NULL };
    op_ctx c = { .path = dir, .ds = NULL, .kv = kv };
    sweep("sp_loader_open of an image dataset", op_open, &c, 5000);
    sweep("streaming an image dataset", op_stream, &c, 5000);
    tu_rmtree(root);
    free(root);
    free(dir);
}
END_TEST

/* posix_memalign itself refusing (the library's hook sits before it): the read ring and the batch
 * ring are its only two calls, each must end in SP_ENOMEM; there is no third. */
START_TEST(memalign_refused)
{
    for (long n = 1; n <= 3; n++) {
        long live = tu_alloc_live();
        fd_set_ fds = open_fds();
        sp_params *p = lt_params_v(g_kv_plain);
        sp_loader *l;
        atomic_store(&tu_alloc_fail_memalign, n);
        int rc = sp_loader_open(g_ds.dir, p, &l);
        long left = atomic_exchange(&tu_alloc_fail_memalign, 0);
        sp_params_destroy(p);
        if (n < 3) {
            ck_assert_msg(rc == SP_ENOMEM, "posix_memalign %ld refused: %s", n, sp_error_name(rc));
            ck_assert_ptr_null(l);
            ck_assert_msg(strstr(sp_last_error(), "out of memory") && strstr(sp_last_error(), "pools"), "message: %s",
                          sp_last_error());
            ck_assert_int_eq(left, 0);
        } else {
            ck_assert_msg(rc == 0, "%s", sp_last_error());
            ck_assert_int_eq(left, 1);
            ck_assert_int_eq(sp_loader_close(l), 0);
        }
        ck_assert_msg(tu_alloc_live() == live, "posix_memalign %ld refused: %ld allocation(s) leaked", n,
                      tu_alloc_live() - live);
        same_fds(&fds, "posix_memalign refused", n);
    }
}
END_TEST

/* A shard whose index is damaged fails the first batch that needs it (the loader reads each index
 * when its shard is first needed): the error names it, and closing leaves no descriptor open and
 * nothing allocated. */
START_TEST(damaged_shard_at_first_use)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "faults-dmg"), 0);
    uint64_t which[] = { 0, g_ds.shards / 2, g_ds.shards - 1 };
    for (size_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%06llu.sps", (unsigned long long)which[i]);
        char *path = tu_join(c.dir, name);
        uint64_t off = tu_file_size(path) - 64 - 20; /* inside the index, before the trailer */
        tu_xor_byte(path, off, 0x20);
        long live = tu_alloc_live();
        fd_set_ fds = open_fds();
        sp_loader *l;
        ck_assert_msg(lt_open(c.dir, &l, NULL) == 0, "%s damaged: %s", name, sp_last_error());
        lt_rec r = { 0 };
        int rc = lt_drain(l, &c, &r, UINT64_MAX, 20000);
        ck_assert_msg(rc != 0 && rc != SP_EEPOCH, "%s damaged: the epoch ended with %s", name, sp_error_name(rc));
        ck_assert_msg(strstr(sp_last_error(), name) && strstr(sp_last_error(), "checksum"), "%s damaged: %s: %s", name,
                      sp_error_name(rc), sp_last_error());
        ck_assert_msg(r.bad == 0, "%s", r.why);
        ck_assert_int_eq(sp_loader_close(l), 0);
        lt_rec_free(&r);
        same_fds(&fds, name, rc);
        ck_assert_msg(tu_alloc_live() == live, "%s damaged: %ld allocation(s) leaked", name, tu_alloc_live() - live);
        tu_xor_byte(path, off, 0x20);
        free(path);
    }
    lt_ds_free(&c);
}
END_TEST

/* ------------------------------------------------------------------------------------ threads */

/* Opens a loader with 4 workers, optionally streams a little and repositions (so the failing start
 * is a restart), then refuses the fail_at-th pthread_create of the next start: next() must fail
 * with SP_ESYS naming the thread, with every thread that did start stopped again. */
static void thread_case(long fail_at, const char *want, bool restart, bool recover)
{
    char what[128];
    snprintf(what, sizeof what, "pthread_create %ld of a%s start refused", fail_at, restart ? " re" : "");
    long live = tu_alloc_live();
    fd_set_ fds = open_fds();
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, LT_COMMON, "threads", "4", "io", "pread", "direct_io", "false", NULL), 0);
    lt_rec r = { 0 };
    if (restart) {
        ck_assert_int_eq(lt_drain(l, &g_ds, &r, 2, WAIT_MS), 0);
        ck_assert_int_eq(sp_loader_set_epoch(l, 0), 0);
        lt_rec_free(&r);
    }
    atomic_store(&tu_thr_calls, 0);
    atomic_store(&tu_thr_fail_at, fail_at);
    sp_batch *b = (sp_batch *)1;
    int rc = sp_loader_next(l, &b, WAIT_MS);
    long calls = atomic_load(&tu_thr_calls);
    atomic_store(&tu_thr_fail_at, 0);
    ck_assert_msg(rc == SP_ESYS, "%s: next returned %s (%s)", what, sp_error_name(rc), sp_last_error());
    ck_assert_ptr_null(b);
    ck_assert_int_eq(calls, fail_at); /* nothing was started after the refusal */
    ck_assert_msg(strstr(sp_last_error(), want) && strstr(sp_last_error(), strerror(EAGAIN)), "%s: message '%s'",
                  what, sp_last_error());
    ck_assert_str_eq(sp_loader_errmsg(l), sp_last_error());
    ck_assert_msg(atomic_load(&tu_thr_started) == atomic_load(&tu_thr_exited),
                  "%s: %ld thread(s) still running after the failed start", what,
                  atomic_load(&tu_thr_started) - atomic_load(&tu_thr_exited));
    if (recover) {
        /* Nothing broken is left behind: the next call starts the pipeline and streams the epoch. */
        rc = lt_epoch(l, &g_ds, &r);
        ck_assert_msg(rc == SP_EEPOCH, "%s, then no fault: %s: %s", what, sp_error_name(rc), sp_last_error());
        same_as_reference(&r, what);
        lt_rec_free(&r);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_msg(atomic_load(&tu_thr_started) == atomic_load(&tu_thr_exited), "%s: %ld thread(s) not joined by close",
                  what, atomic_load(&tu_thr_started) - atomic_load(&tu_thr_exited));
    ck_assert_msg(tu_alloc_live() == live, "%s: %ld allocation(s) leaked", what, tu_alloc_live() - live);
    same_fds(&fds, what, fail_at);
}

START_TEST(thread_refused)
{
    make_reference();
    /* workers are started first (0..3), then the reader */
    thread_case(1, "decode worker 0", false, false);
    thread_case(1, "decode worker 0", false, true);
    thread_case(3, "decode worker 2", false, false);
    thread_case(4, "decode worker 3", true, true);
    thread_case(5, "reader thread", false, false);
    thread_case(5, "reader thread", false, true);
    thread_case(5, "reader thread", true, false);
    thread_case(2, "decode worker 1", true, true);
    lt_rec_free(&g_ref);
}
END_TEST

/* ------------------------------------------------------------------------------------ reads */

static sp_loader *open_reads(const char *io, const char *direct, const char *on_error)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, LT_COMMON, "io", io, "direct_io", direct, "on_error", on_error, NULL);
    ck_assert_msg(rc == 0, "open io=%s: %s", io, sp_last_error());
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_int_eq(st.io, strcmp(io, "pread") ? SP_IO_URING : SP_IO_PREAD);
    return l;
}

/* Faults the reads are expected to absorb: the epoch is identical to the clean one. */
static void absorbed(const char *io, const char *direct, int mode)
{
    char what[128];
    snprintf(what, sizeof what, "io=%s direct_io=%s, %s", io, direct, fault_names[mode]);
    sp_loader *l = open_reads(io, direct, "fail");
    lt_rec r = { 0 };
    arm_reads(mode);
    double t0 = lt_now();
    int rc = lt_epoch(l, &g_ds, &r);
    long injected = disarm_reads();
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s: %s", what, sp_error_name(rc), sp_last_error());
    ck_assert_msg(injected > 0, "%s: no fault was injected", what);
    ck_assert_msg(lt_now() - t0 < 15, "%s: took %.1f s", what, lt_now() - t0);
    same_as_reference(&r, what);
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_uint_eq(st.blocks_skipped, 0);
    printf("%s: %ld faults injected, epoch intact\n", what, injected);
    lt_rec_free(&r);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

/* Every read of one block fails with EIO (or, with mode F_EAGAIN_FOREVER, with EAGAIN that never
 * clears: the reader gives up after its bounded retries instead of spinning): the batch that needs
 * it fails with SP_EIO naming shard, block and cause (on_error=fail), or the block is skipped and
 * its rows filled (on_error=skip). */
static void eio_case_mode(const char *io, const char *on_error, uint64_t block, int mode)
{
    char what[128];
    int cause = mode == F_EIO ? EIO : EAGAIN;
    snprintf(what, sizeof what, "io=%s on_error=%s, %s on block %llu", io, on_error, fault_names[mode],
             (unsigned long long)block);
    sp_block_info bi = { .struct_size = sizeof bi };
    char *shard = block_of(g_ds.dir, block, &bi);
    struct stat st;
    ck_assert_int_eq(stat(shard, &st), 0);
    g_tdev = st.st_dev;
    g_tino = st.st_ino;
    g_tlo = bi.offset;
    g_thi = bi.offset + bi.stored_bytes;
    size_t want = first_batch_with(&g_ref, &bi);
    sp_loader *l = open_reads(io, "false", on_error);
    lt_rec r = { 0 };
    arm_reads(mode);
    double t0 = lt_now();
    int rc = lt_drain(l, &g_ds, &r, UINT64_MAX, WAIT_MS);
    ck_assert_msg(lt_now() - t0 < 15, "%s: took %.1f s", what, lt_now() - t0);
    long injected = disarm_reads();
    ck_assert_msg(injected > 0, "%s: the block was never read", what);
    ck_assert_msg(r.bad == 0, "%s: %s", what, r.why);
    sp_loader_stats stats = { .struct_size = sizeof stats };
    sp_loader_stats_get(l, &stats);
    char blk[96];
    snprintf(blk, sizeof blk, "block %llu at byte %llu", (unsigned long long)bi.index, (unsigned long long)bi.offset);
    if (!strcmp(on_error, "fail")) {
        ck_assert_msg(rc == SP_EIO, "%s: ended with %s: %s", what, sp_error_name(rc), sp_last_error());
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sp_last_error());
        ck_assert_msg(strstr(msg, shard) && strstr(msg, blk) && strstr(msg, strerror(cause)),
                      "%s: message does not name %s, '%s' and the cause: %s", what, shard, blk, msg);
        ck_assert_str_eq(sp_loader_errmsg(l), msg);
        /* exactly at the first batch that needs the block; everything before it intact */
        ck_assert_msg(r.nb == want, "%s: failed after %zu batches; the block's first batch is %zu", what, r.nb, want);
        for (size_t k = 0; k < r.nb; k++)
            ck_assert_msg(r.hash[k] == g_ref.hash[k], "%s: batch %zu differs from the clean epoch", what, k);
        sp_batch *b;
        ck_assert_int_eq(sp_loader_next(l, &b, WAIT_MS), SP_EIO); /* it stays */
        printf("%s: %s\n", what, msg);
        /* The disk heals: repositioned, the loader reads the block again. */
        lt_rec_free(&r);
        ck_assert_int_eq(sp_loader_set_epoch(l, 0), 0);
        rc = lt_epoch(l, &g_ds, &r);
        ck_assert_msg(rc == SP_EEPOCH, "%s, then healed: %s: %s", what, sp_error_name(rc), sp_last_error());
        same_as_reference(&r, what);
    } else {
        ck_assert_msg(rc == SP_EEPOCH, "%s: ended with %s: %s", what, sp_error_name(rc), sp_last_error());
        ck_assert_uint_eq(stats.blocks_skipped, 1);
        ck_assert_uint_eq(stats.samples_skipped, bi.samples);
        ck_assert_uint_eq(r.filled, bi.samples);
        ck_assert_uint_eq(r.ni, N_SAMPLES);
        ck_assert_msg(strstr(stats.bad_note, shard) && strstr(stats.bad_note, blk), "%s: bad_note '%s'", what,
                      stats.bad_note);
        for (size_t i = 0; i < r.ni; i++)
            ck_assert_msg(r.ids[i] == UINT64_MAX || r.ids[i] < bi.first_sample ||
                              r.ids[i] >= bi.first_sample + bi.samples,
                          "%s: sample %llu of the failed block delivered", what, (unsigned long long)r.ids[i]);
    }
    lt_rec_free(&r);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(shard);
}

static void eio_case(const char *io, const char *on_error, uint64_t block)
{
    eio_case_mode(io, on_error, block, F_EIO);
}

START_TEST(pread_faults)
{
    make_reference();
    absorbed("pread", "false", F_SHORT);
    absorbed("pread", "false", F_EINTR);
    absorbed("pread", "false", F_EAGAIN);
    if (g_direct) /* a short O_DIRECT read leaves an unaligned rest: the loader falls back to buffered */
        absorbed("pread", "true", F_SHORT);
    eio_case("pread", "fail", g_ds.blocks / 2);
    eio_case("pread", "fail", 0);
    eio_case("pread", "skip", g_ds.blocks / 3);
    eio_case_mode("pread", "fail", g_ds.blocks / 2, F_EAGAIN_FOREVER);
    lt_rec_free(&g_ref);
}
END_TEST

START_TEST(uring_faults)
{
    if (!g_uring) {
        fprintf(stderr, "loader_faults: io_uring refused on this machine: uring_faults skipped\n");
        return;
    }
    make_reference();
    ld_io_uring_result_hook = uring_hook;
    absorbed("uring", "false", F_SHORT);
    absorbed("uring", "false", F_EINTR);
    absorbed("uring", "false", F_EAGAIN);
    if (g_direct)
        absorbed("uring", "true", F_SHORT);
    ld_io_refuse_register = 1; /* plain (unregistered) buffers */
    absorbed("uring", "false", F_SHORT);
    absorbed("uring", "false", F_EAGAIN);
    ld_io_refuse_register = 0;
    eio_case("uring", "fail", g_ds.blocks / 2);
    eio_case("uring", "fail", g_ds.blocks - 1);
    eio_case("uring", "skip", g_ds.blocks / 4);
    eio_case_mode("uring", "fail", g_ds.blocks / 2, F_EAGAIN_FOREVER);
    ld_io_uring_result_hook = NULL;
    lt_rec_free(&g_ref);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xfa017);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "faults", N_SAMPLES, 64, g_seed, "4K", "32K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    lt_probe_io(&g_ds, &g_uring, &g_direct);
    fprintf(stderr, "loader_faults: %llu blocks in %llu shards; io_uring %s, O_DIRECT %s\n",
            (unsigned long long)g_ds.blocks, (unsigned long long)g_ds.shards, g_uring ? "available" : "refused",
            g_direct ? "accepted" : "refused");
    Suite *s = suite_create("loader_faults");
    TCase *tc = tu_tcase(s, "allocations", 60);
    tcase_add_test(tc, open_allocations);
    tcase_add_test(tc, stream_allocations);
    tcase_add_test(tc, image_allocations);
    tcase_add_test(tc, memalign_refused);
    tcase_add_test(tc, damaged_shard_at_first_use);
    tc = tu_tcase(s, "threads", 60);
    tcase_add_test(tc, thread_refused);
    tc = tu_tcase(s, "reads", 60);
    tcase_add_test(tc, pread_faults);
    tcase_add_test(tc, uring_faults);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
