/* imp_tsv.c - TSV importer: lines "PATH<TAB>LABEL"; relative paths from the TSV's directory; a leading
 * UTF-8 byte order mark is ignored, a line holding a NUL byte is a bad line. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE (1u << 20)

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

/* The first line without the UTF-8 byte order mark that some editors put at the start of a file. */
static char *skip_bom(char *line, ssize_t *len)
{
    if (*len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        *len -= 3;
        return line + 3;
    }
    return line;
}

/* Strips the line ending; 1 when the line carries an entry (not blank, not a comment). A line
 * holding a NUL byte counts as an entry, so that it is reported rather than cut short. */
static int entry_line(char *line, ssize_t *len)
{
    while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r'))
        line[--*len] = 0;
    if (line[0] == '#')
        return 0;
    return memchr(line, 0, (size_t)*len) != NULL || !is_blank(line);
}

/* Number of entry lines of one file, for the progress line. */
static int count_entries(const char *path, uint64_t *count)
{
    struct stat st;
    const char *why;
    FILE *f = cli_fopen_regular(path, &st, &why);
    if (!f) {
        cli_err("%s: %s", path, why);
        return CLI_EDATA;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    for (int first = 1; (len = getline(&line, &cap, f)) >= 0; first = 0)
        *count += entry_line(first ? skip_bom(line, &len) : line, &len) ? 1 : 0;
    int err = ferror(f) ? errno : 0;
    free(line);
    fclose(f);
    if (err) {
        cli_err("%s: read error: %s", path, strerror(err));
        return CLI_EDATA;
    }
    return CLI_OK;
}

static int one_line(pack_ctx *pc, const char *tsv, size_t dirlen, unsigned long lineno,
                    char *line, size_t len)
{
    char where[64];
    char *what = NULL;
    int rc;
    if (len > MAX_LINE) {
        what = cli_xasprintf("%s:%lu", tsv, lineno);
        snprintf(where, sizeof where, "line longer than %u bytes", MAX_LINE);
        rc = pack_skip(pc, what, where, 0);
        free(what);
        return rc;
    }
    const char *nul = memchr(line, 0, len);
    char *tab = strchr(line, '\t');
    int64_t label;
    const char *reason = NULL;
    if (nul) {
        snprintf(where, sizeof where, "NUL byte at column %zu", (size_t)(nul - line) + 1);
        reason = where;
    } else if (!tab)
        reason = "expected PATH<TAB>LABEL (no tab)";
    else if (tab == line)
        reason = "empty path";
    else if (cli_parse_i64_trim(tab + 1, strlen(tab + 1), &label) != 0)
        reason = "label is not an integer";
    if (reason) {
        what = cli_xasprintf("%s:%lu", tsv, lineno);
        rc = pack_skip(pc, what, reason, 0);
        free(what);
        return rc;
    }
    *tab = 0;
    char *path = line[0] == '/' || dirlen == 0
                     ? cli_xstrdup(line)
                     : cli_xasprintf("%.*s/%s", (int)dirlen, tsv, line);
    rc = pack_add_jpeg_file(pc, path, label);
    free(path);
    return rc;
}

static int one_file(pack_ctx *pc, const char *tsv)
{
    struct stat st;
    const char *why;
    FILE *f = cli_fopen_regular(tsv, &st, &why);
    if (!f) {
        cli_err("%s: %s", tsv, why);
        return CLI_EDATA;
    }
    const char *slash = strrchr(tsv, '/');
    size_t dirlen = slash ? (size_t)(slash - tsv) : 0;
    if (slash == tsv)
        dirlen = 1; /* "/list.tsv": the root directory */
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    int rc = CLI_OK;
    while (rc == CLI_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *text = lineno == 1 ? skip_bom(line, &len) : line;
        if (entry_line(text, &len))
            rc = one_line(pc, tsv, dirlen, lineno, text, (size_t)len);
    }
    if (rc == CLI_OK && ferror(f)) {
        cli_err("%s: read error: %s", tsv, strerror(errno));
        rc = CLI_EDATA;
    }
    free(line);
    fclose(f);
    return rc;
}

int imp_tsv(pack_ctx *pc, const char *const *srcs, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = count_entries(srcs[i], &total);
        if (rc)
            return rc;
    }
    sp_schema *schema = pack_image_label_schema();
    if (!schema)
        return CLI_EDATA;
    pack_set_schema(pc, schema);
    pack_set_totals(pc, total, 0);
    for (size_t i = 0; i < n; i++) {
        int rc = one_file(pc, srcs[i]);
        if (rc)
            return rc;
    }
    return CLI_OK;
}
