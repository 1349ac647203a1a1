/* ds.h - sp_dataset's internals: random access to one shard, block or sample of a dataset (not the
 * loader's reader thread, lib/load/), shared by ds_dataset.c, ds_verify.c and the loader. */
#ifndef SP_DS_H
#define SP_DS_H

#include "fmt.h"
#include "rm.h"

/* Sets eb and the thread's last error to "PATH: [block B ]at byte O: why"; returns code. */
int ds_fail_at(sp_errbuf *eb, int code, const char *path, const fmt_err *e);

/* Shard i of d, opened on first use and checked against the manifest (thread-safe). The shard
 * stays owned by d. */
int ds_shard_get(sp_dataset *d, uint64_t i, fmt_shard **out);

/* Shard i of a local dataset read through fd (the caller's, from sp_open_regular of its path, with
 * its fstat in st; a negative fd is that open's failure) and checked as ds_shard_get checks it,
 * but not kept by d: the caller owns *out (fmt_shard_close) and gets a failure's message, naming
 * the shard, in eb. An intact index that disagrees with the manifest in a file changed (ctime)
 * since d was opened is SP_ECHANGED "replaced since it was opened", not damage. Thread-safe beside
 * every other use of d. */
int ds_shard_load(sp_dataset *d, uint64_t i, int fd, const struct stat *st, fmt_shard **out, sp_errbuf *eb);
/* True for a local dataset whose manifest records every shard's largest blocks: a reader can size
 * its buffers and lay out its tables from the manifest alone and read each index at first use. */
bool ds_lazy_local(const sp_dataset *d);
/* What d holds for its shards and blocks whatever is read from them (paths, counts, offsets). */
uint64_t ds_table_bytes(const sp_dataset *d);

/* Reads the stored bytes of global block `block` into buf (its stored_size), through d's cached
 * descriptors (thread-safe). SP_OK, or a negative code with e->why (and e->offset) set: the file
 * cannot be reopened, or the read fails or ends early. */
int ds_pread_block(sp_dataset *d, uint64_t block, uint8_t *buf, fmt_err *e);

/* The site of a dataset on an HTTP(S) server or in S3, or NULL for local files. */
rm_site *ds_site(const sp_dataset *d);
/* The object of shard i of a remote dataset (its ETag known once the shard is open). */
rm_obj *ds_shard_obj(sp_dataset *d, uint64_t i);
/* Shard i's path (a remote one's URL without user:password@), its blocks (global numbers first ..
 * first + n - 1), and a block's sample count: all from the manifest or the shards opened at open. */
const char *ds_shard_path(const sp_dataset *d, uint64_t i);
void ds_shard_blocks(const sp_dataset *d, uint64_t i, uint64_t *first, uint64_t *n);
uint32_t ds_block_samples(const sp_dataset *d, uint64_t block);
/* True when the manifest records every shard's largest blocks (format.md 8.4): then *max_stored is
 * the largest stored_size of any block and *max_raw the largest raw_size of a zstd block (0: none),
 * and a shard whose index says otherwise is refused when it is opened. */
bool ds_block_bounds(const sp_dataset *d, uint32_t *max_stored, uint32_t *max_raw);
/* The bytes at the end of remote shard i that its opening GET asks for: its whole index and
 * trailer as its manifest entry implies (its block count, the manifest's schema and metadata), at
 * least FMT_TAIL_READ, at most the object. ds_shard_from_tail opens shard i from the last tail_len
 * bytes of its object (at least min(size, FMT_TAIL_READ); an index that begins before them, as when
 * the manifest is wrong or a reader asks for less, is read by a second, synchronous GET), checked
 * as ds_shard_get checks it; SP_OK with the shard (owned by d; an already open one when another
 * thread was first), or a code with d's message naming the URL. */
uint64_t ds_shard_tail_len(const sp_dataset *d, uint64_t i);
int ds_shard_from_tail(sp_dataset *d, uint64_t i, const uint8_t *tail, uint64_t tail_len, fmt_shard **out);
/* Opens every shard not yet open (ds_shard_get for each); a remote dataset's shard tails are
 * fetched many at a time. SP_OK, or the first failure's code with d's message. */
int ds_shard_open_all(sp_dataset *d);

/* Every *.sps file in dir (no manifest), in natural name order; free with ds_free_list. */
int ds_list_shards(const char *dir, uint64_t max, char ***out, size_t *n, sp_errbuf *eb);
void ds_free_list(char **v, size_t n);
/* The one rule every path-taking entry point follows for wildcards: a path that names nothing
 * but holds *, ? or [ is a glob of shard files. 0 when path is not such a glob (open it as a
 * path); 1 with its matches in natural name order (as ds_list_shards; free with ds_free_list);
 * or SP_ENOENT (nothing matches), SP_ELIMIT (more than max), SP_ENOMEM, SP_EIO. */
int ds_glob_shards(const char *path, uint64_t max, char ***out, size_t *n, sp_errbuf *eb);

/* SP_EINVAL naming path when it names nothing here and starts with a URL scheme ("ftp://")
 * other than the s3://, http:// and https:// this library reads; else 0. */
int ds_check_scheme(const char *path, sp_errbuf *eb);

/* 1 when path starts with the manifest magic (dir = its directory), 0 when it does not, or a
 * negative code when it cannot be read. */
int ds_sniff_manifest(const char *path, char *dir, size_t dirlen, sp_errbuf *eb);

#endif
