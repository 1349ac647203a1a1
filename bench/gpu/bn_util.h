/* bn_util.h - shared by the device benchmarks: the no-GPU exit, a scratch dataset of one float32
 * tensor field (stored raw, so that decoding costs a memcpy and never limits a copy measurement),
 * loader parameters and the clock. Public API only. */
#ifndef SP_BN_UTIL_H
#define SP_BN_UTIL_H

#include <stdint.h>

#include "shardpack.h"

/* Exit status when there is no CUDA device: meson's and run.sh's "skipped". */
#define BN_EXIT_SKIP 77

/* A dataset written by bn_make; root is removed by bn_free. */
typedef struct bn_ds {
    char *root; /* private scratch directory, or NULL for a dataset given by the user */
    char *dir;  /* the dataset */
} bn_ds;

/* Exits with BN_EXIT_SKIP and "PROG: no CUDA device: REASON" when the library sees no device
 * `device`. */
void bn_need_gpu(const char *prog, int device);
/* Writes `samples` samples of a tensor field "x", float32 [elems], uncompressed, into a new scratch
 * directory ($TMPDIR, else /dev/shm when it has room, else /tmp). Returns 0 or an sp_error code,
 * with a message on stderr. */
int bn_make(bn_ds *d, const char *tag, uint64_t samples, uint32_t elems);
void bn_free(bn_ds *d);
/* Opens a loader on path with NULL-terminated name/value pairs; exits 1 with a message on failure. */
sp_loader *bn_open(const char *prog, const char *path, const char *const *kv);
/* Exits 1 with "PROG: WHAT: CUDA's message" when e (a cudaError_t) is not cudaSuccess. */
void bn_cuda_check(const char *prog, int e, const char *what);
/* Monotonic seconds. */
double bn_now(void);
/* Parses an integer option value of at least min; exits 2 (usage) when it is not one. */
uint64_t bn_arg_u64(const char *prog, const char *name, const char *value, uint64_t min);

#endif
