/* clit_fault_preload.c - an LD_PRELOAD shim that fills the disk under the shardpack binary, or
 * interrupts it at a chosen moment, for test_cli_faults. write() and pwrite() calls on a descriptor
 * inside a writer's staging directory (a path containing ".shardpack-tmp") are counted; everything
 * else passes through untouched.
 *   SP_FAULT_ENOSPC_AT=n        the n-th such call and every later one fail with ENOSPC (a full
 *                               disk stays full)
 *   SP_FAULT_COUNT=path         the number of such calls is written to path when the process exits
 *   SP_FAULT_SIGINT_AT_FSYNC=n  the n-th fsync() of the process (any descriptor) first sends
 *                               SIGINT to the process, as a Ctrl-C at that moment would; a signal
 *                               a process sends itself is delivered before kill() returns
 * The library reaches write() and fsync() through its PLT, so the shim's definitions take its
 * calls. */
#undef _FILE_OFFSET_BITS /* define pwrite and pwrite64 themselves, not one renamed to the other */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t write(int fd, const void *buf, size_t n);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);
int fsync(int fd);

static long g_count, g_fsyncs;

static int staged(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    return strstr(path, ".shardpack-tmp") != NULL;
}

/* 1 when this call must fail. */
static int full(int fd)
{
    if (!staged(fd))
        return 0;
    long k = __atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST);
    const char *at = getenv("SP_FAULT_ENOSPC_AT");
    return at && *at && k >= atol(at);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (full(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return syscall(SYS_write, fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (full(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return syscall(SYS_pwrite64, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

int fsync(int fd)
{
    long k = __atomic_add_fetch(&g_fsyncs, 1, __ATOMIC_SEQ_CST);
    const char *at = getenv("SP_FAULT_SIGINT_AT_FSYNC");
    if (at && *at && k == atol(at))
        kill(getpid(), SIGINT);
    return (int)syscall(SYS_fsync, fd);
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("SP_FAULT_COUNT");
    if (!path || !*path)
        return;
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", __atomic_load_n(&g_count, __ATOMIC_SEQ_CST));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (syscall(SYS_write, fd, line, (size_t)len) != len)
            unlink(path);
        close(fd);
    }
}
