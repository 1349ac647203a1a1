/* test_import.c - the import API from C: kinds by name and alias, detection codes (a shardpack dataset as a source named as one), an abort before or during the run publishes nothing (SP_ECANCELED), progress through the callback and sp_import_progress_get (struct_size), sp_pack in one call, refusals of the request itself (SP_EINVAL), an import refused in a fork() child (before and during the run) while the parent's goes on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

/* An llm.c uint16 token file of n tokens at path. */
static void write_tokens(const char *path, int n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    int32_t head[256] = { 20240520, 1, n };
    fwrite(head, sizeof head, 1, f);
    for (int i = 0; i < n; i++) {
        uint16_t t = (uint16_t)(i * 31);
        fwrite(&t, 2, 1, f);
    }
    fclose(f);
}

static sp_params *seq_len(const char *t) { return tu_params("seq_len", t, "block_size", "4K", NULL); }

START_TEST(kinds_and_detection)
{
    ck_assert_int_eq(sp_import_kind_count(), 5);
    ck_assert_str_eq(sp_import_kind_name(0), "imagefolder");
    ck_assert_ptr_null(sp_import_kind_name(5));
    ck_assert_int_eq(sp_import_kind_lookup("webdataset"), sp_import_kind_lookup("wds"));
    ck_assert_int_eq(sp_import_kind_lookup("tar"), sp_import_kind_lookup("wds"));
    ck_assert_int_eq(sp_import_kind_lookup("png"), SP_ENOENT);

    char *dir = tu_tmpdir("imp-detect");
    char *bin = tu_join(dir, "t.bin"), *odd = tu_join(dir, "t.xyz"), *nobin = tu_join(dir, "junk.bin");
    write_tokens(bin, 100);
    tu_write_file(odd, "x", 1);
    tu_write_file(nobin, "not tokens", 10);
    ck_assert_int_eq(sp_import_detect(bin), sp_import_kind_lookup("llmc"));
    ck_assert_int_eq(sp_import_detect(dir), sp_import_kind_lookup("imagefolder"));
    ck_assert_int_eq(sp_import_detect(odd), SP_ENOTSUP);
    ck_assert_msg(strstr(sp_last_error(), odd), "%s", sp_last_error());
    ck_assert_int_eq(sp_import_detect(nobin), SP_EFORMAT);
    ck_assert_msg(strstr(sp_last_error(), "no magic"), "%s", sp_last_error());
    char *missing = tu_join(dir, "missing.tsv");
    ck_assert_int_eq(sp_import_detect(missing), SP_ENOENT);
    /* A shardpack dataset as a source (its directory, manifest or a shard) is named as one, not
     * taken for an ImageFolder without classes or an unknown kind. */
    char *ds = tu_join(dir, "ds.sp");
    tu_data d = tu_image_data(20, 7, 100);
    ck_assert(tu_write_dataset(ds, &d, tu_synthetic_images(), NULL) == 0);
    sp_schema_destroy(d.schema);
    char *man = tu_join(ds, "manifest.spm"), *shard = tu_join(ds, "shard-000000.sps");
    const char *const as_src[] = { ds, man, shard };
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(sp_import_detect(as_src[i]), SP_EEXIST);
        ck_assert_msg(strstr(sp_last_error(), as_src[i]) && strstr(sp_last_error(), "is already a shardpack dataset"),
                      "%s", sp_last_error());
    }
    free(man);
    free(shard);
    free(ds);

    /* The request itself: SP_EINVAL, naming what is wrong. */
    sp_import *imp = (sp_import *)1;
    const char *two[] = { bin, odd };
    char *out = tu_join(dir, "out");
    ck_assert_int_eq(sp_import_open(NULL, two, 0, out, NULL, &imp), SP_EINVAL);
    ck_assert_ptr_null(imp);
    ck_assert_int_eq(sp_import_open(NULL, two, 1, out, NULL, &imp), SP_EINVAL); /* no seq_len */
    ck_assert_msg(strstr(sp_last_error(), "seq_len") && strstr(sp_last_error(), bin), "%s", sp_last_error());
    sp_params *p = seq_len("8");
    ck_assert_int_eq(sp_import_open("npy", two, 1, out, p, &imp), SP_EINVAL); /* seq_len elsewhere */
    ck_assert_int_eq(sp_import_open("llmc", two, 1, "", p, &imp), SP_EINVAL);
    ck_assert_int_eq(sp_import_open(NULL, (const char *[]){ bin, dir }, 2, out, p, &imp), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "one kind"), "%s", sp_last_error());
    ck_assert(!tu_exists(out));
    sp_params_destroy(p);
    tu_rmtree(dir);
    free(dir);
    free(bin);
    free(odd);
    free(nobin);
    free(missing);
    free(out);
}
END_TEST

typedef struct seen {
    sp_import *imp;
    uint64_t calls, last_samples, stop_at;
} seen;

static void on_progress(void *user, const sp_import_progress *p)
{
    seen *s = user;
    s->calls++;
    ck_assert_int_eq(p->struct_size, sizeof *p);
    s->last_samples = p->samples;
    if (s->stop_at && p->samples == s->stop_at)
        sp_import_abort(s->imp);
}

START_TEST(abort_progress_and_pack)
{
    char *dir = tu_tmpdir("imp-run");
    char *bin = tu_join(dir, "t.bin"), *out = tu_join(dir, "out");
    write_tokens(bin, 20001);
    const char *srcs[] = { bin };
    sp_params *p = seq_len("10");

    /* Aborted before the run: nothing is read or written. */
    sp_import *imp;
    ck_assert_msg(sp_import_open(NULL, srcs, 1, out, p, &imp) == 0, "%s", sp_last_error());
    ck_assert_str_eq(sp_import_kind(imp), "llmc");
    ck_assert_ptr_null(sp_import_writer(imp));
    sp_import_abort(imp);
    ck_assert_int_eq(sp_import_run(imp), SP_ECANCELED);
    ck_assert_int_eq(sp_import_run(imp), SP_ESTATE);
    sp_import_destroy(imp);
    ck_assert(!tu_exists(out));

    /* Aborted from the progress callback halfway: nothing published, no staging left. */
    seen s = { 0 };
    ck_assert(sp_import_open(NULL, srcs, 1, out, p, &imp) == 0);
    s.imp = imp;
    s.stop_at = 1000;
    ck_assert_int_eq(sp_import_set_callbacks(imp, NULL, on_progress, &s), 0);
    ck_assert_int_eq(sp_import_run(imp), SP_ECANCELED);
    ck_assert_msg(strstr(sp_import_errmsg(imp), out), "%s", sp_import_errmsg(imp));
    ck_assert_uint_eq(s.last_samples, 1000);
    sp_import_destroy(imp);
    ck_assert(!tu_exists(out));
    char *stage = tu_join(dir, ".out.shardpack-tmp");
    ck_assert(!tu_exists(stage));

    /* To the end: progress for every sample, and the totals known ahead. */
    memset(&s, 0, sizeof s);
    ck_assert(sp_import_open(NULL, srcs, 1, out, p, &imp) == 0);
    ck_assert_int_eq(sp_import_set_meta(imp, "created_by", "test_import", 11), 0);
    ck_assert_int_eq(sp_import_set_callbacks(imp, NULL, on_progress, &s), 0);
    ck_assert_msg(sp_import_run(imp) == 0, "%s", sp_import_errmsg(imp));
    ck_assert_uint_eq(s.calls, 2000);
    sp_import_progress pr = { 0 };
    ck_assert_int_eq(sp_import_progress_get(imp, &pr), SP_EINVAL); /* struct_size unset */
    pr.struct_size = sizeof pr;
    ck_assert_int_eq(sp_import_progress_get(imp, &pr), 0);
    ck_assert_uint_eq(pr.samples, 2000);
    ck_assert_uint_eq(pr.total_items, 2000);
    ck_assert_uint_eq(pr.skipped, 0);
    /* A struct below the first layout is refused untouched; a caller's larger struct gets what the
     * library knows and keeps its struct_size. */
    struct { size_t struct_size; uint64_t samples; uint64_t guard; } small = { 2 * sizeof(uint64_t), 0, 77 };
    ck_assert_int_eq(sp_import_progress_get(imp, (sp_import_progress *)&small), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "sp_import_progress.struct_size"), "%s", sp_last_error());
    ck_assert_uint_eq(small.samples, 0);
    struct { sp_import_progress p; uint64_t later; } big = { .p.struct_size = sizeof big, .later = 77 };
    ck_assert_int_eq(sp_import_progress_get(imp, &big.p), 0);
    ck_assert_uint_eq(big.p.samples, 2000);
    ck_assert_uint_eq(big.p.struct_size, sizeof big);
    ck_assert_uint_eq(big.later, 77);
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_writer_stats(sp_import_writer(imp), &st), 0);
    ck_assert_uint_eq(st.samples, 2000);
    sp_import_destroy(imp);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(out, NULL, &ds) == 0);
    const void *v;
    size_t n;
    ck_assert_int_eq(sp_dataset_meta_get(ds, "created_by", &v, &n), 0);
    ck_assert(n == 11 && memcmp(v, "test_import", 11) == 0);
    sp_dataset_close(ds);

    /* sp_pack: one call; over an existing dataset without overwrite, the writer's refusal. */
    ck_assert_int_eq(sp_pack(NULL, srcs, 1, out, p, NULL, NULL), SP_EEXIST);
    ck_assert_msg(strstr(sp_last_error(), out), "%s", sp_last_error());
    char *out2 = tu_join(dir, "out2");
    ck_assert_msg(sp_pack("llmc", srcs, 1, out2, p, NULL, NULL) == 0, "%s", sp_last_error());
    ck_assert(sp_dataset_open(out2, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_samples(ds), 2000);
    sp_dataset_close(ds);

    sp_params_destroy(p);
    tu_rmtree(dir);
    free(dir);
    free(bin);
    free(out);
    free(out2);
    free(stage);
}
END_TEST

/* In a fork() child (no Check calls): every call on the parent's import is refused with SP_ESTATE
 * naming both processes, its writer's too, and destroy removes nothing. 0, or the failing step. */
static int child_calls(sp_import *imp, pid_t parent, const char *stage)
{
    tu_child_deadline(10);
    char want[160];
    snprintf(want, sizeof want, "import opened in process %d, used in child %d; open it after fork", (int)parent,
             (int)getpid());
    if (sp_import_run(imp) != SP_ESTATE || !strstr(sp_last_error(), want))
        return 1;
    if (sp_import_set_meta(imp, "k", "v", 1) != SP_ESTATE || sp_import_set_callbacks(imp, NULL, NULL, NULL) != SP_ESTATE)
        return 2;
    sp_import_progress pr = { .struct_size = sizeof pr };
    if (sp_import_progress_get(imp, &pr) != SP_ESTATE)
        return 3;
    sp_writer *w = (sp_writer *)sp_import_writer(imp);
    uint8_t row[88] = { 0 };
    sp_value v = { row, sizeof row };
    if (w && (sp_writer_add(w, &v, 1) != SP_ESTATE || !strstr(sp_last_error(), "writer opened in process")))
        return 4;
    bool staged = tu_exists(stage);
    sp_import_destroy(imp);
    if (tu_exists(stage) != staged)
        return 5;
    return 0;
}

/* Waits until child has exited, leaving its status for tu_child_ok: the parent's run stays where
 * it is meanwhile, so that the child's look at the staging directory before and after its destroy
 * is not raced by the parent publishing it. */
static void wait_exited(pid_t child)
{
    siginfo_t si;
    while (waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT) != 0 && errno == EINTR)
        ;
}

typedef struct forker {
    sp_import *imp;
    const char *stage;
    uint64_t at; /* the sample count at which to fork */
    pid_t child;
} forker;

static void fork_on_progress(void *user, const sp_import_progress *pr)
{
    forker *f = user;
    if (pr->samples != f->at)
        return;
    pid_t parent = getpid();
    f->child = fork();
    if (f->child == 0)
        _exit(child_calls(f->imp, parent, f->stage));
    if (f->child > 0)
        wait_exited(f->child);
}

START_TEST(used_in_child)
{
    char *dir = tu_tmpdir("imp-fork");
    char *bin = tu_join(dir, "t.bin"), *out = tu_join(dir, "out"), *stage = tu_join(dir, ".out.shardpack-tmp");
    write_tokens(bin, 20001);
    const char *srcs[] = { bin };
    sp_params *p = seq_len("10");
    for (int during = 0; during < 2; during++) {
        /* Forked before the run, and from the progress callback halfway (the writer's threads live). */
        sp_import *imp;
        ck_assert_msg(sp_import_open(NULL, srcs, 1, out, p, &imp) == 0, "%s", sp_last_error());
        forker f = { .imp = imp, .stage = stage, .at = 1000, .child = -1 };
        if (during) {
            ck_assert_int_eq(sp_import_set_callbacks(imp, NULL, fork_on_progress, &f), 0);
        } else {
            pid_t parent = getpid();
            f.child = fork();
            if (f.child == 0)
                _exit(child_calls(imp, parent, stage));
            if (f.child > 0)
                wait_exited(f.child);
        }
        ck_assert_msg(sp_import_run(imp) == 0, "%s", sp_import_errmsg(imp));
        ck_assert_int_gt(f.child, 0);
        tu_child_ok(f.child, during ? "forked during the run" : "forked before the run");
        sp_import_destroy(imp);
        sp_dataset *ds;
        ck_assert_msg(sp_dataset_open(out, NULL, &ds) == 0, "%s", sp_last_error());
        ck_assert_uint_eq(sp_dataset_num_samples(ds), 2000);
        sp_dataset_close(ds);
        tu_rmtree(out);
    }
    sp_params_destroy(p);
    tu_rmtree(dir);
    free(dir);
    free(bin);
    free(out);
    free(stage);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("import");
    TCase *tc = tu_tcase(s, "import", 60);
    tcase_add_test(tc, kinds_and_detection);
    tcase_add_test(tc, abort_progress_and_pack);
    tcase_add_test(tc, used_in_child);
    return tu_run(s, 0);
}
