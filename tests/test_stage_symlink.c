/* test_stage_symlink.c - symbolic links planted at the staging name or the destination (before open, or while writing) are refused without a byte of another dataset changed or a link published. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

enum { VICTIM_MAX = 16 };

/* Another dataset, in a directory beside the writer's parent, and every byte of it as it was. */
typedef struct victim {
    char *root; /* holds the victim and the writer's parent */
    char *dir;
    size_t n;
    char *name[VICTIM_MAX];
    uint8_t *data[VICTIM_MAX];
    size_t size[VICTIM_MAX];
} victim;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static size_t list_names(const char *dir, char **names)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "%s: %s", dir, strerror(errno));
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        ck_assert(n < VICTIM_MAX);
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    return n;
}

static victim victim_make(void)
{
    victim v = { 0 };
    v.root = tu_tmpdir("stagelink");
    v.dir = tu_join(v.root, "victim");
    tu_data d = tu_image_data(60, 7, 1000);
    sp_params *p = tu_params("validate_images", "0", "shard_size", "16K", "block_size", "4K", NULL);
    ck_assert_msg(tu_write_dataset(v.dir, &d, p, NULL) == 0, "victim: %s", sp_last_error());
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
    v.n = list_names(v.dir, v.name);
    ck_assert_uint_gt(v.n, 2); /* a manifest and several shards */
    for (size_t i = 0; i < v.n; i++) {
        char *path = tu_join(v.dir, v.name[i]);
        v.data[i] = tu_read_file(path, &v.size[i]);
        free(path);
    }
    return v;
}

/* The victim holds the same files, byte for byte, and still opens and verifies. */
static void victim_check(const victim *v, const char *when)
{
    struct stat st;
    ck_assert_msg(lstat(v->dir, &st) == 0 && S_ISDIR(st.st_mode), "%s: the victim directory is gone", when);
    char *names[VICTIM_MAX];
    size_t n = list_names(v->dir, names);
    ck_assert_msg(n == v->n, "%s: the victim holds %zu files, it held %zu", when, n, v->n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(!strcmp(names[i], v->name[i]), "%s: victim file %s is now %s", when, v->name[i], names[i]);
        char *path = tu_join(v->dir, names[i]);
        size_t size;
        uint8_t *data = tu_read_file(path, &size);
        ck_assert_msg(size == v->size[i] && !memcmp(data, v->data[i], size), "%s: victim file %s changed", when,
                      names[i]);
        free(data);
        free(path);
        free(names[i]);
    }
    ck_assert_msg(sp_verify(v->dir, NULL, NULL, NULL, NULL) == 0, "%s: the victim fails verify: %s", when,
                  sp_last_error());
}

static void victim_free(victim *v)
{
    tu_rmtree(v->root);
    for (size_t i = 0; i < v->n; i++) {
        free(v->name[i]);
        free(v->data[i]);
    }
    free(v->root);
    free(v->dir);
}

static bool is_link(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* The writer's parent beside the victim, with dest = PARENT/out and stage = its staging name. */
static char *make_parent(const victim *v, char **dest, char **stage)
{
    char *parent = tu_join(v->root, "shared");
    ck_assert(mkdir(parent, 0755) == 0);
    *dest = tu_join(parent, "out");
    *stage = tu_join(parent, ".out.shardpack-tmp");
    return parent;
}

/* sp_writer_open on dest fails with SP_EEXIST and a message naming path as a symbolic link. */
static void check_refused_open(const char *dest, bool overwrite, const char *path)
{
    tu_data d = tu_image_data(10, 3, 100);
    sp_params *p = tu_params("validate_images", "0", "overwrite", overwrite ? "1" : "0", NULL);
    sp_writer *w = NULL;
    int rc = sp_writer_open(dest, d.schema, p, &w);
    ck_assert_msg(rc == SP_EEXIST, "%s: open gave %s (%s)", dest, sp_error_name(rc), sp_last_error());
    ck_assert_ptr_null(w);
    char want[4200];
    snprintf(want, sizeof want, "%s: is a symbolic link", path);
    ck_assert_msg(strstr(sp_last_error(), want), "message '%s' lacks '%s'", sp_last_error(), want);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}

START_TEST(link_at_staging_name)
{
    victim v = victim_make();
    char *dest, *stage;
    char *parent = make_parent(&v, &dest, &stage);
    ck_assert(symlink(v.dir, stage) == 0);
    check_refused_open(dest, false, stage);
    check_refused_open(dest, true, stage);
    victim_check(&v, "link at the staging name, new destination");
    ck_assert(!tu_exists(dest) && !is_link(dest));
    ck_assert(is_link(stage)); /* not ours to remove */

    /* Over an existing dataset: the same, and that dataset is untouched as well. */
    tu_data d = tu_image_data(10, 3, 100);
    ck_assert(unlink(stage) == 0);
    ck_assert(tu_write_dataset(dest, &d, tu_synthetic_images(), NULL) == 0);
    ck_assert(symlink(v.dir, stage) == 0);
    check_refused_open(dest, true, stage);
    victim_check(&v, "link at the staging name, over a dataset");
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dest, NULL, &ds) == 0);
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);

    /* A link to a file, and one that dangles. */
    char *file = tu_join(v.root, "file");
    tu_write_file(file, "keep", 4);
    ck_assert(unlink(stage) == 0 && symlink(file, stage) == 0);
    check_refused_open(dest, true, stage);
    size_t n;
    uint8_t *kept = tu_read_file(file, &n);
    ck_assert(n == 4 && !memcmp(kept, "keep", 4));
    free(kept);
    ck_assert(unlink(stage) == 0 && symlink("nowhere", stage) == 0);
    check_refused_open(dest, true, stage);
    char *nowhere = tu_join(parent, "nowhere");
    ck_assert_msg(!tu_exists(nowhere), "the writer created the target of a dangling link");
    free(nowhere);

    sp_schema_destroy(d.schema);
    free(file);
    free(parent);
    free(dest);
    free(stage);
    victim_free(&v);
}
END_TEST

START_TEST(destination_is_a_link)
{
    victim v = victim_make();
    char *dest, *stage;
    char *parent = make_parent(&v, &dest, &stage);
    /* A link to a dataset, with overwrite: refused, the link and its target untouched. */
    ck_assert(symlink(v.dir, dest) == 0);
    check_refused_open(dest, true, dest);
    check_refused_open(dest, false, dest);
    victim_check(&v, "destination a link to a dataset");
    ck_assert(is_link(dest));
    ck_assert_msg(!tu_exists(stage) && !is_link(stage), "a staging directory was made");
    ck_assert(unlink(dest) == 0);

    /* A link to an empty directory: refused at open, before a sample is taken. */
    char *empty = tu_join(v.root, "empty");
    ck_assert(mkdir(empty, 0755) == 0);
    ck_assert(symlink(empty, dest) == 0);
    check_refused_open(dest, false, dest);
    ck_assert(tu_count_files(empty, NULL) == 0);
    ck_assert(!tu_exists(stage));
    /* A trailing slash names the same link. */
    char *slashed = tu_join(dest, "");
    check_refused_open(slashed, false, dest);

    free(slashed);
    free(empty);
    free(parent);
    free(dest);
    free(stage);
    victim_free(&v);
}
END_TEST

/* Opens a writer on dest and adds samples; the caller plants something, then finishes. */
static sp_writer *start_writer(const char *dest, const tu_data *d, bool overwrite)
{
    sp_params *p = tu_params("validate_images", "0", "overwrite", overwrite ? "1" : "0", "block_size", "4K", NULL);
    sp_writer *w = NULL;
    ck_assert_msg(sp_writer_open(dest, d->schema, p, &w) == 0, "%s", sp_last_error());
    ck_assert(tu_add_samples(w, d, 0, d->nsamples) == 0);
    sp_params_destroy(p);
    return w;
}

START_TEST(link_planted_while_writing)
{
    victim v = victim_make();
    char *dest, *stage;
    char *parent = make_parent(&v, &dest, &stage);
    tu_data d = tu_image_data(30, 5, 200);

    /* At the destination, with overwrite: publication refused, nothing exchanged with the link. */
    sp_writer *w = start_writer(dest, &d, true);
    ck_assert(symlink(v.dir, dest) == 0);
    ck_assert_int_eq(sp_writer_finish(w), SP_EEXIST);
    ck_assert_msg(strstr(sp_writer_errmsg(w), "is a symbolic link"), "%s", sp_writer_errmsg(w));
    sp_writer_destroy(w);
    victim_check(&v, "link planted at the destination");
    ck_assert(is_link(dest));
    ck_assert(!tu_exists(stage) && !is_link(stage));
    ck_assert(unlink(dest) == 0);

    /* At the staging name: the writer's directory moved away and a link put in its place. The
     * link is neither published nor followed when the writer cleans up. */
    char *moved = tu_join(parent, "moved");
    w = start_writer(dest, &d, false);
    ck_assert(rename(stage, moved) == 0);
    ck_assert(symlink(v.dir, stage) == 0);
    ck_assert_int_eq(sp_writer_finish(w), SP_EIO);
    ck_assert_msg(strstr(sp_writer_errmsg(w), "was replaced"), "%s", sp_writer_errmsg(w));
    sp_writer_destroy(w);
    victim_check(&v, "link planted at the staging name");
    ck_assert(!tu_exists(dest) && !is_link(dest));
    ck_assert(is_link(stage));
    /* The writer's own files went through its descriptor: removed although the directory moved. */
    ck_assert_uint_eq(tu_count_files(moved, NULL), 0);

    sp_schema_destroy(d.schema);
    free(moved);
    free(parent);
    free(dest);
    free(stage);
    victim_free(&v);
}
END_TEST

/* A staging directory another user made is not written into (root only: it takes a chown). */
START_TEST(staging_dir_of_another_user)
{
    if (geteuid() != 0) {
        fprintf(stderr, "staging_dir_of_another_user: skipped, it needs root to chown a directory\n");
        return;
    }
    victim v = victim_make();
    char *dest, *stage;
    char *parent = make_parent(&v, &dest, &stage);
    ck_assert(mkdir(stage, 0777) == 0);
    ck_assert(chown(stage, 4242, 4242) == 0);
    tu_data d = tu_image_data(10, 3, 100);
    sp_writer *w = NULL;
    ck_assert_int_eq(sp_writer_open(dest, d.schema, tu_synthetic_images(), &w), SP_EEXIST);
    ck_assert_msg(strstr(sp_last_error(), "belongs to another user"), "%s", sp_last_error());
    ck_assert(!tu_exists(dest));
    /* Once it is gone, the same writer succeeds. */
    ck_assert(rmdir(stage) == 0);
    ck_assert(tu_write_dataset(dest, &d, tu_synthetic_images(), NULL) == 0);
    ck_assert(!tu_exists(stage));
    sp_schema_destroy(d.schema);
    free(parent);
    free(dest);
    free(stage);
    victim_free(&v);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stage_symlink");
    TCase *tc = tu_tcase(s, "stage_symlink", 60);
    tcase_add_test(tc, link_at_staging_name);
    tcase_add_test(tc, destination_is_a_link);
    tcase_add_test(tc, link_planted_while_writing);
    tcase_add_test(tc, staging_dir_of_another_user);
    return tu_run(s, 0);
}
