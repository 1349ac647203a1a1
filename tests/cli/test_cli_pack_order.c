/* test_cli_pack_order.c - pack's order: an ImageFolder (and a TSV list) of 10 classes is written in a seeded shuffled order by default (the same seed gives the same files, another seed others), so that bench's shuffle metric, the mean distinct labels per batch, reaches 0.9 of a uniform shuffle's with small shuffle windows; --order source writes class by class and stays well below it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"

#define CLASSES 10
#define PER_CLASS 40

static char *tmp, *in;

/* CLASSES class directories of PER_CLASS small JPEGs each. */
static void setup(void)
{
    tmp = clit_tmpdir();
    in = clit_path("%s/in", tmp);
    clit_mkdir(in);
    for (int c = 0; c < CLASSES; c++) {
        char *cls = clit_path("%s/class%02d", in, c);
        clit_mkdir(cls);
        for (int i = 0; i < PER_CLASS; i++) {
            size_t size;
            unsigned char *j = clit_jpeg(32, 24, (unsigned)(c * PER_CLASS + i), &size);
            char *p = clit_path("%s/%03d.jpg", cls, i);
            clit_write(p, j, size);
            free(p);
            free(j);
        }
        free(cls);
    }
}

static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
    free(in);
}

/* Packs into tmp/name (replacing it) and returns the first shard's bytes (the command line, kept in
 * the metadata, is the same for the same arguments). */
static unsigned char *pack(const char *name, const char *order, const char *seed, size_t *len)
{
    char *out = clit_path("%s/%s", tmp, name);
    clit_result r = clit_run("pack", in, "-o", out, "-q", "--block-size", "8K", "--dataset-id", "5", "--order",
                             order, "--order-seed", seed, "--overwrite", NULL);
    ck_assert_msg(r.status == 0, "pack --order %s: %s", order, r.err);
    clit_result_free(&r);
    char *shard = clit_path("%s/shard-000000.sps", out);
    unsigned char *bytes = clit_read(shard, len);
    free(shard);
    free(out);
    return bytes;
}

/* bench's labels_per_batch_ratio over one epoch of batches of 32, windows of 2 blocks. */
static double label_ratio(const char *ds)
{
    clit_result r = clit_run("bench", ds, "--epochs", "1", "--json", "--batch-size", "32", "--shuffle-window", "2",
                             "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_msg(clit_json_has_key(r.out, "labels_per_batch_uniform") && clit_json_has_key(r.out, "mean_move"),
                  "%s", r.out);
    const char *k = strstr(r.out, "\"labels_per_batch_ratio\":");
    ck_assert_ptr_nonnull(k);
    double v = strtod(k + strlen("\"labels_per_batch_ratio\":"), NULL);
    clit_result_free(&r);
    return v;
}

START_TEST(test_shuffled_mixes_classes)
{
    size_t la, lb, lc;
    unsigned char *a = pack("ds", "shuffled", "0", &la), *b = pack("ds", "shuffled", "0", &lb);
    ck_assert_msg(la == lb && memcmp(a, b, la) == 0, "the same seed gave other files");
    unsigned char *c = pack("ds", "shuffled", "1", &lc);
    ck_assert_msg(la != lc || memcmp(a, c, la) != 0, "another seed gave the same files");
    char *ds = clit_path("%s/ds", tmp);
    double other = label_ratio(ds);
    free(pack("ds", "shuffled", "0", &la));
    double mixed = label_ratio(ds);
    free(pack("ds", "source", "0", &la));
    double sorted = label_ratio(ds);
    ck_assert_msg(mixed >= 0.9 && other >= 0.9, "shuffled pack: %.3f (seed 1: %.3f) of a uniform shuffle's labels "
                  "per batch", mixed, other);
    ck_assert_msg(sorted < 0.8, "source order: %.3f of a uniform shuffle's labels per batch", sorted);
    free(a);
    free(b);
    free(c);
    free(ds);
}
END_TEST

/* "KEY": NUMBER in a JSON text, as printed (the same double prints the same). */
static const char *json_num(const char *json, const char *key, char *buf, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(json, pat);
    ck_assert_msg(k != NULL, "no %s in %s", key, json);
    k += strlen(pat);
    size_t len = strcspn(k, ",}");
    ck_assert_uint_lt(len, n);
    memcpy(buf, k, len);
    buf[len] = 0;
    return buf;
}

/* inspect --order-check measures the order bench delivers, from the plan alone: the same figures
 * (one implementation), and the stored order's mixing tells a shuffled pack from a sorted one; a batch
 * larger than the epoch leaves labels per batch unmeasured, saying why. */
START_TEST(test_inspect_order_check)
{
    char *ds = clit_path("%s/ds", tmp);
    for (int k = 0; k < 2; k++) {
        free(pack("ds", k ? "source" : "shuffled", "0", &(size_t){ 0 }));
        clit_result b = clit_run("bench", ds, "--epochs", "1", "--json", "--batch-size", "32", "--shuffle-window", "2",
                                 "--seed", "7", "--threads", "1", NULL);
        ck_assert_msg(b.status == 0, "bench: %s", b.err);
        clit_result r = clit_run("inspect", ds, "--json", "--order-check", "--batch-size", "32", "--shuffle-window",
                                 "2", "--seed", "7", NULL);
        ck_assert_msg(r.status == 0, "inspect: %s", r.err);
        const char *o = strstr(r.out, "\"order\":");
        ck_assert_msg(o != NULL, "%s", r.out);
        static const char *const same[] = { "labels_per_batch", "labels_per_batch_uniform", "mean_move",
                                            "mean_move_uniform" };
        for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
            char x[64], y[64];
            ck_assert_msg(strcmp(json_num(o, same[i], x, sizeof x), json_num(b.out, same[i], y, sizeof y)) == 0,
                          "%s: inspect %s, bench %s", same[i], x, y);
        }
        ck_assert_uint_eq(clit_json_u64(o, "samples"), CLASSES * PER_CLASS);
        char v[64];
        double stored = strtod(json_num(o, "stored_labels_per_batch_ratio", v, sizeof v), NULL);
        if (k == 0)
            ck_assert_msg(stored >= 0.9, "shuffled pack, stored order: %.3f", stored);
        else
            ck_assert_msg(stored < 0.5, "source pack, stored order: %.3f", stored);
        clit_result_free(&r);
        clit_result_free(&b);
        r = clit_run("inspect", ds, "--order-check", "--shuffle-window", "2", NULL);
        ck_assert_msg(r.status == 0 && strstr(r.out, "labels per batch") && strstr(r.out, "stored order") &&
                          strstr(r.out, "mean move"), "%s", r.out);
        clit_result_free(&r);
    }
    /* a batch larger than the epoch: no whole batch to count labels in, which is not "no label field" */
    clit_result w = clit_run("inspect", ds, "--order-check", "--batch-size", "100000", NULL);
    ck_assert_msg(w.status == 0 && !strstr(w.out, "no label field") && strstr(w.out, "no whole batch"), "%s", w.out);
    clit_result_free(&w);
    clit_result r = clit_run("inspect", ds, "--seed", "3", NULL); /* an order option without --order-check */
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    /* any rank's share: the figures bench gives that rank, and the shares add up to the epoch */
    uint64_t total = 0;
    for (int rank = 0; rank < 3; rank++) {
        char rs[8];
        snprintf(rs, sizeof rs, "%d", rank);
        clit_result b = clit_run("bench", ds, "--epochs", "1", "--json", "--batch-size", "8", "--shuffle-window", "2",
                                 "--seed", "7", "--threads", "1", "--rank", rs, "--world-size", "3", NULL);
        ck_assert_msg(b.status == 0, "bench: %s", b.err);
        r = clit_run("inspect", ds, "--json", "--order-check", "--batch-size", "8", "--shuffle-window", "2", "--seed",
                     "7", "--rank", rs, "--world-size", "3", NULL);
        ck_assert_msg(r.status == 0, "inspect: %s", r.err);
        const char *o = strstr(r.out, "\"order\":");
        ck_assert_msg(o != NULL, "%s", r.out);
        static const char *const same[] = { "labels_per_batch", "mean_move" };
        for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
            char x[64], y[64];
            ck_assert_msg(strcmp(json_num(o, same[i], x, sizeof x), json_num(b.out, same[i], y, sizeof y)) == 0,
                          "rank %d %s: inspect %s, bench %s", rank, same[i], x, y);
        }
        ck_assert_uint_eq(clit_json_u64(o, "rank"), (uint64_t)rank);
        ck_assert_uint_eq(clit_json_u64(o, "world_size"), 3);
        ck_assert_uint_eq(clit_json_u64(o, "partitions"), 3);
        total += clit_json_u64(o, "samples");
        clit_result_free(&r);
        clit_result_free(&b);
    }
    ck_assert_msg(total <= CLASSES * PER_CLASS && total + 3 * 8 > CLASSES * PER_CLASS, "%llu samples in 3 shares",
                  (unsigned long long)total);
    r = clit_run("inspect", ds, "--order-check", "--rank", "1", "--world-size", "2", "--partitions", "4", NULL);
    ck_assert_msg(r.status == 0 && strstr(r.out, "epoch 0 as rank 1 of 2, 4 partitions gets it"), "%s%s", r.out, r.err);
    clit_result_free(&r);
    r = clit_run("inspect", ds, "--order-check", "--rank", "2", "--world-size", "2", NULL); /* past the ranks */
    ck_assert_msg(r.status == 2 && strstr(r.err, "--rank 2 is not below --world-size 2"), "%d %s", r.status, r.err);
    clit_result_free(&r);
    r = clit_run("inspect", ds, "--rank", "1", "--world-size", "2", NULL); /* without --order-check */
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    free(ds);
}
END_TEST

/* A TSV list naming the same images class by class: shuffled by default as well. */
START_TEST(test_tsv_shuffled)
{
    char *tsv = clit_path("%s/in/list.tsv", tmp);
    FILE *f = fopen(tsv, "w");
    ck_assert_ptr_nonnull(f);
    fputs("\xEF\xBB\xBF" "class00/000.jpg\t0\n", f); /* a byte order mark on the first line */
    for (int c = 0; c < CLASSES; c++)
        for (int i = c ? 0 : 1; i < PER_CLASS; i++)
            fprintf(f, "%sclass%02d/%03d.jpg\t%d\n", i % 7 ? "" : "# a comment\n", c, i, c);
    ck_assert_int_eq(fclose(f), 0);
    char *out = clit_path("%s/tsv", tmp);
    double ratio[2];
    for (int k = 0; k < 2; k++) {
        clit_result r = clit_run("pack", tsv, "-o", out, "-q", "--block-size", "8K", "--overwrite", "--order",
                                 k ? "source" : "shuffled", NULL);
        ck_assert_msg(r.status == 0, "pack: %s", r.err);
        clit_result_free(&r);
        r = clit_run("inspect", out, "--json", NULL);
        ck_assert_uint_eq(clit_json_u64(r.out, "samples"), CLASSES * PER_CLASS);
        clit_result_free(&r);
        ratio[k] = label_ratio(out);
    }
    ck_assert_msg(ratio[0] >= 0.9, "shuffled TSV pack: %.3f of a uniform shuffle's labels per batch", ratio[0]);
    ck_assert_msg(ratio[1] < 0.8, "source-order TSV pack: %.3f", ratio[1]);
    free(out);
    free(tsv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli_pack_order");
    TCase *tc = tcase_create("order");
    tcase_set_timeout(tc, 100);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_shuffled_mixes_classes);
    tcase_add_test(tc, test_tsv_shuffled);
    tcase_add_test(tc, test_inspect_order_check);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
