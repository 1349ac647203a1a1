/* tu_alloc.h - allocation accounting for tests linked with -Wl,--wrap=malloc,calloc,realloc,free,
 * posix_memalign: every allocation made by the test program and the static library is counted
 * (those made inside shared libraries such as libzstd are not). */
#ifndef SP_TU_ALLOC_H
#define SP_TU_ALLOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Live allocations (made and not yet freed) since the program started. */
long tu_alloc_live(void);
/* The largest single request since the last reset. */
size_t tu_alloc_max(void);
void tu_alloc_reset_max(void);
/* The most bytes live at once since the last reset; the reset starts it again from the bytes
 * live now, and returns them. */
size_t tu_alloc_peak_bytes(void);
size_t tu_alloc_reset_peak(void);
/* Fault injection below the library's own hook: when positive, the n-th following call of
 * posix_memalign (which only the library makes) fails with ENOMEM. */
extern atomic_long tu_alloc_fail_memalign;

#endif
