/* fmt_meta.c - dataset metadata: an ordered list of (key, bytes) entries. */
#include <stdio.h>

#include "fmt.h"

static void entry_free(fmt_meta_entry *en)
{
    sp_free(en->key);
    sp_free(en->value);
}

void fmt_meta_free(fmt_meta *m)
{
    for (size_t i = 0; i < m->n; i++)
        entry_free(&m->e[i]);
    sp_free(m->e);
    *m = (fmt_meta){ 0 };
}

const fmt_meta_entry *fmt_meta_find(const fmt_meta *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].key, key) == 0)
            return &m->e[i];
    return NULL;
}

static int meta_set_n(fmt_meta *m, const char *key, size_t klen, const void *value, size_t len)
{
    if (klen == 0 || klen > FMT_MAX_META_KEY || memchr(key, '\0', klen) || len > FMT_MAX_META_VALUE)
        return SP_EINVAL;
    uint8_t *v = sp_malloc(len);
    char *k = sp_malloc(klen + 1);
    if (!v || !k) {
        sp_free(v);
        sp_free(k);
        return SP_ENOMEM;
    }
    if (len)
        memcpy(v, value, len); /* value may be NULL for an empty entry */
    memcpy(k, key, klen);
    k[klen] = '\0';
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->e[i].key, k) == 0) {
            entry_free(&m->e[i]);
            m->e[i] = (fmt_meta_entry){ k, v, len };
            return SP_OK;
        }
    }
    if (m->n >= FMT_MAX_META_ENTRIES) {
        sp_free(v);
        sp_free(k);
        return SP_ELIMIT;
    }
    fmt_meta_entry *ne = sp_realloc(m->e, (m->n + 1) * sizeof *ne);
    if (!ne) {
        sp_free(v);
        sp_free(k);
        return SP_ENOMEM;
    }
    m->e = ne;
    m->e[m->n++] = (fmt_meta_entry){ k, v, len };
    return SP_OK;
}

int fmt_meta_set(fmt_meta *m, const char *key, const void *value, size_t len)
{
    return meta_set_n(m, key, strlen(key), value, len);
}

void fmt_meta_encode(const fmt_meta *m, sp_buf *b)
{
    sp_buf_u32(b, (uint32_t)m->n);
    for (size_t i = 0; i < m->n; i++) {
        size_t klen = strlen(m->e[i].key);
        sp_buf_u16(b, (uint16_t)klen);
        sp_buf_u32(b, (uint32_t)m->e[i].len);
        sp_buf_put(b, m->e[i].key, klen);
        sp_buf_put(b, m->e[i].value, m->e[i].len);
    }
}

int fmt_meta_decode(sp_cursor *c, uint64_t base, fmt_meta *out, fmt_err *e)
{
    const uint8_t *start = c->p;
    *out = (fmt_meta){ 0 };
    uint32_t n = sp_cursor_u32(c);
    if (!c->ok || n > FMT_MAX_META_ENTRIES)
        return fmt_errf(e, SP_ECORRUPT, base, "metadata count %u is cut short or above %u", n,
                        FMT_MAX_META_ENTRIES);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t at = base + (uint64_t)(c->p - start);
        uint16_t klen = sp_cursor_u16(c);
        uint32_t vlen = sp_cursor_u32(c);
        const uint8_t *k = sp_cursor_take(c, klen);
        const uint8_t *v = sp_cursor_take(c, vlen);
        if (!c->ok) {
            fmt_meta_free(out);
            return fmt_errf(e, SP_ECORRUPT, at, "metadata entry %u is cut short", i);
        }
        for (size_t j = 0; j < out->n; j++) {
            if (strlen(out->e[j].key) == klen && memcmp(out->e[j].key, k, klen) == 0) {
                fmt_meta_free(out);
                return fmt_errf(e, SP_ECORRUPT, at, "metadata key '%.*s' appears twice", (int)klen, (const char *)k);
            }
        }
        int rc = meta_set_n(out, (const char *)k, klen, v, vlen);
        if (rc) {
            fmt_meta_free(out);
            if (rc == SP_ENOMEM)
                return fmt_errf(e, rc, at, "out of memory reading metadata");
            return fmt_errf(e, SP_ECORRUPT, at, "metadata entry %u has a bad key or size", i);
        }
    }
    return SP_OK;
}
