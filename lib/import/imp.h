/* imp.h - the import stage: source kinds as a table, and what every kind may ask of the import that
 * runs it.
 *
 * A kind is one imp_kind entry (imp_kinds.c lists them): a name, a suffix or a sniff that recognises
 * a path, and open / next / close over a private state of priv_size bytes. open reads what it must
 * to declare the schema (imp_set_schema), the expected totals and the metadata; next yields one
 * sample at a time, reporting the input items it cannot use through imp_skip on the way; close frees the state.
 * The import (imp_run.c) owns everything else: the writer, opened at the first sample so an empty
 * input creates nothing; the validation of image fields; strict; the callbacks; cancellation.
 *
 * Errors: every function returning int gives 0 or a negative SP code, after imp_fail (or a callee)
 * put a message naming the file in the import's buffer. Nothing here prints or exits. */
#ifndef SP_IMP_H
#define SP_IMP_H

#include <stdio.h>
#include <sys/stat.h>

#include "sp_internal.h"

/* Largest single input member or file an importer reads into memory. */
#define IMP_MAX_ITEM_BYTES (256ull * 1024 * 1024)

typedef struct sp_import imp_ctx;

/* One sample from a kind's next(): values[i] is field i of the declared schema; the memory is the
 * kind's and stays valid until its next call. what names the input item in messages ("a.tsv:3",
 * "x.tar:key", a path); in_bytes is the input it came from, for progress. */
typedef struct imp_sample {
    const sp_value *values;
    size_t nvalues;
    uint64_t in_bytes;
    const char *what;
} imp_sample;

typedef struct imp_kind {
    const char *name;    /* "imagefolder": what --from and sp_import_kind_lookup take */
    const char *aliases; /* other names it answers to, '|'-separated, or NULL */
    const char *suffix;  /* a path ending so (any case) is of this kind, when sniff is NULL */
    /* 1 when path (st its stat) is of this kind; 0 when not. May set *why (a static string) to say
     * why a path of this kind's shape is still not one (an llm.c .bin without its magic). */
    int (*sniff)(const char *path, const struct stat *st, const char **why);
    int uses_seq_len;    /* 1 for the kind that reads the seq_len parameter (others refuse it) */
    size_t priv_size;
    /* Examines the sources (checked before: n >= 1, all of this kind) and declares the schema. */
    int (*open)(imp_ctx *c, void *priv, const char *const *srcs, size_t n);
    /* 1 with *out filled, 0 after the last sample, or a negative code. */
    int (*next)(imp_ctx *c, void *priv, imp_sample *out);
    /* Frees what open and next allocated (called once open has been called, even if it failed). */
    void (*close)(void *priv);
    /* What the kind accepts of n sources: 0, or SP_EINVAL with a message (before anything is read). */
    int (*check)(imp_ctx *c, const char *const *srcs, size_t n);
} imp_kind;

/* The table, in the order the kinds are tried when a path is sniffed. */
extern const imp_kind *const imp_kinds[];
extern const size_t imp_nkinds;

/* ---- asked of the import by a kind (imp_run.c) ---------------------------------------------- */

/* Formats the import's message ("PATH: what is wrong"); returns code. */
int imp_fail(imp_ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* SP_ENOMEM naming what was being read (path) and the size asked for. */
int imp_oom(imp_ctx *c, const char *path, size_t bytes);
/* The parameters the import was opened with (never NULL). */
const sp_params *imp_params(const imp_ctx *c);
/* The output directory, for a kind that must not read it as input. */
const char *imp_outdir(const imp_ctx *c);
/* Declares the schema; the import takes ownership (also on failure). */
void imp_set_schema(imp_ctx *c, sp_schema *schema);
/* The (image, label) schema of the image kinds, declared; SP_ENOMEM. */
int imp_set_image_label_schema(imp_ctx *c);
/* Expected totals for progress (0: unknown). */
void imp_set_totals(imp_ctx *c, uint64_t items, uint64_t bytes);
/* Queues a metadata entry of the kind (copied); SP_ENOMEM. */
int imp_set_meta(imp_ctx *c, const char *key, const void *value, size_t len);
/* Reports an input item that is not used: to the skip callback, or, under strict, as the import's
 * failure (SP_EBADINPUT, "WHAT: REASON (strict)"). 0 when the import goes on. Also SP_ECANCELED
 * once sp_import_abort was called. */
int imp_skip(imp_ctx *c, const char *what, const char *reason, uint64_t in_bytes);

/* ---- helpers the kinds share (imp_util.c) ---------------------------------------------------- */

/* A growable byte buffer. */
typedef struct imp_buf {
    unsigned char *data;
    size_t len, cap;
} imp_buf;
/* Makes room for cap bytes; SP_ENOMEM (message naming what) when memory runs out. */
int imp_buf_reserve(imp_ctx *c, imp_buf *b, size_t cap, const char *what);
int imp_buf_append(imp_ctx *c, imp_buf *b, const void *data, size_t n, const char *what);
void imp_buf_free(imp_buf *b);

/* Opens path read-only without blocking on a FIFO or device, refusing anything but a regular file:
 * the descriptor with *st its stat, or -1 with *why ("not a regular file (a FIFO)", "cannot open:
 * ..."; valid until the thread's next call of these). */
int imp_open_regular(const char *path, struct stat *st, const char **why);
/* The same as a stdio stream. */
FILE *imp_fopen_regular(const char *path, struct stat *st, const char **why);
/* Reads the whole regular file at path into b (b->len its size), at most cap bytes. 0; 1 with
 * *why when the file cannot be used (an item to skip); SP_ENOMEM. */
int imp_read_file(imp_ctx *c, const char *path, uint64_t cap, imp_buf *b, const char **why);

/* Reads the image file at path into b for an image kind: 1 when read; 0 when it cannot be (it was
 * reported with imp_skip, which said to go on); or imp_skip's or the read's negative code. */
int imp_read_item(imp_ctx *c, const char *path, imp_buf *b);

/* An (image, label) sample: v[0] the image bytes, v[1] label as little-endian int64 in le. */
typedef struct imp_image_label {
    sp_value v[2];
    unsigned char le[8];
} imp_image_label;
void imp_image_label_sample(imp_image_label *il, const void *data, size_t size, int64_t label,
                            const char *what, imp_sample *out);

/* The order pack writes the kind's input items in (parameters order and order_seed): perm[i] = the
 * item written i-th, a seeded permutation of 0..n-1 under order=shuffled, the identity under
 * order=source. perm is allocated (sp_free) and NULL with SP_ENOMEM (message) when memory runs out;
 * 8 bytes an item, never the items' bytes. */
int imp_item_order(imp_ctx *c, uint64_t n, uint64_t **perm);

/* Last path component (trailing slashes not stripped). */
const char *imp_basename(const char *path);
/* 1 when s ends with suffix, ASCII case-insensitively. */
int imp_ends_with_ci(const char *s, const char *suffix);
/* 1 when name ends in an image file extension, case-insensitively: torchvision's ImageFolder's
 * (.jpg .jpeg .png .webp .ppm .bmp .pgm .tif .tiff). The bytes decide the format; one the image
 * stage does not decode is skipped as not a decodable image. */
int imp_is_image_name(const char *name);
/* Formatted, allocated (sp_free); NULL when memory runs out. */
char *imp_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Strict decimal parses of the whole text: blanks around allowed for the signed one. 0 or -1. */
int imp_parse_u64(const char *s, uint64_t *out);
int imp_parse_i64_trim(const char *s, size_t len, int64_t *out);

#endif
