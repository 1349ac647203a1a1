/* sp_proc.c - which process a handle belongs to. A loader, writer or import owns threads (and a
 * loader an io_uring ring and pinned memory); fork() copies the handle into the child but not its
 * threads, and may copy a mutex or condition variable in the middle of a use. Every public call on
 * such a handle therefore first asks whether it runs in the process that opened it. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "sp_internal.h"

/* This process's id, cached: getpid() is a real system call in glibc since 2.25, which costs more
 * than a small batch's whole sp_loader_next; a fork handler refreshes it in every child. */
static atomic_int proc_pid;
static pthread_once_t proc_once = PTHREAD_ONCE_INIT;

static void proc_after_fork_child(void) { atomic_store_explicit(&proc_pid, (int)getpid(), memory_order_relaxed); }

static void proc_init(void)
{
    atomic_store_explicit(&proc_pid, (int)getpid(), memory_order_relaxed);
    /* glibc ties the handler to this library, and drops it if the library is unloaded. */
    pthread_atfork(NULL, NULL, proc_after_fork_child);
}

int sp_proc_self(void)
{
    pthread_once(&proc_once, proc_init);
    return atomic_load_explicit(&proc_pid, memory_order_relaxed);
}

int sp_proc_check(int opened, const char *fn, const char *what)
{
    int self = sp_proc_self();
    if (self == opened)
        return SP_OK;
    /* The handle's own message buffer is the parent's copy, maybe mid-write: the thread's only. */
    return sp_fail(NULL, SP_ESTATE, "%s: %s opened in process %d, used in child %d; open it after fork", fn, what,
                   opened, self);
}
