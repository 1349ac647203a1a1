/* test_loader_trace.c - the trace parameter and SHARDPACK_TRACE: a Chrome trace-event JSON timeline written at close (checked by check_trace.py: parses, one track per thread, spans nested, counters within the budget), dropped events counted, a valid file after a failed run, a path that cannot be written refused at open; loaders open at once with one path (threads or processes) each keep their own file. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jpeg_gen.h"
#include "test_util.h"

#define TIMEOUT_MS 20000
#define BATCH 8
#define THREADS 3
#define N 160

typedef struct tds {
    char *parent, *dir;
} tds;

/* Sample i: a small JPEG, every third progressive; random bytes for sample *bad. */
static int make_jpeg(int64_t i, void *arg, uint8_t **jpg, size_t *size)
{
    int side = 40 + (int)(i % 24);
    uint8_t *pic = jg_picture(side, side, (uint64_t)i);
    char err[256];
    jg_opts o = { 85, 0, JG_YCC, (int)(i % 3 == 0), 0, 0, 0 };
    int rc = jg_encode(pic, side, side, &o, jpg, size, err, sizeof err);
    free(pic);
    if (rc == 0 && (uint64_t)i == *(const uint64_t *)arg)
        memset(*jpg, 0x5A, *size);
    return rc;
}

/* N small JPEGs (label = sample id); sample `bad` (if below N) is random bytes. */
static void make_ds(tds *d, const char *tag, uint64_t bad)
{
    d->dir = tu_dataset_dir(tag, &d->parent);
    char err[512];
    ck_assert_msg(jg_write_dataset(d->dir, "8K", N, make_jpeg, &bad, err, sizeof err) == 0, "%s", err);
}

static void free_ds(tds *d)
{
    tu_rmtree(d->parent);
    free(d->parent);
    free(d->dir);
}

static sp_loader *open_loader(const tds *d, const char *trace, const char *on_error)
{
    sp_params *p = tu_params("batch_size", "8", "threads", "3", "image_size", "32", "host_memory", "256M",
                             "epochs", "2", "on_error", on_error, NULL);
    if (trace)
        ck_assert_int_eq(sp_params_set_str(p, "trace", trace), 0);
    sp_loader *l = NULL;
    ck_assert_msg(sp_loader_open(d->dir, p, &l) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    return l;
}

/* Every batch of both epochs; returns the code that ended the run (SP_EDONE when all came). */
static int drain(sp_loader *l)
{
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, TIMEOUT_MS);
        if (rc == SP_EEPOCH)
            continue;
        if (rc)
            return rc;
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
}

static const char *const NEED_ALL = "--need read --need 'block decode' --need 'image decode' --need block "
                                    "--need 'batch completion' --need next --need 'plan epoch' "
                                    "--need 'host bytes in use' --need 'batch slots in use' --need 'batches ready'";

START_TEST(trace_param_writes_a_timeline)
{
    tds d;
    make_ds(&d, "trace", UINT64_MAX);
    char *path = tu_join(d.parent, "trace.json");
    sp_loader *l = open_loader(&d, path, "fail");
    /* created at open, already valid JSON */
    ck_assert(tu_exists(path));
    ck_assert_int_eq(drain(l), SP_EDONE);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_gt(st.trace_events, 2 * N); /* an image decode per sample and epoch, and more */
    ck_assert_uint_eq(st.trace_events_dropped, 0);
    ck_assert_int_eq(st.threads, THREADS);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_check_trace(path, &st, NEED_ALL);
    free(path);
    free_ds(&d);
}
END_TEST

START_TEST(no_trace_records_nothing)
{
    tds d;
    make_ds(&d, "notrace", UINT64_MAX);
    unsetenv("SHARDPACK_TRACE");
    sp_loader *l = open_loader(&d, NULL, "fail");
    ck_assert_int_eq(drain(l), SP_EDONE);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.trace_events, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free_ds(&d);
}
END_TEST

/* SHARDPACK_TRACE traces a program that sets no parameter; %p becomes the process id. */
START_TEST(environment_variable)
{
    tds d;
    make_ds(&d, "traceenv", UINT64_MAX);
    char *pattern = tu_join(d.parent, "env-%p.json"), name[64];
    snprintf(name, sizeof name, "env-%d.json", (int)getpid());
    char *path = tu_join(d.parent, name);
    setenv("SHARDPACK_TRACE", pattern, 1);
    sp_loader *l = open_loader(&d, NULL, "fail");
    unsetenv("SHARDPACK_TRACE");
    ck_assert_int_eq(drain(l), SP_EDONE);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_msg(tu_exists(path), "no %s", path);
    tu_check_trace(path, &st, NEED_ALL);
    free(pattern);
    free(path);
    free_ds(&d);
}
END_TEST

/* A cap smaller than the run: the oldest events go, the file says how many, and it stays valid. */
START_TEST(dropped_events_are_counted)
{
    tds d;
    make_ds(&d, "tracecap", UINT64_MAX);
    char *path = tu_join(d.parent, "cap.json");
    setenv("SHARDPACK_TRACE_EVENTS", "400", 1);
    sp_loader *l = open_loader(&d, path, "fail");
    unsetenv("SHARDPACK_TRACE_EVENTS");
    ck_assert_int_eq(drain(l), SP_EDONE);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_gt(st.trace_events_dropped, 0);
    ck_assert_uint_lt(st.trace_events_dropped, st.trace_events);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_check_trace(path, &st, "--dropped");
    free(path);
    free_ds(&d);
}
END_TEST

/* A run that ends in an error (a corrupt image, on_error=fail) still leaves a valid trace. */
START_TEST(failed_run_leaves_a_valid_trace)
{
    tds d;
    make_ds(&d, "tracebad", 37);
    char *path = tu_join(d.parent, "bad.json");
    sp_loader *l = open_loader(&d, path, "fail");
    int rc = drain(l);
    ck_assert_msg(rc == SP_EBADINPUT || rc == SP_ECORRUPT, "run ended with %d: %s", rc, sp_last_error());
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_check_trace(path, &st, "--need 'image decode'");
    free(path);
    free_ds(&d);
}
END_TEST

#define SAME 4

static pthread_barrier_t g_at_once;

static void *close_at_once(void *arg)
{
    pthread_barrier_wait(&g_at_once);
    int rc = sp_loader_close(arg);
    return rc ? strdup(sp_last_error()) : NULL;
}

/* The name of the i-th loader of this process open at once with trace path dir/trace.json (the
 * first keeps the path; the others put .PID or .PID.i before .json). */
static char *nth_name(const char *dir, int i, int pid)
{
    char name[64];
    if (i == 0)
        snprintf(name, sizeof name, "trace.json");
    else if (i == 1)
        snprintf(name, sizeof name, "trace.%d.json", pid);
    else
        snprintf(name, sizeof name, "trace.%d.%d.json", pid, i);
    return tu_join(dir, name);
}

/* Loaders given one trace path (DataLoader workers opened with the same trace=, ranks sharing a
 * folder) open at once and closing at the same moment: each close succeeds, and each writes its
 * own whole trace (the path, then the path with .PID and .PID.2, ... before its extension), none
 * replacing another's; a later round reuses the names. */
START_TEST(one_path_closed_at_once)
{
    tds d;
    make_ds(&d, "tracesame", UINT64_MAX);
    char *path = tu_join(d.parent, "trace.json");
    pthread_barrier_init(&g_at_once, NULL, SAME);
    for (int round = 0; round < 3; round++) {
        sp_loader *l[SAME];
        pthread_t th[SAME];
        for (int i = 0; i < SAME; i++) {
            l[i] = open_loader(&d, path, "fail");
            ck_assert_int_eq(drain(l[i]), SP_EDONE);
        }
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(l[0], &st), 0);
        for (int i = 0; i < SAME; i++)
            ck_assert_int_eq(pthread_create(&th[i], NULL, close_at_once, l[i]), 0);
        for (int i = 0; i < SAME; i++) {
            void *why;
            pthread_join(th[i], &why);
            ck_assert_msg(why == NULL, "round %d: close %d: %s", round, i, (char *)why);
        }
        for (int i = 0; i < SAME; i++) {
            char *name = nth_name(d.parent, i, (int)getpid());
            tu_check_trace(name, &st, "--need read"); /* the same configuration, the same bounds */
            free(name);
        }
    }
    pthread_barrier_destroy(&g_at_once);
    /* ds and the three numbered traces: no temporary file left */
    ck_assert_uint_eq(tu_count_others(d.parent, "trace.json"), 1 + SAME - 1);
    free(path);
    free_ds(&d);
}
END_TEST

/* Two processes (DataLoader workers) with one trace path, both open: the second writes its own
 * file, path.PID.json, and the first's stays at the path; a loader opened after both closed
 * takes the path again. */
START_TEST(second_process_keeps_its_own_file)
{
    tds d;
    make_ds(&d, "traceproc", UINT64_MAX);
    char *path = tu_join(d.parent, "trace.json");
    int go[2], done[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(done), 0);
    pid_t child = fork(); /* before any loader thread runs */
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        sp_loader *l = open_loader(&d, path, "fail");
        int rc = drain(l) == SP_EDONE && sp_loader_close(l) == 0 ? 0 : 3;
        if (write(done[1], "x", 1) != 1)
            _exit(4);
        _exit(rc);
    }
    sp_loader *l = open_loader(&d, path, "fail");
    ck_assert_int_eq(drain(l), SP_EDONE);
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    char c;
    ck_assert_int_eq(read(done[0], &c, 1), 1);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    char *theirs = nth_name(d.parent, 1, (int)child);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    tu_check_trace(theirs, &st, "--need read"); /* the same configuration, the same bounds */
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_check_trace(path, &st, "--need read");
    tu_check_trace(theirs, &st, "--need read"); /* not replaced by the first's close */
    ck_assert_int_eq(unlink(theirs), 0);
    l = open_loader(&d, path, "fail");
    ck_assert_int_eq(drain(l), SP_EDONE);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_uint_eq(tu_count_others(d.parent, "trace.json"), 1); /* the path again, no other name */
    close(go[0]), close(go[1]), close(done[0]), close(done[1]);
    free(theirs);
    free(path);
    free_ds(&d);
}
END_TEST

START_TEST(unwritable_path_refused_at_open)
{
    tds d;
    make_ds(&d, "tracepath", UINT64_MAX);
    char *path = tu_join(d.parent, "no-such-dir/t.json");
    sp_params *p = tu_params("threads", "2", "host_memory", "256M", "image_size", "32", NULL);
    ck_assert_int_eq(sp_params_set_str(p, "trace", path), 0);
    ck_assert_str_eq(sp_params_get_str(p, SP_PARAM_TRACE), path);
    sp_loader *l = NULL;
    ck_assert_int_eq(sp_loader_open(d.dir, p, &l), SP_EIO);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), path) && strstr(sp_last_error(), "trace"), "%s", sp_last_error());
    /* the parameter takes a string only */
    ck_assert_int_eq(sp_params_set(p, SP_PARAM_TRACE, 1), SP_EINVAL);
    ck_assert_ptr_null(sp_params_get_str(p, SP_PARAM_BATCH_SIZE));
    sp_params_destroy(p);
    free(path);
    free_ds(&d);
}
END_TEST

int main(void)
{
    if (system("python3 -c 'import json' >/dev/null 2>&1") != 0) {
        printf("skip: python3 is needed to check the trace's JSON\n");
        return 77;
    }
    Suite *s = suite_create("loader_trace");
    TCase *tc = tu_tcase(s, "trace", 60);
    tcase_add_test(tc, trace_param_writes_a_timeline);
    tcase_add_test(tc, no_trace_records_nothing);
    tcase_add_test(tc, environment_variable);
    tcase_add_test(tc, dropped_events_are_counted);
    tcase_add_test(tc, failed_run_leaves_a_valid_trace);
    tcase_add_test(tc, unwritable_path_refused_at_open);
    tcase_add_test(tc, one_path_closed_at_once);
    tcase_add_test(tc, second_process_keeps_its_own_file);
    return tu_run(s, tu_seed(1));
}
