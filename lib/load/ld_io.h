/* ld_io.h - whole-range reads through io_uring (fixed or plain buffers) or pread. Used by the
 * reader thread only. */
#ifndef SP_LD_IO_H
#define SP_LD_IO_H

#include "sp_internal.h"

typedef struct ld_io ld_io;

/* mode: SP_IO_AUTO, SP_IO_URING (fail with SP_ENOTSUP instead of falling back) or SP_IO_PREAD.
 * base/base_len is the read ring, registered with the kernel when possible. note receives why a
 * fallback happened, or "". */
int ld_io_open(ld_io **out, int mode, uint8_t *base, size_t base_len, unsigned depth, char *note,
               size_t notelen);
/* Waits for requests still in flight, then frees everything. */
void ld_io_close(ld_io *io);
int ld_io_mode(const ld_io *io);
bool ld_io_fixed(const ld_io *io);
unsigned ld_io_inflight(const ld_io *io);
unsigned ld_io_depth(const ld_io *io);

/* Queues a read of len bytes at off into buf (inside the ring). SP_EBUSY when depth is reached. */
int ld_io_submit(ld_io *io, int fd, uint8_t *buf, uint64_t len, uint64_t off, uint64_t tag);
/* Returns 1 with a finished request's tag and result (len, or -errno), 0 when none is finished
 * (and !wait, or nothing is in flight), or SP_EIO when the ring itself failed. */
int ld_io_reap(ld_io *io, bool wait, uint64_t *tag, int64_t *result);

/* Test hooks: nonzero makes io_uring setup / buffer registration fail as a kernel would. */
extern int ld_io_refuse_uring;
extern int ld_io_refuse_register;
/* Test hook: when set, the result of every io_uring read completion passes through it before it is
 * acted on, as if the kernel had returned that instead (fd, off, buf, len: the read that submission
 * asked for; res: bytes read or -errno). Lets tests inject short reads (the hook may scribble over
 * the bytes it says were not read), EINTR/EAGAIN and EIO on the io_uring path; the pread path is
 * faulted by wrapping pread. Never set by the library. */
extern int (*ld_io_uring_result_hook)(int fd, uint64_t off, uint8_t *buf, unsigned len, int res);

#endif
