/* imp_util.c - what the source kinds share: a byte buffer, opening and reading regular files
 * without blocking on a FIFO, paths and number parsing. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "imp.h"
#include "sp_rng.h"
#include "sp_file.h"

int imp_buf_reserve(imp_ctx *c, imp_buf *b, size_t cap, const char *what)
{
    if (cap <= b->cap)
        return SP_OK;
    size_t grown = b->cap ? b->cap * 2 : 256;
    if (grown < cap)
        grown = cap;
    unsigned char *p = sp_realloc(b->data, grown);
    if (!p) {
        p = sp_realloc(b->data, cap); /* doubling may ask for more than is there */
        grown = cap;
    }
    if (!p)
        return imp_oom(c, what, cap);
    b->data = p;
    b->cap = grown;
    return SP_OK;
}

int imp_buf_append(imp_ctx *c, imp_buf *b, const void *data, size_t n, const char *what)
{
    int rc = imp_buf_reserve(c, b, b->len + n, what);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    return SP_OK;
}

void imp_buf_free(imp_buf *b)
{
    sp_free(b->data);
    *b = (imp_buf){ 0 };
}

static _Thread_local char why_buf[256];

int imp_open_regular(const char *path, struct stat *st, const char **why)
{
    int fd = sp_open_regular(path, 0, st);
    if (fd >= 0)
        return fd;
    if (fd == SP_NOT_REGULAR)
        *why = sp_open_why(fd, st);
    else {
        snprintf(why_buf, sizeof why_buf, "cannot open: %s", strerror(-fd));
        *why = why_buf;
    }
    return -1;
}

FILE *imp_fopen_regular(const char *path, struct stat *st, const char **why)
{
    int fd = imp_open_regular(path, st, why);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f) {
        snprintf(why_buf, sizeof why_buf, "cannot open: %s", strerror(errno));
        *why = why_buf;
        close(fd);
    }
    return f;
}

/* Reads to the end of the file, not to the size fstat gave: the file may change meanwhile, and the
 * cap holds either way. */
int imp_read_file(imp_ctx *c, const char *path, uint64_t cap, imp_buf *b, const char **why)
{
    b->len = 0;
    struct stat st;
    int fd = imp_open_regular(path, &st, why);
    if (fd < 0)
        return 1;
    int rc = 1;
    if ((uint64_t)st.st_size > cap) {
        snprintf(why_buf, sizeof why_buf, "file too large (%llu bytes, limit %llu)",
                 (unsigned long long)st.st_size, (unsigned long long)cap);
        goto out;
    }
    if ((rc = imp_buf_reserve(c, b, (size_t)st.st_size + 1, path)) != SP_OK)
        goto out;
    rc = 1;
    for (;;) {
        if (b->len == b->cap) {
            if (b->len > cap) {
                snprintf(why_buf, sizeof why_buf, "file too large (limit %llu bytes)", (unsigned long long)cap);
                goto out;
            }
            int r = imp_buf_reserve(c, b, b->cap + 1, path);
            if (r) {
                rc = r;
                goto out;
            }
        }
        size_t want = b->cap - b->len;
        if (want > cap + 1 - b->len)
            want = (size_t)(cap + 1 - b->len);
        ssize_t r = read(fd, b->data + b->len, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why_buf, sizeof why_buf, "read error: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        b->len += (size_t)r;
        if (b->len > cap) {
            snprintf(why_buf, sizeof why_buf, "file too large (limit %llu bytes)", (unsigned long long)cap);
            goto out;
        }
    }
    rc = 0;
out:
    close(fd);
    if (rc == 1)
        *why = why_buf;
    if (rc)
        b->len = 0;
    return rc;
}

int imp_read_item(imp_ctx *c, const char *path, imp_buf *b)
{
    const char *why;
    int rc = imp_read_file(c, path, IMP_MAX_ITEM_BYTES, b, &why);
    if (rc == 1)
        return (rc = imp_skip(c, path, why, 0)) < 0 ? rc : 0;
    return rc < 0 ? rc : 1;
}

void imp_image_label_sample(imp_image_label *il, const void *data, size_t size, int64_t label,
                            const char *what, imp_sample *out)
{
    sp_st64(il->le, (uint64_t)label);
    il->v[0] = (sp_value){ data, size };
    il->v[1] = (sp_value){ il->le, sizeof il->le };
    *out = (imp_sample){ il->v, 2, size, what };
}

const char *imp_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int imp_ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* torchvision's ImageFolder's list (IMG_EXTENSIONS). */
static const char *const image_exts[] = { ".jpg", ".jpeg", ".png", ".webp", ".ppm", ".bmp", ".pgm", ".tif", ".tiff" };

int imp_is_image_name(const char *name)
{
    for (size_t i = 0; i < sizeof image_exts / sizeof *image_exts; i++)
        if (imp_ends_with_ci(name, image_exts[i]))
            return 1;
    return 0;
}

char *imp_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = sp_malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Accumulates decimal digits s[i..len) into *v, refusing anything else and a value above lim. */
static int digits(const char *s, size_t i, size_t len, uint64_t lim, uint64_t *v)
{
    if (i == len)
        return -1;
    for (*v = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (*v > (lim - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return 0;
}

int imp_parse_u64(const char *s, uint64_t *out)
{
    return digits(s, 0, strlen(s), UINT64_MAX, out);
}

int imp_parse_i64_trim(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    while (len > i && isspace((unsigned char)s[len - 1]))
        len--;
    int neg = i < len && s[i] == '-';
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    uint64_t v;
    if (digits(s, i, len, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &v) != 0)
        return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int imp_item_order(imp_ctx *c, uint64_t n, uint64_t **perm)
{
    *perm = sp_malloc((n ? n : 1) * sizeof **perm);
    if (!*perm)
        return imp_oom(c, imp_outdir(c), (size_t)n * sizeof **perm);
    for (uint64_t i = 0; i < n; i++)
        (*perm)[i] = i;
    if (sp_params_get(imp_params(c), SP_PARAM_ORDER) != SP_ORDER_SHUFFLED)
        return SP_OK;
    sp_rng r; /* the one generator (sp_rng.h): the same seed gives the same order on every machine */
    sp_rng_seed(&r, (uint64_t)sp_params_get(imp_params(c), SP_PARAM_ORDER_SEED), n, 0x7061636bull /* "pack" */, 0);
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = sp_rng_below(&r, i), t = (*perm)[i - 1];
        (*perm)[i - 1] = (*perm)[j];
        (*perm)[j] = t;
    }
    return SP_OK;
}
