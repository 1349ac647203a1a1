/*
 * cli.h - internal interface of the shardpack command-line tool.
 *
 * The tool includes only the public header (include/shardpack.h) from the library. Everything
 * declared here lives in tools/ and is private to the executable.
 *
 * Error convention inside the tool: functions that can fail print one message to stderr
 * ("shardpack: FILE: cause") and return an exit status (CLI_EDATA or CLI_EUSAGE); CLI_OK (0) on
 * success. Memory exhaustion is reported and ends the process (cli_xmalloc and friends); the pack
 * command registers its writer so an exit still removes the writer's temporary files.
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

/* Largest single input member or file the importers read into memory. */
#define CLI_MAX_ITEM_BYTES (256ull * 1024 * 1024)

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
/* Called before exit on out-of-memory so half-written outputs are cleaned up. */
void cli_set_exit_cleanup(void (*fn)(void));

/* Growable byte buffer. */
typedef struct cli_buf {
    unsigned char *data;
    size_t len, cap;
} cli_buf;
void cli_buf_reserve(cli_buf *b, size_t cap);
void cli_buf_append(cli_buf *b, const void *data, size_t n);
void cli_buf_free(cli_buf *b);

/* Strict unsigned / signed decimal parse of the whole string (surrounding blanks allowed for
 * cli_parse_i64_trim). Return 0 on success, -1 otherwise. */
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_i64_trim(const char *s, size_t len, int64_t *out);

/* Last path component (no allocation; trailing slashes not stripped). */
const char *cli_basename(const char *path);
/* 1 when s ends with suffix, ASCII case-insensitively. */
int cli_ends_with_ci(const char *s, const char *suffix);
/* dir + "/" + name, allocated. */
char *cli_path_join(const char *dir, const char *name);
/* "12.3 MB" (powers of 1000, as throughput is shown). */
void cli_fmt_bytes(char *buf, size_t n, uint64_t bytes);
/* Seconds from a monotonic clock. */
double cli_now(void);

/* Opens path for reading (flags added to O_RDONLY | O_CLOEXEC) without blocking on a FIFO or a
 * device, and refuses anything but a regular file: the descriptor, in blocking mode, with *st its
 * fstat; or -1 with *reason ("not a regular file (a FIFO)", "cannot open: ...", valid until the
 * thread's next call of these). */
int cli_open_regular(const char *path, int flags, struct stat *st, const char **reason);
/* The same as a read-only stdio stream; NULL with *reason. */
FILE *cli_fopen_regular(const char *path, struct stat *st, const char **reason);
/* Reads the whole regular file at path into b (b->len = its size). Refuses files over cap bytes.
 * Returns 0, or -1 with *reason set to a static or thread-local description. */
int cli_read_file(const char *path, uint64_t cap, cli_buf *b, const char **reason);
/* pread loop: returns 0 when exactly n bytes were read, -1 on error (errno) or short read
 * (errno 0). */
int cli_pread_full(int fd, void *buf, size_t n, uint64_t off);

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

/* ---- cli_pack.c: the pack context that importers feed ---------------------------------------- */

typedef struct pack_ctx pack_ctx;

/* Options the importers read. */
int pack_strict(const pack_ctx *pc);
uint64_t pack_seq_len(const pack_ctx *pc);
/* OUTDIR, as given with -o. */
const char *pack_outdir(const pack_ctx *pc);
/* Declares the schema (ownership passes to the context) and the expected totals for the progress
 * line (0 when unknown). The writer is opened at the first sample, so an empty input creates
 * nothing. */
void pack_set_schema(pack_ctx *pc, sp_schema *schema);
void pack_set_totals(pack_ctx *pc, uint64_t items, uint64_t bytes);
/* Queues a metadata entry (copied). */
void pack_set_meta(pack_ctx *pc, const char *key, const void *value, size_t len);
/* Adds one sample built from in_bytes input bytes. what names it in messages. Returns CLI_OK,
 * or an exit status after printing why (write failure, or a rejected sample under --strict). */
int pack_add(pack_ctx *pc, const sp_value *values, size_t n, uint64_t in_bytes, const char *what);
/* Records a skipped input item (path, reason). Returns CLI_OK, or CLI_EDATA under --strict after
 * printing "shardpack: PATH: REASON". */
int pack_skip(pack_ctx *pc, const char *path, const char *reason, uint64_t in_bytes);
/* Validates JPEG bytes (sp_image_probe) and adds them with label; a bad image is skipped. */
int pack_add_jpeg(pack_ctx *pc, const char *what, const void *data, size_t size, int64_t label);
/* Reads a JPEG file and adds it (pack_add_jpeg); unreadable/empty files are skipped. */
int pack_add_jpeg_file(pack_ctx *pc, const char *path, int64_t label);
/* The image+label schema shared by imagefolder, tsv and wds. */
sp_schema *pack_image_label_schema(void);
/* 1 when the user interrupted (SIGINT/SIGTERM); importers stop and return CLI_EDATA. */
int pack_interrupted(void);

/* ---- importers: each returns an exit status ---------------------------------------------------- */

int imp_imagefolder(pack_ctx *pc, const char *const *srcs, size_t n);
int imp_tsv(pack_ctx *pc, const char *const *srcs, size_t n);
int imp_llmc(pack_ctx *pc, const char *const *srcs, size_t n);
/* 1 when the file at path starts with an llm.c token-file magic. */
int imp_llmc_sniff(const char *path);
int imp_tar(pack_ctx *pc, const char *const *srcs, size_t n);
int imp_npy(pack_ctx *pc, const char *const *srcs, size_t n);

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
