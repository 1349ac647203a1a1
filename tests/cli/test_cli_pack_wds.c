/* test_cli_pack_wds.c - pack WebDataset tars: GNU long names, pax paths, incomplete samples; the default order reads every sample back from its byte range in a seeded permutation, and refuses a pipe (which --order source reads). */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clit_util.h"

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

START_TEST(test_wds)
{
    char *tar = clit_path("%s/train-000.tar", tmp), *out = clit_path("%s/out", tmp);
    FILE *f = fopen(tar, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char *j[3];
    size_t n[3];
    for (int i = 0; i < 3; i++)
        j[i] = clit_jpeg(10, 10, (unsigned)i + 1, &n[i]);

    char longdir[200];
    memset(longdir, 'd', 120);
    longdir[120] = 0;
    char *long_jpg = clit_path("%s/sample_long_name.JPG", longdir);
    char *long_cls = clit_path("%s/sample_long_name.cls", longdir);
    char *pax_jpg = clit_path("%s/pax000.jpeg", longdir);
    char *pax_cls = clit_path("%s/pax000.cls", longdir);

    clit_tar_add(f, "s/000.jpg", j[0], n[0], 0);
    clit_tar_add(f, "s/000.cls", "3\n", 2, 0);
    clit_tar_add(f, "s/000.json", "{}", 2, 0);         /* ignored modality */
    clit_tar_add(f, long_jpg, j[1], n[1], 0);          /* GNU 'L' long name */
    clit_tar_add(f, long_cls, " 42 ", 4, 0);
    clit_tar_add(f, "s/001.jpg", j[2], n[2], 0);       /* no label: skipped */
    clit_tar_add(f, pax_jpg, j[2], n[2], 1);           /* pax path record */
    clit_tar_add(f, pax_cls, "-1", 2, 1);
    clit_tar_add(f, "s/002.cls", "5", 1, 0);           /* no image: skipped */
    clit_tar_end(f);
    fclose(f);

    clit_result r = clit_run("pack", tar, "-o", out, "--json", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert(clit_json_valid(r.out));
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 3);
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 2);
    ck_assert_msg(strstr(r.out, "s/001") && strstr(r.out, "s/002"), "%s", r.out);
    clit_result_free(&r);

    const unsigned char *want[3] = {j[0], j[1], j[2]};
    const size_t wantn[3] = {n[0], n[1], n[2]};
    const long labels[3] = {3, 42, -1};
    for (int i = 0; i < 3; i++) {
        char idx[8];
        snprintf(idx, sizeof idx, "%d", i);
        r = clit_run("cat", out, "--index", idx, NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_msg(r.outlen == wantn[i] && memcmp(r.out, want[i], wantn[i]) == 0,
                      "sample %d differs", i);
        clit_result_free(&r);
        r = clit_run("cat", out, "--index", idx, "--field", "label", "--text", NULL);
        ck_assert_int_eq(atol(r.out), labels[i]);
        clit_result_free(&r);
    }

    /* The default order: the same samples (each read back from its byte range, long names and pax
     * records included), each once, the same two skipped; seed 1 puts them in another order. */
    int moved = 0;
    for (int seed = 0; seed < 4; seed++) {
        char sd[8];
        snprintf(sd, sizeof sd, "%d", seed);
        r = clit_run("pack", tar, "-o", out, "--json", "--overwrite", "--order-seed", sd, NULL);
        ck_assert_msg(r.status == 0, "pack: %s", r.err);
        ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 3);
        ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 2);
        clit_result_free(&r);
        int seen[3] = {0};
        for (int i = 0; i < 3; i++) {
            char idx[8];
            snprintf(idx, sizeof idx, "%d", i);
            r = clit_run("cat", out, "--index", idx, "--field", "label", "--text", NULL);
            long label = atol(r.out);
            clit_result_free(&r);
            int k = label == 3 ? 0 : label == 42 ? 1 : label == -1 ? 2 : -1;
            ck_assert_msg(k >= 0, "sample %d has label %ld", i, label);
            r = clit_run("cat", out, "--index", idx, NULL);
            ck_assert_msg(r.outlen == wantn[k] && memcmp(r.out, want[k], wantn[k]) == 0, "seed %d: sample %d differs",
                          seed, i);
            clit_result_free(&r);
            seen[k]++;
            moved += k != i;
        }
        ck_assert_msg(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "seed %d: %d %d %d", seed, seen[0], seen[1],
                      seen[2]);
    }
    ck_assert_msg(moved > 0, "four seeds, always the source order");

    r = clit_run("pack", tar, "-o", out, "--overwrite", "--strict", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "s/001") && strstr(r.err, ".cls"), "%s", r.err);
    clit_result_free(&r);

    for (int i = 0; i < 3; i++)
        free(j[i]);
    free(long_jpg);
    free(long_cls);
    free(pax_jpg);
    free(pax_cls);
    free(tar);
    free(out);
}
END_TEST

/* A tar at path of one sample: a.jpg (a 10x10 JPEG) and a.cls ("1"). */
static void write_one_sample(const char *path)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    size_t n;
    unsigned char *j = clit_jpeg(10, 10, 1, &n);
    clit_tar_add(f, "a.jpg", j, n, 0);
    clit_tar_add(f, "a.cls", "1", 1, 0);
    clit_tar_end(f);
    fclose(f);
    free(j);
}

START_TEST(test_corrupt_tar)
{
    char *tar = clit_path("%s/bad.tar", tmp), *out = clit_path("%s/out", tmp);
    write_one_sample(tar);

    /* A damaged header checksum is a data error naming the file and the byte. */
    size_t len;
    unsigned char *bytes = clit_read(tar, &len);
    bytes[0] ^= 0x20;
    clit_write(tar, bytes, len);
    clit_result r = clit_run("pack", tar, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "bad.tar") && strstr(r.err, "checksum"), "%s", r.err);
    clit_result_free(&r);

    /* A member whose data runs past the end of the file. */
    bytes[0] ^= 0x20;
    clit_write(tar, bytes, 700);
    r = clit_run("pack", tar, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "truncated"), "%s", r.err);
    clit_result_free(&r);
    free(bytes);
    free(tar);
    free(out);
}
END_TEST

/* A child that writes the file at src into the FIFO at fifo, once a reader opens it. */
static pid_t feed(const char *fifo, const char *src)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        size_t len;
        unsigned char *b = clit_read(src, &len);
        int fd = open(fifo, O_WRONLY);
        for (size_t at = 0; fd >= 0 && at < len;) {
            ssize_t w = write(fd, b + at, len - at);
            if (w <= 0)
                break;
            at += (size_t)w;
        }
        _exit(0);
    }
    return pid;
}

/* order=shuffled seeks to each sample: a tar from a pipe is refused, saying to use --order source,
 * which reads it front to back. */
START_TEST(test_pipe)
{
    char *tar = clit_path("%s/a.tar", tmp), *fifo = clit_path("%s/p.tar", tmp), *out = clit_path("%s/out", tmp);
    write_one_sample(tar);
    if (mkfifo(fifo, 0644) != 0) {
        fprintf(stderr, "test_pipe: cannot make a FIFO here; not run\n");
        goto done;
    }
    pid_t pid = feed(fifo, tar);
    clit_result r = clit_run("pack", fifo, "--from", "wds", "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "p.tar") && strstr(r.err, "not a regular file") && strstr(r.err, "--order source"),
                  "%s", r.err);
    clit_result_free(&r);
    kill(pid, SIGKILL); /* it may still wait for a reader */
    waitpid(pid, NULL, 0);
    pid = feed(fifo, tar);
    r = clit_run("pack", fifo, "--from", "wds", "-o", out, "--order", "source", "--json", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 1);
    clit_result_free(&r);
    waitpid(pid, NULL, 0);
done:
    free(tar);
    free(fifo);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-wds");
    TCase *tc = tcase_create("wds");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_wds);
    tcase_add_test(tc, test_corrupt_tar);
    tcase_add_test(tc, test_pipe);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
