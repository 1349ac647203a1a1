/* imp_tar.c - WebDataset importer: a ustar/GNU/pax tar read as a stream; consecutive members that
 * share a key (path up to the first '.' of the basename) form one sample: KEY.jpg + KEY.cls.
 * order=source reads each archive once, front to back (a pipe will do). order=shuffled (the
 * default) first reads every archive's headers (data skipped by seeking) to list its samples as
 * byte ranges, 24 bytes a sample and 8 for the order, then reads the samples of all the archives
 * in imp_item_order's permutation, each by seeking to its range: regular files only. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "imp.h"

#define BLOCK 512
#define MAX_META_BYTES (1u << 20) /* GNU long names and pax headers */
#define MAX_LABEL_BYTES 4096

typedef struct tar_reader {
    imp_ctx *c;
    const char *path;
    FILE *f;
    uint64_t pos;        /* bytes consumed */
    uint64_t file_size;  /* for bound checks; 0 when not a regular file */
    int seekable;
    uint64_t skip_next;  /* data + padding of the current member not yet consumed */
    char *pending_name;  /* from a GNU 'L' record or a pax 'path' */
    int has_pending_size;
    uint64_t pending_size; /* from a pax 'size' */
} tar_reader;

typedef struct tar_member {
    char *name;      /* owned by the reader until the next call */
    uint64_t size;
    uint64_t offset; /* of its data in the file */
    uint64_t start;  /* of its first header record (GNU long name and pax headers included) */
    char type;
} tar_member;

static int tar_fail(const tar_reader *t, int code, uint64_t at, const char *what)
{
    return imp_fail(t->c, code, "%s: %s at byte %llu", t->path, what, (unsigned long long)at);
}

/* Reads exactly n bytes; 0, or a negative code with the message set. */
static int read_exact(tar_reader *t, void *buf, size_t n, const char *what)
{
    size_t got = fread(buf, 1, n, t->f);
    if (got != n) {
        if (ferror(t->f))
            return imp_fail(t->c, SP_EIO, "%s: read error at byte %llu: %s", t->path,
                            (unsigned long long)(t->pos + got), strerror(errno));
        return imp_fail(t->c, SP_ETRUNC, "%s: truncated: %s ends at byte %llu", t->path, what,
                        (unsigned long long)(t->pos + got));
    }
    t->pos += n;
    return 0;
}

static int skip_bytes(tar_reader *t, uint64_t n)
{
    if (n == 0)
        return 0;
    if (t->seekable) {
        if (t->file_size && t->pos + n > t->file_size)
            return tar_fail(t, SP_ETRUNC, t->pos, "truncated: member data runs past the end of the file");
        if (fseeko(t->f, (off_t)n, SEEK_CUR) == 0) {
            t->pos += n;
            return 0;
        }
        t->seekable = 0;
    }
    char buf[16384];
    while (n) {
        size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
        int rc = read_exact(t, buf, k, "member data");
        if (rc)
            return rc;
        n -= k;
    }
    return 0;
}

static uint64_t padded(uint64_t size) { return (size + BLOCK - 1) / BLOCK * BLOCK; }

/* Numeric header field: octal digits (space/NUL terminated) or GNU base-256. */
static int parse_num(const unsigned char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (p[0] & 0x80) {
        if (p[0] & 0x40)
            return -1; /* negative */
        v = p[0] & 0x3F;
        for (size_t i = 1; i < n; i++) {
            if (v > (UINT64_MAX >> 8))
                return -1;
            v = v << 8 | p[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    for (; i < n && p[i] != 0 && p[i] != ' '; i++) {
        if (p[i] < '0' || p[i] > '7' || v > (UINT64_MAX >> 3))
            return -1;
        v = v << 3 | (uint64_t)(p[i] - '0');
    }
    for (; i < n; i++)
        if (p[i] != 0 && p[i] != ' ')
            return -1;
    *out = v;
    return 0;
}

static int checksum_ok(const unsigned char *h)
{
    uint64_t stored;
    if (parse_num(h + 148, 8, &stored) != 0)
        return 0;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (int i = 0; i < BLOCK; i++) {
        unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
        usum += c;
        ssum += (signed char)c; /* some old writers summed signed chars */
    }
    return stored == usum || (int64_t)stored == ssum;
}

/* Reads a GNU long name or pax header body (bounded). */
static int read_meta_body(tar_reader *t, uint64_t size, char **out)
{
    if (size > MAX_META_BYTES)
        return tar_fail(t, SP_ELIMIT, t->pos, "extended header larger than 1 MiB");
    char *body = sp_malloc((size_t)size + 1);
    if (!body)
        return imp_oom(t->c, t->path, (size_t)size + 1);
    int rc = read_exact(t, body, (size_t)size, "extended header");
    if (rc) {
        sp_free(body);
        return rc;
    }
    body[size] = 0;
    *out = body;
    t->skip_next = padded(size) - size;
    return 0;
}

/* Applies the records of a pax header: "LEN KEY=VALUE\n". */
static int apply_pax(tar_reader *t, const char *body, size_t n, uint64_t at)
{
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && isdigit((unsigned char)body[j]) && len < n)
            len = len * 10 + (size_t)(body[j++] - '0');
        if (j == i || j >= n || body[j] != ' ' || len <= j - i + 1 || len > n - i ||
            body[i + len - 1] != '\n')
            return tar_fail(t, SP_ECORRUPT, at, "malformed pax extended header");
        const char *kv = body + j + 1, *end = body + i + len - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (!eq)
            return tar_fail(t, SP_ECORRUPT, at, "malformed pax record (no '=')");
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(end - eq - 1);
        if (klen == 4 && memcmp(kv, "path", 4) == 0) {
            sp_free(t->pending_name);
            if (!(t->pending_name = sp_malloc(vlen + 1)))
                return imp_oom(t->c, t->path, vlen + 1);
            memcpy(t->pending_name, eq + 1, vlen);
            t->pending_name[vlen] = 0;
        } else if (klen == 4 && memcmp(kv, "size", 4) == 0) {
            char num[32];
            uint64_t v;
            if (vlen == 0 || vlen >= sizeof num)
                return tar_fail(t, SP_ECORRUPT, at, "bad pax size record");
            memcpy(num, eq + 1, vlen);
            num[vlen] = 0;
            if (imp_parse_u64(num, &v) != 0)
                return tar_fail(t, SP_ECORRUPT, at, "bad pax size record");
            t->pending_size = v;
            t->has_pending_size = 1;
        }
        i += len;
    }
    return 0;
}

/* The member's name from its header (prefix/name of ustar), or the pending long name. */
static int member_name(tar_reader *t, const unsigned char *h, tar_member *m)
{
    sp_free(m->name);
    m->name = NULL;
    if (t->pending_name) {
        m->name = t->pending_name;
        t->pending_name = NULL;
        return 0;
    }
    size_t nlen = strnlen((const char *)h, 100);
    int posix = memcmp(h + 257, "ustar\0", 6) == 0;
    size_t plen = posix ? strnlen((const char *)h + 345, 155) : 0;
    if (!(m->name = sp_malloc(plen + nlen + 2)))
        return imp_oom(t->c, t->path, plen + nlen + 2);
    if (plen) {
        memcpy(m->name, h + 345, plen);
        m->name[plen] = '/';
        memcpy(m->name + plen + 1, h, nlen);
        m->name[plen + 1 + nlen] = 0;
    } else {
        memcpy(m->name, h, nlen);
        m->name[nlen] = 0;
    }
    return 0;
}

/* Reads one header block: 1, 0 at the end of the archive, or a negative code. */
static int read_header(tar_reader *t, unsigned char *h)
{
    size_t got = fread(h, 1, BLOCK, t->f);
    if (got == 0 && !ferror(t->f))
        return 0; /* end of file without the end-of-archive blocks: accepted */
    if (got != BLOCK) {
        if (ferror(t->f))
            return imp_fail(t->c, SP_EIO, "%s: read error at byte %llu: %s", t->path, (unsigned long long)t->pos,
                            strerror(errno));
        return imp_fail(t->c, SP_ETRUNC, "%s: truncated: a header block ends at byte %llu", t->path,
                        (unsigned long long)(t->pos + got));
    }
    t->pos += BLOCK;
    for (int i = 0; i < BLOCK; i++)
        if (h[i])
            return 1;
    return 0;
}

/* The next member: 1, 0 at the end of the archive, or a negative code. */
static int next_member(tar_reader *t, tar_member *m)
{
    unsigned char h[BLOCK];
    m->start = UINT64_MAX;
    for (;;) {
        int rc = skip_bytes(t, t->skip_next);
        if (rc)
            return rc;
        t->skip_next = 0;
        uint64_t at = t->pos;
        if (m->start == UINT64_MAX)
            m->start = at;
        if ((rc = read_header(t, h)) <= 0)
            return rc;
        if (!checksum_ok(h))
            return tar_fail(t, SP_EFORMAT, at, "bad tar header checksum (not a tar file, or corrupt)");
        uint64_t size;
        if (parse_num(h + 124, 12, &size) != 0)
            return tar_fail(t, SP_ECORRUPT, at, "bad size field in tar header");
        char type = (char)h[156];
        if (t->has_pending_size && type != 'L' && type != 'x') {
            size = t->pending_size;
            t->has_pending_size = 0;
        }
        if (size > (UINT64_MAX >> 2))
            return tar_fail(t, SP_ECORRUPT, at, "member size out of range");
        if (t->file_size && size > t->file_size - t->pos)
            return tar_fail(t, SP_ETRUNC, at, "truncated: member data runs past the end of the file");

        if (type == 'L' || type == 'x') {
            char *body = NULL;
            if ((rc = read_meta_body(t, size, &body)) != 0)
                return rc;
            if (type == 'L') {
                sp_free(t->pending_name);
                t->pending_name = body;
                body = NULL;
            } else {
                rc = apply_pax(t, body, (size_t)size, at);
            }
            sp_free(body);
            if (rc != 0)
                return rc;
            continue;
        }
        t->skip_next = padded(size);
        if ((rc = member_name(t, h, m)) != 0)
            return rc;
        m->size = size;
        m->offset = t->pos;
        m->type = type;
        if (type == 'g' || type == 'K') {
            sp_free(m->name);
            m->name = NULL;
            m->start = UINT64_MAX;
            continue; /* global pax header, GNU long link name: nothing to import */
        }
        return 1;
    }
}

/* Reads the current member's data (size bytes, already bounded by the caller). From a stream, whose
 * size is unknown, the buffer grows as the data arrives (1 MiB at a time): a header that lies about
 * its member's size (up to 256 MiB for an image) then costs memory in proportion to the bytes
 * really there, not a reservation of the size it claims. */
static int read_member(tar_reader *t, tar_member *m, imp_buf *b)
{
    const size_t step = t->file_size ? (size_t)m->size : (size_t)1 << 20;
    b->len = 0;
    int rc = imp_buf_reserve(t->c, b, (size_t)(m->size < step ? m->size : step) + 1, t->path);
    while (rc == 0 && b->len < m->size) {
        size_t want = (size_t)m->size - b->len;
        if (want > step)
            want = step;
        if ((rc = imp_buf_reserve(t->c, b, b->len + want + 1, t->path)) == 0 &&
            (rc = read_exact(t, b->data + b->len, want, m->name)) == 0)
            b->len += want;
    }
    if (rc == 0)
        t->skip_next = padded(m->size) - m->size;
    return rc;
}

/* ---- samples -------------------------------------------------------------------------------- */

typedef struct group {
    char *key;
    int has_image, has_label;
    int64_t label;
    const char *bad; /* static reason, or NULL */
    char bad_buf[160];
    uint64_t bytes;
    imp_buf image;
} group;

/* order=shuffled: one sample's members, the byte range [start, end) of archive src */
typedef struct tar_range {
    uint64_t start, end;
    uint64_t src;
} tar_range;

typedef struct wds {
    const char *const *srcs;
    size_t n, i;       /* the archive being read: srcs[i] */
    tar_reader t;      /* t.f open on srcs[i], or NULL between archives */
    int at_end;        /* srcs[i] has no member left: its last group is still to flush */
    tar_member m;
    int pending;       /* m was read and belongs to no group yet */
    group g;
    imp_buf label_buf;
    char *what;        /* "TAR:KEY" of the group last flushed */
    imp_image_label sample;
    tar_range *ranges; /* order=shuffled: every sample of every archive; range perm[k] is read k-th */
    uint64_t nranges, cap, k, *perm;
} wds;

/* The length of a member's key: its path up to the first '.' of its basename. */
static size_t key_length(const char *name)
{
    const char *dot = strchr(imp_basename(name), '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

/* Members that are sample data: regular files (directories, links, devices are not). */
static int is_data(char type) { return type == '0' || type == '\0' || type == '7'; }

/* Ends the current group: 1 with its sample in *out, 0 when there was none or it was skipped, or
 * a negative code. */
static int flush_group(imp_ctx *c, wds *w, imp_sample *out)
{
    group *g = &w->g;
    if (!g->key)
        return 0;
    sp_free(w->what);
    if (!(w->what = imp_asprintf("%s:%s", w->srcs[w->i], g->key)))
        return imp_oom(c, w->srcs[w->i], strlen(g->key) + 2);
    int rc = 1;
    if (g->bad)
        rc = imp_skip(c, w->what, g->bad, g->bytes);
    else if (!g->has_image)
        rc = imp_skip(c, w->what, "no image member (.jpg, .png, .webp, ...) in this sample", g->bytes);
    else if (!g->has_label)
        rc = imp_skip(c, w->what, "no .cls member in this sample", g->bytes);
    else
        imp_image_label_sample(&w->sample, g->image.data, g->image.len, g->label, w->what, out);
    sp_free(g->key);
    g->key = NULL;
    g->has_image = g->has_label = 0;
    g->bad = NULL;
    g->bytes = 0;
    return rc;
}

static void set_bad(group *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_bad(group *g, const char *fmt, ...)
{
    if (g->bad)
        return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->bad_buf, sizeof g->bad_buf, fmt, ap);
    va_end(ap);
    g->bad = g->bad_buf;
}

/* Handles one regular member: 0, or a negative code when the archive cannot be read on. */
static int add_member(tar_reader *t, tar_member *m, group *g, imp_buf *label_buf)
{
    const char *base = imp_basename(m->name);
    const char *dot = strchr(base, '.');
    char ext[16] = "";
    if (dot) {
        size_t i = 0;
        for (const char *p = dot + 1; *p && i + 1 < sizeof ext; p++)
            ext[i++] = (char)tolower((unsigned char)*p);
        ext[i] = 0;
        if (strlen(dot + 1) >= sizeof ext)
            ext[0] = 0; /* a long extension is none we know */
    }
    g->bytes += m->size;
    int rc;
    if (ext[0] && !strchr(ext, '.') && imp_is_image_name(dot)) { /* .jpg, .png, .webp...: the bytes say which */
        if (g->has_image) {
            set_bad(g, "two image members (%s)", base);
            return 0;
        }
        if (m->size > IMP_MAX_ITEM_BYTES) {
            set_bad(g, "image member %s is larger than 256 MiB", base);
            return 0;
        }
        if ((rc = read_member(t, m, &g->image)) != 0)
            return rc;
        g->has_image = 1;
    } else if (strcmp(ext, "cls") == 0) {
        if (g->has_label) {
            set_bad(g, "two label members (%s)", base);
            return 0;
        }
        if (m->size > MAX_LABEL_BYTES) {
            set_bad(g, "label member %s is larger than 4 KiB", base);
            return 0;
        }
        if ((rc = read_member(t, m, label_buf)) != 0)
            return rc;
        if (imp_parse_i64_trim((const char *)label_buf->data, label_buf->len, &g->label) != 0)
            set_bad(g, "label member %s does not hold an integer", base);
        else
            g->has_label = 1;
    }
    return 0;
}

static int open_tar(imp_ctx *c, wds *w)
{
    tar_reader *t = &w->t;
    const char *path = w->srcs[w->i];
    memset(t, 0, sizeof *t);
    t->c = c;
    t->path = path;
    t->f = fopen(path, "rb");
    if (!t->f)
        return imp_fail(c, errno == ENOENT ? SP_ENOENT : SP_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(t->f), &st) == 0 && S_ISREG(st.st_mode)) {
        t->seekable = 1;
        t->file_size = (uint64_t)st.st_size;
    }
    setvbuf(t->f, NULL, _IOFBF, 1 << 20);
    w->at_end = 0;
    w->pending = 0;
    return SP_OK;
}

static void close_tar(wds *w)
{
    if (w->t.f)
        fclose(w->t.f);
    sp_free(w->t.pending_name);
    memset(&w->t, 0, sizeof w->t);
}

/* Puts the pending member into its group; a member with another key first ends the group before
 * it (1 with a sample then, the member still pending). */
static int take_pending(imp_ctx *c, wds *w, imp_sample *out)
{
    size_t keylen = key_length(w->m.name);
    group *g = &w->g;
    if (g->key && (strlen(g->key) != keylen || memcmp(g->key, w->m.name, keylen) != 0))
        return flush_group(c, w, out);
    if (!g->key) {
        if (!(g->key = sp_malloc(keylen + 1)))
            return imp_oom(c, w->t.path, keylen + 1);
        memcpy(g->key, w->m.name, keylen);
        g->key[keylen] = 0;
    }
    w->pending = 0;
    return add_member(&w->t, &w->m, g, &w->label_buf);
}

/* order=shuffled, first pass: the byte range of every sample (a run of data members sharing a
 * key, from its first member's first header to the next run's) of every archive. */
static int list_samples(imp_ctx *c, wds *w)
{
    char *key = NULL;
    size_t keylen = 0;
    int rc = SP_OK;
    for (w->i = 0; w->i < w->n && rc == SP_OK; w->i++) {
        if ((rc = open_tar(c, w)) != SP_OK)
            break;
        if (!w->t.seekable) {
            rc = imp_fail(c, SP_ENOTSUP, "%s: not a regular file: order=shuffled reads a tar's samples at their "
                          "offsets; pack it with --order source", w->srcs[w->i]);
            break;
        }
        uint64_t first = w->nranges;
        while ((rc = next_member(&w->t, &w->m)) == 1) {
            if (!is_data(w->m.type))
                continue;
            size_t len = key_length(w->m.name);
            if (w->nranges > first && len == keylen && memcmp(key, w->m.name, len) == 0)
                continue; /* the same sample */
            if (w->nranges == w->cap) {
                uint64_t cap = w->cap ? 2 * w->cap : 1024;
                tar_range *r = sp_realloc(w->ranges, cap * sizeof *r);
                if (!r) {
                    rc = imp_oom(c, w->srcs[w->i], cap * sizeof *r);
                    break;
                }
                w->ranges = r;
                w->cap = cap;
            }
            if (w->nranges > first)
                w->ranges[w->nranges - 1].end = w->m.start;
            w->ranges[w->nranges++] = (tar_range){ w->m.start, UINT64_MAX, w->i };
            sp_free(key);
            if (!(key = sp_malloc(len + 1))) {
                rc = imp_oom(c, w->srcs[w->i], len + 1);
                break;
            }
            memcpy(key, w->m.name, len);
            keylen = len;
        }
        close_tar(w);
    }
    sp_free(key);
    w->i = 0;
    if (rc < 0)
        return rc;
    return imp_item_order(c, w->nranges, &w->perm);
}

/* order=shuffled: the samples in the permutation, each read from its range. */
static int next_shuffled(imp_ctx *c, wds *w, imp_sample *out)
{
    for (;;) {
        if (w->k == w->nranges)
            return 0;
        const tar_range *r = &w->ranges[w->perm[w->k++]];
        int rc;
        if (!w->t.f || w->i != r->src) {
            close_tar(w);
            w->i = (size_t)r->src;
            if ((rc = open_tar(c, w)) != SP_OK)
                return rc;
        }
        if (fseeko(w->t.f, (off_t)r->start, SEEK_SET) != 0)
            return imp_fail(c, SP_EIO, "%s: seek to byte %llu failed: %s", w->srcs[w->i],
                            (unsigned long long)r->start, strerror(errno));
        w->t.pos = r->start;
        w->t.skip_next = 0;
        while ((rc = next_member(&w->t, &w->m)) == 1 && w->m.start < r->end) {
            if (!is_data(w->m.type))
                continue;
            w->pending = 1;
            if ((rc = take_pending(c, w, out)) != 0)
                return rc; /* the range holds one key: only a failure */
        }
        if (rc < 0)
            return rc;
        if ((rc = flush_group(c, w, out)) != 0)
            return rc;
    }
}

static int wds_next(imp_ctx *c, void *priv, imp_sample *out)
{
    wds *w = priv;
    if (w->perm)
        return next_shuffled(c, w, out);
    for (;;) {
        int rc;
        if (!w->t.f) {
            if (w->i == w->n)
                return 0;
            if ((rc = open_tar(c, w)) != SP_OK)
                return rc;
        }
        if (w->pending) {
            if ((rc = take_pending(c, w, out)) != 0)
                return rc;
            continue;
        }
        if (w->at_end) {
            rc = flush_group(c, w, out);
            close_tar(w);
            w->i++;
            if (rc)
                return rc;
            continue;
        }
        rc = next_member(&w->t, &w->m);
        if (rc < 0)
            return rc;
        if (rc == 0)
            w->at_end = 1;
        else if (is_data(w->m.type))
            w->pending = 1;
    }
}

static int wds_open(imp_ctx *c, void *priv, const char *const *srcs, size_t n)
{
    wds *w = priv;
    w->srcs = srcs;
    w->n = n;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(srcs[i], &st) != 0)
            return imp_fail(c, errno == ENOENT ? SP_ENOENT : SP_EIO, "%s: %s", srcs[i], strerror(errno));
        total += (uint64_t)st.st_size;
    }
    int rc = imp_set_image_label_schema(c);
    if (rc)
        return rc;
    imp_set_totals(c, 0, total);
    if (sp_params_get(imp_params(c), SP_PARAM_ORDER) == SP_ORDER_SHUFFLED)
        return list_samples(c, w);
    return SP_OK;
}

static void wds_close(void *priv)
{
    wds *w = priv;
    close_tar(w);
    sp_free(w->g.key);
    sp_free(w->m.name);
    sp_free(w->what);
    imp_buf_free(&w->g.image);
    imp_buf_free(&w->label_buf);
    sp_free(w->ranges);
    sp_free(w->perm);
}

const imp_kind imp_kind_wds = {
    .name = "wds",
    .aliases = "webdataset|tar",
    .suffix = ".tar",
    .priv_size = sizeof(wds),
    .open = wds_open,
    .next = wds_next,
    .close = wds_close,
};
