/* test_loader_defaults.c - threads=0 and host_memory=0 follow what the process may use: workers for the usable cores (online, CPU affinity, cgroup v2/v1 CPU quota) cut to what host_memory holds, with a threads note saying how; an explicit threads that does not fit is still refused; the default budget follows the cgroup memory limit (v2 and v1). With a local world size (LOCAL_WORLD_SIZE, SLURM_TASKS_PER_NODE) both defaults are the node's share divided among its ranks, and the notes say so. Machine sizes come from the sp_system test hooks and a fake cgroup tree. */
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jpeg_gen.h"
#include "sp_internal.h"
#include "test_util.h"

#define N 24

static char *g_parent, *g_dir; /* an image dataset: N JPEGs of 64x48 and a label */

static void make_images(void)
{
    g_dir = tu_dataset_dir("defaults", &g_parent);
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL), 0);
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_params *p = tu_params("block_size", "8K", NULL);
    sp_writer *w;
    ck_assert_msg(sp_writer_open(g_dir, s, p, &w) == 0, "%s", sp_last_error());
    for (int64_t i = 0; i < N; i++) {
        uint8_t *pic = jg_picture(64, 48, (uint64_t)i), *jpeg;
        size_t size;
        char err[256];
        jg_opts o = { 90, JG_420, JG_YCC, 0, 0, 0, 0 };
        ck_assert_msg(jg_encode(pic, 64, 48, &o, &jpeg, &size, err, sizeof err) == 0, "%s", err);
        sp_value v[2] = { { jpeg, size }, { &i, sizeof i } };
        ck_assert_msg(sp_writer_add(w, v, 2) == 0, "%s", sp_last_error());
        free(pic);
        free(jpeg);
    }
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
}

static void setup(void) { make_images(); }

static char *g_root;

static void teardown(void)
{
    if (g_root)
        tu_rmtree(g_root);
    free(g_root);
    tu_rmtree(g_parent);
    free(g_parent);
    free(g_dir);
}

/* A fake cgroup tree under a temporary directory: files written by put(), /proc/self/cgroup's
 * stand-in holding `self`. The hooks point the library at it. */
static void put(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    for (char *s = strchr(path + strlen(g_root) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    tu_write_file(path, text, strlen(text));
}

static void fake_cgroups(const char *self)
{
    g_root = tu_tmpdir("cgroup");
    put("self_cgroup", self);
    static char self_path[1024], fs[1024];
    snprintf(self_path, sizeof self_path, "%s/self_cgroup", g_root);
    snprintf(fs, sizeof fs, "%s/fs", g_root);
    mkdir(fs, 0755);
    sp_sys_self_cgroup = self_path;
    sp_sys_cgroup_root = fs;
}

/* Opens the dataset with the defaults but for the NULL-terminated overrides; *rc its result. */
static sp_loader *open_with(int *rc, ...)
{
    sp_params *p = sp_params_create();
    va_list ap;
    va_start(ap, rc);
    for (const char *k; (k = va_arg(ap, const char *));)
        ck_assert_int_eq(sp_params_set_str(p, k, va_arg(ap, const char *)), 0);
    va_end(ap);
    sp_loader *l = NULL;
    /* Opened by its shards, as a dataset written before "image_sizes" would be: the decoders are
     * sized for any image the parameters allow, the sizes these budgets are about. */
    char shards[4200];
    snprintf(shards, sizeof shards, "%s/shard-*.sps", g_dir);
    *rc = sp_loader_open(shards, p, &l);
    sp_params_destroy(p);
    return l;
}

static sp_loader_stats stats_of(sp_loader *l)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    return st;
}

static void one_batch(sp_loader *l)
{
    sp_batch *b;
    ck_assert_msg(sp_loader_next(l, &b, 30000) == 0, "%s", sp_loader_errmsg(l));
    ck_assert_int_eq(sp_loader_release(l, b), 0);
}

/* 64 cores, every default: 64 image workers of ~22 MiB (libjpeg's whole-image memory shared) do not
 * fit the default budget of a 4 GiB cgroup (512 MiB); the loader opens with as many as fit,
 * delivers, and says how it got there. */
START_TEST(many_cores_defaults)
{
    fake_cgroups("0::/job\n");
    put("fs/cgroup.controllers", "cpu memory\n");
    put("fs/job/memory.max", "4294967296\n");
    put("fs/job/memory.current", "0\n");
    sp_sys_cores_hook = 64;
    int rc;
    sp_loader *l = open_with(&rc, NULL);
    ck_assert_msg(rc == 0, "defaults on 64 cores: %s", sp_last_error());
    sp_loader_stats st = stats_of(l);
    ck_assert_int_ge(st.threads, 1);
    ck_assert_int_lt(st.threads, 64);
    ck_assert_uint_le(st.host_allocated_bytes, st.host_memory_bytes);
    ck_assert_msg(strstr(st.threads_note, "64 online") && strstr(st.threads_note, "fit host_memory"), "note: %s",
                  st.threads_note);
    char want[32];
    snprintf(want, sizeof want, "threads=%d", st.threads);
    ck_assert_msg(strstr(st.threads_note, want), "note: %s", st.threads_note);
    one_batch(l);
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* a budget that holds them all: no cut */
    l = open_with(&rc, "host_memory", "8G", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    st = stats_of(l);
    ck_assert_int_eq(st.threads, 64);
    ck_assert_msg(strstr(st.threads_note, "64 usable cores") && !strstr(st.threads_note, "fit"), "note: %s",
                  st.threads_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* threads=64 given: the budget does not hold it, and that is still an error naming the minimum. */
START_TEST(explicit_threads_refused)
{
    int rc;
    sp_loader *l = open_with(&rc, "threads", "64", "host_memory", "1G", NULL);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(rc, SP_ELIMIT);
    ck_assert_msg(strstr(sp_last_error(), "need at least") && strstr(sp_last_error(), "64 worker"), "%s",
                  sp_last_error());
    l = open_with(&rc, "threads", "3", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    sp_loader_stats st = stats_of(l);
    ck_assert_int_eq(st.threads, 3);
    ck_assert_str_eq(st.threads_note, "");
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* "12.5 MiB" at p -> bytes (the half of the last printed digit in *slack); p moves past it. */
static double size_at(const char **p, double *slack)
{
    double v;
    char unit[8];
    int used = 0;
    ck_assert_msg(sscanf(*p, "%lf %7s%n", &v, unit, &used) == 2, "no size at: %s", *p);
    static const char *const units[] = { "B", "KiB", "MiB", "GiB" };
    double scale = 0;
    for (int u = 0; u < 4; u++)
        if (!strcmp(unit, units[u]))
            scale = (double)(1ull << (10 * u));
    ck_assert_msg(scale > 0, "unit %s", unit);
    *slack += scale > 1 ? 0.05 * scale : 0.5;
    *p += used;
    return v * scale;
}

/* The refusal's parts add up to the minimum it names, max_image_memory among them, and its
 * counts agree in number with their nouns. */
static void parts_add_up(const char *threads, const char *workers)
{
    int rc;
    sp_loader *l = open_with(&rc, "threads", threads, "host_memory", "4M", "shuffle_window", "1", NULL);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(rc, SP_ELIMIT);
    const char *m = sp_last_error(), *p = strstr(m, "need at least ");
    ck_assert_msg(p, "%s", m);
    p += strlen("need at least ");
    double slack = 0, total = size_at(&p, &slack), sum = 0;
    ck_assert_msg(!strncmp(p, " = ", 3), "%s", m);
    for (p += 3;;) {
        sum += size_at(&p, &slack);
        const char *next = strstr(p, " + "), *end = strchr(p, ';');
        if (!next || (end && next > end))
            break;
        p = next + 3;
    }
    ck_assert_msg(fabs(sum - total) <= slack, "parts %.0f, total %.0f (slack %.0f): %s", sum, total, slack, m);
    ck_assert_msg(strstr(m, "48.0 MiB for max_image_memory") && strstr(m, workers) && strstr(m, " of 1 block of "),
                  "%s", m);
}

START_TEST(minimum_parts_add_up)
{
    parts_add_up("1", " 1 worker's buffers");
    parts_add_up("2", " 2 workers' buffers");
}
END_TEST

static int threads_under(const char *self)
{
    int rc;
    sp_loader *l = open_with(&rc, "host_memory", "8G", NULL);
    ck_assert_msg(rc == 0, "%s: %s", self, sp_last_error());
    sp_loader_stats st = stats_of(l);
    ck_assert_msg(strstr(st.threads_note, "cgroup CPU quota") && !strstr(st.threads_note, "no cgroup"), "note: %s",
                  st.threads_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    return st.threads;
}

/* cgroup v2: cpu.max "200000 100000" on the process's cgroup's parent allows 2 CPUs of 64. */
START_TEST(cgroup_v2_cpu_quota)
{
    fake_cgroups("0::/job/step\n");
    put("fs/cgroup.controllers", "cpu memory\n");
    put("fs/job/cpu.max", "200000 100000\n");
    put("fs/job/step/cpu.max", "max 100000\n");
    sp_sys_cores_hook = 64;
    ck_assert_int_eq(threads_under("v2"), 2);
}
END_TEST

/* cgroup v1: cpu.cfs_quota_us 150000 over cpu.cfs_period_us 100000 is 1.5 CPUs: 2 workers. On a
 * hybrid system the v2 tree (unified/) holds no quota. */
START_TEST(cgroup_v1_cpu_quota)
{
    fake_cgroups("5:memory:/\n4:cpu,cpuacct:/job\n0::/\n");
    put("fs/unified/cgroup.controllers", "\n");
    put("fs/cpu,cpuacct/job/cpu.cfs_quota_us", "150000\n");
    put("fs/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
    put("fs/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("fs/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    sp_sys_cores_hook = 64;
    ck_assert_int_eq(threads_under("v1"), 2);
}
END_TEST

/* A real affinity mask of one CPU (sched_setaffinity, as taskset -c does): one worker. */
START_TEST(affinity_one_cpu)
{
    fake_cgroups("0::/\n"); /* no quota from the machine this runs on */
    cpu_set_t set;
    ck_assert_int_eq(sched_getaffinity(0, sizeof set, &set), 0);
    int first = 0;
    while (!CPU_ISSET(first, &set))
        first++;
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    ck_assert_int_eq(sched_setaffinity(0, sizeof set, &set), 0);
    int rc;
    sp_loader *l = open_with(&rc, NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    sp_loader_stats st = stats_of(l);
    ck_assert_msg(st.threads == 1, "%d workers on one allowed CPU (%s)", st.threads, st.threads_note);
    ck_assert_msg(strstr(st.threads_note, "1 in the affinity mask"), "note: %s", st.threads_note);
    one_batch(l);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* The default budget: an eighth of what the cgroup's limit leaves (limit - usage + inactive page
 * cache), when that is less than MemAvailable. */
static uint64_t default_budget(void)
{
    int rc;
    sp_loader *l = open_with(&rc, "max_image_memory", "4M", "image_size", "32", "threads", "1", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    uint64_t b = stats_of(l).host_memory_bytes;
    ck_assert_int_eq(sp_loader_close(l), 0);
    return b;
}

START_TEST(cgroup_v2_memory)
{
    uint64_t mib = 1 << 20;
    ck_assert_uint_gt(sp_meminfo_available(), 800 * mib);
    fake_cgroups("0::/job/step\n");
    put("fs/cgroup.controllers", "cpu memory\n");
    put("fs/job/memory.max", "1073741824\n");    /* 1 GiB */
    put("fs/job/memory.current", "536870912\n"); /* 512 MiB in use, of which */
    put("fs/job/memory.stat", "anon 100\nfile 268435456\ninactive_file 268435456\n"); /* 256 MiB idle cache */
    put("fs/job/step/memory.max", "max\n");
    put("fs/job/step/memory.current", "1000\n");
    ck_assert_uint_eq(default_budget(), 768 * mib / 8);
}
END_TEST

START_TEST(cgroup_v1_memory)
{
    uint64_t mib = 1 << 20;
    ck_assert_uint_gt(sp_meminfo_available(), 800 * mib);
    fake_cgroups("4:memory:/a/b\n3:cpu:/\n0::/\n");
    put("fs/memory/a/memory.limit_in_bytes", "671088640\n"); /* 640 MiB */
    put("fs/memory/a/memory.usage_in_bytes", "0\n");
    put("fs/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    put("fs/memory/a/b/memory.usage_in_bytes", "67108864\n");
    ck_assert_uint_eq(default_budget(), 640 * mib / 8);
}
END_TEST

/* 8 ranks on a node of 64 cores and a 4 GiB cgroup: 8 workers each and an eighth of the node's
 * budget, the notes naming the local world size; Slurm's tasks per node count the same way. */
START_TEST(local_world_shares)
{
    uint64_t mib = 1 << 20;
    ck_assert_uint_gt(sp_meminfo_available(), 800 * mib);
    fake_cgroups("0::/job\n");
    put("fs/cgroup.controllers", "cpu memory\n");
    put("fs/job/memory.max", "4294967296\n");
    put("fs/job/memory.current", "0\n");
    sp_sys_cores_hook = 64;
    uint64_t alone = default_budget();
    ck_assert_uint_eq(alone, 512 * mib);
    setenv("LOCAL_WORLD_SIZE", "8", 1);
    setenv("LOCAL_RANK", "3", 1);
    ck_assert_uint_eq(default_budget(), 64 * mib);
    int rc;
    sp_loader *l = open_with(&rc, "max_image_memory", "4M", "image_size", "32", "threads", "1", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    sp_loader_stats st = stats_of(l);
    ck_assert_int_eq(st.local_rank, 3);
    ck_assert_int_eq(st.local_world_size, 8);
    ck_assert_msg(strstr(st.host_memory_note, "shared by 8 local ranks") && strstr(st.host_memory_note, "64.0 MiB"),
                  "note: %s", st.host_memory_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_with(&rc, "max_image_memory", "4M", "image_size", "32", "host_memory", "2G", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    st = stats_of(l);
    ck_assert_int_eq(st.threads, 8);
    ck_assert_msg(strstr(st.threads_note, "64 usable cores") && strstr(st.threads_note, "local world size 8: threads=8"),
                  "note: %s", st.threads_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* more ranks than cores: one worker each */
    setenv("LOCAL_WORLD_SIZE", "100", 1);
    l = open_with(&rc, "max_image_memory", "4M", "image_size", "32", "host_memory", "1G", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    st = stats_of(l);
    ck_assert_int_eq(st.threads, 1);
    ck_assert_str_eq(st.host_memory_note, "");
    ck_assert_int_eq(sp_loader_close(l), 0);
    unsetenv("LOCAL_WORLD_SIZE");
    unsetenv("LOCAL_RANK");
    /* Slurm: this node (SLURM_NODEID 2) runs 4 of the tasks */
    setenv("SLURM_TASKS_PER_NODE", "8(x2),4", 1);
    setenv("SLURM_NODEID", "2", 1);
    setenv("SLURM_LOCALID", "1", 1);
    ck_assert_uint_eq(default_budget(), 128 * mib);
    l = open_with(&rc, "max_image_memory", "4M", "image_size", "32", "host_memory", "2G", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    st = stats_of(l);
    ck_assert_int_eq(st.threads, 16);
    ck_assert_int_eq(st.local_world_size, 4);
    ck_assert_msg(strstr(st.rank_note, "local rank 1 from SLURM_LOCALID, local world size 4 from SLURM_TASKS_PER_NODE"),
                  "note: %s", st.rank_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    unsetenv("SLURM_TASKS_PER_NODE");
    unsetenv("SLURM_NODEID");
    unsetenv("SLURM_LOCALID");
}
END_TEST

/* host_memory=0 where the configuration needs more than the default (an eighth of the memory the
 * cgroup leaves): 512-pixel float32 batches open with the budget they need, and say so; a machine
 * that cannot hold them (over 3/4 of what is left) still refuses, naming both; an explicit budget
 * never grows. */
START_TEST(auto_budget_follows_need)
{
    uint64_t mib = 1 << 20;
    ck_assert_uint_gt(sp_meminfo_available(), 2100 * mib);
    fake_cgroups("0::/job\n");
    put("fs/cgroup.controllers", "cpu memory\n");
    put("fs/job/memory.max", "2147483648\n"); /* 2 GiB: a default budget of 256 MiB */
    put("fs/job/memory.current", "0\n");
    int rc;
    sp_loader *l = open_with(&rc, "image_size", "512", "image_dtype", "float32", "batch_size", "64", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    sp_loader_stats st = stats_of(l);
    ck_assert_uint_gt(st.host_memory_bytes, 256 * mib);
    ck_assert_uint_le(st.host_memory_bytes, 1536 * mib);
    ck_assert_uint_le(st.host_allocated_bytes, st.host_memory_bytes);
    ck_assert_msg(strstr(st.memory_note, "host_memory=0") && strstr(st.memory_note, "what it needs"), "note: %s",
                  st.memory_note);
    one_batch(l);
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* the default when it holds the configuration: no note */
    l = open_with(&rc, "image_size", "32", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    st = stats_of(l);
    ck_assert_uint_eq(st.host_memory_bytes, 256 * mib);
    ck_assert_str_eq(st.memory_note, "");
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* an explicit budget is the user's */
    l = open_with(&rc, "image_size", "512", "image_dtype", "float32", "batch_size", "64", "host_memory", "256M", NULL);
    ck_assert_int_eq(rc, SP_ELIMIT);
    ck_assert_ptr_null(l);
    /* 600 MiB left: 3/4 of it cannot hold 512-pixel float32 batches */
    put("fs/job/memory.max", "629145600\n");
    l = open_with(&rc, "image_size", "512", "image_dtype", "float32", "batch_size", "64", NULL);
    ck_assert_int_eq(rc, SP_ELIMIT);
    ck_assert_msg(strstr(sp_last_error(), "3/4 of the memory available"), "%s", sp_last_error());
}
END_TEST

int main(void)
{
    static const char *const launch[] = { "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                          "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
                                          "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "SLURM_LOCALID",
                                          "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NODEID" };
    for (size_t i = 0; i < sizeof launch / sizeof launch[0]; i++)
        unsetenv(launch[i]); /* the defaults here are those of a process alone on its machine */
    Suite *s = suite_create("loader_defaults");
    TCase *tc = tu_tcase(s, "threads", 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, many_cores_defaults);
    tcase_add_test(tc, explicit_threads_refused);
    tcase_add_test(tc, minimum_parts_add_up);
    tcase_add_test(tc, cgroup_v2_cpu_quota);
    tcase_add_test(tc, cgroup_v1_cpu_quota);
    tcase_add_test(tc, affinity_one_cpu);
    tc = tu_tcase(s, "host_memory", 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, cgroup_v2_memory);
    tcase_add_test(tc, cgroup_v1_memory);
    tcase_add_test(tc, local_world_shares);
    tcase_add_test(tc, auto_budget_follows_need);
    return tu_run(s, tu_seed(0));
}
