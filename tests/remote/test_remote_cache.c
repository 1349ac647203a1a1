/* test_remote_cache.c - the local cache of a remote dataset (cache_dir, cache_size) against a real nginx: a cache that holds the dataset makes the second epoch fetch nothing (stats and nginx's access log; remote_requests counts only the GETs sent), one of half the dataset at most about half; batches bit for bit as without it; a cache smaller than a block caches nothing and does not hang; files of other kinds in the directory are never touched; leftovers of killed writers are cleaned and the account rebuilt; two processes (two ranks of a node) share a directory within its size; damaged entries are refetched; a changed object is not served from the cache; a read served by the cache between two reads joined into one GET keeps its bytes; entries are written by the decode workers, never the reader (the trace), and a block that fails its checksum is not kept; and the same over S3 (Swift). The directory's lock, through rm_cache itself with
 * objects made up here (no server): a hit does not wait for another holder of spc.lock and its next
 * use reaches the index later (at the next lock, at the close); a put whose write fails gives its
 * bytes back; the bytes a writer killed midway reserved are given back in a live session; two
 * handles (threads, processes) offering the same blocks write and count each once. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rm.h"
#include "rt_util.h"
#include "test_util.h"

static lt_ds g_ds;
static char g_state[4096], g_url[4200], g_log[4200];
static uint64_t g_bytes;  /* block bytes of one epoch (fetched by an uncached run) */
static uint64_t g_served; /* what nginx sent for that run: the blocks and the shards' tails */

/* A fresh cache directory for this case (each runs in a child of its own). */
static char *new_cache(const char *tag)
{
    char name[64];
    snprintf(name, sizeof name, "cache-%s", tag);
    return tu_join(g_ds.root, name);
}

typedef struct dir_sum {
    uint64_t entries, bytes, tmp;
} dir_sum;

/* The cache's files in dir: entries, temporary files and their bytes. Writers rename their files
 * without the cache's lock, so while others run a file may be listed under its temporary name and
 * its entry name both (counted once, by its inode) or be gone when it is looked at (not counted). */
static dir_sum sum_dir(const char *dir)
{
    dir_sum s = { 0 };
    DIR *d = opendir(dir);
    if (!d)
        return s;
    ino_t seen[4096];
    size_t nseen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        bool blk = n >= 8 && strcmp(e->d_name + n - 4, ".blk") == 0, tmp = n >= 8 && strcmp(e->d_name + n - 4, ".tmp") == 0;
        if (strncmp(e->d_name, "spc-", 4) != 0 || !(blk || tmp))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            ck_assert_msg(errno == ENOENT, "stat %s/%s: %s", dir, e->d_name, strerror(errno));
            continue; /* renamed or removed since it was listed */
        }
        bool again = false;
        for (size_t k = 0; k < nseen && !again; k++)
            again = seen[k] == st.st_ino;
        if (again)
            continue;
        if (nseen < sizeof seen / sizeof seen[0])
            seen[nseen++] = st.st_ino;
        s.entries += blk;
        s.tmp += tmp;
        s.bytes += (uint64_t)st.st_size;
    }
    closedir(d);
    return s;
}

/* A file's bytes with a NUL after them (free them); "" when it cannot be read. Also used by main,
 * outside the tests: no ck_assert. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 16, n = 0, got;
    char *z = malloc(cap + 1);
    if (!z)
        abort();
    while (f && (got = fread(z + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap && !(z = realloc(z, (cap *= 2) + 1)))
            abort();
    if (f)
        fclose(f);
    z[n] = '\0';
    return z;
}

static uint64_t log_size(void) { return tu_exists(g_log) ? tu_file_size(g_log) : 0; }

/* Body bytes nginx sent for the requests logged from offset `from` on. */
static uint64_t log_bytes(uint64_t from)
{
    char *t = read_text(g_log);
    size_t n = strlen(t);
    uint64_t sum = 0;
    for (char *line = t + from, *end; line < t + n; line = end + 1) {
        end = memchr(line, '\n', (size_t)(t + n - line));
        if (!end)
            break;
        *end = 0;
        unsigned status;
        unsigned long long bytes;
        char *q = strstr(line, "\" ");
        if (q && sscanf(q + 2, "%u %llu", &status, &bytes) == 2)
            sum += bytes;
    }
    free(t);
    return sum;
}

/* Requests nginx logged from offset `from` on. */
static uint64_t log_requests(uint64_t from)
{
    char *t = read_text(g_log);
    uint64_t n = 0;
    for (const char *c = t + from; *c; c++)
        n += *c == '\n';
    free(t);
    return n;
}

/* A run of `epochs` epochs over url, recorded; its stats in *st. */
static void run(const char *url, const char *cache, const char *size, const char *epochs, lt_rec *r,
                sp_loader_stats *st)
{
    sp_loader *l;
    int rc = cache ? lt_open(url, &l, "epochs", epochs, "batch_size", "7", "cache_dir", cache, "cache_size", size, NULL)
                   : lt_open(url, &l, "epochs", epochs, "batch_size", "7", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    do
        rc = lt_drain(l, &g_ds, r, UINT64_MAX, 60000);
    while (rc == SP_EEPOCH);
    ck_assert_msg(rc == SP_EDONE, "%d %s", rc, sp_loader_errmsg(l));
    ck_assert_msg(r->bad == 0, "%s", r->why);
    *st = (sp_loader_stats){ .struct_size = sizeof *st };
    ck_assert_int_eq(sp_loader_stats_get(l, st), 0);
    ck_assert_uint_le(st->host_allocated_bytes, st->host_memory_bytes);
    sp_loader_close(l);
}

static void check_same(const lt_rec *a, const lt_rec *b)
{
    char why[128];
    ck_assert_msg(rt_same(a, b, why, sizeof why), "%s", why);
}

static lt_rec g_ref; /* two epochs, no cache */

/* Cache larger than the dataset: the second epoch is served from it (nothing fetched, by the
 * stats and by nginx's log); the batches are those of the uncached run. A second process then
 * fetches nothing at all. */
START_TEST(cache_whole)
{
    char *cache = new_cache("cache_whole");
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(2 * g_bytes + (1 << 20)));
    lt_rec r = { 0 };
    sp_loader_stats st;
    uint64_t at = log_size();
    run(g_url, cache, size, "2", &r, &st);
    uint64_t served = log_bytes(at);
    check_same(&g_ref, &r);
    /* the first epoch only: a block the second epoch asks for while the first one's fetch of it is
     * still out waits for that fetch */
    ck_assert_uint_eq(st.remote_bytes, g_bytes);
    ck_assert_uint_eq(st.cache_evictions, 0);
    ck_assert_uint_le(st.cache_admitted, st.cache_misses); /* a miss that waited (see above) is kept once */
    /* a miss is a read that sent a GET: one a block, the reads that took a copy of a fetch still out
     * (or of a block still in the ring) counted as neither (they were misses too, twice the blocks) */
    sp_dataset *ds = NULL;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &ds), 0);
    ck_assert_msg(st.cache_misses == sp_dataset_num_blocks(ds), "%llu misses for %llu blocks fetched once",
                  (unsigned long long)st.cache_misses, (unsigned long long)sp_dataset_num_blocks(ds));
    sp_dataset_close(ds);
    dir_sum d = sum_dir(cache);
    ck_assert_uint_eq(d.entries, st.cache_admitted);
    ck_assert_uint_eq(d.bytes, st.cache_bytes);
    ck_assert_uint_eq(d.tmp, 0);
    /* nginx sent one epoch of blocks and the shards' tails, no more */
    ck_assert_msg(served <= g_served + 4096, "served %llu for %llu", (unsigned long long)served,
                  (unsigned long long)g_served);
    lt_rec r2 = { 0 };
    at = log_size();
    run(g_url, cache, size, "2", &r2, &st);
    check_same(&g_ref, &r2);
    ck_assert_uint_eq(st.remote_bytes, 0);
    ck_assert_uint_eq(st.cache_misses, 0);
    ck_assert_msg(log_bytes(at) <= g_served - g_bytes + 4096, "served %llu (tails: %llu)",
                  (unsigned long long)log_bytes(at), (unsigned long long)(g_served - g_bytes));
    /* remote_requests counts the reader's GETs: the shards' tails here, not the blocks the cache
     * served (nginx also logged the manifest's GET, made by the open) */
    ck_assert_uint_eq(st.remote_requests + 1, log_requests(at));
    lt_rec_free(&r);
    lt_rec_free(&r2);
    free(cache);
}
END_TEST

/* Cache of half the dataset (half its blocks, with their entries' headers): it fills, then keeps
 * what the next epoch reads first; every later epoch fetches about half, where LRU or FIFO would
 * fetch three quarters or more; the directory never holds more than cache_size. */
START_TEST(cache_half)
{
    char *cache = new_cache("cache_half");
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &ds), 0);
    uint64_t half = g_bytes / 2 + sp_dataset_num_blocks(ds) / 2 * 256; /* a header is ~200 bytes */
    sp_dataset_close(ds);
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)half);
    lt_rec r = { 0 };
    sp_loader_stats st;
    uint64_t at = log_size();
    run(g_url, cache, size, "4", &r, &st);
    uint64_t served = log_bytes(at);
    uint64_t later = st.remote_bytes - g_bytes; /* epochs 2 to 4 */
    ck_assert_msg(st.remote_bytes > g_bytes && later <= 3 * g_bytes * 55 / 100,
                  "epochs 2-4 fetched %llu, %.2f of theirs", (unsigned long long)later, later / (3.0 * g_bytes));
    ck_assert_msg(served <= g_served + 3 * g_bytes * 55 / 100, "nginx served %llu for four epochs of %llu",
                  (unsigned long long)served, (unsigned long long)g_bytes);
    ck_assert_uint_gt(st.cache_hits, 0);
    ck_assert_uint_le(st.cache_bytes, half);
    ck_assert_uint_le(sum_dir(cache).bytes, half);
    /* the same batches as without the cache */
    lt_rec r2 = { 0 };
    run(g_url, cache, size, "2", &r2, &st);
    check_same(&g_ref, &r2);
    ck_assert_uint_le(sum_dir(cache).bytes, half);
    lt_rec_free(&r);
    lt_rec_free(&r2);
    free(cache);
}
END_TEST

/* A cache smaller than one block: nothing is kept, nothing waits, the batches are the same. A
 * cache_dir that cannot be made fails the open. */
START_TEST(cache_tiny)
{
    char *cache = new_cache("cache_tiny");
    lt_rec r = { 0 };
    sp_loader_stats st;
    run(g_url, cache, "100", "2", &r, &st);
    check_same(&g_ref, &r);
    /* nothing served from the cache: every block fetched once per epoch, but for those asked for
     * again while their fetch was still out (they wait for it). Fetching ahead goes on into the
     * second epoch while the first one's GETs are out, so that may be many of them. */
    ck_assert_uint_le(st.remote_bytes, 2 * g_bytes);
    ck_assert_uint_ge(st.remote_bytes, g_bytes);
    ck_assert_uint_eq(st.cache_hits, 0);
    ck_assert_uint_eq(st.cache_admitted, 0);
    ck_assert_uint_eq(sum_dir(cache).entries, 0);
    lt_rec_free(&r);
    /* a directory that cannot be made: the open fails, naming it */
    char *file = tu_join(g_ds.root, "a-file");
    tu_write_file(file, "x", 1);
    char *bad = tu_join(file, "cache");
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_url, &l, "cache_dir", bad, "cache_size", "1M", NULL), SP_EIO);
    ck_assert_msg(strstr(sp_last_error(), bad) && strstr(sp_last_error(), "Not a directory"), "%s", sp_last_error());
    /* a local dataset has nothing to cache: the parameters are ignored */
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "cache_dir", bad, "cache_size", "1M", NULL), 0);
    sp_loader_close(l);
    /* half a cache is refused, not run without one */
    ck_assert_int_eq(lt_open(g_url, &l, "cache_dir", cache, NULL), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "cache_size is not") && strstr(sp_last_error(), cache), "%s", sp_last_error());
    ck_assert_int_eq(lt_open(g_url, &l, "cache_size", "1M", NULL), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "cache_dir is not"), "%s", sp_last_error());
    free(bad);
    free(file);
    free(cache);
}
END_TEST

/* The driver joins queued reads that continue each other in the file and in memory into one GET.
 * A read served by the cache takes no place in the queue, so the reads queued before and after it
 * may be a file's blocks apart and, in the read ring, exactly as far apart, with its buffer between
 * them: one GET for both would write the file's bytes between them over it (a false checksum
 * failure of that block, with read-ahead and a cache). Here the three land where they belong. */
START_TEST(cache_hit_between_joined_reads)
{
    enum { ROOM = 4096, LEN = 100, AT_Z = 20000 };
    char *path = tu_join(g_ds.dir, "shard-000000.sps");
    size_t n;
    uint8_t *file = tu_read_file(path, &n);
    ck_assert_msg(file && n >= AT_Z + LEN, "%s", path);
    sp_errbuf eb = { 0 };
    rm_site *site;
    ck_assert_msg(rm_site_open(g_url, NULL, &site, &eb) == 0, "%s", eb.msg);
    char url[4400];
    snprintf(url, sizeof url, "%s/shard-000000.sps", g_url);
    rm_obj o;
    ck_assert_int_eq(rm_obj_init(site, url, &o, &eb), 0);
    uint8_t head[16];
    ck_assert_msg(rm_get(site, &o, 0, sizeof head, head, true, &eb) == 0, "%s", eb.msg); /* its ETag */
    char *dir = new_cache("cache_hit_between_joined_reads");
    rm_cache *c;
    ck_assert_msg(rm_cache_open(dir, 1 << 20, &c, &eb) == 0, "%s", eb.msg);
    rm_use z = { .sum = sp_checksum64(file + AT_Z, LEN), .now = 0, .next = 1 };
    rm_cache_put(c, &o, AT_Z, LEN, file + AT_Z, &z, false);
    rm_fetch *f;
    ck_assert_int_eq(rm_fetch_open(site, 8, 1, &f), 0);
    rm_fetch_set_cache(f, c);
    uint8_t *buf = calloc(3, ROOM);
    /* A at file byte 0, Z (a hit) in the room after it, C at file byte 2 * ROOM in the room after Z */
    ck_assert_int_eq(rm_fetch_submit(f, &o, buf, LEN, ROOM, 0, 0), 0);
    rm_fetch_use(f, &z);
    ck_assert_int_eq(rm_fetch_submit(f, &o, buf + ROOM, LEN, ROOM, AT_Z, 1), 1); /* no GET: the cache has it */
    ck_assert_int_eq(rm_fetch_submit(f, &o, buf + 2 * ROOM, LEN, ROOM, 2 * ROOM, 2), 0);
    for (int got = 0; got < 3;) {
        uint64_t tag;
        int code;
        char why[SP_ERRMSG_MAX];
        if (rm_fetch_reap(f, true, &tag, &code, why, sizeof why) == 1) {
            ck_assert_msg(code == 0, "read %llu: %s", (unsigned long long)tag, why);
            got++;
        }
    }
    rm_cache_stats st;
    rm_cache_counters(c, &st);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_msg(memcmp(buf, file, LEN) == 0, "A is not the file's bytes 0..99");
    ck_assert_msg(memcmp(buf + ROOM, file + AT_Z, LEN) == 0, "the cache hit between A and C was overwritten");
    ck_assert_msg(memcmp(buf + 2 * ROOM, file + 2 * ROOM, LEN) == 0, "C is not the file's bytes at 8192");
    rm_fetch_close(f);
    rm_cache_close(c);
    rm_obj_free(&o);
    rm_site_free(site);
    free(buf);
    free(dir);
    free(file);
    free(path);
}
END_TEST

/* A read of a block whose earlier read has ended but is not reaped yet (the next epoch's, while
 * the reader has not taken this one's): no GET of its own, the bytes copied from the one that
 * ended. Before, it missed the cache (no entry written yet) and fetched the block again. Here:
 * A goes out, A2 waits for it, A is reaped (A2 ended, not reaped), then A3 comes. */
START_TEST(cache_read_after_unreaped)
{
    enum { LEN = 3000, AT = 4096 };
    char *path = tu_join(g_ds.dir, "shard-000000.sps");
    size_t n;
    uint8_t *file = tu_read_file(path, &n);
    ck_assert_msg(file && n >= AT + LEN, "%s", path);
    sp_errbuf eb = { 0 };
    rm_site *site;
    ck_assert_msg(rm_site_open(g_url, NULL, &site, &eb) == 0, "%s", eb.msg);
    char url[4400];
    snprintf(url, sizeof url, "%s/shard-000000.sps", g_url);
    rm_obj o;
    ck_assert_int_eq(rm_obj_init(site, url, &o, &eb), 0);
    uint8_t head[16];
    ck_assert_msg(rm_get(site, &o, 0, sizeof head, head, true, &eb) == 0, "%s", eb.msg); /* its ETag */
    char *dir = new_cache("cache_read_after_unreaped");
    rm_cache *c;
    ck_assert_msg(rm_cache_open(dir, 1 << 20, &c, &eb) == 0, "%s", eb.msg);
    rm_fetch *f;
    ck_assert_int_eq(rm_fetch_open(site, 8, 2, &f), 0);
    rm_fetch_set_cache(f, c);
    rm_use u = { .sum = sp_checksum64(file + AT, LEN), .now = 0, .next = 1 };
    uint8_t *buf = calloc(3, LEN);
    rm_fetch_use(f, &u);
    ck_assert_int_eq(rm_fetch_submit(f, &o, buf, LEN, LEN, AT, 0), 0);           /* A: a GET */
    rm_fetch_use(f, &u);
    ck_assert_int_eq(rm_fetch_submit(f, &o, buf + LEN, LEN, LEN, AT, 1), 1);     /* A2: waits for A */
    uint64_t tag;
    int code;
    char why[SP_ERRMSG_MAX];
    while (rm_fetch_reap(f, true, &tag, &code, why, sizeof why) != 1)
        ;
    ck_assert_msg(tag == 0 && code == 0, "read %llu: %s", (unsigned long long)tag, why);
    rm_fetch_use(f, &u);
    ck_assert_int_eq(rm_fetch_submit(f, &o, buf + 2 * LEN, LEN, LEN, AT, 2), 1); /* A3: no GET */
    for (int got = 0; got < 2;)
        if (rm_fetch_reap(f, true, &tag, &code, why, sizeof why) == 1) {
            ck_assert_msg(code == 0 && (tag == 1 || tag == 2), "read %llu: %s", (unsigned long long)tag, why);
            got++;
        }
    ck_assert_uint_eq(rm_fetch_gets(f), 1);
    for (int k = 0; k < 3; k++)
        ck_assert_msg(memcmp(buf + k * LEN, file + AT, LEN) == 0, "read %d is not the file's bytes", k);
    rm_cache_stats st;
    rm_cache_counters(c, &st);
    ck_assert_uint_eq(st.misses, 1); /* A's; A2 and A3 sent no GET */
    rm_fetch_close(f);
    rm_cache_close(c);
    rm_obj_free(&o);
    rm_site_free(site);
    free(buf);
    free(dir);
    free(file);
    free(path);
}
END_TEST

/* Files of other kinds in the directory: never removed, changed or counted, whatever is evicted. */
START_TEST(cache_foreign_files)
{
    char *cache = new_cache("cache_foreign_files");
    ck_assert_int_eq(mkdir(cache, 0777), 0);
    const char *names[] = { "notes.txt", "spc-0123456789abcdef0123456789abcdef.blk",
                            "spc-0123456789abcdef0123456789abcdef.1-2.tmp", "spc.lock.bak", "SPC-X.blk",
                            "spc-0123456789abcdef0123456789abcdef.blk.old" };
    const char *body = "not a cache entry: someone else's data\n";
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = tu_join(cache, names[i]);
        tu_write_file(p, body, strlen(body));
        free(p);
    }
    char *sub = tu_join(cache, "sub");
    ck_assert_int_eq(mkdir(sub, 0777), 0);
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(g_bytes / 3));
    for (int k = 0; k < 2; k++) { /* the second open rebuilds the index from the directory */
        lt_rec r = { 0 };
        sp_loader_stats st;
        run(g_url, cache, size, "2", &r, &st);
        check_same(&g_ref, &r);
        /* the first run fills the cache and must evict; the second may find it already holding
         * the blocks used soonest (read-ahead asks the cache for them before any fetch needs room) */
        if (k == 0)
            ck_assert_uint_gt(st.cache_evictions, 0);
        ck_assert_uint_eq(st.cache_bytes, sum_dir(cache).bytes - 2 * strlen(body)); /* the foreign spc-* */
        lt_rec_free(&r);
    }
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = tu_join(cache, names[i]);
        size_t n;
        uint8_t *t = tu_read_file(p, &n);
        ck_assert_msg(t && n == strlen(body) && memcmp(t, body, n) == 0, "%s was changed", names[i]);
        free(t);
        free(p);
    }
    ck_assert(tu_exists(sub));
    free(sub);
    free(cache);
}
END_TEST

/* Processes killed while they write: what they leave (temporary files, an index that lost track)
 * is cleaned at the next open, which rebuilds the account from the directory; a temporary file a
 * live writer holds is left alone. */
START_TEST(cache_killed_writer)
{
    char *cache = new_cache("cache_killed_writer");
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(g_bytes / 2));
    for (int k = 0; k < 6; k++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            tu_child_deadline(60);
            sp_loader *l;
            if (lt_open(g_url, &l, "epochs", "0", "batch_size", "7", "cache_dir", cache, "cache_size", size, NULL))
                _exit(1);
            for (;;) {
                sp_batch *b;
                int rc = sp_loader_next(l, &b, 60000);
                if (rc == 0)
                    sp_loader_release(l, b);
                else if (rc != SP_EEPOCH)
                    _exit(2);
            }
        }
        struct timespec t = { 0, (long)(30 + 40 * k) * 1000000L };
        nanosleep(&t, NULL);
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status), "the child ended before it was killed (%d)", status);
    }
    /* what a writer killed midway leaves: a temporary file of ours, and an entry cut short */
    char *tmp = tu_join(cache, "spc-00112233445566778899aabbccddeeff.99999-1.tmp");
    tu_write_file(tmp, "SPCACHE1\1\0\0\0", 12);
    char *cut = tu_join(cache, "spc-ffeeddccbbaa99887766554433221100.blk");
    tu_write_file(cut, "SPCACHE1\1\0\0\0\x20\0\0\0\xff\xff\0\0\0\0\0\0", 24);
    /* and one a live writer holds (its flock): not touched */
    char *held = tu_join(cache, "spc-0123456789abcdef0123456789abcdef.1-7.tmp");
    tu_write_file(held, "SPCACHE1", 8);
    int hfd = open(held, O_RDONLY);
    ck_assert_int_eq(flock(hfd, LOCK_EX), 0);
    lt_rec r = { 0 };
    sp_loader_stats st;
    run(g_url, cache, size, "2", &r, &st);
    check_same(&g_ref, &r);
    ck_assert(!tu_exists(tmp));
    ck_assert(!tu_exists(cut));
    ck_assert(tu_exists(held));
    close(hfd);
    dir_sum d = sum_dir(cache);
    ck_assert_uint_eq(d.tmp, 1); /* the held one */
    ck_assert_uint_eq(st.cache_bytes, d.bytes - 8);
    ck_assert_uint_le(st.cache_bytes, g_bytes / 2);
    lt_rec_free(&r);
    unlink(held);
    free(tmp);
    free(cut);
    free(held);
    free(cache);
}
END_TEST

/* Two processes at once, ranks 0 and 1 of a node, on one directory of a third of the dataset: it
 * never holds more than that (sampled while they run), and each delivers its rank's batches. */
START_TEST(cache_two_processes)
{
    char *cache = new_cache("cache_two_processes");
    char size[32];
    uint64_t limit = g_bytes / 3;
    snprintf(size, sizeof size, "%llu", (unsigned long long)limit);
    lt_rec ref[2] = { { 0 }, { 0 } };
    for (int rank = 0; rank < 2; rank++) {
        char rk[8];
        snprintf(rk, sizeof rk, "%d", rank);
        sp_loader *l;
        ck_assert_int_eq(lt_open(g_ds.dir, &l, "epochs", "3", "batch_size", "7", "rank", rk, "world_size", "2", NULL), 0);
        int rc;
        do
            rc = lt_drain(l, &g_ds, &ref[rank], UINT64_MAX, 60000);
        while (rc == SP_EEPOCH);
        ck_assert_int_eq(rc, SP_EDONE);
        sp_loader_close(l);
    }
    pid_t pid[2];
    for (int rank = 0; rank < 2; rank++) {
        pid[rank] = fork();
        ck_assert_int_ge(pid[rank], 0);
        if (pid[rank] == 0) {
            tu_child_deadline(120);
            char rk[8];
            snprintf(rk, sizeof rk, "%d", rank);
            setenv("LOCAL_RANK", rk, 1);
            setenv("LOCAL_WORLD_SIZE", "2", 1);
            sp_loader *l;
            if (lt_open(g_url, &l, "epochs", "3", "batch_size", "7", "rank", rk, "world_size", "2", "cache_dir", cache,
                        "cache_size", size, NULL))
                _exit(1);
            lt_rec r = { 0 };
            int rc;
            do
                rc = lt_drain(l, &g_ds, &r, UINT64_MAX, 60000);
            while (rc == SP_EEPOCH);
            if (rc != SP_EDONE || r.bad)
                _exit(2);
            char why[128];
            if (!rt_same(&ref[rank], &r, why, sizeof why))
                _exit(3);
            sp_loader_stats st = { .struct_size = sizeof st };
            if (sp_loader_stats_get(l, &st) || st.cache_hits == 0)
                _exit(4);
            sp_loader_close(l);
            _exit(0);
        }
    }
    uint64_t most = 0;
    char *lock = tu_join(cache, "spc.lock");
    for (int alive = 2; alive;) {
        /* under the cache's own lock: no entry admitted or evicted meanwhile (a file being written
         * has its bytes reserved in the index before it is created; sum_dir copes with renames) */
        int fd = open(lock, O_RDONLY);
        if (fd >= 0 && flock(fd, LOCK_EX) == 0) {
            dir_sum d = sum_dir(cache);
            if (d.bytes > most)
                most = d.bytes;
        }
        if (fd >= 0)
            close(fd);
        alive = 0;
        for (int k = 0; k < 2; k++)
        {
            siginfo_t si = { 0 };
            if (waitid(P_PID, (id_t)pid[k], &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0)
                alive++; /* still running: its status stays for tu_child_ok */
        }
        struct timespec t = { 0, 2000000L };
        nanosleep(&t, NULL);
    }
    for (int k = 0; k < 2; k++)
        tu_child_ok(pid[k], k ? "rank 1" : "rank 0");
    ck_assert_msg(most <= limit && most > 0, "the directory held %llu of %llu", (unsigned long long)most,
                  (unsigned long long)limit);
    free(lock);
    lt_rec_free(&ref[0]);
    lt_rec_free(&ref[1]);
    free(cache);
}
END_TEST

/* Damaged entries (a flipped byte, a cut file) are removed and their blocks fetched again; the
 * batches are right. */
START_TEST(cache_damaged_entry)
{
    char *cache = new_cache("cache_damaged_entry");
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(2 * g_bytes));
    lt_rec r = { 0 };
    sp_loader_stats st;
    run(g_url, cache, size, "1", &r, &st);
    lt_rec_free(&r);
    DIR *d = opendir(cache);
    struct dirent *e;
    char *victim[2] = { NULL, NULL };
    uint64_t lost = 0;
    while ((e = readdir(d)) && !victim[1])
        if (strstr(e->d_name, ".blk"))
            victim[victim[0] ? 1 : 0] = tu_join(cache, e->d_name);
    closedir(d);
    ck_assert_ptr_nonnull(victim[1]);
    for (int k = 0; k < 2; k++) {
        uint64_t n = tu_file_size(victim[k]);
        uint32_t klen;
        int fd = open(victim[k], O_RDWR);
        ck_assert_int_eq(pread(fd, &klen, 4, 12), 4);
        lost += n - 64 - klen;
        if (k == 0)
            tu_xor_byte(victim[k], n - 3, 0x40);
        else
            ck_assert_int_eq(ftruncate(fd, (off_t)(n - 100)), 0);
        close(fd);
    }
    lt_rec r2 = { 0 };
    run(g_url, cache, size, "2", &r2, &st);
    check_same(&g_ref, &r2);
    ck_assert_uint_eq(st.remote_bytes, lost);
    ck_assert_uint_eq(st.cache_discarded, 2); /* the cut one goes at open, the flipped one when read */
    ck_assert(tu_exists(victim[0]) && tu_exists(victim[1])); /* fetched and kept again */
    lt_rec r3 = { 0 };
    run(g_url, cache, size, "1", &r3, &st);
    ck_assert_uint_eq(st.remote_bytes, 0);
    ck_assert_uint_eq(st.cache_discarded, 0);
    lt_rec_free(&r2);
    lt_rec_free(&r3);
    free(victim[0]);
    free(victim[1]);
    free(cache);
}
END_TEST

/* An object replaced on the server (a new ETag) is fetched again, not served from the cache; a
 * whole other dataset at the same URL gives its own batches. */
START_TEST(cache_changed_object)
{
    lt_ds copy, other;
    ck_assert_int_eq(lt_clone(&g_ds, &copy, "remote-cache-changed"), 0);
    char *link = tu_join(g_ds.root, "changed");
    ck_assert_int_eq(symlink(copy.dir, link), 0);
    char url[4300];
    snprintf(url, sizeof url, "%s/changed", rt_env("SP_TEST_HTTP_URL"));
    char *cache = new_cache("cache_changed_object");
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(2 * g_bytes));
    lt_rec r = { 0 };
    sp_loader_stats st;
    run(url, cache, size, "1", &r, &st);
    lt_rec_free(&r);
    /* the same bytes under a new modification time: nginx gives a new ETag */
    char *shard = tu_join(copy.dir, "shard-000001.sps");
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec += 1000;
    tv[1] = tv[0];
    ck_assert_int_eq(utimes(shard, tv), 0);
    run(url, cache, size, "1", &r, &st);
    /* exactly that shard's blocks are fetched again */
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(copy.dir, NULL, &ds), 0);
    uint64_t shard1 = 0;
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        ck_assert_int_eq(sp_dataset_block_info(ds, b, &bi), 0);
        if (bi.shard == 1)
            shard1 += bi.stored_bytes;
    }
    sp_dataset_close(ds);
    ck_assert_uint_eq(st.remote_bytes, shard1);
    ck_assert_uint_eq(st.cache_hit_bytes, g_bytes - shard1);
    lt_rec_free(&r);
    /* another dataset in its place (other values, the same layout) */
    unlink(link);
    ck_assert_int_eq(lt_make(&other, "remote-cache-other", g_ds.n, 33, 77, "4K", "64K"), 0);
    ck_assert_int_eq(symlink(other.dir, link), 0);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "epochs", "2", "batch_size", "7", "cache_dir", cache, "cache_size", size, NULL), 0);
    int rc;
    do
        rc = lt_drain(l, &other, &r, UINT64_MAX, 60000);
    while (rc == SP_EEPOCH);
    ck_assert_int_eq(rc, SP_EDONE);
    ck_assert_msg(r.bad == 0, "%s", r.why);
    sp_loader_close(l);
    lt_rec_free(&r);
    unlink(link);
    free(link);
    free(shard);
    free(cache);
    lt_ds_free(&copy);
    lt_ds_free(&other);
}
END_TEST

/* Entries are written by the decode workers that verify the blocks, never by the reader (the thread
 * that drives every transfer): the trace's "cache write" spans are all on worker tracks, one per
 * block kept. A block whose bytes do not match its checksum (one flipped on the server) is not
 * kept, and no write is tried for it: the next run fetches exactly that block. */
START_TEST(cache_written_by_workers)
{
    lt_ds copy;
    ck_assert_int_eq(lt_clone(&g_ds, &copy, "remote-cache-workers"), 0);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(copy.dir, NULL, &ds), 0);
    uint64_t nblocks = sp_dataset_num_blocks(ds);
    sp_block_info bad = { .struct_size = sizeof bad };
    ck_assert_int_eq(sp_dataset_block_info(ds, nblocks / 2, &bad), 0);
    sp_dataset_close(ds);
    char name[64];
    snprintf(name, sizeof name, "shard-%06llu.sps", (unsigned long long)bad.shard);
    char *shard = tu_join(copy.dir, name);
    tu_xor_byte(shard, bad.offset + bad.stored_bytes / 2, 0x10);
    char *link = tu_join(g_ds.root, "workers");
    ck_assert_int_eq(symlink(copy.dir, link), 0);
    char url[4300];
    snprintf(url, sizeof url, "%s/workers", rt_env("SP_TEST_HTTP_URL"));
    char *cache = new_cache("cache_written_by_workers");
    char *trace = tu_join(g_ds.root, "cache-workers-trace.json");
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(2 * g_bytes));
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "epochs", "1", "batch_size", "7", "threads", "3", "on_error", "skip",
                             "cache_dir", cache, "cache_size", size, "trace", trace, NULL),
                     0);
    lt_rec r = { 0 };
    int rc;
    do
        rc = lt_drain(l, &copy, &r, UINT64_MAX, 60000);
    while (rc == SP_EEPOCH);
    ck_assert_msg(rc == SP_EDONE, "%d %s", rc, sp_loader_errmsg(l));
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_uint_eq(st.blocks_skipped, 1);
    ck_assert_uint_eq(st.remote_bytes, g_bytes);
    ck_assert_uint_eq(st.cache_admitted, nblocks - 1);
    ck_assert_uint_eq(sum_dir(cache).entries, nblocks - 1);
    ck_assert_uint_eq(st.trace_events_dropped, 0);
    char extra[256];
    snprintf(extra, sizeof extra, "--need 'cache write' --spans 'cache write=%llu' --only-on 'cache write=worker'",
             (unsigned long long)st.cache_admitted);
    tu_check_trace(trace, &st, extra);
    /* the damaged block alone is fetched again */
    lt_rec r2 = { 0 };
    ck_assert_int_eq(lt_open(url, &l, "epochs", "1", "batch_size", "7", "on_error", "skip", "cache_dir", cache,
                             "cache_size", size, NULL),
                     0);
    do
        rc = lt_drain(l, &copy, &r2, UINT64_MAX, 60000);
    while (rc == SP_EEPOCH);
    ck_assert_int_eq(rc, SP_EDONE);
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    sp_loader_close(l);
    ck_assert_uint_eq(st.remote_bytes, bad.stored_bytes);
    ck_assert_uint_eq(st.cache_admitted, 0);
    ck_assert_uint_eq(st.blocks_skipped, 1);
    unlink(link);
    lt_rec_free(&r);
    lt_rec_free(&r2);
    free(link);
    free(shard);
    free(trace);
    free(cache);
    lt_ds_free(&copy);
}
END_TEST

/* ---------------------------------------------------------------- the lock, through rm_cache itself */

#define LK_LEN (1u << 20) /* a block of the default size */

typedef struct lk_ctx {
    rm_obj o;
    uint8_t *buf[16]; /* block k's bytes */
    uint64_t sum[16];
    uint64_t entry;   /* bytes of one entry file */
} lk_ctx;

static uint64_t lk_off(unsigned k) { return 10000000u + (uint64_t)k * LK_LEN; } /* keys of one length */

static void lk_init(lk_ctx *x, unsigned n, uint64_t len)
{
    memset(x, 0, sizeof *x);
    x->o.url = "http://127.0.0.1:9/lock/object";
    x->o.size = UINT64_C(1) << 40;
    snprintf(x->o.etag, sizeof x->o.etag, "\"lock\"");
    ck_assert_uint_le(n, 16);
    for (unsigned k = 0; k < n; k++) {
        tu_rng r = { tu_mix(k + 1) };
        x->buf[k] = malloc(len);
        ck_assert_ptr_nonnull(x->buf[k]);
        tu_fill_random(&r, x->buf[k], len);
        x->sum[k] = sp_checksum64(x->buf[k], len);
    }
    /* one entry's size, from a cache of its own */
    char *probe = new_cache("lock-probe");
    rm_cache *c;
    sp_errbuf eb = { 0 };
    ck_assert_int_eq(rm_cache_open(probe, UINT64_C(1) << 30, &c, &eb), 0);
    rm_use u = { .sum = x->sum[0], .now = 0, .next = 1 };
    rm_cache_put(c, &x->o, lk_off(0), len, x->buf[0], &u, true);
    rm_cache_stats st;
    rm_cache_counters(c, &st);
    rm_cache_close(c);
    x->entry = st.bytes;
    ck_assert_uint_gt(x->entry, len);
    tu_rmtree(probe);
    free(probe);
}

static void lk_free(lk_ctx *x)
{
    for (unsigned k = 0; k < 16; k++)
        free(x->buf[k]);
}

static void lk_put(rm_cache *c, lk_ctx *x, unsigned k, uint64_t next)
{
    rm_use u = { .sum = x->sum[k], .now = 0, .next = next };
    rm_cache_put(c, &x->o, lk_off(k), LK_LEN, x->buf[k], &u, false);
}

/* Whether block k is a hit (its bytes checked), its next use now next. */
static bool lk_get(rm_cache *c, lk_ctx *x, unsigned k, uint64_t next)
{
    uint8_t *b = malloc(LK_LEN);
    ck_assert_ptr_nonnull(b);
    rm_use u = { .sum = x->sum[k], .now = 0, .next = next };
    bool hit = rm_cache_get(c, &x->o, lk_off(k), LK_LEN, b, &u) == 1;
    ck_assert(!hit || memcmp(b, x->buf[k], LK_LEN) == 0);
    free(b);
    return hit;
}

static uint64_t lk_bytes(const rm_cache *c)
{
    rm_cache_stats st;
    rm_cache_counters(c, &st);
    return st.bytes;
}

typedef struct lk_hit {
    rm_cache *c;
    lk_ctx *x;
    unsigned k;
    uint64_t next;
    _Atomic int done; /* 1 miss, 2 hit */
} lk_hit;

static void *lk_hit_thread(void *arg)
{
    lk_hit *h = arg;
    atomic_store(&h->done, lk_get(h->c, h->x, h->k, h->next) ? 2 : 1);
    return NULL;
}

/* Block k looked up (its next use now next) while another open file description holds spc.lock:
 * it must be a hit, returned while the lock is still held. */
static void lk_hit_while_held(rm_cache *c, lk_ctx *x, const char *dir, unsigned k, uint64_t next)
{
    char *lock = tu_join(dir, "spc.lock");
    int fd = open(lock, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    lk_hit h = { .c = c, .x = x, .k = k, .next = next };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, lk_hit_thread, &h), 0);
    /* a lookup takes microseconds; one that waits for the lock never ends while it is held */
    for (int ms = 0; ms < 20000 && !atomic_load(&h.done); ms++) {
        struct timespec ts = { 0, 1000000L };
        nanosleep(&ts, NULL);
    }
    int done = atomic_load(&h.done);
    flock(fd, LOCK_UN);
    close(fd);
    pthread_join(t, NULL);
    free(lock);
    ck_assert_msg(done != 0, "a hit waited for the lock another process held");
    ck_assert_msg(done == 2, "block %u was not a hit", k);
}

/* A hit while another process holds spc.lock returns at once; its next use is in the index once
 * the lock is free and the handle takes it again (a put), and at the close: either way an eviction
 * that depends on it chooses by it. */
START_TEST(cache_hit_while_locked)
{
    lk_ctx x;
    lk_init(&x, 4, LK_LEN);
    char *dir = new_cache("hit_while_locked");
    rm_cache *c;
    sp_errbuf eb = { 0 };
    uint64_t limit = 2 * x.entry + x.entry / 2; /* two entries */
    ck_assert_int_eq(rm_cache_open(dir, limit, &c, &eb), 0);
    lk_put(c, &x, 0, 10);
    lk_put(c, &x, 1, 20);
    ck_assert(lk_get(c, &x, 0, 10) && lk_get(c, &x, 1, 20));
    lk_hit_while_held(c, &x, dir, 0, 30); /* block 0 now used after block 1 */
    /* block 2, used at 25, has room only when block 0's next use (30) is known */
    lk_put(c, &x, 2, 25);
    ck_assert_msg(lk_get(c, &x, 2, 25), "the hit's next use was lost: nothing could be evicted for block 2");
    ck_assert(!lk_get(c, &x, 0, 30));
    ck_assert(lk_get(c, &x, 1, 20));
    /* again, with nothing but the close after the lock is free */
    lk_hit_while_held(c, &x, dir, 1, 100);
    rm_cache_close(c);
    ck_assert_int_eq(rm_cache_open(dir, limit, &c, &eb), 0); /* the index's next uses are kept */
    lk_put(c, &x, 3, 50);
    ck_assert_msg(lk_get(c, &x, 3, 50), "the hit's next use was lost at the close: nothing could be evicted");
    ck_assert(!lk_get(c, &x, 1, 100));
    ck_assert(lk_get(c, &x, 2, 25));
    ck_assert_uint_eq(lk_bytes(c), 2 * x.entry);
    rm_cache_close(c);
    lk_free(&x);
    free(dir);
}
END_TEST

/* A put whose write fails (the file size limit) leaves the account as it was and no file behind;
 * the same block offered again is kept and counted once. */
START_TEST(cache_put_write_fails)
{
    lk_ctx x;
    lk_init(&x, 2, LK_LEN);
    char *dir = new_cache("put_write_fails");
    rm_cache *c;
    sp_errbuf eb = { 0 };
    ck_assert_int_eq(rm_cache_open(dir, 8 * x.entry, &c, &eb), 0);
    lk_put(c, &x, 0, 10);
    ck_assert_uint_eq(lk_bytes(c), x.entry);
    struct rlimit was, small = { 16384, 16384 };
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
    small.rlim_max = was.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    lk_put(c, &x, 1, 20);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &was), 0);
    signal(SIGXFSZ, SIG_DFL);
    ck_assert_uint_eq(lk_bytes(c), x.entry);
    dir_sum d = sum_dir(dir);
    ck_assert_uint_eq(d.entries, 1);
    ck_assert_uint_eq(d.tmp, 0);
    ck_assert(!lk_get(c, &x, 1, 20));
    lk_put(c, &x, 1, 20);
    ck_assert(lk_get(c, &x, 1, 20));
    ck_assert_uint_eq(lk_bytes(c), 2 * x.entry);
    rm_cache_close(c);
    lk_free(&x);
    free(dir);
}
END_TEST

/* A process killed while it writes an entry (the file size limit's signal, in the middle of the
 * write) leaves bytes reserved in the index of a session still running; they are given back when
 * that session needs the room, without an open. */
START_TEST(cache_put_writer_killed)
{
    lk_ctx x;
    lk_init(&x, 3, LK_LEN);
    char *dir = new_cache("put_writer_killed");
    rm_cache *c;
    sp_errbuf eb = { 0 };
    uint64_t limit = 2 * x.entry + x.entry / 2;
    ck_assert_int_eq(rm_cache_open(dir, limit, &c, &eb), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        tu_child_deadline(60);
        rm_cache *k;
        if (rm_cache_open(dir, limit, &k, &eb))
            _exit(1);
        struct rlimit small = { 16384, 16384 };
        signal(SIGXFSZ, SIG_DFL);
        if (setrlimit(RLIMIT_FSIZE, &small))
            _exit(2);
        lk_put(k, &x, 2, 5); /* killed in its write */
        _exit(3);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ, "the writer was not killed midway (%d)", status);
    ck_assert_uint_eq(sum_dir(dir).tmp, 1);
    lk_put(c, &x, 0, 10); /* fits beside the reservation */
    ck_assert_uint_eq(lk_bytes(c), 2 * x.entry);
    lk_put(c, &x, 1, 20); /* fits only once the dead writer's bytes are given back */
    ck_assert_msg(lk_get(c, &x, 1, 20), "a killed writer's bytes stayed reserved");
    ck_assert(lk_get(c, &x, 0, 10));
    ck_assert(!lk_get(c, &x, 2, 5));
    ck_assert_uint_eq(lk_bytes(c), 2 * x.entry);
    dir_sum d = sum_dir(dir);
    ck_assert_uint_eq(d.tmp, 0);
    ck_assert_uint_eq(d.entries, 2);
    rm_cache_close(c);
    lk_free(&x);
    free(dir);
}
END_TEST

#define LK_SAME 12

typedef struct lk_same {
    rm_cache *c;
    lk_ctx *x;
    pthread_barrier_t *bar;
    _Atomic bool *stop;
} lk_same;

static void *lk_same_putter(void *arg)
{
    lk_same *s = arg;
    for (unsigned k = 0; k < LK_SAME; k++) {
        pthread_barrier_wait(s->bar);
        lk_put(s->c, s->x, k, 100 + k);
    }
    return NULL;
}

static void *lk_same_getter(void *arg)
{
    lk_same *s = arg;
    for (unsigned k = 0; !atomic_load(s->stop); k = (k + 1) % LK_SAME)
        lk_get(s->c, s->x, k, 100 + k);
    return NULL;
}

/* Two handles offer the same blocks at the same moments (threads of one process, with a reader
 * looking them up meanwhile on one handle; then two processes): each block is written once and
 * counted once. */
START_TEST(cache_same_block_twice)
{
    lk_ctx x;
    lk_init(&x, LK_SAME, LK_LEN);
    for (int procs = 0; procs < 2; procs++) {
        char *dir = new_cache(procs ? "same_block_procs" : "same_block_threads");
        sp_errbuf eb = { 0 };
        rm_cache *c[2];
        uint64_t admitted = 0;
        if (!procs) {
            for (int i = 0; i < 2; i++)
                ck_assert_int_eq(rm_cache_open(dir, UINT64_C(1) << 30, &c[i], &eb), 0);
            pthread_barrier_t bar;
            pthread_barrier_init(&bar, NULL, 2);
            _Atomic bool stop = false;
            lk_same s[2] = { { c[0], &x, &bar, &stop }, { c[1], &x, &bar, &stop } };
            pthread_t t[3];
            for (int i = 0; i < 2; i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, lk_same_putter, &s[i]), 0);
            ck_assert_int_eq(pthread_create(&t[2], NULL, lk_same_getter, &s[0]), 0);
            pthread_join(t[0], NULL);
            pthread_join(t[1], NULL);
            atomic_store(&stop, true);
            pthread_join(t[2], NULL);
            pthread_barrier_destroy(&bar);
            for (int i = 0; i < 2; i++) {
                rm_cache_stats st;
                rm_cache_counters(c[i], &st);
                admitted += st.admitted;
            }
            rm_cache_close(c[1]);
        } else {
            /* each child offers every block, the two nearly in step (a pipe of tokens) */
            int go[2][2];
            pid_t pid[2];
            for (int i = 0; i < 2; i++)
                ck_assert_int_eq(pipe(go[i]), 0);
            for (int i = 0; i < 2; i++) {
                pid[i] = fork();
                ck_assert_int_ge(pid[i], 0);
                if (pid[i] == 0) {
                    tu_child_deadline(60);
                    rm_cache *k;
                    if (rm_cache_open(dir, UINT64_C(1) << 30, &k, &eb))
                        _exit(1);
                    for (unsigned b = 0; b < LK_SAME; b++) {
                        char t;
                        if (read(go[i][0], &t, 1) != 1)
                            _exit(2);
                        lk_put(k, &x, b, 100 + b);
                    }
                    rm_cache_stats st;
                    rm_cache_counters(k, &st);
                    rm_cache_close(k);
                    _exit(st.admitted <= LK_SAME ? 10 + (int)st.admitted : 3);
                }
            }
            for (unsigned b = 0; b < LK_SAME; b++)
                for (int i = 0; i < 2; i++)
                    ck_assert_int_eq(write(go[i][1], "g", 1), 1);
            for (int i = 0; i < 2; i++) {
                int status;
                ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) >= 10, "child %d failed (%d)", i, status);
                admitted += (uint64_t)WEXITSTATUS(status) - 10;
                close(go[i][0]);
                close(go[i][1]);
            }
            ck_assert_int_eq(rm_cache_open(dir, UINT64_C(1) << 30, &c[0], &eb), 0);
        }
        ck_assert_uint_eq(admitted, LK_SAME);
        lk_put(c[0], &x, 0, 1); /* takes the lock: the account as it is now */
        ck_assert_uint_eq(lk_bytes(c[0]), LK_SAME * x.entry);
        dir_sum d = sum_dir(dir);
        ck_assert_uint_eq(d.entries, LK_SAME);
        ck_assert_uint_eq(d.tmp, 0);
        for (unsigned k = 0; k < LK_SAME; k++)
            ck_assert(lk_get(c[0], &x, k, 100 + k));
        rm_cache_close(c[0]);
        free(dir);
    }
    lk_free(&x);
}
END_TEST


/* ---------------------------------------------------------------- the account under stress */

#define SX_LEN (64u * 1024)
#define SX_N 16

static void sx_put(rm_cache *c, lk_ctx *x, unsigned k, uint64_t next)
{
    rm_use u = { .sum = x->sum[k], .now = 0, .next = next };
    rm_cache_put(c, &x->o, lk_off(k), SX_LEN, x->buf[k], &u, false);
}

static bool sx_get(rm_cache *c, lk_ctx *x, unsigned k, uint64_t next)
{
    static _Thread_local uint8_t b[SX_LEN];
    rm_use u = { .sum = x->sum[k], .now = 0, .next = next };
    bool hit = rm_cache_get(c, &x->o, lk_off(k), SX_LEN, b, &u) == 1;
    if (hit && memcmp(b, x->buf[k], SX_LEN) != 0)
        abort();
    return hit;
}

typedef struct sx_arg {
    rm_cache *c;
    lk_ctx *x;
    uint64_t seed;
    double until;
} sx_arg;

static double sx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *sx_loop(void *arg)
{
    sx_arg *a = arg;
    tu_rng r = { tu_mix(a->seed) };
    while (sx_now() < a->until) {
        unsigned k = (unsigned)(tu_next(&r) % SX_N);
        uint64_t next = 1 + tu_next(&r) % 1000;
        if (!sx_get(a->c, a->x, k, next))
            sx_put(a->c, a->x, k, next);
    }
    return NULL;
}

/* The raw index against the directory, nobody running: what is counted and what is on disk. */
typedef struct sx_check {
    uint64_t n, total, sum, marked, no_file, wrong_size, uncounted_blk, tmp;
} sx_check;

static sx_check sx_inspect(const char *dir)
{
    sx_check k = { 0 };
    char *ip = tu_join(dir, "spc.index");
    size_t len;
    uint8_t *m = tu_read_file(ip, &len);
    ck_assert_ptr_nonnull(m);
    ck_assert(memcmp(m, "SPCIDX02", 8) == 0);
    uint64_t hdr[3];
    memcpy(hdr, m + 8, sizeof hdr);
    k.n = hdr[0];
    k.total = hdr[2];
    typedef struct {
        uint8_t id[16];
        uint64_t bytes, next, writer;
    } rec;
    const rec *r = (const rec *)(m + 32);
    for (uint64_t i = 0; i < k.n; i++) {
        k.sum += r[i].bytes;
        char name[80];
        int o = snprintf(name, sizeof name, "spc-");
        for (int j = 0; j < 16; j++)
            o += snprintf(name + o, sizeof name - o, "%02x", r[i].id[j]);
        snprintf(name + o, sizeof name - o, ".blk");
        char *p = tu_join(dir, name);
        struct stat st;
        if (r[i].writer)
            k.marked++;
        else if (stat(p, &st) != 0)
            k.no_file++;
        else if ((uint64_t)st.st_size != r[i].bytes)
            k.wrong_size++;
        free(p);
    }
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "spc-", 4) || n < 8)
            continue;
        if (!strcmp(e->d_name + n - 4, ".tmp")) {
            k.tmp++;
            continue;
        }
        if (strcmp(e->d_name + n - 4, ".blk"))
            continue;
        bool found = false;
        for (uint64_t i = 0; i < k.n && !found; i++) {
            char name[80];
            int o = snprintf(name, sizeof name, "spc-");
            for (int j = 0; j < 16; j++)
                o += snprintf(name + o, sizeof name - o, "%02x", r[i].id[j]);
            snprintf(name + o, sizeof name - o, ".blk");
            found = !strcmp(name, e->d_name);
        }
        k.uncounted_blk += !found;
    }
    closedir(d);
    free(m);
    free(ip);
    return k;
}

static void sx_print(const char *what, sx_check k)
{
    fprintf(stderr,
            "stress %s: n %llu total %llu sum %llu marked %llu no_file %llu wrong_size %llu uncounted_blk %llu tmp %llu\n",
            what, (unsigned long long)k.n, (unsigned long long)k.total, (unsigned long long)k.sum,
            (unsigned long long)k.marked, (unsigned long long)k.no_file, (unsigned long long)k.wrong_size,
            (unsigned long long)k.uncounted_blk, (unsigned long long)k.tmp);
}

/* What every stress run must end with: the account equal to its records, no record still marked
 * by a writer, no entry file outside the index, none of another size than its record. */
static void sx_assert_settled(sx_check k)
{
    ck_assert_uint_eq(k.total, k.sum);
    ck_assert_uint_eq(k.marked, 0);
    ck_assert_uint_eq(k.uncounted_blk, 0);
    ck_assert_uint_eq(k.wrong_size, 0);
}

/* Threads of two handles in one process, then processes, none killed: the account is exact. */
START_TEST(cache_stress_threads)
{
    lk_ctx x;
    lk_init(&x, SX_N, SX_LEN);
    char *dir = new_cache("stress_threads");
    sp_errbuf eb = { 0 };
    uint64_t limit = 5 * x.entry + x.entry / 2;
    rm_cache *c[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(rm_cache_open(dir, limit, &c[i], &eb), 0);
    pthread_t t[4];
    sx_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (sx_arg){ c[i % 2], &x, 100 + i, sx_now() + 3 };
        ck_assert_int_eq(pthread_create(&t[i], NULL, sx_loop, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        rm_cache_close(c[i]);
    sx_check k = sx_inspect(dir);
    sx_print("threads", k);
    sx_assert_settled(k);
    ck_assert_uint_le(k.total, limit);
    ck_assert_uint_eq(k.no_file, 0);
    ck_assert_uint_eq(k.tmp, 0);
    lk_free(&x);
    free(dir);
}
END_TEST

/* Processes killed at random moments while a session runs on: once every writer is gone and the
 * survivor needs room, no bytes stay reserved and no file is uncounted. */
START_TEST(cache_stress_kills)
{
    lk_ctx x;
    lk_init(&x, SX_N, SX_LEN);
    char *dir = new_cache("stress_kills");
    sp_errbuf eb = { 0 };
    uint64_t limit = 5 * x.entry + x.entry / 2;
    rm_cache *c;
    ck_assert_int_eq(rm_cache_open(dir, limit, &c, &eb), 0);
    tu_rng r = { tu_mix(7) };
    for (int round = 0; round < 30; round++) {
        pid_t pid[3];
        for (int i = 0; i < 3; i++) {
            pid[i] = fork();
            ck_assert_int_ge(pid[i], 0);
            if (pid[i] == 0) {
                tu_child_deadline(30);
                rm_cache *k;
                if (rm_cache_open(dir, limit, &k, &eb))
                    _exit(1);
                pthread_t t[2];
                sx_arg a[2];
                for (int j = 0; j < 2; j++) {
                    a[j] = (sx_arg){ k, &x, (uint64_t)round * 10 + (uint64_t)i * 3 + (uint64_t)j, sx_now() + 10 };
                    pthread_create(&t[j], NULL, sx_loop, &a[j]);
                }
                for (int j = 0; j < 2; j++)
                    pthread_join(t[j], NULL);
                _exit(0);
            }
        }
        struct timespec ts = { 0, (long)(20 + tu_next(&r) % 80) * 1000000L };
        nanosleep(&ts, NULL);
        for (int i = 0; i < 3; i++) {
            kill(pid[i], SIGKILL);
            waitpid(pid[i], NULL, 0);
        }
    }
    sx_check k0 = sx_inspect(dir);
    sx_print("kills, before the survivor settles", k0);
    /* the survivor needs room: every block offered, earliest next uses, so eviction is wanted */
    for (unsigned b = 0; b < SX_N; b++)
        if (!sx_get(c, &x, b, 1))
            sx_put(c, &x, b, 1);
    rm_cache_close(c);
    sx_check k = sx_inspect(dir);
    sx_print("kills, after", k);
    sx_assert_settled(k);
    lk_free(&x);
    free(dir);
}
END_TEST

/* The CLI: bench takes --cache-dir and --cache-size and reports the cache, in text and JSON. */
START_TEST(cache_cli)
{
    char *cache = new_cache("cache_cli");
    char cmd[12000];
    snprintf(cmd, sizeof cmd, "'%s' bench '%s' --epochs 2 --cache-dir '%s' --cache-size 64M --json > '%s/b.json'",
             rt_env("SHARDPACK_CLI"), g_url, cache, g_ds.root);
    ck_assert_int_eq(system(cmd), 0);
    char *p = tu_join(g_ds.root, "b.json");
    char *t = read_text(p);
    ck_assert_msg(strstr(t, "\"cache\":") && strstr(t, "\"hits\":") && strstr(t, "\"remote_bytes\":"), "%s", t);
    free(t);
    snprintf(cmd, sizeof cmd, "'%s' bench '%s' --epochs 1 --cache-dir '%s' --cache-size 64M > '%s/b.txt'",
             rt_env("SHARDPACK_CLI"), g_url, cache, g_ds.root);
    ck_assert_int_eq(system(cmd), 0);
    free(p);
    p = tu_join(g_ds.root, "b.txt");
    t = read_text(p);
    ck_assert_msg(strstr(t, "remote     0.0 MiB of blocks fetched; ") && strstr(t, " transfers at once; cache "), "%s", t);
    /* with a cache on, whatever bounds the run, the advice never says to turn one on */
    ck_assert_msg(!strstr(t, "or a local cache (cache_dir)"), "%s", t);
    free(t);
    free(p);
    free(cache);
}
END_TEST

/* Over S3 (Swift): the second epoch comes from the cache, the batches are the same. */
START_TEST(cache_s3)
{
    char state[4200];
    snprintf(state, sizeof state, "%s/swift", g_ds.root);
    int rc = rt_servers("s3", "start", "--state", state, NULL);
    if (rc == 77)
        return; /* reason printed by servers.py */
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(rt_servers("s3", "mb", "--state", state, "cachebkt", NULL), 0);
    ck_assert_int_eq(rt_servers("s3", "put-dir", "--state", state, "cachebkt", g_ds.dir, "--prefix", "ds/", NULL), 0);
    char *cache = new_cache("cache_s3");
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)(2 * g_bytes));
    lt_rec r = { 0 };
    sp_loader_stats st;
    run("s3://cachebkt/ds", cache, size, "2", &r, &st);
    rt_stop(state);
    check_same(&g_ref, &r);
    ck_assert_uint_eq(st.remote_bytes, g_bytes);
    lt_rec_free(&r);
    free(cache);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make(&g_ds, "remote-cache", 3000, 33, seed, "4K", "64K"))
        return 1;
    snprintf(g_state, sizeof g_state, "%s/servers", g_ds.root);
    int rc = rt_servers("nginx", "start", "--root", g_ds.root, "--state", g_state, "--access-log", NULL);
    if (rc) {
        lt_ds_free(&g_ds);
        return rc == 77 ? 77 : 1;
    }
    snprintf(g_url, sizeof g_url, "%s/data", getenv("SP_TEST_HTTP_URL"));
    snprintf(g_log, sizeof g_log, "%s/logs/nginx-access.log", g_state);
    unsetenv("LOCAL_RANK");
    unsetenv("LOCAL_WORLD_SIZE");
    /* the reference: two epochs from local disk; one uncached epoch's bytes over HTTP */
    lt_rec local = { 0 }, one = { 0 };
    sp_loader *l;
    if (lt_open(g_ds.dir, &l, "epochs", "2", "batch_size", "7", NULL) == 0) {
        do
            rc = lt_drain(l, &g_ds, &local, UINT64_MAX, 60000);
        while (rc == SP_EEPOCH);
        sp_loader_close(l);
    }
    uint64_t at = log_size();
    if (lt_open(g_url, &l, "epochs", "1", "batch_size", "7", NULL) == 0) {
        do
            rc = lt_drain(l, &g_ds, &one, UINT64_MAX, 60000);
        while (rc == SP_EEPOCH);
        sp_loader_stats st = { .struct_size = sizeof st };
        sp_loader_stats_get(l, &st);
        g_bytes = st.remote_bytes;
        sp_loader_close(l);
    }
    g_served = log_bytes(at);
    lt_rec_free(&one);
    if (!g_bytes || local.nb == 0) {
        fprintf(stderr, "the reference runs failed: %s\n", sp_last_error());
        rt_stop(g_state);
        return 1;
    }
    Suite *s = suite_create("remote_cache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cache_whole);
    tcase_add_test(tc, cache_half);
    tcase_add_test(tc, cache_tiny);
    tcase_add_test(tc, cache_foreign_files);
    tcase_add_test(tc, cache_killed_writer);
    tcase_add_test(tc, cache_two_processes);
    tcase_add_test(tc, cache_damaged_entry);
    tcase_add_test(tc, cache_changed_object);
    tcase_add_test(tc, cache_cli);
    tcase_add_test(tc, cache_s3);
    tcase_add_test(tc, cache_hit_between_joined_reads);
    tcase_add_test(tc, cache_read_after_unreaped);
    tcase_add_test(tc, cache_written_by_workers);
    suite_add_tcase(s, tc);
    TCase *lock = tcase_create("lock");
    tcase_set_timeout(lock, 120);
    tcase_add_test(lock, cache_hit_while_locked);
    tcase_add_test(lock, cache_put_write_fails);
    tcase_add_test(lock, cache_put_writer_killed);
    tcase_add_test(lock, cache_same_block_twice);
    suite_add_tcase(s, lock);
    TCase *sx = tcase_create("stress");
    tcase_set_timeout(sx, 120);
    tcase_add_test(sx, cache_stress_threads);
    tcase_add_test(sx, cache_stress_kills);
    suite_add_tcase(s, sx);
    g_ref = local;
    rc = tu_run(s, seed);
    lt_rec_free(&g_ref);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    return rc;
}
