/* ld_ranks.c - which process of a job this loader runs in: its rank and the world size, from the
 * parameters or else from the variables launchers export (torchrun, Open MPI, MPICH/Intel MPI's
 * PMI, Slurm), and its local rank and the local world size (the ranks sharing its node), which the
 * defaults divide the node's cores and memory by. */
#include <stdio.h>
#include <stdlib.h>

#include "ld_internal.h"

/* A count a launcher exports: *out is its value and *set true, both left as they were when the
 * variable is not set. SP_EINVAL, naming the variable and its value, for anything but a
 * non-negative decimal integer, the empty string included (a launcher's template that left it
 * blank); the caller checks the range. */
static int env_count(sp_errbuf *eb, const char *name, int64_t *out, bool *set)
{
    const char *s = name ? getenv(name) : NULL;
    if (!s)
        return SP_OK;
    if (!*s)
        return sp_fail(eb, SP_EINVAL, "%s is set but empty; it must be a non-negative integer (or unset)", name);
    int64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return sp_fail(eb, SP_EINVAL, "%s='%s' is not a non-negative integer", name, s);
        if (v > (INT64_MAX - (*c - '0')) / 10)
            return sp_fail(eb, SP_EINVAL, "%s='%s' is too large", name, s);
        v = v * 10 + (*c - '0');
    }
    *out = v;
    if (set)
        *set = true;
    return SP_OK;
}

/* One launcher's pair of variables and what they hold. */
typedef struct launch_pair {
    const char *rank_var, *size_var;
    int64_t rank, size;
    bool rank_set, size_set;
} launch_pair;

#define NPAIRS 4

/* What the launchers say, resolved: the first rank and the first size set, in the table's order,
 * with the variables they came from (NULL: none set). */
typedef struct launch_view {
    int64_t rank, size;
    const char *rank_var, *size_var;
} launch_view;

/* Pairs a and b (a first in the order) must describe the same process. A pair whose size is a
 * multiple of the other's is a launcher started inside the other (torchrun under srun or mpirun,
 * several processes per outer task): the inner one, first in the order, holds. */
static int check_pair(sp_errbuf *eb, const launch_pair *a, const launch_pair *b)
{
    if (a->size_set && b->size_set && a->size != b->size) {
        if (a->size > b->size && b->size > 0 && a->size % b->size == 0)
            return SP_OK;
        return sp_fail(eb, SP_EINVAL,
                       "%s=%lld and %s=%lld disagree: the process was started by two launchers that count "
                       "it differently; unset one, or give rank= and world_size=",
                       a->size_var, (long long)a->size, b->size_var, (long long)b->size);
    }
    if (a->rank_set && b->rank_set && a->rank != b->rank)
        return sp_fail(eb, SP_EINVAL,
                       "%s=%lld and %s=%lld disagree: the process was started by two launchers that number "
                       "it differently; unset one, or give rank= and world_size=",
                       a->rank_var, (long long)a->rank, b->rank_var, (long long)b->rank);
    return SP_OK;
}

/* Reads every pair (each variable checked as a count; a size already set is kept), checks that those set agree, and takes the
 * first rank and size set. */
static int resolve_pairs(sp_errbuf *eb, launch_pair *pr, size_t n, launch_view *v)
{
    *v = (launch_view){ -1, -1, NULL, NULL };
    for (size_t i = 0; i < n; i++)
        if (env_count(eb, pr[i].rank_var, &pr[i].rank, &pr[i].rank_set) ||
            (!pr[i].size_set && env_count(eb, pr[i].size_var, &pr[i].size, &pr[i].size_set)))
            return SP_EINVAL;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (check_pair(eb, &pr[i], &pr[j]))
                return SP_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (pr[i].rank_set && !v->rank_var)
            v->rank = pr[i].rank, v->rank_var = pr[i].rank_var;
        if (pr[i].size_set && !v->size_var)
            v->size = pr[i].size, v->size_var = pr[i].size_var;
    }
    return SP_OK;
}

/* Slurm's tasks on node `node` from SLURM_TASKS_PER_NODE ("4(x2),3": two nodes of 4 tasks, then
 * one of 3). */
static int slurm_tasks_on_node(sp_errbuf *eb, const char *s, int64_t node, int64_t *out)
{
    const char *c = s;
    int64_t first = 0;
    while (*c) {
        char *end;
        long long count = strtoll(c, &end, 10), times = 1;
        if (end == c || count < 0)
            break;
        c = end;
        if (*c == '(') {
            if (c[1] != 'x')
                break;
            times = strtoll(c + 2, &end, 10);
            if (end == c + 2 || *end != ')' || times < 1)
                break;
            c = end + 1;
        }
        if (node >= first && node - first < times) {
            *out = count;
            return SP_OK;
        }
        first += times;
        if (*c == ',')
            c++;
        else if (*c)
            break;
    }
    if (!*c && *s)
        return sp_fail(eb, SP_EINVAL, "SLURM_TASKS_PER_NODE='%s' lists %lld nodes; SLURM_NODEID=%lld is not among them",
                       s, (long long)first, (long long)node);
    return sp_fail(eb, SP_EINVAL, "SLURM_TASKS_PER_NODE='%s' is not a list like '4(x2),3'", s);
}

/* The local rank and local world size: LOCAL_RANK/LOCAL_WORLD_SIZE (torchrun), Open MPI's, MPICH's
 * and Slurm's (SLURM_LOCALID with SLURM_NTASKS_PER_NODE, else this node's entry of
 * SLURM_TASKS_PER_NODE). The size is 0 and the rank -1 where no launcher says. */
static int read_local(sp_loader *l, launch_view *v)
{
    launch_pair pr[NPAIRS] = {
        { "LOCAL_RANK", "LOCAL_WORLD_SIZE", 0, 0, false, false },
        { "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", 0, 0, false, false },
        { "MPI_LOCALRANKID", "MPI_LOCALNRANKS", 0, 0, false, false },
        { "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", 0, 0, false, false },
    };
    launch_pair *sl = &pr[NPAIRS - 1]; /* its size read here, so resolve_pairs leaves it */
    if (env_count(&l->eb, sl->size_var, &sl->size, &sl->size_set))
        return SP_EINVAL;
    const char *tpn = getenv("SLURM_TASKS_PER_NODE");
    if (!sl->size_set && tpn) {
        int64_t node = 0;
        if (env_count(&l->eb, "SLURM_NODEID", &node, NULL) || slurm_tasks_on_node(&l->eb, tpn, node, &sl->size))
            return SP_EINVAL;
        sl->size_set = true;
        sl->size_var = "SLURM_TASKS_PER_NODE";
    }
    if (resolve_pairs(&l->eb, pr, NPAIRS, v))
        return SP_EINVAL;
    if (!v->size_var)
        v->size = 0;
    if (v->size_var && (v->size < 1 || v->size > (1 << 20)))
        return sp_fail(&l->eb, SP_EINVAL, "%s=%lld is not a local world size (1 to 2^20)", v->size_var,
                       (long long)v->size);
    if (v->rank_var && v->size_var && v->rank >= v->size)
        return sp_fail(&l->eb, SP_EINVAL, "local rank %lld (%s) is not below the local world size %lld (%s)",
                       (long long)v->rank, v->rank_var, (long long)v->size, v->size_var);
    return SP_OK;
}

int ld_read_ranks(sp_loader *l, const sp_params *p)
{
    int64_t rank = sp_params_get(p, SP_PARAM_RANK), world = sp_params_get(p, SP_PARAM_WORLD_SIZE);
    bool rank_env = rank < 0, world_env = world == 0;
    launch_view env = { -1, -1, NULL, NULL };
    if (rank_env || world_env) {
        launch_pair pr[NPAIRS] = {
            { "RANK", "WORLD_SIZE", 0, 0, false, false },
            { "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", 0, 0, false, false },
            { "PMI_RANK", "PMI_SIZE", 0, 0, false, false },
            { "SLURM_PROCID", "SLURM_NTASKS", 0, 0, false, false },
        };
        if (resolve_pairs(&l->eb, pr, NPAIRS, &env))
            return SP_EINVAL;
    }
    const char *rank_from = rank_env ? env.rank_var : "the rank parameter";
    const char *world_from = !world_env ? "the world_size parameter" : env.size_var ? env.size_var : "WORLD_SIZE unset";
    if (rank_env)
        rank = env.rank;
    if (world_env)
        world = env.size_var ? env.size : 1;
    if (rank < 0 && world > 1)
        return sp_fail(&l->eb, SP_EINVAL,
                       "%s=%lld but no rank: set rank= or RANK (each process its own, 0 to %lld)",
                       world_env ? env.size_var : "world_size", (long long)world, (long long)world - 1);
    if (rank < 0)
        rank = 0, rank_from = "no rank set";
    if (world < 1 || world > (1 << 20) || rank >= world)
        return sp_fail(&l->eb, SP_EINVAL,
                       "rank %lld (%s) and world size %lld (%s) are not valid: a world size is 1 to 2^20 "
                       "and a rank is below it",
                       (long long)rank, rank_from, (long long)world, world_from);
    launch_view loc;
    if (read_local(l, &loc))
        return SP_EINVAL;
    l->cfg.rank = (uint32_t)rank;
    l->cfg.world = (uint32_t)world;
    l->cfg.local_world = loc.size_var ? (uint32_t)loc.size : 1;
    sp_loader_stats *st = &l->stats.s;
    st->rank = (int)rank;
    st->world_size = (int)world;
    st->local_rank = (int)loc.rank;
    st->local_world_size = loc.size_var ? (int)loc.size : 0;
    int k = snprintf(st->rank_note, sizeof st->rank_note, "rank %lld from %s, world size %lld from %s",
                     (long long)rank, rank_from, (long long)world, world_from);
    if (k > 0 && (size_t)k < sizeof st->rank_note) {
        if (loc.rank_var || loc.size_var)
            snprintf(st->rank_note + k, sizeof st->rank_note - (size_t)k,
                     "; local rank %lld from %s, local world size %lld from %s", (long long)loc.rank,
                     loc.rank_var ? loc.rank_var : "none set", (long long)loc.size,
                     loc.size_var ? loc.size_var : "none set (taken as 1)");
        else
            snprintf(st->rank_note + k, sizeof st->rank_note - (size_t)k, "; no local rank or local world size set");
    }
    return SP_OK;
}
