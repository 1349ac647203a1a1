/* test_dataset_id.c - dataset_id: a fixed id makes two writes of the same samples byte-identical file for file (whatever the thread count), the id is the one stored; 0 draws a fresh id each time. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

/* Writes d into a fresh dataset directory under params; returns it (free), *parent to remove. */
static char *write_one(const tu_data *d, const char *threads, const char *id, char **parent)
{
    char *dir = tu_dataset_dir("dsid", parent);
    sp_params *p = tu_params("validate_images", "0", "block_size", "4K", "shard_size", "16K", "threads", threads,
                             "dataset_id", id, NULL);
    ck_assert_msg(tu_write_dataset(dir, d, p, NULL) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    return dir;
}

/* 1 when every file of a is in b with the same bytes, and both hold as many files. */
static int same_files(const char *a, const char *b)
{
    DIR *d = opendir(a);
    ck_assert_ptr_nonnull(d);
    int same = 1, n = 0;
    struct dirent *e;
    while (same && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        char *pa = tu_join(a, e->d_name), *pb = tu_join(b, e->d_name);
        size_t la, lb;
        uint8_t *x = tu_read_file(pa, &la), *y = tu_read_file(pb, &lb);
        same = x && y && la == lb && memcmp(x, y, la) == 0;
        free(x);
        free(y);
        free(pa);
        free(pb);
    }
    closedir(d);
    d = opendir(b);
    while ((e = readdir(d)))
        n -= e->d_name[0] != '.';
    closedir(d);
    return same && n == 0;
}

START_TEST(fixed_id_same_bytes)
{
    tu_data d = tu_image_data(400, 21, 300);
    char *pa, *pb, *pc, *pd;
    char *a = write_one(&d, "1", "12345", &pa), *b = write_one(&d, "4", "12345", &pb);
    ck_assert_msg(same_files(a, b), "two writes with dataset_id 12345 differ");
    sp_dataset *ds;
    ck_assert(sp_dataset_open(a, NULL, &ds) == 0);
    ck_assert_int_gt(sp_dataset_num_shards(ds), 1);
    sp_dataset_close(ds);

    char *c = write_one(&d, "1", "0", &pc), *e = write_one(&d, "1", "0", &pd);
    ck_assert_msg(!same_files(c, e), "two writes with a drawn dataset_id are identical");
    ck_assert_msg(!same_files(a, c), "dataset_id 12345 and a drawn id give the same files");
    char *dirs[] = { a, b, c, e, pa, pb, pc, pd };
    for (int i = 4; i < 8; i++)
        tu_rmtree(dirs[i]);
    for (int i = 0; i < 8; i++)
        free(dirs[i]);
    sp_schema_destroy(d.schema);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dataset_id");
    TCase *tc = tu_tcase(s, "dataset_id", 60);
    tcase_add_test(tc, fixed_id_same_bytes);
    return tu_run(s, 0);
}
