/* rd.h - shared by the reader's modules. */
#ifndef SP_RD_H
#define SP_RD_H

#include "fmt.h"
#include "rm.h"

/* Sets eb and the thread's last error to "PATH: [block B ]at byte O: why"; returns code. */
int rd_fail_at(sp_errbuf *eb, int code, const char *path, const fmt_err *e);

/* Shard i of d, opened on first use and checked against the manifest (thread-safe). The shard
 * stays owned by d. */
int rd_shard_get(sp_dataset *d, uint64_t i, fmt_shard **out);

/* Reads the stored bytes of global block `block` into buf (its stored_size), through d's cached
 * descriptors (thread-safe). SP_OK, or a negative code with e->why (and e->offset) set: the file
 * cannot be reopened, or the read fails or ends early. */
int rd_pread_block(sp_dataset *d, uint64_t block, uint8_t *buf, fmt_err *e);

/* The site of a dataset on an HTTP(S) server or in S3, or NULL for local files. */
rm_site *rd_site(const sp_dataset *d);
/* The object of shard i of a remote dataset (its ETag known once the shard is open). */
rm_obj *rd_shard_obj(sp_dataset *d, uint64_t i);
/* Opens every shard not yet open (rd_shard_get for each); a remote dataset's shard tails are
 * fetched many at a time. SP_OK, or the first failure's code with d's message. */
int rd_shard_open_all(sp_dataset *d);

/* Every *.sps file in dir (no manifest), in natural name order; free with rd_free_list. */
int rd_list_shards(const char *dir, uint64_t max, char ***out, size_t *n, sp_errbuf *eb);
void rd_free_list(char **v, size_t n);
/* The one rule every path-taking entry point follows for wildcards: a path that names nothing
 * but holds *, ? or [ is a glob of shard files. 0 when path is not such a glob (open it as a
 * path); 1 with its matches in natural name order (as rd_list_shards; free with rd_free_list);
 * or SP_ENOENT (nothing matches), SP_ELIMIT (more than max), SP_ENOMEM, SP_EIO. */
int rd_glob_shards(const char *path, uint64_t max, char ***out, size_t *n, sp_errbuf *eb);

/* 1 when path starts with the manifest magic (dir = its directory), 0 when it does not, or a
 * negative code when it cannot be read. */
int rd_sniff_manifest(const char *path, char *dir, size_t dirlen, sp_errbuf *eb);

#endif
