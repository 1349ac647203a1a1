/* test_tables.c - the error, dtype and field-kind tables (sp_strerror, sp_error_name, names and sizes, unknown codes) and the version query. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

static const struct {
    int code;
    const char *name, *msg;
} errors[] = {
#define X(name, value, msg) { value, #name, msg },
    SP_ERROR_TABLE(X)
#undef X
};
#define NERRORS (sizeof errors / sizeof errors[0])

START_TEST(error_table)
{
    for (size_t i = 0; i < NERRORS; i++) {
        /* released numbers are dense and never change: 0, -1, -2, ... */
        ck_assert_int_eq(errors[i].code, -(int)i);
        ck_assert_str_eq(sp_error_name(errors[i].code), errors[i].name);
        ck_assert_str_eq(sp_strerror(errors[i].code), errors[i].msg);
        ck_assert(strlen(errors[i].msg) > 3);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(errors[i].msg, errors[j].msg);
    }
    ck_assert_int_eq(SP_OK, 0);
    ck_assert_int_eq(SP_EINVAL, -1);
    ck_assert_int_eq(SP_ECHECKSUM, -9);
    ck_assert_int_eq(SP_ESTATE, -20);
    ck_assert_str_eq(sp_error_name(SP_ECHECKSUM), "SP_ECHECKSUM");
    const int unknown[] = { 1, 2, 100, -(int)NERRORS, -1000, INT_MIN, INT_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_str_eq(sp_strerror(unknown[i]), "unknown error");
        ck_assert_str_eq(sp_error_name(unknown[i]), "SP_UNKNOWN");
    }
}
END_TEST

START_TEST(last_error)
{
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "bad name", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), "bad name"));
    /* a later successful call clears it */
    ck_assert_int_eq(sp_schema_add(s, "good", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), 0);
    ck_assert_str_eq(sp_last_error(), "");
    sp_dataset *ds = NULL;
    ck_assert_int_eq(sp_dataset_open("/nonexistent/shardpack/path.sps", NULL, &ds), SP_ENOENT);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), "/nonexistent/shardpack/path.sps"));
    sp_schema_destroy(s);
}
END_TEST

START_TEST(dtype_table)
{
    static const struct {
        int dtype;
        const char *name;
        size_t size;
    } dt[] = {
#define X(sfx, value, name, size) { value, name, size },
        SP_DTYPE_TABLE(X)
#undef X
    };
    ck_assert_uint_eq(sizeof dt / sizeof dt[0], 13);
    for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++) {
        ck_assert_int_eq(dt[i].dtype, (int)i + 1);
        ck_assert_str_eq(sp_dtype_name(dt[i].dtype), dt[i].name);
        ck_assert_uint_eq(sp_dtype_size(dt[i].dtype), dt[i].size);
        ck_assert_int_eq(sp_dtype_from_name(dt[i].name), dt[i].dtype);
    }
    ck_assert_uint_eq(sp_dtype_size(SP_DTYPE_BF16), 2);
    ck_assert_uint_eq(sp_dtype_size(SP_DTYPE_F64), 8);
    const int bad[] = { SP_DTYPE_NONE, 14, -1, 1000 };
    for (size_t i = 0; i < 4; i++) {
        ck_assert_ptr_null(sp_dtype_name(bad[i]));
        ck_assert_uint_eq(sp_dtype_size(bad[i]), 0);
    }
    const char *bad_names[] = { "f4", "float", "UINT8", "uint8 ", "", "int" };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        ck_assert_int_eq(sp_dtype_from_name(bad_names[i]), SP_EINVAL);
    ck_assert_int_eq(sp_dtype_from_name(NULL), SP_EINVAL);
}
END_TEST

START_TEST(kind_table)
{
    const char *names[] = { NULL, "image", "label", "tokens", "tensor", "bytes" };
    for (int k = 1; k <= 5; k++) {
        ck_assert_str_eq(sp_field_kind_name(k), names[k]);
        ck_assert_int_eq(sp_field_kind_from_name(names[k]), k);
    }
    ck_assert_ptr_null(sp_field_kind_name(0));
    ck_assert_ptr_null(sp_field_kind_name(6));
    ck_assert_int_eq(sp_field_kind_from_name("Image"), SP_EINVAL);
    ck_assert_int_eq(sp_field_kind_from_name(""), SP_EINVAL);
    ck_assert_int_eq(sp_field_kind_from_name(NULL), SP_EINVAL);
}
END_TEST

START_TEST(version)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", SP_VERSION_MAJOR, SP_VERSION_MINOR, SP_VERSION_PATCH);
    ck_assert_str_eq(sp_version(), want);
    ck_assert_int_eq(sp_abi_version(), SP_ABI_VERSION);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tables");
    TCase *tc = tu_tcase(s, "tables", 10);
    tcase_add_test(tc, error_table);
    tcase_add_test(tc, last_error);
    tcase_add_test(tc, dtype_table);
    tcase_add_test(tc, kind_table);
    tcase_add_test(tc, version);
    return tu_run(s, 0);
}
