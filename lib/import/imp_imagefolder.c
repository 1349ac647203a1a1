/* imp_imagefolder.c - ImageFolder importer: DIR/CLASS/NAME.jpg, label = index of CLASS (sorted).
 *
 * Classes are the subdirectories, as torchvision's ImageFolder finds them, less two kinds that are
 * the pack's own output rather than data: OUTDIR itself when it lies inside DIR (so packing twice
 * with --overwrite gives the same classes), and writers' staging directories (.NAME.shardpack-tmp).
 * A class directory without a .jpg or .jpeg file is refused, as torchvision refuses a class with no
 * valid file: its label would belong to no sample. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct item {
    char *name; /* file name within its class directory */
    uint64_t size;
} item;

typedef struct class_dir {
    char *name;
    item *items;
    size_t nitems, cap;
} class_dir;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->name, ((const item *)b)->name);
}

static int is_jpeg_name(const char *name)
{
    return cli_ends_with_ci(name, ".jpg") || cli_ends_with_ci(name, ".jpeg");
}

/* A writer's staging directory (.NAME.shardpack-tmp, or .NAME.shardpack-tmp.old while a dataset
 * is replaced without an atomic exchange). */
static int is_staging_name(const char *name)
{
    return name[0] == '.' && (cli_ends_with_ci(name, ".shardpack-tmp") || cli_ends_with_ci(name, ".shardpack-tmp.old"));
}

/* Sorted names of the subdirectories of root that are classes: not the output directory (out,
 * from stat of OUTDIR, when it exists) nor a staging directory. */
static int list_classes(const char *root, const struct stat *out, char ***out_names, size_t *nout)
{
    DIR *d = opendir(root);
    if (!d) {
        cli_err("%s: cannot open directory: %s", root, strerror(errno));
        return CLI_EDATA;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = cli_path_join(root, e->d_name);
        struct stat st;
        int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        free(path);
        if (!is_dir || is_staging_name(e->d_name) ||
            (out && st.st_dev == out->st_dev && st.st_ino == out->st_ino))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = cli_xrealloc(names, cap * sizeof *names);
        }
        names[n++] = cli_xstrdup(e->d_name);
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err) {
        cli_err("%s: cannot read directory: %s", root, strerror(err));
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return CLI_EDATA;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    *out_names = names;
    *nout = n;
    return CLI_OK;
}

/* Sorted .jpg/.jpeg entries of one class directory, with their sizes. */
static int list_images(const char *root, class_dir *c, uint64_t *total_bytes)
{
    char *dir = cli_path_join(root, c->name);
    DIR *d = opendir(dir);
    if (!d) {
        cli_err("%s: cannot open class directory: %s", dir, strerror(errno));
        free(dir);
        return CLI_EDATA;
    }
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (!is_jpeg_name(e->d_name)) {
            errno = 0;
            continue;
        }
        char *path = cli_path_join(dir, e->d_name);
        struct stat st;
        /* A name that fails stat is kept: reading it later reports the cause as a skip. */
        int ok = stat(path, &st);
        free(path);
        if (ok == 0 && S_ISDIR(st.st_mode)) {
            errno = 0;
            continue;
        }
        if (c->nitems == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 256;
            c->items = cli_xrealloc(c->items, c->cap * sizeof *c->items);
        }
        c->items[c->nitems].name = cli_xstrdup(e->d_name);
        c->items[c->nitems].size = ok == 0 ? (uint64_t)st.st_size : 0;
        *total_bytes += c->items[c->nitems].size;
        c->nitems++;
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err) {
        cli_err("%s: cannot read directory: %s", dir, strerror(err));
        free(dir);
        return CLI_EDATA;
    }
    free(dir);
    if (c->nitems > 1)
        qsort(c->items, c->nitems, sizeof *c->items, cmp_item);
    return CLI_OK;
}

static void free_classes(class_dir *classes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < classes[i].nitems; k++)
            free(classes[i].items[k].name);
        free(classes[i].items);
        free(classes[i].name);
    }
    free(classes);
}

int imp_imagefolder(pack_ctx *pc, const char *const *srcs, size_t n)
{
    if (n != 1) {
        cli_err("an ImageFolder pack takes exactly one directory");
        return CLI_EUSAGE;
    }
    const char *root = srcs[0];
    char **names = NULL;
    size_t nclasses = 0;
    struct stat out_st;
    int out_exists = stat(pack_outdir(pc), &out_st) == 0;
    int rc = list_classes(root, out_exists ? &out_st : NULL, &names, &nclasses);
    if (rc)
        return rc;
    if (nclasses == 0) {
        cli_err("%s: no class subdirectories (expected %s/CLASS/*.jpg)", root, root);
        free(names);
        return CLI_EDATA;
    }

    class_dir *classes = cli_xcalloc(nclasses, sizeof *classes);
    cli_buf class_names = {0};
    uint64_t total_items = 0, total_bytes = 0;
    for (size_t i = 0; i < nclasses; i++) {
        classes[i].name = names[i];
        if (strchr(names[i], '\n')) {
            cli_err("%s: class directory name contains a newline, which class_names cannot hold",
                    root);
            rc = CLI_EDATA;
        }
    }
    free(names);
    for (size_t i = 0; i < nclasses && rc == CLI_OK; i++) {
        rc = list_images(root, &classes[i], &total_bytes);
        total_items += classes[i].nitems;
        if (i)
            cli_buf_append(&class_names, "\n", 1);
        cli_buf_append(&class_names, classes[i].name, strlen(classes[i].name));
    }
    if (rc)
        goto out;
    if (total_items == 0) {
        cli_err("%s: no .jpg or .jpeg files in its %zu class directories; nothing was written",
                root, nclasses);
        rc = CLI_EDATA;
        goto out;
    }
    for (size_t i = 0; i < nclasses; i++)
        if (classes[i].nitems == 0) {
            cli_err("%s/%s: no .jpg or .jpeg file in this class directory; its label would belong "
                    "to no sample (torchvision's ImageFolder refuses it too): remove it or add images",
                    root, classes[i].name);
            rc = CLI_EDATA;
            goto out;
        }

    sp_schema *schema = pack_image_label_schema();
    if (!schema) {
        rc = CLI_EDATA;
        goto out;
    }
    pack_set_schema(pc, schema);
    pack_set_meta(pc, "class_names", class_names.data, class_names.len);
    pack_set_totals(pc, total_items, total_bytes);

    for (size_t i = 0; i < nclasses && rc == CLI_OK; i++) {
        char *dir = cli_path_join(root, classes[i].name);
        for (size_t k = 0; k < classes[i].nitems && rc == CLI_OK; k++) {
            char *path = cli_path_join(dir, classes[i].items[k].name);
            rc = pack_add_jpeg_file(pc, path, (int64_t)i);
            free(path);
        }
        free(dir);
    }
out:
    cli_buf_free(&class_names);
    free_classes(classes, nclasses);
    return rc;
}
