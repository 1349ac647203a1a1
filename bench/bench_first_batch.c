/* bench_first_batch.c - time to first batch on a dataset of many shards (default 10,000).
 *
 * Writes a dataset of label samples with one small block per shard (once; reused when present),
 * then, on a warm page cache, times sp_loader_open + the first sp_loader_next, and the same for
 * sp_dataset_open alone. Prints the times and their ratio to the 1 s target. DIR may be a URL
 * (http(s)://, s3://) of such a dataset, made here before and uploaded (bench/remote_bench.py).
 * HOST_MEMORY (e.g. 64M) is the loaders' budget (default: the library's); the process's peak RSS is
 * printed with it.
 * usage: bench_first_batch [DIR|URL] [SHARDS] [HOST_MEMORY] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "shardpack.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int build(const char *dir, long shards)
{
    sp_schema *s = sp_schema_create();
    sp_params *p = sp_params_create();
    sp_writer *w = NULL;
    int rc = s && p ? sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) : SP_ENOMEM;
    if (!rc)
        rc = sp_params_set_str(p, "block_size", "4K");
    if (!rc)
        rc = sp_params_set_str(p, "shard_size", "8K"); /* header page + one block + index: one block each */
    if (!rc)
        rc = sp_writer_open(dir, s, p, &w);
    const long per_block = 4096 / 8; /* a 4 KiB block holds exactly 512 int64 labels */
    for (long i = 0; !rc && i < shards * per_block; i++) {
        int64_t v = i;
        sp_value val = { &v, sizeof v };
        rc = sp_writer_add(w, &val, 1);
    }
    if (!rc)
        rc = sp_writer_finish(w);
    if (rc)
        fprintf(stderr, "bench_first_batch: %s\n", sp_last_error());
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    return rc;
}

static const char *g_host_memory;
static uint64_t g_budget;

static double first_batch(const char *dir, double *open_s)
{
    sp_params *p = sp_params_create();
    sp_params_set_str(p, "batch_size", "256");
    sp_params_set_str(p, "threads", "2");
    if (g_host_memory && sp_params_set_str(p, "host_memory", g_host_memory) != 0) {
        fprintf(stderr, "bench_first_batch: %s\n", sp_last_error());
        exit(1);
    }
    double t0 = now();
    sp_loader *l;
    if (sp_loader_open(dir, p, &l) != 0) {
        fprintf(stderr, "bench_first_batch: %s\n", sp_last_error());
        exit(1);
    }
    *open_s = now() - t0;
    sp_batch *b;
    if (sp_loader_next(l, &b, -1) != 0) {
        fprintf(stderr, "bench_first_batch: %s\n", sp_last_error());
        exit(1);
    }
    double t = now() - t0;
    sp_loader_stats st = { sizeof st };
    if (sp_loader_stats_get(l, &st) == 0)
        g_budget = st.host_memory_bytes;
    sp_loader_release(l, b);
    sp_loader_close(l);
    sp_params_destroy(p);
    return t;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/shardpack-10k";
    long shards = argc > 2 ? atol(argv[2]) : 10000;
    g_host_memory = argc > 3 ? argv[3] : NULL;
    struct stat st;
    char manifest[4096];
    snprintf(manifest, sizeof manifest, "%s/manifest.spm", dir);
    if (!strstr(dir, "://") && stat(dir, &st) != 0) { /* DIR may also name a manifest file */
        double t0 = now();
        if (build(dir, shards))
            return 1;
        printf("built %ld shards in %.1f s\n", shards, now() - t0);
    }
    sp_dataset *d;
    double t0 = now();
    if (sp_dataset_open(dir, NULL, &d) != 0) {
        fprintf(stderr, "bench_first_batch: %s\n", sp_last_error());
        return 1;
    }
    double ds_open = now() - t0;
    printf("shards %llu, blocks %llu, samples %llu\n", (unsigned long long)sp_dataset_num_shards(d),
           (unsigned long long)sp_dataset_num_blocks(d), (unsigned long long)sp_dataset_num_samples(d));
    sp_dataset_close(d);
    double open_s, t = 0;
    first_batch(dir, &open_s); /* warm the page cache */
    double best = 1e9, best_open = 0;
    for (int i = 0; i < 5; i++) {
        t = first_batch(dir, &open_s);
        if (t < best)
            best = t, best_open = open_s;
    }
    printf("dataset_open_s %.4f\n", ds_open);
    printf("loader_open_s %.4f\n", best_open);
    printf("first_batch_s %.4f\n", best);
    printf("first_batch_vs_1s_target %.3f\n", best / 1.0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("host_memory_bytes %llu\n", (unsigned long long)g_budget);
    printf("peak_rss_bytes %llu\n", (unsigned long long)ru.ru_maxrss * 1024);
    return 0;
}
