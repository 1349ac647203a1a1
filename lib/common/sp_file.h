/* sp_file.h - whole-file and whole-range I/O helpers. */
#ifndef SP_FILE_H
#define SP_FILE_H

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "sp_internal.h"

/* sp_open_regular's answer for a path that is not a regular file: not an errno, not an SP code. */
#define SP_NOT_REGULAR (-4096)

/* Opens path read-only (O_CLOEXEC, plus extra `flags` such as O_DIRECT) with O_NONBLOCK, so that a
 * FIFO or a device cannot stop open() waiting for a writer, and refuses anything that is not a
 * regular file. Returns the descriptor, back in blocking mode, with *st its fstat; -errno when open
 * or fstat fails; SP_NOT_REGULAR (the descriptor closed, *st filled) for a FIFO, directory, device
 * or socket. */
int sp_open_regular(const char *path, int flags, struct stat *st);
/* Why sp_open_regular failed with rc: "not a regular file (a FIFO)" and the like, or strerror. */
const char *sp_open_why(int rc, const struct stat *st);
/* The SP code for sp_open_regular's failure rc: SP_ENOENT for a missing file, else SP_EIO. */
int sp_open_code(int rc);
/* Whether sp_open_regular failed for want of descriptors (EMFILE, ENFILE): a cache may close one. */
static inline bool sp_out_of_fds(int rc) { return rc == -EMFILE || rc == -ENFILE; }
/* How many descriptors a cache of data files keeps open: a quarter of the soft RLIMIT_NOFILE,
 * leaving the rest to the application, within [lo, hi]. Read at each call, so a limit lowered
 * while a cache is in use is honoured from its next open on. */
uint32_t sp_fd_budget(uint32_t lo, uint32_t hi);

/* What identifies the file a path named when it was opened: a file renamed over it, or rewritten
 * in place, differs in at least one of these. */
typedef struct sp_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec;
} sp_file_id;

sp_file_id sp_file_id_of(const struct stat *st);
bool sp_file_id_equal(const sp_file_id *a, const sp_file_id *b);
/* "inode 1234, 4096 bytes, modified 1712345678.123456789" into buf. */
void sp_file_id_describe(const sp_file_id *id, char *buf, size_t n);

/* Reads n bytes at off: 0, SP_ETRUNC when the file ends first, or -errno. EINTR is retried, and
 * EAGAIN a bounded number of times (about a second). */
int sp_pread_all(int fd, void *buf, size_t n, uint64_t off);
int sp_write_all(int fd, const void *buf, size_t n);
/* fsync of an open directory; 0 also where the file system refuses it (EINVAL), else -errno. */
int sp_fsync_dirfd(int fd);
/* Reads a whole regular file of at most max bytes into a new buffer (sp_free). Returns an SP code
 * (SP_ENOENT, SP_EIO, SP_ELIMIT, SP_ENOMEM, SP_ETRUNC); *err holds the errno behind SP_EIO, or,
 * negative, the file type bits (S_IFMT) of a path that is not a regular file. id (may be NULL)
 * receives the identity of the file read. */
int sp_read_file(const char *path, size_t max, uint8_t **out, size_t *n, int *err, sp_file_id *id);
const char *sp_read_file_why(int rc, int err);
bool sp_path_is_dir(const char *path);

#endif
