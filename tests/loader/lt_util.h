/* lt_util.h - helpers for the loader tests: datasets whose every value is a pure function of the
 * global sample id, row checks against sp_batch_sample_id(), batch hashes and drained runs. Public
 * API only; nothing here calls ck_assert, so forked children may use it too. */
#ifndef SP_LT_UTIL_H
#define SP_LT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardpack.h"

/* A generated dataset: fields label (int64 = sample id), tokens (uint16 [seq]) and x (float32 [3]). */
typedef struct lt_ds {
    char *root;    /* private directory holding the dataset (removed by lt_ds_free) */
    char *dir;     /* root/data */
    uint64_t n;    /* samples */
    uint32_t seq;  /* tokens per sample (T + 1) */
    uint64_t salt; /* content salt: two salts give two different datasets */
    uint64_t blocks, shards;
} lt_ds;

/* Writes n samples with the given writer block_size and shard_size ("4K", "64K"). Returns 0 or the
 * failing code, with a message on stderr. Usable outside a test (from main). */
int lt_make(lt_ds *d, const char *tag, uint64_t n, uint32_t seq, uint64_t salt, const char *block_size,
            const char *shard_size);
/* n samples of 2000 tokens, each alone in a 4 KiB block alone in an 8 KiB shard: n shards, or a
 * nonzero return with a message on stderr. */
int lt_make_one_per_shard(lt_ds *d, const char *tag, uint64_t n, uint64_t salt);
void lt_ds_free(lt_ds *d);
/* A copy of d's directory under a new private root (for tests that damage files). */
int lt_clone(const lt_ds *d, lt_ds *out, const char *tag);

uint16_t lt_token(uint64_t salt, uint64_t id, uint32_t i);
float lt_x(uint64_t salt, uint64_t id, uint32_t i);

/* Parameters from NULL-terminated name/value string pairs; NULL (with a message) on a bad one. */
sp_params *lt_params_v(const char *const *kv);
/* Opens a loader on path with the test defaults (host_memory 64M, threads 2) overridden by the
 * NULL-terminated name/value pairs. Returns the open code; *out is NULL on failure. */
int lt_open(const char *path, sp_loader **out, ...);
/* The same with the pairs in a NULL-terminated array. */
int lt_open_kv(const char *path, sp_loader **out, const char *const *kv);

/* Whether row `row` holds exactly the values of its sample id. why gets a reason when not. */
bool lt_row_ok(const lt_ds *d, const sp_batch *b, uint32_t row, char *why, size_t whylen);
/* Bytes of field i of b (rows actually delivered). */
size_t lt_field_bytes(const sp_batch *b, size_t i);
/* Hash of a batch: epoch, index, rows, ids and every tensor's bytes. */
uint64_t lt_batch_hash(const sp_batch *b);

/* A record of delivered batches. */
typedef struct lt_rec {
    uint64_t *hash; /* per batch */
    uint64_t *ids;  /* every delivered row's sample id, in order */
    uint32_t *rows; /* per batch */
    size_t nb, ni, capb, capi;
    uint64_t bad;    /* rows that failed lt_row_ok */
    uint64_t filled; /* rows with sample id UINT64_MAX (skipped corrupt samples; not checked) */
    char why[256];  /* the first such failure */
} lt_rec;

void lt_rec_free(lt_rec *r);
void lt_rec_add(lt_rec *r, const lt_ds *d, const sp_batch *b);
/* Takes and releases batches until next() returns nonzero or max batches were taken; records each
 * (checking rows against d when d is not NULL). Returns the code that ended it (0 when max hit). */
int lt_drain(sp_loader *l, const lt_ds *d, lt_rec *r, uint64_t max, int timeout_ms);
/* One epoch: drain, then expect SP_EEPOCH. Returns the ending code. */
int lt_epoch(sp_loader *l, const lt_ds *d, lt_rec *r);

double lt_now(void);
/* What this machine gives the dataset's files: io_uring (a loader opens with io=uring) and
 * O_DIRECT (its first shard opens with it); tests check that the loader reports what it does. */
void lt_probe_io(const lt_ds *d, bool *uring, bool *direct);

#endif
