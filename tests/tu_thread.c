/* tu_thread.c - the --wrap'ed pthread_create of tu_thread.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "tu_thread.h"

int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

atomic_long tu_thr_calls, tu_thr_fail_at, tu_thr_started, tu_thr_exited;

typedef struct thr_start {
    void *(*fn)(void *);
    void *arg;
} thr_start;

static void *thr_trampoline(void *p)
{
    thr_start s = *(thr_start *)p;
    free(p);
    void *r = s.fn(s.arg);
    atomic_fetch_add(&tu_thr_exited, 1);
    return r;
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    long n = atomic_fetch_add(&tu_thr_calls, 1) + 1;
    if (n == atomic_load(&tu_thr_fail_at))
        return EAGAIN;
    thr_start *s = malloc(sizeof *s);
    if (!s)
        return EAGAIN;
    *s = (thr_start){ fn, arg };
    int e = __real_pthread_create(t, a, thr_trampoline, s);
    if (e)
        free(s);
    else
        atomic_fetch_add(&tu_thr_started, 1);
    return e;
}
