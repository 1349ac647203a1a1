/* tu_thread.h - pthread_create fault injection for tests linked with -Wl,--wrap=pthread_create:
 * the n-th call after arming fails with EAGAIN (as when RLIMIT_NPROC or the memory for a stack runs
 * out), and every thread that does start is counted when it starts and when its function returns,
 * so a test can tell that all of them were stopped and joined. */
#ifndef SP_TU_THREAD_H
#define SP_TU_THREAD_H

#include <stdatomic.h>

/* Calls so far; the call number that fails (0: none); threads started; thread functions returned. */
extern atomic_long tu_thr_calls, tu_thr_fail_at, tu_thr_started, tu_thr_exited;

#endif
