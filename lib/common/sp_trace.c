/* sp_trace.c - per-thread event rings written as Chrome trace-event JSON; NVTX ranges in a CUDA
 * build (sp_trace.h). */
#include "sp_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "sp_config.h"
#if SP_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#define SP_NVTX 1
#else
#define SP_NVTX 0
#endif

static const char *const span_names[SPT_NAMES_] = {
    [SPT_READ] = "read",
    [SPT_READ_WAIT] = "wait for a read",
    [SPT_SLOT_WAIT] = "wait for a free batch slot",
    [SPT_SPACE_WAIT] = "wait for read-ring space",
    [SPT_PLAN] = "plan epoch",
    [SPT_BLOCK] = "block",
    [SPT_DECODE] = "block decode",
    [SPT_IMAGE] = "image decode",
    [SPT_BATCH_DONE] = "batch completion",
    [SPT_NEXT] = "next",
    [SPT_CONSUMER_WAIT] = "consumer wait",
    [SPT_COPY] = "copy",
    [SPT_COPY_WAIT] = "wait for a device slot",
    [SPT_IDLE] = "idle",
    [SPT_CACHE_WRITE] = "cache write",
};

static const char *const counter_names[SPC_COUNTERS_] = {
    [SPC_SLOTS] = "batch slots in use",
    [SPC_READY] = "batches ready",
    [SPC_HOST_BYTES] = "host bytes in use",
    [SPC_DEVICE_BYTES] = "device bytes in use",
    [SPC_INFLIGHT] = "jobs in flight",
};

#define COUNTER_EVENTS (1u << 16) /* the counters' ring, at most (a quarter of the events, at least 256) */
#define TRACK_NAME 32

typedef struct ev {
    uint64_t t0;   /* ns since the trace opened */
    uint64_t dur;  /* ns; a counter's value */
    uint64_t arg;  /* block, or an async span's id; UINT64_MAX for none */
    uint8_t name;  /* sp_trace_name or sp_trace_counter */
    uint8_t async; /* 1: an async span */
} ev;

typedef struct trk {
    ev *ev;
    atomic_uint_fast64_t n; /* events ever recorded; the ring keeps the last cap */
    char name[TRACK_NAME];  /* "": never named, and left out of the file */
} trk;

struct sp_trace {
    char path[4096];
    int lock_fd; /* the file at path, locked (flock) from open to close: this loader's claim on it */
    char what[256];
    uint64_t start;
    unsigned ntracks;
    uint32_t cap;  /* events per track */
    uint32_t ccap; /* counter events */
    trk *tracks;
    pthread_mutex_t mu; /* counters */
    ev *cev;
    uint64_t cn;
    int64_t last[SPC_COUNTERS_];
    bool seen[SPC_COUNTERS_];
};

uint64_t sp_trace_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* path with "%p" replaced by the process id; false when it does not fit. */
static bool expand_path(const char *path, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *c = path; *c; c++) {
        char pid[24];
        const char *piece = pid;
        if (c[0] == '%' && c[1] == 'p') {
            snprintf(pid, sizeof pid, "%d", (int)getpid());
            c++;
        } else {
            pid[0] = *c;
            pid[1] = '\0';
        }
        size_t len = strlen(piece);
        if (o + len >= cap)
            return false;
        memcpy(out + o, piece, len);
        o += len;
    }
    out[o] = '\0';
    return true;
}

/* The k-th name tried for a trace at path: path itself (k = 0), then path with ".PID" (k = 1) or
 * ".PID.k" put before its extension (t.json: t.4242.json, t.4242.2.json). False when too long. */
static bool claim_name(const char *path, unsigned k, char *out, size_t cap)
{
    if (k == 0)
        return (size_t)snprintf(out, cap, "%s", path) < cap;
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t stem = dot && dot > (slash ? slash : path) && dot[-1] != '/' ? (size_t)(dot - path) : strlen(path);
    char tag[48];
    if (k == 1)
        snprintf(tag, sizeof tag, ".%d", (int)getpid());
    else
        snprintf(tag, sizeof tag, ".%d.%u", (int)getpid(), k);
    return (size_t)snprintf(out, cap, "%.*s%s%s", (int)stem, path, tag, path + stem) < cap;
}

/* Claims a file for this trace and writes the empty trace into it: the first of claim_name's names
 * that no other open trace holds (an exclusive flock, kept until close), so that loaders open at
 * once with one path (DataLoader workers, ranks sharing a folder) each keep their own file. A file
 * system without flock: the path itself, unlocked. SP_OK, or errno. */
static int claim_path(sp_trace *t, const char *path)
{
    for (unsigned k = 0; k < 1000; k++) {
        if (!claim_name(path, k, t->path, sizeof t->path))
            return ENAMETOOLONG;
        int fd = open(t->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return errno;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
            close(fd);
            continue;
        }
        static const char empty[] = "{\"traceEvents\":[]}\n";
        if (ftruncate(fd, 0) != 0 || write(fd, empty, sizeof empty - 1) != (ssize_t)(sizeof empty - 1)) {
            int e = errno ? errno : EIO;
            close(fd);
            return e;
        }
        t->lock_fd = fd;
        return 0;
    }
    return EBUSY;
}

int sp_trace_open(sp_trace **out, const char *path, unsigned tracks, uint64_t max_events, const char *what,
                  sp_errbuf *eb)
{
    *out = NULL;
    sp_trace *t = sp_calloc(1, sizeof *t);
    if (!t)
        return sp_fail(eb, SP_ENOMEM, "out of memory for the trace");
    t->lock_fd = -1;
    if (!expand_path(path, t->path, sizeof t->path)) {
        sp_free(t);
        return sp_fail(eb, SP_EINVAL, "trace path '%.200s' is too long", path);
    }
    snprintf(t->what, sizeof t->what, "%s", what);
    t->ntracks = tracks;
    uint64_t total = max_events ? max_events : SP_TRACE_EVENTS_MAX;
    uint32_t cap = (uint32_t)(total / (tracks ? tracks : 1) < UINT32_MAX ? total / (tracks ? tracks : 1) : UINT32_MAX);
    t->cap = cap < SP_TRACE_TRACK_MIN ? SP_TRACE_TRACK_MIN : cap;
    t->ccap = total / 4 > COUNTER_EVENTS ? COUNTER_EVENTS : total / 4 < 256 ? 256 : (uint32_t)(total / 4);
    t->tracks = sp_calloc(tracks ? tracks : 1, sizeof *t->tracks);
    t->cev = sp_malloc(t->ccap * sizeof *t->cev);
    bool ok = t->tracks && t->cev;
    for (unsigned i = 0; ok && i < tracks; i++) {
        /* calloc: pages no event reaches are never touched, so a short trace costs little */
        t->tracks[i].ev = sp_calloc(t->cap, sizeof(ev));
        ok = t->tracks[i].ev != NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    if (!ok) {
        sp_trace_close(t, NULL, 0);
        return sp_fail(eb, SP_ENOMEM, "out of memory for the trace's event rings (%u tracks of %u events)", tracks,
                       (unsigned)cap);
    }
    char given[4096];
    snprintf(given, sizeof given, "%s", t->path);
    int e = claim_path(t, given);
    if (e) {
        char path_copy[4096];
        snprintf(path_copy, sizeof path_copy, "%s", t->path);
        t->path[0] = '\0'; /* nothing to write at close */
        sp_trace_close(t, NULL, 0);
        return sp_fail(eb, SP_EIO, "trace '%s' cannot be written: %s", path_copy,
                       e == EBUSY ? "1000 open loaders hold it and its numbered names" : strerror(e));
    }
    t->start = sp_trace_clock();
    *out = t;
    return SP_OK;
}

#if SP_NVTX
static pthread_once_t nvtx_once = PTHREAD_ONCE_INIT;
static void nvtx_setup(void) { nvtxInitialize(NULL); }
#endif

void sp_trace_ready(void)
{
#if SP_NVTX
    pthread_once(&nvtx_once, nvtx_setup);
#endif
}

void sp_trace_track(sp_trace *t, unsigned track, const char *name)
{
    if (t && track < t->ntracks)
        snprintf(t->tracks[track].name, TRACK_NAME, "%s", name);
}

uint64_t sp_trace_begin(const sp_trace *t, sp_trace_name name)
{
#if SP_NVTX
    nvtxRangePushA(span_names[name]);
#else
    (void)name;
#endif
    return t ? sp_trace_clock() : 0;
}

static void record(sp_trace *t, unsigned tr, sp_trace_name name, uint64_t t0, uint64_t arg, bool async)
{
    if (tr >= t->ntracks)
        return;
    trk *k = &t->tracks[tr];
    uint64_t now = sp_trace_clock();
    uint64_t n = atomic_load_explicit(&k->n, memory_order_relaxed);
    ev *e = &k->ev[n % t->cap];
    e->t0 = t0 > t->start ? t0 - t->start : 0;
    e->dur = now > t0 ? now - t0 : 0;
    e->arg = arg;
    e->name = (uint8_t)name;
    e->async = async;
    atomic_store_explicit(&k->n, n + 1, memory_order_release);
}

void sp_trace_end(sp_trace *t, unsigned track, sp_trace_name name, uint64_t t0, uint64_t arg)
{
#if SP_NVTX
    nvtxRangePop();
#endif
    if (t)
        record(t, track, name, t0, arg, false);
}

void sp_trace_async(sp_trace *t, unsigned track, sp_trace_name name, uint64_t t0, uint64_t id)
{
    if (t)
        record(t, track, name, t0, id, true);
}

void sp_trace_count(sp_trace *t, sp_trace_counter c, int64_t value)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    if (!t->seen[c] || t->last[c] != value) {
        uint64_t now = sp_trace_clock();
        ev *e = &t->cev[t->cn++ % t->ccap];
        *e = (ev){ now > t->start ? now - t->start : 0, (uint64_t)value, UINT64_MAX, (uint8_t)c, 0 };
        t->seen[c] = true;
        t->last[c] = value;
    }
    pthread_mutex_unlock(&t->mu);
}

void sp_trace_totals(const sp_trace *t, uint64_t *events, uint64_t *dropped)
{
    *events = *dropped = 0;
    if (!t)
        return;
    for (unsigned i = 0; i < t->ntracks; i++) {
        uint64_t n = atomic_load_explicit(&t->tracks[i].n, memory_order_relaxed);
        *events += n;
        *dropped += n > t->cap ? n - t->cap : 0;
    }
    pthread_mutex_lock((pthread_mutex_t *)&t->mu);
    *events += t->cn;
    *dropped += t->cn > t->ccap ? t->cn - t->ccap : 0;
    pthread_mutex_unlock((pthread_mutex_t *)&t->mu);
}

/* s as the body of a JSON string. */
static void json_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

/* Microseconds with nanosecond digits: the unit of "ts" and "dur". */
static void us(FILE *f, const char *key, uint64_t ns)
{
    fprintf(f, ",\"%s\":%llu.%03u", key, (unsigned long long)(ns / 1000), (unsigned)(ns % 1000));
}

static void write_events(const sp_trace *t, FILE *f, int pid, bool *first)
{
    for (unsigned i = 0; i < t->ntracks; i++) {
        const trk *k = &t->tracks[i];
        if (!k->name[0])
            continue;
        fprintf(f, "%s\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":\"",
                *first ? "" : ",", pid, i + 1);
        *first = false;
        json_str(f, k->name);
        fputs("\"}}", f);
        fprintf(f, ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"sort_index\":%u}}",
                pid, i + 1, i);
        uint64_t n = atomic_load_explicit(&k->n, memory_order_acquire);
        for (uint64_t j = n > t->cap ? n - t->cap : 0; j < n; j++) {
            const ev *e = &k->ev[j % t->cap];
            if (e->async) {
                /* an async span: begin and end with an id, on the track's own async lane */
                for (int half = 0; half < 2; half++) {
                    fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"shardpack\",\"ph\":\"%c\",\"id\":\"0x%llx\",\"pid\":%d,"
                               "\"tid\":%u",
                            span_names[e->name], half ? 'e' : 'b', (unsigned long long)e->arg, pid, i + 1);
                    us(f, "ts", e->t0 + (half ? e->dur : 0));
                    fputs(half ? "}" : ",\"args\":{\"block\":", f);
                    if (!half)
                        fprintf(f, "%llu}}", (unsigned long long)e->arg);
                }
                continue;
            }
            fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"shardpack\",\"ph\":\"X\",\"pid\":%d,\"tid\":%u",
                    span_names[e->name], pid, i + 1);
            us(f, "ts", e->t0);
            us(f, "dur", e->dur);
            if (e->arg != UINT64_MAX)
                fprintf(f, ",\"args\":{\"block\":%llu}", (unsigned long long)e->arg);
            fputc('}', f);
        }
    }
    for (uint64_t j = t->cn > t->ccap ? t->cn - t->ccap : 0; j < t->cn; j++) {
        const ev *e = &t->cev[j % t->ccap];
        fprintf(f, "%s\n{\"name\":\"%s\",\"ph\":\"C\",\"pid\":%d,\"tid\":0", *first ? "" : ",",
                counter_names[e->name], pid);
        *first = false;
        us(f, "ts", e->t0);
        fprintf(f, ",\"args\":{\"value\":%lld}}", (long long)(int64_t)e->dur);
    }
}

/* The whole file: metadata, every track's events, the counters, and how many were dropped. */
static int write_file(const sp_trace *t, char *why, size_t whylen)
{
    /* A temporary of this writer's own, renamed over the path: loaders given one path (processes,
     * or threads of one) closing at once each write a whole file, and the last rename wins. */
    static atomic_uint seq;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%d.%u.tmp", t->path, (int)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (why)
            snprintf(why, whylen, "trace '%s' cannot be written: %s", tmp, strerror(e));
        return SP_EIO;
    }
    int pid = (int)getpid();
    uint64_t events, dropped;
    sp_trace_totals(t, &events, &dropped);
    fputs("{\"traceEvents\":[", f);
    fprintf(f, "\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"shardpack: ", pid);
    json_str(f, t->what);
    fputs("\"}}", f);
    bool first = false;
    write_events(t, f, pid, &first);
    fprintf(f,
            "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"events\":%llu,\"dropped_events\":%llu,"
            "\"events_per_track\":%u,\"tracks\":%u,\"note\":\"",
            (unsigned long long)events, (unsigned long long)dropped, t->cap, t->ntracks);
    if (dropped)
        fprintf(f, "%llu events were dropped: each track keeps its last %u", (unsigned long long)dropped, t->cap);
    fputs("\"}}\n", f);
    bool bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, t->path) != 0) {
        if (why)
            snprintf(why, whylen, "trace '%s' could not be written: %s", t->path, strerror(errno ? errno : EIO));
        unlink(tmp);
        return SP_EIO;
    }
    return SP_OK;
}

int sp_trace_close(sp_trace *t, char *why, size_t whylen)
{
    if (!t)
        return SP_OK;
    int rc = t->path[0] && t->tracks && t->cev ? write_file(t, why, whylen) : SP_OK;
    if (t->lock_fd >= 0) /* after the rename: the path is free for a later loader */
        close(t->lock_fd);
    for (unsigned i = 0; t->tracks && i < t->ntracks; i++)
        sp_free(t->tracks[i].ev);
    sp_free(t->tracks);
    sp_free(t->cev);
    pthread_mutex_destroy(&t->mu);
    sp_free(t);
    return rc;
}
