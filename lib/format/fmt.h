/* fmt.h - shard format v1: encoding and checked decoding of every on-disk structure.
 * docs/format.md is the byte-by-byte specification; this module is its only implementation. */
#ifndef SP_FMT_H
#define SP_FMT_H

#include <zstd.h>

#include "sp_file.h"
#include "sp_internal.h"

#define FMT_MAGIC_SHARD "\x89SPK\r\n\x1a\n"
#define FMT_MAGIC_MANIFEST "\x89SPM\r\n\x1a\n"
#define FMT_MAGIC_INDEX "SPIX"
#define FMT_MAGIC_LEN 8
#define FMT_VERSION_MAJOR 1
#define FMT_VERSION_MINOR 0
/* A manifest that records its shards' largest blocks (format.md 8.4) is 1.1. */
#define FMT_MANIFEST_MINOR 1

#define FMT_HEADER_BYTES 64
#define FMT_TRAILER_BYTES 64
#define FMT_ALIGN 4096u
#define FMT_ALIGN_MIN 512u
#define FMT_ALIGN_MAX (1u << 20)
#define FMT_INDEX_HEADER_BYTES 48
#define FMT_BLOCK_ENTRY_BYTES 48
#define FMT_MAX_BLOCK_SAMPLES (1u << 22)
#define FMT_MAX_META_ENTRIES 4096u
#define FMT_MAX_META_VALUE (16u << 20)
#define FMT_MAX_META_KEY 255u
#define FMT_MAX_SHARD_NAME 255u
#define FMT_MAX_INDEX_BYTES (256u << 20)
/* One read at open fetches this much of the file's tail: trailer plus, usually, the whole index. */
#define FMT_TAIL_READ (64u * 1024)

#define SHARD_NAME_FMT "shard-%06llu.sps"
#define MANIFEST_NAME "manifest.spm"

/* Where and why a decode failed; offsets are from the start of the file. */
typedef struct fmt_err {
    uint64_t offset;
    int64_t block; /* -1 when not in a block */
    char why[SP_ERRMSG_MAX];
} fmt_err;

int fmt_errf(fmt_err *e, int code, uint64_t offset, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Limits a reader enforces on a file's claims, from the parameters. */
typedef struct fmt_limits {
    uint64_t max_block_bytes;
    uint64_t max_shards;
} fmt_limits;

void fmt_limits_from_params(fmt_limits *l, const sp_params *p);

/* ---- schema (fmt_schema.c) ---- */
typedef struct sp_field {
    char name[SP_MAX_NAME + 1];
    int kind, dtype;
    uint32_t ndim;
    uint64_t shape[SP_MAX_DIMS];
    uint64_t fixed_bytes; /* 0: variable length */
} sp_field;

struct sp_schema {
    size_t n;
    sp_field f[SP_MAX_FIELDS];
};

void fmt_schema_encode(const sp_schema *s, sp_buf *b);
/* Decodes a schema at c; base is the file offset of c's start, for messages. */
int fmt_schema_decode(sp_cursor *c, uint64_t base, sp_schema *out, fmt_err *e);
/* Fixed bytes of the smallest possible sample: the sum of fixed fields plus 4 per variable one. */
uint64_t fmt_schema_min_sample_bytes(const sp_schema *s);

/* ---- metadata (fmt_meta.c) ---- */
typedef struct fmt_meta_entry {
    char *key;
    uint8_t *value;
    size_t len;
} fmt_meta_entry;

typedef struct fmt_meta {
    size_t n;
    fmt_meta_entry *e;
} fmt_meta;

int fmt_meta_set(fmt_meta *m, const char *key, const void *value, size_t len);
const fmt_meta_entry *fmt_meta_find(const fmt_meta *m, const char *key);
void fmt_meta_free(fmt_meta *m);
void fmt_meta_encode(const fmt_meta *m, sp_buf *b);
int fmt_meta_decode(sp_cursor *c, uint64_t base, fmt_meta *out, fmt_err *e);

/* ---- shard header, trailer, index (fmt_shard.c) ---- */
typedef struct fmt_header {
    uint64_t dataset_id;
    uint32_t shard_no;
    uint32_t align;
} fmt_header;

typedef struct fmt_trailer {
    uint64_t index_offset, index_size, index_checksum, file_size, nblocks, nsamples;
} fmt_trailer;

typedef struct fmt_block_entry {
    uint64_t offset;
    uint64_t first_sample; /* within the shard */
    uint32_t stored_size, raw_size, nsamples;
    uint8_t codec;
    uint64_t checksum, raw_checksum;
} fmt_block_entry;

typedef struct fmt_index {
    fmt_header id; /* align, dataset id and shard number, repeated from the header */
    sp_schema schema;
    fmt_meta meta;
    uint64_t nblocks, nsamples;
    fmt_block_entry *blocks;
} fmt_index;

void fmt_header_encode(uint8_t out[FMT_HEADER_BYTES], const fmt_header *h);
int fmt_header_decode(const uint8_t *p, size_t n, fmt_header *h, fmt_err *e);
void fmt_trailer_encode(uint8_t out[FMT_TRAILER_BYTES], const fmt_trailer *t);
int fmt_trailer_decode(const uint8_t *p, uint64_t file_size, fmt_trailer *t, fmt_err *e);
void fmt_index_encode(const fmt_header *h, const sp_schema *s, const fmt_meta *m,
                      const fmt_block_entry *blocks, uint64_t nblocks, uint64_t nsamples, sp_buf *b);
/* Decodes and checks the index bytes p[0..n) against the trailer: every block lies in the data
 * area, aligned, in order, back to back; counts add up; sizes are within limits. */
int fmt_index_decode(const uint8_t *p, size_t n, const fmt_trailer *t, const fmt_limits *lim,
                     fmt_index *out, fmt_err *e);
void fmt_index_free(fmt_index *ix);

/* An open shard: its decoded trailer and index, the identity of the file they were read from, and
 * a descriptor kept only when fmt_shard_fd asks for one (fd is -1 until then). The header is not
 * read at open (that would be a second read); verification reads it and checks it against the
 * index. */
typedef struct fmt_shard {
    char *path;
    int fd;
    sp_file_id id; /* of the file at open: a later open of path must find the same one */
    uint64_t file_size;
    fmt_trailer trailer;
    fmt_index index;
} fmt_shard;

/* Opens and checks path with one tail read (two when the index exceeds FMT_TAIL_READ). */
int fmt_shard_open(const char *path, const fmt_limits *lim, fmt_shard **out, fmt_err *e);
/* The same through fd, the caller's descriptor of path (its fstat in st), which stays open. */
int fmt_shard_open_fd(const char *path, int fd, const struct stat *st, const fmt_limits *lim, fmt_shard **out,
                      fmt_err *e);
void fmt_shard_close(fmt_shard *s);
/* Reads len bytes at off of the shard's file into buf: SP_OK, or a code with e filled. */
typedef int (*fmt_read_fn)(void *ctx, uint8_t *buf, uint64_t len, uint64_t off, fmt_err *e);
/* A shard that is not read through a descriptor (a remote object): trailer and index decoded and
 * checked from tail, the last tail_len bytes of its file_size (at least min(file_size,
 * FMT_TAIL_READ)), with one call of read when the index begins before the tail. fd stays -1 and
 * id holds only the size. */
int fmt_shard_open_tail(const char *path, uint64_t file_size, const uint8_t *tail, size_t tail_len,
                        fmt_read_fn read, void *ctx, const fmt_limits *lim, fmt_shard **out, fmt_err *e);

/* ---- blocks (fmt_block.c) ---- */
/* Columns of a decoded block: fixed fields are n * fixed_bytes; variable fields are
 * uint32 offsets[n + 1] followed by the data. Each column starts 8-aligned in the raw block. */
typedef struct fmt_block_view {
    const sp_schema *schema;
    const uint8_t *raw;
    uint32_t n;
    uint64_t col[SP_MAX_FIELDS]; /* start of each column */
} fmt_block_view;

/* Checks the layout of a raw block of n samples and fills v. */
int fmt_block_parse(const sp_schema *s, const uint8_t *raw, uint64_t raw_size, uint32_t n,
                    fmt_block_view *v, fmt_err *e);
void fmt_block_get(const fmt_block_view *v, uint32_t row, size_t field, const uint8_t **data,
                   size_t *size);
/* Whether the stored bytes of a zstd block are what the format allows: exactly one frame, which
 * declares the block's raw_size as its content size. SP_OK, or SP_ECORRUPT with e filled. */
int fmt_zstd_frame_check(const fmt_block_entry *be, const uint8_t *stored, fmt_err *e);
/* Verifies the stored checksum and, for zstd, the framing (fmt_zstd_frame_check), decompresses
 * into raw (raw_size bytes of capacity; raw may equal stored for a stored block), and verifies the
 * raw checksum. Offsets in e are the block's. */
int fmt_block_decode(const fmt_block_entry *be, const uint8_t *stored, uint8_t *raw,
                     ZSTD_DCtx *dctx, fmt_err *e);

/* Block i of s from its stored bytes already read (stored_size of them, in `stored`): verified,
 * decompressed into a new buffer (*raw_out: `stored` itself for a stored block, else a new one to
 * sp_free) and its layout checked into *v. */
int fmt_shard_decode_block(const fmt_shard *s, uint64_t i, uint8_t *stored, ZSTD_DCtx *dctx, uint8_t **raw_out,
                           fmt_block_view *v, fmt_err *e);
/* Reads block i of s through fd (the caller's descriptor of s->path, checked by
 * fmt_shard_check_file), verifies and decompresses it into a new buffer (*raw_out, sp_free) and
 * checks its layout into *v. SP_ECHANGED when a failed block turns out to come from a file that is
 * no longer the one opened. */
int fmt_shard_read_block(fmt_shard *s, int fd, uint64_t i, ZSTD_DCtx *dctx, uint8_t **raw_out,
                         fmt_block_view *v, fmt_err *e);
/* The shard's read descriptor, opened on first use and kept until close (thread-safe); a negative
 * code (SP_ENOENT, SP_EIO, SP_ECHANGED) when it cannot be opened, with e->why saying why. */
int fmt_shard_fd(fmt_shard *s, fmt_err *e);
/* Checks that fd, a new descriptor of s->path, and `now`, its fstat, are the file fmt_shard_open
 * read: SP_OK, or SP_ECHANGED with e->why "replaced since it was opened (was ..., now ...); ..."
 * when it is another file (another inode, or the same inode holding another shard). The same
 * file changed in place is SP_OK: damage, for the reads of its blocks to report. */
int fmt_shard_check_file(const fmt_shard *s, int fd, const struct stat *now, fmt_err *e);
/* After a block of s failed its checks with rc: SP_ECHANGED (e->why rewritten) when s->path now
 * names another file than the one opened, so that a replaced dataset is not reported as damaged;
 * else rc, e untouched. */
int fmt_shard_recheck(const fmt_shard *s, int rc, fmt_err *e);
/* What a reopened shard file is checked against, for a reader that keeps a shard's block entries
 * and lets its index go: the identity of the file the index was read from and the header fields
 * the index repeats. fmt_mark_check_file and fmt_mark_recheck are fmt_shard_check_file and
 * fmt_shard_recheck for the shard at path that m was taken from. */
typedef struct fmt_shard_mark {
    sp_file_id id;
    fmt_header h;
} fmt_shard_mark;

fmt_shard_mark fmt_shard_mark_of(const fmt_shard *s);
int fmt_mark_check_file(const fmt_shard_mark *m, int fd, const struct stat *now, fmt_err *e);
int fmt_mark_recheck(const char *path, const fmt_shard_mark *m, int rc, fmt_err *e);

/* ---- manifest (fmt_manifest.c) ---- */
typedef struct fmt_manifest_shard {
    char *name; /* file name relative to the manifest's directory */
    uint64_t file_size, nblocks, nsamples, index_checksum;
    /* Its largest stored_size, and largest raw_size of a zstd block (0: none); both 0 when the
     * manifest does not record them (written before 1.1). */
    uint32_t max_stored, max_raw;
} fmt_manifest_shard;

typedef struct fmt_manifest {
    uint64_t dataset_id;
    sp_schema schema;
    fmt_meta meta;
    uint64_t nshards, nblocks, nsamples;
    fmt_manifest_shard *shards;
    uint32_t *block_samples; /* nblocks entries, shards in order */
} fmt_manifest;

void fmt_manifest_encode(const fmt_manifest *m, sp_buf *b);
int fmt_manifest_decode(const uint8_t *p, size_t n, const fmt_limits *lim, fmt_manifest *out,
                        fmt_err *e);
void fmt_manifest_free(fmt_manifest *m);
/* A shard name the manifest may contain: a plain file name, no '/', not "." or "..". */
bool fmt_shard_name_ok(const char *name, size_t len);
/* After a shard named by the manifest at mpath failed to open or to agree with it: whether mpath
 * now names another file than the one read (identity *read), or none, so that the shard came from
 * a dataset published in its place (a rename or RENAME_EXCHANGE of the directory) rather than
 * being damaged. true with why filled ("the dataset was replaced while being read (...)"). */
bool fmt_manifest_replaced(const char *mpath, const sp_file_id *read, char *why, size_t whylen);

#endif
