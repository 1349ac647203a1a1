/* test_cli_pack_links.c - `shardpack pack` refuses a symbolic link at -o or at its staging name, naming it, and leaves the linked dataset byte-identical; an -o that exists and is not a directory is refused before any input is read. */
#include <check.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clit_util.h"

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

static uint32_t token_of(uint32_t k, uint32_t arg) { return (k * 7 + arg) % 50000; }

/* Every file of dir as "name size bytes..." one after another, in name order: two snapshots are
 * equal exactly when the directory holds the same files with the same bytes. */
static char *snapshot(const char *dir, size_t *len)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    ck_assert_msg(n >= 0, "%s: cannot list", dir);
    char *buf = NULL;
    *len = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char *path = clit_path("%s/%s", dir, names[i]->d_name);
            size_t size;
            unsigned char *data = clit_read(path, &size);
            ck_assert_msg(data != NULL, "%s: cannot read", path);
            char head[300];
            int hl = snprintf(head, sizeof head, "%s %zu ", names[i]->d_name, size);
            buf = realloc(buf, *len + (size_t)hl + size);
            ck_assert_ptr_nonnull(buf);
            memcpy(buf + *len, head, (size_t)hl);
            memcpy(buf + *len + hl, data, size);
            *len += (size_t)hl + size;
            free(data);
            free(path);
        }
        free(names[i]);
    }
    free(names);
    return buf;
}

static int is_link(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* Packs tok.bin to out (with --overwrite when asked): exit status 1, the error names path as a
 * symbolic link. */
static void pack_refused(const char *bin, const char *out, int overwrite, const char *path)
{
    clit_result r = overwrite ? clit_run("pack", bin, "-o", out, "--seq-len", "8", "--overwrite", NULL)
                              : clit_run("pack", bin, "-o", out, "--seq-len", "8", NULL);
    ck_assert_msg(r.status == 1, "pack -o %s: status %d: %s", out, r.status, r.err);
    char *want = clit_path("%s: is a symbolic link", path);
    ck_assert_msg(strstr(r.err, want) != NULL, "error lacks '%s': %s", want, r.err);
    free(want);
    clit_result_free(&r);
}

START_TEST(test_links)
{
    char *vdir = clit_path("%s/victim", tmp), *shared = clit_path("%s/shared", tmp);
    clit_mkdir(vdir);
    clit_mkdir(shared);
    char *victim = clit_pack_llmc(vdir, 2, 3000, token_of, "8");
    char *bin = clit_path("%s/tok.bin", vdir);
    size_t before_len, after_len;
    char *before = snapshot(victim, &before_len);

    /* A link at the staging name of a new destination. */
    char *out = clit_path("%s/out.sp", shared), *stage = clit_path("%s/.out.sp.shardpack-tmp", shared);
    ck_assert(symlink("../victim/ds", stage) == 0);
    pack_refused(bin, out, 0, stage);
    pack_refused(bin, out, 1, stage);
    ck_assert(!clit_exists(out) && !is_link(out));
    ck_assert(is_link(stage));
    char *after = snapshot(victim, &after_len);
    ck_assert_msg(after_len == before_len && !memcmp(after, before, before_len), "the victim changed");
    free(after);
    ck_assert(unlink(stage) == 0);

    /* -o names a link to a dataset, with and without --overwrite. */
    char *link = clit_path("%s/link.sp", shared);
    ck_assert(symlink(victim, link) == 0);
    pack_refused(bin, link, 1, link);
    pack_refused(bin, link, 0, link);
    ck_assert(is_link(link));
    char *link_stage = clit_path("%s/.link.sp.shardpack-tmp", shared);
    ck_assert(!clit_exists(link_stage) && !is_link(link_stage));
    after = snapshot(victim, &after_len);
    ck_assert_msg(after_len == before_len && !memcmp(after, before, before_len), "the victim changed");
    free(after);
    clit_result r = clit_run("verify", victim, NULL);
    ck_assert_msg(r.status == 0, "verify: %s", r.err);
    clit_result_free(&r);

    /* -o names a link to an empty directory: refused, nothing written there or beside it. */
    char *empty = clit_path("%s/empty", tmp), *elink = clit_path("%s/elink.sp", shared);
    clit_mkdir(empty);
    ck_assert(symlink(empty, elink) == 0);
    pack_refused(bin, elink, 0, elink);
    size_t elen;
    free(snapshot(empty, &elen));
    ck_assert_uint_eq(elen, 0);
    char *estage = clit_path("%s/.elink.sp.shardpack-tmp", shared);
    ck_assert(!clit_exists(estage));

    free(estage);
    free(elink);
    free(empty);
    free(link_stage);
    free(link);
    free(stage);
    free(out);
    free(before);
    free(bin);
    free(victim);
    free(shared);
    free(vdir);
}
END_TEST

START_TEST(test_output_not_a_directory)
{
    char *dir = clit_path("%s/in", tmp);
    clit_mkdir(dir);
    char *bin = clit_pack_llmc(dir, 2, 3000, token_of, "8");
    free(bin);
    bin = clit_path("%s/tok.bin", dir);
    size_t len0, len1;
    unsigned char *before = clit_read(bin, &len0);
    /* The source itself as the output. */
    clit_result r = clit_run("pack", bin, "--seq-len", "8", "-o", bin, NULL);
    ck_assert_msg(r.status == 1, "status %d: %s", r.status, r.err);
    char *want = clit_path("%s: exists and is not a directory", bin);
    ck_assert_msg(strstr(r.err, want), "%s", r.err);
    clit_result_free(&r);
    unsigned char *after = clit_read(bin, &len1);
    ck_assert(len0 == len1 && memcmp(before, after, len0) == 0);

    /* Said before any input item is read: an empty first image under --strict is not reached. */
    char *in = clit_path("%s/imgs", tmp), *cls = clit_path("%s/imgs/c", tmp), *img = clit_path("%s/a.jpg", cls);
    clit_mkdir(in);
    clit_mkdir(cls);
    clit_write(img, "", 0);
    r = clit_run("pack", in, "-o", bin, "--strict", NULL);
    ck_assert_msg(r.status == 1 && strstr(r.err, want) && !strstr(r.err, "a.jpg"), "status %d: %s", r.status, r.err);
    clit_result_free(&r);
    free(want);
    free(before);
    free(after);
    free(img);
    free(cls);
    free(in);
    free(bin);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli_pack_links");
    TCase *tc = tcase_create("links");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_links);
    tcase_add_test(tc, test_output_not_a_directory);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
