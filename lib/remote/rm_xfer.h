/* rm_xfer.h - one ranged GET as the blocking and the multi driver both run it: the libcurl handle
 * set up for a site and an object, the response as it arrives, and the verdict on it. Private to
 * lib/remote/. */
#ifndef SP_RM_XFER_H
#define SP_RM_XFER_H

#include <curl/curl.h>

#include "rm.h"

#define RM_ERRBODY 2048 /* of an error response's body, kept for its <Code> and <Message> */

typedef struct rm_xfer {
    CURL *h;
    rm_site *site;
    rm_obj *obj;
    struct curl_slist *hdrs;
    /* the request: [off, off + len), or the last len bytes when tail */
    uint64_t off, len;
    bool tail;
    /* the body goes to buf[0..cap); with grow (a whole object) buf is reallocated up to cap */
    uint8_t *buf;
    uint64_t cap, got, alloc;
    bool grow, overflow;
    /* the response, reset at each status line (a redirect or a retry starts a new one) */
    long status;
    bool have_range;
    uint64_t r_first, r_last, r_total;
    int64_t clen;
    char etag[128];
    char errbody[RM_ERRBODY];
    size_t errlen;
    char curlerr[CURL_ERROR_SIZE];
    /* an upload or another method (NULL: GET): the URL's query, the body from up_fd at up_off or
     * from up_mem, up_len bytes; the answer's body kept in errbody */
    const char *method, *query;
    int up_fd;
    const uint8_t *up_mem;
    uint64_t up_off, up_len, up_done;
    char *url; /* obj->http + query, while a try runs */
    /* retries */
    unsigned tries;
    double first_try, not_before;
} rm_xfer;

/* A handle of the site's pool (a new one when the pool is empty), or NULL. */
CURL *rm_handle_get(rm_site *s);
void rm_handle_put(rm_site *s, CURL *h);
/* Sets x up for its site, object and range on x->h (x->buf, cap, grow as the caller wants). */
int rm_xfer_prepare(rm_xfer *x);
/* The verdict on a finished transfer (cc: what libcurl said; name_url: the message begins with the URL): SP_OK (o learns its size and ETag
 * on its first answer), or a code with why filled ("URL: what (bytes A-B): HTTP 503: SlowDown:
 * ..."); *retry when the failure is one a later try may not have. */
int rm_xfer_verdict(rm_xfer *x, CURLcode cc, bool name_url, char *why, size_t whylen, bool *retry);
/* After a failure that may be retried: whether the policy allows another try, and when
 * (x->not_before, with backoff and jitter). On no, why gets " (after N tries in S s)". */
bool rm_xfer_retry_at(rm_xfer *x, char *why, size_t whylen);
void rm_xfer_release(rm_xfer *x);
/* The text between <tag> and </tag> of an XML answer into out (escaped for a message, or as it
 * is; "" and false when there is none, or, unescaped, when it does not fit). */
bool rm_xml_text(const char *body, const char *tag, bool escape, char *out, size_t n);
/* Runs x (its request fields set: obj, range or method and body, buf, cap, grow) on the calling
 * thread, with the site's retries, to its verdict; a failure's message in eb. */
int rm_xfer_run(rm_site *s, rm_xfer *x, bool name_url, sp_errbuf *eb);

#endif
