/* test_cli_usage.c - usage errors exit 2 with a hint; help and --version; table-derived options. */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "shardpack.h"

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

#define EXPECT(status_, ...)                                                                      \
    do {                                                                                          \
        clit_result r_ = clit_run(__VA_ARGS__, NULL);                                             \
        ck_assert_msg(r_.status == (status_), "exit %d, want %d: %s", r_.status, (status_),     \
                      r_.err);                                                                    \
        if ((status_) != 0)                                                                       \
            ck_assert_msg(strncmp(r_.err, "shardpack: ", 11) == 0 || (status_) == 2, "%s",      \
                          r_.err);                                                                \
        clit_result_free(&r_);                                                                    \
    } while (0)

START_TEST(test_usage_errors)
{
    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/out", tmp);
    clit_mkdir(in);
    clit_result r = clit_run(NULL, NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    EXPECT(2, "frobnicate");
    EXPECT(2, "--frobnicate");
    EXPECT(2, "pack");
    EXPECT(2, "pack", in);                     /* no -o */
    EXPECT(2, "pack", "-o", out);              /* no source */
    EXPECT(2, "pack", in, "-o");               /* -o without value */
    EXPECT(2, "pack", in, "-o", out, "--level", "99");
    EXPECT(2, "pack", in, "-o", out, "--compress", "lz4");
    EXPECT(2, "pack", in, "-o", out, "--block-size", "12Q");
    EXPECT(2, "pack", in, "-o", out, "--shard-size", "1");
    EXPECT(2, "pack", in, "-o", out, "--from", "zip");
    EXPECT(2, "pack", in, "-o", out, "--seq-len", "8");  /* not llm.c */
    EXPECT(2, "pack", in, in, "-o", out);                /* two ImageFolders */
    char *weird = clit_path("%s/x.weird", tmp);
    clit_write(weird, "?", 1);
    EXPECT(2, "pack", weird, "-o", out);                 /* kind cannot be detected */
    free(weird);
    EXPECT(2, "inspect");
    EXPECT(2, "verify", "a", "b");
    EXPECT(2, "cat", out);                               /* no --index */
    EXPECT(2, "cat", out, "--index", "-1");
    EXPECT(2, "help", "nope");

    r = clit_run("pack", in, "-o", out, "--levle", "3", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "--level") && strstr(r.err, "--help"), "%s", r.err);
    clit_result_free(&r);

    /* The library explains the bounds. */
    r = clit_run("pack", in, "-o", out, "--level=99", NULL);
    ck_assert_msg(strstr(r.err, "level") && strstr(r.err, "22"), "%s", r.err);
    clit_result_free(&r);

    EXPECT(2, "pack", in, "-o", out, "--batch-size", "8"); /* a loader parameter */
    EXPECT(2, "inspect", out, "--level", "3");             /* a writer parameter */

    ck_assert(!clit_exists(out));
    free(in);
    free(out);
}
END_TEST

/* `shardpack CMD --help` lists every parameter of the given scope as --its-name, and (with_doc)
 * the start of its doc. */
static void check_param_options(const char *cmd, int scope, bool with_doc)
{
    clit_result r = clit_run(cmd, "--help", NULL);
    ck_assert_int_eq(r.status, 0);
    for (int k = 0; k < sp_param_count(); k++) {
        sp_param_info info = { .struct_size = sizeof info };
        ck_assert_int_eq(sp_param_describe(k, &info), 0);
        if (!(info.scope & scope))
            continue;
        char opt[96];
        size_t i = 0;
        for (; info.name[i]; i++)
            opt[i] = info.name[i] == '_' ? '-' : info.name[i];
        opt[i] = 0;
        char *want = clit_path("--%s", opt);
        ck_assert_msg(strstr(r.out, want) != NULL, "%s --help lacks %s", cmd, want);
        /* The help wraps long docs; their start is on the option's line. */
        char start[13];
        snprintf(start, sizeof start, "%s", info.doc);
        ck_assert_msg(!with_doc || strstr(r.out, start) != NULL, "%s --help lacks the doc of %s", cmd, want);
        free(want);
    }
    clit_result_free(&r);
}

START_TEST(test_help_and_version)
{
    clit_result r = clit_run("--version", NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert(strstr(r.out, sp_version()) != NULL);
    clit_result_free(&r);

    EXPECT(0, "help");
    EXPECT(0, "--help");
    const char *cmds[] = {"pack", "inspect", "verify", "cat", "bench", "preview"};
    for (int i = 0; i < 6; i++) {
        EXPECT(0, "help", cmds[i]);
        EXPECT(0, cmds[i], "--help");
    }

    /* Every writer parameter of the library's table is an option of pack, with its doc; every
     * loader parameter (the image stage's included) is an option of bench. */
    check_param_options("pack", SP_SCOPE_WRITE, true);
    check_param_options("bench", SP_SCOPE_LOAD, false);
}
END_TEST

/* The commands README.md says take --json do; cat, which does not, says so in its help. */
START_TEST(test_json_option)
{
    const char *with[] = {"pack", "inspect", "verify", "bench"};
    for (size_t i = 0; i < 4; i++) {
        clit_result r = clit_run(with[i], "--help", NULL);
        ck_assert_msg(r.status == 0 && strstr(r.out, "  --json"), "%s --help: %s", with[i], r.out);
        clit_result_free(&r);
    }
    clit_result r = clit_run("cat", "--help", NULL);
    ck_assert_msg(!strstr(r.out, "  --json") && strstr(r.out, "There is no --json") &&
                      strstr(r.out, "inspect PATH --json"),
                  "%s", r.out);
    clit_result_free(&r);
    r = clit_run("cat", "x", "--json", NULL);
    ck_assert_msg(r.status == 2 && strstr(r.err, "'--json'") && strstr(r.err, "cat --help"), "%s", r.err);
    clit_result_free(&r);
}
END_TEST

START_TEST(test_man_page_lists_parameters)
{
    const char *man = getenv("SHARDPACK_MAN");
    if (!man || !*man)
        return;
    size_t len;
    char *text = (char *)clit_read(man, &len);
    ck_assert_msg(text != NULL, "cannot read %s", man);
    for (int k = 0; k < sp_param_count(); k++) {
        sp_param_info info = { .struct_size = sizeof info };
        ck_assert_int_eq(sp_param_describe(k, &info), 0);
        /* every parameter: pack takes the writer's, bench and preview the loader's */
        /* roff spells "--shard-size" as "\-\-shard\-size". */
        char want[128] = "\\-\\-";
        size_t n = 4;
        for (size_t i = 0; info.name[i] && n + 3 < sizeof want; i++) {
            if (info.name[i] == '_') {
                want[n++] = '\\';
                want[n++] = '-';
            } else {
                want[n++] = info.name[i];
            }
        }
        want[n] = 0;
        ck_assert_msg(strstr(text, want) != NULL, "shardpack.1 does not document %s", want);
    }
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-usage");
    TCase *tc = tcase_create("usage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_help_and_version);
    tcase_add_test(tc, test_man_page_lists_parameters);
    tcase_add_test(tc, test_json_option);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
