/* cli_util.c - messages, checked allocation, string, number and file helpers of the CLI. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>



size_t cli_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0; /* overlong, out of range or a surrogate */
    return len;
}

size_t cli_put_escaped(FILE *f, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\\' ? "\\\\" : NULL;
        size_t len = c < 0x20 || c == 0x7F ? 0 : cli_utf8_len(s + i, n - i);
        if (named) {
            fputs(named, f);
            out += 2;
            i++;
        } else if (len == 2 && c == 0xC2 && s[i + 1] < 0xA0) { /* C1 controls (CSI, OSC...) */
            fprintf(f, "\\u00%c%c", hex[s[i + 1] >> 4], hex[s[i + 1] & 15]);
            out += 6;
            i += 2;
        } else if (len == 0) { /* another C0 control, DEL, or a byte that is not UTF-8 */
            fprintf(f, "\\x%c%c", hex[c >> 4], hex[c & 15]);
            out += 4;
            i++;
        } else {
            fwrite(s + i, 1, len, f);
            out += 1; /* one character wide, near enough for padding */
            i += len;
        }
    }
    return out;
}

/* Writes prefix, the formatted text escaped, and a newline to f. No allocation beyond one for a
 * message over 1 KiB: this also reports running out of memory. */
static void vline(FILE *f, const char *prefix, const char *fmt, va_list ap)
{
    char small[1024];
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(small, sizeof small, fmt, aq);
    va_end(aq);
    char *text = small;
    if (n >= (int)sizeof small && (text = malloc((size_t)n + 1)) != NULL)
        vsnprintf(text, (size_t)n + 1, fmt, ap);
    if (!text) /* no memory for all of it: its start will do */
        text = small;
    fputs(prefix, f);
    cli_put_escaped(f, text, strlen(text));
    fputc('\n', f);
    if (text != small)
        free(text);
}

void cli_line(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(f, "", fmt, ap);
    va_end(ap);
}

void cli_err(const char *fmt, ...)
{
    va_list ap;
    cli_progress_clear_active();
    fflush(stdout);
    va_start(ap, fmt);
    vline(stderr, "shardpack: ", fmt, ap);
    va_end(ap);
}

int cli_lib_err(const char *what, int rc, const char *msg)
{
    if (!msg || !*msg)
        msg = sp_strerror(rc);
    /* Library messages usually start with the file's name; do not say it twice. */
    if (what && *what && strncmp(msg, what, strlen(what)) != 0)
        cli_err("%s: %s", what, msg);
    else
        cli_err("%s", msg);
    return CLI_EDATA;
}

static char oom_context[512];

void cli_oom_context(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(oom_context, sizeof oom_context, fmt, ap);
    va_end(ap);
}

static CLI_NORETURN void out_of_memory(size_t n)
{
    cli_err("%s%sout of memory allocating %zu bytes: the process may use less memory than that (ulimit -v, a "
            "container's limit, or the machine's); raise the limit, or lower threads, host_memory or block_size",
            oom_context, *oom_context ? ": " : "", n);
    exit(CLI_EDATA);
}

void *cli_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory(n);
    return p;
}

void *cli_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory(n > SIZE_MAX / (size ? size : 1) ? SIZE_MAX : n * size);
    return p;
}

void *cli_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory(n);
    return q;
}

char *cli_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cli_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

const char *cli_shown(const char *arg, char *buf, size_t len)
{
    const char *sep = strstr(arg, "://");
    if (!sep || sep == arg || strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") !=
                                  (size_t)(sep - arg)) /* a user:password@ in a URL of any scheme */
        return arg;
    const char *host = sep + 3;
    size_t hostlen = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hostlen);
    if (!at)
        return arg;
    snprintf(buf, len, "%.*s%s", (int)(host - arg), arg, at + 1);
    return buf;
}

char *cli_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        out_of_memory(0);
    char *s = cli_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void cli_buf_reserve(cli_buf *b, size_t cap)
{
    if (cap <= b->cap)
        return;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < cap)
        ncap = ncap > SIZE_MAX / 2 ? cap : ncap * 2;
    b->data = cli_xrealloc(b->data, ncap);
    b->cap = ncap;
}

void cli_buf_append(cli_buf *b, const void *data, size_t n)
{
    cli_buf_reserve(b, b->len + n);
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
}

void cli_buf_free(cli_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

char *cli_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    if (n && dir[n - 1] == '/')
        return cli_xasprintf("%s%s", dir, name);
    return cli_xasprintf("%s/%s", dir, name);
}

void cli_fmt_bytes(char *buf, size_t n, uint64_t bytes)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1000.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, n, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u]);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int needs_quote(const char *s)
{
    if (!*s)
        return 1;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_./=:,+@%", *s))
            return 1;
    return 0;
}

char *cli_command_line(int argc, char **argv)
{
    cli_buf b = {0};
    cli_buf_append(&b, "shardpack", 9);
    for (int i = 0; i < argc; i++) {
        cli_buf_append(&b, " ", 1);
        const char *a = argv[i];
        if (!needs_quote(a)) {
            cli_buf_append(&b, a, strlen(a));
            continue;
        }
        cli_buf_append(&b, "'", 1);
        for (; *a; a++) {
            if (*a == '\'')
                cli_buf_append(&b, "'\\''", 4);
            else
                cli_buf_append(&b, a, 1);
        }
        cli_buf_append(&b, "'", 1);
    }
    cli_buf_append(&b, "", 1);
    return (char *)b.data;
}
