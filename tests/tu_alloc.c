/* tu_alloc.c - counts allocations through the linker's --wrap hooks (see tu_alloc.h).
 *
 * Only blocks allocated through the hooks are counted, and a free counts only for such a block:
 * Check (linked statically) and libc hand out memory from their own internal allocations
 * (strdup inside libc, for one) that is later freed through the hooked free(). A hash set of live
 * pointers tells the two apart. */
#include "tu_alloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
int __real_posix_memalign(void **p, size_t align, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
int __wrap_posix_memalign(void **p, size_t align, size_t n);

#define TBITS 20
#define TMASK ((1u << TBITS) - 1)

static uintptr_t table[1u << TBITS]; /* linear probing, 0 = empty */
static size_t sizes[1u << TBITS];    /* of each entry's block */
static long live;
static size_t live_bytes, peak_bytes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_size_t max_request;

static size_t slot(uintptr_t p) { return (size_t)(((uint64_t)p >> 4) * 0x9E3779B97F4A7C15ull >> (64 - TBITS)); }

static void insert(void *ptr, size_t n)
{
    if (!ptr)
        return;
    uintptr_t p = (uintptr_t)ptr;
    pthread_mutex_lock(&mu);
    size_t i = slot(p);
    while (table[i])
        i = (i + 1) & TMASK;
    table[i] = p;
    sizes[i] = n;
    live++;
    live_bytes += n;
    if (live_bytes > peak_bytes)
        peak_bytes = live_bytes;
    pthread_mutex_unlock(&mu);
}

/* Removes ptr (backward-shift deletion); false when it was not allocated through the hooks. */
static bool erase(void *ptr, size_t *n)
{
    uintptr_t p = (uintptr_t)ptr;
    pthread_mutex_lock(&mu);
    size_t i = slot(p);
    while (table[i] && table[i] != p)
        i = (i + 1) & TMASK;
    if (!table[i]) {
        pthread_mutex_unlock(&mu);
        return false;
    }
    live_bytes -= sizes[i];
    if (n)
        *n = sizes[i];
    for (size_t j = i;;) {
        j = (j + 1) & TMASK;
        if (!table[j])
            break;
        size_t k = slot(table[j]);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        table[i] = table[j];
        sizes[i] = sizes[j];
        i = j;
    }
    table[i] = 0;
    live--;
    pthread_mutex_unlock(&mu);
    return true;
}

static void note(size_t n)
{
    size_t cur = atomic_load(&max_request);
    while (n > cur && !atomic_compare_exchange_weak(&max_request, &cur, n))
        ;
}

void *__wrap_malloc(size_t n)
{
    note(n);
    void *p = __real_malloc(n);
    insert(p, n);
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    size_t total;
    note(__builtin_mul_overflow(n, size, &total) ? SIZE_MAX : total);
    void *p = __real_calloc(n, size);
    insert(p, n * size);
    return p;
}

void *__wrap_realloc(void *old, size_t n)
{
    note(n);
    size_t old_n = 0;
    bool ours = old && erase(old, &old_n);
    void *p = __real_realloc(old, n);
    if (p && (ours || !old))
        insert(p, n);
    else if (!p && ours)
        insert(old, old_n); /* a failed realloc leaves the old block allocated */
    return p;
}

void __wrap_free(void *p)
{
    if (p)
        erase(p, NULL);
    __real_free(p);
}

atomic_long tu_alloc_fail_memalign;

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    note(n);
    if (atomic_load(&tu_alloc_fail_memalign) > 0 && atomic_fetch_sub(&tu_alloc_fail_memalign, 1) == 1)
        return ENOMEM;
    int rc = __real_posix_memalign(p, align, n);
    if (rc == 0)
        insert(*p, n);
    return rc;
}

long tu_alloc_live(void)
{
    pthread_mutex_lock(&mu);
    long n = live;
    pthread_mutex_unlock(&mu);
    return n;
}

size_t tu_alloc_max(void) { return atomic_load(&max_request); }

size_t tu_alloc_peak_bytes(void)
{
    pthread_mutex_lock(&mu);
    size_t n = peak_bytes;
    pthread_mutex_unlock(&mu);
    return n;
}

size_t tu_alloc_reset_peak(void)
{
    pthread_mutex_lock(&mu);
    size_t n = peak_bytes = live_bytes;
    pthread_mutex_unlock(&mu);
    return n;
}
void tu_alloc_reset_max(void) { atomic_store(&max_request, 0); }
