/* sp_error.c - error codes and messages, checked allocation, small shared helpers. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "sp_internal.h"

static _Thread_local char tls_last_error[SP_ERRMSG_MAX];

const char *sp_strerror(int code)
{
    switch (code) {
#define SP_X_(name, value, msg)                                                                    \
    case value:                                                                                    \
        return msg;
        SP_ERROR_TABLE(SP_X_)
#undef SP_X_
    }
    return "unknown error";
}

const char *sp_error_name(int code)
{
    switch (code) {
#define SP_X_(name, value, msg)                                                                    \
    case value:                                                                                    \
        return #name;
        SP_ERROR_TABLE(SP_X_)
#undef SP_X_
    }
    return "SP_UNKNOWN";
}

const char *sp_last_error(void) { return tls_last_error; }

void sp_clear_error(void) { tls_last_error[0] = '\0'; }

size_t sp_text_char_len(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    uint32_t c = u[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    if (len > 1)
        c &= 0x3Fu >> (len - 1); /* the lead byte's payload bits */
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (u[i] & 0x3F);
    }
    static const uint32_t least[5] = { 0, 0, 0x80, 0x800, 0x10000 }; /* below: an overlong form */
    if (c < least[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F))
        return 0;
    return len;
}

void sp_text_escape(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = sp_text_char_len(s + i, n - i);
        char piece[8];
        size_t plen;
        if (len == 0)
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x", (unsigned)(uint8_t)s[i]), len = 1;
        else if (s[i] == '\\')
            plen = 2, memcpy(piece, "\\\\", 2);
        else
            plen = len, memcpy(piece, s + i, len);
        if (o + plen >= outlen)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += len;
    }
    out[o] = '\0';
}

int sp_fail(sp_errbuf *eb, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_last_error, sizeof tls_last_error, fmt, ap);
    va_end(ap);
    if (eb)
        memcpy(eb->msg, tls_last_error, sizeof eb->msg);
    return code;
}

int sp_fail_keep(sp_errbuf *eb, int code)
{
    if (tls_last_error[0] == '\0')
        snprintf(tls_last_error, sizeof tls_last_error, "%s", sp_strerror(code));
    if (eb)
        memcpy(eb->msg, tls_last_error, sizeof eb->msg);
    return code;
}

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

int sp_online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double sp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sp_deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
