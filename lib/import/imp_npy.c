/* imp_npy.c - NumPy .npy importer: each file is one tensor field named after its stem; samples
 * are rows (the first axis), which every file must share. The header is parsed here. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static int parse_header(npy_file *nf, const char *text, size_t len)
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
                cli_err("%s: structured (record) dtypes are not supported", nf->path);
                return CLI_EDATA;
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
                cli_err("%s: more than %d dimensions", nf->path, MAX_NDIM);
                return CLI_EDATA;
            }
            if (rc != 0)
                goto bad;
            have_shape = 1;
        } else {
            cli_err("%s: unexpected key '%s' in the .npy header", nf->path, key);
            return CLI_EDATA;
        }
        skip_ws(&p);
        if (p.s < p.end && *p.s == ',')
            p.s++;
        else if (p.s >= p.end || *p.s != '}')
            goto bad;
    }
    if (!have_descr || !have_order || !have_shape) {
        cli_err("%s: .npy header lacks %s", nf->path,
                !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
        return CLI_EDATA;
    }
    const char *why;
    nf->dtype = map_descr(descr, &why);
    if (nf->dtype < 0) {
        cli_err("%s: dtype '%s': %s", nf->path, descr, why);
        return CLI_EDATA;
    }
    /* Fortran order differs from C order only with two or more dimensions. */
    if (fortran && nf->ndim > 1) {
        cli_err("%s: fortran_order arrays are not supported (save with np.ascontiguousarray)",
                nf->path);
        return CLI_EDATA;
    }
    if (nf->ndim == 0) {
        cli_err("%s: a 0-d array has no rows to make samples of", nf->path);
        return CLI_EDATA;
    }
    return CLI_OK;
bad:
    cli_err("%s: malformed .npy header near offset %zu", nf->path, (size_t)(p.s - text));
    return CLI_EDATA;
}

/* A |b1 row holds only 0 and 1 (what the format's bool means); otherwise an error naming the
 * first other byte by its element index in the whole array. */
static int check_bool_row(const npy_file *nf, uint64_t r)
{
    for (uint64_t j = 0; j < nf->row_bytes; j++) {
        if (nf->row[j] > 1) {
            cli_err("%s: element %llu (row %llu) is %u; a bool (|b1) array holds only 0 and 1", nf->path,
                    (unsigned long long)(r * nf->row_bytes + j), (unsigned long long)r, nf->row[j]);
            return CLI_EDATA;
        }
    }
    return CLI_OK;
}

static uint32_t rd_le(const unsigned char *p, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int open_npy(npy_file *nf)
{
    struct stat st;
    const char *why;
    nf->f = cli_fopen_regular(nf->path, &st, &why);
    if (!nf->f) {
        cli_err("%s: %s", nf->path, why);
        return CLI_EDATA;
    }
    unsigned char pre[12];
    if (fread(pre, 1, 10, nf->f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        cli_err("%s: not a .npy file (no \\x93NUMPY magic)", nf->path);
        return CLI_EDATA;
    }
    uint32_t hlen;
    if (pre[6] == 1) {
        hlen = rd_le(pre + 8, 2);
        nf->data_offset = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, nf->f) != 2) {
            cli_err("%s: truncated .npy header", nf->path);
            return CLI_EDATA;
        }
        hlen = rd_le(pre + 8, 4);
        nf->data_offset = 12;
    } else {
        cli_err("%s: unsupported .npy format version %u.%u", nf->path, pre[6], pre[7]);
        return CLI_EDATA;
    }
    if (hlen > MAX_HEADER) {
        cli_err("%s: .npy header of %u bytes is larger than 1 MiB", nf->path, hlen);
        return CLI_EDATA;
    }
    char *text = cli_xmalloc(hlen + 1);
    if (fread(text, 1, hlen, nf->f) != hlen) {
        cli_err("%s: truncated .npy header", nf->path);
        free(text);
        return CLI_EDATA;
    }
    text[hlen] = 0;
    nf->data_offset += hlen;
    int rc = parse_header(nf, text, hlen);
    free(text);
    if (rc)
        return rc;

    uint64_t row_elems = 1;
    for (uint32_t i = 1; i < nf->ndim; i++) {
        if (nf->shape[i] == 0) {
            cli_err("%s: dimension %u has size 0", nf->path, i);
            return CLI_EDATA;
        }
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
    if ((uint64_t)st.st_size < nf->data_offset || (uint64_t)st.st_size - nf->data_offset != data) {
        cli_err("%s: data size does not match the header: shape and dtype need %llu bytes after "
                "the %llu-byte header, the file has %lld bytes",
                nf->path, (unsigned long long)data, (unsigned long long)nf->data_offset,
                (long long)st.st_size);
        return CLI_EDATA;
    }
    return CLI_OK;
too_big:
    cli_err("%s: array size overflows", nf->path);
    return CLI_EDATA;
}

/* Field name: the file's stem, reduced to [A-Za-z0-9_.-]. */
static void field_name(const char *path, char *out)
{
    const char *base = cli_basename(path);
    size_t n = strlen(base);
    if (cli_ends_with_ci(base, ".npy"))
        n -= 4;
    if (n > SP_MAX_NAME)
        n = SP_MAX_NAME;
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        out[i] = (isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-') ? c : '_';
    }
    out[n] = 0;
    if (n == 0)
        strcpy(out, "tensor");
}

static int build_schema(pack_ctx *pc, npy_file *files, size_t n)
{
    sp_schema *schema = sp_schema_create();
    if (!schema) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = sp_schema_add(schema, files[i].name, SP_FIELD_TENSOR, files[i].dtype,
                               files[i].ndim - 1, files[i].shape + 1);
        if (rc != 0) {
            if (rc == SP_EEXIST)
                cli_err("%s: its field name '%s' is taken by another source; rename one file",
                        files[i].path, files[i].name);
            else
                cli_lib_err(files[i].path, rc, sp_last_error());
            sp_schema_destroy(schema);
            return CLI_EDATA;
        }
    }
    pack_set_schema(pc, schema);
    return CLI_OK;
}

int imp_npy(pack_ctx *pc, const char *const *srcs, size_t n)
{
    if (n > SP_MAX_FIELDS) {
        cli_err("%zu .npy sources: a schema holds at most %d fields", n, SP_MAX_FIELDS);
        return CLI_EDATA;
    }
    npy_file *files = cli_xcalloc(n, sizeof *files);
    sp_value *values = cli_xcalloc(n, sizeof *values);
    int rc = CLI_OK;
    uint64_t row_bytes = 0;
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        files[i].path = srcs[i];
        field_name(srcs[i], files[i].name);
        rc = open_npy(&files[i]);
        if (rc == CLI_OK && files[i].shape[0] != files[0].shape[0]) {
            cli_err("%s: has %llu rows but %s has %llu; all .npy sources must share the first "
                    "axis",
                    srcs[i], (unsigned long long)files[i].shape[0], srcs[0],
                    (unsigned long long)files[0].shape[0]);
            rc = CLI_EDATA;
        }
        row_bytes += files[i].row_bytes;
    }
    if (rc == CLI_OK)
        rc = build_schema(pc, files, n);
    if (rc)
        goto out;
    const uint64_t rows = files[0].shape[0];
    pack_set_totals(pc, rows, rows * row_bytes);
    /* Without rows there is nothing to read: no row buffers, which a header may make as large as
     * the schema allows (1 GiB) while the file holds no data. The pack then reports the empty
     * input. */
    if (rows == 0)
        goto out;

    for (size_t i = 0; i < n; i++) {
        files[i].row = cli_xmalloc((size_t)files[i].row_bytes);
        setvbuf(files[i].f, NULL, _IOFBF, 1 << 20);
        if (fseeko(files[i].f, (off_t)files[i].data_offset, SEEK_SET) != 0) {
            cli_err("%s: seek failed: %s", files[i].path, strerror(errno));
            rc = CLI_EDATA;
            goto out;
        }
        values[i].data = files[i].row;
        values[i].size = (size_t)files[i].row_bytes;
    }
    for (uint64_t r = 0; r < rows && rc == CLI_OK; r++) {
        for (size_t i = 0; i < n; i++) {
            if (fread(files[i].row, 1, (size_t)files[i].row_bytes, files[i].f) !=
                files[i].row_bytes) {
                cli_err("%s: %s reading row %llu", files[i].path,
                        ferror(files[i].f) ? strerror(errno) : "file shrank",
                        (unsigned long long)r);
                rc = CLI_EDATA;
                break;
            }
            if (files[i].dtype == SP_DTYPE_BOOL && (rc = check_bool_row(&files[i], r)) != CLI_OK)
                break;
        }
        if (rc == CLI_OK) {
            char what[512];
            snprintf(what, sizeof what, "%s row %llu", srcs[0], (unsigned long long)r);
            rc = pack_add(pc, values, n, row_bytes, what);
        }
    }
out:
    for (size_t i = 0; i < n; i++) {
        if (files[i].f)
            fclose(files[i].f);
        free(files[i].row);
    }
    free(files);
    free(values);
    return rc;
}
