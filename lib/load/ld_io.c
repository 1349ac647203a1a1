/* ld_io.c - the read stage's I/O: io_uring with the read ring registered as a fixed buffer, or
 * io_uring with plain reads when registration is refused, or pread when io_uring itself is
 * refused (seccomp, old kernel, RLIMIT_MEMLOCK). One interface for all three, so the reader does
 * not care which path it runs on. Short reads are continued and EINTR/EAGAIN retried here; only
 * real errors reach the caller, as -errno (-ENODATA when the file ended before the range did). */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "ld_io.h"
#include "sp_config.h"

#if SP_HAVE_URING
#include <liburing.h>
#endif

/* Memcheck cannot see the kernel fill a buffer through io_uring; tell it, where its header exists
 * (a no-op outside valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SP_MARK_DEFINED(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#endif
#endif
#ifndef SP_MARK_DEFINED
#define SP_MARK_DEFINED(p, n) ((void)(p), (void)(n))
#endif

typedef struct io_req {
    bool busy;
    int fd;
    uint8_t *buf;
    uint64_t len, off, done;
    uint64_t tag;
    unsigned idle; /* EINTR/EAGAIN in a row without a byte read */
} io_req;

/* A read that keeps failing with EINTR or EAGAIN without progress is retried this often (with a
 * millisecond's pause from the eighth try), about a second in all, then given up with -EAGAIN:
 * a file that never becomes readable must end in an error, not in a reader spinning forever. */
#define IO_MAX_IDLE 1000u

/* Whether req may be tried again after EINTR/EAGAIN; pauses when it has been idle a while. */
static bool retry_idle(io_req *r)
{
    if (++r->idle > IO_MAX_IDLE)
        return false;
    if (r->idle >= 8) {
        struct timespec ts = { 0, 1000000L };
        nanosleep(&ts, NULL);
    }
    return true;
}

struct ld_io {
    int mode; /* SP_IO_URING or SP_IO_PREAD */
    bool fixed;
    uint8_t *base;
    size_t base_len;
    unsigned depth, inflight;
    io_req *req;
    /* pread path: requests finish at submit and wait here to be reaped, in order */
    unsigned *done_q;
    unsigned done_head, done_n;
#if SP_HAVE_URING
    struct io_uring ring;
    bool ring_up;
#endif
};

/* Fault injection for tests: when set, io_uring setup or registration is refused as a kernel
 * would refuse it. */
int ld_io_refuse_uring;
int ld_io_refuse_register;
int (*ld_io_uring_result_hook)(int fd, uint64_t off, uint8_t *buf, unsigned len, int res);

int ld_io_mode(const ld_io *io) { return io->mode; }
bool ld_io_fixed(const ld_io *io) { return io->fixed; }
unsigned ld_io_inflight(const ld_io *io) { return io->inflight; }
unsigned ld_io_depth(const ld_io *io) { return io->depth; }

#if SP_HAVE_URING
static int uring_setup(ld_io *io, int mode, char *note, size_t notelen)
{
    int rc = ld_io_refuse_uring ? -ENOSYS : io_uring_queue_init(io->depth, &io->ring, 0);
    if (rc < 0) {
        snprintf(note, notelen, "io_uring refused (%s); using pread", strerror(-rc));
        return mode == SP_IO_URING ? rc : 0;
    }
    io->ring_up = true;
    io->mode = SP_IO_URING;
    struct iovec iov = { io->base, io->base_len };
    rc = ld_io_refuse_register ? -ENOMEM : io_uring_register_buffers(&io->ring, &iov, 1);
    if (rc < 0)
        snprintf(note, notelen, "buffer registration refused (%s%s); io_uring without fixed buffers",
                 strerror(-rc), rc == -ENOMEM ? ", RLIMIT_MEMLOCK?" : "");
    else
        io->fixed = true;
    return 0;
}
#endif

int ld_io_open(ld_io **out, int mode, uint8_t *base, size_t base_len, unsigned depth, char *note,
               size_t notelen)
{
    *out = NULL;
    note[0] = '\0';
    ld_io *io = sp_calloc(1, sizeof *io);
    if (!io)
        return SP_ENOMEM;
    io->base = base;
    io->base_len = base_len;
    io->depth = depth;
    io->mode = SP_IO_PREAD;
    io->req = sp_calloc(depth, sizeof *io->req);
    io->done_q = sp_calloc(depth, sizeof *io->done_q);
    if (!io->req || !io->done_q) {
        ld_io_close(io);
        return SP_ENOMEM;
    }
    if (mode != SP_IO_PREAD) {
#if SP_HAVE_URING
        int rc = uring_setup(io, mode, note, notelen);
        if (rc) {
            ld_io_close(io);
            return SP_ENOTSUP;
        }
#else
        if (mode == SP_IO_URING) {
            ld_io_close(io);
            snprintf(note, notelen, "built without liburing");
            return SP_ENOTSUP;
        }
        snprintf(note, notelen, "built without liburing; using pread");
#endif
    }
    *out = io;
    return SP_OK;
}

void ld_io_close(ld_io *io)
{
    if (!io)
        return;
#if SP_HAVE_URING
    if (io->ring_up) {
        /* Requests still in flight hold ring memory; wait them out before the ring goes away. */
        while (io->inflight) {
            struct io_uring_cqe *cqe;
            if (io_uring_wait_cqe(&io->ring, &cqe) < 0)
                break;
            io_uring_cqe_seen(&io->ring, cqe);
            io->inflight--;
        }
        if (io->fixed)
            io_uring_unregister_buffers(&io->ring);
        io_uring_queue_exit(&io->ring);
    }
#endif
    sp_free(io->req);
    sp_free(io->done_q);
    sp_free(io);
}

#if SP_HAVE_URING
static int uring_queue(ld_io *io, unsigned i)
{
    io_req *r = &io->req[i];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
    if (!sqe) {
        io_uring_submit(&io->ring);
        if (!(sqe = io_uring_get_sqe(&io->ring)))
            return SP_EIO;
    }
    uint8_t *p = r->buf + r->done;
    unsigned len = (unsigned)(r->len - r->done);
    if (io->fixed)
        io_uring_prep_read_fixed(sqe, r->fd, p, len, r->off + r->done, 0);
    else
        io_uring_prep_read(sqe, r->fd, p, len, r->off + r->done);
    io_uring_sqe_set_data64(sqe, i);
    /* Served from the page cache, a read would otherwise be copied inline by the submitting reader
     * thread, one block after the other; in the kernel's worker pool the copies run in parallel. */
    io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    int rc = io_uring_submit(&io->ring);
    return rc < 0 ? SP_EIO : SP_OK;
}
#endif

static int64_t pread_rest(io_req *r)
{
    while (r->done < r->len) {
        ssize_t n = pread(r->fd, r->buf + r->done, r->len - r->done, (off_t)(r->off + r->done));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (retry_idle(r))
                continue;
            return -EAGAIN;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA;
        r->done += (uint64_t)n;
        r->idle = 0;
    }
    return (int64_t)r->len;
}

int ld_io_submit(ld_io *io, int fd, uint8_t *buf, uint64_t len, uint64_t off, uint64_t tag)
{
    if (io->inflight == io->depth)
        return SP_EBUSY;
    unsigned i = 0;
    while (io->req[i].busy)
        i++;
    io->req[i] = (io_req){ true, fd, buf, len, off, 0, tag };
    io->inflight++;
#if SP_HAVE_URING
    if (io->mode == SP_IO_URING) {
        int rc = uring_queue(io, i);
        if (rc) {
            io->req[i].busy = false;
            io->inflight--;
        }
        return rc;
    }
#endif
    io->done_q[(io->done_head + io->done_n++) % io->depth] = i;
    return SP_OK;
}

static void finish(ld_io *io, unsigned i, int64_t res, uint64_t *tag, int64_t *result)
{
    *tag = io->req[i].tag;
    *result = res;
    io->req[i].busy = false;
    io->inflight--;
}

int ld_io_reap(ld_io *io, bool wait, uint64_t *tag, int64_t *result)
{
    if (io->inflight == 0)
        return 0;
    if (io->mode == SP_IO_PREAD) {
        unsigned i = io->done_q[io->done_head];
        io->done_head = (io->done_head + 1) % io->depth;
        io->done_n--;
        finish(io, i, pread_rest(&io->req[i]), tag, result);
        return 1;
    }
#if SP_HAVE_URING
    for (;;) {
        struct io_uring_cqe *cqe;
        int rc = wait ? io_uring_wait_cqe(&io->ring, &cqe) : io_uring_peek_cqe(&io->ring, &cqe);
        if (rc == -EAGAIN || rc == -EINTR) {
            if (!wait)
                return 0;
            continue;
        }
        if (rc < 0)
            return SP_EIO;
        unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&io->ring, cqe);
        io_req *r = &io->req[i];
        if (ld_io_uring_result_hook) /* tests only */
            res = ld_io_uring_result_hook(r->fd, r->off + r->done, r->buf + r->done, (unsigned)(r->len - r->done),
                                          res);
        if (res == -EAGAIN || res == -EINTR || (res > 0 && r->done + (uint64_t)res < r->len)) {
            if (res > 0) {
                r->done += (uint64_t)res; /* a short read: continue where it stopped */
                r->idle = 0;
            } else if (!retry_idle(r)) {
                finish(io, i, -EAGAIN, tag, result);
                return 1;
            }
            if (uring_queue(io, i) == SP_OK)
                continue;
            finish(io, i, -EIO, tag, result);
            return 1;
        }
        if (res > 0)
            SP_MARK_DEFINED(r->buf, r->len);
        finish(io, i, res < 0 ? res : res == 0 ? -ENODATA : (int64_t)r->len, tag, result);
        return 1;
    }
#else
    (void)wait;
    return SP_EIO;
#endif
}
