/* imp_tsv.c - TSV importer: lines "PATH<TAB>LABEL"; relative paths from the TSV's directory; a leading
 * UTF-8 byte order mark is ignored, a line holding a NUL byte is a bad line. Under order=shuffled
 * (the default) the entry lines are read in the order imp_item_order gives, each found again by its
 * byte offset (16 bytes an entry are kept, not the lines); under order=source, list by list, line
 * by line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imp.h"

#define MAX_LINE (1u << 20)

typedef struct tsv {
    const char *const *srcs;
    size_t n, i;       /* the list being read: srcs[i] */
    FILE *f;           /* open on srcs[i], or NULL between lists */
    size_t dirlen;     /* of srcs[i]'s directory, for relative paths */
    unsigned long lineno;
    char *line;
    size_t cap;
    char *what;        /* the item last reported or yielded */
    imp_buf file;
    imp_image_label sample;
    /* order=shuffled: every entry line's list, byte offset and line number, and the order */
    bool shuffled;
    uint64_t nent, capent, next;
    uint64_t *ent_off, *ent_line, *perm;
    uint32_t *ent_list;
    FILE **lists; /* open on demand, one per list */
} tsv;

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

static int open_list(imp_ctx *c, const char *path, FILE **f)
{
    struct stat st;
    const char *why;
    *f = imp_fopen_regular(path, &st, &why);
    return *f ? SP_OK : imp_fail(c, SP_EIO, "%s: %s", path, why);
}

/* Keeps entry line lineno of list `list`, at byte offset off, for the shuffled order. */
static int keep_entry(imp_ctx *c, tsv *t, uint32_t list, uint64_t off, uint64_t lineno)
{
    if (t->nent == t->capent) {
        uint64_t cap = t->capent ? 2 * t->capent : 1024;
        uint64_t *o = sp_realloc(t->ent_off, cap * sizeof *o);
        if (o)
            t->ent_off = o;
        uint64_t *n = o ? sp_realloc(t->ent_line, cap * sizeof *n) : NULL;
        if (n)
            t->ent_line = n;
        uint32_t *l = n ? sp_realloc(t->ent_list, cap * sizeof *l) : NULL;
        if (!l)
            return imp_oom(c, t->srcs[list], (size_t)cap * 20);
        t->ent_list = l;
        t->capent = cap;
    }
    t->ent_off[t->nent] = off;
    t->ent_line[t->nent] = lineno;
    t->ent_list[t->nent++] = list;
    return SP_OK;
}

/* Number of entry lines of list `list`, for the progress line; under order=shuffled, where each
 * is. */
static int count_entries(imp_ctx *c, tsv *t, uint32_t list, uint64_t *count)
{
    const char *path = t->srcs[list];
    FILE *f;
    int rc = open_list(c, path, &f);
    if (rc)
        return rc;
    ssize_t len;
    uint64_t off = 0, lineno = 0;
    for (int first = 1; (len = getline(&t->line, &t->cap, f)) >= 0; first = 0) {
        uint64_t at = off;
        off += (uint64_t)len;
        lineno++;
        if (!entry_line(first ? skip_bom(t->line, &len) : t->line, &len))
            continue;
        ++*count;
        if (t->shuffled && (rc = keep_entry(c, t, list, at, lineno)) != SP_OK) {
            fclose(f);
            return rc;
        }
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err)
        return imp_fail(c, err == ENOMEM ? SP_ENOMEM : SP_EIO, "%s: read error: %s", path, strerror(err));
    return SP_OK;
}

static int tsv_open(imp_ctx *c, void *priv, const char *const *srcs, size_t n)
{
    tsv *t = priv;
    t->srcs = srcs;
    t->n = n;
    t->shuffled = sp_params_get(imp_params(c), SP_PARAM_ORDER) == SP_ORDER_SHUFFLED;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = count_entries(c, t, (uint32_t)i, &total);
        if (rc)
            return rc;
    }
    int rc = imp_set_image_label_schema(c);
    if (rc)
        return rc;
    imp_set_totals(c, total, 0);
    if (!t->shuffled)
        return SP_OK;
    t->lists = sp_calloc(n, sizeof *t->lists);
    if (!t->lists)
        return imp_oom(c, srcs[0], n * sizeof *t->lists);
    return imp_item_order(c, t->nent, &t->perm);
}

/* Reports line lineno of the current list as a bad item. */
static int bad_line(imp_ctx *c, tsv *t, const char *reason)
{
    sp_free(t->what);
    t->what = imp_asprintf("%s:%lu", t->srcs[t->i], t->lineno);
    if (!t->what)
        return imp_oom(c, t->srcs[t->i], 32);
    return imp_skip(c, t->what, reason, 0);
}

/* Why the label column s (len bytes, after the tab) is refused, in buf; NULL when it is an int64
 * in *label. A label column holding another tab is a column count, and a signed run of digits
 * that does not fit is a range, not "not an integer". */
static const char *label_reason(const char *s, size_t len, int64_t *label, char *buf, size_t buflen)
{
    if (imp_parse_i64_trim(s, len, label) == 0)
        return NULL;
    const char *tab = memchr(s, '\t', len);
    if (tab) {
        size_t cols = 2;
        for (; tab; tab = memchr(tab + 1, '\t', len - (size_t)(tab + 1 - s)))
            cols++;
        snprintf(buf, buflen, "%zu columns, expected 2 (PATH<TAB>LABEL)", cols);
        return buf;
    }
    while (len && (*s == ' ' || *s == '\r'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\r'))
        len--;
    size_t sign = len && (*s == '-' || *s == '+');
    if (len > sign && strspn(s + sign, "0123456789") == len - sign) {
        snprintf(buf, buflen, "label %.*s is out of the int64 range", len > 40 ? 40 : (int)len, s);
        return buf;
    }
    return "label is not an integer";
}

/* One entry line: 1 with a sample in *out, 0 when it was skipped, or a negative code. */
static int one_line(imp_ctx *c, tsv *t, char *line, size_t len, imp_sample *out)
{
    char where[96];
    if (len > MAX_LINE) {
        snprintf(where, sizeof where, "line longer than %u bytes", MAX_LINE);
        return bad_line(c, t, where);
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
    else
        reason = label_reason(tab + 1, strlen(tab + 1), &label, where, sizeof where);
    if (reason)
        return bad_line(c, t, reason);
    *tab = 0;
    sp_free(t->what);
    t->what = line[0] == '/' || t->dirlen == 0 ? sp_strdup(line)
                                               : imp_asprintf("%.*s/%s", (int)t->dirlen, t->srcs[t->i], line);
    if (!t->what)
        return imp_oom(c, t->srcs[t->i], len + t->dirlen + 2);
    /* An image that cannot be read is reported with the list line that named it. */
    const char *why;
    int rc = imp_read_file(c, t->what, IMP_MAX_ITEM_BYTES, &t->file, &why);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        char named[SP_ERRMSG_MAX];
        snprintf(named, sizeof named, "%s (named by %s:%lu)", why, t->srcs[t->i], t->lineno);
        return (rc = imp_skip(c, t->what, named, 0)) < 0 ? rc : 0;
    }
    imp_image_label_sample(&t->sample, t->file.data, t->file.len, label, t->what, out);
    return 1;
}

/* Points t at list i: its directory, for relative paths. */
static void set_list(tsv *t, size_t i)
{
    t->i = i;
    const char *slash = strrchr(t->srcs[i], '/');
    t->dirlen = slash ? (size_t)(slash - t->srcs[i]) : 0;
    if (slash == t->srcs[i])
        t->dirlen = 1; /* "/list.tsv": the root directory */
}

/* order=shuffled: the entry lines in imp_item_order's order, each read again at its offset. */
static int next_shuffled(imp_ctx *c, tsv *t, imp_sample *out)
{
    while (t->next < t->nent) {
        uint64_t k = t->perm[t->next++];
        uint32_t list = t->ent_list[k];
        set_list(t, list);
        if (!t->lists[list]) {
            int rc = open_list(c, t->srcs[list], &t->lists[list]);
            if (rc)
                return rc;
        }
        FILE *f = t->lists[list];
        ssize_t len = -1;
        if (fseeko(f, (off_t)t->ent_off[k], SEEK_SET) == 0)
            len = getline(&t->line, &t->cap, f);
        if (len < 0)
            return imp_fail(c, SP_EIO, "%s: line %llu can no longer be read (the list changed while packing?)",
                            t->srcs[list], (unsigned long long)t->ent_line[k]);
        t->lineno = (unsigned long)t->ent_line[k];
        char *text = t->lineno == 1 ? skip_bom(t->line, &len) : t->line;
        if (!entry_line(text, &len))
            return imp_fail(c, SP_EIO, "%s: line %lu changed while packing", t->srcs[list], t->lineno);
        int rc = one_line(c, t, text, (size_t)len, out);
        if (rc)
            return rc;
    }
    return 0;
}

static int tsv_next(imp_ctx *c, void *priv, imp_sample *out)
{
    tsv *t = priv;
    if (t->shuffled)
        return next_shuffled(c, t, out);
    for (;;) {
        if (!t->f) {
            if (t->i == t->n)
                return 0;
            int rc = open_list(c, t->srcs[t->i], &t->f);
            if (rc)
                return rc;
            set_list(t, t->i);
            t->lineno = 0;
        }
        ssize_t len = getline(&t->line, &t->cap, t->f);
        if (len < 0) {
            int err = ferror(t->f) ? errno : 0;
            fclose(t->f);
            t->f = NULL;
            if (err)
                return imp_fail(c, SP_EIO, "%s: read error: %s", t->srcs[t->i], strerror(err));
            t->i++;
            continue;
        }
        t->lineno++;
        char *text = t->lineno == 1 ? skip_bom(t->line, &len) : t->line;
        if (!entry_line(text, &len))
            continue;
        int rc = one_line(c, t, text, (size_t)len, out);
        if (rc)
            return rc;
    }
}

static void tsv_close(void *priv)
{
    tsv *t = priv;
    if (t->f)
        fclose(t->f);
    for (size_t i = 0; t->lists && i < t->n; i++)
        if (t->lists[i])
            fclose(t->lists[i]);
    sp_free(t->lists);
    sp_free(t->ent_off);
    sp_free(t->ent_line);
    sp_free(t->ent_list);
    sp_free(t->perm);
    free(t->line); /* getline's */
    sp_free(t->what);
    imp_buf_free(&t->file);
}

const imp_kind imp_kind_tsv = {
    .name = "tsv",
    .suffix = ".tsv",
    .priv_size = sizeof(tsv),
    .open = tsv_open,
    .next = tsv_next,
    .close = tsv_close,
};
