/* bench_copy.c - the device stage's host-to-device copy rate against plain cudaMemcpyAsync from
 * pinned memory, measured in one run on the same bytes per batch; prints copy_ratio (loader/plain,
 * target >= 0.90), both rates and the end-to-end batches per second. Exit 77 without a GPU. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bn_util.h"

#define PROG "bench_copy"

typedef struct opts {
    const char *dataset; /* NULL: make one */
    uint64_t batches, warmup, batch_size, threads, samples;
    int device;
} opts;

static void usage(void)
{
    fprintf(stderr,
            "usage: " PROG " [--dataset DIR] [--batches N] [--batch-size B] [--threads T] [--device N]\n"
            "  Without --dataset, writes a scratch dataset of one float32 [1024] tensor field (4 KiB a\n"
            "  sample, stored raw) and reads it with batch_size 4096 (16 MiB a batch) over endless epochs.\n");
    exit(2);
}

static opts parse(int argc, char **argv)
{
    opts o = { NULL, 300, 20, 4096, 0, 0, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dataset") && v)
            o.dataset = v;
        else if (!strcmp(a, "--batches"))
            o.batches = bn_arg_u64(PROG, a, v, 1);
        else if (!strcmp(a, "--batch-size"))
            o.batch_size = bn_arg_u64(PROG, a, v, 1);
        else if (!strcmp(a, "--threads"))
            o.threads = bn_arg_u64(PROG, a, v, 0);
        else if (!strcmp(a, "--device"))
            o.device = (int)bn_arg_u64(PROG, a, v, 0);
        else
            usage();
        i++;
    }
    return o;
}

static void cu_check(cudaError_t e, const char *what)
{
    bn_cuda_check(PROG, (int)e, what);
}

/* Takes one batch, makes stream wait for it and releases it behind that wait: the consumer does
 * nothing else, so the copies alone set the pace. */
static void take(sp_loader *l, cudaStream_t stream)
{
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 60000);
        if (rc == SP_EEPOCH)
            continue;
        if (rc == 0 && (rc = sp_batch_wait(b, stream)) == 0 && (rc = sp_loader_release_on(l, b, stream)) == 0)
            return;
        fprintf(stderr, PROG ": %s: %s\n", sp_error_name(rc), sp_loader_errmsg(l));
        exit(1);
    }
}

typedef struct result {
    double gbps;          /* bytes_copied / copy_s over the measured batches */
    double batches_per_s; /* wall clock, consumer side */
    uint64_t batch_bytes; /* bytes copied per batch */
} result;

static result run_loader(const opts *o, const char *path)
{
    char bs[32], th[32], dev[32];
    snprintf(bs, sizeof bs, "%llu", (unsigned long long)o->batch_size);
    snprintf(th, sizeof th, "%llu", (unsigned long long)o->threads);
    snprintf(dev, sizeof dev, "cuda:%d", o->device);
    const char *const kv[] = { "device", dev, "batch_size", bs, "threads", th, "epochs", "0", "host_memory", "1G",
                               "seed", "1", NULL };
    sp_loader *l = bn_open(PROG, path, kv);
    cudaStream_t s;
    cu_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    for (uint64_t k = 0; k < o->warmup; k++)
        take(l, s);
    cu_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    /* Differences between two snapshots taken in the same steady state: copies still in flight at
     * either end then count alike, whether the loader adds bytes at issue or at completion. */
    sp_loader_stats a = { .struct_size = sizeof a }, z = { .struct_size = sizeof z };
    sp_loader_stats_get(l, &a);
    double t0 = bn_now();
    for (uint64_t k = 0; k < o->batches; k++)
        take(l, s);
    cu_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    double wall = bn_now() - t0;
    sp_loader_stats_get(l, &z);
    result r = { 0, o->batches / wall, 0 };
    uint64_t bytes = z.bytes_copied - a.bytes_copied, copies = z.device_batches - a.device_batches;
    double secs = z.copy_s - a.copy_s;
    if (copies == 0 || secs <= 0) {
        fprintf(stderr, PROG ": the loader reported no copies (device_batches +%llu, copy_s +%g)\n",
                (unsigned long long)copies, secs);
        exit(1);
    }
    r.gbps = bytes / secs / 1e9;
    r.batch_bytes = bytes / copies;
    printf("loader: %llu batches of %.2f MiB, H2D %.2f GB/s (bytes_copied / copy_s), end to end %.1f batches/s "
           "(%.2f GB/s)\n",
           (unsigned long long)o->batches, r.batch_bytes / 1048576.0, r.gbps, r.batches_per_s,
           r.batches_per_s * r.batch_bytes / 1e9);
    printf("loader: threads %d, host_pinned %d, device ring %llu slots (%.1f MiB), device_empty_s %.3f, stall_s %.3f\n",
           z.threads, z.host_pinned, (unsigned long long)z.device_ring_slots, z.device_ring_bytes / 1048576.0,
           z.device_empty_s - a.device_empty_s, z.stall_s - a.stall_s);
    cu_check(cudaStreamDestroy(s), "cudaStreamDestroy");
    if (sp_loader_close(l)) {
        fprintf(stderr, PROG ": close: %s\n", sp_loader_errmsg(l));
        exit(1);
    }
    return r;
}

/* The same bytes per batch, the same number of copies, from cudaHostAlloc'd memory: GPU time of
 * each copy from its own pair of events (what copy_s sums), and back to back as a check. */
static double run_plain(uint64_t bytes, uint64_t copies)
{
    void *h, *d;
    cudaStream_t s;
    cudaEvent_t e0, e1, all0, all1;
    cu_check(cudaHostAlloc(&h, bytes, cudaHostAllocDefault), "cudaHostAlloc");
    memset(h, 1, bytes);
    cu_check(cudaMalloc(&d, bytes), "cudaMalloc");
    cu_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    cu_check(cudaEventCreate(&e0), "cudaEventCreate");
    cu_check(cudaEventCreate(&e1), "cudaEventCreate");
    cu_check(cudaEventCreate(&all0), "cudaEventCreate");
    cu_check(cudaEventCreate(&all1), "cudaEventCreate");
    for (int k = 0; k < 3; k++) /* warm-up */
        cu_check(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    double sum = 0;
    for (uint64_t k = 0; k < copies; k++) {
        cudaEventRecord(e0, s);
        cu_check(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
        cudaEventRecord(e1, s);
        cu_check(cudaEventSynchronize(e1), "cudaEventSynchronize");
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        sum += ms * 1e-3;
    }
    cudaEventRecord(all0, s);
    for (uint64_t k = 0; k < copies; k++)
        cu_check(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    cudaEventRecord(all1, s);
    cu_check(cudaEventSynchronize(all1), "cudaEventSynchronize");
    float all_ms;
    cudaEventElapsedTime(&all_ms, all0, all1);
    double gbps = (double)bytes * copies / sum / 1e9;
    printf("plain:  %llu copies of %.2f MiB pinned -> device, %.2f GB/s per copy (events), %.2f GB/s back to back\n",
           (unsigned long long)copies, bytes / 1048576.0, gbps, (double)bytes * copies / (all_ms * 1e-3) / 1e9);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaEventDestroy(all0);
    cudaEventDestroy(all1);
    cudaStreamDestroy(s);
    cudaFree(d);
    cudaFreeHost(h);
    return gbps;
}

int main(int argc, char **argv)
{
    opts o = parse(argc, argv);
    bn_need_gpu(PROG, o.device);
    cu_check(cudaSetDevice(o.device), "cudaSetDevice");
    bn_ds ds = { NULL, (char *)o.dataset };
    if (!o.dataset) {
        o.samples = 16 * o.batch_size; /* 16 batches an epoch: epochs turn over, page cache holds it */
        printf(PROG ": writing a %.0f MiB scratch dataset\n", o.samples * 4096 / 1048576.0);
        if (bn_make(&ds, "copy", o.samples, 1024))
            return 1;
    }
    printf(PROG ": %s, batch_size %llu, %llu batches after %llu warm-up, cuda:%d\n", ds.dir,
           (unsigned long long)o.batch_size, (unsigned long long)o.batches, (unsigned long long)o.warmup, o.device);
    result r = run_loader(&o, ds.dir);
    double plain = run_plain(r.batch_bytes, o.batches);
    double ratio = r.gbps / plain;
    printf("loader_h2d_gbps %.3f\nplain_h2d_gbps %.3f\nbatches_per_s %.2f\n", r.gbps, plain, r.batches_per_s);
    printf("copy_ratio %.3f (loader %.2f GB/s / plain %.2f GB/s; target >= 0.90: %s)\n", ratio, r.gbps, plain,
           ratio >= 0.90 ? "met" : "NOT met");
    if (!o.dataset)
        bn_free(&ds);
    return 0;
}
