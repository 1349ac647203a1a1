/* rm.h - objects on HTTP(S) servers and S3-compatible stores, read by ranged GETs through libcurl:
 * URLs and where a request goes (rm_site.c), one blocking request with retries (rm_get.c), and a
 * driver of many transfers for the loader's reader, on its thread or on receive threads
 * (rm_fetch.c). Sees common/ and format/ only. */
#ifndef SP_RM_H
#define SP_RM_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_internal.h"

/* Where the objects of one dataset live and how to ask for them: scheme, endpoint, bucket,
 * addressing, credentials, TLS and the retry policy, all fixed when it is opened. Shared by
 * every thread of a dataset; its handle pool has its own lock. */
typedef struct rm_site rm_site;

/* One object: the URL messages name (s3://bucket/key or http(s)://host/path) and, once a
 * response has said so, its size and ETag. Every later response must agree with them: a
 * different ETag or size is an object replaced since it was first read (SP_ECHANGED). */
typedef struct rm_obj {
    char *url;      /* as the user writes it */
    char *http;     /* the URL requested */
    uint64_t size;  /* UINT64_MAX until known */
    char etag[128]; /* "" until known (a server may send none) */
    /* Where size came from before any response agreed with it ("the manifest"), or NULL: then a
     * first response of another size is a short or replaced object, not one changed since. */
    const char *size_from;
} rm_obj;

/* What an object knows, copied at one moment. rm_obj's size, etag and size_from are pinned by
 * the first answer that agrees, from whichever thread gets it, under a lock of this module: other
 * modules read them through rm_obj_known while several threads may be reading the object. */
typedef struct rm_known {
    uint64_t size;
    const char *size_from;
    char etag[128];
} rm_known;
void rm_obj_known(const rm_obj *o, rm_known *k);

/* Whether path is a URL this module reads: s3://, http:// or https://. */
bool rm_is_url(const char *path);

/* The site of url, from the parameters and the environment (AWS_* variables and ~/.aws files for
 * s3://; SHARDPACK_HTTP_BEARER / SHARDPACK_HTTP_USER for http(s); CURL_CA_BUNDLE / SSL_CERT_FILE /
 * AWS_CA_BUNDLE for TLS). SP_EINVAL naming url when it cannot be used. */
int rm_site_open(const char *url, const sp_params *params, rm_site **out, sp_errbuf *eb);
void rm_site_free(rm_site *s);
/* Transfers the loader's driver keeps in flight, and its part size. */
unsigned rm_site_inflight(const rm_site *s);
bool rm_site_inflight_auto(const rm_site *s); /* remote_inflight was 0: the caller may size its own */
uint64_t rm_site_part_size(const rm_site *s);

/* o for url (which must be on s's scheme, and for s3 in any bucket). SP_EINVAL or SP_ENOMEM. */
int rm_obj_init(const rm_site *s, const char *url, rm_obj *o, sp_errbuf *eb);
void rm_obj_free(rm_obj *o);
/* url without its user:password@ part (for messages), in a new string (sp_free); NULL when out of
 * memory. */
char *rm_display_url(const char *url);
/* path as messages show it: a URL without its user:password@ part, written into buf (cut to fit
 * len), or path itself when it is no URL or holds none. */
const char *rm_shown(const char *path, char *buf, size_t len);
/* dir_url + "/" + name, in a new string (sp_free); NULL when out of memory. */
char *rm_join(const char *dir_url, const char *name);

/* Bytes [off, off + len) of o into buf, with retries. A response that disagrees with what o
 * knows, or a body of another length, fails. SP_OK, or a code with eb set to one line naming
 * the URL (unless !name_url, for a caller that names it itself), the range, the HTTP status and
 * the server's own words. */
int rm_get(rm_site *s, rm_obj *o, uint64_t off, uint64_t len, uint8_t *buf, bool name_url, sp_errbuf *eb);
/* The last min(n, size) bytes of o into buf (n of capacity); *got their count. Learns o->size. */
int rm_get_tail(rm_site *s, rm_obj *o, uint64_t n, uint8_t *buf, uint64_t *got, sp_errbuf *eb);
/* The whole of o, at most max bytes, in a new buffer (sp_free). SP_ELIMIT when it is larger. */
int rm_get_all(rm_site *s, rm_obj *o, uint64_t max, uint8_t **out, size_t *n, sp_errbuf *eb);

/* ---- uploads (rm_put.c), s3:// only ----
 * The file at path becomes object o: one PUT, or for a file over twice the part size a multipart
 * upload of parts of that size (aborted when a part or the completion fails), each request with
 * the site's retries. SP_OK, or a code with eb naming the URL and the server's answer. */
int rm_put_file(rm_site *s, rm_obj *o, const char *path, sp_errbuf *eb);
/* Whether o exists: 1, 0 (404), or a negative code with eb set (access denied, a missing bucket,
 * a server error). */
int rm_exists(rm_site *s, rm_obj *o, sp_errbuf *eb);
/* Whether s is an S3 site (uploads are only to S3). */
bool rm_site_is_s3(const rm_site *s);

/* ---- the local cache of fetched blocks (rm_cache.c; docs/remote.md, "The cache") ----
 * Blocks kept in a directory shared by the processes of a node, up to a limit of bytes, evicted by
 * their next use in the reader's planned order (the furthest first). Any thread may use a handle
 * (the loader's reader looks blocks up, its decode workers offer what they have verified). */
typedef struct rm_cache rm_cache;

/* What the caller knows of one block read: its checksum (XXH3-64 of its bytes: a cached copy and
 * a fetched one are kept and served only when they match it), when it is read (now) and when it
 * will next be read (next; UINT64_MAX: not in the plan), on one clock for every process of the
 * job. */
typedef struct rm_use {
    uint64_t sum, now, next;
} rm_use;

typedef struct rm_cache_stats {
    uint64_t hits, misses, hit_bytes, admitted, evictions, discarded;
    uint64_t bytes; /* in the directory, every process's entries, when last seen */
} rm_cache_stats;

/* Opens (creating it) the cache in dir, keeping at most limit bytes of entries: rebuilds the
 * account of its bytes from the directory, removes what writers killed midway left, and what is
 * over the limit. SP_ENOENT, SP_EIO or SP_ENOMEM with eb naming dir. */
int rm_cache_open(const char *dir, uint64_t limit, rm_cache **out, sp_errbuf *eb);
/* Writes the next uses hits could not record yet into the index (see rm_cache_get). */
void rm_cache_close(rm_cache *c);
/* Bytes [off, off + len) of o into buf from the cache: 1, or 0 when it has no whole copy that
 * matches u->sum (a damaged one is removed). A hit never waits for another thread or process that
 * holds the directory's lock: its new next use (u->next) is then left for the lock's next holder. */
int rm_cache_get(rm_cache *c, const rm_obj *o, uint64_t off, uint64_t len, uint8_t *buf, const rm_use *u);
/* Offers bytes just fetched: kept when they match u->sum (checked: the caller has compared them
 * already, and they are not hashed again) and room can be made by evicting only entries used after
 * u->next. The entry file is written here, from buf, without the directory's lock (its bytes are
 * reserved meanwhile; see rm_cache.c). Failures only mean the bytes are not kept. */
void rm_cache_put(rm_cache *c, const rm_obj *o, uint64_t off, uint64_t len, const uint8_t *buf, const rm_use *u,
                  bool checked);
void rm_cache_counters(const rm_cache *c, rm_cache_stats *s);
/* A read rm_cache_get counted as a miss that sends no GET after all (it waits for the same
 * block's fetch already out): not a miss, nor a hit (the cache did not serve it). */
void rm_cache_unmiss(rm_cache *c);

/* ---- many transfers on libcurl's multi interface (rm_fetch.c) ----
 * Requests are queued by rm_fetch_submit and started up to the site's transfers in flight, by
 * rm_fetch_reap on the caller's thread, or by receive threads; requests queued for the same
 * object whose bytes follow each other in the file and in memory go out as one ranged GET of up to
 * the part size. The data goes straight into the caller's buffers. Every request ends once, as one
 * reaped result. One thread calls every function but rm_fetch_wakeup, rm_fetch_bytes and
 * rm_fetch_gets. */
typedef struct rm_fetch rm_fetch;

/* transfers: at once (0: the site's remote_inflight), all driven by the thread calling
 * rm_fetch_reap. */
int rm_fetch_open(rm_site *s, unsigned depth, unsigned transfers, rm_fetch **out);
/* The same with the transfers split among `threads` receive threads of their own (0: none, as
 * rm_fetch_open; at most one per 4 transfers), each driving its share on its own multi handle, so
 * that libcurl's copy of every byte into the caller's buffers is spread over them. The threads
 * start at the first request (none runs after the open: a program may fork then) and end at
 * rm_fetch_park or rm_fetch_close; requests queued are started at the next rm_fetch_reap. */
int rm_fetch_open_threads(rm_site *s, unsigned depth, unsigned transfers, unsigned threads, rm_fetch **out);
/* Ends the receive threads (nothing may be pending: after the last request is reaped); the next
 * request starts them again. Connections stay open. */
void rm_fetch_park(rm_fetch *f);
/* Receive threads running (0: the caller's thread drives the transfers). */
unsigned rm_fetch_threads(const rm_fetch *f);
/* Stops every transfer (their buffers are not written afterwards), then frees everything. */
void rm_fetch_close(rm_fetch *f);
/* Requests queued or in flight, and the most that may be. */
unsigned rm_fetch_pending(const rm_fetch *f);
unsigned rm_fetch_depth(const rm_fetch *f);
/* Queues bytes [off, off + len) of o (which must outlive the request) into buf, whose first room
 * bytes (len or more) are the request's until it is reaped: a GET joined with the next request
 * writes the file's bytes between the two there, never past them. SP_OK when a GET is to fetch
 * them, 1 when none is (the cache held them, or a GET of the same bytes is already out), SP_EBUSY
 * when depth requests are pending. */
int rm_fetch_submit(rm_fetch *f, rm_obj *o, uint8_t *buf, uint64_t len, uint64_t room, uint64_t off, uint64_t tag);
/* The same for an object of another site than the driver's (a mixture's sources on several servers:
 * one driver carries every site's transfers; each request is sent, authenticated and retried
 * as its own site says). s must outlive the request. */
int rm_fetch_submit_at(rm_fetch *f, rm_site *s, rm_obj *o, uint8_t *buf, uint64_t len, uint64_t room, uint64_t off,
                       uint64_t tag);
/* Drives the transfers. 1 with a finished request's tag and *code (SP_OK, or an SP code with why
 * filled: one line as rm_get's without the URL, "bytes A-B: HTTP 503 (after 9 tries in 4.1 s)"),
 * 0 when none has finished: at once without wait, else after waiting at most about a second (or
 * until rm_fetch_wakeup), so that the caller may look at its own stop flag. */
int rm_fetch_reap(rm_fetch *f, bool wait, uint64_t *tag, int *code, char *why, size_t whylen);
/* Reads go through cache c (which must outlive f): each request submitted after an rm_fetch_use
 * is served from it when it holds the block; once fetched, the caller offers it to the cache (see
 * rm_fetch_reaped_use): no thread of the driver writes an entry. */
void rm_fetch_set_cache(rm_fetch *f, rm_cache *c);
/* After rm_fetch_reap returned 1: whether that request's bytes were fetched from the server for the
 * cache (submitted after an rm_fetch_use, not served by the cache or copied from another request,
 * and ended SP_OK), with the use it was submitted with in *u. Its caller then offers them with
 * rm_cache_put once it has checked them, while buf is still its own. */
bool rm_fetch_reaped_use(const rm_fetch *f, rm_use *u);
/* What the next rm_fetch_submit reads (for the cache; a submit without one bypasses it). */
void rm_fetch_use(rm_fetch *f, const rm_use *u);
/* Bytes of requests fetched from the server so far; any thread may call it. */
uint64_t rm_fetch_bytes(const rm_fetch *f);
/* GETs sent (each try of a transfer, whatever requests it joins), and the transfers at once. */
uint64_t rm_fetch_gets(const rm_fetch *f);
unsigned rm_fetch_transfers(const rm_fetch *f);
/* Ends a wait in rm_fetch_reap early; any thread may call it. */
void rm_fetch_wakeup(rm_fetch *f);
/* Stops every transfer at once: each pending request ends with SP_ECANCELED, its buffer no longer
 * written. */
void rm_fetch_cancel(rm_fetch *f);

#endif
