/* test_writer_fork.c - a writer inherited through fork(): every call in the child fails at once with SP_ESTATE naming both processes, destroy there removes nothing, and the parent's writer goes on to publish every sample it added. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"

#define BEFORE 300   /* samples added before the fork */
#define AFTER 300    /* and after it, by the parent */
#define CHILD_ADDS 5000 /* what the child tries: far past the compression queue (it blocked there) */

/* The child's life with the inherited writer (no Check calls). Returns 0, or the failing step. */
static int child_calls(sp_writer *w, const tu_data *d, pid_t parent, const char *parent_dir)
{
    tu_child_deadline(10);
    char want[160];
    snprintf(want, sizeof want, "writer opened in process %d, used in child %d; open it after fork", (int)parent,
             (int)getpid());
    size_t staged = tu_count_hidden(parent_dir);
    int rc = 0;
    for (uint64_t i = BEFORE; i < BEFORE + CHILD_ADDS && rc == 0; i++)
        rc = tu_add_samples(w, d, i, i + 1);
    if (rc != SP_ESTATE || !strstr(sp_last_error(), want))
        return 1;
    if (sp_writer_set_meta(w, "k", "v", 1) != SP_ESTATE || !strstr(sp_last_error(), "sp_writer_set_meta: writer"))
        return 2;
    sp_write_stats st = { .struct_size = sizeof st };
    if (sp_writer_stats(w, &st) != SP_ESTATE)
        return 3;
    if (sp_writer_finish(w) != SP_ESTATE || !strstr(sp_last_error(), want))
        return 4;
    if (sp_writer_failed(w) != 1)
        return 5;
    sp_writer_destroy(w); /* removes nothing, joins nothing */
    if (staged == 0 || tu_count_hidden(parent_dir) != staged)
        return 6;
    return 0;
}

START_TEST(writer_in_child)
{
    tu_data d = tu_image_data(BEFORE + CHILD_ADDS, 11, 300);
    char *parent, *dir = tu_dataset_dir("wfork", &parent);
    sp_params *p = tu_params("validate_images", "0", "block_size", "4K", "threads", "2", NULL);
    sp_writer *w = NULL;
    ck_assert_msg(sp_writer_open(dir, d.schema, p, &w) == 0, "%s", sp_last_error());
    ck_assert_int_eq(tu_add_samples(w, &d, 0, BEFORE), 0);
    pid_t self = getpid(), pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(child_calls(w, &d, self, parent));
    tu_child_ok(pid, "writer");
    /* The parent's writer is untouched: it takes more samples and publishes them all. */
    ck_assert_int_eq(sp_writer_failed(w), 0);
    ck_assert_int_eq(tu_add_samples(w, &d, BEFORE, BEFORE + AFTER), 0);
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_writer_errmsg(w));
    sp_writer_destroy(w);
    sp_dataset *ds = NULL;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(ds), BEFORE + AFTER);
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
    tu_rmtree(parent);
    free(parent);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("writer_fork");
    TCase *tc = tu_tcase(s, "fork", 60);
    tcase_add_test(tc, writer_in_child);
    return tu_run(s, 0);
}
