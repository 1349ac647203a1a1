/* imp_tar.c - WebDataset importer: a ustar/GNU/pax tar read as a stream; consecutive members that
 * share a key (path up to the first '.' of the basename) form one sample: KEY.jpg + KEY.cls. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BLOCK 512
#define MAX_META_BYTES (1u << 20) /* GNU long names and pax headers */
#define MAX_LABEL_BYTES 4096

typedef struct tar_reader {
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
    char type;
} tar_member;

static int tar_fail(const tar_reader *t, uint64_t at, const char *what)
{
    cli_err("%s: %s at byte %llu", t->path, what, (unsigned long long)at);
    return -1;
}

/* Reads exactly n bytes; 0, or -1 after a message. */
static int read_exact(tar_reader *t, void *buf, size_t n, const char *what)
{
    size_t got = fread(buf, 1, n, t->f);
    if (got != n) {
        if (ferror(t->f))
            cli_err("%s: read error at byte %llu: %s", t->path,
                    (unsigned long long)(t->pos + got), strerror(errno));
        else
            cli_err("%s: truncated: %s ends at byte %llu", t->path, what,
                    (unsigned long long)(t->pos + got));
        return -1;
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
            return tar_fail(t, t->pos, "truncated: member data runs past the end of the file");
        if (fseeko(t->f, (off_t)n, SEEK_CUR) == 0) {
            t->pos += n;
            return 0;
        }
        t->seekable = 0;
    }
    char buf[16384];
    while (n) {
        size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
        if (read_exact(t, buf, k, "member data") != 0)
            return -1;
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
        return tar_fail(t, t->pos, "extended header larger than 1 MiB");
    char *body = cli_xmalloc((size_t)size + 1);
    if (read_exact(t, body, (size_t)size, "extended header") != 0) {
        free(body);
        return -1;
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
            return tar_fail(t, at, "malformed pax extended header");
        const char *kv = body + j + 1, *end = body + i + len - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (!eq)
            return tar_fail(t, at, "malformed pax record (no '=')");
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(end - eq - 1);
        if (klen == 4 && memcmp(kv, "path", 4) == 0) {
            free(t->pending_name);
            t->pending_name = cli_xmalloc(vlen + 1);
            memcpy(t->pending_name, eq + 1, vlen);
            t->pending_name[vlen] = 0;
        } else if (klen == 4 && memcmp(kv, "size", 4) == 0) {
            char num[32];
            uint64_t v;
            if (vlen == 0 || vlen >= sizeof num)
                return tar_fail(t, at, "bad pax size record");
            memcpy(num, eq + 1, vlen);
            num[vlen] = 0;
            if (cli_parse_u64(num, &v) != 0)
                return tar_fail(t, at, "bad pax size record");
            t->pending_size = v;
            t->has_pending_size = 1;
        }
        i += len;
    }
    return 0;
}

/* The next member: 1, 0 at the end of the archive, -1 after a message. */
static int next_member(tar_reader *t, tar_member *m)
{
    unsigned char h[BLOCK];
    for (;;) {
        if (skip_bytes(t, t->skip_next) != 0)
            return -1;
        t->skip_next = 0;
        size_t got = fread(h, 1, BLOCK, t->f);
        if (got == 0 && !ferror(t->f))
            return 0; /* end of file without the end-of-archive blocks: accepted */
        if (got != BLOCK) {
            if (ferror(t->f))
                cli_err("%s: read error at byte %llu: %s", t->path, (unsigned long long)t->pos,
                        strerror(errno));
            else
                cli_err("%s: truncated: a header block ends at byte %llu", t->path,
                        (unsigned long long)(t->pos + got));
            return -1;
        }
        uint64_t at = t->pos;
        t->pos += BLOCK;
        int zero = 1;
        for (int i = 0; i < BLOCK && zero; i++)
            zero = h[i] == 0;
        if (zero)
            return 0;
        if (!checksum_ok(h))
            return tar_fail(t, at, "bad tar header checksum (not a tar file, or corrupt)");
        uint64_t size;
        if (parse_num(h + 124, 12, &size) != 0)
            return tar_fail(t, at, "bad size field in tar header");
        char type = (char)h[156];
        if (t->has_pending_size && type != 'L' && type != 'x') {
            size = t->pending_size;
            t->has_pending_size = 0;
        }
        if (size > (UINT64_MAX >> 2))
            return tar_fail(t, at, "member size out of range");
        if (t->file_size && size > t->file_size - t->pos)
            return tar_fail(t, at, "truncated: member data runs past the end of the file");

        if (type == 'L' || type == 'x') {
            char *body;
            if (read_meta_body(t, size, &body) != 0)
                return -1;
            int rc = 0;
            if (type == 'L') {
                free(t->pending_name);
                t->pending_name = body;
                body = NULL;
            } else {
                rc = apply_pax(t, body, (size_t)size, at);
            }
            free(body);
            if (rc != 0)
                return -1;
            continue;
        }
        t->skip_next = padded(size);

        free(m->name);
        if (t->pending_name) {
            m->name = t->pending_name;
            t->pending_name = NULL;
        } else {
            size_t nlen = strnlen((const char *)h, 100);
            int posix = memcmp(h + 257, "ustar\0", 6) == 0;
            size_t plen = posix ? strnlen((const char *)h + 345, 155) : 0;
            m->name = cli_xmalloc(plen + nlen + 2);
            if (plen) {
                memcpy(m->name, h + 345, plen);
                m->name[plen] = '/';
                memcpy(m->name + plen + 1, h, nlen);
                m->name[plen + 1 + nlen] = 0;
            } else {
                memcpy(m->name, h, nlen);
                m->name[nlen] = 0;
            }
        }
        m->size = size;
        m->offset = t->pos;
        m->type = type;
        if (type == 'g' || type == 'K') {
            free(m->name);
            m->name = NULL;
            continue; /* global pax header, GNU long link name: nothing to import */
        }
        return 1;
    }
}

/* Reads the current member's data (size bytes, already bounded by the caller). From a stream, whose
 * size is unknown, the buffer grows as the data arrives (1 MiB at a time): a header that lies about
 * its member's size (up to 256 MiB for an image) then costs memory in proportion to the bytes
 * really there, not a reservation of the size it claims. */
static int read_member(tar_reader *t, tar_member *m, cli_buf *b)
{
    const size_t step = t->file_size ? (size_t)m->size : (size_t)1 << 20;
    b->len = 0;
    cli_buf_reserve(b, (size_t)(m->size < step ? m->size : step) + 1);
    while (b->len < m->size) {
        size_t want = (size_t)m->size - b->len;
        if (want > step)
            want = step;
        cli_buf_reserve(b, b->len + want + 1);
        if (read_exact(t, b->data + b->len, want, m->name) != 0)
            return -1;
        b->len += want;
    }
    t->skip_next = padded(m->size) - m->size;
    return 0;
}

/* ---- samples -------------------------------------------------------------------------------- */

typedef struct group {
    char *key;
    int has_image, has_label;
    int64_t label;
    const char *bad; /* static reason, or NULL */
    char bad_buf[160];
    uint64_t bytes;
    cli_buf image;
} group;

static int flush_group(pack_ctx *pc, const char *tar, group *g)
{
    if (!g->key)
        return CLI_OK;
    char *what = cli_xasprintf("%s:%s", tar, g->key);
    int rc;
    if (g->bad)
        rc = pack_skip(pc, what, g->bad, g->bytes);
    else if (!g->has_image)
        rc = pack_skip(pc, what, "no .jpg/.jpeg member in this sample", g->bytes);
    else if (!g->has_label)
        rc = pack_skip(pc, what, "no .cls member in this sample", g->bytes);
    else
        rc = pack_add_jpeg(pc, what, g->image.data, g->image.len, g->label);
    free(what);
    free(g->key);
    g->key = NULL;
    g->has_image = g->has_label = 0;
    g->bad = NULL;
    g->bytes = 0;
    return rc;
}

static void set_bad(group *g, const char *fmt, ...) CLI_PRINTF(2, 3);

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

/* Handles one regular member: 0, or -1 when the archive cannot be read on. */
static int add_member(tar_reader *t, tar_member *m, group *g, cli_buf *label_buf)
{
    const char *base = cli_basename(m->name);
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
    if (strcmp(ext, "jpg") == 0 || strcmp(ext, "jpeg") == 0) {
        if (g->has_image) {
            set_bad(g, "two image members (%s)", base);
            return 0;
        }
        if (m->size > CLI_MAX_ITEM_BYTES) {
            set_bad(g, "image member %s is larger than 256 MiB", base);
            return 0;
        }
        if (read_member(t, m, &g->image) != 0)
            return -1;
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
        if (read_member(t, m, label_buf) != 0)
            return -1;
        if (cli_parse_i64_trim((const char *)label_buf->data, label_buf->len, &g->label) != 0)
            set_bad(g, "label member %s does not hold an integer", base);
        else
            g->has_label = 1;
    }
    return 0;
}

static int one_tar(pack_ctx *pc, const char *path)
{
    tar_reader t;
    memset(&t, 0, sizeof t);
    t.path = path;
    t.f = fopen(path, "rb");
    if (!t.f) {
        cli_err("%s: %s", path, strerror(errno));
        return CLI_EDATA;
    }
    struct stat st;
    if (fstat(fileno(t.f), &st) == 0 && S_ISREG(st.st_mode)) {
        t.seekable = 1;
        t.file_size = (uint64_t)st.st_size;
    }
    setvbuf(t.f, NULL, _IOFBF, 1 << 20);

    tar_member m;
    memset(&m, 0, sizeof m);
    group g;
    memset(&g, 0, sizeof g);
    cli_buf label_buf = {0};
    int rc = CLI_OK, r = 0;
    while (rc == CLI_OK && (r = next_member(&t, &m)) == 1) {
        if (m.type != '0' && m.type != '\0' && m.type != '7')
            continue; /* directories, links, devices: not sample data */
        const char *base = cli_basename(m.name);
        const char *dot = strchr(base, '.');
        size_t keylen = dot ? (size_t)(dot - m.name) : strlen(m.name);
        if (!g.key || strlen(g.key) != keylen || memcmp(g.key, m.name, keylen) != 0) {
            rc = flush_group(pc, path, &g);
            if (rc)
                break;
            g.key = cli_xmalloc(keylen + 1);
            memcpy(g.key, m.name, keylen);
            g.key[keylen] = 0;
        }
        if (add_member(&t, &m, &g, &label_buf) != 0)
            rc = CLI_EDATA;
    }
    if (rc == CLI_OK && r < 0)
        rc = CLI_EDATA;
    if (rc == CLI_OK)
        rc = flush_group(pc, path, &g);
    free(g.key);
    free(m.name);
    free(t.pending_name);
    cli_buf_free(&g.image);
    cli_buf_free(&label_buf);
    fclose(t.f);
    return rc;
}

int imp_tar(pack_ctx *pc, const char *const *srcs, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(srcs[i], &st) != 0) {
            cli_err("%s: %s", srcs[i], strerror(errno));
            return CLI_EDATA;
        }
        total += (uint64_t)st.st_size;
    }
    sp_schema *schema = pack_image_label_schema();
    if (!schema)
        return CLI_EDATA;
    pack_set_schema(pc, schema);
    pack_set_totals(pc, 0, total);
    for (size_t i = 0; i < n; i++) {
        int rc = one_tar(pc, srcs[i]);
        if (rc)
            return rc;
    }
    return CLI_OK;
}
