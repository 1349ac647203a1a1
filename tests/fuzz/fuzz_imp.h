/* fuzz_imp.h - what the importer targets (fuzz_imp_*.c) share.
 *
 * Each target writes its input as one or two source files into a fresh run directory, runs the
 * library's import over them into RUN/out (sp_import_open and sp_import_run, so the real import
 * and a real sp_writer do the writing), and then checks the outcome:
 *
 *   - a failure is never SP_EINVAL (what the request gets wrong cannot come from data);
 *   - on failure, the import's message names a file (a source, the output directory, or an item
 *     a source names, such as a TSV line's image), and nothing was published or left behind (no
 *     RUN/out, no staging directory);
 *   - every skipped item reached the skip callback with a name and a reason;
 *   - on success, RUN/out is a dataset that opens, passes sp_verify without a fault and holds at
 *     least one sample; the target then compares the samples with its input.
 *
 * The run directory lives in a per-process scratch directory under $TMPDIR, else /dev/shm, else
 * /tmp (tmpfs keeps the writer's fsyncs cheap); it is emptied after every input and the scratch
 * directory is removed at exit. The import's message and skipped items are kept for a failure's
 * report; set FUZZ_IMP_VERBOSE=1 to see them for every input.
 *
 * Mode byte (the input's first byte), bits shared by all importer targets: */
#ifndef SP_FUZZ_IMP_H
#define SP_FUZZ_IMP_H

#include <stddef.h>
#include <stdint.h>

#include "shardpack.h"

/* Name the kind, and give the sources names without the kind's extension. */
#define FIMP_FROM 0x01u
/* strict: the first bad item ends the import. */
#define FIMP_STRICT 0x02u
/* Two sources: the two bytes after the mode (little-endian) are the first one's length (clamped),
 * the rest is the second one. Without this bit the rest of the input is the only source. */
#define FIMP_SPLIT 0x04u
/* Tight writer limits: shard_size 8K, max_sample_bytes 1K, compress none (many shards, refused
 * samples). Otherwise compress auto. Always: block_size 4K, threads 1, level 1. */
#define FIMP_TIGHT 0x08u
/* Bits 4-7 belong to the target (see its header comment). */
#define FIMP_OWN_SHIFT 4

#define FIMP_MAX_SRCS 2

typedef struct fimp_input {
    unsigned mode;
    size_t nparts;
    const uint8_t *part[FIMP_MAX_SRCS];
    size_t len[FIMP_MAX_SRCS];
} fimp_input;

/* Splits an input into its mode and sources; 0 when it is too short to mean anything. */
int fimp_parse(const uint8_t *data, size_t size, fimp_input *in);

/* Starts a run: an empty run directory. */
void fimp_begin(void);
/* RUN/name, in storage that lasts until fimp_end (at most 16 per run). */
const char *fimp_path(const char *name);
/* Creates the directory RUN/name. */
void fimp_mkdir(const char *name);
/* Writes n bytes to RUN/name; returns its path (as fimp_path). */
const char *fimp_write(const char *name, const void *data, size_t n);

/* Imports SRCS... into RUN/out, the kind named from (not NULL then) when the mode has FIMP_FROM,
 * else detected, with the mode's common parameters and seq_len (0: none). Checks the common
 * expectations above and returns sp_import_open's or sp_import_run's code. */
int fimp_pack(unsigned mode, const char *from, const char *const *srcs, size_t nsrcs, uint64_t seq_len);

/* After a successful fimp_pack: the dataset RUN/out, opened (the caller closes it). */
sp_dataset *fimp_open_output(void);

/* Calls fn for every sample of ds in order (sample index, its block and row). */
typedef void (*fimp_sample_fn)(void *user, uint64_t sample, const sp_block *blk, uint32_t row);
void fimp_each_sample(sp_dataset *ds, fimp_sample_fn fn, void *user);
/* Field f of a row (aborts when the reader refuses what it was just given). */
const uint8_t *fimp_field(const sp_block *blk, uint32_t row, size_t f, size_t *size);
/* The image of a row of an (image, label) dataset, as the image importers write it; aborts when
 * the label is not 8 bytes. */
const uint8_t *fimp_image_of(const sp_block *blk, uint32_t row, uint64_t sample, size_t *size);

/* Ends a run: removes the run directory and everything in it. */
void fimp_end(void);

/* Reports a broken expectation (with the captured messages) and aborts. */
void fimp_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

#endif
