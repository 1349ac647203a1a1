/* test_schema.c - sp_schema_add's rules for every field kind (dtype, dimensions), names, duplicates and limits; field queries and equality. */
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

static int add(sp_schema *s, const char *name, int kind, int dtype, uint32_t ndim, const uint64_t *shape)
{
    size_t before = sp_schema_num_fields(s);
    int rc = sp_schema_add(s, name, kind, dtype, ndim, shape);
    if (rc == 0) {
        ck_assert_uint_eq(sp_schema_num_fields(s), before + 1);
    } else {
        ck_assert_uint_eq(sp_schema_num_fields(s), before); /* a refused field leaves no trace */
        ck_assert_msg(sp_last_error()[0], "no message for a refused field");
        if (name && *name && strlen(name) < 40)
            ck_assert_msg(strstr(sp_last_error(), name), "'%s' does not name field %s", sp_last_error(), name);
    }
    return rc;
}

START_TEST(variable_kinds)
{
    sp_schema *s = sp_schema_create();
    uint64_t one = 1;
    for (int kind = SP_FIELD_IMAGE; kind <= SP_FIELD_BYTES; kind += SP_FIELD_BYTES - SP_FIELD_IMAGE) {
        for (int dt = 0; dt <= 14; dt++) {
            char name[32];
            snprintf(name, sizeof name, "k%d_d%d", kind, dt);
            ck_assert_int_eq(add(s, name, kind, dt, 0, NULL), dt == SP_DTYPE_U8 ? 0 : SP_EINVAL);
        }
        char name[32];
        snprintf(name, sizeof name, "k%d_dims", kind);
        ck_assert_int_eq(add(s, name, kind, SP_DTYPE_U8, 1, &one), SP_EINVAL);
    }
    sp_field_info fi = { .struct_size = sizeof fi };
    ck_assert(sp_schema_field(s, 0, &fi) == 0);
    ck_assert_int_eq(fi.kind, SP_FIELD_IMAGE);
    ck_assert_uint_eq(fi.fixed_bytes, 0);
    ck_assert_uint_eq(fi.ndim, 0);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(label_kind)
{
    sp_schema *s = sp_schema_create();
    uint64_t one = 1;
    for (int dt = 0; dt <= 14; dt++) {
        char name[32];
        snprintf(name, sizeof name, "label%d", dt);
        ck_assert_int_eq(add(s, name, SP_FIELD_LABEL, dt, 0, NULL), dt == SP_DTYPE_I64 ? 0 : SP_EINVAL);
    }
    ck_assert_int_eq(add(s, "label_dims", SP_FIELD_LABEL, SP_DTYPE_I64, 1, &one), SP_EINVAL);
    sp_field_info fi = { .struct_size = sizeof fi };
    ck_assert(sp_schema_field(s, 0, &fi) == 0);
    ck_assert_uint_eq(fi.fixed_bytes, 8);
    ck_assert_str_eq(fi.name, "label8");
    sp_schema_destroy(s);
}
END_TEST

START_TEST(tokens_kind)
{
    sp_schema *s = sp_schema_create();
    uint64_t shape[2] = { 2048, 2 };
    for (int dt = 0; dt <= 14; dt++) {
        char name[32];
        snprintf(name, sizeof name, "tok%d", dt);
        bool ok = dt == SP_DTYPE_U16 || dt == SP_DTYPE_U32;
        ck_assert_int_eq(add(s, name, SP_FIELD_TOKENS, dt, 1, shape), ok ? 0 : SP_EINVAL);
    }
    ck_assert_int_eq(add(s, "tok_0d", SP_FIELD_TOKENS, SP_DTYPE_U16, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(add(s, "tok_2d", SP_FIELD_TOKENS, SP_DTYPE_U16, 2, shape), SP_EINVAL);
    uint64_t zero = 0;
    ck_assert_int_eq(add(s, "tok_empty", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, &zero), SP_EINVAL);
    ck_assert_int_eq(sp_schema_add(s, "tok_null", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, NULL), SP_EINVAL);
    sp_field_info fi = { .struct_size = sizeof fi };
    ck_assert(sp_schema_field(s, 0, &fi) == 0);
    ck_assert_int_eq(fi.dtype, SP_DTYPE_U16);
    ck_assert_uint_eq(fi.fixed_bytes, 4096);
    ck_assert(sp_schema_field(s, 1, &fi) == 0);
    ck_assert_uint_eq(fi.fixed_bytes, 8192);
    ck_assert_uint_eq(fi.ndim, 1);
    ck_assert_uint_eq(fi.shape[0], 2048);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(tensor_kind)
{
    sp_schema *s = sp_schema_create();
    uint64_t shape[SP_MAX_DIMS + 1] = { 2, 3, 1, 2, 1, 1, 2, 1, 1 };
    int n = 0;
    for (int dt = 1; dt <= 13; dt++)
        for (uint32_t nd = 0; nd <= SP_MAX_DIMS; nd += 4) {
            char name[32];
            snprintf(name, sizeof name, "t%d_%u", dt, nd);
            ck_assert_int_eq(add(s, name, SP_FIELD_TENSOR, dt, nd, shape), 0);
            sp_field_info fi = { .struct_size = sizeof fi };
            ck_assert(sp_schema_field(s, (size_t)n++, &fi) == 0);
            uint64_t want = sp_dtype_size(dt);
            for (uint32_t d = 0; d < nd; d++)
                want *= shape[d];
            ck_assert_uint_eq(fi.fixed_bytes, want);
            ck_assert_uint_eq(fi.ndim, nd);
            for (uint32_t d = 0; d < nd; d++)
                ck_assert_uint_eq(fi.shape[d], shape[d]);
        }
    ck_assert_int_eq(add(s, "t_9d", SP_FIELD_TENSOR, SP_DTYPE_F32, SP_MAX_DIMS + 1, shape), SP_EINVAL);
    ck_assert_int_eq(add(s, "t_none", SP_FIELD_TENSOR, SP_DTYPE_NONE, 1, shape), SP_EINVAL);
    ck_assert_int_eq(add(s, "t_14", SP_FIELD_TENSOR, 14, 1, shape), SP_EINVAL);
    ck_assert_int_eq(add(s, "t_neg", SP_FIELD_TENSOR, -1, 1, shape), SP_EINVAL);
    ck_assert_int_eq(sp_schema_add(s, "t_null", SP_FIELD_TENSOR, SP_DTYPE_F32, 2, NULL), SP_EINVAL);
    uint64_t zero_dim[3] = { 4, 0, 4 };
    ck_assert_int_eq(add(s, "t_zero", SP_FIELD_TENSOR, SP_DTYPE_F32, 3, zero_dim), SP_EINVAL);
    ck_assert_int_eq(add(s, "kind0", 0, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(add(s, "kind6", 6, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(add(s, "kindneg", -1, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(sample_size_limit)
{
    sp_schema *s = sp_schema_create();
    uint64_t gib = 1ull << 30, over = (1ull << 30) + 1;
    ck_assert_int_eq(add(s, "exactly_1g", SP_FIELD_TENSOR, SP_DTYPE_U8, 1, &gib), 0);
    sp_schema_destroy(s);
    s = sp_schema_create();
    ck_assert_int_eq(add(s, "over_1g", SP_FIELD_TENSOR, SP_DTYPE_U8, 1, &over), SP_ELIMIT);
    uint64_t f64[2] = { 1ull << 14, 1ull << 14 }; /* 2 GiB of float64 */
    ck_assert_int_eq(add(s, "f64", SP_FIELD_TENSOR, SP_DTYPE_F64, 2, f64), SP_ELIMIT);
    uint64_t wrap[3] = { 1ull << 32, 1ull << 32, 1ull << 32 }; /* the product overflows 64 bits */
    ck_assert_int_eq(add(s, "wrap", SP_FIELD_TENSOR, SP_DTYPE_U8, 3, wrap), SP_ELIMIT);
    uint64_t toks = 1ull << 29; /* 2 GiB of uint32 tokens */
    ck_assert_int_eq(add(s, "toks", SP_FIELD_TOKENS, SP_DTYPE_U32, 1, &toks), SP_ELIMIT);
    /* "one sample would exceed 1 GiB": the fields together, not only each one */
    uint64_t part = 600ull << 20;
    ck_assert_int_eq(add(s, "part1", SP_FIELD_TENSOR, SP_DTYPE_U8, 1, &part), 0);
    ck_assert_msg(add(s, "part2", SP_FIELD_TENSOR, SP_DTYPE_U8, 1, &part) == SP_ELIMIT,
                  "two 600 MiB fields (a 1.2 GiB sample) were accepted");
    sp_schema_destroy(s);
}
END_TEST

START_TEST(names)
{
    sp_schema *s = sp_schema_create();
    char longest[SP_MAX_NAME + 2];
    memset(longest, 'n', sizeof longest);
    longest[SP_MAX_NAME] = '\0';
    ck_assert_int_eq(add(s, longest, SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), 0);
    longest[SP_MAX_NAME] = 'n';
    longest[SP_MAX_NAME + 1] = '\0';
    ck_assert_int_eq(add(s, longest, SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(add(s, "Az09_.-", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), 0);
    const char *bad[] = { "", "a b", "a/b", "a\\b", "a\nb", "caf\xc3\xa9", "a:b", "a,b", "a\tb", "\"q\"", "a*" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(add(s, bad[i], SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == SP_EINVAL, "name '%s' accepted", bad[i]);
    ck_assert_int_eq(add(s, "Az09_.-", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), SP_EEXIST);
    ck_assert_int_eq(add(s, "az09_.-", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0); /* case matters */
    ck_assert_int_eq(sp_schema_add(s, NULL, SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_schema_add(NULL, "x", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_schema_find(s, "Az09_.-"), 1);
    ck_assert_int_eq(sp_schema_find(s, "az09_.-"), 2);
    ck_assert_int_eq(sp_schema_find(s, "missing"), SP_ENOENT);
    ck_assert_int_eq(sp_schema_find(s, ""), SP_ENOENT);
    ck_assert_int_eq(sp_schema_find(s, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_schema_find(NULL, "x"), SP_EINVAL);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(field_count_limit)
{
    sp_schema *s = sp_schema_create();
    for (int i = 0; i < SP_MAX_FIELDS; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        ck_assert_int_eq(add(s, name, SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    }
    ck_assert_int_eq(add(s, "one_more", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), SP_ELIMIT);
    ck_assert_uint_eq(sp_schema_num_fields(s), SP_MAX_FIELDS);
    sp_field_info fi = { .struct_size = sizeof fi };
    ck_assert_int_eq(sp_schema_field(s, SP_MAX_FIELDS - 1, &fi), 0);
    ck_assert_str_eq(fi.name, "f63");
    ck_assert_int_eq(sp_schema_field(s, SP_MAX_FIELDS, &fi), SP_ERANGE);
    ck_assert_int_eq(sp_schema_field(s, 0, NULL), SP_EINVAL); /* a NULL struct, as for every filled struct */
    ck_assert_int_eq(sp_schema_field(NULL, 0, &fi), SP_ERANGE);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(equality)
{
    uint64_t a[2] = { 3, 4 }, b[2] = { 4, 3 };
    sp_schema *x = sp_schema_create(), *y = sp_schema_create();
    ck_assert_int_eq(sp_schema_num_fields(x), 0);
    ck_assert_int_eq(sp_schema_num_fields(NULL), 0);
    ck_assert_int_eq(sp_schema_equal(x, y), 1);
    ck_assert(sp_schema_add(x, "t", SP_FIELD_TENSOR, SP_DTYPE_F32, 2, a) == 0);
    ck_assert(sp_schema_add(y, "t", SP_FIELD_TENSOR, SP_DTYPE_F32, 2, a) == 0);
    ck_assert_int_eq(sp_schema_equal(x, y), 1);
    ck_assert(sp_schema_add(x, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert_int_eq(sp_schema_equal(x, y), 0);
    ck_assert(sp_schema_add(y, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert_int_eq(sp_schema_equal(x, y), 1);
    sp_schema *z = sp_schema_create();
    ck_assert(sp_schema_add(z, "t", SP_FIELD_TENSOR, SP_DTYPE_F32, 2, b) == 0);
    ck_assert(sp_schema_add(z, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert_int_eq(sp_schema_equal(x, z), 0); /* shape differs */
    sp_schema *o = sp_schema_create();
    ck_assert(sp_schema_add(o, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert(sp_schema_add(o, "t", SP_FIELD_TENSOR, SP_DTYPE_F32, 2, a) == 0);
    ck_assert_int_eq(sp_schema_equal(x, o), 0); /* order differs */
    sp_schema *d = sp_schema_create();
    ck_assert(sp_schema_add(d, "t", SP_FIELD_TENSOR, SP_DTYPE_I32, 2, a) == 0);
    ck_assert(sp_schema_add(d, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert_int_eq(sp_schema_equal(x, d), 0); /* dtype differs */
    ck_assert_int_eq(sp_schema_equal(x, NULL), 0);
    ck_assert_int_eq(sp_schema_equal(NULL, x), 0);
    sp_schema_destroy(x);
    sp_schema_destroy(y);
    sp_schema_destroy(z);
    sp_schema_destroy(o);
    sp_schema_destroy(d);
    sp_schema_destroy(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tu_tcase(s, "rules", 20);
    tcase_add_test(tc, variable_kinds);
    tcase_add_test(tc, label_kind);
    tcase_add_test(tc, tokens_kind);
    tcase_add_test(tc, tensor_kind);
    tcase_add_test(tc, sample_size_limit);
    tcase_add_test(tc, names);
    tcase_add_test(tc, field_count_limit);
    tcase_add_test(tc, equality);
    return tu_run(s, 0);
}
