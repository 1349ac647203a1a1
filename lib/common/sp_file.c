/* sp_file.c - opening a data file without blocking on a FIFO, whole reads and writes that survive
 * EINTR and short transfers, and the fsync of a directory that makes a rename durable. The reads
 * and writes return 0, SP_ETRUNC for an early end of file, or -errno. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sp_file.h"

int sp_open_regular(const char *path, int flags, struct stat *st)
{
    /* Without O_NONBLOCK, open() of a FIFO waits for a writer, forever if none comes. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);
    if (fd < 0)
        return -errno;
    int rc = fstat(fd, st) != 0 ? -errno : !S_ISREG(st->st_mode) ? SP_NOT_REGULAR : 0;
    int fl = rc ? 0 : fcntl(fd, F_GETFL);
    /* No effect on a regular file today, but reads are meant to block: say so. */
    if (!rc && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0))
        rc = -errno;
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

static const char *not_regular_why(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFIFO: return "not a regular file (a FIFO)";
    case S_IFDIR: return "not a regular file (a directory)";
    case S_IFCHR: return "not a regular file (a character device)";
    case S_IFBLK: return "not a regular file (a block device)";
    case S_IFSOCK: return "not a regular file (a socket)";
    default: return "not a regular file";
    }
}

const char *sp_open_why(int rc, const struct stat *st)
{
    return rc == SP_NOT_REGULAR ? not_regular_why(st->st_mode) : strerror(-rc);
}

int sp_open_code(int rc) { return rc == -ENOENT ? SP_ENOENT : SP_EIO; }

uint32_t sp_fd_budget(uint32_t lo, uint32_t hi)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur / 4 >= hi)
        return hi;
    return rl.rlim_cur / 4 < lo ? lo : (uint32_t)(rl.rlim_cur / 4);
}

sp_file_id sp_file_id_of(const struct stat *st)
{
    return (sp_file_id){ (uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                         (int64_t)st->st_mtim.tv_sec, (int64_t)st->st_mtim.tv_nsec };
}

bool sp_file_id_equal(const sp_file_id *a, const sp_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_sec == b->mtime_sec &&
           a->mtime_nsec == b->mtime_nsec;
}

void sp_file_id_describe(const sp_file_id *id, char *buf, size_t n)
{
    snprintf(buf, n, "inode %llu, %llu bytes, modified %lld.%09lld", (unsigned long long)id->ino,
             (unsigned long long)id->size, (long long)id->mtime_sec, (long long)id->mtime_nsec);
}

/* EAGAIN from a read without a byte read is tried again this often (a millisecond's pause from the
 * eighth try), about a second in all, as the loader's block reads are (ld_io.c), then returned. */
#define PREAD_MAX_AGAIN 1000u

int sp_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    unsigned again = 0;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN && ++again <= PREAD_MAX_AGAIN) {
            if (again >= 8)
                nanosleep(&(struct timespec){ 0, 1000000L }, NULL);
            continue;
        }
        if (r < 0)
            return -errno;
        again = 0;
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

int sp_read_file(const char *path, size_t max, uint8_t **out, size_t *n, int *err, sp_file_id *id)
{
    *out = NULL;
    *n = 0;
    *err = 0;
    struct stat st;
    int fd = sp_open_regular(path, 0, &st);
    if (fd == SP_NOT_REGULAR) {
        *err = -(int)(st.st_mode & S_IFMT);
        return SP_EIO;
    }
    if (fd < 0) {
        *err = -fd;
        return sp_open_code(fd);
    }
    int rc = SP_OK;
    if ((uint64_t)st.st_size > max)
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
    if (id)
        *id = sp_file_id_of(&st);
    return SP_OK;
}

/* The message for a failed sp_read_file. */
const char *sp_read_file_why(int rc, int err)
{
    if (err < 0)
        return not_regular_why((mode_t)-err);
    return err ? strerror(err) : sp_strerror(rc);
}

bool sp_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
