/* sp_internal.h - what every module of the library shares: error reporting, little-endian
 * encoding, checked arithmetic and allocation. Nothing here is exported. */
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shardpack.h"

/* A message buffer owned by a handle; errors are also mirrored to the thread's last error. */
typedef struct sp_errbuf {
    char msg[SP_ERRMSG_MAX];
} sp_errbuf;

/* Formats a message into eb (may be NULL) and the thread's last error; returns code so callers can
 * write `return sp_fail(eb, SP_EIO, "...")`. */
int sp_fail(sp_errbuf *eb, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copies the thread's last error into eb (after a call into another module failed). */
int sp_fail_keep(sp_errbuf *eb, int code);
/* Clears the thread's last error at the start of a public call. */
void sp_clear_error(void);

/* Length of the character at s (n > 0 bytes available) when it is text a name may hold: a valid
 * UTF-8 sequence (shortest form, no surrogate, at most U+10FFFF) that is not a control character
 * (C0, DEL or C1); 0 when it is not. */
size_t sp_text_char_len(const char *s, size_t n);
/* s[0..n) for a message, NUL-terminated in out (outlen > 0 bytes, cut to fit): characters
 * sp_text_char_len accepts as they are, a backslash doubled, every other byte as \xHH, so that
 * a name from a caller or a file cannot put control sequences into a terminal or a log. */
void sp_text_escape(const char *s, size_t n, char *out, size_t outlen);

/* The struct_size contract (shardpack.h) of a struct the caller allocates for the library to fill:
 * sp_out_check refuses (SP_EINVAL, naming fn and type) a NULL out or a struct_size below the
 * type's first layout; sp_out_put then copies into out as much of full (the library's complete
 * struct, full_size bytes) as the caller's struct_size holds, keeping the caller's struct_size.
 * type is the struct's C name, as sp_struct_layout knows it. */
int sp_out_check(const char *fn, const char *type, const void *out);
void sp_out_put(void *out, const void *full, size_t full_size);

/* Allocation goes through these so fault injection can fail them on purpose. */
void *sp_malloc(size_t n);
void *sp_calloc(size_t n, size_t size);
void *sp_realloc(void *p, size_t n);
void *sp_aligned_alloc(size_t align, size_t n);
char *sp_strdup(const char *s);
void sp_free(void *p);
/* What goes between dir and a name under it: "ds.sp/" and "ds.sp" name the same folder, and no
 * message should show "ds.sp//shard-000000.sps". sp_path_join: dir, that and name, allocated (NULL
 * when memory runs out). */
static inline const char *sp_path_sep(const char *dir)
{
    size_t n = strlen(dir);
    return n && dir[n - 1] == '/' ? "" : "/";
}
char *sp_path_join(const char *dir, const char *name);

/* Little-endian loads and stores, alignment-free. */
static inline uint16_t sp_ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t sp_ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t sp_ld64(const uint8_t *p) { return sp_ld32(p) | ((uint64_t)sp_ld32(p + 4) << 32); }
static inline void sp_st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void sp_st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void sp_st64(uint8_t *p, uint64_t v)
{
    sp_st32(p, (uint32_t)v);
    sp_st32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t sp_align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* Overflow-checked arithmetic: true when the result does not fit. */
static inline bool sp_add_overflow(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline bool sp_mul_overflow(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }

/* A bounded reader over a byte range: every get checks the remaining length first, so parsing a
 * hostile buffer can never read past its end. After the first failure `ok` stays false. */
typedef struct sp_cursor {
    const uint8_t *p;
    size_t left;
    bool ok;
} sp_cursor;

static inline sp_cursor sp_cursor_make(const void *p, size_t n) { return (sp_cursor){ (const uint8_t *)p, n, true }; }
static inline const uint8_t *sp_cursor_take(sp_cursor *c, size_t n)
{
    if (!c->ok || n > c->left) {
        c->ok = false;
        return NULL;
    }
    const uint8_t *r = c->p;
    c->p += n;
    c->left -= n;
    return r;
}
static inline uint8_t sp_cursor_u8(sp_cursor *c) { const uint8_t *p = sp_cursor_take(c, 1); return p ? p[0] : 0; }
static inline uint16_t sp_cursor_u16(sp_cursor *c) { const uint8_t *p = sp_cursor_take(c, 2); return p ? sp_ld16(p) : 0; }
static inline uint32_t sp_cursor_u32(sp_cursor *c) { const uint8_t *p = sp_cursor_take(c, 4); return p ? sp_ld32(p) : 0; }
static inline uint64_t sp_cursor_u64(sp_cursor *c) { const uint8_t *p = sp_cursor_take(c, 8); return p ? sp_ld64(p) : 0; }

/* A growable output buffer for building indexes and manifests (writer side only). */
typedef struct sp_buf {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed; every later put is ignored */
} sp_buf;

void sp_buf_free(sp_buf *b);
bool sp_buf_reserve(sp_buf *b, size_t extra);
void sp_buf_put(sp_buf *b, const void *p, size_t n);
void sp_buf_u8(sp_buf *b, uint8_t v);
void sp_buf_u16(sp_buf *b, uint16_t v);
void sp_buf_u32(sp_buf *b, uint32_t v);
void sp_buf_u64(sp_buf *b, uint64_t v);
void sp_buf_pad(sp_buf *b, size_t align);

/* The last index i in [0, n) with a[i] <= key, for a sorted a with a[0] <= key; n > 0. */
static inline uint64_t sp_floor_index(const uint64_t *a, uint64_t n, uint64_t key)
{
    uint64_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (a[mid] <= key)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* A copy of p (the defaults when p is NULL), for a module that adjusts parameters for a stage it
 * drives; NULL when out of memory. */
sp_params *sp_params_dup(const sp_params *p);
/* Whether key was given a value through a setter of p (its default's value included), as against
 * left alone: a stage may size a bound the user left to it from the data. */
bool sp_params_was_set(const sp_params *p, int key);

/* The process a loader, writer or import was opened in, so that a child that inherited one through
 * fork() (without its threads) is refused. sp_proc_self() is this process's id: a load, kept up to
 * date by a fork handler, not a system call. sp_proc_check is SP_OK when opened (sp_proc_self() at
 * open) is this process, else SP_ESTATE, "FN: WHAT opened in process P, used in child C; open it
 * after fork", in the thread's last error only. It frees, joins and locks nothing. */
int sp_proc_self(void);
int sp_proc_check(int opened, const char *fn, const char *what);

/* Online cores, at least 1. */
int sp_online_cores(void);

/* sp_system.c: what this process may use of the machine, for the defaults that follow it. */
/* The cores it may run on: the smallest of the online cores, the CPU affinity mask and the cgroup
 * CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us, rounded up, every level up to the root); at least
 * 1. why (may be NULL) says which set it and what each was. */
int sp_usable_cores(char *why, size_t len);
/* MemAvailable of /proc/meminfo, or 0. */
uint64_t sp_meminfo_available(void);
/* The memory it may still take: MemAvailable, or less where its cgroup's memory limit (v2
 * memory.max, v1 memory.limit_in_bytes, every level up to the root) leaves less beside what the
 * cgroup already uses (less its inactive page cache, which the kernel drops first); 0 when nothing can be read. why (may be NULL) names the source. */
uint64_t sp_memory_available(char *why, size_t len);
/* Test hooks, never set by the library: a core count that stands for the online cores and the
 * affinity mask (when > 0); the cgroup file system's mount ("/sys/fs/cgroup") and the file naming
 * the process's cgroups ("/proc/self/cgroup"), when not NULL. */
extern int sp_sys_cores_hook;
extern const char *sp_sys_cgroup_root;
extern const char *sp_sys_self_cgroup;

/* Monotonic seconds. */
double sp_now(void);
/* The CLOCK_MONOTONIC time ms milliseconds from now, for pthread_cond_timedwait on a condition
 * variable created with that clock. */
struct timespec;
void sp_deadline_after(struct timespec *ts, int ms);

#endif
