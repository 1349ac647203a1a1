/* cli_pack.c - `shardpack pack`: the arguments, the progress line, signals, and the summary with
 * the skipped items. The importing itself is the library's (sp_import_*). */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LISTED_SKIPS 20

typedef struct skip_entry {
    char *path;
    char *reason;
} skip_entry;

typedef struct pack_ctx {
    const char *outdir;
    sp_params *params;
    int quiet, json;
    const char *kind; /* --from, or NULL: detected */

    sp_import *imp;
    uint64_t skipped, in_bytes;
    skip_entry skips[MAX_LISTED_SKIPS];
    size_t nskips;

    cli_progress progress;
    double start;
} pack_ctx;

static volatile sig_atomic_t interrupted;
/* The open import, for the signal handler: set once it is open, cleared before it is destroyed.
 * The handler runs on this thread only (the writer's threads block signals), so it never sees an
 * import being destroyed. */
static sp_import *volatile signal_import;

/* SIGINT/SIGTERM: stop at the next item, or make the final flush stop short of publishing. */
static void on_signal(int sig)
{
    interrupted = 1;
    sp_import *imp = signal_import;
    if (imp)
        sp_import_abort(imp); /* async-signal-safe: sets flags */
    signal(sig, SIG_DFL); /* a second signal ends the process at once */
}

/* The library's skip callback: count it, keep the first few for the summary. It runs with the
 * writer open, so it does not exit when memory runs out (that would leave the staging directory):
 * an item it cannot copy is counted and not listed. */
static void on_skip(void *user, const char *what, const char *reason, uint64_t bytes)
{
    pack_ctx *pc = user;
    pc->skipped++;
    (void)bytes;
    if (pc->nskips == MAX_LISTED_SKIPS)
        return;
    skip_entry e = {strdup(what), strdup(reason)};
    if (e.path && e.reason)
        pc->skips[pc->nskips++] = e;
    else {
        free(e.path);
        free(e.reason);
    }
}

static void on_progress(void *user, const sp_import_progress *p)
{
    pack_ctx *pc = user;
    pc->in_bytes = p->bytes;
    if (!pc->progress.enabled)
        return;
    pc->progress.total_items = p->total_items;
    pc->progress.total_bytes = p->total_bytes;
    sp_write_stats st = {.struct_size = sizeof st};
    const sp_writer *w = sp_import_writer(pc->imp);
    if (w)
        sp_writer_stats(w, &st);
    cli_progress_update(&pc->progress, p->samples + p->skipped, p->bytes, &st, 0);
}

/* ---- the command -------------------------------------------------------------------------- */

enum { OPT_OUTPUT = 1, OPT_FROM, OPT_JSON, OPT_QUIET };

static const cli_opt pack_opts[] = {
    {"output", 'o', 1, OPT_OUTPUT, "OUTDIR", "dataset directory to write (required)"},
    {"from", 0, 1, OPT_FROM, "KIND", "source kind: imagefolder, tsv, llmc, wds or npy (default: detected)"},
    {"json", 0, 0, OPT_JSON, NULL, "print one JSON object with the results to stdout"},
    {"quiet", 'q', 0, OPT_QUIET, NULL, "no progress line and no summary"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_pack = {
    "pack",
    "pack SRC... -o OUTDIR [--from KIND] [--seq-len T] [--strict] [--json] [--quiet] [parameters]",
    "Builds a dataset (manifest.spm and shard-NNNNNN.sps files) in OUTDIR from SRC.",
    "Sources (detected from the path, or named with --from; one kind per pack):\n"
    "  DIR                ImageFolder: DIR/CLASS/*.jpg|*.png|*.webp|...; label = index of CLASS in sorted order\n"
    "  FILE.tsv           lines 'PATH<TAB>LABEL' (relative paths from the TSV's directory)\n"
    "  FILE.bin           llm.c token file (uint16 or uint32 tokens); needs --seq-len\n"
    "  FILE.tar           WebDataset shard: members KEY.jpg|KEY.png|KEY.webp|... and KEY.cls per sample\n"
    "  FILE.npy           NumPy array; one tensor field per file, samples are rows\n"
    "Bad input items (unreadable, empty, not a decodable JPEG, PNG or WebP) are skipped and listed in the summary,\n"
    "unless --strict is given. The dataset is published only when every shard is complete.\n",
    pack_opts,
    SP_SCOPE_WRITE | SP_SCOPE_IMPORT,
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
    size_t nf = sp_schema_num_fields(sp_import_schema(pc->imp));
    for (size_t i = 0; i < nf && i < SP_MAX_FIELDS; i++) {
        sp_field_info fi = {.struct_size = sizeof fi};
        if (sp_schema_field(sp_import_schema(pc->imp), i, &fi) != 0)
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

static int finish(pack_ctx *pc)
{
    sp_write_stats st = {.struct_size = sizeof st};
    sp_writer_stats(sp_import_writer(pc->imp), &st);
    double secs = cli_now() - pc->start;
    if (pc->json)
        print_json(pc, &st, secs);
    else if (!pc->quiet)
        print_summary(pc, &st, secs);
    return CLI_OK;
}

static void ctx_free(pack_ctx *pc)
{
    signal_import = NULL;
    sp_import_destroy(pc->imp);
    pc->imp = NULL;
    for (size_t i = 0; i < pc->nskips; i++) {
        free(pc->skips[i].path);
        free(pc->skips[i].reason);
    }
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

/* The kind of every source, detected, for the usage errors only the command line can word: a path
 * of no known kind, sources of several kinds, --seq-len missing or misplaced. The library checks
 * the same (SP_EINVAL) for callers of its own. */
static int check_kinds(pack_ctx *pc, const char *const *srcs, size_t n)
{
    int first = -1;
    for (size_t i = 0; i < n; i++) {
        int k = pc->kind ? sp_import_kind_lookup(pc->kind) : sp_import_detect(srcs[i]);
        if (k == SP_ENOTSUP)
            return cli_usage_err(&cli_cmd_pack, "%s; name it with --from imagefolder|tsv|llmc|wds|npy",
                                 sp_last_error());
        if (k == SP_EFORMAT) {
            cli_err("%s; name the kind with --from", sp_last_error());
            return CLI_EDATA;
        }
        if (k < 0) {
            cli_err("%s", sp_last_error());
            return CLI_EDATA;
        }
        if (first < 0)
            first = k;
        else if (k != first)
            return cli_usage_err(&cli_cmd_pack,
                                 "all sources of one pack must be of one kind: '%s' is %s, '%s' is %s",
                                 srcs[0], sp_import_kind_name(first), srcs[i], sp_import_kind_name(k));
    }
    int llmc = strcmp(sp_import_kind_name(first), "llmc") == 0;
    int seq_len = sp_params_get(pc->params, SP_PARAM_SEQ_LEN) != 0;
    if (llmc && !seq_len)
        return cli_usage_err(&cli_cmd_pack, "llm.c token files need --seq-len T (tokens per sample, plus one)");
    if (!llmc && seq_len)
        return cli_usage_err(&cli_cmd_pack, "--seq-len applies only to llm.c token files");
    if (strcmp(sp_import_kind_name(first), "imagefolder") == 0 && n != 1)
        return cli_usage_err(&cli_cmd_pack, "an ImageFolder pack takes exactly one directory");
    return CLI_OK;
}

static int parse(pack_ctx *pc, int argc, char **argv, const char **srcs, size_t *nsrcs)
{
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_pack, argc, argv, pc->params);
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
            srcs[(*nsrcs)++] = g.value;
            break;
        case OPT_OUTPUT:
            pc->outdir = g.value;
            break;
        case OPT_FROM:
            if (sp_import_kind_lookup(g.value) < 0)
                return cli_usage_err(&cli_cmd_pack,
                                     "--from '%s': expected imagefolder, tsv, llmc, wds or npy",
                                     g.value);
            pc->kind = g.value;
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
    return check_kinds(pc, srcs, *nsrcs);
}

/* The metadata the command line adds: how the dataset was made. */
static void set_created_by(pack_ctx *pc, int argc, char **argv)
{
    char *created_by = cli_command_line(argc, argv);
    int rc = sp_import_set_meta(pc->imp, "created_by", created_by, strlen(created_by));
    free(created_by);
    if (rc)
        cli_err("%s", sp_import_errmsg(pc->imp)); /* a command line over 16 MiB: go on without it */
}

/* Opens and runs the import, the signal handlers in place throughout. */
static int run(pack_ctx *pc, const char *const *srcs, size_t nsrcs, int argc, char **argv)
{
    int rc = sp_import_open(pc->kind, srcs, nsrcs, pc->outdir, pc->params, &pc->imp);
    if (rc) {
        cli_err("%s", sp_last_error());
        return CLI_EDATA;
    }
    signal_import = pc->imp;
    if (interrupted) /* the signal came while the sources were examined */
        sp_import_abort(pc->imp);
    set_created_by(pc, argc, argv);
    sp_import_set_callbacks(pc->imp, on_skip, on_progress, pc);
    rc = sp_import_run(pc->imp);
    cli_progress_clear(&pc->progress);
    if (rc == SP_ECANCELED && interrupted) {
        cli_err("interrupted; nothing was published");
        return CLI_EDATA;
    }
    if (rc) {
        cli_err("%s", sp_import_errmsg(pc->imp));
        return CLI_EDATA;
    }
    return finish(pc);
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
    int rc = parse(&pc, argc, argv, srcs, &nsrcs);
    if (rc != CLI_OK) {
        rc = rc < 0 ? CLI_OK : rc;
        goto out;
    }
    if ((rc = precheck_output(&pc)) != CLI_OK)
        goto out;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    cli_progress_init(&pc.progress, pc.quiet || pc.json);
    pc.start = cli_now();
    rc = run(&pc, srcs, nsrcs, argc, argv);
    cli_progress_clear(&pc.progress);
    /* The dataset is complete and in place: a stop request now has nothing left to stop. */
    if (rc == CLI_OK && interrupted)
        cli_err("%s: interrupted after the dataset was published; it is complete", pc.outdir);
    signal_import = NULL;
    sigaction(SIGINT, &old_int, NULL); /* the caller's handlers, not the defaults */
    sigaction(SIGTERM, &old_term, NULL);
out:
    ctx_free(&pc);
    free(srcs);
    return rc;
}
