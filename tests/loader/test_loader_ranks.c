/* test_loader_ranks.c - world sizes 1..8, one process per rank: ranks never overlap, all get the same batch count, at most world_size - 1 samples are dropped, and seen + dropped covers the dataset; fewer samples than ranks, several ranks with no rank given, and empty RANK/WORLD_SIZE are refused; every launcher's variables (torchrun, Open MPI, PMI, Slurm) give the rank and world size, alone, agreeing or nested, and disagreeing ones are refused naming both. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static uint32_t g_max_block; /* most samples in one block */

#define N_SAMPLES 5000

/* What a rank reports to the parent, followed by `nids` sample ids. */
typedef struct rank_report {
    int status; /* 0, or the failing step */
    uint32_t rank, world;
    uint64_t batches, batches_per_epoch, samples_per_epoch, dropped, nids, bad;
    char why[256];
} rank_report;

static char *report_path(int rank)
{
    char name[32];
    snprintf(name, sizeof name, "rank-%d", rank);
    return tu_join(g_ds.root, name);
}

/* The child's whole life: open, stream one epoch, write the report, exit. No Check calls here. */
static void run_rank(int rank, int world, bool use_env, const char *batch, const char *drop_last)
{
    char rs[16], ws[16];
    snprintf(rs, sizeof rs, "%d", rank);
    snprintf(ws, sizeof ws, "%d", world);
    rank_report rep = { .rank = (uint32_t)rank, .world = (uint32_t)world };
    sp_loader *l = NULL;
    int rc;
    if (use_env) {
        setenv("RANK", rs, 1);
        setenv("WORLD_SIZE", ws, 1);
        rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", batch, "drop_last", drop_last, NULL);
    } else {
        unsetenv("RANK");
        unsetenv("WORLD_SIZE");
        rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", batch, "drop_last", drop_last, "rank", rs,
                     "world_size", ws, NULL);
    }
    lt_rec r = { 0 };
    if (rc) {
        rep.status = 1;
        snprintf(rep.why, sizeof rep.why, "open: %s", sp_last_error());
    } else {
        rep.batches_per_epoch = sp_loader_batches_per_epoch(l);
        rep.samples_per_epoch = sp_loader_samples_per_epoch(l);
        rc = lt_epoch(l, &g_ds, &r);
        sp_loader_stats st = { .struct_size = sizeof st };
        sp_loader_stats_get(l, &st);
        rep.dropped = st.samples_dropped_per_epoch;
        rep.batches = r.nb;
        rep.nids = r.ni;
        rep.bad = r.bad;
        if (rc != SP_EEPOCH) {
            rep.status = 2;
            snprintf(rep.why, sizeof rep.why, "epoch ended with %s: %s", sp_error_name(rc), sp_last_error());
        } else if (r.bad) {
            rep.status = 3;
            snprintf(rep.why, sizeof rep.why, "%s", r.why);
        } else if (st.io == 0 || (uint32_t)st.threads == 0) {
            rep.status = 4;
        }
        if (sp_loader_close(l))
            rep.status = 5;
    }
    char *path = report_path(rank);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(&rep, sizeof rep, 1, f) == 1 && (r.ni == 0 || fwrite(r.ids, 8, r.ni, f) == r.ni);
    ok = f && fclose(f) == 0 && ok;
    _exit(ok ? 0 : 9);
}

/* Runs world ranks as processes and checks what they report together. */
static void check_world(int world, bool use_env, const char *batch, const char *drop_last)
{
    pid_t pids[16];
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        ck_assert_msg(pids[r] >= 0, "fork: %s", strerror(errno));
        if (pids[r] == 0)
            run_rank(r, world, use_env, batch, drop_last);
    }
    for (int r = 0; r < world; r++) {
        int st;
        ck_assert(waitpid(pids[r], &st, 0) == pids[r]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "world %d rank %d: child status %d", world, r, st);
    }
    uint8_t *seen = calloc(N_SAMPLES, 1);
    ck_assert_ptr_nonnull(seen);
    uint64_t total_seen = 0, total_dropped = 0, batches = 0, per_rank = 0;
    for (int r = 0; r < world; r++) {
        char *path = report_path(r);
        size_t n;
        uint8_t *buf = tu_read_file(path, &n);
        rank_report rep;
        ck_assert(n >= sizeof rep);
        memcpy(&rep, buf, sizeof rep);
        ck_assert_msg(rep.status == 0, "world %d rank %d failed at step %d: %s", world, r, rep.status, rep.why);
        ck_assert_uint_eq(n, sizeof rep + rep.nids * 8);
        /* Every rank has the same number of batches, the one the loader announces. */
        ck_assert_msg(rep.batches == rep.batches_per_epoch, "world %d rank %d: %llu batches, announced %llu", world,
                      r, (unsigned long long)rep.batches, (unsigned long long)rep.batches_per_epoch);
        if (r == 0) {
            batches = rep.batches;
            per_rank = rep.samples_per_epoch;
        }
        ck_assert_msg(rep.batches == batches, "world %d: rank %d has %llu batches, rank 0 %llu", world, r,
                      (unsigned long long)rep.batches, (unsigned long long)batches);
        ck_assert_uint_eq(rep.samples_per_epoch, per_rank);
        ck_assert_uint_eq(rep.nids, per_rank);
        /* Partitions split the epoch's samples to within one: a rank drops one sample at most;
         * drop_last may drop up to a batch more. */
        uint64_t slack = 1 + (strcmp(drop_last, "true") == 0 ? (uint64_t)atoi(batch) : 0);
        ck_assert_msg(rep.dropped <= slack, "world %d rank %d drops %llu samples", world, r,
                      (unsigned long long)rep.dropped);
        uint64_t ids[1];
        for (uint64_t i = 0; i < rep.nids; i++) {
            memcpy(ids, buf + sizeof rep + i * 8, 8);
            ck_assert_msg(ids[0] < N_SAMPLES, "world %d rank %d: id %llu", world, r, (unsigned long long)ids[0]);
            ck_assert_msg(!seen[ids[0]], "world %d: sample %llu seen twice (rank %d)", world,
                          (unsigned long long)ids[0], r);
            seen[ids[0]] = 1;
        }
        total_seen += rep.nids;
        total_dropped += rep.dropped;
        free(buf);
        unlink(path);
        free(path);
    }
    ck_assert_msg(total_seen + total_dropped == N_SAMPLES, "world %d: %llu seen + %llu dropped != %d", world,
                  (unsigned long long)total_seen, (unsigned long long)total_dropped, N_SAMPLES);
    if (strcmp(drop_last, "false") == 0)
        ck_assert_msg(total_dropped <= (uint64_t)world - 1, "world %d drops %llu samples an epoch", world,
                      (unsigned long long)total_dropped);
    if (world == 1 && strcmp(drop_last, "false") == 0)
        ck_assert_uint_eq(total_dropped, 0);
    free(seen);
}

START_TEST(worlds_1_to_8)
{
    for (int w = 1; w <= 8; w++)
        check_world(w, false, "32", "false");
}
END_TEST

START_TEST(worlds_drop_last)
{
    check_world(3, false, "50", "true");
    check_world(7, false, "16", "true");
}
END_TEST

START_TEST(world_from_environment)
{
    check_world(4, true, "32", "false");
}
END_TEST

START_TEST(too_few_blocks)
{
    lt_ds small;
    ck_assert_int_eq(lt_make(&small, "ranks-small", 60, 64, g_seed, "4K", "64K"), 0);
    ck_assert_msg(small.blocks >= 2 && small.blocks < 8, "the small dataset has %llu blocks",
                  (unsigned long long)small.blocks);
    char ws[16], rs[16];
    sp_loader *l;
    int rc = lt_open(small.dir, &l, "rank", "0", "world_size", "61", NULL);
    ck_assert_msg(rc == SP_EINVAL, "world 61 over 60 samples: %s", sp_error_name(rc));
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "60 samples, fewer than the 61 partitions"), "message: %s",
                  sp_last_error());
    /* More ranks than blocks works: ranks share blocks, each reading its samples of them. */
    snprintf(ws, sizeof ws, "%llu", (unsigned long long)small.blocks + 1);
    snprintf(rs, sizeof rs, "%llu", (unsigned long long)small.blocks);
    rc = lt_open(small.dir, &l, "rank", rs, "world_size", ws, NULL);
    ck_assert_msg(rc == 0, "world %s: %s", ws, sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &small, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.bad, 0);
    ck_assert_uint_eq(r.ni, sp_loader_samples_per_epoch(l));
    ck_assert_uint_eq(r.ni, 60 / (small.blocks + 1));
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    /* A rank outside the world, by parameter or by environment. */
    rc = lt_open(small.dir, &l, "rank", "2", "world_size", "2", NULL);
    ck_assert_int_eq(rc, SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "rank"), "message: %s", sp_last_error());
    setenv("RANK", "3", 1);
    setenv("WORLD_SIZE", "2", 1);
    rc = lt_open(small.dir, &l, NULL);
    ck_assert_int_eq(rc, SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "RANK"), "message: %s", sp_last_error());
    /* Values that are not counts: the message names the variable and its value. */
    static const char *const junk[][2] = {
        { "RANK", "x" },          { "RANK", "abc" },       { "RANK", "1x" },  { "RANK", "-1" },
        { "RANK", " 1" },         { "WORLD_SIZE", "2.0" }, { "WORLD_SIZE", "two" },
        { "WORLD_SIZE", "+2" },   { "RANK", "99999999999999999999" },
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        setenv("RANK", "0", 1);
        setenv("WORLD_SIZE", "2", 1);
        setenv(junk[i][0], junk[i][1], 1);
        rc = lt_open(small.dir, &l, NULL);
        ck_assert_int_eq(rc, SP_EINVAL);
        char want[96];
        snprintf(want, sizeof want, "%s='%s' is %s", junk[i][0], junk[i][1],
                 strlen(junk[i][1]) > 19 ? "too large" : "not a non-negative integer");
        ck_assert_msg(strstr(sp_last_error(), want), "%s=%s: message: %s", junk[i][0], junk[i][1], sp_last_error());
    }
    /* Parameters win over the environment, which is then not read. */
    setenv("RANK", "abc", 1);
    rc = lt_open(small.dir, &l, "rank", "0", "world_size", "2", NULL);
    ck_assert_msg(rc == 0, "rank and world_size given: %s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(l), 0);
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    lt_ds_free(&small);
}
END_TEST

/* One block of many samples and many blocks of one: the rank dealt the small blocks holds far
 * more than an even share of the blocks, and its epoch is whole. */
START_TEST(uneven_blocks)
{
    char *root = tu_tmpdir("ranks-uneven");
    char *dir = tu_join(root, "data");
    sp_schema *sc = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(sc, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    ck_assert_int_eq(sp_schema_add(sc, "blob", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), 0);
    sp_params *p = tu_params("block_size", "4K", "compress", "none", NULL);
    sp_writer *w;
    ck_assert_msg(sp_writer_open(dir, sc, p, &w) == 0, "%s", sp_last_error());
    static uint8_t blob[6000];
    const int64_t small = 200, big = 40;
    for (int64_t i = 0; i < small + big; i++) {
        sp_value v[2] = { { &i, sizeof i }, { blob, i < small ? 0 : sizeof blob } };
        ck_assert_msg(sp_writer_add(w, v, 2) == 0, "%s", sp_last_error());
    }
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(sc);
    for (int rank = 0; rank < 2; rank++) {
        char rs[8];
        snprintf(rs, sizeof rs, "%d", rank);
        sp_loader *l;
        ck_assert_msg(lt_open(dir, &l, "rank", rs, "world_size", "2", "batch_size", "4", NULL) == 0, "%s",
                      sp_last_error());
        uint64_t want = sp_loader_samples_per_epoch(l); /* epoch 0's: each epoch deals anew */
        lt_rec r = { 0 };
        ck_assert_msg(lt_epoch(l, NULL, &r) == SP_EEPOCH, "%s", sp_loader_errmsg(l));
        ck_assert_uint_eq(r.ni, want);
        ck_assert_uint_gt(r.ni, 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
        lt_rec_free(&r);
    }
    tu_rmtree(root);
    free(dir);
    free(root);
}
END_TEST

/* Opens g_ds under the given RANK and WORLD_SIZE (NULL: unset) and up to two parameters (k NULL:
 * none); closes what opened and returns the code, the message in sp_last_error(). */
static int open_with_env(const char *rank, const char *world, const char *k1, const char *v1, const char *k2,
                         const char *v2)
{
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    if (rank)
        setenv("RANK", rank, 1);
    if (world)
        setenv("WORLD_SIZE", world, 1);
    sp_loader *l = NULL;
    int rc = lt_open(g_ds.dir, &l, k1, v1, k2, v2, NULL);
    if (rc == 0)
        ck_assert_int_eq(sp_loader_close(l), 0);
    else
        ck_assert_ptr_null(l);
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    return rc;
}

static void expect_refused(int rc, const char *want, const char *what)
{
    ck_assert_msg(rc == SP_EINVAL, "%s: %s (%s)", what, sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_last_error(), want), "%s: message '%s' lacks '%s'", what, sp_last_error(), want);
}

START_TEST(world_without_rank)
{
    /* Several ranks and no rank: each process would silently be rank 0. */
    expect_refused(open_with_env(NULL, "2", NULL, NULL, NULL, NULL), "WORLD_SIZE=2 but no rank: set rank= or RANK",
                   "WORLD_SIZE=2");
    expect_refused(open_with_env(NULL, NULL, "world_size", "3", NULL, NULL),
                   "world_size=3 but no rank: set rank= or RANK", "world_size=3");
    setenv("LOCAL_RANK", "1", 1); /* a launcher's other name for it is not RANK */
    expect_refused(open_with_env(NULL, "2", NULL, NULL, NULL, NULL), "WORLD_SIZE=2 but no rank",
                   "LOCAL_RANK=1 WORLD_SIZE=2");
    unsetenv("LOCAL_RANK");
    /* Empty is not unset: a launcher template that left it blank. */
    expect_refused(open_with_env("", "2", NULL, NULL, NULL, NULL), "RANK is set but empty", "RANK= WORLD_SIZE=2");
    expect_refused(open_with_env("", NULL, NULL, NULL, NULL, NULL), "RANK is set but empty", "RANK=");
    expect_refused(open_with_env("1", "", NULL, NULL, NULL, NULL), "WORLD_SIZE is set but empty", "WORLD_SIZE=");
    expect_refused(open_with_env("0", "0", NULL, NULL, NULL, NULL), "world size 0 (WORLD_SIZE)", "WORLD_SIZE=0");
    /* Each value is named by where it came from. */
    int rc = open_with_env(NULL, NULL, "rank", "3", "world_size", "2");
    expect_refused(rc, "rank 3 (the rank parameter) and world size 2 (the world_size parameter)",
                   "rank=3 world_size=2");
    ck_assert_msg(!strstr(sp_last_error(), "RANK"), "message: %s", sp_last_error());
    expect_refused(open_with_env("3", "2", NULL, NULL, NULL, NULL), "rank 3 (RANK) and world size 2 (WORLD_SIZE)",
                   "RANK=3 WORLD_SIZE=2");
    expect_refused(open_with_env("1", NULL, NULL, NULL, NULL, NULL),
                   "rank 1 (RANK) and world size 1 (WORLD_SIZE unset)", "RANK=1");
    expect_refused(open_with_env(NULL, "2", "rank", "2", NULL, NULL),
                   "rank 2 (the rank parameter) and world size 2 (WORLD_SIZE)", "rank=2 WORLD_SIZE=2");
    /* One process needs no rank; a rank given either way goes with a world size from the other. */
    const char *ok[][6] = {
        { NULL, NULL, NULL, NULL, NULL, NULL },         { NULL, "1", NULL, NULL, NULL, NULL },
        { NULL, NULL, "world_size", "1", NULL, NULL }, { "1", NULL, "world_size", "2", NULL, NULL },
        { NULL, "2", "rank", "1", NULL, NULL },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *const *a = ok[i];
        ck_assert_msg(open_with_env(a[0], a[1], a[2], a[3], a[4], a[5]) == 0, "case %zu: %s", i, sp_last_error());
    }
}
END_TEST

static const char *const g_launch_vars[] = {
    "RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID",
    "SLURM_NTASKS", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
    "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE",
    "SLURM_NODEID",
};

static void clear_launch_env(void)
{
    for (size_t i = 0; i < sizeof g_launch_vars / sizeof g_launch_vars[0]; i++)
        unsetenv(g_launch_vars[i]);
}

/* Opens g_ds with only the "NAME=VALUE" variables of env (NULL-terminated) set; on success fills
 * *st and closes. Returns the open code. */
static int open_launched(const char *const *env, sp_loader_stats *st)
{
    clear_launch_env();
    for (; *env; env++) {
        char name[64];
        const char *eq = strchr(*env, '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - *env), *env);
        setenv(name, eq + 1, 1);
    }
    sp_loader *l = NULL;
    int rc = lt_open(g_ds.dir, &l, NULL);
    if (rc == 0) {
        *st = (sp_loader_stats){ .struct_size = sizeof *st };
        ck_assert_int_eq(sp_loader_stats_get(l, st), 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    clear_launch_env();
    return rc;
}

START_TEST(launchers)
{
    /* Each launcher alone: its rank of its world, and the note names its variables. */
    static const struct {
        const char *env[5];
        int rank, world, local_rank, local_world;
        const char *note;
    } ok[] = {
        { { "RANK=2", "WORLD_SIZE=4", "LOCAL_RANK=0", "LOCAL_WORLD_SIZE=2", NULL }, 2, 4, 0, 2,
          "rank 2 from RANK, world size 4 from WORLD_SIZE; local rank 0 from LOCAL_RANK, local world size 2 from "
          "LOCAL_WORLD_SIZE" },
        { { "OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=1",
            "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL }, 2, 4, 1, 2,
          "rank 2 from OMPI_COMM_WORLD_RANK, world size 4 from OMPI_COMM_WORLD_SIZE; local rank 1 from "
          "OMPI_COMM_WORLD_LOCAL_RANK" },
        { { "PMI_RANK=3", "PMI_SIZE=4", "MPI_LOCALRANKID=1", "MPI_LOCALNRANKS=2", NULL }, 3, 4, 1, 2,
          "rank 3 from PMI_RANK, world size 4 from PMI_SIZE; local rank 1 from MPI_LOCALRANKID" },
        { { "SLURM_PROCID=1", "SLURM_NTASKS=4", "SLURM_LOCALID=1", "SLURM_NTASKS_PER_NODE=2", NULL }, 1, 4, 1, 2,
          "rank 1 from SLURM_PROCID, world size 4 from SLURM_NTASKS; local rank 1 from SLURM_LOCALID, local "
          "world size 2 from SLURM_NTASKS_PER_NODE" },
        { { "SLURM_PROCID=5", "SLURM_NTASKS=7", "SLURM_TASKS_PER_NODE=3(x2),1", "SLURM_NODEID=1", NULL }, 5, 7, -1,
          3, "local rank -1 from none set, local world size 3 from SLURM_TASKS_PER_NODE" },
        /* agreeing launchers: the first in the order names it */
        { { "RANK=1", "WORLD_SIZE=4", "SLURM_PROCID=1", "SLURM_NTASKS=4", NULL }, 1, 4, -1, 0,
          "rank 1 from RANK, world size 4 from WORLD_SIZE; no local rank" },
        /* torchrun under srun, one task per node: the inner launcher holds */
        { { "RANK=13", "WORLD_SIZE=16", "SLURM_PROCID=0", "SLURM_NTASKS=2", NULL }, 13, 16, -1, 0,
          "rank 13 from RANK, world size 16 from WORLD_SIZE" },
        { { "LOCAL_RANK=5", "LOCAL_WORLD_SIZE=8", "SLURM_LOCALID=0", "SLURM_NTASKS_PER_NODE=1", NULL }, 0, 1, 5, 8,
          "rank 0 from no rank set, world size 1 from WORLD_SIZE unset; local rank 5 from LOCAL_RANK" },
        { { NULL }, 0, 1, -1, 0, "rank 0 from no rank set, world size 1 from WORLD_SIZE unset; no local rank" },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sp_loader_stats st;
        int rc = open_launched(ok[i].env, &st);
        ck_assert_msg(rc == 0, "case %zu (%s): %s", i, ok[i].env[0] ? ok[i].env[0] : "none", sp_last_error());
        ck_assert_int_eq(st.rank, ok[i].rank);
        ck_assert_int_eq(st.world_size, ok[i].world);
        ck_assert_int_eq(st.local_rank, ok[i].local_rank);
        ck_assert_int_eq(st.local_world_size, ok[i].local_world);
        ck_assert_msg(strstr(st.rank_note, ok[i].note), "case %zu: note '%s' lacks '%s'", i, st.rank_note,
                      ok[i].note);
    }
    /* Disagreeing variables are refused, the message naming both. */
    static const struct {
        const char *env[5];
        const char *want;
    } bad[] = {
        { { "RANK=1", "WORLD_SIZE=4", "SLURM_PROCID=3", "SLURM_NTASKS=4", NULL }, "RANK=1 and SLURM_PROCID=3 disagree" },
        { { "OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=4", "PMI_RANK=0", "PMI_SIZE=3", NULL },
          "OMPI_COMM_WORLD_SIZE=4 and PMI_SIZE=3 disagree" },
        { { "RANK=0", "WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=4", NULL },
          "WORLD_SIZE=2 and OMPI_COMM_WORLD_SIZE=4 disagree" },
        { { "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2", "SLURM_LOCALID=0", "SLURM_NTASKS_PER_NODE=2", NULL },
          "LOCAL_RANK=1 and SLURM_LOCALID=0 disagree" },
        { { "OMPI_COMM_WORLD_SIZE=4", NULL }, "OMPI_COMM_WORLD_SIZE=4 but no rank" },
        { { "SLURM_PROCID=4", "SLURM_NTASKS=4", NULL }, "rank 4 (SLURM_PROCID) and world size 4 (SLURM_NTASKS)" },
        { { "PMI_RANK=x", "PMI_SIZE=2", NULL }, "PMI_RANK='x' is not a non-negative integer" },
        { { "SLURM_TASKS_PER_NODE=2(x2)", "SLURM_NODEID=2", NULL }, "SLURM_NODEID=2 is not among them" },
        { { "SLURM_TASKS_PER_NODE=2(3)", NULL }, "SLURM_TASKS_PER_NODE='2(3)' is not a list" },
        { { "LOCAL_RANK=2", "LOCAL_WORLD_SIZE=2", NULL }, "local rank 2 (LOCAL_RANK) is not below" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_loader_stats st;
        int rc = open_launched(bad[i].env, &st);
        ck_assert_msg(rc == SP_EINVAL, "bad case %zu: %s", i, sp_error_name(rc));
        ck_assert_msg(strstr(sp_last_error(), bad[i].want), "bad case %zu: message '%s' lacks '%s'", i,
                      sp_last_error(), bad[i].want);
    }
    /* Parameters win: the launchers' ranks are not read then. */
    setenv("SLURM_PROCID", "1", 1);
    setenv("RANK", "0", 1);
    sp_loader *l;
    ck_assert_msg(lt_open(g_ds.dir, &l, "rank", "1", "world_size", "2", NULL) == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(l), 0);
    clear_launch_env();
}
END_TEST

/* Several launchers' ranks together (run_rank forks with each launcher's variables): the
 * processes split the data as with RANK and WORLD_SIZE. */
START_TEST(world_from_mpi_environment)
{
    for (int w = 0; w < 4; w++) {
        pid_t pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            clear_launch_env();
            char rs[8];
            snprintf(rs, sizeof rs, "%d", w);
            setenv("OMPI_COMM_WORLD_RANK", rs, 1);
            setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
            sp_loader *l;
            if (lt_open(g_ds.dir, &l, "seed", g_seedstr, NULL))
                _exit(1);
            sp_loader_stats st = { .struct_size = sizeof st };
            sp_loader_stats_get(l, &st);
            uint64_t want = sp_loader_samples_per_epoch(l);
            lt_rec r = { 0 };
            int rc = lt_epoch(l, &g_ds, &r);
            _exit(st.rank == w && st.world_size == 4 && rc == SP_EEPOCH && r.ni == want && want < N_SAMPLES / 3 &&
                          sp_loader_close(l) == 0
                      ? 0
                      : 2);
        }
        int status;
        ck_assert(waitpid(pid, &status, 0) == pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "rank %d of 4 from OMPI_COMM_WORLD_*: %d", w,
                      status);
    }
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x4a4b5);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    /* Block sizes vary: shards end in short blocks, so dealing by samples matters. */
    if (lt_make(&g_ds, "ranks", N_SAMPLES, 64, g_seed, "4K", "24K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    sp_dataset *ds;
    if (sp_dataset_open(g_ds.dir, NULL, &ds))
        return 99;
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        if (sp_dataset_block_info(ds, b, &bi))
            return 99;
        g_max_block = bi.samples > g_max_block ? (uint32_t)bi.samples : g_max_block;
    }
    sp_dataset_close(ds);
    clear_launch_env();

    Suite *s = suite_create("loader_ranks");
    TCase *tc = tu_tcase(s, "ranks", 60);
    tcase_add_test(tc, worlds_1_to_8);
    tcase_add_test(tc, worlds_drop_last);
    tcase_add_test(tc, world_from_environment);
    tcase_add_test(tc, too_few_blocks);
    tcase_add_test(tc, uneven_blocks);
    tcase_add_test(tc, world_without_rank);
    tcase_add_test(tc, launchers);
    tcase_add_test(tc, world_from_mpi_environment);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
