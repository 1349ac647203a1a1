/* imp_imagefolder.c - ImageFolder importer: DIR/CLASS/NAME.jpg (or any image extension torchvision
 * takes: .png, .webp, ...; the bytes, not the name, say which format), label = index of CLASS
 * (sorted).
 *
 * Classes are the subdirectories, as torchvision's ImageFolder finds them, less three kinds that
 * are packs' output rather than data: OUTDIR itself when it lies inside DIR (so packing twice
 * with --overwrite gives the same classes), any other shardpack dataset (a directory holding
 * manifest.spm: an earlier pack's -o DIR/x.sp), and writers' staging directories
 * (.NAME.shardpack-tmp).
 * A class directory without an image file is refused, as torchvision refuses a class with no
 * valid file: its label would belong to no sample. Images are written in the order imp_item_order
 * gives: shuffled across classes by default, class by class (sorted) with order=source. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imp.h"

typedef struct item {
    char *name; /* file name within its class directory */
    uint64_t size;
} item;

typedef struct class_dir {
    char *name;
    item *items;
    size_t nitems, cap;
} class_dir;

/* The state of one ImageFolder import: the sorted listing, and where next() stands in it. */
typedef struct folder {
    const char *root;
    class_dir *classes;
    size_t nclasses;
    uint64_t *first; /* nclasses + 1: items before each class, in the listing */
    uint64_t *perm;  /* the order items are written in (imp_item_order) */
    uint64_t next, total;
    char *path;    /* of the image last yielded */
    imp_buf file;
    imp_image_label sample;
} folder;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->name, ((const item *)b)->name);
}

/* A writer's staging directory (.NAME.shardpack-tmp, or .NAME.shardpack-tmp.old while a dataset
 * is replaced without an atomic exchange). */
static int is_staging_name(const char *name)
{
    return name[0] == '.' && (imp_ends_with_ci(name, ".shardpack-tmp") || imp_ends_with_ci(name, ".shardpack-tmp.old"));
}

/* Whether entry name of root is a class: a directory, not the output directory (out, from stat of
 * OUTDIR, when it exists), another dataset nor a staging directory. -1 when memory runs out. */
static int is_class(const char *root, const char *name, const struct stat *out)
{
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || is_staging_name(name))
        return 0;
    char *path = sp_path_join(root, name);
    if (!path)
        return -1;
    struct stat st;
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    char *manifest = is_dir ? sp_path_join(path, "manifest.spm") : NULL;
    sp_free(path);
    if (is_dir && !manifest)
        return -1;
    int dataset = manifest && access(manifest, F_OK) == 0;
    sp_free(manifest);
    return is_dir && !dataset && !(out && st.st_dev == out->st_dev && st.st_ino == out->st_ino);
}

/* Sorted names of the subdirectories of root that are classes, into f->classes. */
static int list_classes(imp_ctx *c, folder *f, const struct stat *out)
{
    DIR *d = opendir(f->root);
    if (!d)
        return imp_fail(c, errno == ENOENT ? SP_ENOENT : SP_EIO, "%s: cannot open directory: %s", f->root,
                        strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    int rc = SP_OK;
    errno = 0;
    while (rc == SP_OK && (e = readdir(d)) != NULL) {
        int yes = is_class(f->root, e->d_name, out);
        if (yes < 0) {
            rc = imp_oom(c, f->root, strlen(e->d_name));
            break;
        }
        if (yes && f->nclasses == cap) {
            class_dir *grown = sp_realloc(f->classes, (cap ? cap * 2 : 64) * sizeof *grown);
            if (!grown) {
                rc = imp_oom(c, f->root, (cap ? cap * 2 : 64) * sizeof *grown);
                break;
            }
            memset(grown + cap, 0, (cap ? cap : 64) * sizeof *grown);
            f->classes = grown;
            cap = cap ? cap * 2 : 64;
        }
        if (yes && !(f->classes[f->nclasses++].name = sp_strdup(e->d_name)))
            rc = imp_oom(c, f->root, strlen(e->d_name) + 1);
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (rc == SP_OK && err)
        rc = imp_fail(c, SP_EIO, "%s: cannot read directory: %s", f->root, strerror(err));
    if (rc == SP_OK && f->nclasses > 1)
        qsort(f->classes, f->nclasses, sizeof *f->classes, cmp_str);
    return rc;
}

/* Sorted image entries (imp_is_image_name) of one class directory, with their sizes. */
static int list_images(imp_ctx *c, const char *root, class_dir *cd, uint64_t *total_bytes)
{
    char *dir = sp_path_join(root, cd->name);
    if (!dir)
        return imp_oom(c, root, strlen(cd->name));
    DIR *d = opendir(dir);
    if (!d) {
        int rc = imp_fail(c, SP_EIO, "%s: cannot open class directory: %s", dir, strerror(errno));
        sp_free(dir);
        return rc;
    }
    struct dirent *e;
    int rc = SP_OK;
    errno = 0;
    while (rc == SP_OK && (e = readdir(d)) != NULL) {
        if (!imp_is_image_name(e->d_name)) {
            errno = 0;
            continue;
        }
        char *path = sp_path_join(dir, e->d_name);
        struct stat st;
        /* A name that fails stat is kept: reading it later reports the cause as a skip. */
        int ok = path ? stat(path, &st) : -1;
        sp_free(path);
        if (ok == 0 && S_ISDIR(st.st_mode)) {
            errno = 0;
            continue;
        }
        if (cd->nitems == cd->cap) {
            size_t cap = cd->cap ? cd->cap * 2 : 256;
            item *grown = sp_realloc(cd->items, cap * sizeof *grown);
            if (!grown) {
                rc = imp_oom(c, dir, cap * sizeof *grown);
                break;
            }
            cd->items = grown;
            cd->cap = cap;
        }
        char *name = path ? sp_strdup(e->d_name) : NULL;
        if (!name) {
            rc = imp_oom(c, dir, strlen(e->d_name) + 1);
            break;
        }
        cd->items[cd->nitems].name = name;
        cd->items[cd->nitems].size = ok == 0 ? (uint64_t)st.st_size : 0;
        *total_bytes += cd->items[cd->nitems].size;
        cd->nitems++;
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (rc == SP_OK && err)
        rc = imp_fail(c, SP_EIO, "%s: cannot read directory: %s", dir, strerror(err));
    sp_free(dir);
    if (rc == SP_OK && cd->nitems > 1)
        qsort(cd->items, cd->nitems, sizeof *cd->items, cmp_item);
    return rc;
}

static int folder_check(imp_ctx *c, const char *const *srcs, size_t n)
{
    if (n != 1)
        return imp_fail(c, SP_EINVAL, "an ImageFolder pack takes exactly one directory (%s and %zu more given)",
                        srcs[0], n - 1);
    return SP_OK;
}

/* class_names: the classes in label order, one per line. */
static int class_names_meta(imp_ctx *c, const folder *f)
{
    imp_buf names = { 0 };
    int rc = SP_OK;
    for (size_t i = 0; i < f->nclasses && rc == SP_OK; i++) {
        if (i)
            rc = imp_buf_append(c, &names, "\n", 1, f->root);
        if (rc == SP_OK)
            rc = imp_buf_append(c, &names, f->classes[i].name, strlen(f->classes[i].name), f->root);
    }
    if (rc == SP_OK)
        rc = imp_set_meta(c, "class_names", names.data, names.len);
    imp_buf_free(&names);
    return rc;
}

static int folder_open(imp_ctx *c, void *priv, const char *const *srcs, size_t n)
{
    (void)n;
    folder *f = priv;
    f->root = srcs[0];
    struct stat out_st;
    int out_exists = stat(imp_outdir(c), &out_st) == 0;
    int rc = list_classes(c, f, out_exists ? &out_st : NULL);
    if (rc)
        return rc;
    const char *sep = sp_path_sep(f->root);
    if (f->nclasses == 0)
        return imp_fail(c, SP_EBADINPUT, "%s: no class subdirectories (expected %s%sCLASS/*.jpg)", f->root, f->root,
                        sep);
    for (size_t i = 0; i < f->nclasses; i++)
        if (strchr(f->classes[i].name, '\n'))
            return imp_fail(c, SP_EBADINPUT, "%s: class directory name contains a newline, which class_names "
                            "cannot hold", f->root);
    uint64_t total_items = 0, total_bytes = 0;
    for (size_t i = 0; i < f->nclasses; i++) {
        if ((rc = list_images(c, f->root, &f->classes[i], &total_bytes)) != SP_OK)
            return rc;
        total_items += f->classes[i].nitems;
    }
    if (total_items == 0)
        return imp_fail(c, SP_EBADINPUT, "%s: no image files (.jpg, .jpeg, .png, .webp, ...) in its %zu class "
                        "directories; nothing was written", f->root, f->nclasses);
    for (size_t i = 0; i < f->nclasses; i++)
        if (f->classes[i].nitems == 0)
            return imp_fail(c, SP_EBADINPUT, "%s%s%s: no image file (.jpg, .jpeg, .png, .webp, ...) in this class directory; "
                            "its label would belong to no sample (torchvision's ImageFolder refuses it too): remove "
                            "it or add images", f->root, sep, f->classes[i].name);
    if ((rc = imp_set_image_label_schema(c)) != SP_OK || (rc = class_names_meta(c, f)) != SP_OK)
        return rc;
    imp_set_totals(c, total_items, total_bytes);
    f->first = sp_malloc((f->nclasses + 1) * sizeof *f->first);
    if (!f->first)
        return imp_oom(c, f->root, (f->nclasses + 1) * sizeof *f->first);
    f->first[0] = 0;
    for (size_t i = 0; i < f->nclasses; i++)
        f->first[i + 1] = f->first[i] + f->classes[i].nitems;
    f->total = total_items;
    return imp_item_order(c, total_items, &f->perm);
}

static int folder_next(imp_ctx *c, void *priv, imp_sample *out)
{
    folder *f = priv;
    while (f->next < f->total) {
        uint64_t k = f->perm[f->next++];
        size_t ci = (size_t)sp_floor_index(f->first, f->nclasses, k);
        const class_dir *cd = &f->classes[ci];
        const char *name = cd->items[k - f->first[ci]].name;
        sp_free(f->path);
        f->path = imp_asprintf("%s%s%s/%s", f->root, sp_path_sep(f->root), cd->name, name);
        if (!f->path)
            return imp_oom(c, f->root, strlen(cd->name) + strlen(name) + 2);
        int rc = imp_read_item(c, f->path, &f->file);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            imp_image_label_sample(&f->sample, f->file.data, f->file.len, (int64_t)ci, f->path, out);
            return 1;
        }
    }
    return 0;
}

static void folder_close(void *priv)
{
    folder *f = priv;
    for (size_t i = 0; i < f->nclasses; i++) {
        for (size_t k = 0; k < f->classes[i].nitems; k++)
            sp_free(f->classes[i].items[k].name);
        sp_free(f->classes[i].items);
        sp_free(f->classes[i].name);
    }
    sp_free(f->classes);
    sp_free(f->first);
    sp_free(f->perm);
    sp_free(f->path);
    imp_buf_free(&f->file);
}

static int folder_sniff(const char *path, const struct stat *st, const char **why)
{
    (void)path;
    (void)why;
    return S_ISDIR(st->st_mode);
}

const imp_kind imp_kind_imagefolder = {
    .name = "imagefolder",
    .sniff = folder_sniff,
    .priv_size = sizeof(folder),
    .check = folder_check,
    .open = folder_open,
    .next = folder_next,
    .close = folder_close,
};
