/* rm_fetch.c - the loader's remote reads, on libcurl's multi interface. Requests wait in a queue;
 * when a transfer is free the head request goes out, joined by the requests queued behind it that
 * continue it in the same object and in memory, up to the part size, as one ranged GET whose body
 * lands in place. A transfer that fails in a way a later try may not is retried after a pause
 * (backoff with jitter) within the site's bounds; then every request it carried ends with the same
 * verdict.
 *
 * The transfers are split among lanes, each a multi handle. With no receive thread (lanes driven
 * inline) the caller's thread drives its one lane inside rm_fetch_reap, as it always did; with
 * receive threads each lane has its own thread, which takes queued requests for its idle
 * transfers, receives their bytes (libcurl's copy of every byte into the caller's buffer happens
 * there) and moves finished requests to the done queue, where rm_fetch_reap takes them. The
 * queues, the requests and the transfers' request lists are under mu; a lane's multi handle and
 * easy handles are only touched by the thread driving that lane. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rm_xfer.h"

typedef struct rm_req {
    rm_site *site; /* where obj lives: the driver's, or the one rm_fetch_submit_at names */
    rm_obj *obj;
    uint8_t *buf;
    uint64_t len, room, off, tag; /* room: bytes at buf that are the request's (>= len) */
    int code;
    uint32_t next; /* the next request of the same transfer, UINT32_MAX at the end */
    bool used;
    bool cached;   /* for the cache once fetched, as use says (its caller offers it) */
    bool finished; /* in the done queue */
    rm_use use;
    /* A cached read of bytes another request is already fetching waits for that one (its
     * leader) instead of fetching them again: followers, UINT32_MAX at the end. */
    uint32_t followers, next_follower;
} rm_req;

typedef struct rm_lane rm_lane;

typedef struct rm_tx {
    rm_xfer x;
    rm_lane *lane;  /* whose multi handle runs it */
    uint32_t first; /* its requests, UINT32_MAX when the transfer is idle */
    bool waiting;   /* between tries: out of the multi handle until x.not_before */
} rm_tx;

struct rm_lane {
    rm_fetch *f;
    CURLM *m;
    unsigned tx0, ntx; /* its transfers: f->tx[tx0 .. tx0 + ntx) */
    pthread_t th;
    bool started;
    unsigned cancel_seen; /* the last rm_fetch_cancel it has carried out */
};

struct rm_fetch {
    rm_site *site;
    pthread_mutex_t mu;
    pthread_cond_t c_done;   /* receive threads: a request finished, or rm_fetch_wakeup */
    pthread_cond_t c_cancel; /* a lane carried out a cancel */
    rm_lane *lanes;
    unsigned nlanes;
    bool threaded; /* each lane has its own thread */
    bool stop;     /* receive threads: end */
    bool woken;    /* receive threads: rm_fetch_wakeup since the last rm_fetch_reap */
    bool threads_tried; /* start_threads has run (at the first request since the open or a park) */
    /* whether the thread reaping waits in lanes[0]'s poll (no receive thread running), for
     * rm_fetch_wakeup, which reads it without mu: it may be called holding the loader's ring lock */
    _Atomic bool reaper_polls;
    unsigned cancel_gen;
    unsigned depth, ntx, pending;
    uint64_t part;
    rm_req *req;
    char (*why)[SP_ERRMSG_MAX]; /* per request, for a failed one */
    uint32_t *queue, q_head, q_n; /* requests not yet in a transfer, in order */
    uint32_t *done, d_head, d_n;  /* requests finished, not yet reaped */
    rm_tx *tx;
    rm_cache *cache;
    rm_use use;
    bool have_use;
    rm_use reaped_use; /* the last request reaped: its use, and whether it is the cache's to keep */
    bool reaped_keep;
    _Atomic uint64_t fetched; /* bytes of requests fetched */
    _Atomic uint64_t gets;    /* GETs sent: a transfer's tries, however many requests it carries */
};

void rm_fetch_set_cache(rm_fetch *f, rm_cache *c) { f->cache = c; }
uint64_t rm_fetch_bytes(const rm_fetch *f) { return atomic_load(&f->fetched); }
uint64_t rm_fetch_gets(const rm_fetch *f) { return atomic_load(&f->gets); }
unsigned rm_fetch_transfers(const rm_fetch *f) { return f->ntx; }

void rm_fetch_use(rm_fetch *f, const rm_use *u)
{
    f->use = *u;
    f->have_use = true;
}

bool rm_fetch_reaped_use(const rm_fetch *f, rm_use *u)
{
    *u = f->reaped_use;
    return f->reaped_keep;
}

unsigned rm_fetch_pending(const rm_fetch *f) { return f->pending; }
unsigned rm_fetch_depth(const rm_fetch *f) { return f->depth; }
unsigned rm_fetch_threads(const rm_fetch *f) { return f->threaded ? f->nlanes : 0; }

static void *lane_main(void *arg);

int rm_fetch_open(rm_site *s, unsigned depth, unsigned transfers, rm_fetch **out)
{
    return rm_fetch_open_threads(s, depth, transfers, 0, out);
}

int rm_fetch_open_threads(rm_site *s, unsigned depth, unsigned transfers, unsigned threads, rm_fetch **out)
{
    *out = NULL;
    rm_fetch *f = sp_calloc(1, sizeof *f);
    if (!f)
        return SP_ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* rm_fetch_reap's timed wait: no wall-clock step */
    pthread_cond_init(&f->c_done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&f->c_cancel, NULL);
    f->site = s;
    f->depth = depth;
    f->ntx = transfers ? transfers : rm_site_inflight(s);
    if (f->ntx > depth)
        f->ntx = depth;
    /* every lane drives at least 4 transfers: fewer would leave its thread mostly waking up */
    unsigned most = f->ntx / 4 ? f->ntx / 4 : 1;
    f->threaded = threads > 0;
    atomic_store(&f->reaper_polls, true);
    f->nlanes = !threads ? 1 : threads < most ? threads : most;
    f->part = rm_site_part_size(s);
    f->req = sp_calloc(depth, sizeof *f->req);
    f->why = sp_calloc(depth, sizeof *f->why);
    f->queue = sp_calloc(depth, sizeof *f->queue);
    f->done = sp_calloc(depth, sizeof *f->done);
    f->tx = sp_calloc(f->ntx, sizeof *f->tx);
    f->lanes = sp_calloc(f->nlanes, sizeof *f->lanes);
    if (!f->req || !f->why || !f->queue || !f->done || !f->tx || !f->lanes) {
        rm_fetch_close(f);
        return SP_ENOMEM;
    }
    for (unsigned k = 0; k < f->nlanes; k++) {
        rm_lane *ln = &f->lanes[k];
        ln->f = f;
        ln->tx0 = (unsigned)((uint64_t)f->ntx * k / f->nlanes);
        ln->ntx = (unsigned)((uint64_t)f->ntx * (k + 1) / f->nlanes) - ln->tx0;
        if (!(ln->m = curl_multi_init())) {
            rm_fetch_close(f);
            return SP_ENOMEM;
        }
        curl_multi_setopt(ln->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)ln->ntx);
        for (unsigned i = ln->tx0; i < ln->tx0 + ln->ntx; i++) {
            f->tx[i].first = UINT32_MAX;
            f->tx[i].lane = ln;
        }
    }
    *out = f;
    return SP_OK;
}

/* Ends the receive threads that run (each finishes its turn), and lets the next ones run. */
static void end_threads(rm_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_mutex_unlock(&f->mu);
    for (unsigned k = 0; k < f->nlanes; k++)
        if (f->lanes[k].started) {
            curl_multi_wakeup(f->lanes[k].m);
            pthread_join(f->lanes[k].th, NULL);
            f->lanes[k].started = false;
        }
    pthread_mutex_lock(&f->mu);
    f->stop = false;
    pthread_mutex_unlock(&f->mu);
}

/* Starts the receive threads, at the first request: a loader opens its fetch before a program may
 * fork (shardpack bench measures its limit in a child), and a process forked with threads running
 * may find their locks held for good. A thread that cannot start leaves the caller's thread
 * driving every lane (more slowly: it polls one and looks at the others every few milliseconds). */
static void start_threads(rm_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    f->threads_tried = true;
    pthread_mutex_unlock(&f->mu);
    for (unsigned k = 0; k < f->nlanes; k++) {
        if (pthread_create(&f->lanes[k].th, NULL, lane_main, &f->lanes[k]) != 0)
            break;
        f->lanes[k].started = true;
    }
    if (f->lanes[f->nlanes - 1].started) {
        atomic_store(&f->reaper_polls, false);
        pthread_mutex_lock(&f->mu);
        f->woken = true; /* a wake-up sent to the poll meanwhile: its next wait ends at once instead */
        pthread_mutex_unlock(&f->mu);
        return;
    }
    end_threads(f);
    pthread_mutex_lock(&f->mu);
    f->threaded = false;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->lanes[0].m); /* a wake-up meant for threads that never ran ends a poll instead */
}

void rm_fetch_park(rm_fetch *f)
{
    if (!f->threaded || !f->threads_tried)
        return;
    atomic_store(&f->reaper_polls, true);
    end_threads(f);
    pthread_mutex_lock(&f->mu);
    f->threads_tried = false;
    f->woken = false;
    pthread_mutex_unlock(&f->mu);
}

void rm_fetch_close(rm_fetch *f)
{
    if (!f)
        return;
    if (f->lanes)
        end_threads(f);
    for (unsigned i = 0; f->tx && i < f->ntx; i++) {
        rm_tx *t = &f->tx[i];
        if (t->x.h) {
            if (t->first != UINT32_MAX && !t->waiting)
                curl_multi_remove_handle(t->lane->m, t->x.h);
            rm_xfer_release(&t->x);
            curl_easy_cleanup(t->x.h);
        }
    }
    for (unsigned k = 0; f->lanes && k < f->nlanes; k++)
        if (f->lanes[k].m)
            curl_multi_cleanup(f->lanes[k].m);
    sp_free(f->lanes);
    pthread_cond_destroy(&f->c_done);
    pthread_cond_destroy(&f->c_cancel);
    pthread_mutex_destroy(&f->mu);
    sp_free(f->req);
    sp_free(f->why);
    sp_free(f->queue);
    sp_free(f->done);
    sp_free(f->tx);
    sp_free(f);
}

static void finish_req(rm_fetch *f, uint32_t i, int code, const char *why);

int rm_fetch_submit(rm_fetch *f, rm_obj *o, uint8_t *buf, uint64_t len, uint64_t room, uint64_t off, uint64_t tag)
{
    return rm_fetch_submit_at(f, f->site, o, buf, len, room, off, tag);
}

/* Whether lane ln has a transfer free for a queued request. Called with mu held. */
static bool idle_tx(const rm_fetch *f, const rm_lane *ln)
{
    for (unsigned i = ln->tx0; i < ln->tx0 + ln->ntx; i++)
        if (f->tx[i].first == UINT32_MAX)
            return true;
    return false;
}

/* Wakes every receive thread with an idle transfer, for the requests just queued. Called with mu
 * held. */
static void wake_lanes(rm_fetch *f)
{
    for (unsigned k = 0; f->threaded && k < f->nlanes; k++)
        if (idle_tx(f, &f->lanes[k]))
            curl_multi_wakeup(f->lanes[k].m);
}

int rm_fetch_submit_at(rm_fetch *f, rm_site *s, rm_obj *o, uint8_t *buf, uint64_t len, uint64_t room, uint64_t off,
                       uint64_t tag)
{
    if (f->pending == f->depth)
        return SP_EBUSY;
    if (f->threaded && !f->threads_tried)
        start_threads(f);
    pthread_mutex_lock(&f->mu);
    uint32_t i = 0;
    while (f->req[i].used)
        i++;
    rm_req *r = &f->req[i];
    bool cached = f->cache && f->have_use;
    *r = (rm_req){ .site = s, .obj = o, .buf = buf, .len = len, .room = room > len ? room : len, .off = off, .tag = tag, .next = UINT32_MAX, .used = true,
                   .cached = cached, .use = f->use, .followers = UINT32_MAX, .next_follower = UINT32_MAX };
    f->have_use = false;
    f->pending++;
    pthread_mutex_unlock(&f->mu);
    /* the cache's read, without mu: no receive thread touches a request that is in no queue yet */
    bool hit = cached && rm_cache_get(f->cache, o, off, len, buf, &r->use);
    pthread_mutex_lock(&f->mu);
    if (hit) {
        r->cached = false;
        finish_req(f, i, SP_OK, "");
        pthread_mutex_unlock(&f->mu);
        return 1;
    }
    /* The next epoch may ask for a block while this one's fetch of it is still out: it waits for
     * that one. Or a read of it has ended and its caller has not reaped it yet (so it holds no copy
     * its cache could give, and no entry is written): its bytes are copied now. */
    for (uint32_t k = 0; cached && k < f->depth; k++) {
        rm_req *l = &f->req[k];
        if (k == i || !l->used || l->obj != o || l->off != off || l->len != len ||
            (l->finished ? l->code != SP_OK : !l->cached))
            continue;
        r->cached = false;
        rm_cache_unmiss(f->cache); /* no GET of its own: not the miss counted */
        if (l->finished) {
            memcpy(buf, l->buf, len);
            finish_req(f, i, SP_OK, "");
        } else {
            r->next_follower = l->followers;
            l->followers = i;
        }
        pthread_mutex_unlock(&f->mu);
        return 1;
    }
    /* started at the next rm_fetch_reap (the receive threads are woken there): the requests the
     * caller queues meanwhile, the rest of its burst, join this one's GET where they continue it */
    f->queue[(f->q_head + f->q_n++) % f->depth] = i;
    pthread_mutex_unlock(&f->mu);
    return SP_OK;
}

static void finish_req(rm_fetch *f, uint32_t i, int code, const char *why)
{
    rm_req *r = &f->req[i];
    r->code = code;
    r->finished = true;
    if (code)
        snprintf(f->why[i], sizeof f->why[i], "%s", why);
    f->done[(f->d_head + f->d_n++) % f->depth] = i;
    if (f->threaded)
        pthread_cond_signal(&f->c_done);
    for (uint32_t k = r->followers, next; k != UINT32_MAX; k = next) {
        next = f->req[k].next_follower;
        if (code == SP_OK)
            memcpy(f->req[k].buf, r->buf, r->len);
        finish_req(f, k, code, why);
    }
    r->followers = UINT32_MAX;
}

/* Ends every request of transfer t with code, and frees t. Fetched bytes are counted; the caller
 * offers them to the cache after it has reaped and checked them (rm_fetch_reaped_use). */
static void finish_tx(rm_fetch *f, rm_tx *t, int code, const char *why)
{
    for (uint32_t i = t->first, next; i != UINT32_MAX; i = next) {
        rm_req *r = &f->req[i];
        next = r->next;
        if (code == SP_OK)
            atomic_fetch_add(&f->fetched, r->len);
        finish_req(f, i, code, why);
    }
    t->first = UINT32_MAX;
    t->waiting = false;
    rm_xfer_release(&t->x);
}

/* (Re)starts transfer t: SP_OK, or the request ends at once (out of memory). */
static void launch(rm_fetch *f, rm_tx *t)
{
    t->waiting = false;
    if (rm_xfer_prepare(&t->x) != SP_OK || curl_multi_add_handle(t->lane->m, t->x.h) != CURLM_OK) {
        char why[SP_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s: out of memory for a transfer", t->x.obj->url);
        finish_tx(f, t, SP_ENOMEM, why);
        return;
    }
    atomic_fetch_add(&f->gets, 1);
}

/* Whether queued request n continues request last of a transfer that begins at head: the same
 * object, after last in the file and in memory at the same distance, and no further than last's
 * room. The GET writes the file's bytes between them into that room, so memory that is not
 * theirs (another request's buffer, served from the cache or by a follower, lying between them
 * in the ring) is never written. */
static bool continues(const rm_fetch *f, const rm_req *head, const rm_req *last, const rm_req *n)
{
    uint64_t gap = n->off - last->off;
    return n->obj == head->obj && n->site == head->site && n->off >= last->off + last->len && n->buf > last->buf &&
           (uint64_t)(n->buf - last->buf) == gap && gap <= last->room && n->off - head->off + n->len <= f->part;
}

/* Gives queued requests to lane ln's idle transfers, joining those that continue each other. */
static void start_queued(rm_fetch *f, rm_lane *ln)
{
    for (unsigned k = ln->tx0; k < ln->tx0 + ln->ntx && f->q_n; k++) {
        rm_tx *t = &f->tx[k];
        if (t->first != UINT32_MAX)
            continue;
        uint32_t i = f->queue[f->q_head];
        f->q_head = (f->q_head + 1) % f->depth;
        f->q_n--;
        rm_req *head = &f->req[i], *last = head;
        t->first = i;
        uint64_t len = head->len;
        while (f->q_n) {
            rm_req *n = &f->req[f->queue[f->q_head]];
            if (!continues(f, head, last, n))
                break;
            last->next = f->queue[f->q_head];
            last = n;
            len = n->off - head->off + n->len;
            f->q_head = (f->q_head + 1) % f->depth;
            f->q_n--;
        }
        if (!t->x.h && !(t->x.h = curl_easy_init())) {
            char why[SP_ERRMSG_MAX];
            snprintf(why, sizeof why, "%s: out of memory for a transfer", head->obj->url);
            finish_tx(f, t, SP_ENOMEM, why);
            continue;
        }
        CURL *h = t->x.h;
        t->x = (rm_xfer){ .h = h, .site = head->site, .obj = head->obj, .off = head->off, .len = len,
                          .buf = head->buf, .cap = len };
        launch(f, t);
    }
}

/* Takes the verdicts of the transfers lane ln's multi handle has finished. */
static void collect(rm_fetch *f, rm_lane *ln)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ln->m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        rm_tx *t = NULL;
        for (unsigned k = ln->tx0; k < ln->tx0 + ln->ntx && !t; k++)
            if (f->tx[k].x.h == msg->easy_handle && f->tx[k].first != UINT32_MAX)
                t = &f->tx[k];
        CURLcode cc = msg->data.result;
        curl_multi_remove_handle(ln->m, msg->easy_handle);
        if (!t)
            continue;
        char why[SP_ERRMSG_MAX];
        bool retry;
        int rc = rm_xfer_verdict(&t->x, cc, false, why, sizeof why, &retry);
        if (rc != SP_OK && retry && rm_xfer_retry_at(&t->x, why, sizeof why))
            t->waiting = true;
        else
            finish_tx(f, t, rc, why);
    }
}

/* Restarts lane ln's waiting transfers whose pause is over. */
static void restart_due(rm_fetch *f, rm_lane *ln)
{
    double now = sp_now();
    for (unsigned k = ln->tx0; k < ln->tx0 + ln->ntx; k++) {
        rm_tx *t = &f->tx[k];
        if (t->waiting && t->x.not_before <= now)
            launch(f, t);
    }
}

/* Ends lane ln's transfers with SP_ECANCELED; their buffers are not written afterwards. Called
 * with mu held, by the thread driving ln. */
static void cancel_lane(rm_fetch *f, rm_lane *ln)
{
    for (unsigned k = ln->tx0; k < ln->tx0 + ln->ntx; k++) {
        rm_tx *t = &f->tx[k];
        if (t->first == UINT32_MAX)
            continue;
        if (!t->waiting)
            curl_multi_remove_handle(ln->m, t->x.h);
        finish_tx(f, t, SP_ECANCELED, "cancelled");
    }
    ln->cancel_seen = f->cancel_gen;
}

/* The seconds until lane ln's next paused transfer is due (1 when none is paused). */
static double next_due(const rm_fetch *f, const rm_lane *ln)
{
    double now = sp_now(), next = 1.0;
    for (unsigned k = ln->tx0; k < ln->tx0 + ln->ntx; k++) {
        const rm_tx *t = &f->tx[k];
        if (t->waiting && t->x.not_before - now < next)
            next = t->x.not_before > now ? t->x.not_before - now : 0;
    }
    return next;
}

/* One turn of lane ln: a cancel carried out, queued requests started, pauses ended, bytes received
 * (without mu: libcurl writes into the requests' buffers) and finished transfers collected. Called
 * with mu held, returns with it held; the seconds until a paused transfer is due (at most 1),
 * counting those collect has just paused. */
static double lane_turn(rm_fetch *f, rm_lane *ln)
{
    if (ln->cancel_seen != f->cancel_gen) {
        cancel_lane(f, ln);
        pthread_cond_broadcast(&f->c_cancel);
    }
    start_queued(f, ln);
    restart_due(f, ln);
    pthread_mutex_unlock(&f->mu);
    int running;
    curl_multi_perform(ln->m, &running);
    pthread_mutex_lock(&f->mu);
    collect(f, ln);
    return next_due(f, ln);
}

/* A receive thread: turns of its lane, sleeping in libcurl's poll between them (woken by its
 * sockets, by a request queued for it, a cancel or the close). */
static void *lane_main(void *arg)
{
    rm_lane *ln = arg;
    rm_fetch *f = ln->f;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        double next = lane_turn(f, ln);
        if (f->stop)
            break;
        if (f->q_n && idle_tx(f, ln))
            continue; /* a transfer it just collected is free for a queued request: no sleep first */
        pthread_mutex_unlock(&f->mu);
        int ms = (int)(next * 1000) + 1;
        curl_multi_poll(ln->m, NULL, 0, ms < 1000 ? ms : 1000, NULL);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

void rm_fetch_wakeup(rm_fetch *f)
{
    if (atomic_load(&f->reaper_polls)) { /* no lock: as it always was (a write to libcurl's pipe) */
        curl_multi_wakeup(f->lanes[0].m);
        return;
    }
    pthread_mutex_lock(&f->mu);
    f->woken = true;
    pthread_cond_broadcast(&f->c_done);
    pthread_mutex_unlock(&f->mu);
}

void rm_fetch_cancel(rm_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    bool busy = false; /* a transfer to end (the stop path calls this once per request it reaps) */
    for (unsigned k = 0; k < f->ntx && !busy; k++)
        busy = f->tx[k].first != UINT32_MAX;
    while (f->q_n) {
        uint32_t i = f->queue[f->q_head];
        f->q_head = (f->q_head + 1) % f->depth;
        f->q_n--;
        finish_req(f, i, SP_ECANCELED, "cancelled");
    }
    if (!busy) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    f->cancel_gen++;
    if (!f->threaded || !f->threads_tried) {
        for (unsigned k = 0; k < f->nlanes; k++)
            cancel_lane(f, &f->lanes[k]);
    } else {
        /* each receive thread ends its own transfers (a multi handle is its thread's alone) */
        for (unsigned k = 0; k < f->nlanes; k++)
            curl_multi_wakeup(f->lanes[k].m);
        for (unsigned k = 0; k < f->nlanes; k++)
            while (f->lanes[k].cancel_seen != f->cancel_gen)
                pthread_cond_wait(&f->c_cancel, &f->mu);
    }
    pthread_mutex_unlock(&f->mu);
}

/* The next finished request, taken off the done queue into the caller's outputs: 1, or 0 when
 * there is none. Called with mu held. */
static int take_done(rm_fetch *f, uint64_t *tag, int *code, char *why, size_t whylen)
{
    if (!f->d_n)
        return 0;
    uint32_t i = f->done[f->d_head];
    f->d_head = (f->d_head + 1) % f->depth;
    f->d_n--;
    rm_req *r = &f->req[i];
    *tag = r->tag;
    *code = r->code;
    f->reaped_keep = r->cached && r->code == SP_OK;
    f->reaped_use = r->use;
    if (r->code)
        snprintf(why, whylen, "%s", f->why[i]);
    r->used = false;
    f->pending--;
    return 1;
}

int rm_fetch_reap(rm_fetch *f, bool wait, uint64_t *tag, int *code, char *why, size_t whylen)
{
    pthread_mutex_lock(&f->mu);
    if (f->threaded && f->threads_tried) {
        if (f->q_n)
            wake_lanes(f);
        int got = take_done(f, tag, code, why, whylen);
        if (!got && wait && f->pending && !f->woken) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            while (!f->d_n && !f->woken && pthread_cond_timedwait(&f->c_done, &f->mu, &ts) == 0)
                ;
            got = take_done(f, tag, code, why, whylen);
        }
        if (wait) /* a wake-up ends one wait, as curl_multi_wakeup ends one poll */
            f->woken = false;
        pthread_mutex_unlock(&f->mu);
        return got;
    }
    for (bool waited = false;; waited = true) {
        if (take_done(f, tag, code, why, whylen)) {
            pthread_mutex_unlock(&f->mu);
            return 1;
        }
        if (f->pending == 0)
            break;
        double next = 1.0;
        for (unsigned k = 0; k < f->nlanes; k++) {
            double n = lane_turn(f, &f->lanes[k]);
            next = n < next ? n : next;
        }
        if (f->d_n)
            continue;
        if (!wait || waited)
            break;
        pthread_mutex_unlock(&f->mu);
        /* one lane's sockets are waited on; several (receive threads that could not start) are
         * looked at again every few milliseconds */
        int ms = (int)(next * 1000) + 1, most = f->nlanes > 1 ? 5 : 1000;
        curl_multi_poll(f->lanes[0].m, NULL, 0, ms < most ? ms : most, NULL);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return 0;
}
