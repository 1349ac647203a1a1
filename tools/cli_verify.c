/* cli_verify.c - `shardpack verify`: every checksum and index invariant, each fault reported. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_JSON_FAULTS 10000 /* faults kept for --json; the count stays exact */

typedef struct stored_fault {
    char *file;
    int64_t block;
    uint64_t offset;
    int code;
    char *message;
} stored_fault;

typedef struct verify_ctx {
    int json;
    stored_fault *faults;
    size_t nfaults, cap;
    uint64_t seen;
} verify_ctx;

static void on_fault(const sp_fault *f, void *user)
{
    verify_ctx *v = user;
    v->seen++;
    const char *file = f->file ? f->file : "?";
    const char *msg = f->message && *f->message ? f->message : sp_strerror(f->code);
    if (!v->json) {
        if (f->block >= 0)
            cli_line(stdout, "%s: block %lld at byte %llu: %s", file, (long long)f->block,
                     (unsigned long long)f->offset, msg);
        else
            cli_line(stdout, "%s: at byte %llu: %s", file, (unsigned long long)f->offset, msg);
        return;
    }
    if (v->nfaults == MAX_JSON_FAULTS)
        return;
    if (v->nfaults == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->faults = cli_xrealloc(v->faults, v->cap * sizeof *v->faults);
    }
    stored_fault *s = &v->faults[v->nfaults++];
    s->file = cli_xstrdup(file);
    s->block = f->block;
    s->offset = f->offset;
    s->code = f->code;
    s->message = cli_xstrdup(msg);
}

static void print_json(const char *path, const verify_ctx *v, const sp_verify_report *r)
{
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_key(&j, "path");
    cli_json_str(&j, path);
    cli_json_key(&j, "ok");
    cli_json_bool(&j, v->seen == 0 && r->faults == 0);
    cli_json_key(&j, "shards");
    cli_json_u64(&j, r->shards);
    cli_json_key(&j, "blocks");
    cli_json_u64(&j, r->blocks);
    cli_json_key(&j, "samples");
    cli_json_u64(&j, r->samples);
    cli_json_key(&j, "bytes");
    cli_json_u64(&j, r->bytes);
    cli_json_key(&j, "fault_count");
    cli_json_u64(&j, r->faults > v->seen ? r->faults : v->seen);
    cli_json_key(&j, "faults");
    cli_json_array(&j);
    for (size_t i = 0; i < v->nfaults; i++) {
        const stored_fault *f = &v->faults[i];
        cli_json_object(&j);
        cli_json_key(&j, "file");
        cli_json_str(&j, f->file);
        cli_json_key(&j, "block");
        if (f->block >= 0)
            cli_json_i64(&j, f->block);
        else
            cli_json_null(&j);
        cli_json_key(&j, "offset");
        cli_json_u64(&j, f->offset);
        cli_json_key(&j, "code");
        cli_json_i64(&j, f->code);
        cli_json_key(&j, "error");
        cli_json_str(&j, sp_error_name(f->code));
        cli_json_key(&j, "message");
        cli_json_str(&j, f->message);
        cli_json_end_object(&j);
    }
    cli_json_end_array(&j);
    cli_json_end_object(&j);
    cli_json_finish(&j);
}

enum { OPT_JSON = 1, OPT_QUIET };

static const cli_opt verify_opts[] = {
    {"json", 0, 0, OPT_JSON, NULL, "print one JSON object to stdout"},
    {"quiet", 'q', 0, OPT_QUIET, NULL, "print faults only, no summary line"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_verify = {
    "verify",
    "verify PATH [--json] [--quiet] [parameters]",
    "Checks every checksum and index invariant of a dataset directory, manifest or shard.",
    "Each fault is printed as 'FILE: block B at byte OFFSET: MESSAGE' and checking goes on.\n"
    "Exit status: 0 when sound, 1 when any fault was found or PATH cannot be read, 2 usage.\n",
    verify_opts,
    SP_SCOPE_READ,
};

int cli_verify_main(int argc, char **argv)
{
    verify_ctx v;
    memset(&v, 0, sizeof v);
    const char *path = NULL, *arg = NULL; /* printed; as typed, opened */
    char shown[4096];
    int quiet = 0, rc = CLI_OK;
    sp_params *params = sp_params_create();
    if (!params) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_verify, argc, argv, params);
    for (int id; (id = cli_next(&g)) != CLI_ARG_END;) {
        if (id == CLI_ARG_ERR) {
            rc = CLI_EUSAGE;
            goto out;
        } else if (id == CLI_ARG_HELP) {
            cli_print_help(stdout, &cli_cmd_verify);
            goto out;
        } else if (id == CLI_ARG_POS) {
            if (path) {
                rc = cli_usage_err(&cli_cmd_verify, "one PATH only (got '%s' and '%s')", path,
                                   g.value);
                goto out;
            }
            arg = g.value;
            path = cli_shown(arg, shown, sizeof shown);
        } else if (id == OPT_JSON) {
            v.json = 1;
        } else if (id == OPT_QUIET) {
            quiet = 1;
        }
    }
    if (!path) {
        rc = cli_usage_err(&cli_cmd_verify, "no dataset PATH given");
        goto out;
    }

    sp_verify_report r = { .struct_size = sizeof r };
    cli_oom_context("verifying %s", path);
    int vr = sp_verify(arg, params, on_fault, &v, &r);
    if (vr == SP_ECHANGED || (vr != 0 && vr != SP_ECORRUPT && v.seen == 0)) {
        /* PATH could not be examined at all, or was replaced while being examined. */
        rc = cli_lib_err(path, vr, sp_last_error());
        goto out;
    }
    uint64_t faults = r.faults > v.seen ? r.faults : v.seen;
    if (vr != 0 && faults == 0)
        faults = 1;
    rc = faults ? CLI_EDATA : CLI_OK;
    if (v.json) {
        print_json(path, &v, &r);
    } else if (!quiet) {
        char b[32];
        cli_fmt_bytes(b, sizeof b, r.bytes);
        char tail[64] = "";
        if (faults)
            snprintf(tail, sizeof tail, "; %llu fault%s", (unsigned long long)faults, faults == 1 ? "" : "s");
        cli_line(stdout, "%s: %s: %llu shard%s, %llu block%s, %llu sample%s, %s checked%s", path,
                 faults ? "FAULTY" : "OK", (unsigned long long)r.shards, r.shards == 1 ? "" : "s",
                 (unsigned long long)r.blocks, r.blocks == 1 ? "" : "s", (unsigned long long)r.samples,
                 r.samples == 1 ? "" : "s", b, tail);
    }
    fflush(stdout);
out:
    for (size_t i = 0; i < v.nfaults; i++) {
        free(v.faults[i].file);
        free(v.faults[i].message);
    }
    free(v.faults);
    sp_params_destroy(params);
    return rc;
}
