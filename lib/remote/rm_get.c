/* rm_get.c - one request at a time, on the calling thread, with the site's retries: the manifest,
 * a shard's tail and index, a block read through sp_dataset. */
#include <time.h>

#include "rm_xfer.h"

static void pause_until(double t)
{
    double d = t - sp_now();
    if (d <= 0)
        return;
    struct timespec ts = { (time_t)d, (long)((d - (double)(time_t)d) * 1e9) };
    nanosleep(&ts, NULL);
}

int rm_xfer_run(rm_site *s, rm_xfer *x, bool name_url, sp_errbuf *eb)
{
    x->site = s;
    x->h = rm_handle_get(s);
    if (!x->h)
        return sp_fail(eb, SP_ENOMEM, "%s: out of memory for a transfer", x->obj->url);
    char why[SP_ERRMSG_MAX];
    int rc;
    for (;;) {
        if (rm_xfer_prepare(x) != SP_OK) {
            rc = SP_ENOMEM;
            snprintf(why, sizeof why, "%s: out of memory for a transfer", x->obj->url);
            break;
        }
        CURLcode cc = curl_easy_perform(x->h);
        bool retry;
        rc = rm_xfer_verdict(x, cc, name_url, why, sizeof why, &retry);
        if (rc == SP_OK || !retry || !rm_xfer_retry_at(x, why, sizeof why))
            break;
        pause_until(x->not_before);
    }
    rm_xfer_release(x);
    rm_handle_put(s, x->h);
    x->h = NULL;
    return rc ? sp_fail(eb, rc, "%s", why) : SP_OK;
}

int rm_get(rm_site *s, rm_obj *o, uint64_t off, uint64_t len, uint8_t *buf, bool name_url, sp_errbuf *eb)
{
    if (len == 0)
        return SP_OK;
    rm_xfer x = { .obj = o, .off = off, .len = len, .buf = buf, .cap = len };
    return rm_xfer_run(s, &x, name_url, eb);
}

int rm_get_tail(rm_site *s, rm_obj *o, uint64_t n, uint8_t *buf, uint64_t *got, sp_errbuf *eb)
{
    rm_xfer x = { .obj = o, .len = n, .tail = true, .buf = buf, .cap = n };
    int rc = rm_xfer_run(s, &x, true, eb);
    *got = rc ? 0 : x.got;
    return rc;
}

int rm_get_all(rm_site *s, rm_obj *o, uint64_t max, uint8_t **out, size_t *n, sp_errbuf *eb)
{
    *out = NULL;
    *n = 0;
    rm_xfer x = { .obj = o, .cap = max + 1, .grow = true };
    int rc = rm_xfer_run(s, &x, true, eb);
    if (rc == SP_OK && x.got > max)
        rc = sp_fail(eb, SP_ELIMIT, "%s: larger than %llu bytes", o->url, (unsigned long long)max);
    if (rc == SP_EREMOTE && x.overflow)
        rc = sp_fail(eb, SP_ELIMIT, "%s: larger than %llu bytes", o->url, (unsigned long long)max);
    if (rc) {
        sp_free(x.buf);
        return rc;
    }
    *out = x.buf;
    *n = (size_t)x.got;
    return SP_OK;
}
