/* bn_util.c - helpers of the device benchmarks (see bn_util.h). */
#include "bn_util.h"

#include <cuda_runtime_api.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

void bn_cuda_check(const char *prog, int e, const char *what)
{
    if (e == (int)cudaSuccess)
        return;
    fprintf(stderr, "%s: %s: %s\n", prog, what, cudaGetErrorString((cudaError_t)e));
    exit(1);
}

double bn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bn_need_gpu(const char *prog, int device)
{
    int n = sp_cuda_device_count();
    if (n > device)
        return;
    if (n == 0)
        printf("%s: no CUDA device: %s\n", prog, *sp_last_error() ? sp_last_error() : "none found");
    else
        printf("%s: no CUDA device cuda:%d (%d found)\n", prog, device, n);
    exit(BN_EXIT_SKIP);
}

uint64_t bn_arg_u64(const char *prog, const char *name, const char *value, uint64_t min)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = value ? strtoull(value, &end, 10) : 0;
    if (!value || *value == '-' || errno || end == value || *end || v < min) {
        fprintf(stderr, "%s: %s wants an integer >= %llu, not '%s'\n", prog, name, (unsigned long long)min,
                value ? value : "");
        exit(2);
    }
    return v;
}

/* /dev/shm keeps the files out of the disk's way, but containers often give it only 64 MiB. */
static const char *scratch_base(uint64_t need)
{
    const char *t = getenv("TMPDIR");
    if (t && *t)
        return t;
    struct statvfs vs;
    if (access("/dev/shm", W_OK) == 0 && statvfs("/dev/shm", &vs) == 0 &&
        (uint64_t)vs.f_bavail * vs.f_frsize > 2 * need)
        return "/dev/shm";
    return "/tmp";
}

static char *join(const char *a, const char *b)
{
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (p)
        sprintf(p, "%s/%s", a, b);
    return p;
}

static int write_samples(const char *dir, uint64_t samples, uint32_t elems)
{
    sp_schema *s = sp_schema_create();
    sp_params *p = sp_params_create();
    float *x = malloc((size_t)elems * sizeof *x);
    sp_writer *w = NULL;
    uint64_t shape[1] = { elems };
    int rc = s && p && x ? SP_OK : SP_ENOMEM;
    if (rc == SP_OK && ((rc = sp_schema_add(s, "x", SP_FIELD_TENSOR, SP_DTYPE_F32, 1, shape)) ||
                        (rc = sp_params_set_str(p, "compress", "none")) ||
                        (rc = sp_params_set_str(p, "block_size", "1M")) ||
                        (rc = sp_params_set_str(p, "shard_size", "256M")) ||
                        (rc = sp_writer_open(dir, s, p, &w))))
        fprintf(stderr, "dataset %s: %s\n", dir, sp_last_error());
    for (uint64_t i = 0; rc == SP_OK && i < samples; i++) {
        for (uint32_t j = 0; j < elems; j++)
            x[j] = (float)((i * 31 + j) % 1000) * 0.001f;
        sp_value v = { x, (size_t)elems * sizeof *x };
        if ((rc = sp_writer_add(w, &v, 1)))
            fprintf(stderr, "dataset %s: sample %llu: %s\n", dir, (unsigned long long)i, sp_last_error());
    }
    if (rc == SP_OK && (rc = sp_writer_finish(w)))
        fprintf(stderr, "dataset %s: %s\n", dir, sp_last_error());
    sp_writer_destroy(w);
    free(x);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    return rc;
}

int bn_make(bn_ds *d, const char *tag, uint64_t samples, uint32_t elems)
{
    memset(d, 0, sizeof *d);
    const char *base = scratch_base(samples * elems * 4);
    d->root = malloc(strlen(base) + strlen(tag) + 32);
    if (!d->root)
        return SP_ENOMEM;
    sprintf(d->root, "%s/spbench-%s-XXXXXX", base, tag);
    if (!mkdtemp(d->root)) {
        fprintf(stderr, "mkdtemp %s: %s\n", d->root, strerror(errno));
        free(d->root);
        d->root = NULL;
        return SP_EIO;
    }
    d->dir = join(d->root, "data");
    return d->dir ? write_samples(d->dir, samples, elems) : SP_ENOMEM;
}

static void rmtree(const char *path)
{
    DIR *dd = opendir(path);
    if (!dd) {
        unlink(path);
        return;
    }
    for (struct dirent *de; (de = readdir(dd));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = join(path, de->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rmtree(p);
        else if (p)
            unlink(p);
        free(p);
    }
    closedir(dd);
    rmdir(path);
}

void bn_free(bn_ds *d)
{
    if (d->root) {
        rmtree(d->root);
        free(d->dir);
    }
    free(d->root);
    memset(d, 0, sizeof *d);
}

sp_loader *bn_open(const char *prog, const char *path, const char *const *kv)
{
    sp_params *p = sp_params_create();
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    for (size_t i = 0; kv[i]; i += 2)
        if (sp_params_set_str(p, kv[i], kv[i + 1])) {
            fprintf(stderr, "%s: %s=%s: %s\n", prog, kv[i], kv[i + 1], sp_last_error());
            exit(2);
        }
    sp_loader *l = NULL;
    int rc = sp_loader_open(path, p, &l);
    if (rc) {
        fprintf(stderr, "%s: open %s: %s: %s\n", prog, path, sp_error_name(rc), sp_last_error());
        exit(1);
    }
    sp_params_destroy(p);
    return l;
}
