/* imp_npy.c - NumPy .npy importer: each file is one tensor field named after its stem; samples
 * are rows (the first axis), which every file must share. The header is parsed here. Rows are
 * written in imp_item_order's order: row by row (order=source, read through a 1 MiB buffer), or
 * a seeded permutation of the row indices (order=shuffled, the default; each row read at its
 * offset, unbuffered; 8 bytes a row held, never the rows). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "imp.h"

#define MAX_HEADER (1u << 20)
#define MAX_NDIM (SP_MAX_DIMS + 1) /* the first axis plus a field's dims */

typedef struct npy_file {
    const char *path;
    char name[SP_MAX_NAME + 1];
    int dtype;
    uint32_t ndim;
    uint64_t shape[MAX_NDIM];
    uint64_t data_offset, row_bytes;
    FILE *f;
    unsigned char *row;
} npy_file;

typedef struct parser {
    const char *s, *end;
} parser;

static void skip_ws(parser *p)
{
    while (p->s < p->end && isspace((unsigned char)*p->s))
        p->s++;
}

static int expect(parser *p, char c)
{
    skip_ws(p);
    if (p->s < p->end && *p->s == c) {
        p->s++;
        return 0;
    }
    return -1;
}

/* A Python string literal without escapes ('<f4' or "<f4"), copied into out. */
static int parse_str(parser *p, char *out, size_t n)
{
    skip_ws(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
        return -1;
    char q = *p->s++;
    size_t i = 0;
    while (p->s < p->end && *p->s != q) {
        if (*p->s == '\\' || i + 1 >= n)
            return -1;
        out[i++] = *p->s++;
    }
    if (p->s >= p->end)
        return -1;
    p->s++;
    out[i] = 0;
    return 0;
}

static int parse_word(parser *p, const char *w)
{
    skip_ws(p);
    size_t n = strlen(w);
    if ((size_t)(p->end - p->s) >= n && memcmp(p->s, w, n) == 0) {
        p->s += n;
        return 0;
    }
    return -1;
}

/* "(3, 4)", "(5,)", "()"; Python 2 headers may write "5L". */
static int parse_shape(parser *p, npy_file *nf)
{
    if (expect(p, '(') != 0)
        return -1;
    nf->ndim = 0;
    for (;;) {
        skip_ws(p);
        if (p->s < p->end && *p->s == ')') {
            p->s++;
            return 0;
        }
        if (p->s >= p->end || !isdigit((unsigned char)*p->s) || nf->ndim == MAX_NDIM)
            return nf->ndim == MAX_NDIM ? -2 : -1;
        uint64_t v = 0;
        while (p->s < p->end && isdigit((unsigned char)*p->s)) {
            unsigned d = (unsigned)(*p->s++ - '0');
            if (v > (UINT64_MAX - d) / 10)
                return -1;
            v = v * 10 + d;
        }
        if (p->s < p->end && *p->s == 'L')
            p->s++;
        nf->shape[nf->ndim++] = v;
        skip_ws(p);
        if (p->s < p->end && *p->s == ',')
            p->s++;
        else if (p->s >= p->end || *p->s != ')')
            return -1;
    }
}

/* Maps a descr such as "<f4" or "|u1" to an sp dtype; *why explains a refusal. */
static int map_descr(const char *d, const char **why)
{
    static const struct {
        const char *code;
        int dtype;
    } map[] = {
        {"f2", SP_DTYPE_F16}, {"f4", SP_DTYPE_F32}, {"f8", SP_DTYPE_F64}, {"u1", SP_DTYPE_U8},
        {"i1", SP_DTYPE_I8},  {"u2", SP_DTYPE_U16}, {"i2", SP_DTYPE_I16}, {"u4", SP_DTYPE_U32},
        {"i4", SP_DTYPE_I32}, {"u8", SP_DTYPE_U64}, {"i8", SP_DTYPE_I64}, {"b1", SP_DTYPE_BOOL},
    };
    *why = "unsupported dtype (numeric <f2 <f4 <f8 |u1 |i1 <u2 <i2 <u4 <i4 <u8 <i8 |b1 only)";
    if (strlen(d) != 3 || !strchr("<>|=", d[0]))
        return -1;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(d + 1, map[i].code) != 0)
            continue;
        if (sp_dtype_size(map[i].dtype) == 1)
            return map[i].dtype; /* byte order means nothing for one byte */
        if (d[0] == '<')
            return map[i].dtype;
        *why = d[0] == '>' ? "big-endian data is not supported (save it with .astype('<...'))"
                           : "byte order not stated as little-endian ('<')";
        return -1;
    }
    return -1;
}

static int parse_header(imp_ctx *c, npy_file *nf, const char *text, size_t len)
{
    parser p = {text, text + len};
    char key[32], descr[32] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    if (expect(&p, '{') != 0)
        goto bad;
    for (;;) {
        skip_ws(&p);
        if (p.s < p.end && *p.s == '}')
            break;
        if (parse_str(&p, key, sizeof key) != 0 || expect(&p, ':') != 0)
            goto bad;
        if (strcmp(key, "descr") == 0) {
            skip_ws(&p);
            if (p.s < p.end && *p.s == '[') {
                return imp_fail(c, SP_ENOTSUP, "%s: structured (record) dtypes are not supported", nf->path);
            }
            if (parse_str(&p, descr, sizeof descr) != 0)
                goto bad;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&p, "True") == 0)
                fortran = 1;
            else if (parse_word(&p, "False") != 0)
                goto bad;
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            int rc = parse_shape(&p, nf);
            if (rc == -2) {
                return imp_fail(c, SP_ELIMIT, "%s: more than %d dimensions", nf->path, MAX_NDIM);
            }
            if (rc != 0)
                goto bad;
            have_shape = 1;
        } else {
            return imp_fail(c, SP_EFORMAT, "%s: unexpected key '%s' in the .npy header", nf->path, key);
        }
        skip_ws(&p);
        if (p.s < p.end && *p.s == ',')
            p.s++;
        else if (p.s >= p.end || *p.s != '}')
            goto bad;
    }
    if (!have_descr || !have_order || !have_shape)
        return imp_fail(c, SP_EFORMAT, "%s: .npy header lacks %s", nf->path,
                        !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    const char *why;
    nf->dtype = map_descr(descr, &why);
    if (nf->dtype < 0)
        return imp_fail(c, SP_ENOTSUP, "%s: dtype '%s': %s", nf->path, descr, why);
    /* Fortran order differs from C order only with two or more dimensions. */
    if (fortran && nf->ndim > 1)
        return imp_fail(c, SP_ENOTSUP, "%s: fortran_order arrays are not supported (save with np.ascontiguousarray)",
                        nf->path);
    if (nf->ndim == 0)
        return imp_fail(c, SP_EFORMAT, "%s: a 0-d array has no rows to make samples of", nf->path);
    return SP_OK;
bad:
    return imp_fail(c, SP_EFORMAT, "%s: malformed .npy header near offset %zu", nf->path, (size_t)(p.s - text));
}

/* A |b1 row holds only 0 and 1 (what the format's bool means); otherwise an error naming the
 * first other byte by its element index in the whole array. */
static int check_bool_row(imp_ctx *c, const npy_file *nf, uint64_t r)
{
    for (uint64_t j = 0; j < nf->row_bytes; j++)
        if (nf->row[j] > 1)
            return imp_fail(c, SP_EBADINPUT, "%s: element %llu (row %llu) is %u; a bool (|b1) array holds only 0 and 1",
                            nf->path, (unsigned long long)(r * nf->row_bytes + j), (unsigned long long)r, nf->row[j]);
    return SP_OK;
}

static uint32_t rd_le(const unsigned char *p, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int open_npy(imp_ctx *c, npy_file *nf)
{
    struct stat st;
    const char *why;
    nf->f = imp_fopen_regular(nf->path, &st, &why);
    if (!nf->f)
        return imp_fail(c, SP_EIO, "%s: %s", nf->path, why);
    unsigned char pre[12];
    if (fread(pre, 1, 10, nf->f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return imp_fail(c, SP_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", nf->path);
    uint32_t hlen;
    if (pre[6] == 1) {
        hlen = rd_le(pre + 8, 2);
        nf->data_offset = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, nf->f) != 2)
            return imp_fail(c, SP_ETRUNC, "%s: truncated .npy header", nf->path);
        hlen = rd_le(pre + 8, 4);
        nf->data_offset = 12;
    } else {
        return imp_fail(c, SP_EVERSION, "%s: unsupported .npy format version %u.%u", nf->path, pre[6], pre[7]);
    }
    if (hlen > MAX_HEADER)
        return imp_fail(c, SP_ELIMIT, "%s: .npy header of %u bytes is larger than 1 MiB", nf->path, hlen);
    char *text = sp_malloc(hlen + 1);
    if (!text)
        return imp_oom(c, nf->path, hlen + 1);
    if (fread(text, 1, hlen, nf->f) != hlen) {
        sp_free(text);
        return imp_fail(c, SP_ETRUNC, "%s: truncated .npy header", nf->path);
    }
    text[hlen] = 0;
    nf->data_offset += hlen;
    int rc = parse_header(c, nf, text, hlen);
    sp_free(text);
    if (rc)
        return rc;

    uint64_t row_elems = 1;
    for (uint32_t i = 1; i < nf->ndim; i++) {
        if (nf->shape[i] == 0)
            return imp_fail(c, SP_EFORMAT, "%s: dimension %u has size 0", nf->path, i);
        if (row_elems > UINT64_MAX / nf->shape[i])
            goto too_big;
        row_elems *= nf->shape[i];
    }
    size_t isz = sp_dtype_size(nf->dtype);
    if (row_elems > UINT64_MAX / isz)
        goto too_big;
    nf->row_bytes = row_elems * isz;
    if (nf->shape[0] && nf->row_bytes > UINT64_MAX / nf->shape[0])
        goto too_big;
    uint64_t data = nf->shape[0] * nf->row_bytes;
    if ((uint64_t)st.st_size < nf->data_offset || (uint64_t)st.st_size - nf->data_offset != data)
        return imp_fail(c, SP_ETRUNC, "%s: data size does not match the header: shape and dtype need %llu bytes "
                        "after the %llu-byte header, the file has %lld bytes", nf->path, (unsigned long long)data,
                        (unsigned long long)nf->data_offset, (long long)st.st_size);
    return SP_OK;
too_big:
    return imp_fail(c, SP_ELIMIT, "%s: array size overflows", nf->path);
}

/* Field name: the file's stem, reduced to [A-Za-z0-9_.-]. */
static void field_name(const char *path, char *out)
{
    const char *base = imp_basename(path);
    size_t n = strlen(base);
    if (imp_ends_with_ci(base, ".npy"))
        n -= 4;
    if (n > SP_MAX_NAME)
        n = SP_MAX_NAME;
    for (size_t i = 0; i < n; i++) {
        char ch = base[i];
        out[i] = (isalnum((unsigned char)ch) || ch == '_' || ch == '.' || ch == '-') ? ch : '_';
    }
    out[n] = 0;
    if (n == 0)
        strcpy(out, "tensor");
}

typedef struct npy {
    npy_file *files;
    size_t n;
    uint64_t rows, row, row_bytes; /* rows of every file, the next row, bytes of one sample */
    uint64_t *perm;                /* order=shuffled: row perm[k] is written k-th; else NULL */
    sp_value *values;
    char what[512];
} npy;

static int build_schema(imp_ctx *c, const npy *np)
{
    sp_schema *schema = sp_schema_create();
    if (!schema)
        return imp_oom(c, np->files[0].path, sizeof(sp_field_info));
    for (size_t i = 0; i < np->n; i++) {
        const npy_file *f = &np->files[i];
        int rc = sp_schema_add(schema, f->name, SP_FIELD_TENSOR, f->dtype, f->ndim - 1, f->shape + 1);
        if (rc != 0) {
            sp_schema_destroy(schema);
            if (rc == SP_EEXIST)
                return imp_fail(c, rc, "%s: its field name '%s' is taken by another source; rename one file",
                                f->path, f->name);
            return imp_fail(c, rc, "%s: %s", f->path, *sp_last_error() ? sp_last_error() : sp_strerror(rc));
        }
    }
    imp_set_schema(c, schema);
    return SP_OK;
}

/* Row buffers and the read position of every file, once there are rows to read. */
static int start_rows(imp_ctx *c, npy *np)
{
    for (size_t i = 0; i < np->n; i++) {
        npy_file *f = &np->files[i];
        if (!(f->row = sp_malloc((size_t)f->row_bytes)))
            return imp_oom(c, f->path, (size_t)f->row_bytes);
        /* shuffled: no buffer, which every seek would throw away after one row */
        setvbuf(f->f, NULL, np->perm ? _IONBF : _IOFBF, np->perm ? 0 : 1 << 20);
        if (fseeko(f->f, (off_t)f->data_offset, SEEK_SET) != 0)
            return imp_fail(c, SP_EIO, "%s: seek failed: %s", f->path, strerror(errno));
        np->values[i] = (sp_value){ f->row, (size_t)f->row_bytes };
    }
    return SP_OK;
}

static int npy_open(imp_ctx *c, void *priv, const char *const *srcs, size_t n)
{
    npy *np = priv;
    if (n > SP_MAX_FIELDS)
        return imp_fail(c, SP_ELIMIT, "%zu .npy sources (%s...): a schema holds at most %d fields", n, srcs[0],
                        SP_MAX_FIELDS);
    np->files = sp_calloc(n, sizeof *np->files);
    np->values = sp_calloc(n, sizeof *np->values);
    if (!np->files || !np->values)
        return imp_oom(c, srcs[0], n * (sizeof *np->files + sizeof *np->values));
    np->n = n;
    for (size_t i = 0; i < n; i++) {
        npy_file *f = &np->files[i];
        f->path = srcs[i];
        field_name(srcs[i], f->name);
        int rc = open_npy(c, f);
        if (rc)
            return rc;
        if (f->shape[0] != np->files[0].shape[0])
            return imp_fail(c, SP_ESCHEMA, "%s: has %llu rows but %s has %llu; all .npy sources must share the "
                            "first axis", srcs[i], (unsigned long long)f->shape[0], srcs[0],
                            (unsigned long long)np->files[0].shape[0]);
        np->row_bytes += f->row_bytes;
    }
    int rc = build_schema(c, np);
    if (rc)
        return rc;
    np->rows = np->files[0].shape[0];
    imp_set_totals(c, np->rows, np->rows * np->row_bytes);
    /* Without rows there is nothing to read: no row buffers, which a header may make as large as
     * the schema allows (1 GiB) while the file holds no data. The import then reports the empty
     * input. */
    if (np->rows && sp_params_get(imp_params(c), SP_PARAM_ORDER) == SP_ORDER_SHUFFLED &&
        (rc = imp_item_order(c, np->rows, &np->perm)) != SP_OK)
        return rc;
    return np->rows ? start_rows(c, np) : SP_OK;
}

static int npy_next(imp_ctx *c, void *priv, imp_sample *out)
{
    npy *np = priv;
    if (np->row == np->rows)
        return 0;
    const uint64_t r = np->perm ? np->perm[np->row++] : np->row++;
    for (size_t i = 0; i < np->n; i++) {
        npy_file *f = &np->files[i];
        if (np->perm && fseeko(f->f, (off_t)(f->data_offset + r * f->row_bytes), SEEK_SET) != 0)
            return imp_fail(c, SP_EIO, "%s: seek to row %llu failed: %s", f->path, (unsigned long long)r,
                            strerror(errno));
        if (fread(f->row, 1, (size_t)f->row_bytes, f->f) != f->row_bytes)
            return imp_fail(c, ferror(f->f) ? SP_EIO : SP_ETRUNC, "%s: %s reading row %llu", f->path,
                            ferror(f->f) ? strerror(errno) : "file shrank", (unsigned long long)r);
        int rc = f->dtype == SP_DTYPE_BOOL ? check_bool_row(c, f, r) : SP_OK;
        if (rc)
            return rc;
    }
    snprintf(np->what, sizeof np->what, "%s row %llu", np->files[0].path, (unsigned long long)r);
    *out = (imp_sample){ np->values, np->n, np->row_bytes, np->what };
    return 1;
}

static void npy_close(void *priv)
{
    npy *np = priv;
    for (size_t i = 0; np->files && i < np->n; i++) {
        if (np->files[i].f)
            fclose(np->files[i].f);
        sp_free(np->files[i].row);
    }
    sp_free(np->files);
    sp_free(np->values);
    sp_free(np->perm);
}

const imp_kind imp_kind_npy = {
    .name = "npy",
    .suffix = ".npy",
    .priv_size = sizeof(npy),
    .open = npy_open,
    .next = npy_next,
    .close = npy_close,
};
