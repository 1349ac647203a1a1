/* test_writer.c - writer input errors: empty datasets are not published, schema mismatches and oversized samples (sizes near SIZE_MAX too) are refused and the writer stays usable, metadata rules (keys are UTF-8 text without control characters), the writer's message cleared by a call that succeeds, calls after finish. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"

static sp_schema *make_schema(void)
{
    sp_schema *s = sp_schema_create();
    uint64_t len = 4;
    ck_assert(sp_schema_add(s, "tok", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, &len) == 0);
    ck_assert(sp_schema_add(s, "blob", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    return s;
}

START_TEST(empty_dataset_not_published)
{
    sp_schema *s = make_schema();
    char *parent;
    char *dir = tu_dataset_dir("writer", &parent);
    sp_writer *w = NULL;
    ck_assert_msg(sp_writer_open(dir, s, NULL, &w) == 0, "%s", sp_last_error());
    ck_assert_ptr_nonnull(w);
    ck_assert(sp_writer_set_meta(w, "source", "x", 1) == 0);
    ck_assert_int_eq(sp_writer_finish(w), SP_EINVAL);
    ck_assert_msg(sp_last_error()[0] && strstr(sp_writer_errmsg(w), dir), "message '%s' does not name %s",
                  sp_writer_errmsg(w), dir);
    char *man = tu_join(dir, "manifest.spm");
    ck_assert(!tu_exists(man));
    sp_writer_destroy(w);
    ck_assert(!tu_exists(man));
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    if (tu_exists(dir))
        ck_assert_uint_eq(tu_count_files(dir, NULL), 0);
    sp_dataset *ds = NULL;
    ck_assert(sp_dataset_open(dir, NULL, &ds) != 0);
    free(man);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

static void add_valid(sp_writer *w, uint64_t i)
{
    uint16_t tok[4] = { (uint16_t)i, 1, 2, 3 };
    int64_t label = (int64_t)i * 10;
    char blob[32];
    int n = snprintf(blob, sizeof blob, "sample-%llu", (unsigned long long)i);
    sp_value v[3] = { { tok, sizeof tok }, { blob, (size_t)n }, { &label, 8 } };
    ck_assert_msg(sp_writer_add(w, v, 3) == 0, "%s", sp_last_error());
}

START_TEST(refused_samples_leave_writer_usable)
{
    sp_schema *s = make_schema();
    char *parent;
    char *dir = tu_dataset_dir("writer", &parent);
    sp_params *p = tu_params("max_block_bytes", "8K", "block_size", "4K", "max_sample_bytes", "6K", NULL);
    sp_writer *w;
    ck_assert(sp_writer_open(dir, s, p, &w) == 0);
    uint64_t good = 0;
    uint16_t tok[4] = { 0 };
    int64_t label = 0;
    static uint8_t big[9000];
    add_valid(w, good++);
    for (int round = 0; round < 3; round++) {
        sp_value v[4] = { { tok, sizeof tok }, { "x", 1 }, { &label, 8 }, { "y", 1 } };
        /* too few and too many values */
        ck_assert_int_eq(sp_writer_add(w, v, 2), SP_ESCHEMA);
        ck_assert_msg(strstr(sp_last_error(), "sample"), "%s", sp_last_error());
        ck_assert_int_eq(sp_writer_add(w, v, 4), SP_ESCHEMA);
        ck_assert_int_eq(sp_writer_add(w, v, 0), SP_ESCHEMA);
        add_valid(w, good++);
        /* a fixed field of the wrong size: tokens, then label */
        v[0].size = 6;
        ck_assert_int_eq(sp_writer_add(w, v, 3), SP_ESCHEMA);
        ck_assert_msg(strstr(sp_last_error(), "tok"), "'%s' does not name the field", sp_last_error());
        v[0].size = 0;
        ck_assert_int_eq(sp_writer_add(w, v, 3), SP_ESCHEMA);
        v[0].size = sizeof tok;
        v[2].size = 4;
        ck_assert_int_eq(sp_writer_add(w, v, 3), SP_ESCHEMA);
        ck_assert_msg(strstr(sp_last_error(), "label"), "'%s' does not name the field", sp_last_error());
        v[2].size = 8;
        add_valid(w, good++);
        /* a sample larger than max_sample_bytes (6K), then one that is also above max_block_bytes */
        v[1] = (sp_value){ big, 6500 };
        ck_assert_int_eq(sp_writer_add(w, v, 3), SP_ELIMIT);
        ck_assert_msg(strstr(sp_last_error(), "max_sample_bytes"), "%s", sp_last_error());
        v[1] = (sp_value){ big, 3000 }; /* under both limits (and the block size): accepted */
        ck_assert_int_eq(sp_writer_add(w, v, 3), 0);
        good++;
        v[1] = (sp_value){ big, sizeof big };
        ck_assert_int_eq(sp_writer_add(w, v, 3), SP_ELIMIT);
        ck_assert_msg(strstr(sp_last_error(), "max_sample_bytes") || strstr(sp_last_error(), "max_block_bytes"), "%s",
                      sp_last_error());
        /* NULL data with a size */
        v[1] = (sp_value){ NULL, 5 };
        ck_assert_int_eq(sp_writer_add(w, v, 3), SP_EINVAL);
        ck_assert_int_eq(sp_writer_add(w, NULL, 3), SP_EINVAL);
        /* NULL data with size 0 is an empty value */
        v[1] = (sp_value){ NULL, 0 };
        ck_assert_int_eq(sp_writer_add(w, v, 3), 0);
        good++;
        for (int k = 0; k < 100; k++)
            add_valid(w, good++);
    }
    ck_assert_int_eq(sp_writer_add(NULL, NULL, 0), SP_EINVAL);
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert(sp_writer_stats(w, &st) == 0);
    ck_assert_uint_eq(st.samples, good);
    ck_assert_int_eq(sp_writer_stats(w, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_writer_stats(NULL, &st), SP_EINVAL);
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
    /* after finish: stats and destroy only */
    ck_assert_int_eq(sp_writer_finish(w), SP_ESTATE);
    ck_assert_int_eq(sp_writer_add(w, (sp_value[3]){ { tok, 8 }, { "", 0 }, { &label, 8 } }, 3), SP_ESTATE);
    ck_assert_int_eq(sp_writer_set_meta(w, "k", "v", 1), SP_ESTATE);
    ck_assert(sp_writer_stats(w, &st) == 0);
    ck_assert_uint_eq(st.samples, good);
    sp_writer_destroy(w);

    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_samples(ds), good);
    uint64_t blocks = sp_dataset_num_blocks(ds);
    ck_assert_uint_gt(blocks, 1);
    for (uint64_t b = 0; b < blocks; b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        ck_assert(sp_dataset_block_info(ds, b, &bi) == 0);
        ck_assert_uint_le(bi.raw_bytes, 4096);
    }
    /* the samples that went in, in order */
    uint64_t blk;
    uint32_t row;
    ck_assert(sp_dataset_locate(ds, 1, &blk, &row) == 0);
    sp_block *b;
    ck_assert(sp_dataset_read_block(ds, blk, &b) == 0);
    const void *data;
    size_t size;
    ck_assert(sp_block_get(b, row, 1, &data, &size) == 0);
    ck_assert(size == 8 && memcmp(data, "sample-1", 8) == 0);
    ck_assert(sp_block_get(b, row, 2, &data, &size) == 0);
    int64_t lv;
    memcpy(&lv, data, 8);
    ck_assert_int_eq(lv, 10);
    sp_block_free(b);
    sp_dataset_close(ds);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(s);
}
END_TEST

/* A size near SIZE_MAX (a caller's -1 from ftell or read) is refused naming the field, the writer
 * going on: summed with the other values it must not wrap past 2^64 and slip under the limit. */
START_TEST(size_near_size_max)
{
    sp_schema *s = sp_schema_create();
    ck_assert(sp_schema_add(s, "b", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(s, "c", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    char *parent;
    char *dir = tu_dataset_dir("writer", &parent);
    sp_writer *w;
    ck_assert(sp_writer_open(dir, s, NULL, &w) == 0);
    static char x[64] = "abc";
    int64_t label = 1;
    const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 7, SIZE_MAX - 8, SIZE_MAX - 15, SIZE_MAX - 16, SIZE_MAX - 100,
                             (size_t)1 << 63, SIZE_MAX / 2 + 1 };
    uint64_t good = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        for (int in_c = 0; in_c < 2; in_c++) {
            sp_value v[3] = { { x, in_c ? 16 : sizes[k] }, { x, in_c ? sizes[k] : 16 }, { &label, 8 } };
            int rc = sp_writer_add(w, v, 3);
            ck_assert_msg(rc == SP_ELIMIT, "size %zu: %s: %s", sizes[k], sp_error_name(rc), sp_last_error());
            ck_assert_msg(strstr(sp_last_error(), in_c ? "'c'" : "'b'") && strstr(sp_last_error(), "max_sample_bytes"),
                          "'%s' does not name the field and the limit", sp_last_error());
            sp_value ok[3] = { { x, 3 }, { x, 3 }, { &label, 8 } };
            ck_assert_msg(sp_writer_add(w, ok, 3) == 0, "after size %zu: %s", sizes[k], sp_last_error());
            good++;
        }
    }
    /* two halves that together wrap */
    sp_value v[3] = { { x, SIZE_MAX / 2 + 1 }, { x, SIZE_MAX / 2 + 1 }, { &label, 8 } };
    ck_assert_int_eq(sp_writer_add(w, v, 3), SP_ELIMIT);
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
    sp_writer_destroy(w);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_samples(ds), good);
    sp_dataset_close(ds);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(metadata_rules)
{
    sp_schema *s = make_schema();
    char *parent;
    char *dir = tu_dataset_dir("writer", &parent);
    sp_writer *w;
    ck_assert(sp_writer_open(dir, s, NULL, &w) == 0);
    char key[257];
    memset(key, 'k', sizeof key);
    key[255] = '\0';
    ck_assert_int_eq(sp_writer_set_meta(w, key, "v", 1), 0);
    key[255] = 'k';
    key[256] = '\0';
    ck_assert_int_eq(sp_writer_set_meta(w, key, "v", 1), SP_EINVAL);
    ck_assert_int_eq(sp_writer_set_meta(w, "", "v", 1), SP_EINVAL);
    ck_assert_int_eq(sp_writer_set_meta(w, NULL, "v", 1), SP_EINVAL);
    ck_assert_int_eq(sp_writer_set_meta(w, "nulldata", NULL, 3), SP_EINVAL);
    ck_assert_int_eq(sp_writer_set_meta(NULL, "k", "v", 1), SP_EINVAL);
    size_t max = 16u << 20;
    uint8_t *big = calloc(1, max + 1);
    ck_assert_int_eq(sp_writer_set_meta(w, "big", big, max + 1), SP_EINVAL);
    ck_assert_int_eq(sp_writer_set_meta(w, "big", big, max), 0);
    free(big);
    ck_assert_int_eq(sp_writer_set_meta(w, "empty", NULL, 0), 0);
    ck_assert_int_eq(sp_writer_set_meta(w, "class_names", "cat\ndog", 7), 0);
    ck_assert_int_eq(sp_writer_set_meta(w, "class_names", "cat\ndog\nbird", 12), 0); /* replaces */
    ck_assert_int_eq(sp_writer_set_meta(w, "binary", "\0\1\2\0", 4), 0);
    ck_assert_int_eq(sp_writer_set_meta(w, "big", "small", 5), 0); /* replaces the 16 MiB value */
    add_valid(w, 0);
    ck_assert(sp_writer_finish(w) == 0);
    sp_writer_destroy(w);

    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_meta_count(ds), 5);
    const void *v;
    size_t len;
    ck_assert(sp_dataset_meta_get(ds, "class_names", &v, &len) == 0);
    ck_assert(len == 12 && memcmp(v, "cat\ndog\nbird", 12) == 0);
    ck_assert(sp_dataset_meta_get(ds, "binary", &v, &len) == 0);
    ck_assert(len == 4 && memcmp(v, "\0\1\2\0", 4) == 0);
    ck_assert(sp_dataset_meta_get(ds, "empty", &v, &len) == 0);
    ck_assert_uint_eq(len, 0);
    ck_assert(sp_dataset_meta_get(ds, "big", &v, &len) == 0 && len == 5);
    ck_assert_int_eq(sp_dataset_meta_get(ds, "missing", &v, &len), SP_ENOENT);
    ck_assert_int_eq(sp_dataset_meta_get(ds, NULL, &v, &len), SP_ENOENT);
    for (size_t i = 0; i < sp_dataset_meta_count(ds); i++) {
        const char *k;
        ck_assert(sp_dataset_meta_at(ds, i, &k, &v, &len) == 0);
        const void *v2;
        size_t len2;
        ck_assert(sp_dataset_meta_get(ds, k, &v2, &len2) == 0 && v2 == v && len2 == len);
    }
    ck_assert_int_eq(sp_dataset_meta_at(ds, 5, NULL, NULL, NULL), SP_ERANGE);
    sp_dataset_close(ds);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

/* Whether msg holds a raw control character or a byte that cannot be UTF-8 (0xC0, 0xC1, 0xF5..0xFF). */
static bool raw_bytes_in(const char *msg)
{
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7F || *p == 0xC0 || *p == 0xC1 || *p >= 0xF5)
            return true;
    return false;
}

/* Keys are 1..255 bytes of UTF-8 text without control characters: anything else is refused with
 * SP_EINVAL and a message showing the key escaped. A refusal leaves the writer usable, and the next
 * call that succeeds clears the writer's message as it clears sp_last_error(). */
START_TEST(metadata_key_text)
{
    sp_schema *s = make_schema();
    char *parent;
    char *dir = tu_dataset_dir("writer", &parent);
    sp_writer *w;
    ck_assert(sp_writer_open(dir, s, NULL, &w) == 0);
    static const struct {
        const char *key, *shown;
    } refused[] = {
        { "\xff\x1b]0;pwned\x07\nkey", "\\xff\\x1b]0;pwned\\x07\\x0akey" },
        { "tab\there", "tab\\x09here" },
        { "del\x7f", "del\\x7f" },
        { "c1\xc2\x85", "c1\\xc2\\x85" },          /* U+0085, NEXT LINE */
        { "c1\xc2\x9b[31m", "c1\\xc2\\x9b[31m" },  /* U+009B, the 8-bit CSI */
        { "over\xc0\xaf", "over\\xc0\\xaf" },      /* '/' in two bytes */
        { "sur\xed\xa0\x80", "sur\\xed\\xa0\\x80" }, /* U+D800 */
        { "big\xf4\x90\x80\x80", "big\\xf4\\x90\\x80\\x80" },
        { "cut\xe2\x82", "cut\\xe2\\x82" },
        { "", "" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ck_assert_msg(sp_writer_set_meta(w, refused[i].key, "v", 1) == SP_EINVAL, "key %zu accepted", i);
        const char *msg = sp_writer_errmsg(w);
        ck_assert_str_eq(msg, sp_last_error());
        ck_assert_msg(!raw_bytes_in(msg), "key %zu: raw bytes in the message '%s'", i, msg);
        char want[128];
        snprintf(want, sizeof want, "metadata key '%s' refused", refused[i].shown);
        ck_assert_msg(strstr(msg, want), "key %zu: '%s' lacks '%s'", i, msg, want);
        /* the next call that succeeds clears both messages */
        ck_assert_int_eq(sp_writer_set_meta(w, "ok", "v", 1), 0);
        ck_assert_str_eq(sp_writer_errmsg(w), "");
        ck_assert_str_eq(sp_last_error(), "");
    }
    static const char *const accepted[] = { "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac", "smile \xf0\x9f\x98\x80",
                                            "back\\slash", "~!@#$%^&*()" };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        ck_assert_msg(sp_writer_set_meta(w, accepted[i], "v", 1) == 0, "%s", sp_last_error());
    /* after a refusal, a sample and finish succeed with no message left over */
    ck_assert_int_eq(sp_writer_set_meta(w, "bad\x1b", "v", 1), SP_EINVAL);
    add_valid(w, 0);
    ck_assert_str_eq(sp_writer_errmsg(w), "");
    ck_assert_int_eq(sp_writer_set_meta(w, "", "v", 1), SP_EINVAL);
    ck_assert_int_eq(sp_writer_finish(w), 0);
    ck_assert_str_eq(sp_writer_errmsg(w), "");
    ck_assert_str_eq(sp_last_error(), "");
    /* after finish, a refusal names the key escaped too */
    ck_assert_int_eq(sp_writer_set_meta(w, "late\x1b[2J", "v", 1), SP_ESTATE);
    ck_assert_msg(strstr(sp_writer_errmsg(w), "'late\\x1b[2J'"), "%s", sp_writer_errmsg(w));
    sp_writer_destroy(w);

    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_meta_count(ds), 1 + sizeof accepted / sizeof accepted[0]);
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        ck_assert(sp_dataset_meta_get(ds, accepted[i], NULL, NULL) == 0);
    sp_dataset_close(ds);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(open_arguments)
{
    sp_schema *s = make_schema();
    sp_schema *empty = sp_schema_create();
    char *parent;
    char *dir = tu_dataset_dir("writer", &parent);
    sp_writer *w = (sp_writer *)1;
    ck_assert_int_eq(sp_writer_open(dir, s, NULL, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_writer_open(NULL, s, NULL, &w), SP_EINVAL);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(sp_writer_open("", s, NULL, &w), SP_EINVAL);
    ck_assert_int_eq(sp_writer_open(dir, NULL, NULL, &w), SP_EINVAL);
    ck_assert_int_eq(sp_writer_open(dir, empty, NULL, &w), SP_EINVAL);
    ck_assert_ptr_null(w);
    /* a regular file where the directory should be */
    tu_write_file(dir, "x", 1);
    int rc = sp_writer_open(dir, s, NULL, &w);
    ck_assert_msg(rc == SP_EIO || rc == SP_EEXIST, "%s", sp_error_name(rc));
    ck_assert_ptr_null(w);
    ck_assert_msg(strstr(sp_last_error(), dir), "%s", sp_last_error());
    unlink(dir);
    /* below a file: cannot be created */
    char *below = tu_join(parent, "file/ds");
    char *file = tu_join(parent, "file");
    tu_write_file(file, "x", 1);
    rc = sp_writer_open(below, s, NULL, &w);
    ck_assert_msg(rc == SP_EIO, "%s", sp_error_name(rc));
    sp_writer_destroy(NULL);
    ck_assert_str_eq(sp_writer_errmsg(NULL), "");
    free(below);
    free(file);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(s);
    sp_schema_destroy(empty);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("writer");
    TCase *tc = tu_tcase(s, "writer", 60);
    tcase_add_test(tc, empty_dataset_not_published);
    tcase_add_test(tc, refused_samples_leave_writer_usable);
    tcase_add_test(tc, size_near_size_max);
    tcase_add_test(tc, metadata_rules);
    tcase_add_test(tc, metadata_key_text);
    tcase_add_test(tc, open_arguments);
    return tu_run(s, 0);
}
