/* cli_json.c - a small streaming JSON writer (compact output, always valid UTF-8). */
#include "cli.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

void cli_json_init(cli_json *j, FILE *f)
{
    memset(j, 0, sizeof *j);
    j->f = f;
    j->first[0] = 1;
}

/* Separator before a value or key at the current depth. */
static void before_value(cli_json *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = 0;
}

static void open_container(cli_json *j, int c)
{
    before_value(j);
    fputc(c, j->f);
    assert(j->depth + 1 < CLI_JSON_MAX_DEPTH);
    j->depth++;
    j->first[j->depth] = 1;
}

static void close_container(cli_json *j, int c)
{
    assert(j->depth > 0 && !j->after_key);
    j->depth--;
    fputc(c, j->f);
}

void cli_json_object(cli_json *j) { open_container(j, '{'); }
void cli_json_end_object(cli_json *j) { close_container(j, '}'); }
void cli_json_array(cli_json *j) { open_container(j, '['); }
void cli_json_end_array(cli_json *j) { close_container(j, ']'); }

static void write_string(FILE *f, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        switch (c) {
        case '"': fputs("\\\"", f); i++; continue;
        case '\\': fputs("\\\\", f); i++; continue;
        case '\n': fputs("\\n", f); i++; continue;
        case '\r': fputs("\\r", f); i++; continue;
        case '\t': fputs("\\t", f); i++; continue;
        case '\b': fputs("\\b", f); i++; continue;
        case '\f': fputs("\\f", f); i++; continue;
        default: break;
        }
        if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\u%04x", c);
            i++;
            continue;
        }
        size_t len = cli_utf8_len(s + i, n - i);
        if (len == 0) {
            fputs("\xEF\xBF\xBD", f); /* U+FFFD for a byte that is not UTF-8 */
            i++;
            continue;
        }
        fwrite(s + i, 1, len, f);
        i += len;
    }
    fputc('"', f);
}

void cli_json_key(cli_json *j, const char *key)
{
    assert(!j->after_key);
    before_value(j);
    write_string(j->f, key, strlen(key));
    fputc(':', j->f);
    j->after_key = 1;
}

void cli_json_strn(cli_json *j, const char *s, size_t n)
{
    before_value(j);
    write_string(j->f, s, n);
}

void cli_json_str(cli_json *j, const char *s)
{
    if (!s) {
        cli_json_null(j);
        return;
    }
    cli_json_strn(j, s, strlen(s));
}

void cli_json_u64(cli_json *j, uint64_t v)
{
    before_value(j);
    fprintf(j->f, "%" PRIu64, v);
}

void cli_json_i64(cli_json *j, int64_t v)
{
    before_value(j);
    fprintf(j->f, "%" PRId64, v);
}

void cli_json_double(cli_json *j, double v)
{
    before_value(j);
    if (!isfinite(v))
        fputs("null", j->f);
    else
        fprintf(j->f, "%.6g", v);
}

void cli_json_bool(cli_json *j, int v)
{
    before_value(j);
    fputs(v ? "true" : "false", j->f);
}

void cli_json_null(cli_json *j)
{
    before_value(j);
    fputs("null", j->f);
}

void cli_json_finish(cli_json *j)
{
    assert(j->depth == 0);
    fputc('\n', j->f);
    fflush(j->f);
}
