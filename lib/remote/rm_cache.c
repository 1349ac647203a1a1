/* rm_cache.c - fetched blocks kept in a local directory for later epochs, evicted by next use.
 *
 * One file per block, named spc-<128-bit hash of its key>.blk: a 64-byte header (magic, key length,
 * payload length and checksum), the key (URL, ETag, object size, offset, length, the block's
 * checksum), then the block's bytes. A file is written as spc-<id>.<pid>-<n>.tmp, held under flock
 * from its creation until its writer has settled its entry in the index, and renamed into place
 * without replacing anything: a reader opens only complete files, and a temporary file whose writer
 * died (its flock gone) is removed at the next open. The directory's index (spc.index: every
 * entry's id, bytes, next use and writer) is mapped shared and touched only under flock on
 * spc.lock, so several processes keep one account of the bytes; it is rebuilt from the directory
 * at every open. Only names of this form that begin with the magic are ever removed: other files
 * in the directory are left alone and not counted.
 *
 * Nobody writes a block's bytes under that lock (a block is a megabyte or more; the lock is wanted
 * by every rank's reader). rm_cache_put admits an entry under the lock and reserves its bytes with
 * a record marked with its writer (its pid and the number of its temporary file, created and
 * flocked there too), writes and renames the file without the lock, and takes it again to clear
 * the mark (or to drop the record, giving the bytes back, when the write failed). A marked record
 * is never evicted, and nobody else writes that block meanwhile. Its writer is known alive by the
 * flock on its file (the temporary, or the entry once renamed): a record whose writer was killed
 * is settled, its bytes given back or its renamed file counted as an entry, when room is short or
 * the same block is offered again, and at every open, so a dead writer's bytes do not stay
 * reserved in a live session.
 *
 * Eviction is Belady's: the caller gives each block's next use in its planned order; room is made
 * by evicting the entries used furthest in the future, and a block used later than every entry
 * that would have to go is not admitted. A cache smaller than one block admits nothing.
 *
 * A handle is shared by the threads of one loader: the reader looks entries up (rm_cache_get) and
 * the decode workers offer the blocks they have verified (rm_cache_put). flock is held per open
 * file description, so it does not keep a process's own threads apart: a mutex of the handle is
 * taken before it, and everything that touches the index or the set of files holds both. A hit
 * records the entry's new next use without waiting: when the mutex or the flock is busy, the
 * update waits in a short list of the handle, applied by whoever takes the lock next (a get, a
 * put, or the close); only a full list makes a hit wait for the lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "rm.h"
#include "sp_file.h"

#define RC_MAGIC "SPCACHE1"
#define RC_IMAGIC "SPCIDX02" /* 02: records name their writer */
#define RC_HDR 64u
#define RC_KEYMAX 2048u
#define RC_VERSION 1u
/* An entry whose next use is this far (a quarter epoch) behind the reader has been missed: its
 * reader is gone or its plan changed, so it is evicted first. */
#define RC_STALE (UINT64_C(1) << 30)
/* Next uses of hits kept by a handle while the lock is busy (see the top). */
#define RC_PENDING 64

/* The temporary files of this process: numbered across its handles, so that two never share a name. */
static _Atomic uint32_t rc_seq;

typedef struct rc_rec {
    uint8_t id[16];
    uint64_t bytes, next;
    uint64_t writer; /* 0: the entry file is in place; else pid << 32 | n of spc-<id>.<pid>-<n>.tmp being written */
} rc_rec;

typedef struct rc_pending {
    uint8_t id[16];
    uint64_t next;
} rc_pending;

typedef struct rc_ihdr {
    char magic[8];
    uint64_t n, cap, total;
} rc_ihdr;

struct rm_cache {
    int dfd, lockfd, idxfd;
    uint64_t limit;
    rc_ihdr *map;
    size_t maplen;
    pthread_mutex_t mu; /* this process's threads, before the flock on lockfd */
    pthread_mutex_t pmu; /* pending and npending only; taken with nothing else or after mu, never across I/O */
    rc_pending pending[RC_PENDING];
    unsigned npending;
    _Atomic uint64_t hits, misses, hit_bytes, admitted, evictions, discarded, bytes_now;
};

static rc_rec *recs(const rm_cache *c) { return (rc_rec *)(c->map + 1); }
static size_t idx_len(uint64_t cap) { return sizeof(rc_ihdr) + cap * sizeof(rc_rec); }

static void id_name(const uint8_t id[16], const char *suffix, char *out, size_t n)
{
    int k = snprintf(out, n, "spc-");
    for (int i = 0; i < 16; i++)
        k += snprintf(out + k, n - (size_t)k, "%02x", id[i]);
    snprintf(out + k, n - (size_t)k, "%s", suffix);
}

/* The id in a name spc-<32 lowercase hex digits>..., into id. */
static bool name_id(const char *name, uint8_t id[16])
{
    if (strncmp(name, "spc-", 4))
        return false;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        char h[3] = { name[4 + 2 * i], name[5 + 2 * i], 0 };
        if (!strchr("0123456789abcdef", h[0]) || !strchr("0123456789abcdef", h[1]) || !h[0] || !h[1] ||
            sscanf(h, "%2x", &v) != 1)
            return false;
        id[i] = (uint8_t)v;
    }
    return true;
}

static bool is_entry_name(const char *name, uint8_t id[16])
{
    return name_id(name, id) && strcmp(name + 36, ".blk") == 0;
}

/* spc-<id>.<digits>-<digits>.tmp */
static bool is_tmp_name(const char *name)
{
    uint8_t id[16];
    if (!name_id(name, id) || name[36] != '.')
        return false;
    const char *p = name + 37;
    size_t a = strspn(p, "0123456789");
    if (!a || p[a] != '-')
        return false;
    p += a + 1;
    size_t b = strspn(p, "0123456789");
    return b && strcmp(p + b, ".tmp") == 0;
}

/* The temporary file of writer w (pid << 32 | n) for id. */
static void tmp_name(const uint8_t id[16], uint64_t w, char *out, size_t n)
{
    char stem[64];
    id_name(id, "", stem, sizeof stem);
    snprintf(out, n, "%s.%u-%u.tmp", stem, (unsigned)(w >> 32), (unsigned)(w & 0xffffffffu));
}

static bool read_at(int fd, void *buf, uint64_t n, uint64_t off) { return sp_pread_all(fd, buf, n, off) == 0; }

static void id_of(const char *key, size_t n, uint8_t id[16])
{
    XXH128_hash_t h = XXH3_128bits(key, n);
    for (int i = 0; i < 8; i++) {
        id[i] = (uint8_t)(h.high64 >> (56 - 8 * i));
        id[8 + i] = (uint8_t)(h.low64 >> (56 - 8 * i));
    }
}

/* The key of bytes [off, off + len) of o whose checksum is sum, and its id. 0 when o cannot be
 * cached: a server that sends no ETag could replace the object unseen. */
static size_t make_key(const rm_obj *o, uint64_t off, uint64_t len, uint64_t sum, char *key, uint8_t id[16])
{
    rm_known k;
    rm_obj_known(o, &k);
    if (!k.etag[0] || k.size == UINT64_MAX)
        return 0;
    char *url = rm_display_url(o->url); /* the same object whatever credentials reach it */
    if (!url)
        return 0;
    int n = snprintf(key, RC_KEYMAX, "%s\n%s\n%llu\n%llu\n%llu\n%016llx", url, k.etag, (unsigned long long)k.size,
                     (unsigned long long)off, (unsigned long long)len, (unsigned long long)sum);
    sp_free(url);
    if (n <= 0 || (size_t)n >= RC_KEYMAX)
        return 0;
    id_of(key, (size_t)n, id);
    return (size_t)n;
}

/* ---------------------------------------------------------------- the index, under the lock */

static bool map_index(rm_cache *c, size_t len)
{
    if (c->map && c->maplen == len)
        return true;
    if (c->map)
        munmap(c->map, c->maplen);
    c->map = NULL;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, c->idxfd, 0);
    if (m == MAP_FAILED)
        return false;
    c->map = m;
    c->maplen = len;
    return true;
}

static int64_t find(const rm_cache *c, const uint8_t id[16]);

/* The next uses hits left while the lock was busy, into the index; mu and the flock held. */
static void apply_pending(rm_cache *c)
{
    rc_pending p[RC_PENDING];
    pthread_mutex_lock(&c->pmu);
    unsigned n = c->npending;
    memcpy(p, c->pending, n * sizeof *p);
    c->npending = 0;
    pthread_mutex_unlock(&c->pmu);
    for (unsigned k = 0; k < n; k++) {
        int64_t i = find(c, p[k].id);
        if (i >= 0)
            recs(c)[i].next = p[k].next;
    }
}

/* The mutex, then the flock on spc.lock, and the index mapped: waiting for them, or (!wait) false
 * at once when either is busy. */
static bool take_dir(rm_cache *c, bool wait)
{
    if (wait)
        pthread_mutex_lock(&c->mu);
    else if (pthread_mutex_trylock(&c->mu) != 0)
        return false;
    while (flock(c->lockfd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) != 0)
        if (!wait || errno != EINTR) {
            pthread_mutex_unlock(&c->mu);
            return false;
        }
    struct stat st;
    if (fstat(c->idxfd, &st) == 0 && st.st_size >= (off_t)sizeof(rc_ihdr) && map_index(c, (size_t)st.st_size) &&
        memcmp(c->map->magic, RC_IMAGIC, 8) == 0 && idx_len(c->map->cap) <= c->maplen && c->map->n <= c->map->cap) {
        apply_pending(c);
        return true;
    }
    flock(c->lockfd, LOCK_UN); /* an index that is not (yet) ours: the cache sits this one out */
    pthread_mutex_unlock(&c->mu);
    return false;
}

static bool lock_dir(rm_cache *c) { return take_dir(c, true); }

static void unlock_dir(rm_cache *c)
{
    atomic_store(&c->bytes_now, c->map->total);
    flock(c->lockfd, LOCK_UN);
    pthread_mutex_unlock(&c->mu);
}

static int64_t find(const rm_cache *c, const uint8_t id[16])
{
    const rc_rec *r = recs(c);
    for (uint64_t i = 0; i < c->map->n; i++)
        if (memcmp(r[i].id, id, 16) == 0)
            return (int64_t)i;
    return -1;
}

static void drop(rm_cache *c, uint64_t i)
{
    rc_rec *r = recs(c);
    c->map->total -= r[i].bytes;
    r[i] = r[--c->map->n];
}

/* The record of id that writer w has marked, or -1 (settled by another since: see settle). */
static int64_t find_writer(const rm_cache *c, const uint8_t id[16], uint64_t w)
{
    const rc_rec *r = recs(c);
    for (uint64_t i = 0; i < c->map->n; i++)
        if (r[i].writer == w && memcmp(r[i].id, id, 16) == 0)
            return (int64_t)i;
    return -1;
}

/* A record for id (marked with its writer, or 0), filled before it is counted in. */
static bool add(rm_cache *c, const uint8_t id[16], uint64_t bytes, uint64_t next, uint64_t writer)
{
    if (c->map->n == c->map->cap) {
        uint64_t cap = c->map->cap ? 2 * c->map->cap : 64;
        if (ftruncate(c->idxfd, (off_t)idx_len(cap)) != 0 || !map_index(c, idx_len(cap)))
            return false;
        c->map->cap = cap;
    }
    rc_rec *r = &recs(c)[c->map->n];
    memcpy(r->id, id, 16);
    r->bytes = bytes;
    r->next = next;
    r->writer = writer;
    c->map->n++;
    c->map->total += bytes;
    return true;
}

/* When an entry will be used, as eviction sees it: one missed long ago counts as never. */
static uint64_t due(const rc_rec *r, uint64_t now)
{
    return now > RC_STALE && r->next < now - RC_STALE ? UINT64_MAX : r->next;
}

static void evict(rm_cache *c, uint64_t i)
{
    char name[64];
    id_name(recs(c)[i].id, ".blk", name, sizeof name);
    unlinkat(c->dfd, name, 0);
    drop(c, i);
    atomic_fetch_add(&c->evictions, 1);
}

static int check_entry(int fd, const uint8_t id[16], uint64_t *bytes);
static void clean_tmp(rm_cache *c, const char *name);

/* Whether writer w of id is still at it: the file it writes (its temporary file, or the entry it
 * has renamed that to) is under its flock, which it keeps until it has settled its record. Only
 * holders of the lock ask, so they never see each other's brief flock here. */
static bool writer_alive(const rm_cache *c, const uint8_t id[16], uint64_t w)
{
    char name[96];
    tmp_name(id, w, name, sizeof name);
    int fd = openat(c->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        id_name(id, ".blk", name, sizeof name);
        fd = openat(c->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        return false;
    bool alive = flock(fd, LOCK_SH | LOCK_NB) != 0; /* ours when free: closing lets it go */
    close(fd);
    return alive;
}

/* Record i, marked by a writer that is gone: its temporary file removed and the record dropped
 * (its bytes given back), or the entry it had renamed into place counted as it stands. */
static void settle(rm_cache *c, uint64_t i)
{
    rc_rec *r = &recs(c)[i];
    char name[96], blk[64];
    tmp_name(r->id, r->writer, name, sizeof name);
    id_name(r->id, ".blk", blk, sizeof blk);
    struct stat a, b;
    if (fstatat(c->dfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0) {
        /* it died before the rename; or, where link stands in for it, between the link and the
         * unlink of the temporary name: the entry is in place under both names */
        if (fstatat(c->dfd, blk, &b, AT_SYMLINK_NOFOLLOW) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            clean_tmp(c, name);
            drop(c, i);
            return;
        }
        unlinkat(c->dfd, name, 0);
    }
    snprintf(name, sizeof name, "%s", blk);
    int fd = openat(c->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    uint64_t bytes = 0;
    int k = fd >= 0 ? check_entry(fd, r->id, &bytes) : -1;
    if (fd >= 0)
        close(fd);
    if (k == 1) {
        c->map->total += bytes - r->bytes;
        r->bytes = bytes;
        r->writer = 0;
        return;
    }
    if (k == 0) {
        unlinkat(c->dfd, name, 0);
        atomic_fetch_add(&c->discarded, 1);
    }
    drop(c, i);
}

/* Settles the records whose writers are gone. */
static void reap(rm_cache *c)
{
    for (uint64_t i = 0; i < c->map->n;) {
        const rc_rec *r = &recs(c)[i];
        uint64_t n = c->map->n;
        if (r->writer && !writer_alive(c, r->id, r->writer)) {
            settle(c, i);
            if (c->map->n < n)
                continue; /* i holds another record now */
        }
        i++;
    }
}

/* Room for bytes used at next: evicts the entries used furthest in the future, but only those
 * used after next, and nothing at all unless that makes enough room. Entries being written are
 * not evicted (their writers would rename a file nobody counts); those of writers that are gone
 * are settled first. */
static bool make_room(rm_cache *c, uint64_t bytes, uint64_t next, uint64_t now)
{
    if (c->map->total + bytes <= c->limit)
        return true;
    reap(c);
    uint64_t freeable = 0;
    for (uint64_t i = 0; i < c->map->n; i++)
        if (!recs(c)[i].writer && due(&recs(c)[i], now) > next)
            freeable += recs(c)[i].bytes;
    if (c->map->total - freeable + bytes > c->limit)
        return false;
    while (c->map->total + bytes > c->limit) {
        int64_t best = -1;
        for (uint64_t i = 0; i < c->map->n; i++)
            if (!recs(c)[i].writer && (best < 0 || due(&recs(c)[i], now) > due(&recs(c)[best], now)))
                best = (int64_t)i;
        evict(c, (uint64_t)best); /* there is one: the unmarked ones used after next make room */
    }
    return true;
}

/* ---------------------------------------------------------------- open: the index from the directory */

/* What an entry file holds, from its header: 1 a whole entry of ours (*bytes: its size), 0 one of
 * ours that is cut or damaged, -1 not ours. */
static int check_entry(int fd, const uint8_t id[16], uint64_t *bytes)
{
    uint8_t h[RC_HDR];
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 8 || !read_at(fd, h, 8, 0) || memcmp(h, RC_MAGIC, 8) != 0)
        return -1;
    if (st.st_size < RC_HDR || !read_at(fd, h, RC_HDR, 0))
        return 0; /* ours, cut within its header */
    uint32_t klen = sp_ld32(h + 12);
    uint64_t len = sp_ld64(h + 16);
    if (sp_ld32(h + 8) != RC_VERSION || klen == 0 || klen >= RC_KEYMAX || (uint64_t)st.st_size != RC_HDR + klen + len)
        return 0;
    char key[RC_KEYMAX];
    if (!read_at(fd, key, klen, RC_HDR))
        return 0;
    uint8_t k[16];
    id_of(key, klen, k);
    if (memcmp(k, id, 16) != 0)
        return 0;
    *bytes = (uint64_t)st.st_size;
    return 1;
}

/* A temporary file whose writer is gone (its flock is free) and that is empty or begins like ours. */
static void clean_tmp(rm_cache *c, const char *name)
{
    int fd = openat(c->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    struct stat st;
    char magic[8];
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_size == 0 || (read_at(fd, magic, 8, 0) && memcmp(magic, RC_MAGIC, 8) == 0)))
        unlinkat(c->dfd, name, 0);
    close(fd);
}

static int rebuild(rm_cache *c, sp_errbuf *eb, const char *dir)
{
    /* the next uses the index knew, kept for the entries still there */
    rc_rec *old = NULL;
    uint64_t nold = 0;
    struct stat st;
    if (fstat(c->idxfd, &st) == 0 && st.st_size >= (off_t)sizeof(rc_ihdr) && map_index(c, (size_t)st.st_size) &&
        memcmp(c->map->magic, RC_IMAGIC, 8) == 0 && c->map->n <= c->map->cap && idx_len(c->map->cap) <= c->maplen) {
        nold = c->map->n;
        old = sp_malloc(nold * sizeof *old + 1);
        if (!old)
            return sp_fail(eb, SP_ENOMEM, "cache %s: out of memory reading its index", dir);
        memcpy(old, recs(c), nold * sizeof *old);
    }
    int dfd2 = dup(c->dfd);
    DIR *d = dfd2 >= 0 ? fdopendir(dfd2) : NULL;
    if (!d) {
        if (dfd2 >= 0)
            close(dfd2);
        sp_free(old);
        return sp_fail(eb, SP_EIO, "cache %s: cannot list it: %s", dir, strerror(errno));
    }
    rewinddir(d);
    uint64_t cap = 64;
    if (ftruncate(c->idxfd, (off_t)idx_len(cap > nold ? cap : nold)) != 0 ||
        !map_index(c, idx_len(cap > nold ? cap : nold))) {
        closedir(d);
        sp_free(old);
        return sp_fail(eb, SP_EIO, "cache %s: cannot write spc.index: %s", dir, strerror(errno));
    }
    memcpy(c->map->magic, RC_IMAGIC, 8);
    c->map->n = 0;
    c->map->cap = (c->maplen - sizeof(rc_ihdr)) / sizeof(rc_rec);
    c->map->total = 0;
    int rc = SP_OK;
    /* entries another process is writing now keep their records (and their bytes reserved); those
     * whose writers are gone do not: their temporary files are cleaned below, a renamed file counted */
    for (uint64_t i = 0; i < nold && rc == SP_OK; i++)
        if (old[i].writer && writer_alive(c, old[i].id, old[i].writer)) {
            if (!add(c, old[i].id, old[i].bytes, old[i].next, old[i].writer))
                rc = sp_fail(eb, SP_EIO, "cache %s: cannot grow spc.index: %s", dir, strerror(errno));
        }
    uint64_t carried = c->map->n; /* the first records */
    struct dirent *e;
    while (rc == SP_OK && (e = readdir(d))) {
        uint8_t id[16];
        if (is_tmp_name(e->d_name)) {
            clean_tmp(c, e->d_name);
            continue;
        }
        if (!is_entry_name(e->d_name, id))
            continue;
        bool writing = false; /* renamed by a writer still at it: its record is carried */
        for (uint64_t i = 0; i < carried; i++)
            writing = writing || memcmp(recs(c)[i].id, id, 16) == 0;
        if (writing)
            continue;
        int fd = openat(c->dfd, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        uint64_t bytes = 0;
        int k = check_entry(fd, id, &bytes);
        close(fd);
        if (k == 0) {
            unlinkat(c->dfd, e->d_name, 0); /* ours, cut by a crash or damaged */
            atomic_fetch_add(&c->discarded, 1);
        }
        if (k != 1)
            continue;
        uint64_t next = 0; /* unknown: evicted first */
        for (uint64_t i = 0; i < nold; i++)
            if (memcmp(old[i].id, id, 16) == 0)
                next = old[i].next;
        if (!add(c, id, bytes, next, 0)) {
            rc = sp_fail(eb, SP_EIO, "cache %s: cannot grow spc.index: %s", dir, strerror(errno));
            break;
        }
    }
    closedir(d);
    sp_free(old);
    /* cache_size lowered since: the unknown (0) and the furthest go first, never one being written */
    while (rc == SP_OK && c->map->total > c->limit) {
        int64_t best = -1;
        for (uint64_t i = 0; i < c->map->n; i++)
            if (!recs(c)[i].writer && (best < 0 || recs(c)[i].next - 1 > recs(c)[best].next - 1))
                best = (int64_t)i;
        if (best < 0)
            break;
        evict(c, (uint64_t)best);
    }
    return rc;
}

int rm_cache_open(const char *dir, uint64_t limit, rm_cache **out, sp_errbuf *eb)
{
    *out = NULL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return sp_fail(eb, errno == ENOENT ? SP_ENOENT : SP_EIO, "cache_dir %s: cannot create it: %s", dir,
                       strerror(errno));
    rm_cache *c = sp_calloc(1, sizeof *c);
    if (!c)
        return sp_fail(eb, SP_ENOMEM, "out of memory opening cache_dir %s", dir);
    c->limit = limit;
    c->lockfd = c->idxfd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->pmu, NULL);
    c->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = SP_OK;
    if (c->dfd < 0) {
        rc = sp_fail(eb, SP_EIO, "cache_dir %s: cannot open it: %s", dir, strerror(errno));
        goto fail;
    }
    c->lockfd = openat(c->dfd, "spc.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    c->idxfd = openat(c->dfd, "spc.index", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (c->lockfd < 0 || c->idxfd < 0) {
        rc = sp_fail(eb, SP_EIO, "cache_dir %s: cannot create spc.lock and spc.index there: %s", dir,
                     strerror(errno));
        goto fail;
    }
    while (flock(c->lockfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rc = sp_fail(eb, SP_EIO, "cache_dir %s: cannot lock spc.lock: %s", dir, strerror(errno));
            goto fail;
        }
    }
    rc = rebuild(c, eb, dir);
    if (c->map)
        atomic_store(&c->bytes_now, c->map->total);
    flock(c->lockfd, LOCK_UN);
    if (rc)
        goto fail;
    *out = c;
    return SP_OK;
fail:
    rm_cache_close(c);
    return rc;
}

void rm_cache_close(rm_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->pmu);
    bool pending = c->npending > 0;
    pthread_mutex_unlock(&c->pmu);
    if (pending && c->map && lock_dir(c)) /* the hits' next uses not yet in the index */
        unlock_dir(c);
    if (c->map)
        munmap(c->map, c->maplen);
    if (c->idxfd >= 0)
        close(c->idxfd);
    if (c->lockfd >= 0)
        close(c->lockfd);
    if (c->dfd >= 0)
        close(c->dfd);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->pmu);
    sp_free(c);
}

/* ---------------------------------------------------------------- reads and writes */

/* Whether the key in entry file fd (header h) is the one its id names: one whose key does not is
 * damaged, one whose key does is another block's (a hash collision). */
static bool own_key(int fd, const uint8_t h[RC_HDR], const uint8_t id[16])
{
    char key[RC_KEYMAX];
    uint32_t klen = sp_ld32(h + 12);
    if (klen == 0 || klen >= RC_KEYMAX || !read_at(fd, key, klen, RC_HDR))
        return false;
    uint8_t k[16];
    id_of(key, klen, k);
    return memcmp(k, id, 16) == 0;
}

/* A damaged entry file (fd, at name) goes, unless another has replaced it meanwhile. */
static void discard(rm_cache *c, int fd, const char *name, const uint8_t id[16])
{
    atomic_fetch_add(&c->discarded, 1);
    if (!lock_dir(c))
        return;
    struct stat a, b;
    if (fstat(fd, &a) == 0 && fstatat(c->dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev)
        unlinkat(c->dfd, name, 0);
    int64_t i = find(c, id);
    if (i >= 0 && !recs(c)[i].writer) /* a marked one is its writer's to settle */
        drop(c, (uint64_t)i);
    unlock_dir(c);
}

/* id's next use after a hit, without waiting for the lock while anyone holds it (see the top). */
static void note_next(rm_cache *c, const uint8_t id[16], uint64_t next)
{
    if (!take_dir(c, false)) {
        pthread_mutex_lock(&c->pmu);
        unsigned k = 0;
        while (k < c->npending && memcmp(c->pending[k].id, id, 16) != 0)
            k++;
        bool kept = k < RC_PENDING;
        if (kept) {
            memcpy(c->pending[k].id, id, 16);
            c->pending[k].next = next;
            c->npending += k == c->npending;
        }
        pthread_mutex_unlock(&c->pmu);
        if (kept || !lock_dir(c))
            return;
    }
    int64_t i = find(c, id);
    if (i >= 0)
        recs(c)[i].next = next;
    unlock_dir(c);
}

int rm_cache_get(rm_cache *c, const rm_obj *o, uint64_t off, uint64_t len, uint8_t *buf, const rm_use *u)
{
    char key[RC_KEYMAX], name[64];
    uint8_t id[16];
    size_t klen = make_key(o, off, len, u->sum, key, id);
    int fd = -1;
    if (klen) {
        id_name(id, ".blk", name, sizeof name);
        fd = openat(c->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        atomic_fetch_add(&c->misses, 1);
        return 0;
    }
    uint8_t h[RC_HDR];
    char got[RC_KEYMAX];
    struct stat st;
    bool ours = read_at(fd, h, RC_HDR, 0) && memcmp(h, RC_MAGIC, 8) == 0;
    /* the same id with another key (a hash collision) is another entry: a miss, nothing removed */
    bool same = ours && sp_ld32(h + 12) == klen && read_at(fd, got, klen, RC_HDR) && memcmp(got, key, klen) == 0;
    bool whole = same && sp_ld32(h + 8) == RC_VERSION && sp_ld64(h + 16) == len && sp_ld64(h + 24) == u->sum &&
                 fstat(fd, &st) == 0 && (uint64_t)st.st_size == RC_HDR + klen + len &&
                 read_at(fd, buf, len, RC_HDR + klen) && sp_checksum64(buf, len) == u->sum;
    if (ours && (same ? !whole : !own_key(fd, h, id)))
        discard(c, fd, name, id);
    close(fd);
    if (!whole) {
        atomic_fetch_add(&c->misses, 1);
        return 0;
    }
    note_next(c, id, u->next);
    atomic_fetch_add(&c->hits, 1);
    atomic_fetch_add(&c->hit_bytes, len);
    return 1;
}

void rm_cache_unmiss(rm_cache *c) { atomic_fetch_sub(&c->misses, 1); }

/* Writes the entry into fd (temporary file tmp, created empty and flocked) and renames it to name,
 * replacing nothing. On failure tmp is left for the caller to remove. */
static bool write_entry(rm_cache *c, int fd, const char *tmp, const char *name, const char *key, size_t klen,
                        const uint8_t *buf, uint64_t len, uint64_t sum)
{
    uint8_t h[RC_HDR] = { 0 };
    memcpy(h, RC_MAGIC, 8);
    sp_st32(h + 8, RC_VERSION);
    sp_st32(h + 12, (uint32_t)klen);
    sp_st64(h + 16, len);
    sp_st64(h + 24, sum);
    if (sp_write_all(fd, h, RC_HDR) != 0 || sp_write_all(fd, key, klen) != 0 || sp_write_all(fd, buf, len) != 0)
        return false;
    if (renameat2(c->dfd, tmp, c->dfd, name, RENAME_NOREPLACE) == 0)
        return true;
    /* a file system without RENAME_NOREPLACE: link refuses an existing name as well */
    if ((errno != EINVAL && errno != ENOSYS) || linkat(c->dfd, tmp, c->dfd, name, 0) != 0)
        return false;
    unlinkat(c->dfd, tmp, 0); /* the entry's name holds it now: its writer is still known by the flock */
    return true;
}

/* Whether the file at name is the one open as fd. */
static bool same_file(const rm_cache *c, int fd, const char *name)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstatat(c->dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

void rm_cache_put(rm_cache *c, const rm_obj *o, uint64_t off, uint64_t len, const uint8_t *buf, const rm_use *u,
                  bool checked)
{
    char key[RC_KEYMAX], name[64], tmp[96];
    uint8_t id[16];
    size_t klen = make_key(o, off, len, u->sum, key, id);
    uint64_t bytes = RC_HDR + klen + len;
    /* bytes that do not match the block's checksum are not kept (a caller that has compared them
     * already, as a decode worker does before it decodes a block, says so: hashed once) */
    if (!klen || bytes > c->limit || (!checked && sp_checksum64(buf, len) != u->sum))
        return;
    id_name(id, ".blk", name, sizeof name);
    if (!lock_dir(c))
        return;
    int64_t i = find(c, id);
    if (i >= 0 && recs(c)[i].writer && !writer_alive(c, id, recs(c)[i].writer)) {
        settle(c, (uint64_t)i);
        i = find(c, id);
    }
    bool exists = faccessat(c->dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (i >= 0 && (exists || recs(c)[i].writer)) { /* another process fetched it meanwhile, or writes it now */
        if (u->next < recs(c)[i].next)
            recs(c)[i].next = u->next;
        unlock_dir(c);
        return;
    }
    if (i >= 0) {
        drop(c, (uint64_t)i); /* its file went with a process killed between the two */
        i = -1;
    }
    /* a file of that name outside the index is not ours to replace */
    if (exists || !make_room(c, bytes, u->next, u->now)) {
        unlock_dir(c);
        return;
    }
    /* The temporary file, created and flocked first, then the bytes reserved by a record marked
     * with it, all before the lock goes: whoever looks meanwhile finds this writer alive, and a
     * writer killed in between leaves no record without a file to tell it by. */
    uint64_t w = (uint64_t)(uint32_t)getpid() << 32 | atomic_fetch_add(&rc_seq, 1);
    tmp_name(id, w, tmp, sizeof tmp);
    int fd = openat(c->dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
    bool held = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (!held || !add(c, id, bytes, u->next, w)) {
        if (fd >= 0) {
            unlinkat(c->dfd, tmp, 0);
            close(fd);
        }
        unlock_dir(c);
        return;
    }
    unlock_dir(c);

    bool ok = write_entry(c, fd, tmp, name, key, klen, buf, len, u->sum);

    if (lock_dir(c)) {
        int64_t k = find_writer(c, id, w);
        if (k >= 0 && ok && same_file(c, fd, name)) {
            recs(c)[k].writer = 0;
            atomic_fetch_add(&c->admitted, 1);
        } else {
            if (k >= 0)
                drop(c, (uint64_t)k); /* the bytes given back */
            else if (ok && find(c, id) < 0 && same_file(c, fd, name))
                unlinkat(c->dfd, name, 0); /* ours, and counted by nobody */
            if (!ok)
                unlinkat(c->dfd, tmp, 0);
        }
        unlock_dir(c);
    } else if (!ok) {
        unlinkat(c->dfd, tmp, 0);
    }
    close(fd); /* the flock goes last: until the record is settled, this writer is alive */
}

void rm_cache_counters(const rm_cache *c, rm_cache_stats *s)
{
    s->hits = atomic_load(&c->hits);
    s->misses = atomic_load(&c->misses);
    s->hit_bytes = atomic_load(&c->hit_bytes);
    s->admitted = atomic_load(&c->admitted);
    s->evictions = atomic_load(&c->evictions);
    s->discarded = atomic_load(&c->discarded);
    s->bytes = atomic_load(&c->bytes_now);
}
