/* sp_system.c - what this process may use of the machine, for the defaults that follow it
 * (threads=0, host_memory=0): the CPUs its affinity mask and its cgroup's CPU quota allow, and the
 * memory MemAvailable and its cgroup's memory limit leave. cgroup v2 and v1 are both read; a file
 * that is missing or unreadable means "no limit there". */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "sp_internal.h"

int sp_sys_cores_hook;
const char *sp_sys_cgroup_root;
const char *sp_sys_self_cgroup;

#define SYS_PATH 1024

static const char *cgroup_root(void) { return sp_sys_cgroup_root ? sp_sys_cgroup_root : "/sys/fs/cgroup"; }

/* The first line of file `dir/name`, without its newline; false when it cannot be read. */
static bool read_line(const char *dir, const char *name, char *buf, size_t len)
{
    char path[SYS_PATH];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return false;
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)len, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

/* A decimal number alone on its line; false for anything else ("max", "-1", empty). */
static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end)
        return false;
    *out = v;
    return true;
}

/* One cgroup hierarchy this process belongs to: the directory of its cgroup in that hierarchy. */
typedef struct sys_cgroup {
    char dir[SYS_PATH];
    size_t root_len; /* dir[0..root_len) is the hierarchy's root: the walk up stops there */
} sys_cgroup;

/* Finds the process's cgroup in the v2 hierarchy (controller "") or in the v1 hierarchy holding
 * `controller`, from /proc/self/cgroup; false when that hierarchy is not mounted. A path that is
 * not under the mount (a container without a cgroup namespace sees its own cgroup as the root)
 * means the root. */
static bool find_cgroup(const char *controller, sys_cgroup *cg)
{
    FILE *f = fopen(sp_sys_self_cgroup ? sp_sys_self_cgroup : "/proc/self/cgroup", "re");
    if (!f)
        return false;
    char line[SYS_PATH], sub[SYS_PATH];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        *c2 = '\0';
        const char *ctls = c1 + 1, *path = c2 + 1;
        if (!*controller) { /* v2: "0::/path", in the root or, on a hybrid system, in unified/ */
            if (*ctls || strcmp(line, "0:") != 0)
                continue;
            static const char *const places[] = { "", "/unified" };
            for (size_t i = 0; !found && i < 2; i++) {
                char probe[SYS_PATH];
                snprintf(sub, sizeof sub, "%s%s", cgroup_root(), places[i]);
                snprintf(probe, sizeof probe, "%s/cgroup.controllers", sub);
                if (access(probe, F_OK) != 0)
                    continue; /* not a v2 hierarchy (a v1 tmpfs of mount points) */
                cg->root_len = strlen(sub);
                found = snprintf(cg->dir, sizeof cg->dir, "%s%s", sub, strcmp(path, "/") ? path : "") <
                        (int)sizeof cg->dir;
            }
            continue;
        }
        /* v1: "N:cpu,cpuacct:/path", mounted at root/cpu,cpuacct (or root/cpu, a link to it) */
        size_t n = strlen(controller);
        bool has = false;
        for (const char *p = ctls; *p;) {
            size_t len = strcspn(p, ",");
            has |= len == n && !strncmp(p, controller, n);
            p += len + (p[len] == ',');
        }
        if (!has)
            continue;
        const char *names[] = { ctls, controller };
        for (size_t i = 0; !found && i < 2; i++) {
            snprintf(sub, sizeof sub, "%s/%s", cgroup_root(), names[i]);
            if (access(sub, F_OK) != 0)
                continue;
            cg->root_len = strlen(sub);
            found = snprintf(cg->dir, sizeof cg->dir, "%s%s", sub, strcmp(path, "/") ? path : "") < (int)sizeof cg->dir;
        }
    }
    fclose(f);
    if (found && access(cg->dir, F_OK) != 0)
        cg->dir[cg->root_len] = '\0'; /* a container's own cgroup mounted as the root, no namespace */
    return found;
}

/* One level up; false at the hierarchy's root. */
static bool cgroup_up(sys_cgroup *cg)
{
    char *slash = strrchr(cg->dir, '/');
    if (strlen(cg->dir) <= cg->root_len || !slash || (size_t)(slash - cg->dir) < cg->root_len)
        return false;
    *slash = '\0';
    return true;
}

/* The CPUs the cgroup quota allows (rounded up), the smallest along the way to the root; 0 for no
 * quota. *where: the file that set it. */
static uint64_t cgroup_cpus(char *where, size_t len)
{
    uint64_t best = 0;
    sys_cgroup cg;
    char a[64], b[64];
    if (find_cgroup("", &cg)) {
        do { /* v2: cpu.max is "max 100000" or "200000 100000" */
            uint64_t q, p;
            char line[128];
            if (read_line(cg.dir, "cpu.max", line, sizeof line) && sscanf(line, "%63s %63s", a, b) == 2 &&
                parse_u64(a, &q) && parse_u64(b, &p) && p > 0) {
                uint64_t cpus = (q + p - 1) / p;
                if (cpus && (!best || cpus < best)) {
                    best = cpus;
                    snprintf(where, len, "%s/cpu.max %llu %llu", cg.dir, (unsigned long long)q, (unsigned long long)p);
                }
            }
        } while (cgroup_up(&cg));
    }
    if (find_cgroup("cpu", &cg)) {
        do { /* v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us */
            uint64_t q, p;
            if (read_line(cg.dir, "cpu.cfs_quota_us", a, sizeof a) && parse_u64(a, &q) &&
                read_line(cg.dir, "cpu.cfs_period_us", b, sizeof b) && parse_u64(b, &p) && p > 0) {
                uint64_t cpus = (q + p - 1) / p;
                if (cpus && (!best || cpus < best)) {
                    best = cpus;
                    snprintf(where, len, "%s/cpu.cfs_quota_us %llu over %llu", cg.dir, (unsigned long long)q,
                             (unsigned long long)p);
                }
            }
        } while (cgroup_up(&cg));
    }
    return best;
}

int sp_usable_cores(char *why, size_t len)
{
    int online = sp_sys_cores_hook > 0 ? sp_sys_cores_hook : sp_online_cores();
    int affinity = online;
    cpu_set_t set;
    if (sp_sys_cores_hook <= 0 && sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        affinity = CPU_COUNT(&set);
    char where[SYS_PATH + 64] = "";
    uint64_t quota = cgroup_cpus(where, sizeof where);
    int n = affinity < online ? affinity : online;
    if (quota && quota < (uint64_t)n)
        n = (int)quota;
    if (why) {
        int k = snprintf(why, len, "%d usable cores, the smallest of %d online, %d in the affinity mask and ", n,
                         online, affinity);
        if (k >= 0 && (size_t)k < len)
            snprintf(why + k, len - (size_t)k, quota ? "the cgroup CPU quota %llu (%s)" : "no cgroup CPU quota%.0llu%.0s",
                     (unsigned long long)quota, where);
    }
    return n;
}

/* The value of `key` in dir/memory.stat, or 0. */
static uint64_t stat_value(const char *dir, const char *key)
{
    char path[SYS_PATH], line[256];
    if (snprintf(path, sizeof path, "%s/memory.stat", dir) >= (int)sizeof path)
        return 0;
    FILE *f = fopen(path, "re");
    unsigned long long v = 0;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ' ' && sscanf(line + n, " %llu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* The memory the cgroup limit still allows (limit - usage, not counting inactive page cache), the smallest along the way to the
 * root; UINT64_MAX for no limit. */
static uint64_t cgroup_room(char *where, size_t len)
{
    uint64_t best = UINT64_MAX;
    sys_cgroup cg;
    static const char *const files[2][4] = {
        { "", "memory.max", "memory.current", "inactive_file" },
        { "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file" },
    };
    for (int v = 0; v < 2; v++) {
        if (!find_cgroup(files[v][0], &cg))
            continue;
        do {
            char a[64], b[64];
            uint64_t lim, used = 0;
            if (!read_line(cg.dir, files[v][1], a, sizeof a) || !parse_u64(a, &lim))
                continue; /* "max", or no such file at this level */
            if (read_line(cg.dir, files[v][2], b, sizeof b))
                parse_u64(b, &used);
            uint64_t cache = stat_value(cg.dir, files[v][3]);
            used = used > cache ? used - cache : 0; /* page cache the kernel would drop first */
            uint64_t room = lim > used ? lim - used : 0;
            if (room < best) {
                best = room;
                snprintf(where, len, "%s/%s %llu, %llu in use", cg.dir, files[v][1], (unsigned long long)lim,
                         (unsigned long long)used);
            }
        } while (cgroup_up(&cg));
    }
    return best;
}

uint64_t sp_meminfo_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[128];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kib * 1024;
}

uint64_t sp_memory_available(char *why, size_t len)
{
    uint64_t avail = sp_meminfo_available();
    const char *src = "MemAvailable";
    if (!avail) { /* no /proc: free memory as the kernel counts it */
        struct sysinfo si;
        avail = sysinfo(&si) == 0 ? (uint64_t)si.freeram * si.mem_unit : 0;
        src = "free memory";
    }
    char where[SYS_PATH + 64] = "";
    uint64_t room = cgroup_room(where, sizeof where);
    if (room < avail || !avail) {
        avail = room == UINT64_MAX ? 0 : room;
        src = where;
    }
    if (why)
        snprintf(why, len, "%s", src);
    return avail;
}
