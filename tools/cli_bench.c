/* cli_bench.c - `shardpack bench`: loader throughput against its limit, memory, stalls, io path.
 *
 * Two measurements taken in one run on the same data (docs: DESIGN.md, "how it is measured"):
 *  1. the limit: on this thread, for blocks spread over the dataset, the per-block work the
 *     loader's workers do, run by the loader's own code (sp_loader_bench_block: read, verify,
 *     decompress, then write every row into the batch ring as a worker does), in samples/s, times
 *     the worker threads. Rows go where a worker's rows go: spread over the loader's batch ring (a
 *     shuffled window scatters a block's rows over hundreds of batches), not into one batch that
 *     stays in cache, which would time a cheaper copy than the loader has to make;
 *  2. the loader: the dataset streamed through sp_loader for E epochs, every batch touched and
 *     released at once, as a trainer that is never the bottleneck would.
 * Their ratio says how close the pipeline comes to what its threads could do.
 */
#include "cli.h"

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define LIMIT_MIN_S 1.0   /* the limit is timed over at least this long (or every block) */
#define STREAM_MIN_S 2.0  /* without --epochs, epochs are repeated until this much streaming */
#define TOUCH_STRIDE 4096 /* one byte read per page of every batch */
/* --epochs left unset: the parameter is preset to this value, which no one asks for. */
#define EPOCHS_UNSET INT32_MAX

typedef struct bench_limit {
    double parallel_samples_per_s; /* the same loop on `threads` threads at once, no pipeline */
    int parallel_threads;          /* threads, or fewer: one batch slot each at least */
    double samples_per_s; /* single thread */
    double seconds;       /* timed */
    uint64_t blocks;      /* distinct blocks in the sample */
    uint64_t samples;     /* rows processed while timed (passes included) */
    unsigned passes;
    uint64_t nblocks;     /* the dataset's blocks (of the first source of a mixture) */
} bench_limit;

typedef struct bench_run {
    uint64_t batches, samples, batch_bytes;
    uint64_t epochs;
    double seconds;
    uint64_t touch_sum;
    cli_mix mix; /* the first epoch's order */
} bench_run;

/* ---- the limit ------------------------------------------------------------------------------ */

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A stride coprime with n near n/phi: visiting i*stride mod n spreads any prefix of the visit order
 * evenly over the dataset (every shard, start and end), and visits each block once. */
static uint64_t spread_stride(uint64_t n)
{
    if (n < 3)
        return 1;
    uint64_t s = (uint64_t)((double)n * 0.6180339887498949);
    if (s == 0)
        s = 1;
    while (gcd_u64(s, n) != 1)
        s++;
    return s;
}

/* One thread's timed passes over the sampled blocks, through the loader's own worker code. */
typedef struct limit_pass {
    sp_loader *l;
    int worker, workers;
    uint64_t m, stride, nblocks;
    uint64_t samples, cursor;
    unsigned passes;
    double seconds;
    char why[512]; /* a failure's message, taken from the thread that saw it */
} limit_pass;

/* One pass over the m sampled blocks; their samples are added to lp->samples. */
static int limit_pass_once(limit_pass *lp)
{
    for (uint64_t i = 0; i < lp->m; i++) {
        int64_t n = sp_loader_bench_block(lp->l, lp->worker, lp->workers, i * lp->stride % lp->nblocks, &lp->cursor);
        if (n < 0)
            return (int)n;
        lp->samples += (uint64_t)n;
    }
    return 0;
}

static int timed_passes(limit_pass *lp)
{
    double t0 = cli_now();
    do {
        int rc = limit_pass_once(lp);
        if (rc)
            return rc;
        lp->passes++;
        lp->seconds = cli_now() - t0;
    } while (lp->seconds < LIMIT_MIN_S && lp->passes < 1000000);
    return 0;
}

static void *parallel_main(void *arg)
{
    limit_pass *lp = arg;
    int rc = timed_passes(lp);
    if (rc)
        snprintf(lp->why, sizeof lp->why, "%s", sp_last_error());
    return (void *)(intptr_t)rc;
}

/* The single-thread loop run on `threads` threads at once, each with a worker's buffers and its
 * share of the ring: what this machine gives for that work in parallel, with no pipeline around
 * it. Set beside the loader, it separates the pipeline's own cost from the machine's scaling. */
static int measure_parallel(limit_pass *proto, int threads, bench_limit *out)
{
    limit_pass lp[256];
    pthread_t th[256];
    int n = threads < 256 ? threads : 256, started = 0, rc = 0;
    sp_loader_stats st = { .struct_size = sizeof st };
    if (sp_loader_stats_get(proto->l, &st) == 0 && st.batch_ring_slots < (uint64_t)n)
        n = (int)st.batch_ring_slots; /* sp_loader_bench_block shares the ring out, a slot at least each */
    out->parallel_threads = n;
    for (int t = 0; t < n; t++) {
        lp[t] = *proto;
        lp[t].worker = t;
        lp[t].workers = n;
        lp[t].samples = lp[t].cursor = 0;
        lp[t].passes = 0;
    }
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, parallel_main, &lp[started]) != 0)
            break;
    double samples = 0, slowest = 0;
    for (int t = 0; t < started; t++) {
        void *ret;
        pthread_join(th[t], &ret);
        if (ret && !rc) {
            rc = (int)(intptr_t)ret;
            memcpy(proto->why, lp[t].why, sizeof proto->why);
        }
        samples += (double)lp[t].samples;
        slowest = lp[t].seconds > slowest ? lp[t].seconds : slowest;
    }
    out->parallel_samples_per_s = slowest > 0 && started == n ? samples / slowest : 0;
    return rc;
}

/* The loader the limit is measured on: the caller's parameters, with batches kept in host memory
 * (this process may not touch the GPU), and images left uint8 when the caller's batches go to a
 * device, which converts them there, so that its workers do what the caller's do. */
static int open_limit_loader(const char *path, sp_params *params, int device, sp_loader **out)
{
    int64_t dev = sp_params_get(params, SP_PARAM_DEVICE), dtype = sp_params_get(params, SP_PARAM_DEVICE_DTYPE);
    int64_t mix_m = sp_params_get(params, SP_PARAM_MIX_EPOCH_SAMPLES); /* a mixture's; this is one dataset */
    sp_params_set(params, SP_PARAM_DEVICE, SP_DEVICE_CPU);
    sp_params_set(params, SP_PARAM_MIX_EPOCH_SAMPLES, 0);
    if (device >= 0)
        sp_params_set(params, SP_PARAM_DEVICE_DTYPE, SP_DEVICE_DTYPE_NONE);
    int rc = sp_loader_open(path, params, out);
    sp_params_set(params, SP_PARAM_DEVICE, dev);
    sp_params_set(params, SP_PARAM_DEVICE_DTYPE, dtype);
    sp_params_set(params, SP_PARAM_MIX_EPOCH_SAMPLES, mix_m);
    return rc;
}

/* Measures the single-thread rate of the workers' per-block work; see the top of the file. */
static int measure_limit(const char *path, const char *shown, sp_params *params, int device, int threads,
                         bench_limit *out)
{
    sp_dataset *d = NULL;
    sp_loader *l = NULL;
    memset(out, 0, sizeof *out);
    int rc = sp_dataset_open(path, params, &d);
    if (rc == 0)
        rc = open_limit_loader(path, params, device, &l);
    if (rc != 0) {
        cli_lib_err(shown, rc, sp_last_error());
        sp_dataset_close(d);
        return CLI_EDATA;
    }
    uint64_t nblocks = sp_dataset_num_blocks(d);
    out->nblocks = nblocks;
    sp_dataset_close(d);
    limit_pass lp = { l, 0, 1, 0, spread_stride(nblocks), nblocks, 0, 0, 0, 0, "" };

    /* Warm-up: blocks read and written once, so the timed passes find the page cache and the
     * batch ring as warm as the loader will; its length fixes how many blocks are sampled. */
    double t0 = cli_now();
    while (lp.m < nblocks && (lp.m == 0 || cli_now() - t0 < LIMIT_MIN_S)) {
        int64_t n = sp_loader_bench_block(l, 0, 1, lp.m * lp.stride % nblocks, &lp.cursor);
        if (n < 0) {
            rc = (int)n;
            goto fail;
        }
        lp.m++;
    }

    /* Timed passes over the m blocks until LIMIT_MIN_S has passed. */
    lp.cursor = 0;
    if ((rc = timed_passes(&lp)))
        goto fail;
    out->samples = lp.samples;
    out->passes = lp.passes;
    out->seconds = lp.seconds;
    out->blocks = lp.m;
    out->samples_per_s = lp.seconds > 0 ? (double)lp.samples / lp.seconds : 0;
    if (threads > 1 && (rc = measure_parallel(&lp, threads, out)))
        goto fail;
    sp_loader_close(l);
    return CLI_OK;

fail:
    cli_lib_err(shown, rc, lp.why[0] ? lp.why : sp_last_error());
    sp_loader_close(l);
    return CLI_EDATA;
}

/* Runs measure_limit in a child process, so that its buffers (as large as the loader's batch ring)
 * never count in the peak RSS reported for the loader. The loader has started no thread yet, so
 * the fork is safe. */
static int measure_limit_apart(const char *path, const char *shown, sp_params *params, int device, int threads,
                               bench_limit *out)
{
    int fds[2];
    if (pipe(fds) != 0)
        return measure_limit(path, shown, params, device, threads, out);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return measure_limit(path, shown, params, device, threads, out);
    }
    if (pid == 0) {
        close(fds[0]);
        /* the trace is the streaming loader's: the limit's loader in this child leaves it alone */
        unsetenv("SHARDPACK_TRACE");
        sp_params_set_str(params, "trace", "");
        int rc = measure_limit(path, shown, params, device, threads, out);
        if (rc == CLI_OK && write(fds[1], out, sizeof *out) != (ssize_t)sizeof *out)
            rc = CLI_EDATA;
        _exit(rc);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], out, sizeof *out);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status))
        return cli_err("%s: the limit measurement died (signal %d)", shown, WTERMSIG(status)), CLI_EDATA;
    if (WEXITSTATUS(status) != CLI_OK)
        return WEXITSTATUS(status); /* the child already said why */
    return got == (ssize_t)sizeof *out ? CLI_OK : (cli_err("%s: the limit measurement sent no result", shown), CLI_EDATA);
}

/* ---- the loader ----------------------------------------------------------------------------- */

static uint64_t tensor_bytes(const DLTensor *t)
{
    uint64_t n = (uint64_t)t->dtype.bits * t->dtype.lanes / 8;
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

/* Reads one byte per page of every field (so a lazily produced batch cannot look free) and adds the
 * batch's bytes to *bytes. */
static uint64_t touch_batch(const sp_batch *b, uint64_t *bytes)
{
    uint64_t sum = 0;
    size_t n = sp_batch_num_fields(b);
    /* A device batch cannot be read from here: the host waits until it is in device memory. */
    bool on_device = sp_batch_device(b) >= 0;
    if (on_device)
        sp_batch_sync(b);
    for (size_t i = 0; i < n; i++) {
        const DLTensor *t = sp_batch_tensor(b, i);
        if (!t)
            continue;
        uint64_t len = tensor_bytes(t);
        if (on_device) {
            *bytes += len;
            continue;
        }
        const volatile unsigned char *p = (const unsigned char *)t->data + t->byte_offset;
        for (uint64_t off = 0; off < len; off += TOUCH_STRIDE)
            sum += p[off];
        if (len)
            sum += p[len - 1];
        *bytes += len;
    }
    return sum;
}

/* Streams epochs (epochs == 0: until STREAM_MIN_S has passed, whole epochs). */
static int stream(const char *path, sp_loader *l, uint64_t epochs, int quiet, double step_s, bench_run *run,
                  sp_loader_stats *st)
{
    cli_progress prog;
    cli_progress_init(&prog, quiet);
    uint64_t per_epoch = sp_loader_samples_per_epoch(l);
    prog.total_items = epochs ? per_epoch * epochs : 0;
    sp_write_stats shown; /* the progress line's "out": the bytes delivered */
    memset(&shown, 0, sizeof shown);

    int rc = CLI_OK;
    double t0 = cli_now();
    for (;;) {
        sp_batch *b;
        int r = sp_loader_next(l, &b, -1);
        if (r == 0) {
            run->touch_sum += touch_batch(b, &run->batch_bytes);
            if (run->epochs == 0 && cli_mix_batch(&run->mix, b) != 0) {
                sp_loader_release(l, b);
                rc = cli_lib_err(path, SP_ENOMEM, "out of memory measuring the order");
                break;
            }
            if (step_s > 0) { /* --step-ms: a training step holding the batch */
                struct timespec ts = { (time_t)step_s, (long)((step_s - (double)(time_t)step_s) * 1e9) };
                while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                    ;
            }
            run->batches++;
            run->samples += sp_batch_size(b);
            if ((r = sp_loader_release(l, b)) != 0) {
                rc = cli_lib_err(path, r, sp_loader_errmsg(l));
                break;
            }
            shown.file_bytes = run->batch_bytes;
            cli_progress_update(&prog, run->samples, run->batch_bytes, &shown, 0);
            continue;
        }
        if (r == SP_EEPOCH) {
            run->epochs++;
            if (epochs ? run->epochs >= epochs : cli_now() - t0 >= STREAM_MIN_S)
                break;
            continue;
        }
        if (r == SP_EDONE) /* the library's epochs ran out first (it was told the same number) */
            break;
        rc = cli_lib_err(path, r, sp_loader_errmsg(l));
        break;
    }
    run->seconds = cli_now() - t0;
    cli_progress_clear(&prog);
    sp_loader_stats_get(l, st);
    return rc;
}

/* ---- output --------------------------------------------------------------------------------- */

static double rate(double n, double s) { return s > 0 ? n / s : 0; }

/* "http", "https" or "s3" when the loader read PATH over the network (its reads are ranged GETs,
 * not pread or io_uring, whatever st->io says), else NULL. */
static const char *remote_scheme(const char *path)
{
    static const char *const schemes[] = { "http", "https", "s3" };
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(path, schemes[i], n) == 0 && strncmp(path + n, "://", 3) == 0)
            return schemes[i];
    }
    return NULL;
}

static void fmt_mib(char *buf, size_t n, uint64_t bytes)
{
    snprintf(buf, n, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
}

typedef struct bench_report {
    const char *path;
    const bench_limit *lim;
    const bench_run *run;
    const sp_loader_stats *st;
    uint64_t batch_size;
    uint64_t peak_rss, rss_before;
    double cpu_s; /* this process's CPU (user + system), every thread, from the loader's open to the run's end */
    int epochs_given;
    uint64_t window;  /* shuffle_window, in blocks */
    uint64_t nblocks; /* the dataset's blocks; 0 when unknown (a mixture) */
    const char *scheme; /* remote_scheme of the first source read over the network (a mixture's any), or NULL */
} bench_report;

static double limit_ratio(const bench_report *r)
{
    double lim = r->lim->samples_per_s * (r->st->threads > 0 ? r->st->threads : 1);
    return lim > 0 ? rate((double)r->run->samples, r->run->seconds) / lim : 0;
}

/* Loader throughput over the same loop run on `threads` threads at once (1 thread: the limit). */
static double parallel_ratio(const bench_report *r)
{
    double par = r->st->threads > 1 ? r->lim->parallel_samples_per_s : r->lim->samples_per_s;
    return par > 0 ? rate((double)r->run->samples, r->run->seconds) / par : 0;
}

/* The memory-bound line, advising only what can add read-ahead. Two windows of blocks are read
 * ahead at most: a larger shuffle_window helps only while it holds fewer blocks than the dataset.
 * The loader grows its read ring with at most half of what host_memory leaves beside the smallest
 * pools, then its batch slots: pools below half the budget mean each reached its goal, and a larger
 * host_memory would add nothing. */
static void memory_advice(const bench_report *r, char *line, size_t n, double held, double busy, double stall)
{
    const sp_loader_stats *st = r->st;
    double t = r->run->seconds > 0 ? r->run->seconds : 1e-9;
    char mib[32], used[32], what[512];
    fmt_mib(mib, sizeof mib, st->host_memory_bytes);
    fmt_mib(used, sizeof used, st->host_allocated_bytes);
    bool budget = st->host_allocated_bytes * 2 >= st->host_memory_bytes;
    bool window = r->nblocks == 0 || r->window < r->nblocks;
    if (budget && window)
        snprintf(what, sizeof what, "raise host_memory (%s) for more read-ahead, or shuffle_window (two windows of "
                 "blocks are read ahead at most)", mib);
    else if (budget)
        snprintf(what, sizeof what, "raise host_memory (%s) for more read-ahead (shuffle_window %llu already spans "
                 "the dataset's %llu blocks)", mib, (unsigned long long)r->window, (unsigned long long)r->nblocks);
    else if (window)
        snprintf(what, sizeof what, "raise shuffle_window (%llu of the dataset's %llu blocks; two windows are read "
                 "ahead at most); host_memory is not the limit (%s of %s in use)", (unsigned long long)r->window,
                 (unsigned long long)r->nblocks, used, mib);
    else
        snprintf(what, sizeof what, "neither host_memory (%s of %s in use) nor shuffle_window (%llu; the dataset "
                 "has %llu block%s) can add read-ahead: every block is already read ahead, and what holds the reader "
                 "is each window's end on a dataset this small", used, mib, (unsigned long long)r->window,
                 (unsigned long long)r->nblocks, r->nblocks == 1 ? "" : "s");
    snprintf(line, n,
             "memory-bound: the reader waited %.0f%% of the run for read-ring space (%.0f%%) or free batch "
             "slots (%.0f%%) while the %d workers were busy %.0f%% (at most %llu jobs at once) and next() "
             "waited %.1f%%: %s",
             100 * held, 100 * st->read_wait_space_s / t, 100 * st->read_wait_slot_s / t, st->threads, 100 * busy,
             (unsigned long long)st->jobs_in_flight_peak, 100 * stall, what);
}

/* What held the run back, from the loader's statistics: one of "consumer", "decode", "read",
 * "memory", with the numbers behind it and what to change in line. In order:
 *  - the consumer waited in next() under 10% of the run: the loader kept up (consumer-bound);
 *  - the workers were busy 75% of the run or more: decoding (or memory, when host_memory cut
 *    the number of workers below the usable cores: threads_note says so);
 *  - the reader spent at least half the run reading (or waiting for reads), neither held up by
 *    the consumer nor by memory: reading;
 *  - the reader waited at least 30% of the run for read-ring space or free batch slots while
 *    the workers were not busy: the budget's read-ahead or batch ring bounded the work in flight;
 *  - else the largest of the three shares. */
static const char *bottleneck(const bench_report *r, char *line, size_t n)
{
    const sp_loader_stats *st = r->st;
    double t = r->run->seconds > 0 ? r->run->seconds : 1e-9;
    double stall = (st->device >= 0 ? st->device_empty_s : st->stall_s) / t;
    double busy = st->decode_busy_s / (t * (st->threads > 0 ? st->threads : 1));
    double held = (st->read_wait_space_s + st->read_wait_slot_s) / t;
    double reading = 1 - held;
    if (busy > 1)
        busy = 1;
    if (reading < 0)
        reading = 0;
    bool cut = strstr(st->threads_note, "fit host_memory") != NULL;
    char mib[32];
    fmt_mib(mib, sizeof mib, st->host_memory_bytes);
    if (stall < 0.10) {
        snprintf(line, n,
                 "consumer-bound: next() waited %.1f%% of the run and the %d workers were busy %.0f%%: the loader keeps "
                 "up; it could do with fewer threads or less host_memory (%s)",
                 100 * stall, st->threads, 100 * busy, mib);
        return "consumer";
    }
    if (busy >= 0.75 && cut) {
        snprintf(line, n,
                 "memory-bound: the %d workers were busy %.0f%% and next() waited %.1f%%, but host_memory %s holds "
                 "only %d workers (%s): raise host_memory for more",
                 st->threads, 100 * busy, 100 * stall, mib, st->threads, st->threads_note);
        return "memory";
    }
    if (busy >= 0.75) {
        snprintf(line, n,
                 "decode-bound: the %d workers were busy %.0f%% and next() waited %.1f%% of the run: more cores "
                 "(threads), a smaller image_size, or smaller stored images",
                 st->threads, 100 * busy, 100 * stall);
        return "decode";
    }
    const char *kind = NULL;
    if (reading >= 0.5)
        kind = "read";
    else if (held >= 0.3)
        kind = "memory";
    else /* no clear sign: the largest share */
        kind = busy >= reading && busy >= held ? "decode" : reading >= held ? "read" : "memory";
    if (strcmp(kind, "read") == 0)
        snprintf(line, n,
                 "read-bound: the reader was reading (or waiting for reads, %.1f%%) %.0f%% of the run while the "
                 "%d workers were busy %.0f%% and next() waited %.1f%%: %s",
                 100 * st->read_wait_io_s / t, 100 * reading, st->threads, 100 * busy, 100 * stall,
                 !r->scheme ? "faster storage, the page cache (direct_io=false), io=uring, or larger blocks"
                 : st->cache_size && st->cache_hits && !st->remote_bytes
                     ? "every block came from the cache directory: faster local storage under cache_dir"
                 : st->cache_size ? "a faster link or server, more GETs in flight (remote_inflight), or a larger "
                                    "cache_size"
                                  : "a faster link or server, more GETs in flight (remote_inflight), or a local "
                                    "cache (cache_dir) for the epochs after the first");
    else if (strcmp(kind, "memory") == 0)
        memory_advice(r, line, n, held, busy, stall);
    else
        snprintf(line, n,
                 "decode-bound: the %d workers were busy %.0f%% and next() waited %.1f%% of the run: more cores "
                 "(threads), a smaller image_size, or smaller stored images",
                 st->threads, 100 * busy, 100 * stall);
    return kind;
}

static void print_json(const bench_report *r)
{
    const bench_run *run = r->run;
    const sp_loader_stats *st = r->st;
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_key(&j, "path");
    cli_json_str(&j, r->path);
    cli_json_key(&j, "samples_per_s");
    cli_json_double(&j, rate((double)run->samples, run->seconds));
    cli_json_key(&j, "bytes_per_s");
    cli_json_double(&j, rate((double)run->batch_bytes, run->seconds));
    cli_json_key(&j, "bytes_counted");
    cli_json_str(&j, "batch"); /* bytes of the batch tensors handed out */
    cli_json_key(&j, "decompressed_bytes_per_s");
    cli_json_double(&j, rate((double)st->bytes_decompressed, run->seconds));
    cli_json_key(&j, "read_bytes_per_s");
    cli_json_double(&j, rate((double)st->bytes_read, run->seconds));
    cli_json_key(&j, "limit_ratio");
    cli_json_double(&j, limit_ratio(r));
    cli_json_key(&j, "single_thread_samples_per_s");
    cli_json_double(&j, r->lim->samples_per_s);
    cli_json_key(&j, "limit_samples_per_s");
    cli_json_double(&j, r->lim->samples_per_s * st->threads);
    cli_json_key(&j, "parallel_samples_per_s");
    cli_json_double(&j, r->lim->parallel_samples_per_s);
    cli_json_key(&j, "parallel_ratio");
    cli_json_double(&j, parallel_ratio(r));
    cli_json_key(&j, "limit_blocks");
    cli_json_u64(&j, r->lim->blocks);
    cli_json_key(&j, "limit_seconds");
    cli_json_double(&j, r->lim->seconds);
    cli_json_key(&j, "peak_rss_bytes");
    cli_json_u64(&j, r->peak_rss);
    cli_json_key(&j, "rss_before_loader_bytes");
    cli_json_u64(&j, r->rss_before);
    cli_json_key(&j, "host_memory_bytes");
    cli_json_u64(&j, st->host_memory_bytes);
    cli_json_key(&j, "host_allocated_bytes");
    cli_json_u64(&j, st->host_allocated_bytes);
    cli_json_key(&j, "stall_s");
    cli_json_double(&j, st->stall_s);
    cli_json_key(&j, "read_busy_s");
    cli_json_double(&j, st->read_busy_s);
    cli_json_key(&j, "decode_busy_s");
    cli_json_double(&j, st->decode_busy_s);
    /* "remote" for ranged GETs (it said "pread" before: the loader's st->io means nothing then);
     * remote_scheme says over what */
    const char *scheme = r->scheme;
    cli_json_key(&j, "io");
    cli_json_str(&j, scheme ? "remote" : st->io == SP_IO_URING ? "uring" : "pread");
    cli_json_key(&j, "remote_scheme");
    cli_json_str(&j, scheme ? scheme : "");
    cli_json_key(&j, "direct_io");
    cli_json_bool(&j, st->direct_io);
    cli_json_key(&j, "io_note");
    cli_json_str(&j, st->io_note);
    cli_json_key(&j, "device");
    cli_json_i64(&j, st->device);
    cli_json_key(&j, "device_note");
    cli_json_str(&j, st->device_note);
    cli_json_key(&j, "host_pinned");
    cli_json_bool(&j, st->host_pinned);
    cli_json_key(&j, "device_ring_bytes");
    cli_json_u64(&j, st->device_ring_bytes);
    cli_json_key(&j, "device_bytes_peak");
    cli_json_u64(&j, st->device_bytes_peak);
    cli_json_key(&j, "bytes_copied");
    cli_json_u64(&j, st->bytes_copied);
    cli_json_key(&j, "copy_s");
    cli_json_double(&j, st->copy_s);
    cli_json_key(&j, "device_empty_s");
    cli_json_double(&j, st->device_empty_s);
    cli_json_key(&j, "threads");
    cli_json_i64(&j, st->threads);
    cli_json_key(&j, "threads_note");
    cli_json_str(&j, st->threads_note);
    cli_json_key(&j, "host_memory_note");
    cli_json_str(&j, st->host_memory_note);
    cli_json_key(&j, "rank");
    cli_json_i64(&j, st->rank);
    cli_json_key(&j, "world_size");
    cli_json_i64(&j, st->world_size);
    cli_json_key(&j, "local_rank");
    cli_json_i64(&j, st->local_rank);
    cli_json_key(&j, "local_world_size");
    cli_json_i64(&j, st->local_world_size);
    cli_json_key(&j, "rank_note");
    cli_json_str(&j, st->rank_note);
    cli_json_key(&j, "partitions");
    cli_json_i64(&j, st->partitions);
    if (st->sources) {
        cli_json_key(&j, "source_samples");
        cli_json_array(&j);
        for (int i = 0; i < st->sources; i++)
            cli_json_u64(&j, st->source_samples[i]);
        cli_json_end_array(&j);
    }
    cli_mix_result mx;
    cli_mix_get(&run->mix, &mx);
    if (mx.has_labels) {
        cli_json_key(&j, "labels_per_batch");
        cli_json_double(&j, mx.labels_per_batch);
        cli_json_key(&j, "labels_per_batch_uniform");
        cli_json_double(&j, mx.labels_uniform);
        cli_json_key(&j, "labels_per_batch_ratio");
        cli_json_double(&j, mx.labels_uniform > 0 ? mx.labels_per_batch / mx.labels_uniform : 0);
    }
    cli_json_key(&j, "mean_move");
    cli_json_double(&j, mx.move);
    cli_json_key(&j, "mean_move_uniform");
    cli_json_double(&j, mx.move_uniform);
    cli_json_key(&j, "memory_note");
    cli_json_str(&j, st->memory_note);
    cli_json_key(&j, "remote_bytes");
    cli_json_u64(&j, st->remote_bytes);
    if (st->cache_size) {
        cli_json_key(&j, "cache");
        cli_json_object(&j);
        const struct { const char *k; uint64_t v; } c[] = {
            { "hits", st->cache_hits },           { "misses", st->cache_misses },
            { "hit_bytes", st->cache_hit_bytes }, { "admitted", st->cache_admitted },
            { "evictions", st->cache_evictions }, { "discarded", st->cache_discarded },
            { "bytes", st->cache_bytes },         { "size", st->cache_size },
        };
        for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
            cli_json_key(&j, c[i].k);
            cli_json_u64(&j, c[i].v);
        }
        cli_json_end_object(&j);
    }
    char why[1024];
    const char *kind = bottleneck(r, why, sizeof why);
    cli_json_key(&j, "bottleneck");
    cli_json_str(&j, kind);
    cli_json_key(&j, "bottleneck_note");
    cli_json_str(&j, why);
    cli_json_key(&j, "decode_busy_share");
    cli_json_double(&j, st->decode_busy_s / (run->seconds > 0 ? run->seconds : 1) / (st->threads > 0 ? st->threads : 1));
    cli_json_key(&j, "jobs_in_flight_peak");
    cli_json_u64(&j, st->jobs_in_flight_peak);
    cli_json_key(&j, "read_wait_io_s");
    cli_json_double(&j, st->read_wait_io_s);
    cli_json_key(&j, "read_wait_space_s");
    cli_json_double(&j, st->read_wait_space_s);
    cli_json_key(&j, "read_wait_slot_s");
    cli_json_double(&j, st->read_wait_slot_s);
    cli_json_key(&j, "batch_ring_slots");
    cli_json_u64(&j, st->batch_ring_slots);
    cli_json_key(&j, "batch_ring_limit");
    cli_json_u64(&j, st->batch_ring_limit);
    cli_json_key(&j, "batch_ring_peak_slots");
    cli_json_u64(&j, st->batch_ring_peak_slots);
    cli_json_key(&j, "batch_ring_grown");
    cli_json_u64(&j, st->batch_ring_grown);
    cli_json_key(&j, "remote_requests");
    cli_json_u64(&j, st->remote_requests);
    cli_json_key(&j, "remote_pending_peak");
    cli_json_u64(&j, st->remote_pending_peak);
    cli_json_key(&j, "shard_indexes_read");
    cli_json_u64(&j, st->shard_indexes_read);
    cli_json_key(&j, "remote_gets");
    cli_json_u64(&j, st->remote_gets);
    cli_json_key(&j, "remote_transfers");
    cli_json_u64(&j, st->remote_transfers);
    cli_json_key(&j, "trace_events");
    cli_json_u64(&j, st->trace_events);
    cli_json_key(&j, "trace_events_dropped");
    cli_json_u64(&j, st->trace_events_dropped);
    cli_json_key(&j, "batch_size");
    cli_json_u64(&j, r->batch_size);
    cli_json_key(&j, "batches");
    cli_json_u64(&j, run->batches);
    cli_json_key(&j, "samples");
    cli_json_u64(&j, run->samples);
    cli_json_key(&j, "samples_skipped");
    cli_json_u64(&j, st->samples_skipped);
    cli_json_key(&j, "samples_dropped_per_epoch");
    cli_json_u64(&j, st->samples_dropped_per_epoch);
    cli_json_key(&j, "samples_padded_per_epoch");
    cli_json_u64(&j, st->samples_padded_per_epoch);
    cli_json_key(&j, "samples_padded");
    cli_json_u64(&j, st->samples_padded);
    cli_json_key(&j, "epochs");
    cli_json_u64(&j, run->epochs);
    cli_json_key(&j, "epochs_given");
    cli_json_bool(&j, r->epochs_given);
    cli_json_key(&j, "seconds");
    cli_json_double(&j, run->seconds);
    cli_json_key(&j, "cpu_s");
    cli_json_double(&j, r->cpu_s);
    cli_json_end_object(&j);
    cli_json_finish(&j);
}

static void print_summary(const bench_report *r)
{
    const bench_run *run = r->run;
    const sp_loader_stats *st = r->st;
    char deliv[32], decomp[32], rss[32], before[32], budget[32], alloc[32];
    cli_fmt_bytes(deliv, sizeof deliv, (uint64_t)rate((double)run->batch_bytes, run->seconds));
    cli_fmt_bytes(decomp, sizeof decomp,
                  (uint64_t)rate((double)st->bytes_decompressed, run->seconds));
    fmt_mib(rss, sizeof rss, r->peak_rss);
    fmt_mib(before, sizeof before, r->rss_before);
    fmt_mib(budget, sizeof budget, st->host_memory_bytes);
    fmt_mib(alloc, sizeof alloc, st->host_allocated_bytes);
    double sps = rate((double)run->samples, run->seconds);

    cli_line(stdout, "%s: %.0f samples/s, %s/s, %.2f of the limit", r->path, sps, deliv, limit_ratio(r));
    printf("  streamed   %llu samples in %llu batches of %llu, %llu epoch%s, %.2f s\n",
           (unsigned long long)run->samples, (unsigned long long)run->batches,
           (unsigned long long)r->batch_size, (unsigned long long)run->epochs,
           run->epochs == 1 ? "" : "s", run->seconds);
    printf("  bytes      %s/s of batch tensors delivered (%s/s decompressed from blocks)\n", deliv,
           decomp);
    printf("  limit      %.0f samples/s on one thread x %d thread%s = %.0f samples/s "
           "(%llu blocks, %.2f s)\n",
           r->lim->samples_per_s, st->threads, st->threads == 1 ? "" : "s",
           r->lim->samples_per_s * st->threads, (unsigned long long)r->lim->blocks,
           r->lim->seconds);
    if (st->threads > 1)
        printf("  parallel   %.0f samples/s with the same loop on %d threads at once (no pipeline): "
               "the loader reaches %.2f of it\n",
               r->lim->parallel_samples_per_s, r->lim->parallel_threads, parallel_ratio(r));
    printf("  memory     peak RSS %s (%s before the loader ran); host_memory %s, %s allocated\n",
           rss, before, budget, alloc);
    printf("  prefetch   %llu of %llu batch slots usable (grown %llu time%s while next() waited), peak %llu in use\n",
           (unsigned long long)st->batch_ring_limit, (unsigned long long)st->batch_ring_slots,
           (unsigned long long)st->batch_ring_grown, st->batch_ring_grown == 1 ? "" : "s",
           (unsigned long long)st->batch_ring_peak_slots);
    printf("  ranks      %s\n", st->rank_note);
    if (st->threads_note[0])
        printf("  threads    %s\n", st->threads_note);
    if (st->host_memory_note[0])
        printf("  budget     host_memory %s\n", st->host_memory_note);
    printf("  stall      %.3f s waiting in next() (%.1f%% of the run)\n", st->stall_s,
           run->seconds > 0 ? 100.0 * st->stall_s / run->seconds : 0.0);
    printf("  cpu        %.2f s user + system in this process from the loader's open (the limit's apart), "
           "%.1f us a sample\n", r->cpu_s, run->samples ? 1e6 * r->cpu_s / (double)run->samples : 0.0);
    const char *scheme = r->scheme;
    if (scheme) /* the note says how many GETs in flight and how large */
        printf("  io         remote (%s): %s\n", scheme,
               strncmp(st->io_note, "remote: ", 8) == 0 ? st->io_note + 8 : st->io_note);
    else
        printf("  io         %s, %s%s%s\n", st->io == SP_IO_URING ? "io_uring" : "pread",
               st->direct_io ? "O_DIRECT" : "page cache", st->io_note[0] ? "; " : "", st->io_note);
    if (st->device >= 0) {
        char ring[32], peak[32];
        fmt_mib(ring, sizeof ring, st->device_ring_bytes);
        fmt_mib(peak, sizeof peak, st->device_bytes_peak);
        printf("  device     cuda:%d, ring %s in %llu slots (peak %s in use), %s batch ring; copies %.2f GB/s "
               "of GPU time, %.3f s waiting with the device ring empty\n",
               st->device, ring, (unsigned long long)st->device_ring_slots, peak,
               st->host_pinned ? "page-locked" : "pageable", rate((double)st->bytes_copied, st->copy_s) / 1e9,
               st->device_empty_s);
    }
    if (st->device_note[0])
        printf("  device     %s\n", st->device_note);
    if (st->samples_skipped || st->samples_dropped_per_epoch)
        printf("  samples    %llu skipped (corrupt), %llu dropped per epoch (equal batches per "
               "rank)\n",
               (unsigned long long)st->samples_skipped,
               (unsigned long long)st->samples_dropped_per_epoch);
    if (st->samples_padded_per_epoch)
        printf("  padding    %llu rows per epoch repeat a sample (rank_pad), %llu delivered\n",
               (unsigned long long)st->samples_padded_per_epoch, (unsigned long long)st->samples_padded);
    if (st->sources) {
        printf("  sources   ");
        for (int i = 0; i < st->sources; i++)
            printf(" %llu%s", (unsigned long long)st->source_samples[i], i + 1 < st->sources ? "," : "");
        printf(" samples delivered from each source, in the order given\n");
    }
    cli_mix_result mx;
    cli_mix_get(&run->mix, &mx);
    if (mx.has_labels)
        printf("  shuffle    %.2f labels per batch of %llu (a uniform shuffle: %.2f, %.2f of it); ",
               mx.labels_per_batch, (unsigned long long)r->batch_size, mx.labels_uniform,
               mx.labels_uniform > 0 ? mx.labels_per_batch / mx.labels_uniform : 0);
    else
        printf("  shuffle    ");
    printf("samples move %.0f places on average (uniform: %.0f, %.2f of it)\n", mx.move, mx.move_uniform,
           mx.move_uniform > 0 ? mx.move / mx.move_uniform : 0);
    if (st->memory_note[0])
        printf("  memory     %s\n", st->memory_note);
    if (st->remote_bytes || st->cache_size) {
        char got[32], hit[32], held[32], size[32];
        fmt_mib(got, sizeof got, st->remote_bytes);
        fmt_mib(hit, sizeof hit, st->cache_hit_bytes);
        fmt_mib(held, sizeof held, st->cache_bytes);
        fmt_mib(size, sizeof size, st->cache_size);
        /* remote_transfers is the number the reader keeps at once (remote_inflight or its choice), not a peak
         * seen: "at most", or a run of 8 GETs reads as if 64 had been out together. */
        printf("  remote     %s of blocks fetched; %llu GETs sent for %llu reads (blocks and shard indexes), at most "
               "%llu transfers at once", got, (unsigned long long)st->remote_gets, (unsigned long long)st->remote_requests,
               (unsigned long long)st->remote_transfers);
        if (st->cache_size)
            printf("; cache %llu hits (%s), %llu misses, %llu blocks kept, %llu evicted, %llu damaged removed; "
                   "holds %s of %s",
                   (unsigned long long)st->cache_hits, hit, (unsigned long long)st->cache_misses,
                   (unsigned long long)st->cache_admitted, (unsigned long long)st->cache_evictions,
                   (unsigned long long)st->cache_discarded, held, size);
        printf("\n");
    }
    if (st->trace_events)
        printf("  trace      %llu events recorded (%llu dropped), written when the loader closes\n",
               (unsigned long long)st->trace_events, (unsigned long long)st->trace_events_dropped);
    char why[1024];
    bottleneck(r, why, sizeof why);
    printf("  bottleneck %s\n", why);
    if (run->seconds < STREAM_MIN_S)
        printf("  note       the run took under %.0f s; %s\n", STREAM_MIN_S,
               r->epochs_given ? "pass more --epochs (or omit it) for steadier numbers"
                               : "the numbers are noisy");
}

/* CPU seconds (user + system) of this process so far, every thread; the limit's child is not
 * counted (its own process). */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

/* ---- the command ---------------------------------------------------------------------------- */

enum { OPT_JSON = 1, OPT_QUIET, OPT_STEP_MS };

static const cli_opt bench_opts[] = {
    {"json", 0, 0, OPT_JSON, NULL, "print one JSON object to stdout instead of the summary"},
    {"quiet", 'q', 0, OPT_QUIET, NULL, "no progress line"},
    {"step-ms", 0, 1, OPT_STEP_MS, "MS", "hold each batch MS milliseconds before releasing it, as a training step would (default 0)"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_bench = {
    "bench",
    "bench PATH [--epochs E] [--json] [--quiet] [loader parameters]\n"
    "       shardpack bench PATH:WEIGHT PATH:WEIGHT... [options]   (a weighted mixture)",
    "Measures the loader on a dataset: samples/s and bytes/s against the single-thread limit.",
    "First the limit: on one thread, for blocks spread over the dataset (at least 1 s of work, or\n"
    "every block, after a warm-up pass over the same blocks), the work of a loader worker, by the\n"
    "loader's own worker code: read, verify, decompress and write every row into the loader's\n"
    "batch ring (decoding and transforming image fields as the workers do), the rows spread over\n"
    "the ring as a shuffled window spreads them. Its rate times --threads is the limit. Then the\n"
    "dataset is streamed through the loader for --epochs epochs (default: whole epochs until 2 s\n"
    "have passed), each batch touched and released at once.\n"
    "Reported: samples/s, bytes/s of batch tensors, the ratio to the limit, peak RSS against\n"
    "--host-memory, time stalled in next(), and the read path in use.\n"
    "Exit status: 0 ok, 1 data error, 2 usage.\n",
    bench_opts,
    SP_SCOPE_LOAD,
};

/* "PATH:WEIGHT" (a mixture's source): path (allocated) and weight; 0 when arg has no weight. */
static int split_weight(const char *arg, char **path, double *w)
{
    const char *colon = strrchr(arg, ':');
    char *end;
    if (!colon || !colon[1])
        return 0;
    double v = strtod(colon + 1, &end);
    if (*end || !(v > 0) || v > 1e300)
        return 0;
    *path = strndup(arg, (size_t)(colon - arg));
    *w = v;
    return *path != NULL;
}

/* Whether arg was meant as PATH:WEIGHT: text after its last ':' holding no '/' (the colons of a
 * URL, "http://host:8080/ds" or "s3://b/ds", are followed by one), whatever that text is. */
static bool weight_meant(const char *arg)
{
    const char *colon = strrchr(arg, ':');
    return colon && colon[1] && !strchr(colon + 1, '/');
}

/* A mixture's name in messages and the report: its arguments as typed, " + " between them (any
 * user:password@ left out), cut to fit buf. */
static const char *mixture_name(const char *const *args, size_t n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        char shown[4096];
        int k = snprintf(buf + used, len - used, "%s%s", i ? " + " : "", cli_shown(args[i], shown, sizeof shown));
        used += k > 0 ? (size_t)k : 0;
    }
    return buf;
}

int cli_bench_main(int argc, char **argv)
{
    const char *path = NULL;
    const char *mix_args[SP_MIX_MAX];
    size_t nmix = 0;
    int json = 0, quiet = 0, rc = CLI_OK;
    double step_ms = 0;
    sp_loader *l = NULL;
    double cpu0 = 0; /* cpu_seconds() just before the loader opens */
    char *mix_first = NULL;
    sp_params *params = sp_params_create();
    if (!params) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    sp_params_set(params, SP_PARAM_EPOCHS, EPOCHS_UNSET);
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_bench, argc, argv, params);
    for (int id; (id = cli_next(&g)) != CLI_ARG_END;) {
        if (id == CLI_ARG_ERR) {
            rc = CLI_EUSAGE;
            goto out;
        } else if (id == CLI_ARG_HELP) {
            cli_print_help(stdout, &cli_cmd_bench);
            goto out;
        } else if (id == CLI_ARG_POS) {
            if (nmix == SP_MIX_MAX) {
                rc = cli_usage_err(&cli_cmd_bench, "a mixture has at most %d sources", SP_MIX_MAX);
                goto out;
            }
            mix_args[nmix++] = g.value;
            if (path) {
                char *p0 = NULL, *p1 = NULL;
                double w;
                int both = split_weight(mix_args[0], &p0, &w) && split_weight(g.value, &p1, &w);
                free(p0);
                free(p1);
                if (!both) {
                    const char *bad = weight_meant(mix_args[0]) ? mix_args[0] : weight_meant(g.value) ? g.value : NULL;
                    if (bad)
                        rc = cli_usage_err(&cli_cmd_bench, "'%s': the weight '%s' is not a positive number "
                                           "(a mixture names each source PATH:WEIGHT)", bad, strrchr(bad, ':') + 1);
                    else
                        rc = cli_usage_err(&cli_cmd_bench, "one PATH only (got '%s' and '%s'); a mixture names "
                                           "each source with its weight, PATH:WEIGHT", path, g.value);
                    goto out;
                }
            }
            path = mix_args[0];
        } else if (id == OPT_JSON) {
            json = 1;
        } else if (id == OPT_QUIET) {
            quiet = 1;
        } else if (id == OPT_STEP_MS) {
            char *end;
            step_ms = strtod(g.value, &end);
            if (end == g.value || *end || !(step_ms >= 0 && step_ms <= 600000)) {
                rc = cli_usage_err(&cli_cmd_bench, "--step-ms '%s': a number of milliseconds, 0 to 600000", g.value);
                goto out;
            }
        }
    }
    if (!path) {
        rc = cli_usage_err(&cli_cmd_bench, "no dataset PATH given");
        goto out;
    }
    int64_t epochs = sp_params_get(params, SP_PARAM_EPOCHS);
    int epochs_given = epochs != EPOCHS_UNSET;
    if (epochs == 0) {
        rc = cli_usage_err(&cli_cmd_bench, "--epochs 0 (endless) cannot be timed; give a count "
                                           "or leave it out");
        goto out;
    }
    /* Unset: endless for the library, and whole epochs are counted here until 2 s have passed. */
    sp_params_set(params, SP_PARAM_EPOCHS, epochs_given ? epochs : 0);

    /* The loader is opened first so that a bad budget or rank is refused before a second is
     * spent on the limit; it reads nothing until the first next(). */
    cli_oom_context("benchmarking %s", path);
    char *mix_paths[SP_MIX_MAX] = { NULL };
    double mix_w[SP_MIX_MAX];
    const char *scheme = remote_scheme(path); /* of the first source read over the network */
    int r;
    if (nmix > 1 || split_weight(path, &mix_paths[0], &mix_w[0])) {
        free(mix_paths[0]);
        for (size_t i = 0; i < nmix; i++)
            if (!split_weight(mix_args[i], &mix_paths[i], &mix_w[i])) {
                rc = cli_usage_err(&cli_cmd_bench, "'%s' is not PATH:WEIGHT (a positive number)", mix_args[i]);
                for (size_t k = 0; k < i; k++)
                    free(mix_paths[k]);
                goto out;
            }
        cpu0 = cpu_seconds();
        r = sp_loader_open_mix((const char *const *)mix_paths, mix_w, nmix, params, &l);
        scheme = NULL;
        for (size_t i = 0; i < nmix && !scheme; i++)
            scheme = remote_scheme(mix_paths[i]);
        path = mix_args[0];
        if (r == 0) /* the limit is measured on the first source */
            mix_first = mix_paths[0], mix_paths[0] = NULL;
        for (size_t i = 0; i < nmix; i++)
            free(mix_paths[i]);
    } else {
        cpu0 = cpu_seconds();
        r = sp_loader_open(path, params, &l);
    }
    const char *arg = mix_first ? mix_first : path; /* as typed, opened again for the limit */
    char shown[8192], shown_arg[4096];
    /* what is printed: a mixture's every source (an error names the failing one itself) */
    path = nmix > 1 ? mixture_name(mix_args, nmix, shown, sizeof shown) : cli_shown(path, shown, sizeof shown);
    if (r != 0) {
        rc = cli_lib_err(path, r, sp_last_error());
        goto out;
    }
    if (sp_loader_batches_per_epoch(l) == 0) {
        rc = cli_lib_err(path, SP_EINVAL,
                         *sp_loader_errmsg(l) ? sp_loader_errmsg(l)
                                              : "no batch to deliver (fewer samples than one "
                                                "batch per rank, with --drop-last?)");
        goto out;
    }

    bench_limit lim;
    sp_loader_stats pools = { .struct_size = sizeof pools };
    sp_loader_stats_get(l, &pools);
    if ((rc = measure_limit_apart(arg, cli_shown(arg, shown_arg, sizeof shown_arg), params, pools.device, pools.threads, &lim)) != CLI_OK)
        goto out;
    uint64_t rss_before = peak_rss_bytes();

    bench_run run;
    memset(&run, 0, sizeof run);
    cli_mix_init(&run.mix, (uint32_t)sp_params_get(params, SP_PARAM_BATCH_SIZE),
                 sp_loader_samples_per_epoch(l) * (uint64_t)pools.world_size, (uint32_t)pools.world_size,
                 (uint32_t)pools.rank);
    sp_loader_stats st = { .struct_size = sizeof st };
    rc = stream(path, l, epochs_given ? (uint64_t)epochs : 0, quiet || json, step_ms / 1000.0, &run, &st);
    if (rc != CLI_OK)
        goto out;
    double cpu = cpu_seconds() - cpu0;

    bench_report rep = {path,
                        &lim,
                        &run,
                        &st,
                        (uint64_t)sp_params_get(params, SP_PARAM_BATCH_SIZE),
                        peak_rss_bytes(),
                        rss_before,
                        cpu,
                        epochs_given,
                        (uint64_t)sp_params_get(params, SP_PARAM_SHUFFLE_WINDOW),
                        mix_first ? 0 : lim.nblocks,
                        scheme};
    if (json)
        print_json(&rep);
    else
        print_summary(&rep);
    cli_mix_free(&run.mix);
out:
    if (l && (r = sp_loader_close(l)) != 0 && rc == CLI_OK)
        rc = cli_lib_err(path, r, sp_last_error());
    sp_params_destroy(params);
    free(mix_first);
    return rc;
}
