/* test_cli_json.c - --json output of pack, inspect and verify: valid JSON with the promised keys,
 * odd strings (quotes, control characters, UTF-8) escaped correctly. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

static void has_keys(const char *json, const char *const *keys, size_t n)
{
    ck_assert_msg(clit_json_valid(json), "invalid JSON: %s", json);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(clit_json_has_key(json, keys[i]), "no key '%s' in %s", keys[i], json);
}

START_TEST(test_json_keys)
{
    /* Class names with a quote, a backslash, a tab and UTF-8. */
    const char *classes[] = {"a\"b", "back\\slash", "tab\there", "\xc3\xa9t\xc3\xa9"};
    char *in = clit_path("%s/in", tmp);
    clit_mkdir(in);
    for (int i = 0; i < 4; i++) {
        char *d = clit_path("%s/%s", in, classes[i]);
        clit_mkdir(d);
        size_t n;
        unsigned char *j = clit_jpeg(8, 8, (unsigned)i, &n);
        char *p = clit_path("%s/x.jpg", d);
        clit_write(p, j, n);
        free(p);
        free(j);
        free(d);
    }
    char *bad = clit_path("%s/%s/y\x01.jpg", in, classes[0]);
    clit_write(bad, "no", 2);
    char *out = clit_path("%s/out", tmp);

    clit_result r = clit_run("pack", in, "-o", out, "--json", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    const char *pack_keys[] = {"samples", "shards", "blocks", "raw_bytes", "stored_bytes",
                               "file_bytes", "seconds", "skipped", "skipped_items", "output",
                               "path", "reason"};
    has_keys(r.out, pack_keys, sizeof pack_keys / sizeof pack_keys[0]);
    ck_assert_msg(strstr(r.out, "y\\u0001.jpg") != NULL, "%s", r.out);
    ck_assert_uint_eq(r.err[0], 0); /* --json: nothing on stderr */
    clit_result_free(&r);

    r = clit_run("inspect", out, "--json", NULL);
    ck_assert_int_eq(r.status, 0);
    const char *inspect_keys[] = {"samples", "shards", "blocks", "bytes", "raw_bytes", "fields",
                                  "name", "kind", "dtype", "shape", "compression_ratio", "meta",
                                  "labels", "class_names", "counts"};
    has_keys(r.out, inspect_keys, sizeof inspect_keys / sizeof inspect_keys[0]);
    ck_assert_msg(strstr(r.out, "a\\\"b\\nback\\\\slash\\ntab\\there\\n\xc3\xa9t\xc3\xa9"), "%s",
                  r.out);
    clit_result_free(&r);

    r = clit_run("verify", out, "--json", NULL);
    ck_assert_int_eq(r.status, 0);
    const char *verify_keys[] = {"ok", "shards", "blocks", "samples", "bytes", "faults"};
    has_keys(r.out, verify_keys, sizeof verify_keys / sizeof verify_keys[0]);
    clit_result_free(&r);

    free(bad);
    free(in);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-json");
    TCase *tc = tcase_create("json");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_json_keys);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
