/* test_device_fallback.c - the device parameters where no CUDA device can be used: auto stays on
 * the host and says why, cuda:N is refused naming the device, device_dtype acts as image_dtype,
 * and the stream-ordered calls work on host batches. On a machine with a GPU the tests that need
 * its absence skip their part (test_cuda_loader covers that machine). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test_util.h"
#include "tg_images.h"

static uint64_t g_seed; /* of the generated images */

/* Opens a loader on dir with small test defaults and the given NULL-terminated name/value pairs. */
static int open_with(const char *dir, sp_loader **out, const char *const *kv)
{
    sp_params *p = tu_params("batch_size", "8", "threads", "2", "host_memory", "64M", "image_size", "32", "max_image_memory", "4M",
                             "epochs", "1", NULL);
    for (size_t i = 0; kv && kv[i]; i += 2)
        ck_assert_msg(sp_params_set_str(p, kv[i], kv[i + 1]) == 0, "%s", sp_last_error());
    int rc = sp_loader_open(dir, p, out);
    sp_params_destroy(p);
    return rc;
}

static bool gpu_present(void)
{
    int n = sp_cuda_device_count();
    if (n > 0)
        printf("a CUDA device is present: the no-device checks are skipped here\n");
    return n > 0;
}

START_TEST(auto_stays_on_host)
{
    if (gpu_present())
        return;
    tg_images d;
    tg_make_images(&d, 40, g_seed);
    sp_loader *l;
    const char *kv[] = { "device", "auto", NULL };
    ck_assert_msg(open_with(d.dir, &l, kv) == 0, "%s", sp_last_error());
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(st.device, -1);
    ck_assert_msg(strstr(st.device_note, "device=auto") && strstr(st.device_note, "host memory"),
                  "the note does not say why: '%s'", st.device_note);
    sp_batch *b;
    ck_assert_msg(sp_loader_next(l, &b, 10000) == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_batch_device(b), -1);
    ck_assert_int_eq(sp_batch_tensor(b, 0)->device.device_type, kDLCPU);
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.device_ring_bytes, 0);
    ck_assert_uint_eq(st.bytes_copied, 0);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tg_free_images(&d);
}
END_TEST

/* cuda:N that cannot be used fails at open and names the device and the reason. */
START_TEST(cuda_refused)
{
    int n = sp_cuda_device_count();
    char dev[32];
    snprintf(dev, sizeof dev, "cuda:%d", n); /* one past the last device there is */
    tg_images d;
    tg_make_images(&d, 16, g_seed);
    sp_loader *l = NULL;
    const char *kv[] = { "device", dev, NULL };
    int rc = open_with(d.dir, &l, kv);
    ck_assert_ptr_null(l);
    ck_assert_msg(rc == SP_EDEVICE || rc == SP_ENOTSUP, "device=%s gave %s", dev, sp_error_name(rc));
    ck_assert_msg(strstr(sp_last_error(), dev), "'%s' does not name %s", sp_last_error(), dev);
    if (rc == SP_ENOTSUP)
        ck_assert_msg(strstr(sp_last_error(), "without CUDA"), "'%s'", sp_last_error());
    tg_free_images(&d);
}
END_TEST

/* Host batches with device_dtype/device_layout equal those of image_dtype/image_layout. */
START_TEST(device_dtype_on_host)
{
    static const char *const dtypes[] = { "float16", "bfloat16", "float32" };
    static const char *const layouts[] = { "nchw", "nhwc" };
    tg_images d;
    tg_make_images(&d, 24, g_seed);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            sp_loader *a, *b;
            const char *kva[] = { "device", "cpu", "device_dtype", dtypes[i], "device_layout", layouts[j], NULL };
            const char *kvb[] = { "image_dtype", dtypes[i], "image_layout", layouts[j], NULL };
            ck_assert_msg(open_with(d.dir, &a, kva) == 0, "%s", sp_last_error());
            ck_assert_msg(open_with(d.dir, &b, kvb) == 0, "%s", sp_last_error());
            for (;;) {
                sp_batch *x, *y;
                int ra = sp_loader_next(a, &x, 10000), rb = sp_loader_next(b, &y, 10000);
                ck_assert_int_eq(ra, rb);
                if (ra)
                    break;
                const DLTensor *tx = sp_batch_tensor(x, 0), *ty = sp_batch_tensor(y, 0);
                ck_assert_int_eq(tx->dtype.code, ty->dtype.code);
                ck_assert_int_eq(tx->dtype.bits, ty->dtype.bits);
                ck_assert_int_eq(tx->dtype.bits, dtypes[i][5] == '3' ? 32 : 16);
                for (int k = 0; k < 4; k++)
                    ck_assert_int_eq(tx->shape[k], ty->shape[k]);
                ck_assert_int_eq(tx->shape[1], j == 0 ? 3 : 32);
                size_t bytes = (size_t)tx->shape[0] * 3 * 32 * 32 * tx->dtype.bits / 8;
                ck_assert_msg(memcmp(tx->data, ty->data, bytes) == 0, "%s %s: batch %llu differs", dtypes[i],
                              layouts[j], (unsigned long long)sp_batch_index(x));
                ck_assert_int_eq(sp_loader_release(a, x), 0);
                ck_assert_int_eq(sp_loader_release(b, y), 0);
            }
            ck_assert_int_eq(sp_loader_close(a), 0);
            ck_assert_int_eq(sp_loader_close(b), 0);
        }
    tg_free_images(&d);
}
END_TEST

/* device_dtype converts from uint8 NHWC: another image dtype or layout beside it is refused. */
START_TEST(device_dtype_conflict)
{
    tg_images d;
    tg_make_images(&d, 8, g_seed);
    sp_loader *l = NULL;
    const char *kv[] = { "device_dtype", "float16", "image_dtype", "float32", NULL };
    ck_assert_int_eq(open_with(d.dir, &l, kv), SP_EINVAL);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "device_dtype") && strstr(sp_last_error(), "image_dtype"), "'%s'",
                  sp_last_error());
    const char *kv2[] = { "device_dtype", "float32", "image_layout", "nchw", NULL };
    ck_assert_int_eq(open_with(d.dir, &l, kv2), SP_EINVAL);
    tg_free_images(&d);
}
END_TEST

/* The stream-ordered calls accept host batches: nothing to wait for, the stream is not used. */
START_TEST(stream_calls_on_host_batches)
{
    tg_images d;
    tg_make_images(&d, 16, g_seed);
    sp_loader *l;
    ck_assert_msg(open_with(d.dir, &l, NULL) == 0, "%s", sp_last_error());
    sp_batch *b;
    ck_assert_msg(sp_loader_next(l, &b, 10000) == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_batch_wait(b, NULL), 0);
    ck_assert_int_eq(sp_batch_wait(b, (void *)2), 0);
    ck_assert_int_eq(sp_batch_sync(b), 0);
    ck_assert_int_eq(sp_batch_wait(NULL, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_batch_sync(NULL), SP_EINVAL);
    ck_assert_int_eq(sp_batch_device(NULL), -1);
    ck_assert_int_eq(sp_loader_release_on(l, b, (void *)1), 0);
    ck_assert_int_eq(sp_loader_release_on(l, b, NULL), SP_EINVAL); /* released twice */
    ck_assert_int_eq(sp_loader_release_on(NULL, b, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tg_free_images(&d);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(1);
    Suite *s = suite_create("device_fallback");
    TCase *tc = tu_tcase(s, "fallback", 60);
    tcase_add_test(tc, auto_stays_on_host);
    tcase_add_test(tc, cuda_refused);
    tcase_add_test(tc, device_dtype_on_host);
    tcase_add_test(tc, device_dtype_conflict);
    tcase_add_test(tc, stream_calls_on_host_batches);
    return tu_run(s, g_seed);
}
