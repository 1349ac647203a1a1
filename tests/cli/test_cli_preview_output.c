/* test_cli_preview_output.c - where `shardpack preview -o` writes: "-" is standard output, a FIFO is written into (never replaced), a symbolic link is refused with its target untouched, a regular file is replaced whole through a temporary file that is never left behind; a name of another image format (.png, .WebP) is refused before any work, with nothing written. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clit_util.h"

static char *tmp, *ds;

static void setup(void)
{
    tmp = clit_tmpdir();
    char *in = clit_path("%s/in", tmp);
    clit_write_images(in, 6, 40, 32);
    ds = clit_path("%s/ds", tmp);
    clit_result r = clit_run("pack", in, "-o", ds, "-q", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    free(in);
}

static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
    free(ds);
}

/* A small sheet (a few KiB, well within a pipe's buffer), written to out. */
static clit_result preview_to(const char *out)
{
    return clit_run("preview", ds, "-o", out, "--count", "4", "--image-size", "32", NULL);
}

/* The bytes preview writes into a regular file, for comparison (malloc'd). */
static unsigned char *reference(size_t *len)
{
    char *ref = clit_path("%s/ref.jpg", tmp);
    clit_result r = preview_to(ref);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    unsigned char *data = clit_read(ref, len);
    ck_assert_ptr_nonnull(data);
    ck_assert(*len > 100 && data[0] == 0xFF && data[1] == 0xD8);
    unlink(ref);
    free(ref);
    return data;
}

static int temporaries_in(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, ".shardpack", 10) == 0;
    closedir(d);
    return n;
}

START_TEST(test_stdout)
{
    size_t len;
    unsigned char *want = reference(&len);
    ck_assert(chdir(tmp) == 0); /* where a file named "-" would appear */
    clit_result r = preview_to("-");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_uint_eq(r.outlen, len);
    ck_assert(memcmp(r.out, want, len) == 0);
    /* The summary goes to stderr, so stdout holds nothing but the JPEG. */
    ck_assert_msg(strstr(r.err, "standard output: 4 samples"), "%s", r.err);
    ck_assert(!clit_exists("-"));
    clit_result_free(&r);
    free(want);
}
END_TEST

START_TEST(test_fifo)
{
    size_t len;
    unsigned char *want = reference(&len);
    char *fifo = clit_path("%s/pipe", tmp);
    ck_assert(mkfifo(fifo, 0600) == 0);

    /* No reader: refused at once instead of waiting for one. */
    clit_result r = preview_to(fifo);
    ck_assert_msg(r.status == 1 && strstr(r.err, fifo) && strstr(r.err, "no process is reading"), "exit %d: %s",
                  r.status, r.err);
    clit_result_free(&r);

    /* With a reader: the JPEG arrives through the FIFO, which stays a FIFO. */
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK);
    ck_assert(rfd >= 0);
    fcntl(rfd, F_SETPIPE_SZ, 1 << 20);
    r = preview_to(fifo);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    unsigned char *got = malloc(len + 1);
    size_t n = 0;
    for (ssize_t k; n <= len && (k = read(rfd, got + n, len + 1 - n)) > 0;)
        n += (size_t)k;
    close(rfd);
    ck_assert_msg(n == len && memcmp(got, want, len) == 0, "%zu bytes through the FIFO, want %zu", n, len);
    struct stat st;
    ck_assert(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    ck_assert_int_eq(temporaries_in(tmp), 0);
    free(got);
    free(want);
    free(fifo);
}
END_TEST

START_TEST(test_symlink_refused)
{
    char *target = clit_path("%s/target.jpg", tmp), *link = clit_path("%s/link.jpg", tmp);
    char *dangling = clit_path("%s/dangling.jpg", tmp), *missing = clit_path("%s/missing.jpg", tmp);
    clit_write(target, "keep", 4);
    ck_assert(symlink(target, link) == 0);
    ck_assert(symlink(missing, dangling) == 0);
    const char *links[] = { link, dangling };
    for (int i = 0; i < 2; i++) {
        clit_result r = preview_to(links[i]);
        ck_assert_msg(r.status == 1, "-o %s: exit %d: %s", links[i], r.status, r.err);
        ck_assert_msg(strstr(r.err, links[i]) && strstr(r.err, "is a symbolic link; name the real file"), "%s",
                      r.err);
        ck_assert_uint_eq(r.outlen, 0);
        clit_result_free(&r);
        struct stat st;
        ck_assert_msg(lstat(links[i], &st) == 0 && S_ISLNK(st.st_mode), "%s is no longer a link", links[i]);
    }
    size_t len;
    unsigned char *kept = clit_read(target, &len);
    ck_assert(len == 4 && memcmp(kept, "keep", 4) == 0);
    ck_assert(!clit_exists(missing));
    ck_assert_int_eq(temporaries_in(tmp), 0);
    free(kept);
    free(target);
    free(link);
    free(dangling);
    free(missing);
}
END_TEST

START_TEST(test_regular_file_replaced)
{
    size_t len;
    unsigned char *want = reference(&len);
    char *out = clit_path("%s/old.jpg", tmp), *trailing = clit_path("%s/new.jpg/", tmp);
    clit_write(out, "old contents", 12);
    clit_result r = preview_to(out);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "old.jpg: 4 samples"), "%s", r.out);
    clit_result_free(&r);
    size_t got_len;
    unsigned char *got = clit_read(out, &got_len);
    ck_assert(got_len == len && memcmp(got, want, len) == 0);
    ck_assert_int_eq(temporaries_in(tmp), 0);

    /* A name ending in '/' names a directory, not a file to write. */
    r = preview_to(trailing);
    ck_assert_msg(r.status == 1 && strstr(r.err, "names a directory"), "%s", r.err);
    clit_result_free(&r);
    free(got);
    free(want);
    free(out);
    free(trailing);
}
END_TEST

START_TEST(test_other_format_name_refused)
{
    const char *names[] = { "sheet.png", "sheet.WebP", "sheet.tiff" };
    for (int i = 0; i < 3; i++) {
        char *out = clit_path("%s/%s", tmp, names[i]);
        clit_result r = preview_to(out);
        ck_assert_msg(r.status == 2, "-o %s: exit %d: %s", out, r.status, r.err);
        ck_assert_msg(strstr(r.err, out) && strstr(r.err, "preview writes a JPEG") && strstr(r.err, "name it .jpg"),
                      "%s", r.err);
        clit_result_free(&r);
        ck_assert_msg(!clit_exists(out), "%s was written", out);
        free(out);
    }
    ck_assert_int_eq(temporaries_in(tmp), 0);
    /* a name without an image extension is still a JPEG's */
    char *plain = clit_path("%s/sheet.out", tmp);
    clit_result r = preview_to(plain);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    size_t len;
    unsigned char *data = clit_read(plain, &len);
    ck_assert(len > 100 && data[0] == 0xFF && data[1] == 0xD8);
    free(data);
    free(plain);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-preview-output");
    TCase *tc = tcase_create("output");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stdout);
    tcase_add_test(tc, test_fifo);
    tcase_add_test(tc, test_symlink_refused);
    tcase_add_test(tc, test_regular_file_replaced);
    tcase_add_test(tc, test_other_format_name_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
