/* test_loader_io.c - the read paths: pread, io_uring with and without registered buffers, the fallback when io_uring is refused (and the note saying so), O_DIRECT on and off; every path delivers the same batches. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ld_io.h" /* ld_io_refuse_uring, ld_io_refuse_register */
#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static bool g_uring;  /* io_uring works on this machine */
static bool g_direct; /* O_DIRECT opens work where the dataset lives */
static lt_rec g_ref;  /* io=pread, buffered */

#define N_SAMPLES 3000

static sp_loader *open_io(const char *io, const char *direct)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "io", io, "direct_io", direct, "seed", g_seedstr, "threads", "3", "epochs", "0",
                     NULL);
    ck_assert_msg(rc == 0, "open io=%s direct_io=%s: %s", io, direct, sp_last_error());
    return l;
}

/* Streams an epoch and compares it with the reference. Returns the stats after it. */
static sp_loader_stats stream_same(sp_loader *l, const char *what)
{
    lt_rec r = { 0 };
    int rc = lt_epoch(l, &g_ds, &r);
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s: %s", what, sp_error_name(rc), sp_last_error());
    ck_assert_msg(r.bad == 0 && r.filled == 0, "%s: %s", what, r.why);
    ck_assert_msg(r.nb == g_ref.nb, "%s: %zu batches, reference %zu", what, r.nb, g_ref.nb);
    for (size_t b = 0; b < r.nb; b++)
        ck_assert_msg(r.hash[b] == g_ref.hash[b], "%s: batch %zu differs from io=pread", what, b);
    lt_rec_free(&r);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    /* Every block once; the reader may have run on into the next epoch (epochs=0). */
    ck_assert_uint_ge(st.blocks_read, g_ds.blocks);
    ck_assert_uint_le(st.blocks_read, 2 * g_ds.blocks);
    ck_assert_int_eq(sp_loader_close(l), 0);
    return st;
}

static void reference(void)
{
    sp_loader *l = open_io("pread", "false");
    int rc = lt_epoch(l, &g_ds, &g_ref);
    ck_assert_msg(rc == SP_EEPOCH && g_ref.bad == 0, "reference: %s %s", sp_error_name(rc), g_ref.why);
    ck_assert_uint_eq(g_ref.ni, N_SAMPLES);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

START_TEST(pread_path)
{
    reference();
    sp_loader *l = open_io("pread", "true");
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_int_eq(st.io, SP_IO_PREAD);
    ck_assert_str_eq(st.io_note, "");
    st = stream_same(l, "io=pread direct_io=true");
    ck_assert_int_eq(st.io, SP_IO_PREAD);
    ck_assert_int_eq(st.direct_io, g_direct);
    /* Refusing io_uring changes nothing for pread. */
    ld_io_refuse_uring = 1;
    l = open_io("pread", "false");
    sp_loader_stats_get(l, &st);
    ck_assert_int_eq(st.io, SP_IO_PREAD);
    ck_assert_str_eq(st.io_note, "");
    st = stream_same(l, "io=pread with io_uring refused");
    ck_assert_int_eq(st.direct_io, 0);
    lt_rec_free(&g_ref);
}
END_TEST

START_TEST(uring_path)
{
    if (!g_uring) {
        fprintf(stderr, "io: io_uring refused on this machine: uring_path skipped\n");
        return;
    }
    reference();
    static const char *const ios[] = { "uring", "auto" };
    static const char *const directs[] = { "true", "false" };
    for (int i = 0; i < 2; i++)
        for (int d = 0; d < 2; d++) {
            char what[64];
            snprintf(what, sizeof what, "io=%s direct_io=%s", ios[i], directs[d]);
            sp_loader *l = open_io(ios[i], directs[d]);
            sp_loader_stats st = { .struct_size = sizeof st };
            sp_loader_stats_get(l, &st);
            ck_assert_msg(st.io == SP_IO_URING, "%s: io %d", what, st.io);
            ck_assert_msg(st.io_note[0] == '\0', "%s: note '%s' (RLIMIT_MEMLOCK?)", what, st.io_note);
            st = stream_same(l, what);
            ck_assert_int_eq(st.io, SP_IO_URING);
            ck_assert_int_eq(st.direct_io, d == 0 && g_direct);
        }
    lt_rec_free(&g_ref);
}
END_TEST

START_TEST(uring_refused)
{
    reference();
    ld_io_refuse_uring = 1;
    /* auto falls back to pread and says why. */
    for (int d = 0; d < 2; d++) {
        sp_loader *l = open_io("auto", d ? "true" : "false");
        sp_loader_stats st = { .struct_size = sizeof st };
        sp_loader_stats_get(l, &st);
        ck_assert_int_eq(st.io, SP_IO_PREAD);
        ck_assert_msg(strstr(st.io_note, "io_uring") && strstr(st.io_note, "pread"), "note: '%s'", st.io_note);
        st = stream_same(l, "io=auto with io_uring refused");
        ck_assert_int_eq(st.io, SP_IO_PREAD);
        ck_assert_msg(strstr(st.io_note, "io_uring"), "note after streaming: '%s'", st.io_note);
    }
    /* uring, asked for explicitly, fails instead. */
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "io", "uring", NULL);
    ck_assert_msg(rc == SP_ENOTSUP, "io=uring with io_uring refused: %s", sp_error_name(rc));
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "io_uring"), "message: %s", sp_last_error());
    ld_io_refuse_uring = 0;
    lt_rec_free(&g_ref);
}
END_TEST

START_TEST(register_refused)
{
    if (!g_uring) {
        fprintf(stderr, "io: io_uring refused on this machine: register_refused skipped\n");
        return;
    }
    reference();
    ld_io_refuse_register = 1;
    static const char *const ios[] = { "uring", "auto" };
    for (int i = 0; i < 2; i++)
        for (int d = 0; d < 2; d++) {
            char what[80];
            snprintf(what, sizeof what, "io=%s direct_io=%d, registration refused", ios[i], !d);
            sp_loader *l = open_io(ios[i], d ? "false" : "true");
            sp_loader_stats st = { .struct_size = sizeof st };
            sp_loader_stats_get(l, &st);
            ck_assert_msg(st.io == SP_IO_URING, "%s: io %d", what, st.io);
            ck_assert_msg(strstr(st.io_note, "without fixed buffers"), "%s: note '%s'", what, st.io_note);
            st = stream_same(l, what);
            ck_assert_int_eq(st.io, SP_IO_URING);
        }
    ld_io_refuse_register = 0;
    lt_rec_free(&g_ref);
}
END_TEST

START_TEST(direct_and_buffered_agree)
{
    /* The same loader configuration, O_DIRECT on and off, over two epochs each. */
    lt_rec a = { 0 }, b = { 0 };
    for (int d = 0; d < 2; d++) {
        sp_loader *l = open_io("auto", d ? "false" : "true");
        lt_rec *r = d ? &b : &a;
        ck_assert_int_eq(lt_epoch(l, &g_ds, r), SP_EEPOCH);
        ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
        ck_assert_int_eq(lt_epoch(l, &g_ds, r), SP_EEPOCH);
        ck_assert_msg(r->bad == 0, "%s", r->why);
        sp_loader_stats st = { .struct_size = sizeof st };
        sp_loader_stats_get(l, &st);
        ck_assert_int_eq(st.direct_io, d == 0 && g_direct);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    ck_assert_uint_eq(a.nb, b.nb);
    for (size_t k = 0; k < a.nb; k++)
        ck_assert_msg(a.hash[k] == b.hash[k], "batch %zu differs between direct_io on and off", k);
    lt_rec_free(&a);
    lt_rec_free(&b);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x10);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "io", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    lt_probe_io(&g_ds, &g_uring, &g_direct);
    fprintf(stderr, "io: io_uring %s, O_DIRECT %s on %s\n", g_uring ? "available" : "refused",
            g_direct ? "accepted" : "refused", g_ds.dir);
    Suite *s = suite_create("loader_io");
    TCase *tc = tu_tcase(s, "io", 60);
    tcase_add_test(tc, pread_path);
    tcase_add_test(tc, uring_path);
    tcase_add_test(tc, uring_refused);
    tcase_add_test(tc, register_refused);
    tcase_add_test(tc, direct_and_buffered_agree);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
