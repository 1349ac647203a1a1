/* rm_fetch.c - the loader's remote reads: one libcurl multi handle driven by the reader thread.
 * Requests wait in a queue; when a transfer is free the head request goes out, joined by the
 * requests queued behind it that continue it in the same object and in memory, up to the part
 * size, as one ranged GET whose body lands in place. A transfer that fails in a way a later try
 * may not is retried after a pause (backoff with jitter) within the site's bounds; then every
 * request it carried ends with the same verdict. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

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

typedef struct rm_tx {
    rm_xfer x;
    uint32_t first; /* its requests, UINT32_MAX when the transfer is idle */
    bool waiting;   /* between tries: out of the multi handle until x.not_before */
} rm_tx;

struct rm_fetch {
    rm_site *site;
    CURLM *m;
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

int rm_fetch_open(rm_site *s, unsigned depth, unsigned transfers, rm_fetch **out)
{
    *out = NULL;
    rm_fetch *f = sp_calloc(1, sizeof *f);
    if (!f)
        return SP_ENOMEM;
    f->site = s;
    f->depth = depth;
    f->ntx = transfers ? transfers : rm_site_inflight(s);
    if (f->ntx > depth)
        f->ntx = depth;
    f->part = rm_site_part_size(s);
    f->m = curl_multi_init();
    f->req = sp_calloc(depth, sizeof *f->req);
    f->why = sp_calloc(depth, sizeof *f->why);
    f->queue = sp_calloc(depth, sizeof *f->queue);
    f->done = sp_calloc(depth, sizeof *f->done);
    f->tx = sp_calloc(f->ntx, sizeof *f->tx);
    if (!f->m || !f->req || !f->why || !f->queue || !f->done || !f->tx) {
        rm_fetch_close(f);
        return SP_ENOMEM;
    }
    for (unsigned i = 0; i < f->ntx; i++)
        f->tx[i].first = UINT32_MAX;
    curl_multi_setopt(f->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)f->ntx);
    *out = f;
    return SP_OK;
}

void rm_fetch_close(rm_fetch *f)
{
    if (!f)
        return;
    for (unsigned i = 0; f->tx && i < f->ntx; i++) {
        rm_tx *t = &f->tx[i];
        if (t->x.h) {
            if (t->first != UINT32_MAX && !t->waiting)
                curl_multi_remove_handle(f->m, t->x.h);
            rm_xfer_release(&t->x);
            curl_easy_cleanup(t->x.h);
        }
    }
    if (f->m)
        curl_multi_cleanup(f->m);
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

int rm_fetch_submit_at(rm_fetch *f, rm_site *s, rm_obj *o, uint8_t *buf, uint64_t len, uint64_t room, uint64_t off,
                       uint64_t tag)
{
    if (f->pending == f->depth)
        return SP_EBUSY;
    uint32_t i = 0;
    while (f->req[i].used)
        i++;
    rm_req *r = &f->req[i];
    bool cached = f->cache && f->have_use;
    *r = (rm_req){ .site = s, .obj = o, .buf = buf, .len = len, .room = room > len ? room : len, .off = off, .tag = tag, .next = UINT32_MAX, .used = true,
                   .cached = cached, .use = f->use, .followers = UINT32_MAX, .next_follower = UINT32_MAX };
    f->have_use = false;
    f->pending++;
    if (cached && rm_cache_get(f->cache, o, off, len, buf, &r->use)) {
        r->cached = false;
        finish_req(f, i, SP_OK, "");
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
        return 1;
    }
    f->queue[(f->q_head + f->q_n++) % f->depth] = i;
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
    if (rm_xfer_prepare(&t->x) != SP_OK || curl_multi_add_handle(f->m, t->x.h) != CURLM_OK) {
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

/* Gives queued requests to idle transfers, joining those that continue each other. */
static void start_queued(rm_fetch *f)
{
    for (unsigned k = 0; k < f->ntx && f->q_n; k++) {
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

/* Takes the verdicts of the transfers libcurl has finished. */
static void collect(rm_fetch *f)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(f->m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        rm_tx *t = NULL;
        for (unsigned k = 0; k < f->ntx && !t; k++)
            if (f->tx[k].x.h == msg->easy_handle && f->tx[k].first != UINT32_MAX)
                t = &f->tx[k];
        CURLcode cc = msg->data.result;
        curl_multi_remove_handle(f->m, msg->easy_handle);
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

/* Restarts waiting transfers whose pause is over; the seconds until the next one is due (or
 * 1 when none waits). */
static double restart_due(rm_fetch *f)
{
    double now = sp_now(), next = 1.0;
    for (unsigned k = 0; k < f->ntx; k++) {
        rm_tx *t = &f->tx[k];
        if (!t->waiting)
            continue;
        if (t->x.not_before <= now)
            launch(f, t);
        else if (t->x.not_before - now < next)
            next = t->x.not_before - now;
    }
    return next;
}

void rm_fetch_wakeup(rm_fetch *f) { curl_multi_wakeup(f->m); }

void rm_fetch_cancel(rm_fetch *f)
{
    for (unsigned k = 0; k < f->ntx; k++) {
        rm_tx *t = &f->tx[k];
        if (t->first == UINT32_MAX)
            continue;
        if (!t->waiting)
            curl_multi_remove_handle(f->m, t->x.h);
        finish_tx(f, t, SP_ECANCELED, "cancelled");
    }
    while (f->q_n) {
        uint32_t i = f->queue[f->q_head];
        f->q_head = (f->q_head + 1) % f->depth;
        f->q_n--;
        finish_req(f, i, SP_ECANCELED, "cancelled");
    }
}

int rm_fetch_reap(rm_fetch *f, bool wait, uint64_t *tag, int *code, char *why, size_t whylen)
{
    for (bool waited = false;; waited = true) {
        if (f->d_n) {
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
        if (f->pending == 0)
            return 0;
        start_queued(f);
        double next = restart_due(f);
        int running;
        curl_multi_perform(f->m, &running);
        collect(f);
        if (f->d_n)
            continue;
        if (!wait || waited)
            return 0;
        int ms = (int)(next * 1000) + 1;
        curl_multi_poll(f->m, NULL, 0, ms < 1000 ? ms : 1000, NULL);
    }
}
