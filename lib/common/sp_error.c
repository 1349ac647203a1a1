/* sp_error.c - error codes, their names, and the thread's last message (sp_fail). */
#include <stdio.h>

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
