/* fmt_schema.c - the schema object, its rules, and its encoding. */
#include <stdio.h>

#include "fmt.h"

/* A sample larger than this cannot be described; it also bounds what a hostile schema can claim. */
#define MAX_FIXED_SAMPLE_BYTES (1ull << 30)

static bool name_ok(const char *name, size_t len)
{
    if (len == 0 || len > SP_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool is_numeric(int dtype) { return sp_dtype_size(dtype) != 0; }

/* Checks one field against the kind rules and computes fixed_bytes. Writes the reason to why. */
static int field_check(sp_field *f, char *why, size_t whylen)
{
    switch (f->kind) {
    case SP_FIELD_IMAGE:
    case SP_FIELD_BYTES:
        if (f->dtype != SP_DTYPE_U8 || f->ndim != 0)
            return snprintf(why, whylen, "a %s field takes dtype uint8 and no shape",
                            sp_field_kind_name(f->kind)), SP_EINVAL;
        f->fixed_bytes = 0;
        return SP_OK;
    case SP_FIELD_LABEL:
        if (f->dtype != SP_DTYPE_I64 || f->ndim != 0)
            return snprintf(why, whylen, "a label field takes dtype int64 and no shape"), SP_EINVAL;
        f->fixed_bytes = 8;
        return SP_OK;
    case SP_FIELD_TOKENS:
        if ((f->dtype != SP_DTYPE_U16 && f->dtype != SP_DTYPE_U32) || f->ndim != 1)
            return snprintf(why, whylen, "a tokens field takes dtype uint16 or uint32 and one dimension"),
                   SP_EINVAL;
        break;
    case SP_FIELD_TENSOR:
        if (!is_numeric(f->dtype) || f->ndim > SP_MAX_DIMS)
            return snprintf(why, whylen, "a tensor field takes a numeric dtype and at most %d dimensions",
                            SP_MAX_DIMS), SP_EINVAL;
        break;
    default:
        return snprintf(why, whylen, "unknown field kind %d", f->kind), SP_EINVAL;
    }
    uint64_t bytes = sp_dtype_size(f->dtype);
    for (uint32_t d = 0; d < f->ndim; d++) {
        if (f->shape[d] == 0)
            return snprintf(why, whylen, "dimension %u is 0", d), SP_EINVAL;
        if (sp_mul_overflow(bytes, f->shape[d], &bytes) || bytes > MAX_FIXED_SAMPLE_BYTES)
            return snprintf(why, whylen, "one sample exceeds %llu bytes",
                            (unsigned long long)MAX_FIXED_SAMPLE_BYTES), SP_ELIMIT;
    }
    f->fixed_bytes = bytes;
    return SP_OK;
}

static int schema_find_n(const sp_schema *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->f[i].name) == len && memcmp(s->f[i].name, name, len) == 0)
            return (int)i;
    return SP_ENOENT;
}

/* Appends a checked field; shared by the public add and the decoder so both obey one rule set. */
static int schema_append(sp_schema *s, const char *name, size_t len, int kind, int dtype,
                         uint32_t ndim, const uint64_t *shape, char *why, size_t whylen)
{
    if (s->n >= SP_MAX_FIELDS)
        return snprintf(why, whylen, "more than %d fields", SP_MAX_FIELDS), SP_ELIMIT;
    if (!name_ok(name, len))
        return snprintf(why, whylen, "field name must be 1..%d characters of [A-Za-z0-9_.-]",
                        SP_MAX_NAME), SP_EINVAL;
    if (schema_find_n(s, name, len) >= 0)
        return snprintf(why, whylen, "duplicate field name '%.*s'", (int)len, name), SP_EEXIST;
    sp_field f = { .kind = kind, .dtype = dtype, .ndim = ndim };
    memcpy(f.name, name, len);
    f.name[len] = '\0';
    if (ndim > SP_MAX_DIMS)
        return snprintf(why, whylen, "more than %d dimensions", SP_MAX_DIMS), SP_EINVAL;
    for (uint32_t d = 0; d < ndim; d++)
        f.shape[d] = shape ? shape[d] : 0;
    int rc = field_check(&f, why, whylen);
    if (rc)
        return rc;
    /* The limit is on the whole sample, not only on each field. */
    uint64_t total = f.fixed_bytes;
    for (size_t i = 0; i < s->n; i++)
        total += s->f[i].fixed_bytes; /* each <= 1 GiB, at most 64 of them: no overflow */
    if (total > MAX_FIXED_SAMPLE_BYTES)
        return snprintf(why, whylen, "one sample exceeds %llu bytes",
                        (unsigned long long)MAX_FIXED_SAMPLE_BYTES), SP_ELIMIT;
    s->f[s->n++] = f;
    return SP_OK;
}

sp_schema *sp_schema_create(void)
{
    sp_schema *s = sp_calloc(1, sizeof(sp_schema));
    if (!s)
        sp_fail(NULL, SP_ENOMEM, "sp_schema_create: out of memory");
    return s;
}

void sp_schema_destroy(sp_schema *s) { sp_free(s); }

int sp_schema_add(sp_schema *s, const char *name, int kind, int dtype, uint32_t ndim,
                  const uint64_t *shape)
{
    char why[SP_ERRMSG_MAX];
    sp_clear_error();
    if (!s || !name || (ndim && !shape))
        return sp_fail(NULL, SP_EINVAL, "sp_schema_add: NULL argument");
    int rc = schema_append(s, name, strlen(name), kind, dtype, ndim, shape, why, sizeof why);
    if (rc)
        return sp_fail(NULL, rc, "field '%s': %s", name, why);
    return SP_OK;
}

size_t sp_schema_num_fields(const sp_schema *s) { return s ? s->n : 0; }

int sp_schema_field(const sp_schema *s, size_t i, sp_field_info *out)
{
    int rc = sp_out_check("sp_schema_field", "sp_field_info", out);
    if (rc)
        return rc;
    if (!s)
        return sp_fail(NULL, SP_ERANGE, "sp_schema_field: NULL schema");
    if (i >= s->n)
        return sp_fail(NULL, SP_ERANGE, "sp_schema_field: field %zu is past the schema's %zu fields", i, s->n);
    const sp_field *f = &s->f[i];
    sp_field_info fi = { .struct_size = sizeof fi, .name = f->name, .kind = f->kind, .dtype = f->dtype,
                         .ndim = f->ndim, .fixed_bytes = f->fixed_bytes };
    memcpy(fi.shape, f->shape, sizeof fi.shape);
    sp_out_put(out, &fi, sizeof fi);
    return SP_OK;
}

int sp_schema_find(const sp_schema *s, const char *name)
{
    if (!s || !name)
        return sp_fail(NULL, SP_EINVAL, "sp_schema_find: NULL %s", s ? "name" : "schema");
    int i = schema_find_n(s, name, strlen(name));
    if (i < 0)
        return sp_fail(NULL, i, "sp_schema_find: the schema has no field '%s'", name);
    return i;
}

int sp_schema_equal(const sp_schema *a, const sp_schema *b)
{
    if (!a || !b || a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const sp_field *x = &a->f[i], *y = &b->f[i];
        if (strcmp(x->name, y->name) || x->kind != y->kind || x->dtype != y->dtype || x->ndim != y->ndim)
            return 0;
        for (uint32_t d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d])
                return 0;
    }
    return 1;
}

uint64_t fmt_schema_min_sample_bytes(const sp_schema *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->f[i].fixed_bytes ? s->f[i].fixed_bytes : 4;
    return n;
}

void fmt_schema_encode(const sp_schema *s, sp_buf *b)
{
    sp_buf_u16(b, (uint16_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        const sp_field *f = &s->f[i];
        size_t len = strlen(f->name);
        sp_buf_u8(b, (uint8_t)f->kind);
        sp_buf_u8(b, (uint8_t)f->dtype);
        sp_buf_u8(b, (uint8_t)f->ndim);
        sp_buf_u8(b, (uint8_t)len);
        sp_buf_put(b, f->name, len);
        for (uint32_t d = 0; d < f->ndim; d++)
            sp_buf_u64(b, f->shape[d]);
    }
}

int fmt_schema_decode(sp_cursor *c, uint64_t base, sp_schema *out, fmt_err *e)
{
    const uint8_t *start = c->p;
    memset(out, 0, sizeof *out);
    uint16_t n = sp_cursor_u16(c);
    if (!c->ok)
        return fmt_errf(e, SP_ECORRUPT, base, "schema is cut short");
    if (n == 0 || n > SP_MAX_FIELDS)
        return fmt_errf(e, SP_ECORRUPT, base, "schema has %u fields (allowed 1..%d)", n, SP_MAX_FIELDS);
    for (uint16_t i = 0; i < n; i++) {
        uint64_t at = base + (uint64_t)(c->p - start);
        uint8_t kind = sp_cursor_u8(c), dtype = sp_cursor_u8(c), ndim = sp_cursor_u8(c);
        uint8_t len = sp_cursor_u8(c);
        const uint8_t *name = sp_cursor_take(c, len);
        uint64_t shape[SP_MAX_DIMS] = { 0 };
        for (uint32_t d = 0; d < ndim && d < SP_MAX_DIMS; d++)
            shape[d] = sp_cursor_u64(c);
        if (!c->ok)
            return fmt_errf(e, SP_ECORRUPT, at, "schema field %u is cut short", i);
        char why[SP_ERRMSG_MAX];
        int rc = schema_append(out, (const char *)name, len, kind, dtype, ndim, shape, why, sizeof why);
        if (rc)
            return fmt_errf(e, SP_ECORRUPT, at, "schema field %u: %s", i, why);
    }
    return SP_OK;
}
