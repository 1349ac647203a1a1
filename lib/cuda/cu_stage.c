/* cu_stage.c - the device stage. One copy thread takes ready batches from the host ring (it is
 * the host stage's consumer), issues each one's host-to-device copy and conversion on the
 * loader's own non-blocking stream into a ring of device slots, records an event, and hands the
 * slot to the caller's next(). The host never waits for the GPU on the caller's behalf: the
 * caller's stream waits for a batch's event, and a released slot is written again only after the
 * copy stream has waited (on the GPU) for the event recorded on the caller's stream at release. */
#include <cuda_runtime_api.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "ld_device.h"
#include "cu_kern.h"
#include "img.h"

#define CU_MAX_SLOTS 4u  /* one leased, one in the caller's stream, two ahead: enough to hide a copy */
#define CU_MIN_SLOTS 2u
#define CU_ALIGN 256u
#define CU_POLL_MS 50    /* how often the copy thread looks up from a wait on the host ring */

enum { CS_FREE, CS_COPYING, CS_READY, CS_LEASED, CS_RELEASING };

typedef struct cu_slot {
    sp_batch b;
    DLTensor t[SP_MAX_FIELDS]; /* b's tensors: a few device slots, so room for any schema */
    int64_t shape[SP_MAX_FIELDS][SP_MAX_DIMS + 1];
    uint8_t *dmem;
    uint64_t *ids;          /* host copy of the batch's sample ids */
    cudaEvent_t start, ready; /* around the copy and conversion, on the copy stream */
    cudaEvent_t released;   /* on the caller's stream at release */
    bool release_pending;   /* released was recorded and the copy stream has not waited on it */
    int state;
} cu_slot;

/* What the caller's next() receives, in order: a batch (code 0) or a code with its message. */
typedef struct cu_entry {
    int code;
    uint32_t slot;
    char msg[SP_ERRMSG_MAX];
} cu_entry;

/* A copy issued whose host batch is held until the GPU has read it. */
typedef struct cu_flight {
    sp_batch *hb;
    uint32_t slot;
    uint64_t epoch, index;
} cu_flight;

struct cu_stage {
    sp_loader *host; /* reached only through ld_host.h */
    ld_host_geom g;  /* host batches' layout, copied at open */
    cu_config cfg;
    int dev;
    sp_errbuf *leb; /* the loader's error buffer: messages for the API's caller */
    sp_errbuf eb;   /* the copy thread's: the host stage's consumer errors land here */
    cudaStream_t stream;
    cu_slot slots[CU_MAX_SLOTS];
    uint32_t nslots;
    uint64_t slot_bytes;
    uint64_t conv_off[SP_MAX_FIELDS]; /* per batch field: offset of its converted tensor, 0: none */
    void *lut;                        /* device copy of the conversion table */
    int lut_elem;
    bool registered;
    uint64_t budget;      /* device_memory, 0: auto */
    uint64_t budget_used; /* the device memory the ring was sized from */

    pthread_mutex_t mu;
    pthread_cond_t c_user, c_copy;
    pthread_t thread;
    bool thread_up, stop, finished;
    bool starved; /* the copy thread waits for a slot and every slot is leased */
    int final_code;
    char final_msg[SP_ERRMSG_MAX];
    bool fault; /* the GPU failed a copy: every later next() returns SP_EDEVICE with fault_msg */
    char fault_msg[SP_ERRMSG_MAX];
    cu_entry *q;
    uint32_t qcap, qhead, qcount;
    uint64_t seq;               /* batches issued since the thread started */
    cu_flight flight[2];
    uint32_t nflight;
    uint64_t pos_epoch, pos_k;  /* the caller's position */

    /* statistics, under mu */
    uint64_t bytes_peak, batches, bytes_copied;
    double copy_s, empty_s;
    char note[SP_ERRMSG_MAX];
};

static int cu_fail(sp_errbuf *eb, cudaError_t e, const char *what)
{
    return sp_fail(eb, SP_EDEVICE, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* Runs fn(c, arg) on a short-lived thread whose current device is the stage's. The caller's own
 * thread is never switched: cudaSetDevice there would change a trainer's device under it, or
 * create a context on a GPU it does not use. A failure's message is the loader's, and the
 * caller's thread's last error too. */
typedef struct cu_call {
    cu_stage *c;
    int (*fn)(cu_stage *c, void *arg);
    void *arg;
    int rc;
} cu_call;

static void *call_main(void *arg)
{
    cu_call *k = arg;
    cudaError_t e = cudaSetDevice(k->c->dev);
    k->rc = e == cudaSuccess ? k->fn(k->c, k->arg) : cu_fail(k->c->leb, e, "selecting the CUDA device");
    return NULL;
}

static int on_device(cu_stage *c, int (*fn)(cu_stage *c, void *arg), void *arg)
{
    cu_call k = { c, fn, arg, SP_OK };
    pthread_t t;
    int e = pthread_create(&t, NULL, call_main, &k);
    if (e)
        return sp_fail(c->leb, SP_ESYS, "cannot start a thread for cuda:%d: %s", c->dev, strerror(e));
    pthread_join(t, NULL);
    if (k.rc != SP_OK) { /* the helper's last error died with it */
        char msg[SP_ERRMSG_MAX];
        memcpy(msg, c->leb->msg, sizeof msg);
        sp_fail(c->leb, k.rc, "%s", msg);
    }
    return k.rc;
}

/* True when a call on stream can run on the calling thread: an explicit stream names its own
 * device, and a default-stream handle (NULL, cudaStreamLegacy, cudaStreamPerThread) names the
 * calling thread's current device's, which must then be the stage's. cudaGetDevice creates no
 * context. */
static bool here(const cu_stage *c, void *stream)
{
    int cur = -1;
    return (uintptr_t)stream > 2 || (cudaGetDevice(&cur) == cudaSuccess && cur == c->dev);
}

/* ---------------------------------------------------------------- device choice */

int sp_cuda_device_count(void)
{
    sp_clear_error();
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cu_fail(NULL, e, "cudaGetDeviceCount");
        cudaGetLastError(); /* not sticky: a later call may find a device */
        return 0;
    }
    return n;
}

int cu_resolve(int64_t param, int *device, char *note, size_t notelen, sp_errbuf *eb)
{
    *device = -1;
    if (param == SP_DEVICE_CPU)
        return SP_OK;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        cudaGetLastError();
    if (param == SP_DEVICE_AUTO) {
        int cur = 0;
        if (e != cudaSuccess || n == 0) {
            snprintf(note, notelen,
                     "device=auto: no usable CUDA device (%s); batches stay in host memory",
                     e != cudaSuccess ? cudaGetErrorString(e) : "the driver lists none");
            return SP_OK;
        }
        if (cudaGetDevice(&cur) != cudaSuccess)
            cur = 0; /* the thread's current device, which torch.cuda.set_device sets */
        *device = cur;
        return SP_OK;
    }
    if (e != cudaSuccess)
        return sp_fail(eb, SP_EDEVICE, "device=cuda:%lld: no usable CUDA device: %s (%s)", (long long)param,
                       cudaGetErrorString(e), cudaGetErrorName(e));
    if (param >= n)
        return sp_fail(eb, SP_EDEVICE, "device=cuda:%lld: this machine has %d CUDA device(s) (cuda:0..cuda:%d)",
                       (long long)param, n, n - 1);
    *device = (int)param;
    return SP_OK;
}

/* ---------------------------------------------------------------- layout of a device slot */

/* The staged copy of the host slot first, then each image field's converted tensor. */
static uint64_t plan_slot(cu_stage *c)
{
    const ld_host_geom *g = &c->g;
    uint64_t off = sp_align_up(g->slot_bytes, CU_ALIGN);
    for (size_t f = 0; f < g->nfields; f++) {
        c->conv_off[f] = 0;
        if (!g->field[f].image || c->cfg.dtype == SP_DEVICE_DTYPE_NONE)
            continue;
        c->conv_off[f] = off;
        off = sp_align_up(off + (uint64_t)g->batch * 3 * g->img->size * g->img->size *
                                    (ld_image_dltype(c->cfg.img_dtype).bits / 8u),
                          CU_ALIGN);
    }
    return off;
}

static void init_batch(cu_stage *c, cu_slot *s, uint32_t i)
{
    const ld_host_geom *g = &c->g;
    s->b.owner = c->host;
    s->b.slot = i;
    s->b.on_device = true;
    s->b.ids = s->ids;
    s->b.nfields = g->nfields;
    s->b.names = g->names;
    s->b.t = s->t;
    bool nchw = c->cfg.layout == SP_DEVICE_LAYOUT_NCHW;
    for (size_t f = 0; f < g->nfields; f++) {
        const ld_host_field *o = &g->field[f];
        memcpy(s->shape[f], o->shape, sizeof o->shape);
        DLDataType dt = o->dt;
        uint64_t off = o->offset;
        if (c->conv_off[f]) {
            int64_t sz = g->img->size;
            s->shape[f][1] = nchw ? 3 : sz;
            s->shape[f][2] = sz;
            s->shape[f][3] = nchw ? sz : 3;
            dt = ld_image_dltype(c->cfg.img_dtype);
            off = c->conv_off[f];
        }
        s->b.t[f] = (DLTensor){ .data = s->dmem + off, .device = { kDLCUDA, c->dev }, .ndim = o->ndim, .dtype = dt,
                                .shape = s->shape[f], .strides = NULL, .byte_offset = 0 };
    }
}

/* ---------------------------------------------------------------- open and close */

static int make_lut(cu_stage *c)
{
    if (c->cfg.dtype == SP_DEVICE_DTYPE_NONE || !c->g.img)
        return SP_OK;
    int dt = c->cfg.img_dtype;
    c->lut_elem = dt == SP_IMAGE_FLOAT32 ? 4 : 2;
    uint32_t host[3 * 256]; /* big enough for either element size */
    img_lut(c->g.img, dt, host);
    cudaError_t e = cudaMalloc(&c->lut, 3 * 256 * (size_t)c->lut_elem);
    if (e == cudaSuccess)
        e = cudaMemcpy(c->lut, host, 3 * 256 * (size_t)c->lut_elem, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? SP_OK : cu_fail(c->leb, e, "the device conversion table");
}

/* How many slots the budget holds, at most CU_MAX_SLOTS. */
static int size_ring(cu_stage *c, uint64_t budget)
{
    uint64_t fixed = c->lut_elem ? 3 * 256 * (uint64_t)c->lut_elem : 0;
    if (budget == 0) {
        size_t free_b = 0, total_b = 0;
        cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
        if (e != cudaSuccess)
            return cu_fail(c->leb, e, "cudaMemGetInfo");
        budget = (uint64_t)free_b / 4;
        if (budget > CU_MAX_SLOTS * c->slot_bytes + fixed)
            budget = CU_MAX_SLOTS * c->slot_bytes + fixed;
    }
    c->budget_used = budget;
    uint64_t n = budget > fixed ? (budget - fixed) / c->slot_bytes : 0;
    if (n < CU_MIN_SLOTS)
        return sp_fail(c->leb, SP_ELIMIT,
                       "%s %llu bytes cannot hold two batches on cuda:%d: need at least %llu bytes "
                       "(2 slots of %llu); %s",
                       c->budget ? "device_memory" : "a quarter of the free device memory,", (unsigned long long)budget,
                       c->dev, (unsigned long long)(CU_MIN_SLOTS * c->slot_bytes + fixed),
                       (unsigned long long)c->slot_bytes,
                       c->budget ? "raise device_memory or lower batch_size" : "free device memory or lower batch_size");
    c->nslots = n > CU_MAX_SLOTS ? CU_MAX_SLOTS : (uint32_t)n;
    return SP_OK;
}

static int make_slots(cu_stage *c)
{
    for (uint32_t i = 0; i < c->nslots; i++) {
        cu_slot *s = &c->slots[i];
        s->ids = sp_calloc(c->g.batch, sizeof *s->ids);
        if (!s->ids)
            return sp_fail(c->leb, SP_ENOMEM, "out of memory for the device ring's sample ids");
        cudaError_t e = cudaMalloc((void **)&s->dmem, c->slot_bytes);
        if (e == cudaSuccess)
            e = cudaEventCreate(&s->start);
        if (e == cudaSuccess) /* the copy thread sleeps on it rather than spin beside the workers */
            e = cudaEventCreateWithFlags(&s->ready, cudaEventBlockingSync);
        if (e == cudaSuccess)
            e = cudaEventCreateWithFlags(&s->released, cudaEventDisableTiming);
        if (e != cudaSuccess)
            return cu_fail(c->leb, e, "allocating the device ring");
        init_batch(c, s, i);
    }
    return SP_OK;
}

/* Page-locks the batch ring so copies run at the link's speed and asynchronously. Registering
 * the ring the host stage already owns keeps one allocation, counted once in host_memory. */
static void pin_ring(cu_stage *c)
{
    cudaError_t e = cudaHostRegister(c->g.ring, c->g.ring_bytes, cudaHostRegisterPortable);
    if (e == cudaSuccess) {
        c->registered = true;
        return;
    }
    cudaGetLastError();
    snprintf(c->note, sizeof c->note, "cudaHostRegister of the batch ring failed (%s): copies are from pageable memory",
             cudaGetErrorString(e));
}

/* Everything on the device, on the stage's device (see on_device). */
static int open_on_device(cu_stage *c, void *unused)
{
    (void)unused;
    cudaError_t e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        return cu_fail(c->leb, e, "creating the copy stream");
    int rc = make_lut(c);
    if (rc == SP_OK)
        rc = size_ring(c, c->budget);
    if (rc == SP_OK)
        rc = make_slots(c);
    if (rc == SP_OK)
        pin_ring(c);
    return rc;
}

int cu_open(sp_loader *host, const cu_config *cfg, cu_stage **out)
{
    *out = NULL;
    ld_host_geom g;
    ld_host_geometry(host, &g);
    cu_stage *c = sp_calloc(1, sizeof *c);
    if (!c)
        return sp_fail(g.eb, SP_ENOMEM, "out of memory for the device stage");
    c->host = host;
    c->g = g;
    c->cfg = *cfg;
    c->leb = g.eb;
    c->dev = cfg->device;
    c->budget = cfg->budget;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->c_user, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&c->c_copy, NULL);
    *out = c; /* cu_close frees whatever was made before a failure */
    c->slot_bytes = plan_slot(c);
    int rc = on_device(c, open_on_device, NULL);
    if (rc == SP_OK) {
        c->qcap = c->nslots + 8;
        c->q = sp_calloc(c->qcap, sizeof *c->q);
        if (!c->q)
            rc = sp_fail(c->leb, SP_ENOMEM, "out of memory for the device stage's queue");
    }
    /* The loader opens its stage before any batch: the caller is at batch 0 of epoch 0. */
    c->pos_epoch = 0;
    c->pos_k = 0;
    return rc;
}

static void wait_slots_idle(cu_stage *c)
{
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    for (uint32_t i = 0; i < c->nslots; i++)
        if (c->slots[i].release_pending) {
            /* the caller's work on the slot: it may still read it when close is called */
            cudaEventSynchronize(c->slots[i].released);
            c->slots[i].release_pending = false;
        }
}

static int close_on_device(cu_stage *c, void *unused)
{
    (void)unused;
    wait_slots_idle(c);
    for (uint32_t i = 0; i < CU_MAX_SLOTS; i++) {
        cu_slot *s = &c->slots[i];
        if (s->dmem)
            cudaFree(s->dmem);
        if (s->start)
            cudaEventDestroy(s->start);
        if (s->ready)
            cudaEventDestroy(s->ready);
        if (s->released)
            cudaEventDestroy(s->released);
    }
    if (c->lut)
        cudaFree(c->lut);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    if (c->registered && cudaHostUnregister(c->g.ring) == cudaSuccess)
        c->registered = false;
    return SP_OK;
}

void cu_close(cu_stage *c)
{
    if (!c)
        return;
    cu_halt(c);
    /* When that failed, CUDA is unusable here too: the registration goes with the context, and no
     * call is made on the caller's thread. */
    on_device(c, close_on_device, NULL);
    for (uint32_t i = 0; i < CU_MAX_SLOTS; i++)
        sp_free(c->slots[i].ids);
    sp_free(c->q);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->c_user);
    pthread_cond_destroy(&c->c_copy);
    sp_free(c);
}

/* ---------------------------------------------------------------- the copy thread */

/* Queues an entry for the caller, waiting while the queue is full. False when stopped. */
static bool push(cu_stage *c, int code, uint32_t slot, const char *msg)
{
    pthread_mutex_lock(&c->mu);
    while (c->qcount == c->qcap && !c->stop)
        pthread_cond_wait(&c->c_copy, &c->mu);
    bool ok = !c->stop;
    if (ok) {
        cu_entry *en = &c->q[(c->qhead + c->qcount) % c->qcap];
        en->code = code;
        en->slot = slot;
        snprintf(en->msg, sizeof en->msg, "%s", msg ? msg : "");
        c->qcount++;
        if (code == SP_OK)
            c->slots[slot].state = CS_READY;
        if (code != SP_OK && code != SP_EEPOCH) { /* the thread ends on it: repeated by later calls */
            c->final_code = code;
            snprintf(c->final_msg, sizeof c->final_msg, "%s", en->msg);
        }
        pthread_cond_signal(&c->c_user);
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* Waits for the oldest copy in flight, then gives its host batch back to the host ring. False
 * when the GPU reports a failure: the batch, already handed out, may be wrong, and the device
 * is unusable; the caller ends the thread with the error. */
static bool retire_one(cu_stage *c)
{
    cu_flight f = c->flight[0];
    c->flight[0] = c->flight[1];
    c->nflight--;
    cu_slot *s = &c->slots[f.slot];
    cudaError_t e = cudaEventSynchronize(s->ready);
    float ms = 0;
    if (e == cudaSuccess && cudaEventElapsedTime(&ms, s->start, s->ready) != cudaSuccess) {
        cudaGetLastError(); /* only the timing is lost */
        ms = 0;
    }
    if (e != cudaSuccess)
        cudaStreamSynchronize(c->stream); /* whatever the fault, nothing may still read the batch */
    ld_host_release(c->host, f.hb);
    pthread_mutex_lock(&c->mu);
    c->copy_s += ms / 1e3;
    if (e != cudaSuccess && !c->fault) {
        c->fault = true;
        snprintf(c->fault_msg, sizeof c->fault_msg, "the copy or conversion of batch %llu of epoch %llu on cuda:%d "
                 "failed: %s (%s)", (unsigned long long)f.index, (unsigned long long)f.epoch, c->dev,
                 cudaGetErrorString(e), cudaGetErrorName(e));
    }
    pthread_mutex_unlock(&c->mu);
    return e == cudaSuccess;
}

static bool retire_all(cu_stage *c)
{
    bool ok = true;
    while (c->nflight)
        ok = retire_one(c) && ok;
    return ok;
}

static bool in_flight(const cu_stage *c, uint32_t slot)
{
    for (uint32_t i = 0; i < c->nflight; i++)
        if (c->flight[i].slot == slot)
            return true;
    return false;
}

/* Slots in one of two states, with mu held: counted rather than kept, so no path can let a count
 * drift from the slots (a ring has at most CU_MAX_SLOTS). */
static uint32_t count_slots(const cu_stage *c, int state, int or_state)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->nslots; i++)
        n += c->slots[i].state == state || c->slots[i].state == or_state;
    return n;
}

/* Leased to the caller, a release in progress included. */
static uint32_t leased(const cu_stage *c) { return count_slots(c, CS_LEASED, CS_RELEASING); }

/* Holding a batch: being copied, ready, or leased. */
static uint32_t in_use(const cu_stage *c) { return c->nslots - count_slots(c, CS_FREE, CS_FREE); }

/* A free slot, with mu held: the next in ring order when free (so a consumer that releases in
 * order sees a plain ring), else any; NULL when none. */
static cu_slot *free_slot(cu_stage *c)
{
    for (uint32_t i = 0; i < c->nslots; i++) {
        cu_slot *s = &c->slots[(c->seq + i) % c->nslots];
        if (s->state == CS_FREE)
            return s;
    }
    return NULL;
}

/* Waits for a free slot and claims it. When every slot is leased the caller holds them all and
 * only it can free one: next() then says so (SP_EBUSY) instead of waiting. False when stopped. */
static bool take_slot(cu_stage *c, cu_slot **out, bool *wait_release)
{
    pthread_mutex_lock(&c->mu);
    cu_slot *s = free_slot(c);
    if (!s && !c->stop) {
        /* About to block on the caller: give the host ring back every batch already copied. */
        pthread_mutex_unlock(&c->mu);
        bool retired = retire_all(c);
        pthread_mutex_lock(&c->mu);
        uint64_t t0 = sp_trace_begin(c->g.trace, SPT_COPY_WAIT);
        while (retired && !(s = free_slot(c)) && !c->stop) {
            c->starved = count_slots(c, CS_LEASED, CS_LEASED) == c->nslots; /* a slot being released comes back */
            if (c->starved)
                pthread_cond_signal(&c->c_user);
            pthread_cond_wait(&c->c_copy, &c->mu);
        }
        sp_trace_end(c->g.trace, LD_TRACK_COPY, SPT_COPY_WAIT, t0, UINT64_MAX);
        c->starved = false;
    }
    bool ok = !c->stop && !c->fault && s;
    if (ok) {
        s->state = CS_COPYING;
        *wait_release = s->release_pending; /* cleared by issue() once the wait is queued */
        uint64_t bytes = in_use(c) * c->slot_bytes;
        if (bytes > c->bytes_peak)
            c->bytes_peak = bytes;
        sp_trace_count(c->g.trace, SPC_DEVICE_BYTES, (int64_t)bytes);
    }
    pthread_mutex_unlock(&c->mu);
    if (ok && in_flight(c, s->b.slot)) /* its last copy must be retired before its events are reused */
        ok = retire_all(c);
    *out = s;
    return ok;
}

static void give_back_slot(cu_stage *c, cu_slot *s)
{
    pthread_mutex_lock(&c->mu);
    s->state = CS_FREE;
    sp_trace_count(c->g.trace, SPC_DEVICE_BYTES, (int64_t)(in_use(c) * c->slot_bytes));
    pthread_mutex_unlock(&c->mu);
}

/* Queues the copy of host batch hb into slot s, and its conversion, on the copy stream. */
static cudaError_t issue(cu_stage *c, cu_slot *s, const sp_batch *hb, bool wait_release)
{
    const ld_host_geom *g = &c->g;
    cudaError_t e = cudaSuccess;
    if (wait_release && (e = cudaStreamWaitEvent(c->stream, s->released, 0)) == cudaSuccess)
        s->release_pending = false; /* else the next use of the slot, or close, must still wait */
    if (e == cudaSuccess)
        e = cudaEventRecord(s->start, c->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(s->dmem, ld_host_rows(c->host, hb), g->slot_bytes, cudaMemcpyHostToDevice, c->stream);
    for (size_t f = 0; e == cudaSuccess && f < g->nfields; f++)
        if (c->conv_off[f])
            e = (cudaError_t)cu_launch_convert(s->dmem + g->field[f].offset, s->dmem + c->conv_off[f], c->lut,
                                               c->lut_elem, hb->rows, g->img->size,
                                               c->cfg.layout == SP_DEVICE_LAYOUT_NCHW, c->stream);
    if (e == cudaSuccess)
        e = cudaEventRecord(s->ready, c->stream);
    if (e == cudaSuccess) {
        s->b.epoch = hb->epoch;
        s->b.index = hb->index;
        s->b.rows = hb->rows;
        memcpy(s->ids, hb->ids, hb->rows * sizeof *s->ids);
    }
    return e;
}

/* One host batch to the device. False when the thread must end. */
static bool copy_one(cu_stage *c, sp_batch *hb)
{
    cu_slot *s;
    bool wait_release;
    if (!take_slot(c, &s, &wait_release)) {
        ld_host_release(c->host, hb); /* a slot taken before a failed retire is freed by cu_halt */
        return false;
    }
    cudaError_t e = issue(c, s, hb, wait_release);
    if (e != cudaSuccess) {
        cudaStreamSynchronize(c->stream); /* nothing may still read hb */
        ld_host_release(c->host, hb);
        give_back_slot(c, s);
        char msg[SP_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "copying batch %llu of epoch %llu to cuda:%d: %s (%s)",
                 (unsigned long long)hb->index, (unsigned long long)hb->epoch, c->dev, cudaGetErrorString(e),
                 cudaGetErrorName(e));
        push(c, SP_EDEVICE, 0, msg);
        return false;
    }
    c->flight[c->nflight++] = (cu_flight){ hb, s->b.slot, hb->epoch, hb->index };
    c->seq++;
    pthread_mutex_lock(&c->mu);
    c->batches++;
    c->bytes_copied += c->g.slot_bytes;
    pthread_mutex_unlock(&c->mu);
    bool ok = push(c, SP_OK, s->b.slot, NULL); /* when stopped, cu_halt frees the slot */
    /* Keep the copy engine fed: the newest copy stays queued while the older one is retired. */
    while (ok && c->nflight > 1)
        ok = retire_one(c);
    return ok;
}

static void *copy_main(void *arg)
{
    cu_stage *c = arg;
    cudaError_t e = cudaSetDevice(c->dev);
    if (e != cudaSuccess) {
        char msg[SP_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "the copy thread cannot use cuda:%d: %s", c->dev, cudaGetErrorString(e));
        push(c, SP_EDEVICE, 0, msg);
        goto done;
    }
    for (;;) {
        sp_batch *hb = NULL;
        int rc = ld_host_next(c->host, &hb, CU_POLL_MS);
        if (rc == SP_ETIMEDOUT) {
            pthread_mutex_lock(&c->mu);
            bool stop = c->stop;
            pthread_mutex_unlock(&c->mu);
            if (stop)
                break;
            if (!retire_all(c)) /* the host is slow: nothing gains from holding its batches */
                break;
            continue;
        }
        if (rc == SP_EEPOCH) {
            if (!push(c, rc, 0, c->eb.msg))
                break;
            continue;
        }
        if (rc != SP_OK) {
            retire_all(c);
            push(c, rc, 0, c->eb.msg);
            break;
        }
        uint64_t t0 = sp_trace_begin(c->g.trace, SPT_COPY), k = hb->index; /* hb may go back to the host */
        bool more = copy_one(c, hb);
        sp_trace_end(c->g.trace, LD_TRACK_COPY, SPT_COPY, t0, k);
        if (!more)
            break;
    }
done:
    retire_all(c);
    pthread_mutex_lock(&c->mu);
    c->finished = true;
    pthread_cond_broadcast(&c->c_user);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int start_thread(cu_stage *c)
{
    ld_host_attach(c->host, &c->eb);
    c->stop = false;
    c->finished = false;
    c->seq = 0;
    int e = pthread_create(&c->thread, NULL, copy_main, c);
    if (e) {
        ld_host_attach(c->host, NULL);
        return sp_fail(c->leb, SP_ESYS, "cannot start the device copy thread: %s", strerror(e));
    }
    c->thread_up = true;
    return SP_OK;
}

void cu_halt(cu_stage *c)
{
    pthread_mutex_lock(&c->mu);
    bool up = c->thread_up;
    c->stop = true;
    pthread_cond_broadcast(&c->c_copy);
    pthread_mutex_unlock(&c->mu);
    if (up) {
        ld_host_interrupt(c->host, true);
        pthread_join(c->thread, NULL);
        ld_host_interrupt(c->host, false);
        ld_host_attach(c->host, NULL);
    }
    /* Batches prepared and not handed out are dropped. Their copies are complete: the thread
     * waits for every copy in flight before it ends (and no CUDA call here may touch the
     * caller's thread, which may have no context on this device). */
    pthread_mutex_lock(&c->mu);
    c->qcount = 0;
    c->qhead = 0;
    /* Every slot not leased is free again: queued ones, and one the thread held when stopped. */
    for (uint32_t i = 0; i < c->nslots; i++)
        if (c->slots[i].state != CS_LEASED && c->slots[i].state != CS_RELEASING)
            c->slots[i].state = CS_FREE;
    c->starved = false;
    sp_trace_count(c->g.trace, SPC_DEVICE_BYTES, (int64_t)(in_use(c) * c->slot_bytes));
    c->thread_up = false;
    c->finished = false;
    c->final_code = 0;
    c->stop = false;
    pthread_mutex_unlock(&c->mu);
}

void cu_seek(cu_stage *c, uint64_t epoch, uint64_t next_k)
{
    pthread_mutex_lock(&c->mu);
    c->pos_epoch = epoch;
    c->pos_k = next_k;
    pthread_mutex_unlock(&c->mu);
}

void cu_position(cu_stage *c, uint64_t *epoch, uint64_t *next_k)
{
    pthread_mutex_lock(&c->mu);
    *epoch = c->pos_epoch;
    *next_k = c->pos_k;
    pthread_mutex_unlock(&c->mu);
}

/* ---------------------------------------------------------------- the caller's side */

/* Hands out what the front entry says, with mu held. */
static int take_entry(cu_stage *c, sp_batch **out)
{
    cu_entry *en = &c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qcount--;
    pthread_cond_signal(&c->c_copy);
    if (en->code == SP_EEPOCH) {
        c->pos_epoch++;
        c->pos_k = 0;
    }
    if (en->code != SP_OK)
        return sp_fail(c->leb, en->code, "%s", en->msg);
    cu_slot *s = &c->slots[en->slot];
    s->state = CS_LEASED;
    c->pos_epoch = s->b.epoch;
    c->pos_k = s->b.index + 1;
    *out = &s->b;
    return SP_OK;
}

int cu_next(cu_stage *c, sp_batch **out, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0)
        sp_deadline_after(&dl, timeout_ms);
    double t0 = sp_now();
    int rc = SP_OK;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->fault) {
            rc = sp_fail(c->leb, SP_EDEVICE, "%s", c->fault_msg);
            break;
        }
        if (c->qcount) {
            rc = take_entry(c, out);
            break;
        }
        if (c->starved) {
            rc = sp_fail(c->leb, SP_EBUSY, "all %u device slots are leased: release a batch before taking "
                         "another (the device ring holds %u batches; device_memory sets it)", c->nslots, c->nslots);
            break;
        }
        if (c->finished) { /* the thread ended on a code the caller has already been given */
            rc = c->final_code ? sp_fail(c->leb, c->final_code, "%s", c->final_msg)
                               : sp_fail(c->leb, SP_EDEVICE, "the copy thread of cuda:%d has ended", c->dev);
            break;
        }
        if (!c->thread_up && (rc = start_thread(c)))
            break;
        uint64_t tw = sp_trace_begin(c->g.trace, SPT_CONSUMER_WAIT);
        int w = timeout_ms < 0 ? pthread_cond_wait(&c->c_user, &c->mu)
                               : pthread_cond_timedwait(&c->c_user, &c->mu, &dl);
        sp_trace_end(c->g.trace, LD_TRACK_CONSUMER, SPT_CONSUMER_WAIT, tw, UINT64_MAX);
        if (w == ETIMEDOUT && !c->qcount) {
            rc = sp_fail(c->leb, SP_ETIMEDOUT, "batch %llu of epoch %llu not on cuda:%d within %d ms",
                         (unsigned long long)c->pos_k, (unsigned long long)c->pos_epoch, c->dev, timeout_ms);
            break;
        }
    }
    c->empty_s += sp_now() - t0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static cu_slot *leased_slot(cu_stage *c, const sp_batch *b)
{
    if (!c || b->slot >= c->nslots || &c->slots[b->slot].b != b)
        return NULL;
    return &c->slots[b->slot];
}

/* One event operation on a stream, run where `here` says it may. */
typedef struct cu_evop {
    enum { EV_WAIT, EV_RECORD, EV_SYNC, EV_STREAM_SYNC, EV_DEVICE_SYNC } op;
    cudaEvent_t ev;
    cudaStream_t stream;
    cudaError_t e;
} cu_evop;

static int evop_run(cu_stage *c, void *arg)
{
    (void)c;
    cu_evop *k = arg;
    switch (k->op) {
    case EV_WAIT: k->e = cudaStreamWaitEvent(k->stream, k->ev, 0); break;
    case EV_RECORD: k->e = cudaEventRecord(k->ev, k->stream); break;
    case EV_SYNC: k->e = cudaEventSynchronize(k->ev); break;
    case EV_STREAM_SYNC: k->e = cudaStreamSynchronize(k->stream); break;
    case EV_DEVICE_SYNC: k->e = cudaDeviceSynchronize(); break;
    }
    if (k->e != cudaSuccess)
        cudaGetLastError();
    return SP_OK;
}

/* Runs op on the calling thread when it may, else on the stage's device, where a default-stream
 * handle then names the stage's device's default stream: the batch's, as DLPack means it (a
 * per-thread handle from another thread is the legacy stream there, which orders after it). */
static cudaError_t evop(cu_stage *c, int op, cudaEvent_t ev, void *stream)
{
    cu_evop k = { op, ev, (cudaStream_t)stream, cudaSuccess };
    if (op == EV_DEVICE_SYNC || !here(c, stream)) {
        if ((uintptr_t)stream == 2)
            k.stream = cudaStreamLegacy;
        if (on_device(c, evop_run, &k) != SP_OK)
            return cudaErrorUnknown;
    } else {
        evop_run(c, &k);
    }
    return k.e;
}

int cu_batch_wait(cu_stage *c, const sp_batch *b, void *stream)
{
    cu_slot *s = leased_slot(c, b);
    if (!s)
        return sp_fail(NULL, SP_EINVAL, "sp_batch_wait: not a device batch of a loader");
    cudaError_t e = evop(c, EV_WAIT, s->ready, stream);
    return e == cudaSuccess ? SP_OK : cu_fail(NULL, e, "sp_batch_wait: cudaStreamWaitEvent");
}

int cu_batch_sync(cu_stage *c, const sp_batch *b)
{
    cu_slot *s = leased_slot(c, b);
    if (!s)
        return sp_fail(NULL, SP_EINVAL, "sp_batch_sync: not a device batch of a loader");
    cudaError_t e = evop(c, EV_SYNC, s->ready, (void *)cudaStreamLegacy);
    return e == cudaSuccess ? SP_OK : cu_fail(NULL, e, "sp_batch_sync: cudaEventSynchronize");
}

int cu_release(cu_stage *c, sp_batch *b, void *stream)
{
    cu_slot *s = leased_slot(c, b);
    if (!s)
        return sp_fail(c->leb, SP_EINVAL, "sp_loader_release: not a batch of this loader");
    pthread_mutex_lock(&c->mu);
    if (s->state != CS_LEASED) {
        pthread_mutex_unlock(&c->mu);
        /* Not b->index: a slot released already may be being refilled by the copy thread. */
        return sp_fail(c->leb, SP_EINVAL, "device batch in slot %u is not leased (released twice?)", s->b.slot);
    }
    s->state = CS_RELEASING; /* still unusable by the copy thread; CUDA runs without the lock */
    pthread_mutex_unlock(&c->mu);
    int rc = SP_OK;
    cudaError_t e = evop(c, EV_RECORD, s->released, stream);
    if (e != cudaSuccess) {
        /* No event to order the reuse on (a stream of another device, say): the host waits for
         * that stream, or for the whole device when even that fails. */
        rc = cu_fail(c->leb, e, "sp_loader_release_on: cudaEventRecord on the caller's stream (the batch is "
                     "released after a host wait)");
        if ((uintptr_t)stream <= 2 || evop(c, EV_STREAM_SYNC, NULL, stream) != cudaSuccess)
            evop(c, EV_DEVICE_SYNC, NULL, NULL);
    }
    pthread_mutex_lock(&c->mu);
    s->release_pending = e == cudaSuccess;
    s->state = CS_FREE;
    sp_trace_count(c->g.trace, SPC_DEVICE_BYTES, (int64_t)(in_use(c) * c->slot_bytes));
    c->starved = false;
    pthread_cond_signal(&c->c_copy);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

uint64_t cu_leases(cu_stage *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = leased(c);
    pthread_mutex_unlock(&c->mu);
    return n;
}

void cu_stats(cu_stage *c, sp_loader_stats *st)
{
    pthread_mutex_lock(&c->mu);
    st->host_pinned = c->registered;
    st->device_memory_bytes = c->budget_used;
    if (c->note[0])
        snprintf(st->device_note, sizeof st->device_note, "%s", c->note);
    st->device_ring_bytes = c->nslots * c->slot_bytes + (c->lut ? 3 * 256 * (uint64_t)c->lut_elem : 0);
    st->device_ring_slots = c->nslots;
    st->device_bytes = in_use(c) * c->slot_bytes;
    st->device_bytes_peak = c->bytes_peak;
    st->device_batches = c->batches;
    st->bytes_copied = c->bytes_copied;
    st->copy_s = c->copy_s;
    st->device_empty_s = c->empty_s;
    pthread_mutex_unlock(&c->mu);
}
