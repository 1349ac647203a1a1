/* test_device_stage_emu.c - the device stage's own logic on the CPU runtime of emu_cudart.c:
 * batches equal the host loader's through epochs and EDONE, a slow consumer's stream orders slot
 * reuse, SP_EBUSY when every slot is leased, set_epoch/load_state with a batch held, close waits
 * for the consumer's work and frees every stream, event and byte, image conversion, a GPU fault,
 * no device. Runs everywhere CUDA's headers are, under ASan and TSan too; the real GPU's share is
 * test_cuda_loader. */
#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emu_cudart.h"
#include "lt_util.h"
#include "test_util.h"
#include "tg_images.h"

#define WAIT_MS 20000

static lt_ds g_ds;
static uint64_t g_seed;

static void setup(void)
{
    ck_assert_int_eq(lt_make(&g_ds, "emu", 700, 65, g_seed, "4K", "64K"), 0);
    emu_set_devices(1);
    emu_set_copy_delay_us(0);
    emu_fail_event_sync(0);
}

static void teardown(void) { lt_ds_free(&g_ds); }

static sp_loader *open_ok(const char *dir, const char *k1, const char *v1, const char *k2, const char *v2,
                          const char *k3, const char *v3)
{
    sp_loader *l;
    int rc = lt_open(dir, &l, "batch_size", "16", "seed", "5", "epochs", "2", k1, v1, k2, v2, k3, v3, NULL);
    ck_assert_msg(rc == 0, "open: %s: %s", sp_error_name(rc), sp_last_error());
    return l;
}

/* Host batch h and device batch d (readable here: emulated device memory is host memory) hold the
 * same batch, with d's tensors placed on cuda:0. */
static void check_same(const sp_batch *h, const sp_batch *d)
{
    ck_assert_int_eq(sp_batch_device(d), 0);
    ck_assert_uint_eq(sp_batch_epoch(h), sp_batch_epoch(d));
    ck_assert_uint_eq(sp_batch_index(h), sp_batch_index(d));
    ck_assert_uint_eq(sp_batch_size(h), sp_batch_size(d));
    for (uint32_t r = 0; r < sp_batch_size(h); r++)
        TU_CHECK(sp_batch_sample_id(h, r) == sp_batch_sample_id(d, r), "row %u: other sample", r);
    ck_assert_uint_eq(sp_batch_num_fields(h), sp_batch_num_fields(d));
    for (size_t i = 0; i < sp_batch_num_fields(h); i++) {
        const DLTensor *th = sp_batch_tensor(h, i), *td = sp_batch_tensor(d, i);
        ck_assert_int_eq(td->device.device_type, kDLCUDA);
        ck_assert_int_eq(th->dtype.code, td->dtype.code);
        ck_assert_int_eq(th->dtype.bits, td->dtype.bits);
        ck_assert_int_eq(th->ndim, td->ndim);
        for (int k = 0; k < th->ndim; k++)
            ck_assert_int_eq(th->shape[k], td->shape[k]);
        TU_CHECK(memcmp(th->data, td->data, lt_field_bytes(h, i)) == 0, "batch %llu field %s differs",
                 (unsigned long long)sp_batch_index(h), sp_batch_field_name(h, i));
    }
}

/* Takes the next batch of each and checks they agree; returns the code (both the same). */
static int next_pair(sp_loader *h, sp_loader *g, cudaStream_t s, sp_batch **hb, sp_batch **gb)
{
    int rh = sp_loader_next(h, hb, WAIT_MS), rg = sp_loader_next(g, gb, WAIT_MS);
    ck_assert_msg(rh == rg, "host %s, device %s: %s", sp_error_name(rh), sp_error_name(rg), sp_loader_errmsg(g));
    if (rh == 0) {
        ck_assert_int_eq(sp_batch_wait(*gb, s), 0);
        ck_assert_int_eq(cudaStreamSynchronize(s), cudaSuccess);
        check_same(*hb, *gb);
    }
    return rh;
}

/* Two epochs in lockstep with the host loader, copies slowed so that reading a batch before its
 * copy ran, or the host slot given back before it, shows. */
START_TEST(batches_equal_host)
{
    emu_set_copy_delay_us(300);
    sp_loader *h = open_ok(g_ds.dir, "device", "cpu", "threads", "2", "shuffle", "1");
    sp_loader *g = open_ok(g_ds.dir, "device", "cuda:0", "threads", "2", "host_memory", "4M");
    cudaStream_t s;
    ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    uint64_t batches = 0, epochs = 0;
    for (;;) {
        sp_batch *hb, *gb;
        int rc = next_pair(h, g, s, &hb, &gb);
        if (rc == SP_EEPOCH) {
            epochs++;
            continue;
        }
        if (rc == SP_EDONE)
            break;
        ck_assert_int_eq(rc, 0);
        batches++;
        ck_assert_int_eq(sp_loader_release(h, hb), 0);
        ck_assert_int_eq(sp_loader_release_on(g, gb, s), 0);
    }
    ck_assert_uint_eq(epochs, 2);
    ck_assert_uint_eq(batches, 2 * sp_loader_batches_per_epoch(g));
    ck_assert_int_eq(sp_loader_next(g, &(sp_batch *){ NULL }, 0), SP_EDONE); /* repeated */
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(g, &st), 0);
    ck_assert_int_eq(st.device, 0);
    ck_assert_int_eq(st.host_pinned, 1);
    ck_assert_uint_eq(st.device_batches, batches);
    ck_assert_uint_gt(st.bytes_copied, 0);
    ck_assert(st.copy_s > 0);
    ck_assert_uint_ge(st.device_ring_slots, 2);
    ck_assert_uint_le(st.device_bytes_peak, st.device_ring_bytes);
    ck_assert_uint_eq(st.device_bytes, 0);
    ck_assert_int_eq(sp_loader_close(g), 0);
    ck_assert_int_eq(sp_loader_close(h), 0);
    ck_assert_int_eq(cudaStreamDestroy(s), cudaSuccess);
    ck_assert_int_eq(emu_live_streams(), 0);
    ck_assert_int_eq(emu_live_events(), 0);
    ck_assert_uint_eq(emu_device_bytes(), 0);
    ck_assert_int_eq(emu_registered(), 0);
}
END_TEST

/* A two-slot ring on dev, opened to learn a slot's size first. */
static sp_loader *open_two_slots_on(const char *dev, const char *epochs)
{
    sp_loader *l = open_ok(g_ds.dir, "device", dev, "epochs", epochs, NULL, NULL);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    char mem[32];
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)(2 * st.device_ring_bytes / st.device_ring_slots));
    l = open_ok(g_ds.dir, "device", dev, "epochs", epochs, "device_memory", mem);
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.device_ring_slots, 2);
    return l;
}

static sp_loader *open_two_slots(const char *epochs) { return open_two_slots_on("cuda:0", epochs); }

typedef struct slow_copy {
    const void *src;
    void *dst;
    size_t n;
    unsigned us;
} slow_copy;

/* The consumer's "kernel": holds the batch a while, then reads it. */
static void slow_copy_fn(void *arg)
{
    slow_copy *k = arg;
    usleep(k->us);
    memcpy(k->dst, k->src, k->n);
}

/* dev: the loader's device; launch_dev: the device current while the consumer's work is queued
 * (-1: the thread's own, unchanged). The thread's current device is 0 for every library call. */
static void reuse_on_dev(const char *dev, int launch_dev, cudaStream_t s, int nbatches)
{
    sp_loader *g = open_two_slots_on(dev, "0");
    size_t tok = 16 * 65 * 2;
    uint8_t *out = calloc((size_t)nbatches, tok);
    slow_copy *k = calloc((size_t)nbatches, sizeof *k); /* k[i].n: the rows delivered, not the slot */
    ck_assert(out && k);
    for (int i = 0; i < nbatches;) {
        sp_batch *b;
        int rc = sp_loader_next(g, &b, WAIT_MS);
        if (rc == SP_EEPOCH)
            continue;
        ck_assert_msg(rc == 0, "%s: %s", sp_error_name(rc), sp_loader_errmsg(g));
        int f = sp_batch_find(b, "tokens");
        ck_assert_int_eq(sp_batch_wait(b, s), 0);
        k[i] = (slow_copy){ sp_batch_tensor(b, (size_t)f)->data, out + (size_t)i * tok, lt_field_bytes(b, (size_t)f),
                            300 };
        if (launch_dev >= 0)
            ck_assert_int_eq(cudaSetDevice(launch_dev), cudaSuccess);
        ck_assert_int_eq(emu_launch_host(s, slow_copy_fn, &k[i]), cudaSuccess);
        if (launch_dev >= 0)
            ck_assert_int_eq(cudaSetDevice(0), cudaSuccess);
        ck_assert_int_eq(sp_loader_release_on(g, b, s), 0); /* at once: only the event protects it */
        i++;
    }
    if (launch_dev >= 0)
        ck_assert_int_eq(cudaSetDevice(launch_dev), cudaSuccess);
    ck_assert_int_eq(cudaStreamSynchronize(s), cudaSuccess);
    ck_assert_int_eq(cudaSetDevice(0), cudaSuccess);
    ck_assert_int_eq(sp_loader_close(g), 0);
    sp_loader *h = open_ok(g_ds.dir, "device", "cpu", "epochs", "0", NULL, NULL);
    for (int i = 0; i < nbatches;) {
        sp_batch *b;
        int rc = sp_loader_next(h, &b, WAIT_MS);
        if (rc == SP_EEPOCH)
            continue;
        ck_assert_int_eq(rc, 0);
        size_t f = (size_t)sp_batch_find(b, "tokens");
        TU_CHECK(k[i].n == lt_field_bytes(b, f), "batch %d: %zu bytes, want %zu", i, k[i].n, lt_field_bytes(b, f));
        TU_CHECK(memcmp(out + (size_t)i * tok, sp_batch_tensor(b, f)->data, k[i].n) == 0,
                 "batch %d: the consumer read other bytes: its slot was rewritten before the release event", i);
        ck_assert_int_eq(sp_loader_release(h, b), 0);
        i++;
    }
    ck_assert_int_eq(sp_loader_close(h), 0);
    free(out);
    free(k);
}

static void reuse_on(cudaStream_t s, int nbatches) { reuse_on_dev("cuda:0", -1, s, nbatches); }

/* A default-stream handle means the batch's device's default stream (DLPack's sense), whatever
 * device the calling thread has current: the consumer's work queued on cuda:1's legacy stream is
 * waited for although every library call comes from a thread whose current device is 0. */
START_TEST(default_stream_is_the_batch_device)
{
    emu_set_devices(2);
    reuse_on_dev("cuda:1", 1, NULL, 40);
    reuse_on_dev("cuda:1", 1, cudaStreamLegacy, 20);
    emu_set_devices(1);
}
END_TEST

START_TEST(reuse_waits_for_release_event)
{
    cudaStream_t s;
    ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    reuse_on(s, 120);
    ck_assert_int_eq(cudaStreamDestroy(s), cudaSuccess);
    reuse_on(NULL, 40); /* the legacy default stream */
}
END_TEST

START_TEST(ebusy_when_all_slots_leased)
{
    sp_loader *g = open_two_slots("0");
    sp_batch *a, *b, *c;
    ck_assert_int_eq(sp_loader_next(g, &a, WAIT_MS), 0);
    ck_assert_int_eq(sp_loader_next(g, &b, WAIT_MS), 0);
    int rc = sp_loader_next(g, &c, WAIT_MS);
    ck_assert_msg(rc == SP_EBUSY, "%s: %s", sp_error_name(rc), sp_loader_errmsg(g));
    ck_assert_msg(strstr(sp_loader_errmsg(g), "leased"), "'%s'", sp_loader_errmsg(g));
    ck_assert_int_eq(sp_loader_close(g), SP_EBUSY);
    ck_assert_int_eq(sp_loader_release(g, a), 0);
    ck_assert_int_eq(sp_loader_next(g, &c, WAIT_MS), 0);
    ck_assert_uint_eq(sp_batch_index(c), sp_batch_index(b) + 1);
    ck_assert_int_eq(sp_loader_release(g, b), 0);
    ck_assert_int_eq(sp_loader_release(g, b), SP_EINVAL); /* twice */
    ck_assert_int_eq(sp_loader_release(g, c), 0);
    ck_assert_int_eq(sp_loader_close(g), 0);
}
END_TEST

/* The next device batch equals the host loader's at (epoch, index). */
static void expect_at(sp_loader *g, uint64_t epoch, uint64_t index)
{
    sp_loader *h = open_ok(g_ds.dir, "device", "cpu", "epochs", "3", NULL, NULL);
    ck_assert_int_eq(sp_loader_set_epoch(h, epoch), 0);
    sp_batch *hb, *gb;
    for (uint64_t k = 0; k < index; k++) {
        ck_assert_int_eq(sp_loader_next(h, &hb, WAIT_MS), 0);
        ck_assert_int_eq(sp_loader_release(h, hb), 0);
    }
    ck_assert_int_eq(sp_loader_next(h, &hb, WAIT_MS), 0);
    int rc = sp_loader_next(g, &gb, WAIT_MS);
    ck_assert_msg(rc == 0, "%s: %s", sp_error_name(rc), sp_loader_errmsg(g));
    ck_assert_int_eq(sp_batch_sync(gb), 0);
    check_same(hb, gb);
    ck_assert_int_eq(sp_loader_release(g, gb), 0);
    ck_assert_int_eq(sp_loader_release(h, hb), 0);
    ck_assert_int_eq(sp_loader_close(h), 0);
}

START_TEST(resume_and_set_epoch_with_a_batch_held)
{
    emu_set_copy_delay_us(100);
    sp_loader *g = open_ok(g_ds.dir, "device", "cuda:0", "epochs", "3", NULL, NULL);
    sp_batch *a, *held;
    ck_assert_int_eq(sp_loader_next(g, &a, WAIT_MS), 0);
    ck_assert_int_eq(sp_loader_release(g, a), 0);
    ck_assert_int_eq(sp_loader_next(g, &held, WAIT_MS), 0);
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(g, state, sizeof state), 0); /* at (0, 2), not where the thread is */
    usleep(50000); /* the copy thread runs ahead meanwhile */
    ck_assert_int_eq(sp_loader_set_epoch(g, 1), 0);
    ck_assert_uint_eq(sp_loader_batches_per_epoch(g), 700 / 16 + 1);
    expect_at(g, 1, 0);
    expect_at(g, 1, 1);
    ck_assert_int_eq(sp_batch_sync(held), 0); /* still valid */
    ck_assert_uint_eq(sp_batch_index(held), 1);
    ck_assert_int_eq(sp_loader_release(g, held), 0);
    ck_assert_int_eq(sp_loader_load_state(g, state, sizeof state), 0);
    expect_at(g, 0, 2);
    ck_assert_int_eq(sp_loader_close(g), 0);
}
END_TEST

static atomic_int g_flag;

static void late_flag(void *arg)
{
    (void)arg;
    usleep(100000);
    g_flag = 1;
}

START_TEST(close_waits_for_the_consumer)
{
    sp_loader *g = open_ok(g_ds.dir, "device", "cuda:0", NULL, NULL, NULL, NULL);
    cudaStream_t s;
    ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(g, &b, WAIT_MS), 0);
    ck_assert_int_eq(sp_batch_wait(b, s), 0);
    g_flag = 0;
    ck_assert_int_eq(emu_launch_host(s, late_flag, NULL), cudaSuccess);
    ck_assert_int_eq(sp_loader_release_on(g, b, s), 0);
    ck_assert_int_eq(sp_loader_close(g), 0);
    ck_assert_msg(g_flag == 1, "close returned while the consumer's work on a slot was still queued");
    ck_assert_int_eq(cudaStreamDestroy(s), cudaSuccess);
    ck_assert_int_eq(emu_live_events(), 0);
    ck_assert_uint_eq(emu_device_bytes(), 0);
}
END_TEST

START_TEST(images_converted_as_on_the_host)
{
    static const char *const dt[] = { "float16", "bfloat16", "float32" };
    static const char *const lay[] = { "nchw", "nhwc" };
    tg_images d;
    tg_make_images(&d, 40, g_seed);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            sp_loader *h, *g;
            const char *common[] = { "batch_size", "8", "image_size", "24", "max_image_memory", "4M", "epochs", "1" };
            ck_assert_int_eq(lt_open(d.dir, &h, common[0], common[1], common[2], common[3], common[4], common[5],
                                     common[6], common[7], "image_dtype", dt[i], "image_layout", lay[j], NULL),
                             0);
            ck_assert_int_eq(lt_open(d.dir, &g, common[0], common[1], common[2], common[3], common[4], common[5],
                                     common[6], common[7], "device", "cuda:0", "device_dtype", dt[i], "device_layout",
                                     lay[j], NULL),
                             0);
            sp_batch *hb, *gb;
            int rc;
            while ((rc = next_pair(h, g, NULL, &hb, &gb)) == 0) {
                ck_assert_int_eq(sp_loader_release(h, hb), 0);
                ck_assert_int_eq(sp_loader_release(g, gb), 0);
            }
            ck_assert_int_eq(rc, SP_EEPOCH);
            ck_assert_int_eq(sp_loader_close(h), 0);
            ck_assert_int_eq(sp_loader_close(g), 0);
        }
    tg_free_images(&d);
}
END_TEST

/* A copy the GPU failed (a fault in the conversion, say): next() says so, and keeps saying so. */
START_TEST(gpu_fault_ends_the_stream)
{
    emu_fail_event_sync(3);
    sp_loader *g = open_ok(g_ds.dir, "device", "cuda:0", "epochs", "0", NULL, NULL);
    int rc = 0;
    for (int k = 0; k < 100 && rc == 0; k++) {
        sp_batch *b;
        rc = sp_loader_next(g, &b, WAIT_MS);
        if (rc == 0)
            ck_assert_int_eq(sp_loader_release(g, b), 0);
    }
    ck_assert_msg(rc == SP_EDEVICE, "%s: %s", sp_error_name(rc), sp_loader_errmsg(g));
    ck_assert_msg(strstr(sp_loader_errmsg(g), "cuda:0") && strstr(sp_loader_errmsg(g), "launch failure"), "'%s'",
                  sp_loader_errmsg(g));
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(g, &b, WAIT_MS), SP_EDEVICE);
    ck_assert_int_eq(sp_loader_close(g), 0);
    ck_assert_uint_eq(emu_device_bytes(), 0);
}
END_TEST

/* The budget is checked on the device's own thread; its message still reaches the caller. */
START_TEST(budget_too_small)
{
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "device", "cuda:0", "device_memory", "1K", NULL), SP_ELIMIT);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "device_memory") && strstr(sp_last_error(), "need at least"), "'%s'",
                  sp_last_error());
    ck_assert_int_eq(emu_live_streams(), 0);
    ck_assert_uint_eq(emu_device_bytes(), 0);
    ck_assert_int_eq(emu_registered(), 0);
}
END_TEST

START_TEST(no_device)
{
    emu_set_devices(0);
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "device", "cuda:0", NULL), SP_EDEVICE);
    ck_assert_msg(strstr(sp_last_error(), "cuda:0") && strstr(sp_last_error(), "no CUDA-capable device"), "'%s'",
                  sp_last_error());
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "device", "auto", NULL), 0);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(st.device, -1);
    ck_assert_msg(strstr(st.device_note, "no usable CUDA device"), "'%s'", st.device_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    emu_set_devices(2);
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "device", "cuda:2", NULL), SP_EDEVICE);
    ck_assert_msg(strstr(sp_last_error(), "2 CUDA device"), "'%s'", sp_last_error());
    emu_set_devices(1);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(7);
    Suite *su = suite_create("device_stage_emu");
    TCase *tc = tu_tcase(su, "emu", 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, batches_equal_host);
    tcase_add_test(tc, reuse_waits_for_release_event);
    tcase_add_test(tc, default_stream_is_the_batch_device);
    tcase_add_test(tc, ebusy_when_all_slots_leased);
    tcase_add_test(tc, resume_and_set_epoch_with_a_batch_held);
    tcase_add_test(tc, close_waits_for_the_consumer);
    tcase_add_test(tc, images_converted_as_on_the_host);
    tcase_add_test(tc, gpu_fault_ends_the_stream);
    tcase_add_test(tc, budget_too_small);
    tcase_add_test(tc, no_device);
    return tu_run(su, g_seed);
}
