/* sp_file.c - whole reads and writes that survive EINTR and short transfers, and the fsync of a
 * directory that makes a rename durable. Return 0, SP_ETRUNC for an early end of file, or -errno. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_file.h"

int sp_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return SP_ETRUNC;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int sp_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int sp_fsync_dirfd(int fd)
{
    int rc = fsync(fd) ? -errno : 0;
    /* Some file systems refuse fsync on a directory; the rename is then as durable as they allow. */
    return rc == -EINVAL ? 0 : rc;
}

int sp_read_file(const char *path, size_t max, uint8_t **out, size_t *n, int *err)
{
    *out = NULL;
    *n = 0;
    *err = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return errno == ENOENT ? SP_ENOENT : SP_EIO;
    }
    struct stat st;
    int rc = SP_OK;
    if (fstat(fd, &st) != 0)
        *err = errno, rc = SP_EIO;
    else if (!S_ISREG(st.st_mode))
        *err = EISDIR, rc = SP_EIO;
    else if ((uint64_t)st.st_size > max)
        rc = SP_ELIMIT;
    uint8_t *buf = rc ? NULL : sp_malloc((size_t)st.st_size);
    if (!rc && !buf)
        rc = SP_ENOMEM;
    if (!rc) {
        int r = sp_pread_all(fd, buf, (size_t)st.st_size, 0);
        if (r == SP_ETRUNC)
            rc = SP_ETRUNC;
        else if (r)
            *err = -r, rc = SP_EIO;
    }
    close(fd);
    if (rc) {
        sp_free(buf);
        return rc;
    }
    *out = buf;
    *n = (size_t)st.st_size;
    return SP_OK;
}

/* The message for a failed sp_read_file. */
const char *sp_read_file_why(int rc, int err)
{
    return err ? strerror(err) : sp_strerror(rc);
}

bool sp_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
