/* sp_file.h - whole-file and whole-range I/O helpers. */
#ifndef SP_FILE_H
#define SP_FILE_H

#include <string.h>

#include "sp_internal.h"

int sp_pread_all(int fd, void *buf, size_t n, uint64_t off);
int sp_write_all(int fd, const void *buf, size_t n);
/* fsync of an open directory; 0 also where the file system refuses it (EINVAL), else -errno. */
int sp_fsync_dirfd(int fd);
/* Reads a whole regular file of at most max bytes into a new buffer (sp_free). Returns an SP code
 * (SP_ENOENT, SP_EIO, SP_ELIMIT, SP_ENOMEM, SP_ETRUNC); *err holds the errno behind SP_EIO. */
int sp_read_file(const char *path, size_t max, uint8_t **out, size_t *n, int *err);
const char *sp_read_file_why(int rc, int err);
bool sp_path_is_dir(const char *path);

#endif
