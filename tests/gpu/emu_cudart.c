/* emu_cudart.c - the CPU CUDA runtime of emu_cudart.h. Ordering rules kept from CUDA: work on a
 * stream runs in order; cudaEventRecord captures the work queued before it; cudaStreamWaitEvent
 * and cudaEventSynchronize wait for the latest record made before the call (none: no wait); the
 * handles NULL, cudaStreamLegacy and cudaStreamPerThread name the default stream of the calling
 * thread's current device; streams and events belong to the device current when they were made,
 * and recording an event on another device's stream fails. */
#include "emu_cudart.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cu_kern.h"

enum { OP_COPY, OP_HOST, OP_RECORD, OP_WAIT };

#define EMU_MAX_DEVICES 4

struct CUevent_st {
    int dev;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t recorded, completed; /* generations */
    double t;                     /* when the latest completed record ran */
};

typedef struct emu_op {
    int kind;
    void *dst;
    const void *src;
    size_t n;
    void (*fn)(void *);
    void *arg;
    struct CUevent_st *ev;
    uint64_t gen;
    struct emu_op *next;
} emu_op;

struct CUstream_st {
    int dev;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    emu_op *head, *tail;
    uint64_t queued, done;
    bool stop;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct CUstream_st *g_default[EMU_MAX_DEVICES];
static atomic_int g_devices = 1, g_fail_sync, g_streams, g_events, g_registered;
static atomic_uint g_copy_delay_us;
static atomic_ullong g_device_bytes;
static _Thread_local cudaError_t t_last;
static _Thread_local int t_device;

void emu_set_devices(int n) { g_devices = n < EMU_MAX_DEVICES ? n : EMU_MAX_DEVICES; }
void emu_set_copy_delay_us(uint32_t us) { g_copy_delay_us = us; }
void emu_fail_event_sync(int n) { g_fail_sync = n; }
int emu_live_streams(void) { return g_streams; }
int emu_live_events(void) { return g_events; }
uint64_t emu_device_bytes(void) { return g_device_bytes; }
int emu_registered(void) { return g_registered; }

static cudaError_t fail(cudaError_t e)
{
    t_last = e;
    return e;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- streams */

static void complete(struct CUevent_st *ev, uint64_t gen)
{
    pthread_mutex_lock(&ev->mu);
    if (gen > ev->completed) {
        ev->completed = gen;
        ev->t = now();
    }
    pthread_cond_broadcast(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

static void wait_gen(struct CUevent_st *ev, uint64_t gen)
{
    pthread_mutex_lock(&ev->mu);
    while (ev->completed < gen)
        pthread_cond_wait(&ev->cv, &ev->mu);
    pthread_mutex_unlock(&ev->mu);
}

static void run_op(emu_op *op)
{
    switch (op->kind) {
    case OP_COPY:
        if (g_copy_delay_us)
            usleep(g_copy_delay_us);
        memcpy(op->dst, op->src, op->n);
        break;
    case OP_HOST:
        op->fn(op->arg);
        break;
    case OP_RECORD:
        complete(op->ev, op->gen);
        break;
    case OP_WAIT:
        wait_gen(op->ev, op->gen);
        break;
    }
}

static void *stream_main(void *arg)
{
    struct CUstream_st *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head)
            break;
        emu_op *op = s->head;
        s->head = op->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        run_op(op);
        free(op);
        pthread_mutex_lock(&s->mu);
        s->done++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static struct CUstream_st *stream_new(void)
{
    struct CUstream_st *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->dev = t_device;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, stream_main, s)) {
        free(s);
        return NULL;
    }
    g_streams++;
    return s;
}

/* The stream a handle names: the default one for NULL, cudaStreamLegacy and cudaStreamPerThread. */
static struct CUstream_st *resolve(cudaStream_t h)
{
    if ((uintptr_t)h > 2)
        return h;
    pthread_mutex_lock(&g_mu);
    if (!g_default[t_device]) {
        g_default[t_device] = stream_new();
        g_streams--; /* lives as long as the process, like the real one */
    }
    struct CUstream_st *s = g_default[t_device];
    pthread_mutex_unlock(&g_mu);
    return s;
}

static cudaError_t enqueue(cudaStream_t h, emu_op tmpl)
{
    struct CUstream_st *s = resolve(h);
    emu_op *op = malloc(sizeof *op);
    if (!s || !op) {
        free(op);
        return fail(cudaErrorMemoryAllocation);
    }
    *op = tmpl;
    op->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->queued++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return cudaSuccess;
}

static void drain(struct CUstream_st *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t want = s->queued;
    while (s->done < want)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

cudaError_t emu_launch_host(cudaStream_t stream, void (*fn)(void *arg), void *arg)
{
    return enqueue(stream, (emu_op){ .kind = OP_HOST, .fn = fn, .arg = arg });
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *out, unsigned int flags)
{
    (void)flags;
    *out = stream_new();
    return *out ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaStreamDestroy(cudaStream_t h)
{
    struct CUstream_st *s = h;
    if ((uintptr_t)h <= 2)
        return fail(cudaErrorInvalidResourceHandle);
    pthread_mutex_lock(&s->mu);
    s->stop = true; /* the thread finishes what is queued first */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    g_streams--;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t h)
{
    drain(resolve(h));
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    drain(resolve(NULL)); /* the loader's own streams are synchronized by their owners */
    return cudaSuccess;
}

/* ---------------------------------------------------------------- events */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *out, unsigned int flags)
{
    (void)flags;
    struct CUevent_st *e = calloc(1, sizeof *e);
    if (!e)
        return fail(cudaErrorMemoryAllocation);
    e->dev = t_device;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    g_events++;
    *out = e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *out) { return cudaEventCreateWithFlags(out, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
    g_events--;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream)
{
    struct CUstream_st *s = resolve(stream);
    if (s && s->dev != e->dev)
        return fail(cudaErrorInvalidResourceHandle);
    pthread_mutex_lock(&e->mu);
    uint64_t gen = ++e->recorded;
    pthread_mutex_unlock(&e->mu);
    return enqueue(stream, (emu_op){ .kind = OP_RECORD, .ev = e, .gen = gen });
}

static uint64_t latest(struct CUevent_st *e)
{
    pthread_mutex_lock(&e->mu);
    uint64_t g = e->recorded;
    pthread_mutex_unlock(&e->mu);
    return g;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t e, unsigned int flags)
{
    (void)flags;
    uint64_t g = latest(e);
    return g ? enqueue(stream, (emu_op){ .kind = OP_WAIT, .ev = e, .gen = g }) : cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    wait_gen(e, latest(e));
    int n = g_fail_sync;
    if (n > 0 && (g_fail_sync = n - 1) == 0)
        return fail(cudaErrorLaunchFailure);
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    if (latest(a) == 0 || latest(b) == 0)
        return fail(cudaErrorInvalidResourceHandle);
    pthread_mutex_lock(&a->mu);
    double ta = a->t;
    bool done = a->completed == a->recorded;
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_lock(&b->mu);
    double tb = b->t;
    done = done && b->completed == b->recorded;
    pthread_mutex_unlock(&b->mu);
    if (!done)
        return fail(cudaErrorNotReady);
    *ms = (float)((tb - ta) * 1e3);
    return cudaSuccess;
}

/* ---------------------------------------------------------------- memory */

cudaError_t cudaMalloc(void **p, size_t n)
{
    if (posix_memalign(p, 256, n + 256))
        return fail(cudaErrorMemoryAllocation);
    *(size_t *)*p = n; /* the size, in a header, for the live count */
    *p = (char *)*p + 256;
    g_device_bytes += n;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p)
        return cudaSuccess;
    char *base = (char *)p - 256;
    g_device_bytes -= *(size_t *)base;
    free(base);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    (void)kind;
    drain(resolve(NULL)); /* ordered after the legacy default stream, as the real one is */
    memcpy(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    (void)kind;
    return enqueue(stream, (emu_op){ .kind = OP_COPY, .dst = dst, .src = src, .n = n });
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total)
{
    *total = (size_t)2 << 30;
    *free_b = *total - (size_t)g_device_bytes;
    return cudaSuccess;
}

cudaError_t cudaHostRegister(void *p, size_t n, unsigned int flags)
{
    (void)p, (void)n, (void)flags;
    g_registered++;
    return cudaSuccess;
}

cudaError_t cudaHostUnregister(void *p)
{
    (void)p;
    g_registered--;
    return cudaSuccess;
}

/* ---------------------------------------------------------------- devices and errors */

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 0;
    if (g_devices == 0)
        return fail(cudaErrorNoDevice);
    *n = g_devices;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *d)
{
    *d = t_device;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d)
{
    if (d < 0 || d >= g_devices)
        return fail(cudaErrorInvalidDevice);
    t_device = d;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulated)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    default: return "error (emulated)";
    }
}

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    default: return "cudaErrorUnknown";
    }
}

/* ---------------------------------------------------------------- the conversion "kernel" */

typedef struct emu_conv {
    const uint8_t *src;
    void *dst;
    const void *lut;
    int elem;
    uint64_t n;
    uint32_t size;
    int nchw;
} emu_conv;

/* The kernel's mapping, on the CPU: pixel p, channel c of image i goes to
 * (i*3 + c)*plane + q (NCHW) or 3*p + c (NHWC), as lut[c*256 + v]. */
static void convert(void *arg)
{
    emu_conv *k = arg;
    uint64_t plane = (uint64_t)k->size * k->size;
    for (uint64_t p = 0; p < k->n * plane; p++)
        for (int c = 0; c < 3; c++) {
            uint64_t o = k->nchw ? (p / plane * 3 + (uint64_t)c) * plane + p % plane : 3 * p + (uint64_t)c;
            const uint8_t *from = (const uint8_t *)k->lut + ((size_t)c * 256 + k->src[3 * p + (uint64_t)c]) * (size_t)k->elem;
            memcpy((uint8_t *)k->dst + o * (uint64_t)k->elem, from, (size_t)k->elem);
        }
    free(k);
}

int cu_launch_convert(const uint8_t *src, void *dst, const void *lut, int elem_bytes, uint64_t n, uint32_t size,
                      int nchw, void *stream)
{
    emu_conv *k = malloc(sizeof *k);
    if (!k)
        return (int)cudaErrorMemoryAllocation;
    *k = (emu_conv){ src, dst, lut, elem_bytes, n, size, nchw };
    return (int)emu_launch_host((cudaStream_t)stream, convert, k);
}
