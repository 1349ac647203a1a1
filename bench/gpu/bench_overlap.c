/* bench_overlap.c - whether the loader's device stage hides behind training: the mean time of a
 * fixed-length synthetic step (bn_kernels.cu) fed by the loader, against the same step on one
 * batch resident in device memory; prints overlap_ratio (fed/resident, target <= 1.03). Exit 77
 * without a GPU. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bn_kernels.h"
#include "bn_util.h"

#define PROG "bench_overlap"

typedef struct opts {
    const char *dataset; /* NULL: make one */
    uint64_t steps, warmup, step_us, batch_size, threads;
    int device;
} opts;

static void usage(void)
{
    fprintf(stderr,
            "usage: " PROG " [--dataset DIR] [--steps N] [--step-us U] [--batch-size B] [--threads T] [--device N]\n"
            "  Without --dataset, writes a scratch dataset of one float32 [1024] tensor field (4 KiB a\n"
            "  sample, stored raw) and reads it with batch_size 1024 (4 MiB a batch); the step lasts 2000 us.\n");
    exit(2);
}

static opts parse(int argc, char **argv)
{
    opts o = { NULL, 500, 30, 2000, 1024, 0, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dataset") && v)
            o.dataset = v;
        else if (!strcmp(a, "--steps"))
            o.steps = bn_arg_u64(PROG, a, v, 1);
        else if (!strcmp(a, "--step-us"))
            o.step_us = bn_arg_u64(PROG, a, v, 1);
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

typedef struct gpu {
    cudaStream_t stream; /* the trainer's */
    uint32_t *sink;
    int blocks;          /* one per SM */
    uint32_t step_us;
} gpu;

static void step(const gpu *g, const void *data, size_t bytes)
{
    cu_check((cudaError_t)bn_launch_step(data, bytes, g->step_us, g->sink, g->blocks, g->stream), "step launch");
}

static size_t tensor_bytes(const DLTensor *t)
{
    size_t n = t->dtype.bits / 8;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

/* The largest field: the one a trainer would spend its step on. */
static const DLTensor *largest(const sp_batch *b)
{
    const DLTensor *best = NULL;
    size_t best_bytes = 0;
    for (size_t i = 0; i < sp_batch_num_fields(b); i++) {
        const DLTensor *t = sp_batch_tensor(b, i);
        if (tensor_bytes(t) > best_bytes)
            best = t, best_bytes = tensor_bytes(t);
    }
    return best;
}

/* One training step fed by the loader: wait for the batch on the trainer's stream, run the step on
 * it, release it behind the step. The host never waits for the GPU. Returns the step's bytes. */
static size_t fed_step(sp_loader *l, const gpu *g)
{
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 60000);
        if (rc == SP_EEPOCH)
            continue;
        if (rc == 0 && (rc = sp_batch_wait(b, g->stream)) == 0) {
            const DLTensor *t = largest(b);
            step(g, t->data, tensor_bytes(t));
            if ((rc = sp_loader_release_on(l, b, g->stream)) == 0)
                return tensor_bytes(t);
        }
        fprintf(stderr, PROG ": %s: %s\n", sp_error_name(rc), sp_loader_errmsg(l));
        exit(1);
    }
}

/* Run A: mean step time fed by the loader, after warm-up; *bytes gets the bytes a step reads. */
static double run_fed(const opts *o, const char *path, const gpu *g, size_t *bytes)
{
    char bs[32], th[32], dev[32];
    snprintf(bs, sizeof bs, "%llu", (unsigned long long)o->batch_size);
    snprintf(th, sizeof th, "%llu", (unsigned long long)o->threads);
    snprintf(dev, sizeof dev, "cuda:%d", o->device);
    const char *const kv[] = { "device", dev, "batch_size", bs, "threads", th, "epochs", "0", "host_memory", "1G",
                               "seed", "1", NULL };
    sp_loader *l = bn_open(PROG, path, kv);
    for (uint64_t k = 0; k < o->warmup; k++)
        *bytes = fed_step(l, g);
    cu_check(cudaStreamSynchronize(g->stream), "cudaStreamSynchronize");
    sp_loader_stats a = { .struct_size = sizeof a }, z = { .struct_size = sizeof z };
    sp_loader_stats_get(l, &a);
    double t0 = bn_now();
    for (uint64_t k = 0; k < o->steps; k++)
        fed_step(l, g);
    cu_check(cudaStreamSynchronize(g->stream), "cudaStreamSynchronize");
    double mean = (bn_now() - t0) / o->steps;
    sp_loader_stats_get(l, &z);
    printf("fed:      %llu steps, %.4f ms a step; in next(): %.3f s with no batch on the device, %.3f s waiting "
           "in all; device ring %llu slots\n",
           (unsigned long long)o->steps, mean * 1e3, z.device_empty_s - a.device_empty_s, z.stall_s - a.stall_s,
           (unsigned long long)z.device_ring_slots);
    if (sp_loader_close(l)) {
        fprintf(stderr, PROG ": close: %s\n", sp_loader_errmsg(l));
        exit(1);
    }
    return mean;
}

/* Run B: the same step on one batch that stays in device memory. */
static double run_resident(const opts *o, const gpu *g, size_t bytes)
{
    void *d;
    cu_check(cudaMalloc(&d, bytes), "cudaMalloc");
    cu_check(cudaMemset(d, 1, bytes), "cudaMemset");
    for (uint64_t k = 0; k < o->warmup; k++)
        step(g, d, bytes);
    cu_check(cudaStreamSynchronize(g->stream), "cudaStreamSynchronize");
    double t0 = bn_now();
    for (uint64_t k = 0; k < o->steps; k++)
        step(g, d, bytes);
    cu_check(cudaStreamSynchronize(g->stream), "cudaStreamSynchronize");
    double mean = (bn_now() - t0) / o->steps;
    printf("resident: %llu steps, %.4f ms a step\n", (unsigned long long)o->steps, mean * 1e3);
    cu_check(cudaFree(d), "cudaFree");
    return mean;
}

int main(int argc, char **argv)
{
    opts o = parse(argc, argv);
    bn_need_gpu(PROG, o.device);
    cu_check(cudaSetDevice(o.device), "cudaSetDevice");
    gpu g = { NULL, NULL, 0, (uint32_t)o.step_us };
    cu_check(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    cu_check(cudaMalloc((void **)&g.sink, sizeof *g.sink), "cudaMalloc");
    cu_check(cudaDeviceGetAttribute(&g.blocks, cudaDevAttrMultiProcessorCount, o.device), "cudaDeviceGetAttribute");
    bn_ds ds = { NULL, (char *)o.dataset };
    if (!o.dataset) {
        uint64_t samples = 32 * o.batch_size; /* 32 batches an epoch */
        printf(PROG ": writing a %.0f MiB scratch dataset\n", samples * 4096 / 1048576.0);
        if (bn_make(&ds, "overlap", samples, 1024))
            return 1;
    }
    printf(PROG ": %s, batch_size %llu, step %llu us on %d blocks, %llu steps after %llu warm-up, cuda:%d\n", ds.dir,
           (unsigned long long)o.batch_size, (unsigned long long)o.step_us, g.blocks, (unsigned long long)o.steps,
           (unsigned long long)o.warmup, o.device);
    size_t bytes = 0;
    double fed = run_fed(&o, ds.dir, &g, &bytes);
    double resident = run_resident(&o, &g, bytes);
    double ratio = fed / resident;
    printf("step_fed_ms %.4f\nstep_resident_ms %.4f\n", fed * 1e3, resident * 1e3);
    printf("overlap_ratio %.3f (fed %.3f ms / resident %.3f ms a step, %.2f MiB a batch; target <= 1.03: %s)\n", ratio,
           fed * 1e3, resident * 1e3, bytes / 1048576.0, ratio <= 1.03 ? "met" : "NOT met");
    cudaFree(g.sink);
    cudaStreamDestroy(g.stream);
    if (!o.dataset)
        bn_free(&ds);
    return 0;
}
