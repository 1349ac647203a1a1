/* sp_alloc.c - every allocation the library makes goes through here, so a test can make the n-th
 * one fail (sp_alloc_fail_countdown); and sp_buf, the growable byte buffer encoders write into. */
#include <stdatomic.h>
#include <stdlib.h>

#include "sp_internal.h"

/* Fault injection: when positive, the n-th following allocation fails. Only code linked against the
 * internal library (tests) sets it; there is no environment switch in the shipped library. */
atomic_long sp_alloc_fail_countdown;

static bool alloc_should_fail(void)
{
    if (atomic_load_explicit(&sp_alloc_fail_countdown, memory_order_relaxed) <= 0)
        return false;
    return atomic_fetch_sub(&sp_alloc_fail_countdown, 1) == 1;
}

void *sp_malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n ? n : 1); }
void *sp_calloc(size_t n, size_t size) { return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1); }
void *sp_realloc(void *p, size_t n) { return alloc_should_fail() ? NULL : realloc(p, n ? n : 1); }
void sp_free(void *p) { free(p); }

void *sp_aligned_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (alloc_should_fail())
        return NULL;
    if (posix_memalign(&p, align, n ? n : align) != 0)
        return NULL;
    return p;
}

char *sp_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *r = sp_malloc(n);
    if (r)
        memcpy(r, s, n);
    return r;
}

char *sp_path_join(const char *dir, const char *name)
{
    const char *sep = sp_path_sep(dir);
    size_t n = strlen(dir), k = strlen(sep), m = strlen(name);
    char *r = sp_malloc(n + k + m + 1);
    if (r) {
        memcpy(r, dir, n);
        memcpy(r + n, sep, k);
        memcpy(r + n + k, name, m + 1);
    }
    return r;
}

void sp_buf_free(sp_buf *b)
{
    sp_free(b->data);
    *b = (sp_buf){ 0 };
}

bool sp_buf_reserve(sp_buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra <= b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *d = sp_realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void sp_buf_put(sp_buf *b, const void *p, size_t n)
{
    if (!n || !sp_buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void sp_buf_u8(sp_buf *b, uint8_t v) { sp_buf_put(b, &v, 1); }

void sp_buf_u16(sp_buf *b, uint16_t v)
{
    uint8_t t[2];
    sp_st16(t, v);
    sp_buf_put(b, t, 2);
}

void sp_buf_u32(sp_buf *b, uint32_t v)
{
    uint8_t t[4];
    sp_st32(t, v);
    sp_buf_put(b, t, 4);
}

void sp_buf_u64(sp_buf *b, uint64_t v)
{
    uint8_t t[8];
    sp_st64(t, v);
    sp_buf_put(b, t, 8);
}

void sp_buf_pad(sp_buf *b, size_t align)
{
    static const uint8_t zeros[64];
    while (!b->failed && b->len % align)
        sp_buf_put(b, zeros, (align - b->len % align) < sizeof zeros ? align - b->len % align : sizeof zeros);
}
