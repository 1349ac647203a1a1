/* cli_pack.c - `shardpack pack`: detects the sources, runs an importer, drives the writer. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LISTED_SKIPS 20

enum source_kind { KIND_NONE, KIND_IMAGEFOLDER, KIND_TSV, KIND_LLMC, KIND_WDS, KIND_NPY };

static const char *const kind_names[] = {"?", "imagefolder", "tsv", "llmc", "wds", "npy"};

typedef struct meta_entry {
    char *key;
    void *value;
    size_t len;
} meta_entry;

typedef struct skip_entry {
    char *path;
    char *reason;
} skip_entry;

struct pack_ctx {
    const char *outdir;
    sp_params *params;
    int strict, quiet, json;
    uint64_t seq_len;

    sp_schema *schema;
    sp_writer *writer;
    meta_entry *meta;
    size_t nmeta;

    uint64_t added, skipped, in_bytes;
    skip_entry skips[MAX_LISTED_SKIPS];
    size_t nskips;

    cli_buf filebuf; /* reused by pack_add_jpeg_file */
    cli_progress progress;
    double start;
};

static volatile sig_atomic_t interrupted;
static pack_ctx *active_ctx;
/* The open writer, for the signal handler: set once the writer is open, cleared before it is
 * destroyed. The handler runs on this thread only (the writer's threads block signals), so it never
 * sees a writer being destroyed. */
static sp_writer *volatile signal_writer;

/* SIGINT/SIGTERM: stop at the next sample, or make sp_writer_finish stop short of publishing. */
static void on_signal(int sig)
{
    interrupted = 1;
    sp_writer *w = signal_writer;
    if (w)
        sp_writer_abort(w); /* async-signal-safe: sets a flag */
    signal(sig, SIG_DFL); /* a second signal ends the process at once */
}

static void drop_writer(pack_ctx *pc)
{
    signal_writer = NULL;
    sp_writer_destroy(pc->writer);
    pc->writer = NULL;
}

int pack_interrupted(void) { return interrupted != 0; }

/* On an exit from deep inside (out of memory): drop the writer, which removes its temporary files. */
static void exit_cleanup(void)
{
    if (active_ctx && active_ctx->writer)
        drop_writer(active_ctx);
}

int pack_strict(const pack_ctx *pc) { return pc->strict; }
uint64_t pack_seq_len(const pack_ctx *pc) { return pc->seq_len; }
const char *pack_outdir(const pack_ctx *pc) { return pc->outdir; }

void pack_set_schema(pack_ctx *pc, sp_schema *schema)
{
    sp_schema_destroy(pc->schema);
    pc->schema = schema;
}

void pack_set_totals(pack_ctx *pc, uint64_t items, uint64_t bytes)
{
    pc->progress.total_items = items;
    pc->progress.total_bytes = bytes;
}

void pack_set_meta(pack_ctx *pc, const char *key, const void *value, size_t len)
{
    for (size_t i = 0; i < pc->nmeta; i++) {
        if (strcmp(pc->meta[i].key, key) == 0) {
            free(pc->meta[i].value);
            pc->meta[i].value = cli_xmalloc(len);
            if (len)
                memcpy(pc->meta[i].value, value, len);
            pc->meta[i].len = len;
            return;
        }
    }
    pc->meta = cli_xrealloc(pc->meta, (pc->nmeta + 1) * sizeof *pc->meta);
    meta_entry *m = &pc->meta[pc->nmeta++];
    m->key = cli_xstrdup(key);
    m->value = cli_xmalloc(len);
    if (len)
        memcpy(m->value, value, len);
    m->len = len;
}

static void tick(pack_ctx *pc, int force)
{
    if (!pc->progress.enabled)
        return;
    sp_write_stats st = { .struct_size = sizeof st };
    if (pc->writer)
        sp_writer_stats(pc->writer, &st);
    cli_progress_update(&pc->progress, pc->added + pc->skipped, pc->in_bytes, &st, force);
}

static int open_writer(pack_ctx *pc)
{
    if (!pc->schema) {
        cli_err("%s: internal error: no schema declared", pc->outdir);
        return CLI_EDATA;
    }
    int rc = sp_writer_open(pc->outdir, pc->schema, pc->params, &pc->writer);
    if (rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sp_last_error());
        pc->writer = NULL;
        /* SP_EEXIST covers more than an existing dataset (other files, a symbolic link, a staging
         * directory in the way): the library's message says which. */
        cli_lib_err(pc->outdir, rc, msg);
        return CLI_EDATA;
    }
    signal_writer = pc->writer;
    if (interrupted) /* the signal came while the writer was opening */
        sp_writer_abort(pc->writer);
    for (size_t i = 0; i < pc->nmeta; i++) {
        rc = sp_writer_set_meta(pc->writer, pc->meta[i].key, pc->meta[i].value, pc->meta[i].len);
        if (rc != 0)
            return cli_lib_err(pc->outdir, rc, sp_writer_errmsg(pc->writer));
    }
    return CLI_OK;
}

static int check_interrupt(void)
{
    if (!interrupted)
        return CLI_OK;
    cli_err("interrupted; nothing was published");
    return CLI_EDATA;
}

/* A failure of the writer itself (a write error, max_shards reached, an abort): never an input
 * item's fault, so the pack stops here, whatever --strict says, with the writer's own message. */
static int writer_failed(pack_ctx *pc, int rc)
{
    if (rc == SP_ECANCELED && interrupted)
        return check_interrupt();
    return cli_lib_err(pc->outdir, rc, sp_writer_errmsg(pc->writer));
}

int pack_add(pack_ctx *pc, const sp_value *values, size_t n, uint64_t in_bytes, const char *what)
{
    int rc = check_interrupt();
    if (rc)
        return rc;
    if (!pc->writer && (rc = open_writer(pc)) != CLI_OK)
        return rc;
    rc = sp_writer_add(pc->writer, values, n);
    if ((rc == SP_ELIMIT || rc == SP_ESCHEMA) && !sp_writer_failed(pc->writer)) {
        /* The sample is refused, the writer goes on: treat it as a bad input item. */
        char reason[512];
        snprintf(reason, sizeof reason, "%s", sp_writer_errmsg(pc->writer));
        if (!*reason)
            snprintf(reason, sizeof reason, "%s", sp_strerror(rc));
        return pack_skip(pc, what, reason, in_bytes);
    }
    if (rc != 0)
        return writer_failed(pc, rc);
    pc->added++;
    pc->in_bytes += in_bytes;
    tick(pc, 0);
    return CLI_OK;
}

int pack_skip(pack_ctx *pc, const char *path, const char *reason, uint64_t in_bytes)
{
    if (pc->strict) {
        cli_err("%s: %s (--strict)", path, reason);
        return CLI_EDATA;
    }
    pc->skipped++;
    pc->in_bytes += in_bytes;
    if (pc->nskips < MAX_LISTED_SKIPS) {
        pc->skips[pc->nskips].path = cli_xstrdup(path);
        pc->skips[pc->nskips].reason = cli_xstrdup(reason);
        pc->nskips++;
    }
    tick(pc, 0);
    return check_interrupt();
}

sp_schema *pack_image_label_schema(void)
{
    sp_schema *s = sp_schema_create();
    if (!s) {
        cli_err("out of memory");
        exit(CLI_EDATA);
    }
    int rc = sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL);
    if (rc == 0)
        rc = sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL);
    if (rc != 0) {
        cli_lib_err("schema", rc, sp_last_error());
        sp_schema_destroy(s);
        return NULL;
    }
    return s;
}

int pack_add_jpeg(pack_ctx *pc, const char *what, const void *data, size_t size, int64_t label)
{
    if (size == 0)
        return pack_skip(pc, what, "empty file", 0);
    sp_image_info info = { .struct_size = sizeof info };
    int rc = sp_image_probe(data, size, 0, &info);
    if (rc != 0) {
        const char *msg = sp_last_error();
        char reason[512];
        snprintf(reason, sizeof reason, "not a valid JPEG: %s",
                 msg && *msg ? msg : sp_strerror(rc));
        return pack_skip(pc, what, reason, size);
    }
    unsigned char le[8];
    uint64_t u = (uint64_t)label;
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(u >> (8 * i));
    sp_value v[2] = {{data, size}, {le, sizeof le}};
    return pack_add(pc, v, 2, size, what);
}

int pack_add_jpeg_file(pack_ctx *pc, const char *path, int64_t label)
{
    const char *reason;
    cli_oom_context("packing %s into %s", path, pc->outdir);
    if (cli_read_file(path, CLI_MAX_ITEM_BYTES, &pc->filebuf, &reason) != 0)
        return pack_skip(pc, path, reason, 0);
    return pack_add_jpeg(pc, path, pc->filebuf.data, pc->filebuf.len, label);
}

/* ---- source detection ---------------------------------------------------------------------- */

static int kind_from_name(const char *s)
{
    if (strcmp(s, "imagefolder") == 0)
        return KIND_IMAGEFOLDER;
    if (strcmp(s, "tsv") == 0)
        return KIND_TSV;
    if (strcmp(s, "llmc") == 0)
        return KIND_LLMC;
    if (strcmp(s, "wds") == 0 || strcmp(s, "webdataset") == 0 || strcmp(s, "tar") == 0)
        return KIND_WDS;
    if (strcmp(s, "npy") == 0)
        return KIND_NPY;
    return KIND_NONE;
}

/* The kind of source path: CLI_OK with *kind set, or an exit status after a message. */
static int detect(const char *path, int *kind)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        cli_err("%s: %s", path, strerror(errno));
        return CLI_EDATA;
    }
    if (S_ISDIR(st.st_mode))
        *kind = KIND_IMAGEFOLDER;
    else if (cli_ends_with_ci(path, ".tsv"))
        *kind = KIND_TSV;
    else if (cli_ends_with_ci(path, ".tar"))
        *kind = KIND_WDS;
    else if (cli_ends_with_ci(path, ".npy"))
        *kind = KIND_NPY;
    else if (cli_ends_with_ci(path, ".bin")) {
        if (!imp_llmc_sniff(path)) {
            cli_err("%s: not an llm.c token file (no magic 20240520 or 20240801 in its header); "
                    "name the kind with --from",
                    path);
            return CLI_EDATA;
        }
        *kind = KIND_LLMC;
    } else {
        return cli_usage_err(&cli_cmd_pack,
                             "%s: cannot tell what kind of source this is; name it with --from "
                             "imagefolder|tsv|llmc|wds|npy",
                             path);
    }
    return CLI_OK;
}

/* ---- the command -------------------------------------------------------------------------- */

enum { OPT_OUTPUT = 1, OPT_FROM, OPT_SEQ_LEN, OPT_STRICT, OPT_JSON, OPT_QUIET };

static const cli_opt pack_opts[] = {
    {"output", 'o', 1, OPT_OUTPUT, "OUTDIR", "dataset directory to write (required)"},
    {"from", 0, 1, OPT_FROM, "KIND", "source kind: imagefolder, tsv, llmc, wds or npy (default: detected)"},
    {"seq-len", 0, 1, OPT_SEQ_LEN, "T", "llm.c tokens: samples of T+1 tokens taken with stride T (required for llmc)"},
    {"strict", 0, 0, OPT_STRICT, NULL, "fail at the first bad input item instead of skipping it"},
    {"json", 0, 0, OPT_JSON, NULL, "print one JSON object with the results to stdout"},
    {"quiet", 'q', 0, OPT_QUIET, NULL, "no progress line and no summary"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_pack = {
    "pack",
    "pack SRC... -o OUTDIR [--from KIND] [--seq-len T] [--strict] [--json] [--quiet] [parameters]",
    "Builds a dataset (manifest.spm and shard-NNNNNN.sps files) in OUTDIR from SRC.",
    "Sources (detected from the path, or named with --from; one kind per pack):\n"
    "  DIR                ImageFolder: DIR/CLASS/*.jpg|*.jpeg; label = index of CLASS in sorted order\n"
    "  FILE.tsv           lines 'PATH<TAB>LABEL' (relative paths from the TSV's directory)\n"
    "  FILE.bin           llm.c token file (uint16 or uint32 tokens); needs --seq-len\n"
    "  FILE.tar           WebDataset shard: members KEY.jpg|KEY.jpeg and KEY.cls per sample\n"
    "  FILE.npy           NumPy array; one tensor field per file, samples are rows\n"
    "Bad input items (unreadable, empty, not a JPEG) are skipped and listed in the summary,\n"
    "unless --strict is given. The dataset is published only when every shard is complete.\n",
    pack_opts,
    SP_SCOPE_WRITE,
};

static void print_summary(pack_ctx *pc, const sp_write_stats *st, double secs)
{
    char in[32], out[32], rate[32];
    cli_fmt_bytes(in, sizeof in, pc->in_bytes);
    cli_fmt_bytes(out, sizeof out, st->file_bytes);
    cli_fmt_bytes(rate, sizeof rate, secs > 0 ? (uint64_t)((double)pc->in_bytes / secs) : 0);
    double ratio = st->file_bytes ? (double)pc->in_bytes / (double)st->file_bytes : 0;
    cli_line(stderr,
            "shardpack: %s: %llu samples, %llu shards, %llu blocks; %s in, %s out (ratio %.2f); "
            "%.2f s, %s/s; %llu skipped",
            pc->outdir, (unsigned long long)st->samples, (unsigned long long)st->shards,
            (unsigned long long)st->blocks, in, out, ratio, secs, rate,
            (unsigned long long)pc->skipped);
    for (size_t i = 0; i < pc->nskips; i++)
        cli_line(stderr, "shardpack: skipped %s: %s", pc->skips[i].path, pc->skips[i].reason);
    if (pc->skipped > pc->nskips)
        fprintf(stderr, "shardpack: ... and %llu more skipped\n",
                (unsigned long long)(pc->skipped - pc->nskips));
}

static void print_json(pack_ctx *pc, const sp_write_stats *st, double secs)
{
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_key(&j, "output");
    cli_json_str(&j, pc->outdir);
    cli_json_key(&j, "samples");
    cli_json_u64(&j, st->samples);
    cli_json_key(&j, "shards");
    cli_json_u64(&j, st->shards);
    cli_json_key(&j, "blocks");
    cli_json_u64(&j, st->blocks);
    cli_json_key(&j, "blocks_stored_raw");
    cli_json_u64(&j, st->blocks_stored_raw);
    cli_json_key(&j, "input_bytes");
    cli_json_u64(&j, pc->in_bytes);
    cli_json_key(&j, "raw_bytes");
    cli_json_u64(&j, st->raw_bytes);
    cli_json_key(&j, "stored_bytes");
    cli_json_u64(&j, st->stored_bytes);
    cli_json_key(&j, "file_bytes");
    cli_json_u64(&j, st->file_bytes);
    cli_json_key(&j, "seconds");
    cli_json_double(&j, secs);
    cli_json_key(&j, "fields");
    cli_json_array(&j);
    size_t nf = sp_schema_num_fields(pc->schema);
    for (size_t i = 0; i < nf && i < SP_MAX_FIELDS; i++) {
        sp_field_info fi = { .struct_size = sizeof fi };
        if (sp_schema_field(pc->schema, i, &fi) != 0)
            continue;
        cli_json_object(&j);
        cli_json_key(&j, "name");
        cli_json_str(&j, fi.name);
        cli_json_key(&j, "raw_bytes");
        cli_json_u64(&j, st->field_raw_bytes[i]);
        cli_json_end_object(&j);
    }
    cli_json_end_array(&j);
    cli_json_key(&j, "skipped");
    cli_json_u64(&j, pc->skipped);
    cli_json_key(&j, "skipped_items");
    cli_json_array(&j);
    for (size_t i = 0; i < pc->nskips; i++) {
        cli_json_object(&j);
        cli_json_key(&j, "path");
        cli_json_str(&j, pc->skips[i].path);
        cli_json_key(&j, "reason");
        cli_json_str(&j, pc->skips[i].reason);
        cli_json_end_object(&j);
    }
    cli_json_end_array(&j);
    cli_json_end_object(&j);
    cli_json_finish(&j);
}

static int finish(pack_ctx *pc, const char *const *srcs, size_t nsrcs)
{
    cli_progress_clear(&pc->progress);
    if (pc->added == 0) {
        if (pc->skipped)
            cli_err("no samples to pack: all %llu input items were skipped (first: %s: %s); "
                    "nothing was written to %s",
                    (unsigned long long)pc->skipped, pc->skips[0].path, pc->skips[0].reason,
                    pc->outdir);
        else if (nsrcs > 1)
            cli_err("no samples to pack: %s and the %zu other inputs hold none; nothing was written to %s",
                    srcs[0], nsrcs - 1, pc->outdir);
        else
            cli_err("no samples to pack: %s holds none; nothing was written to %s", nsrcs ? srcs[0] : "the input",
                    pc->outdir);
        return CLI_EDATA;
    }
    int rc = sp_writer_finish(pc->writer);
    if (rc != 0)
        return writer_failed(pc, rc);
    sp_write_stats st = { .struct_size = sizeof st };
    sp_writer_stats(pc->writer, &st);
    double secs = cli_now() - pc->start;
    if (pc->json)
        print_json(pc, &st, secs);
    else if (!pc->quiet)
        print_summary(pc, &st, secs);
    return CLI_OK;
}

static void ctx_free(pack_ctx *pc)
{
    drop_writer(pc);
    sp_schema_destroy(pc->schema);
    for (size_t i = 0; i < pc->nmeta; i++) {
        free(pc->meta[i].key);
        free(pc->meta[i].value);
    }
    free(pc->meta);
    for (size_t i = 0; i < pc->nskips; i++) {
        free(pc->skips[i].path);
        free(pc->skips[i].reason);
    }
    cli_buf_free(&pc->filebuf);
    sp_params_destroy(pc->params);
}

/* Fails early, before a long scan, when OUTDIR is a symbolic link (the writer refuses to write
 * through one, --overwrite or not), is not a directory, or holds a dataset and --overwrite is off.
 * The writer checks again when it opens. */
static int precheck_output(pack_ctx *pc)
{
    struct stat st;
    if (lstat(pc->outdir, &st) == 0 && S_ISLNK(st.st_mode)) {
        cli_err("%s: is a symbolic link; a writer does not write through links: name the real directory",
                pc->outdir);
        return CLI_EDATA;
    }
    if (lstat(pc->outdir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        cli_err("%s: exists and is not a directory; -o names the dataset directory to write", pc->outdir);
        return CLI_EDATA;
    }
    if (sp_params_get(pc->params, SP_PARAM_OVERWRITE))
        return CLI_OK;
    char *manifest = cli_path_join(pc->outdir, "manifest.spm");
    int exists = access(manifest, F_OK) == 0;
    free(manifest);
    if (exists) {
        cli_err("%s: already holds a dataset; pass --overwrite to replace it", pc->outdir);
        return CLI_EDATA;
    }
    return CLI_OK;
}

static int run(pack_ctx *pc, int kind, const char *const *srcs, size_t n)
{
    switch (kind) {
    case KIND_IMAGEFOLDER: return imp_imagefolder(pc, srcs, n);
    case KIND_TSV: return imp_tsv(pc, srcs, n);
    case KIND_LLMC: return imp_llmc(pc, srcs, n);
    case KIND_WDS: return imp_tar(pc, srcs, n);
    case KIND_NPY: return imp_npy(pc, srcs, n);
    default: return CLI_EUSAGE;
    }
}

static int parse(pack_ctx *pc, int argc, char **argv, const char ***srcs, size_t *nsrcs,
                 int *kind)
{
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_pack, argc, argv, pc->params);
    int seq_len_given = 0;
    for (;;) {
        int id = cli_next(&g);
        switch (id) {
        case CLI_ARG_END:
            goto done;
        case CLI_ARG_ERR:
            return CLI_EUSAGE;
        case CLI_ARG_HELP:
            cli_print_help(stdout, &cli_cmd_pack);
            return -1;
        case CLI_ARG_POS:
            (*srcs)[(*nsrcs)++] = g.value;
            break;
        case OPT_OUTPUT:
            pc->outdir = g.value;
            break;
        case OPT_FROM:
            *kind = kind_from_name(g.value);
            if (*kind == KIND_NONE)
                return cli_usage_err(&cli_cmd_pack,
                                     "--from '%s': expected imagefolder, tsv, llmc, wds or npy",
                                     g.value);
            break;
        case OPT_SEQ_LEN:
            if (cli_parse_u64(g.value, &pc->seq_len) != 0 || pc->seq_len == 0 ||
                pc->seq_len > (1u << 30))
                return cli_usage_err(&cli_cmd_pack,
                                     "--seq-len '%s': expected a whole number from 1 to %u",
                                     g.value, 1u << 30);
            seq_len_given = 1;
            break;
        case OPT_STRICT:
            pc->strict = 1;
            break;
        case OPT_JSON:
            pc->json = 1;
            break;
        case OPT_QUIET:
            pc->quiet = 1;
            break;
        default:
            return CLI_EUSAGE;
        }
    }
done:
    if (*nsrcs == 0)
        return cli_usage_err(&cli_cmd_pack, "no source given");
    if (!pc->outdir || !*pc->outdir)
        return cli_usage_err(&cli_cmd_pack, "no output directory given (-o OUTDIR)");

    int first = KIND_NONE;
    for (size_t i = 0; i < *nsrcs; i++) {
        int k = *kind;
        if (k == KIND_NONE) {
            int rc = detect((*srcs)[i], &k);
            if (rc)
                return rc;
        }
        if (first == KIND_NONE)
            first = k;
        else if (k != first)
            return cli_usage_err(&cli_cmd_pack,
                                 "all sources of one pack must be of one kind: '%s' is %s, '%s' "
                                 "is %s",
                                 (*srcs)[0], kind_names[first], (*srcs)[i], kind_names[k]);
    }
    *kind = first;
    if (*kind == KIND_LLMC && !seq_len_given)
        return cli_usage_err(&cli_cmd_pack,
                             "llm.c token files need --seq-len T (tokens per sample, plus one)");
    if (*kind != KIND_LLMC && seq_len_given)
        return cli_usage_err(&cli_cmd_pack, "--seq-len applies only to llm.c token files");
    if (*kind == KIND_IMAGEFOLDER && *nsrcs != 1)
        return cli_usage_err(&cli_cmd_pack, "an ImageFolder pack takes exactly one directory");
    return CLI_OK;
}

int cli_pack_main(int argc, char **argv)
{
    pack_ctx pc;
    memset(&pc, 0, sizeof pc);
    pc.params = sp_params_create();
    if (!pc.params) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    const char **srcs = cli_xcalloc((size_t)argc, sizeof *srcs);
    size_t nsrcs = 0;
    int kind = KIND_NONE;
    int rc = parse(&pc, argc, argv, &srcs, &nsrcs, &kind);
    if (rc != CLI_OK) {
        rc = rc < 0 ? CLI_OK : rc;
        goto out;
    }
    if ((rc = precheck_output(&pc)) != CLI_OK)
        goto out;
    cli_oom_context("packing %s%s into %s", nsrcs ? srcs[0] : "", nsrcs > 1 ? " and more" : "", pc.outdir);

    char *created_by = cli_command_line(argc, argv);
    pack_set_meta(&pc, "created_by", created_by, strlen(created_by));
    free(created_by);
    cli_buf src = {0};
    for (size_t i = 0; i < nsrcs; i++) {
        if (i)
            cli_buf_append(&src, "\n", 1);
        cli_buf_append(&src, srcs[i], strlen(srcs[i]));
    }
    pack_set_meta(&pc, "source", src.data, src.len);
    cli_buf_free(&src);

    active_ctx = &pc;
    cli_set_exit_cleanup(exit_cleanup);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    cli_progress_init(&pc.progress, pc.quiet || pc.json);
    pc.start = cli_now();
    rc = run(&pc, kind, srcs, nsrcs);
    if (rc == CLI_OK)
        rc = finish(&pc, srcs, nsrcs);
    cli_progress_clear(&pc.progress);
    /* The dataset is complete and in place: a stop request now has nothing left to stop. */
    if (rc == CLI_OK && interrupted)
        cli_err("%s: interrupted after the dataset was published; it is complete", pc.outdir);
    sigaction(SIGINT, &old_int, NULL); /* the caller's handlers, not the defaults */
    sigaction(SIGTERM, &old_term, NULL);
out:
    ctx_free(&pc);
    active_ctx = NULL;
    free(srcs);
    return rc;
}
