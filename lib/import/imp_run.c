/* imp_run.c - the public import API: picks a kind from the table, runs its samples into a writer
 * opened at the first one, and keeps the policy every kind shares (image validation, strict, the
 * skip and progress callbacks, cancellation, metadata). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fmt.h"
#include "img.h"
#include "imp.h"

typedef struct imp_meta {
    char *key;
    void *value;
    size_t len;
} imp_meta;

typedef struct imp_meta_list {
    imp_meta *e;
    size_t n;
} imp_meta_list;

struct sp_import {
    sp_errbuf eb;
    const imp_kind *kind;
    void *priv;
    bool kind_opened, ran, published;
    char **srcs;
    size_t nsrcs;
    char *outdir;
    sp_params *params;  /* the caller's, copied */
    sp_params *wparams; /* the writer's: validate_images off, as the import validates itself */
    bool strict, validate;
    uint64_t max_pixels; /* validate: the probe's cap */
    img_shrink_cfg shrink; /* max_side, quality, transcode */
    bool shrink_on;
    sp_schema *schema;
    imp_meta_list user_meta, kind_meta;
    sp_writer *writer;
    int pid; /* the process that opened it (sp_proc_self): its writer's threads are that process's */
    _Atomic(sp_writer *) live_writer; /* for sp_import_abort: set once the writer is open */
    atomic_int abort_req;

    sp_import_skip_fn on_skip;
    sp_import_progress_fn on_progress;
    void *user;
    sp_import_progress prog;
    char *first_skip; /* "WHAT: REASON" of the first skipped item, for the empty-result message */
};

/* ---- what a kind asks of the import -------------------------------------------------------- */

int imp_fail(imp_ctx *c, int code, const char *fmt, ...)
{
    char msg[SP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sp_fail(&c->eb, code, "%s", msg);
}

int imp_oom(imp_ctx *c, const char *path, size_t bytes)
{
    return imp_fail(c, SP_ENOMEM, "packing %s into %s: out of memory allocating %zu bytes: the process may use "
                    "less memory than that (ulimit -v, a container's limit, or the machine's); raise the limit, or "
                    "lower threads or block_size", path, c->outdir, bytes);
}

const sp_params *imp_params(const imp_ctx *c) { return c->params; }
const char *imp_outdir(const imp_ctx *c) { return c->outdir; }

void imp_set_schema(imp_ctx *c, sp_schema *schema)
{
    sp_schema_destroy(c->schema);
    c->schema = schema;
}

int imp_set_image_label_schema(imp_ctx *c)
{
    sp_schema *s = sp_schema_create();
    if (!s)
        return imp_fail(c, SP_ENOMEM, "%s: out of memory for a schema", c->srcs[0]);
    int rc = sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL);
    if (rc == SP_OK)
        rc = sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL);
    if (rc) {
        sp_schema_destroy(s);
        return imp_fail(c, rc, "%s: %s", c->srcs[0], sp_last_error());
    }
    imp_set_schema(c, s);
    return SP_OK;
}

void imp_set_totals(imp_ctx *c, uint64_t items, uint64_t bytes)
{
    c->prog.total_items = items;
    c->prog.total_bytes = bytes;
}

static int meta_put(imp_ctx *c, imp_meta_list *l, const char *key, const void *value, size_t len)
{
    void *copy = sp_malloc(len ? len : 1);
    if (!copy)
        return imp_fail(c, SP_ENOMEM, "%s: out of memory for metadata '%s'", c->outdir, key);
    if (len)
        memcpy(copy, value, len);
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->e[i].key, key) == 0) {
            sp_free(l->e[i].value);
            l->e[i].value = copy;
            l->e[i].len = len;
            return SP_OK;
        }
    }
    imp_meta *grown = sp_realloc(l->e, (l->n + 1) * sizeof *grown);
    char *k = sp_strdup(key);
    if (grown)
        l->e = grown;
    if (!grown || !k) {
        sp_free(copy);
        sp_free(k);
        return imp_fail(c, SP_ENOMEM, "%s: out of memory for metadata '%s'", c->outdir, key);
    }
    l->e[l->n++] = (imp_meta){ k, copy, len };
    return SP_OK;
}

static void meta_free(imp_meta_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        sp_free(l->e[i].key);
        sp_free(l->e[i].value);
    }
    sp_free(l->e);
    *l = (imp_meta_list){ 0 };
}

int imp_set_meta(imp_ctx *c, const char *key, const void *value, size_t len)
{
    return meta_put(c, &c->kind_meta, key, value, len);
}

static int check_abort(imp_ctx *c)
{
    if (atomic_load(&c->abort_req))
        return imp_fail(c, SP_ECANCELED, "%s: cancelled; nothing was published", c->outdir);
    return SP_OK;
}

static void report_progress(imp_ctx *c)
{
    if (c->on_progress)
        c->on_progress(c->user, &c->prog);
}

int imp_skip(imp_ctx *c, const char *what, const char *reason, uint64_t in_bytes)
{
    if (c->strict)
        return imp_fail(c, SP_EBADINPUT, "%s: %s (strict)", what, reason);
    if (!c->first_skip && !(c->first_skip = imp_asprintf("%s: %s", what, reason)))
        return imp_oom(c, what, strlen(what) + strlen(reason) + 3);
    c->prog.skipped++;
    c->prog.bytes += in_bytes;
    if (c->on_skip)
        c->on_skip(c->user, what, reason, in_bytes);
    report_progress(c);
    return check_abort(c);
}

/* ---- the run ----------------------------------------------------------------------------------- */

static int open_writer(imp_ctx *c)
{
    sp_writer *w;
    int rc = sp_writer_open(c->outdir, c->schema, c->wparams, &w);
    if (rc)
        return sp_fail_keep(&c->eb, rc);
    c->writer = w;
    atomic_store(&c->live_writer, w);
    if (atomic_load(&c->abort_req)) /* asked to stop while the writer was opening */
        sp_writer_abort(w);
    /* The caller's entries first; the library's only where the caller set none of that name. */
    for (size_t i = 0; i < c->user_meta.n && rc == SP_OK; i++)
        rc = sp_writer_set_meta(w, c->user_meta.e[i].key, c->user_meta.e[i].value, c->user_meta.e[i].len);
    for (size_t i = 0; i < c->kind_meta.n && rc == SP_OK; i++) {
        bool mine = false;
        for (size_t k = 0; k < c->user_meta.n && !mine; k++)
            mine = strcmp(c->user_meta.e[k].key, c->kind_meta.e[i].key) == 0;
        if (!mine)
            rc = sp_writer_set_meta(w, c->kind_meta.e[i].key, c->kind_meta.e[i].value, c->kind_meta.e[i].len);
    }
    return rc ? sp_fail(&c->eb, rc, "%s", sp_writer_errmsg(w)) : SP_OK;
}

/* An image field's bytes that the loader could not decode make the item a skipped one. */
static int check_images(imp_ctx *c, const imp_sample *s, bool *bad)
{
    size_t nf = sp_schema_num_fields(c->schema);
    for (size_t f = 0; f < nf && f < s->nvalues; f++) {
        sp_field_info fi = { .struct_size = sizeof fi };
        if (sp_schema_field(c->schema, f, &fi) != SP_OK || fi.kind != SP_FIELD_IMAGE)
            continue;
        *bad = true;
        if (s->values[f].size == 0)
            return imp_skip(c, s->what, "empty file", 0);
        if (!c->validate)
            continue;
        sp_image_info info = { .struct_size = sizeof info };
        int rc = sp_image_probe(s->values[f].data, s->values[f].size, c->max_pixels, &info);
        if (rc == SP_ENOMEM)
            return imp_fail(c, rc, "%s: %s", s->what, sp_last_error());
        if (rc) {
            char reason[SP_ERRMSG_MAX];
            snprintf(reason, sizeof reason, "not a decodable image: %s", *sp_last_error() ? sp_last_error() : sp_strerror(rc));
            return imp_skip(c, s->what, reason, s->values[f].size);
        }
    }
    *bad = false;
    return SP_OK;
}

static int add_sample_as_is(imp_ctx *c, const imp_sample *s);

/* max_side and transcode: the image fields of s that need it re-encoded (img_shrink), into vals (a
 * copy of s's values) and owned (sp_free each). A probed image that does not decode is a skipped
 * item (*bad); bytes that are no image, stored under validate_images=0, are kept as they are. */
static int shrink_images(imp_ctx *c, const imp_sample *s, sp_value *vals, uint8_t **owned, bool *bad)
{
    size_t nf = sp_schema_num_fields(c->schema);
    *bad = false;
    for (size_t f = 0; f < s->nvalues; f++) {
        vals[f] = s->values[f];
        owned[f] = NULL;
    }
    for (size_t f = 0; f < nf && f < s->nvalues; f++) {
        sp_field_info fi = { .struct_size = sizeof fi };
        if (sp_schema_field(c->schema, f, &fi) != SP_OK || fi.kind != SP_FIELD_IMAGE || !s->values[f].size ||
            !img_format(s->values[f].data, s->values[f].size))
            continue;
        img_shrink_out o;
        char why[SP_ERRMSG_MAX - 128];
        int rc = img_shrink(s->values[f].data, s->values[f].size, &c->shrink, &o, why, sizeof why);
        if (rc == SP_ENOMEM)
            return imp_fail(c, rc, "%s: %s", s->what, why);
        if (rc && !c->validate)
            continue;
        if (rc) {
            *bad = true;
            char reason[SP_ERRMSG_MAX];
            snprintf(reason, sizeof reason, "not a decodable image (max_side/transcode decode it whole): %s", why);
            return imp_skip(c, s->what, reason, s->in_bytes);
        }
        if (o.data) {
            owned[f] = o.data;
            vals[f] = (sp_value){ o.data, o.size };
        }
    }
    return SP_OK;
}

static int add_sample(imp_ctx *c, const imp_sample *s)
{
    bool bad;
    int rc = check_images(c, s, &bad);
    if (rc || bad)
        return rc;
    enum { SHRINK_FIELDS = 8 }; /* the image kinds have two fields: image and label */
    sp_value vals[SHRINK_FIELDS];
    uint8_t *owned[SHRINK_FIELDS] = { NULL };
    imp_sample shrunk = *s;
    if (c->shrink_on && s->nvalues <= SHRINK_FIELDS) {
        rc = shrink_images(c, s, vals, owned, &bad);
        if (rc || bad)
            return rc;
        shrunk.values = vals;
        s = &shrunk;
    }
    rc = add_sample_as_is(c, s);
    for (size_t f = 0; f < SHRINK_FIELDS; f++)
        sp_free(owned[f]);
    return rc;
}

static int add_sample_as_is(imp_ctx *c, const imp_sample *s)
{
    int rc;
    if ((rc = check_abort(c)) != SP_OK)
        return rc;
    if (!c->writer && (rc = open_writer(c)) != SP_OK)
        return rc;
    rc = sp_writer_add(c->writer, s->values, s->nvalues);
    if (rc && !sp_writer_failed(c->writer) && rc != SP_ENOMEM) {
        /* The sample is refused, the writer goes on: a bad input item. */
        char reason[SP_ERRMSG_MAX];
        snprintf(reason, sizeof reason, "%s", *sp_writer_errmsg(c->writer) ? sp_writer_errmsg(c->writer) : sp_strerror(rc));
        return imp_skip(c, s->what, reason, s->in_bytes);
    }
    if (rc) /* the writer's own failure: never the item's fault, so strict or not, the end */
        return sp_fail(&c->eb, rc, "%s", sp_writer_errmsg(c->writer));
    c->prog.samples++;
    c->prog.bytes += s->in_bytes;
    report_progress(c);
    return SP_OK;
}

static int nothing_to_pack(imp_ctx *c)
{
    if (c->first_skip)
        return imp_fail(c, SP_EBADINPUT, "no samples to pack: all %llu input items were skipped (first: %s); "
                        "nothing was written to %s", (unsigned long long)c->prog.skipped, c->first_skip, c->outdir);
    if (c->nsrcs > 1)
        return imp_fail(c, SP_EBADINPUT, "no samples to pack: %s and the %zu other inputs hold none; nothing was "
                        "written to %s", c->srcs[0], c->nsrcs - 1, c->outdir);
    return imp_fail(c, SP_EBADINPUT, "no samples to pack: %s holds none; nothing was written to %s", c->srcs[0],
                    c->outdir);
}

int sp_import_run(sp_import *imp)
{
    sp_clear_error();
    if (!imp)
        return sp_fail(NULL, SP_EINVAL, "sp_import_run: NULL import");
    int r = sp_proc_check(imp->pid, "sp_import_run", "import");
    if (r)
        return r;
    if (imp->ran)
        return imp_fail(imp, SP_ESTATE, "%s: this import has run already", imp->outdir);
    imp->ran = true;
    imp_sample s;
    while ((r = check_abort(imp)) == SP_OK && (r = imp->kind->next(imp, imp->priv, &s)) == 1)
        if ((r = add_sample(imp, &s)) != SP_OK)
            break;
    if (r < 0)
        return r;
    if (imp->prog.samples == 0)
        return nothing_to_pack(imp);
    r = sp_writer_finish(imp->writer);
    if (r == SP_ECANCELED)
        return check_abort(imp) ? SP_ECANCELED : sp_fail(&imp->eb, r, "%s", sp_writer_errmsg(imp->writer));
    if (r)
        return sp_fail(&imp->eb, r, "%s", sp_writer_errmsg(imp->writer));
    imp->published = true;
    sp_clear_error(); /* skipped items' probes left messages; the run succeeded */
    return SP_OK;
}

/* ---- kinds ------------------------------------------------------------------------------------- */

int sp_import_kind_count(void) { return (int)imp_nkinds; }

const char *sp_import_kind_name(int kind)
{
    if (kind >= 0 && (size_t)kind < imp_nkinds)
        return imp_kinds[kind]->name;
    sp_fail(NULL, SP_ERANGE, "sp_import_kind_name: kind %d is not one of the %zu kinds", kind, imp_nkinds);
    return NULL;
}

static bool alias_of(const char *aliases, const char *name)
{
    size_t n = strlen(name);
    for (const char *a = aliases; a && *a;) {
        const char *bar = strchr(a, '|');
        size_t len = bar ? (size_t)(bar - a) : strlen(a);
        if (len == n && memcmp(a, name, n) == 0)
            return true;
        a = bar ? bar + 1 : NULL;
    }
    return false;
}

static const char *kind_list(void) { return "imagefolder, tsv, llmc, wds or npy"; }

int sp_import_kind_lookup(const char *name)
{
    for (size_t i = 0; name && i < imp_nkinds; i++)
        if (strcmp(imp_kinds[i]->name, name) == 0 || alias_of(imp_kinds[i]->aliases, name))
            return (int)i;
    return sp_fail(NULL, SP_ENOENT, "sp_import_kind_lookup: no source kind is named '%s' (%s)",
                   name ? name : "(null)", kind_list());
}

/* Whether path is a shardpack dataset already: a directory holding a manifest, or a manifest or
 * shard file (told by its magic). */
static bool is_shardpack(const char *path, const struct stat *st)
{
    char buf[4096];
    if (S_ISDIR(st->st_mode)) {
        int n = snprintf(buf, sizeof buf, "%s/%s", path, MANIFEST_NAME);
        return n > 0 && (size_t)n < sizeof buf && access(buf, F_OK) == 0;
    }
    if (!S_ISREG(st->st_mode))
        return false;
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, FMT_MAGIC_LEN, f) : 0;
    if (f)
        fclose(f);
    return got == FMT_MAGIC_LEN && (memcmp(buf, FMT_MAGIC_SHARD, FMT_MAGIC_LEN) == 0 ||
                                    memcmp(buf, FMT_MAGIC_MANIFEST, FMT_MAGIC_LEN) == 0);
}

static int detect(sp_errbuf *eb, const char *path)
{
    struct stat st;
    if (!path)
        return sp_fail(eb, SP_EINVAL, "sp_import_detect: NULL path");
    if (stat(path, &st) != 0)
        return sp_fail(eb, errno == ENOENT ? SP_ENOENT : SP_EIO, "%s: %s", path, strerror(errno));
    if (is_shardpack(path, &st))
        return sp_fail(eb, SP_EEXIST, "%s: is already a shardpack dataset (read it with sp_dataset_open or "
                       "shardpack inspect/cat; it is not a source to pack)", path);
    for (size_t i = 0; i < imp_nkinds; i++) {
        const char *why = NULL;
        const imp_kind *k = imp_kinds[i];
        if (k->sniff ? k->sniff(path, &st, &why) : !S_ISDIR(st.st_mode) && imp_ends_with_ci(path, k->suffix))
            return (int)i;
        if (why)
            return sp_fail(eb, SP_EFORMAT, "%s: %s", path, why);
    }
    return sp_fail(eb, SP_ENOTSUP, "%s: cannot tell what kind of source this is", path);
}

int sp_import_detect(const char *path)
{
    sp_clear_error();
    return detect(NULL, path);
}

/* The kind of every source: named, or detected and the same for all. */
static int choose_kind(sp_errbuf *eb, const char *name, const char *const *srcs, size_t n)
{
    if (name) {
        int k = sp_import_kind_lookup(name);
        return k >= 0 ? k : sp_fail(eb, SP_EINVAL, "unknown source kind '%s': expected %s", name, kind_list());
    }
    int first = -1;
    for (size_t i = 0; i < n; i++) {
        int k = detect(eb, srcs[i]);
        if (k < 0)
            return k;
        if (first < 0)
            first = k;
        else if (k != first)
            return sp_fail(eb, SP_EINVAL, "all sources of one pack must be of one kind: '%s' is %s, '%s' is %s",
                           srcs[0], imp_kinds[first]->name, srcs[i], imp_kinds[k]->name);
    }
    return first;
}

/* ---- open, destroy and the rest of the public API ---------------------------------------------- */

static int copy_args(sp_import *imp, const char *const *srcs, size_t n, const char *outdir, const sp_params *params)
{
    imp->srcs = sp_calloc(n, sizeof *imp->srcs);
    imp->outdir = sp_strdup(outdir);
    imp->params = sp_params_dup(params);
    imp->wparams = sp_params_dup(params);
    bool ok = imp->srcs && imp->outdir && imp->params && imp->wparams;
    for (size_t i = 0; ok && i < n; i++)
        ok = (imp->srcs[imp->nsrcs++] = sp_strdup(srcs[i])) != NULL;
    if (!ok)
        return sp_fail(&imp->eb, SP_ENOMEM, "%s: out of memory opening an import of %s", outdir, srcs[0]);
    imp->strict = sp_params_get(params, SP_PARAM_STRICT) != 0;
    imp->validate = sp_params_get(params, SP_PARAM_VALIDATE_IMAGES) != 0;
    imp->max_pixels = (uint64_t)sp_params_get(params, SP_PARAM_MAX_PIXELS);
    imp->shrink.max_side = (uint32_t)sp_params_get(params, SP_PARAM_MAX_SIDE);
    imp->shrink.quality = (int)sp_params_get(params, SP_PARAM_QUALITY);
    imp->shrink.to_jpeg = sp_params_get(params, SP_PARAM_TRANSCODE) == SP_TRANSCODE_JPEG;
    imp->shrink.max_pixels = imp->max_pixels;
    imp->shrink_on = imp->shrink.max_side || imp->shrink.to_jpeg;
    sp_params_set(imp->wparams, SP_PARAM_VALIDATE_IMAGES, 0);
    return SP_OK;
}

/* The "source" entry: the sources as given, one per line. */
static int source_meta(sp_import *imp)
{
    imp_buf b = { 0 };
    int rc = SP_OK;
    for (size_t i = 0; i < imp->nsrcs && rc == SP_OK; i++) {
        if (i)
            rc = imp_buf_append(imp, &b, "\n", 1, imp->srcs[0]);
        if (rc == SP_OK)
            rc = imp_buf_append(imp, &b, imp->srcs[i], strlen(imp->srcs[i]), imp->srcs[0]);
    }
    if (rc == SP_OK)
        rc = imp_set_meta(imp, "source", b.data, b.len);
    imp_buf_free(&b);
    if (rc == SP_OK && imp->shrink_on) { /* what max_side and transcode did to the images */
        char what[256];
        int n = snprintf(what, sizeof what, "max_side=%u quality=%d transcode=%s: ", imp->shrink.max_side,
                         imp->shrink.quality, imp->shrink.to_jpeg ? "jpeg" : "none");
        if (imp->shrink.max_side)
            n += snprintf(what + n, sizeof what - (size_t)n, "images whose longer side was above %u pixels were "
                          "resized to %u and stored as JPEG%s", imp->shrink.max_side, imp->shrink.max_side,
                          imp->shrink.to_jpeg ? "; " : "");
        if (imp->shrink.to_jpeg)
            snprintf(what + n, sizeof what - (size_t)n, "PNG and WebP images were stored as JPEG");
        rc = imp_set_meta(imp, "image_resize", what, strlen(what));
    }
    return rc;
}

static int open_kind(sp_import *imp, const char *kind, const char *const *srcs, size_t n)
{
    int k = choose_kind(&imp->eb, kind, srcs, n);
    if (k < 0)
        return k;
    imp->kind = imp_kinds[k];
    bool seq_len = sp_params_get(imp->params, SP_PARAM_SEQ_LEN) != 0;
    if (seq_len && !imp->kind->uses_seq_len)
        return imp_fail(imp, SP_EINVAL, "seq_len applies only to llm.c token files, not to %s (%s)", srcs[0],
                        imp->kind->name);
    int rc = imp->kind->check ? imp->kind->check(imp, srcs, n) : SP_OK;
    if (rc == SP_OK && imp->kind->priv_size && !(imp->priv = sp_calloc(1, imp->kind->priv_size)))
        rc = imp_oom(imp, srcs[0], imp->kind->priv_size);
    if (rc == SP_OK)
        rc = source_meta(imp);
    if (rc)
        return rc;
    imp->kind_opened = true;
    rc = imp->kind->open(imp, imp->priv, (const char *const *)imp->srcs, imp->nsrcs);
    if (rc == SP_OK && !imp->schema)
        rc = imp_fail(imp, SP_EINVAL, "%s: the %s importer declared no schema", srcs[0], imp->kind->name);
    return rc;
}

int sp_import_open(const char *kind, const char *const *sources, size_t n, const char *outdir,
                   const sp_params *params, sp_import **out)
{
    sp_clear_error();
    if (!out)
        return sp_fail(NULL, SP_EINVAL, "sp_import_open: NULL out");
    *out = NULL;
    if (!sources || n == 0)
        return sp_fail(NULL, SP_EINVAL, "sp_import_open: no source given");
    for (size_t i = 0; i < n; i++)
        if (!sources[i] || !*sources[i])
            return sp_fail(NULL, SP_EINVAL, "sp_import_open: source %zu is NULL or empty", i);
    if (!outdir || !*outdir)
        return sp_fail(NULL, SP_EINVAL, "sp_import_open: no output directory given");
    sp_import *imp = sp_calloc(1, sizeof *imp);
    if (!imp)
        return sp_fail(NULL, SP_ENOMEM, "%s: out of memory opening an import of %s", outdir, sources[0]);
    imp->pid = sp_proc_self();
    atomic_init(&imp->abort_req, 0);
    atomic_init(&imp->live_writer, NULL);
    imp->prog.struct_size = sizeof imp->prog;
    int rc = copy_args(imp, sources, n, outdir, params);
    if (rc == SP_OK)
        rc = open_kind(imp, kind, sources, n);
    if (rc) {
        char msg[SP_ERRMSG_MAX];
        memcpy(msg, imp->eb.msg, sizeof msg);
        sp_import_destroy(imp);
        return sp_fail(NULL, rc, "%s", msg);
    }
    *out = imp;
    sp_clear_error();
    return SP_OK;
}

void sp_import_destroy(sp_import *imp)
{
    /* In a forked child: nothing, as sp_writer_destroy (the parent may be running the import). */
    if (!imp || sp_proc_check(imp->pid, "sp_import_destroy", "import"))
        return;
    atomic_store(&imp->live_writer, NULL);
    sp_writer_destroy(imp->writer);
    if (imp->kind_opened && imp->kind->close)
        imp->kind->close(imp->priv);
    sp_free(imp->priv);
    sp_schema_destroy(imp->schema);
    meta_free(&imp->user_meta);
    meta_free(&imp->kind_meta);
    for (size_t i = 0; i < imp->nsrcs; i++)
        sp_free(imp->srcs[i]);
    sp_free(imp->srcs);
    sp_free(imp->outdir);
    sp_free(imp->first_skip);
    sp_params_destroy(imp->params);
    sp_params_destroy(imp->wparams);
    sp_free(imp);
}

const char *sp_import_errmsg(const sp_import *imp) { return imp ? imp->eb.msg : "NULL import"; }

/* The getters are queries: a failure sets the message, a success leaves an earlier one. */
const char *sp_import_kind(const sp_import *imp)
{
    if (!imp)
        sp_fail(NULL, SP_EINVAL, "sp_import_kind: NULL import");
    return imp ? imp->kind->name : NULL;
}

const sp_schema *sp_import_schema(const sp_import *imp)
{
    if (!imp)
        sp_fail(NULL, SP_EINVAL, "sp_import_schema: NULL import");
    return imp ? imp->schema : NULL;
}

const sp_writer *sp_import_writer(const sp_import *imp)
{
    if (!imp)
        sp_fail(NULL, SP_EINVAL, "sp_import_writer: NULL import");
    return imp ? imp->writer : NULL;
}

int sp_import_set_callbacks(sp_import *imp, sp_import_skip_fn on_skip, sp_import_progress_fn on_progress,
                            void *user)
{
    sp_clear_error();
    if (!imp)
        return sp_fail(NULL, SP_EINVAL, "sp_import_set_callbacks: NULL import");
    int rc = sp_proc_check(imp->pid, "sp_import_set_callbacks", "import");
    if (rc)
        return rc;
    imp->on_skip = on_skip;
    imp->on_progress = on_progress;
    imp->user = user;
    return SP_OK;
}

int sp_import_set_meta(sp_import *imp, const char *key, const void *value, size_t len)
{
    sp_clear_error();
    if (!imp || !key || (len && !value))
        return sp_fail(imp ? &imp->eb : NULL, SP_EINVAL, "sp_import_set_meta: NULL argument");
    int rc = sp_proc_check(imp->pid, "sp_import_set_meta", "import");
    if (rc)
        return rc;
    if (imp->ran)
        return imp_fail(imp, SP_ESTATE, "%s: metadata '%s' must be set before sp_import_run", imp->outdir, key);
    if (!*key || strlen(key) > 255)
        return imp_fail(imp, SP_EINVAL, "%s: metadata key '%s' must be 1..255 bytes", imp->outdir, key);
    return meta_put(imp, &imp->user_meta, key, value, len);
}

void sp_import_abort(sp_import *imp)
{
    if (!imp)
        return;
    atomic_store(&imp->abort_req, 1);
    sp_writer *w = atomic_load(&imp->live_writer);
    if (w)
        sp_writer_abort(w);
}

int sp_import_progress_get(const sp_import *imp, sp_import_progress *out)
{
    if (!imp)
        return sp_fail(NULL, SP_EINVAL, "sp_import_progress_get: NULL import");
    int rc = sp_proc_check(imp->pid, "sp_import_progress_get", "import");
    if (rc == SP_OK)
        rc = sp_out_check("sp_import_progress_get", "sp_import_progress", out);
    if (rc)
        return rc;
    sp_out_put(out, &imp->prog, sizeof imp->prog);
    return SP_OK;
}

int sp_pack(const char *kind, const char *const *sources, size_t n, const char *outdir, const sp_params *params,
            sp_import_skip_fn on_skip, void *user)
{
    sp_import *imp;
    int rc = sp_import_open(kind, sources, n, outdir, params, &imp);
    if (rc)
        return rc;
    sp_import_set_callbacks(imp, on_skip, NULL, user);
    rc = sp_import_run(imp);
    char msg[SP_ERRMSG_MAX];
    memcpy(msg, imp->eb.msg, sizeof msg);
    sp_import_destroy(imp);
    if (rc)
        return sp_fail(NULL, rc, "%s", msg);
    sp_clear_error();
    return SP_OK;
}
