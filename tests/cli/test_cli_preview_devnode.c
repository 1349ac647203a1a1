/* test_cli_preview_devnode.c - `shardpack preview -o NODE` writes into a character device (a private node of the null device) and leaves the node in place instead of renaming a file over it; skipped where device nodes cannot be made or opened. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "clit_util.h"

static char *tmp, *node;

/* Makes tmp/null, a node of the null device (1, 3). Returns NULL, or why the test cannot run. */
static const char *make_node(void)
{
    static char why[160];
    tmp = clit_tmpdir();
    node = clit_path("%s/null", tmp);
    if (mknod(node, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        snprintf(why, sizeof why, "cannot make a device node (needs CAP_MKNOD): %s", strerror(errno));
        return why;
    }
    int fd = open(node, O_WRONLY);
    if (fd < 0) {
        snprintf(why, sizeof why, "cannot open a device node here (a nodev mount?): %s", strerror(errno));
        return why;
    }
    close(fd);
    return NULL;
}

START_TEST(test_char_device_kept)
{
    char *in = clit_path("%s/in", tmp), *ds = clit_path("%s/ds", tmp);
    clit_write_images(in, 1, 40, 32);
    clit_result r = clit_run("pack", in, "-o", ds, "-q", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);

    r = clit_run("preview", ds, "-o", node, "--image-size", "32", NULL);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "1 samples"), "%s", r.out);
    clit_result_free(&r);
    struct stat st;
    ck_assert(lstat(node, &st) == 0);
    ck_assert_msg(S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3,
                  "the device node was replaced (mode %o, size %lld)", (unsigned)st.st_mode, (long long)st.st_size);
    free(in);
    free(ds);
}
END_TEST

int main(void)
{
    const char *why = make_node();
    if (why) {
        fprintf(stderr, "skipped: %s\n", why);
        clit_rmrf(tmp);
        return 77;
    }
    Suite *s = suite_create("cli-preview-devnode");
    TCase *tc = tcase_create("devnode");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_char_device_kept);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    clit_rmrf(tmp);
    free(tmp);
    free(node);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
