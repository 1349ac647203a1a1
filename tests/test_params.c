/* test_params.c - the parameter table: defaults, bounds, lookup by name, and parsing of sizes, booleans and enum names with messages that name the bounds. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

START_TEST(table_is_well_formed)
{
    int n = sp_param_count();
    ck_assert_int_eq(n, SP_PARAM_COUNT_);
    ck_assert_int_gt(n, 0);
    for (int k = 0; k < n; k++) {
        sp_param_info pi = { .struct_size = sizeof pi };
        ck_assert(sp_param_describe(k, &pi) == 0);
        ck_assert_int_eq(pi.key, k);
        ck_assert_msg(pi.name && pi.name[0], "parameter %d has no name", k);
        ck_assert_msg(pi.doc && strlen(pi.doc) > 10, "parameter %s has no doc", pi.name);
        ck_assert(pi.type >= SP_PTYPE_INT && pi.type <= SP_PTYPE_STRING);
        ck_assert_msg(pi.type == SP_PTYPE_FLOAT3 || (pi.min <= pi.def && pi.def <= pi.max),
                      "%s: default outside its bounds", pi.name);
        ck_assert_int_eq(sp_param_lookup(pi.name), k);
        if (pi.type == SP_PTYPE_BOOL) /* -1 is "auto" where a boolean has one */
            ck_assert((pi.min == 0 || pi.min == -1) && pi.max == 1);
        if (pi.type == SP_PTYPE_ENUM) {
            ck_assert_ptr_nonnull(pi.choices);
            int choices = 1;
            for (const char *c = pi.choices; *c; c++)
                choices += *c == '|';
            ck_assert_int_eq(pi.min, 0);
            ck_assert_int_eq(pi.max, choices - 1);
        } else if (pi.type == SP_PTYPE_FLOAT3) { /* the default, written a,b,c, inside the bounds */
            double v[3];
            ck_assert_ptr_nonnull(pi.choices);
            ck_assert_int_eq(sp_params_get_float3(NULL, k, v), 0);
            for (int i = 0; i < 3; i++)
                ck_assert(v[i] * 1000 >= (double)pi.min && v[i] * 1000 <= (double)pi.max);
        } else {
            ck_assert_ptr_null(pi.choices);
        }
        for (int j = 0; j < k; j++) {
            sp_param_info pj = { .struct_size = sizeof pj };
            ck_assert(sp_param_describe(j, &pj) == 0);
            ck_assert_str_ne(pi.name, pj.name);
        }
    }
    sp_param_info pi = { .struct_size = sizeof pi };
    ck_assert_int_eq(sp_param_describe(-1, &pi), SP_EINVAL);
    ck_assert_int_eq(sp_param_describe(n, &pi), SP_EINVAL);
    ck_assert_int_eq(sp_param_describe(0, NULL), SP_EINVAL);
}
END_TEST

START_TEST(defaults)
{
    sp_params *p = sp_params_create();
    ck_assert_ptr_nonnull(p);
    for (int k = 0; k < sp_param_count(); k++) {
        sp_param_info pi = { .struct_size = sizeof pi };
        ck_assert(sp_param_describe(k, &pi) == 0);
        ck_assert_int_eq(sp_params_get(p, k), pi.def);
        ck_assert_int_eq(sp_params_get(NULL, k), pi.def);
    }
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_BLOCK_SIZE), 1 * SP_MIB);
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_SHARD_SIZE), 256 * SP_MIB);
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_COMPRESS), SP_COMPRESS_AUTO);
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_OVERWRITE), 0);
    ck_assert_int_eq(sp_params_get(p, -1), 0);
    ck_assert_int_eq(sp_params_get(p, sp_param_count()), 0);
    sp_params_destroy(p);
    sp_params_destroy(NULL);
}
END_TEST

START_TEST(bounds)
{
    sp_params *p = sp_params_create();
    for (int k = 0; k < sp_param_count(); k++) {
        sp_param_info pi = { .struct_size = sizeof pi };
        ck_assert(sp_param_describe(k, &pi) == 0);
        if (pi.type == SP_PTYPE_FLOAT3 || pi.type == SP_PTYPE_STRING) { /* integers are refused; see float3, strings */
            ck_assert_int_eq(sp_params_set(p, k, 0), SP_EINVAL);
            continue;
        }
        ck_assert_int_eq(sp_params_set(p, k, pi.min), 0);
        ck_assert_int_eq(sp_params_get(p, k), pi.min);
        ck_assert_int_eq(sp_params_set(p, k, pi.max), 0);
        ck_assert_int_eq(sp_params_get(p, k), pi.max);
        if (pi.min > INT64_MIN) {
            ck_assert_int_eq(sp_params_set(p, k, pi.min - 1), SP_ERANGE);
            ck_assert_msg(strstr(sp_last_error(), pi.name), "'%s' does not name %s", sp_last_error(), pi.name);
        }
        if (pi.max == INT64_MAX)
            continue;
        ck_assert_int_eq(sp_params_set(p, k, pi.max + 1), SP_ERANGE);
        ck_assert_msg(strstr(sp_last_error(), pi.name), "'%s' does not name %s", sp_last_error(), pi.name);
        if (pi.type != SP_PTYPE_ENUM) {
            char lo[32], hi[32];
            snprintf(lo, sizeof lo, "%" PRId64, pi.min);
            snprintf(hi, sizeof hi, "%" PRId64, pi.max);
            ck_assert_msg(strstr(sp_last_error(), lo) && strstr(sp_last_error(), hi), "'%s' lacks bounds %s..%s",
                          sp_last_error(), lo, hi);
        } else {
            ck_assert_msg(strstr(sp_last_error(), pi.choices), "'%s' lacks choices", sp_last_error());
        }
        ck_assert_int_eq(sp_params_get(p, k), pi.max); /* a refused value changes nothing */
        if (pi.min > INT64_MIN)
            ck_assert_int_eq(sp_params_set(p, k, INT64_MIN), SP_ERANGE);
        ck_assert_int_eq(sp_params_set(p, k, INT64_MAX), SP_ERANGE);
    }
    ck_assert_int_eq(sp_params_set(p, -1, 0), SP_EINVAL);
    ck_assert_int_eq(sp_params_set(p, sp_param_count(), 0), SP_EINVAL);
    ck_assert_int_eq(sp_params_set(NULL, SP_PARAM_LEVEL, 1), SP_EINVAL);
    sp_params_destroy(p);
}
END_TEST

static int64_t set_str(sp_params *p, const char *name, const char *value, int expect)
{
    int rc = sp_params_set_str(p, name, value);
    ck_assert_msg(rc == expect, "%s=%s: %s, expected %s (%s)", name, value, sp_error_name(rc), sp_error_name(expect),
                  sp_last_error());
    return sp_params_get(p, sp_param_lookup(name));
}

/* Formats v bytes as the shortest exact string with a K/M/G/T suffix, or plain digits. */
static void size_str(int64_t v, char *out, size_t n)
{
    const char *sfx = "KMGT";
    int shift = 0;
    while (shift < 4 && v != 0 && v % (1LL << (10 * (shift + 1))) == 0)
        shift++;
    if (shift)
        snprintf(out, n, "%lld%c", (long long)(v >> (10 * shift)), sfx[shift - 1]);
    else
        snprintf(out, n, "%lld", (long long)v);
}

START_TEST(parse_sizes)
{
    sp_params *p = sp_params_create();
    struct {
        const char *s;
        int64_t v;
    } ok[] = {
        { "65536", 64 * SP_KIB }, { "64K", 64 * SP_KIB }, { "64k", 64 * SP_KIB }, { "1M", SP_MIB },
        { "1MiB", SP_MIB },       { "1mb", SP_MIB },      { "2G", 2 * SP_GIB },   { "1T", 1024 * SP_GIB },
        { "1024G", 1024 * SP_GIB }, { "1kib", SP_KIB },
    };
    sp_param_info pi = { .struct_size = sizeof pi };
    ck_assert(sp_param_describe(SP_PARAM_SHARD_SIZE, &pi) == 0);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int expect = ok[i].v < pi.min || ok[i].v > pi.max ? SP_ERANGE : 0;
        int rc = sp_params_set_str(p, "shard_size", ok[i].s);
        ck_assert_msg(rc == expect, "shard_size=%s: %s", ok[i].s, sp_error_name(rc));
        if (!rc)
            ck_assert_int_eq(sp_params_get(p, SP_PARAM_SHARD_SIZE), ok[i].v);
    }
    ck_assert_int_eq(set_str(p, "block-size", "8K", 0), 8 * SP_KIB); /* '-' for '_' */
    ck_assert_int_eq(set_str(p, "block_size", "4096", 0), 4096);
    const char *bad[] = { "", "K", "1.5M", "12Q", "1 M", "1MM", "0x10", "--1", "1e3", "64Kx" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_str(p, "shard_size", bad[i], SP_EINVAL);
        ck_assert_msg(strstr(sp_last_error(), "shard_size"), "'%s' does not name the parameter", sp_last_error());
    }
    /* just outside the bounds, whatever they are, and far outside */
    for (int k = 0; k < sp_param_count(); k++) {
        ck_assert(sp_param_describe(k, &pi) == 0);
        if (pi.type != SP_PTYPE_SIZE)
            continue;
        char s[64];
        if (pi.min > 0) {
            size_str(pi.min - 1, s, sizeof s);
            set_str(p, pi.name, s, SP_ERANGE);
            size_str(pi.min, s, sizeof s);
            ck_assert_int_eq(set_str(p, pi.name, s, 0), pi.min);
        }
        size_str(pi.max + 1, s, sizeof s);
        set_str(p, pi.name, s, SP_ERANGE);
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "%lld", (long long)pi.min);
        snprintf(hi, sizeof hi, "%lld", (long long)pi.max);
        ck_assert_msg(strstr(sp_last_error(), pi.name) && strstr(sp_last_error(), lo) && strstr(sp_last_error(), hi),
                      "'%s' lacks the name or the bounds", sp_last_error());
        size_str(pi.max, s, sizeof s);
        ck_assert_int_eq(set_str(p, pi.name, s, 0), pi.max);
        set_str(p, pi.name, "-1", SP_ERANGE);
        set_str(p, pi.name, "-64K", SP_ERANGE);
        set_str(p, pi.name, "99999999999T", SP_ERANGE);
        ck_assert_msg(strstr(sp_last_error(), pi.name) && strstr(sp_last_error(), hi), "'%s' lacks the bounds",
                      sp_last_error());
        /* larger than int64 altogether: out of bounds too, not unparsable */
        set_str(p, pi.name, "99999999999999999999", SP_ERANGE);
        ck_assert_int_eq(sp_params_get(p, k), pi.max);
    }
    /* integers take no suffix */
    ck_assert_int_eq(set_str(p, "level", "-7", 0), -7);
    ck_assert_int_eq(set_str(p, "level", "22", 0), 22);
    set_str(p, "level", "23", SP_ERANGE);
    ck_assert_msg(strstr(sp_last_error(), "-7") && strstr(sp_last_error(), "22"), "%s", sp_last_error());
    set_str(p, "level", "1K", SP_EINVAL);
    set_str(p, "threads", "two", SP_EINVAL);
    ck_assert_int_eq(set_str(p, "threads", "256", 0), 256);
    sp_params_destroy(p);
}
END_TEST

START_TEST(parse_bools_and_enums)
{
    sp_params *p = sp_params_create();
    const char *yes[] = { "1", "true", "yes", "on", "TRUE", "Yes" };
    const char *no[] = { "0", "false", "no", "off", "FALSE", "Off" };
    for (size_t i = 0; i < 6; i++) {
        ck_assert_int_eq(set_str(p, "overwrite", yes[i], 0), 1);
        ck_assert_int_eq(set_str(p, "overwrite", no[i], 0), 0);
    }
    const char *bad[] = { "", "2", "maybe", "truex", "y" };
    for (size_t i = 0; i < 5; i++)
        set_str(p, "overwrite", bad[i], SP_EINVAL);
    ck_assert_int_eq(set_str(p, "compress", "zstd", 0), SP_COMPRESS_ZSTD);
    ck_assert_int_eq(set_str(p, "compress", "none", 0), SP_COMPRESS_NONE);
    ck_assert_int_eq(set_str(p, "compress", "auto", 0), SP_COMPRESS_AUTO);
    const char *badc[] = { "lz4", "", "zst", "zstdx", "1", "auto|zstd" };
    for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++) {
        set_str(p, "compress", badc[i], SP_EINVAL);
        ck_assert_msg(strstr(sp_last_error(), "auto|zstd|none"), "'%s' lacks the choices", sp_last_error());
    }
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_COMPRESS), SP_COMPRESS_AUTO);
    sp_params_destroy(p);
}
END_TEST

START_TEST(unknown_names)
{
    sp_params *p = sp_params_create();
    const char *names[] = { "", "blocksize", "block_size_", "BLOCK_SIZE", "shard", "compression" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ck_assert_int_eq(sp_param_lookup(names[i]), SP_ENOENT);
        ck_assert_int_eq(sp_params_set_str(p, names[i], "1"), SP_ENOENT);
        ck_assert_msg(strstr(sp_last_error(), names[i]), "%s", sp_last_error());
    }
    ck_assert_int_eq(sp_param_lookup(NULL), SP_ENOENT);
    ck_assert_int_eq(sp_params_set_str(p, NULL, "1"), SP_ENOENT);
    ck_assert_int_eq(sp_params_set_str(p, "level", NULL), SP_EINVAL);
    ck_assert_int_eq(sp_params_set_str(NULL, "level", "1"), SP_EINVAL);
    ck_assert_int_eq(sp_param_lookup("max-block-bytes"), SP_PARAM_MAX_BLOCK_BYTES);
    sp_params_destroy(p);
}
END_TEST

/* device: auto, cpu, cuda, cuda:N; anything else refused with the forms it takes. */
START_TEST(device)
{
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_DEVICE), SP_DEVICE_CPU);
    static const struct {
        const char *s;
        int64_t v;
    } ok[] = { { "auto", SP_DEVICE_AUTO }, { "cpu", SP_DEVICE_CPU }, { "cuda", 0 }, { "cuda:0", 0 },
               { "CUDA:7", 7 }, { "cuda:1023", 1023 } };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ck_assert_msg(sp_params_set_str(p, "device", ok[i].s) == 0, "%s: %s", ok[i].s, sp_last_error());
        ck_assert_int_eq(sp_params_get(p, SP_PARAM_DEVICE), ok[i].v);
    }
    static const char *const bad[] = { "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", "cuda:1 ", "-1", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(sp_params_set_str(p, "device", bad[i]), SP_EINVAL);
        ck_assert_msg(strstr(sp_last_error(), "cuda:N"), "'%s' does not say what device takes", sp_last_error());
    }
    ck_assert_int_eq(sp_params_set_str(p, "device", "cuda:1024"), SP_ERANGE);
    ck_assert_int_eq(sp_params_set_str(p, "device", "cuda:99999999999999999999"), SP_ERANGE);
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_DEVICE), 1023); /* a refused value changes nothing */
    sp_params_destroy(p);
}
END_TEST

START_TEST(float3)
{
    sp_params *p = sp_params_create();
    double v[3];
    ck_assert_int_eq(sp_params_get_float3(p, SP_PARAM_MEAN, v), 0);
    ck_assert(v[0] == 0.485 && v[1] == 0.456 && v[2] == 0.406);
    ck_assert_int_eq(sp_params_get_float3(p, SP_PARAM_STD, v), 0);
    ck_assert(v[0] == 0.229 && v[1] == 0.224 && v[2] == 0.225);
    ck_assert_int_eq(sp_params_set_str(p, "mean", "0.5, 0.25 ,1"), 0);
    ck_assert_int_eq(sp_params_get_float3(p, SP_PARAM_MEAN, v), 0);
    ck_assert(v[0] == 0.5 && v[1] == 0.25 && v[2] == 1);
    static const char *const bad[] = { "", "1", "1,2", "1,2,3,4", "a,b,c", "1;2;3", "nan,1,1", "inf,1,1", "1,2,3x" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(sp_params_set_str(p, "std", bad[i]) == SP_EINVAL, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(sp_last_error(), "std"), "message: %s", sp_last_error());
    }
    ck_assert_int_eq(sp_params_set_str(p, "std", "0,1,1"), SP_ERANGE); /* a zero std divides by zero */
    ck_assert_msg(strstr(sp_last_error(), "std") && strstr(sp_last_error(), "0.001"), "message: %s", sp_last_error());
    ck_assert_int_eq(sp_params_set_str(p, "mean", "11,0,0"), SP_ERANGE);
    const double ok[3] = { 0.1, 0.2, 0.3 };
    ck_assert_int_eq(sp_params_set_float3(p, SP_PARAM_STD, ok), 0);
    ck_assert_int_eq(sp_params_get_float3(p, SP_PARAM_STD, v), 0);
    ck_assert(v[0] == 0.1 && v[1] == 0.2 && v[2] == 0.3);
    ck_assert_int_eq(sp_params_set_float3(p, SP_PARAM_SEED, ok), SP_EINVAL);
    ck_assert_int_eq(sp_params_get_float3(p, SP_PARAM_SEED, v), SP_EINVAL);
    ck_assert_int_eq(sp_params_get(p, SP_PARAM_MEAN), 0);
    sp_params_destroy(p);
}
END_TEST

/* A string parameter: "" by default, an owned copy of what was set (a set's copy is its own), ""
 * unsets it, a value too long is refused naming the limit; the other getters refuse it. */
START_TEST(strings)
{
    sp_params *p = sp_params_create();
    ck_assert_str_eq(sp_params_get_str(p, SP_PARAM_TRACE), "");
    ck_assert_str_eq(sp_params_get_str(NULL, SP_PARAM_TRACE), "");
    char value[64];
    snprintf(value, sizeof value, "/tmp/a trace %%p.json");
    ck_assert_int_eq(sp_params_set_str(p, "trace", value), 0);
    value[0] = 'X'; /* the set keeps its own copy */
    ck_assert_str_eq(sp_params_get_str(p, SP_PARAM_TRACE), "/tmp/a trace %p.json");
    ck_assert_int_eq(sp_params_set_str(p, "trace", ""), 0);
    ck_assert_str_eq(sp_params_get_str(p, SP_PARAM_TRACE), "");
    char *longv = malloc(5000);
    memset(longv, 'a', 4999);
    longv[4999] = '\0';
    ck_assert_int_eq(sp_params_set_str(p, "trace", longv), SP_ERANGE);
    ck_assert_msg(strstr(sp_last_error(), "trace") && strstr(sp_last_error(), "4095"), "%s", sp_last_error());
    longv[4096] = '\0';
    ck_assert_int_eq(sp_params_set_str(p, "trace", longv), SP_ERANGE);
    longv[4095] = '\0';
    ck_assert_int_eq(sp_params_set_str(p, "trace", longv), 0);
    ck_assert_uint_eq(strlen(sp_params_get_str(p, SP_PARAM_TRACE)), 4095);
    free(longv);
    ck_assert_ptr_null(sp_params_get_str(p, SP_PARAM_LEVEL));
    ck_assert_ptr_null(sp_params_get_str(p, -1));
    ck_assert_int_eq(sp_params_set(p, SP_PARAM_TRACE, 0), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "sp_params_set_str"), "%s", sp_last_error());
    sp_params_destroy(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("params");
    TCase *tc = tu_tcase(s, "params", 20);
    tcase_add_test(tc, table_is_well_formed);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, bounds);
    tcase_add_test(tc, strings);
    tcase_add_test(tc, float3);
    tcase_add_test(tc, device);
    tcase_add_test(tc, parse_sizes);
    tcase_add_test(tc, parse_bools_and_enums);
    tcase_add_test(tc, unknown_names);
    return tu_run(s, 0);
}
