/* test_util.h - helpers shared by the test programs: seeded randomness, scratch directories, file
 * surgery, deterministic sample generation and a full read-back comparison. Public API only. */
#ifndef SP_TEST_UTIL_H
#define SP_TEST_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardpack.h"

/* ck_assert_msg without Check's bookkeeping on success (in fork mode every passing ck_assert
 * writes its location to a pipe), for checks inside hot loops. */
#define TU_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* ---- seeded randomness (splitmix64) ---- */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;

uint64_t tu_mix(uint64_t x);
uint64_t tu_next(tu_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t tu_below(tu_rng *r, uint64_t n);
void tu_fill_random(tu_rng *r, void *p, size_t n);
/* The seed for this run: $SP_TEST_SEED when set, else def. Printed by tu_run on failure. */
uint64_t tu_seed(uint64_t def);

/* ---- scratch files ---- */
/* A new empty directory (malloc'd path) under $TMPDIR, /dev/shm or /tmp. */
char *tu_tmpdir(const char *tag);
/* Removes path and everything under it; makes no Check call, so main() may use it. */
void tu_rmtree(const char *path);
/* A dataset directory that does not exist yet, inside a new private parent (*parent, malloc'd),
 * so that a writer's temporaries beside or inside it can be found afterwards. */
char *tu_dataset_dir(const char *tag, char **parent);
/* Entries a writer may have left in parent: anything but `keep` (the dataset's own name). */
size_t tu_count_others(const char *parent, const char *keep);
/* Names starting with '.' (temporaries) inside dir; 0 when dir does not exist. */
size_t tu_count_hidden(const char *dir);
/* dir + "/" + name, malloc'd. */
char *tu_join(const char *dir, const char *name);
bool tu_exists(const char *path);
uint64_t tu_file_size(const char *path);
/* Whole file into a malloc'd buffer; aborts the test on failure. */
uint8_t *tu_read_file(const char *path, size_t *n);
void tu_write_file(const char *path, const void *p, size_t n);
void tu_copy_file(const char *from, const char *to);
/* XORs the byte at off with mask, in place. */
void tu_xor_byte(const char *path, uint64_t off, uint8_t mask);
/* Rewrites dir's manifest.spm: each shard entry's recorded largest blocks (its bytes 32..39, format.md
 * 8.4) set by `set` (NULL: left), the minor version to minor, the checksum made right again.
 * tu_manifest_unrecorded clears them: with minor 0, the manifest as written before 1.1. */
void tu_rewrite_manifest(const char *dir, uint16_t minor, void (*set)(uint64_t shard, uint8_t *entry));
void tu_manifest_unrecorded(uint64_t shard, uint8_t *entry);
/* Number of entries of dir (without . and ..) whose name passes pred (NULL: all). */
size_t tu_count_files(const char *dir, bool (*pred)(const char *name));
/* Sorted list of shard-*.sps paths in dir (malloc'd array of malloc'd strings). */
char **tu_list_shards(const char *dir, size_t *n);
void tu_free_list(char **v, size_t n);
/* Path of the shard file holding global sample `sample` of the dataset at dir (malloc'd), and when
 * block is not NULL, the block's index within that shard. */
char *tu_shard_of(const char *dir, uint64_t sample, uint64_t *block);

/* ---- generated datasets ---- */
/* Describes a dataset whose every value is a pure function of (seed, sample, field), so it can be
 * regenerated for comparison instead of being kept in memory. */
typedef struct tu_data {
    sp_schema *schema;
    uint64_t seed;
    uint64_t nsamples;
    size_t var_max;    /* variable values are 0..var_max bytes ... */
    size_t var_large;  /* ... and now and then var_large bytes (0: never) */
    int empty_pct;     /* percent of variable values that are empty */
    bool compressible; /* low-entropy bytes instead of random ones */
} tu_data;

/* Samples of an image field "img" (random bytes, 0..var_max of them) and a label: the writer-side
 * dataset of the interruption and fault tests. Free its schema with sp_schema_destroy. */
tu_data tu_image_data(uint64_t n, uint64_t seed, size_t var_max);
/* A random schema of 1..max_fields fields over every kind, dtype and a range of shapes. */
sp_schema *tu_random_schema(tu_rng *r, size_t max_fields);
/* Size of value (sample, field). */
size_t tu_value_size(const tu_data *d, uint64_t sample, size_t field);
/* Writes value (sample, field) into buf (at least tu_value_size bytes). */
void tu_value_fill(const tu_data *d, uint64_t sample, size_t field, uint8_t *buf);
/* Adds samples [from, to) to w; returns the first failing code or 0. */
int tu_add_samples(sp_writer *w, const tu_data *d, uint64_t from, uint64_t to);
/* Opens a writer on dir, adds every sample and finishes. params may be NULL. */
int tu_write_dataset(const char *dir, const tu_data *d, const sp_params *params, sp_write_stats *st);
/* Checks that ds holds exactly samples [first, first + sp_dataset_num_samples(ds)) of d, byte for
 * byte, reading through locate/read_block/block_get. Fails the test (naming the seed) if not. */
void tu_check_dataset(sp_dataset *ds, const tu_data *d, uint64_t first);
/* A writer parameter set; NULL-terminated name/value string pairs, e.g. "block_size", "4K". */
sp_params *tu_params(const char *name, ...);
/* Writer parameters for tu_data's image fields, which hold synthetic bytes rather than JPEGs:
 * the defaults with validate_images off. One set shared by the process; do not destroy it. */
const sp_params *tu_synthetic_images(void);

/* ---- check glue ---- */
/* A test case with a timeout in seconds. */
TCase *tu_tcase(Suite *s, const char *name, double timeout);
/* Runs s (fork mode), prints the seed when something failed; returns the exit status. */
int tu_run(Suite *s, uint64_t seed);
/* Checks a loader's trace file with check_trace.py ($SP_TRACE_CHECK, set by meson) for st's
 * threads, host budget and batch slots, plus the script's `extra` options (--need NAME ...);
 * fails the test with the command when it does not pass (its reasons on stderr). */
void tu_check_trace(const char *path, const sp_loader_stats *st, const char *extra);

/* True when built with AddressSanitizer or ThreadSanitizer, which reserve terabytes of address
 * space for their shadow memory: an RLIMIT_AS cannot be used there. */
bool tu_sanitized(void);
/* True when built with AddressSanitizer. */
bool tu_asan(void);

/* ---- forked children ---- */
/* In a child forked by a test (before Check calls in it are meaningless): SIGALRM back to its
 * default and an alarm of `seconds`, so that a child that hangs dies of SIGALRM instead of waiting
 * (Check's own SIGALRM handler would kill the whole test). */
void tu_child_deadline(unsigned seconds);
/* Waits for child pid and fails the test unless it exited 0: a signal (SIGALRM: it hung) or a
 * nonzero status, the step it failed at, is named with `what`. */
void tu_child_ok(int pid, const char *what);

#endif
