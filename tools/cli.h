/*
 * cli.h - internal interface of the shardpack command-line tool.
 *
 * The tool includes only the public header (include/shardpack.h) from the library. Everything
 * declared here lives in tools/ and is private to the executable.
 *
 * Error convention inside the tool: functions that can fail print one message to stderr
 * ("shardpack: FILE: cause") and return an exit status (CLI_EDATA or CLI_EUSAGE); CLI_OK (0) on
 * success. Memory exhaustion is reported and ends the process (cli_xmalloc and friends), except
 * where a writer is open (the pack command's callbacks), which never exit.
 */
#ifndef SHARDPACK_CLI_H
#define SHARDPACK_CLI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "shardpack.h"

/* Exit statuses of every subcommand. */
enum { CLI_OK = 0, CLI_EDATA = 1, CLI_EUSAGE = 2 };

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CLI_NORETURN __attribute__((noreturn))
#else
#define CLI_PRINTF(a, b)
#define CLI_NORETURN
#endif

/* ---- cli_util.c: messages, memory, strings, numbers, files ----------------------------------- */

/* "shardpack: " + message + newline, on stderr, the message escaped as cli_put_escaped does:
 * it often quotes names from input files. */
void cli_err(const char *fmt, ...) CLI_PRINTF(1, 2);
/* The formatted text, escaped, and a newline, on f: for every line that prints a path or a name
 * taken from input (a tar member, a file name, dataset metadata). */
void cli_line(FILE *f, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Writes n bytes of s to f with everything a terminal could act on escaped: newline, tab and
 * carriage return as \n, \t, \r, a backslash as \\, other C0 controls, DEL and bytes that are
 * not UTF-8 as \xHH, C1 controls as \u00HH; valid UTF-8 text passes unchanged. Returns the
 * characters written, counting each UTF-8 character as one (for padding). */
size_t cli_put_escaped(FILE *f, const char *s, size_t n);
/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 when invalid. */
size_t cli_utf8_len(const unsigned char *s, size_t n);
/* Reports a library failure of rc: "shardpack: WHAT: MESSAGE", MESSAGE being msg (the library's
 * message, may be NULL or empty: then sp_strerror(rc)). Returns CLI_EDATA. */
int cli_lib_err(const char *what, int rc, const char *msg);

/* Allocation that reports and exits with CLI_EDATA when memory is exhausted. */
void *cli_xmalloc(size_t n);
void *cli_xcalloc(size_t n, size_t size);
void *cli_xrealloc(void *p, size_t n);
char *cli_xstrdup(const char *s);
char *cli_xasprintf(const char *fmt, ...) CLI_PRINTF(1, 2);
/* What the command is doing, for the message when memory runs out ("packing x.tar into out",
 * "benchmarking data"): the message names it, the size asked for and what to lower. */
void cli_oom_context(const char *fmt, ...) CLI_PRINTF(1, 2);

/* Growable byte buffer. */
typedef struct cli_buf {
    unsigned char *data;
    size_t len, cap;
} cli_buf;
void cli_buf_reserve(cli_buf *b, size_t cap);
void cli_buf_append(cli_buf *b, const void *data, size_t n);
void cli_buf_free(cli_buf *b);

/* Strict unsigned decimal parse of the whole string. Returns 0 on success, -1 otherwise. */
int cli_parse_u64(const char *s, uint64_t *out);

/* dir + "/" + name, allocated. */
char *cli_path_join(const char *dir, const char *name);
/* What the CLI prints for a dataset argument: the argument itself, or for a URL (of any scheme)
 * with user:password@ in it, the URL without them (written into buf), so credentials reach no message,
 * report or JSON; the library is given the argument as typed. */
const char *cli_shown(const char *arg, char *buf, size_t len);
/* "12.3 MB" (powers of 1000, as throughput is shown). */
void cli_fmt_bytes(char *buf, size_t n, uint64_t bytes);
/* Seconds from a monotonic clock. */
double cli_now(void);

/* Shell-quoted command line, allocated (for the "created_by" metadata). */
char *cli_command_line(int argc, char **argv);

/* ---- cli_args.c: option parsing and help, parameters derived from the library's table ------- */

typedef struct cli_opt {
    const char *name; /* long name without "--" */
    char shortname;   /* 0 when none */
    int has_arg;      /* 1: takes a value */
    int id;           /* > 0, returned by cli_next */
    const char *arg;  /* value placeholder in help ("DIR") */
    const char *help;
} cli_opt;

typedef struct cli_cmd {
    const char *name;     /* "pack" */
    const char *synopsis; /* "pack SRC... -o OUTDIR [options]" */
    const char *summary;  /* one line */
    const char *details;  /* paragraphs after the synopsis, or NULL */
    const cli_opt *opts;  /* terminated by an entry with name NULL */
    int params;           /* SP_SCOPE_* bits: the library parameters it takes as options */
} cli_cmd;

enum { CLI_ARG_END = 0, CLI_ARG_POS = -1, CLI_ARG_ERR = -2, CLI_ARG_HELP = -3 };

typedef struct cli_getopt {
    const cli_cmd *cmd;
    int argc;
    char **argv;
    int i;
    int only_positional;
    sp_params *params; /* receives the parameter options */
    const char *value; /* value of the option or the positional just returned */
} cli_getopt;

void cli_getopt_init(cli_getopt *g, const cli_cmd *cmd, int argc, char **argv, sp_params *params);
/* Next option id, CLI_ARG_POS (g->value is the argument), CLI_ARG_END, CLI_ARG_HELP for -h/--help,
 * or CLI_ARG_ERR after printing a usage message. */
int cli_next(cli_getopt *g);
/* Prints "shardpack: MESSAGE" and a hint to see the command's help; returns CLI_EUSAGE. */
int cli_usage_err(const cli_cmd *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Full help of a command, parameter options generated from the library's table. */
void cli_print_help(FILE *f, const cli_cmd *cmd);

/* ---- cli_json.c: a small streaming JSON writer ------------------------------------------------ */

#define CLI_JSON_MAX_DEPTH 32

typedef struct cli_json {
    FILE *f;
    int depth;
    unsigned char first[CLI_JSON_MAX_DEPTH]; /* 1 until the first member at this depth */
    int after_key;
} cli_json;

void cli_json_init(cli_json *j, FILE *f);
void cli_json_object(cli_json *j);
void cli_json_end_object(cli_json *j);
void cli_json_array(cli_json *j);
void cli_json_end_array(cli_json *j);
void cli_json_key(cli_json *j, const char *key);
/* String value: escapes quotes, backslashes and control characters; valid UTF-8 passes through
 * unchanged, invalid bytes become U+FFFD so the output is always valid JSON. */
void cli_json_strn(cli_json *j, const char *s, size_t n);
void cli_json_str(cli_json *j, const char *s);
void cli_json_u64(cli_json *j, uint64_t v);
void cli_json_i64(cli_json *j, int64_t v);
/* Non-finite values are written as null. */
void cli_json_double(cli_json *j, double v);
void cli_json_bool(cli_json *j, int v);
void cli_json_null(cli_json *j);
/* Ends the document with a newline. */
void cli_json_finish(cli_json *j);

/* ---- cli_progress.c: terminal progress line -------------------------------------------------- */

typedef struct cli_progress {
    int enabled;
    double start, last_draw;
    uint64_t total_items; /* 0: unknown */
    uint64_t total_bytes; /* 0: unknown */
    int drawn;
} cli_progress;

/* Enabled only when stderr is a terminal and quiet is 0. */
void cli_progress_init(cli_progress *p, int quiet);
/* Redraws at most ~10 times a second. */
void cli_progress_update(cli_progress *p, uint64_t items, uint64_t in_bytes,
                         const sp_write_stats *st, int force);
/* Erases the line. */
void cli_progress_clear(cli_progress *p);
/* Erases the line of the progress being drawn, if any (cli_err calls it before printing). */
void cli_progress_clear_active(void);

/* ---- shuffle quality (cli_mix.c) --------------------------------------------------------------- */

/* Measured over the rows of one epoch given to cli_mix_add (or cli_mix_batch). */
typedef struct cli_mix {
    uint32_t batch;                /* rows of a full batch */
    uint64_t total;                /* samples of the dataset, for a uniform shuffle's distance */
    uint64_t world, rank;          /* a rank's k-th sample stands at k * world + rank */
    uint64_t samples, moved, batches, distinct_sum;
    double move_sum;
    int has_labels;                /* a field named label, int64 */
    int64_t *keys, *scratch;
    uint64_t *counts, *ids;
    size_t cap, nlabels, scratch_len, ids_len;
} cli_mix;

typedef struct cli_mix_result {
    int has_labels;
    double labels_per_batch, labels_uniform; /* mean distinct labels in a full batch; uniform's */
    double move, move_uniform;               /* mean |position - stored index|; uniform's, (N^2-1)/3N */
} cli_mix_result;

void cli_mix_init(cli_mix *m, uint32_t batch, uint64_t total, uint32_t world, uint32_t rank);
/* Rows delivered one after another: ids[i] their sample ids (UINT64_MAX: none), labels[i] their
 * labels, or labels NULL for a dataset without. A call of exactly batch rows is one batch of the
 * labels figure (a shorter one is counted for the uniform expectation only). -1 when memory runs
 * out. */
int cli_mix_add(cli_mix *m, const uint64_t *ids, const int64_t *labels, uint32_t rows);
/* One batch: its ids and its int64 field named label, if any. -1 when memory runs out. */
int cli_mix_batch(cli_mix *m, const sp_batch *b);
void cli_mix_get(const cli_mix *m, cli_mix_result *r);
void cli_mix_free(cli_mix *m);

/* ---- subcommands ------------------------------------------------------------------------------- */

extern const cli_cmd cli_cmd_pack, cli_cmd_inspect, cli_cmd_verify, cli_cmd_cat, cli_cmd_bench,
    cli_cmd_preview;
int cli_pack_main(int argc, char **argv);
int cli_inspect_main(int argc, char **argv);
int cli_verify_main(int argc, char **argv);
int cli_cat_main(int argc, char **argv);
int cli_bench_main(int argc, char **argv);
int cli_preview_main(int argc, char **argv);

#endif
