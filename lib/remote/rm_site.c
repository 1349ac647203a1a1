/* rm_site.c - URLs and sites: which scheme, endpoint, bucket and addressing a URL means, the
 * credentials and TLS settings every S3 tool reads from the environment and ~/.aws, and the pool
 * of libcurl handles that keeps connections open between requests. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "rm_xfer.h"
#include "sp_file.h"

enum { RM_HTTP, RM_S3 };
#define RM_POOL 16

struct rm_site {
    int scheme;
    char *endpoint;   /* s3: "scheme://host[:port]", no trailing '/' */
    char *region;
    bool virtual_host;
    char *key_id, *secret, *token; /* s3; NULL: unsigned requests */
    char sigv4[160];
    char *bearer, *user; /* http(s) */
    char *ca;            /* CA bundle file, NULL for libcurl's default */
    unsigned retries, inflight;
    bool inflight_auto; /* remote_inflight 0: 16 here, the loader's own choice for its reads */
    double retry_time;
    long timeout;
    uint64_t part;
    pthread_mutex_t mu;
    CURL *pool[RM_POOL];
    int npool;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
/* Guards what every rm_obj knows (size, size_from, etag): the threads reading blocks of one
 * dataset share its objects, and the first answer pins them. Held for a copy or a compare only. */
static pthread_mutex_t obj_mu = PTHREAD_MUTEX_INITIALIZER;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

bool rm_is_url(const char *path)
{
    return path && (strncmp(path, "s3://", 5) == 0 || strncmp(path, "http://", 7) == 0 ||
                    strncmp(path, "https://", 8) == 0);
}

/* A copy of the environment variable's value, NULL when unset or empty. */
static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? sp_strdup(v) : NULL;
}

/* The value of key in [section] of an INI file (~/.aws/credentials, ~/.aws/config), or NULL. */
static char *ini_get(const char *path, const char *section, const char *key)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return NULL;
    char line[1024], *val = NULL;
    bool in = false;
    while (!val && fgets(line, sizeof line, f)) {
        char *p = line, *end = line + strlen(line);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = '\0';
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '#' || *p == ';' || !*p)
            continue;
        if (*p == '[') {
            char *close = strchr(p, ']');
            if (close) {
                *close = '\0';
                char *name = p + 1;
                while (isspace((unsigned char)*name))
                    name++;
                in = strcmp(name, section) == 0;
            }
            continue;
        }
        char *eq = strchr(p, '=');
        if (!in || !eq)
            continue;
        char *k_end = eq;
        while (k_end > p && isspace((unsigned char)k_end[-1]))
            k_end--;
        char *v = eq + 1;
        while (isspace((unsigned char)*v))
            v++;
        if ((size_t)(k_end - p) == strlen(key) && strncmp(p, key, strlen(key)) == 0)
            val = sp_strdup(v);
    }
    fclose(f);
    return val;
}

/* AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, else ~/.aws/NAME, into buf. */
static const char *aws_file(const char *env, const char *name, char *buf, size_t n)
{
    const char *v = getenv(env);
    if (v && *v)
        return v;
    const char *home = getenv("HOME");
    if (!home || !*home || snprintf(buf, n, "%s/.aws/%s", home, name) >= (int)n)
        return NULL;
    return buf;
}

/* key of profile from the config file ([profile NAME], or [default]), then the credentials file
 * ([NAME]) when creds. */
static char *profile_get(const char *profile, const char *key, bool creds)
{
    char buf[4096], section[300];
    char *v = NULL;
    if (creds)
        v = ini_get(aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", buf, sizeof buf), profile, key);
    if (!v) {
        snprintf(section, sizeof section, strcmp(profile, "default") == 0 ? "%s" : "profile %s", profile);
        v = ini_get(aws_file("AWS_CONFIG_FILE", "config", buf, sizeof buf), section, key);
    }
    return v;
}

static int s3_setup(rm_site *s, const char *url, const sp_params *params, sp_errbuf *eb)
{
    const char *pv = getenv("AWS_PROFILE");
    const char *profile = pv && *pv ? pv : "default";
    s->key_id = env_dup("AWS_ACCESS_KEY_ID");
    s->secret = env_dup("AWS_SECRET_ACCESS_KEY");
    if (!s->key_id != !s->secret)
        return sp_fail(eb, SP_EINVAL, "%s: %s is set but %s is not", url,
                       s->key_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                       s->key_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    if (s->key_id) {
        s->token = env_dup("AWS_SESSION_TOKEN");
    } else {
        sp_free(s->key_id);
        sp_free(s->secret);
        s->key_id = profile_get(profile, "aws_access_key_id", true);
        s->secret = profile_get(profile, "aws_secret_access_key", true);
        s->token = profile_get(profile, "aws_session_token", true);
    }
    if (!s->key_id != !s->secret)
        return sp_fail(eb, SP_EINVAL, "%s: an access key id without a secret key, or a secret without an id "
                       "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or profile '%s')", url, profile);
    if (!(s->region = env_dup("AWS_REGION")) && !(s->region = env_dup("AWS_DEFAULT_REGION")) &&
        !(s->region = profile_get(profile, "region", false)) && !(s->region = sp_strdup("us-east-1")))
        return SP_ENOMEM;
    char *ep = env_dup("AWS_ENDPOINT_URL_S3");
    if (!ep)
        ep = env_dup("AWS_ENDPOINT_URL");
    if (!ep)
        ep = profile_get(profile, "endpoint_url", false);
    bool custom = ep != NULL;
    if (!ep) {
        size_t n = strlen(s->region) + 40;
        if (!(ep = sp_malloc(n)))
            return SP_ENOMEM;
        snprintf(ep, n, "https://s3.%s.amazonaws.com", s->region);
    }
    size_t n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        ep[--n] = '\0';
    s->endpoint = ep;
    if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)
        return sp_fail(eb, SP_EINVAL, "%s: the S3 endpoint '%s' is not an http:// or https:// URL (AWS_ENDPOINT_URL)",
                       url, ep);
    int mode = (int)sp_params_get(params, SP_PARAM_S3_ADDRESSING);
    if (mode == SP_S3_ADDRESSING_AUTO) {
        const char *env = getenv("SHARDPACK_S3_ADDRESSING");
        mode = env && strcmp(env, "path") == 0 ? SP_S3_ADDRESSING_PATH
               : env && strcmp(env, "virtual") == 0 ? SP_S3_ADDRESSING_VIRTUAL
               : custom ? SP_S3_ADDRESSING_PATH : SP_S3_ADDRESSING_VIRTUAL;
    }
    s->virtual_host = mode == SP_S3_ADDRESSING_VIRTUAL;
    snprintf(s->sigv4, sizeof s->sigv4, "aws:amz:%s:s3", s->region);
    char *ca = env_dup("AWS_CA_BUNDLE");
    if (ca) {
        sp_free(s->ca);
        s->ca = ca;
    }
    return SP_OK;
}

int rm_site_open(const char *url, const sp_params *params, rm_site **out, sp_errbuf *eb)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return sp_fail(eb, SP_ESYS, "%s: libcurl cannot start: %s", url, curl_easy_strerror(curl_init_rc));
    if (!rm_is_url(url))
        return sp_fail(eb, SP_EINVAL, "%s: not an s3://, http:// or https:// URL", url);
    rm_site *s = sp_calloc(1, sizeof *s);
    if (!s)
        return sp_fail(eb, SP_ENOMEM, "%s: out of memory", url);
    pthread_mutex_init(&s->mu, NULL);
    s->scheme = strncmp(url, "s3://", 5) == 0 ? RM_S3 : RM_HTTP;
    s->retries = (unsigned)sp_params_get(params, SP_PARAM_REMOTE_RETRIES);
    s->retry_time = (double)sp_params_get(params, SP_PARAM_REMOTE_RETRY_TIME);
    s->timeout = (long)sp_params_get(params, SP_PARAM_REMOTE_TIMEOUT);
    s->part = (uint64_t)sp_params_get(params, SP_PARAM_REMOTE_PART_SIZE);
    s->inflight = (unsigned)sp_params_get(params, SP_PARAM_REMOTE_INFLIGHT);
    s->inflight_auto = s->inflight == 0;
    if (s->inflight_auto)
        s->inflight = 16; /* the loader sizes its own from its blocks (ld_loader.c) */
    s->ca = env_dup("CURL_CA_BUNDLE");
    if (!s->ca)
        s->ca = env_dup("SSL_CERT_FILE");
    int rc = SP_OK;
    if (s->scheme == RM_S3) {
        rc = s3_setup(s, url, params, eb);
    } else {
        s->bearer = env_dup("SHARDPACK_HTTP_BEARER");
        s->user = env_dup("SHARDPACK_HTTP_USER");
    }
    if (rc == SP_ENOMEM)
        rc = sp_fail(eb, SP_ENOMEM, "%s: out of memory", url);
    if (rc) {
        rm_site_free(s);
        return rc;
    }
    *out = s;
    return SP_OK;
}

void rm_site_free(rm_site *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->npool; i++)
        curl_easy_cleanup(s->pool[i]);
    sp_free(s->endpoint);
    sp_free(s->region);
    sp_free(s->key_id);
    sp_free(s->secret);
    sp_free(s->token);
    sp_free(s->bearer);
    sp_free(s->user);
    sp_free(s->ca);
    pthread_mutex_destroy(&s->mu);
    sp_free(s);
}

unsigned rm_site_inflight(const rm_site *s) { return s->inflight; }
bool rm_site_inflight_auto(const rm_site *s) { return s->inflight_auto; }
bool rm_site_is_s3(const rm_site *s) { return s->scheme == RM_S3; }
uint64_t rm_site_part_size(const rm_site *s) { return s->part; }

CURL *rm_handle_get(rm_site *s)
{
    pthread_mutex_lock(&s->mu);
    CURL *h = s->npool ? s->pool[--s->npool] : NULL;
    pthread_mutex_unlock(&s->mu);
    return h ? h : curl_easy_init();
}

void rm_handle_put(rm_site *s, CURL *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->npool < RM_POOL) {
        s->pool[s->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ---------------------------------------------------------------- objects */

/* Appends src percent-encoded (all but unreserved characters and '/') to b. */
static void put_escaped(sp_buf *b, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == '/') {
            sp_buf_put(b, p, 1);
        } else {
            uint8_t e[3] = { '%', (uint8_t)hex[*p >> 4], (uint8_t)hex[*p & 15] };
            sp_buf_put(b, e, 3);
        }
    }
}

static void put_str(sp_buf *b, const char *s, size_t n) { sp_buf_put(b, s, n); }

/* The '@' ending url's user:password (its host begins at *host), or NULL when it has none. */
static const char *credentials_end(const char *url, const char **host)
{
    const char *sep = strstr(url, "://");
    *host = sep ? sep + 3 : url;
    return memchr(*host, '@', strcspn(*host, "/?#"));
}

const char *rm_shown(const char *path, char *buf, size_t len)
{
    const char *host, *at = rm_is_url(path) ? credentials_end(path, &host) : NULL;
    if (!at)
        return path;
    snprintf(buf, len, "%.*s%s", (int)(host - path), path, at + 1);
    return buf;
}

char *rm_display_url(const char *url)
{
    const char *host, *at = credentials_end(url, &host);
    if (!at)
        return sp_strdup(url);
    size_t n = strlen(url) - (size_t)(at + 1 - host);
    char *d = sp_malloc(n + 1);
    if (d)
        snprintf(d, n + 1, "%.*s%s", (int)(host - url), url, at + 1);
    return d;
}

int rm_obj_init(const rm_site *s, const char *url, rm_obj *o, sp_errbuf *eb)
{
    *o = (rm_obj){ .size = UINT64_MAX };
    if (s->scheme == RM_HTTP) {
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
            return sp_fail(eb, SP_EINVAL, "%s: not an http(s) URL", url);
        o->url = rm_display_url(url);
        o->http = sp_strdup(url);
    } else {
        if (strncmp(url, "s3://", 5) != 0)
            return sp_fail(eb, SP_EINVAL, "%s: not an s3:// URL", url);
        const char *bucket = url + 5, *slash = strchr(bucket, '/');
        size_t blen = slash ? (size_t)(slash - bucket) : strlen(bucket);
        if (blen < 3 || blen > 63)
            return sp_fail(eb, SP_EINVAL, "%s: a bucket name has 3 to 63 characters", url);
        const char *key = slash ? slash + 1 : "";
        sp_buf b = { 0 };
        const char *host = strstr(s->endpoint, "://") + 3;
        if (s->virtual_host) {
            put_str(&b, s->endpoint, (size_t)(host - s->endpoint));
            put_str(&b, bucket, blen);
            put_str(&b, ".", 1);
            put_str(&b, host, strlen(host));
        } else {
            put_str(&b, s->endpoint, strlen(s->endpoint));
            put_str(&b, "/", 1);
            put_str(&b, bucket, blen);
        }
        put_str(&b, "/", 1);
        put_escaped(&b, key);
        put_str(&b, "", 1);
        if (b.failed) {
            sp_buf_free(&b);
            return sp_fail(eb, SP_ENOMEM, "%s: out of memory", url);
        }
        o->http = (char *)b.data;
        o->url = sp_strdup(url);
    }
    if (!o->url || !o->http) {
        rm_obj_free(o);
        return sp_fail(eb, SP_ENOMEM, "%s: out of memory", url);
    }
    return SP_OK;
}

void rm_obj_free(rm_obj *o)
{
    sp_free(o->url);
    sp_free(o->http);
    o->url = o->http = NULL;
}

char *rm_join(const char *dir_url, const char *name)
{
    size_t n = strlen(dir_url) + strlen(name) + 2;
    char *p = sp_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir_url, name);
    return p;
}

/* ---------------------------------------------------------------- one transfer */

/* Lowercase header name match at the start of a header line. */
static bool header_is(const char *line, size_t n, const char *name, const char **value)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    const char *v = line + k + 1;
    while (v < line + n && (*v == ' ' || *v == '\t'))
        v++;
    *value = v;
    return true;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *user)
{
    rm_xfer *x = user;
    size_t n = size * nitems, len = n;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    const char *v;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a redirect or a 100 Continue): forget the last one's headers */
        const char *sp = memchr(line, ' ', len);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->have_range = false;
        x->clen = -1;
        x->etag[0] = '\0';
        x->got = 0;
        x->errlen = 0;
        x->overflow = false;
    } else if (header_is(line, len, "content-range", &v)) {
        unsigned long long a, b, t;
        if (sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
            x->have_range = true;
            x->r_first = a, x->r_last = b, x->r_total = t;
        }
    } else if (header_is(line, len, "content-length", &v)) {
        x->clen = strtoll(v, NULL, 10);
    } else if (header_is(line, len, "etag", &v)) {
        snprintf(x->etag, sizeof x->etag, "%.*s", (int)(line + len - v), v);
    }
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    rm_xfer *x = user;
    size_t n = size * nmemb;
    if (x->status < 200 || x->status >= 300 || x->method) {
        size_t k = n < RM_ERRBODY - 1 - x->errlen ? n : RM_ERRBODY - 1 - x->errlen;
        memcpy(x->errbody + x->errlen, data, k);
        x->errlen += k;
        x->errbody[x->errlen] = '\0';
        return n;
    }
    if (x->got + n > x->cap) {
        x->overflow = true;
        return 0; /* more than was asked for: libcurl stops with CURLE_WRITE_ERROR */
    }
    if (x->grow && x->got + n > x->alloc) {
        uint64_t want = (x->got + n) * 2 < x->cap ? (x->got + n) * 2 : x->cap;
        uint8_t *nb = sp_realloc(x->buf, want);
        if (!nb)
            return 0;
        x->buf = nb;
        x->alloc = want;
    }
    memcpy(x->buf + x->got, data, n);
    x->got += n;
    return n;
}

/* An upload's body, from its file or its memory. */
static size_t on_read(char *data, size_t size, size_t nitems, void *user)
{
    rm_xfer *x = user;
    size_t n = size * nitems;
    uint64_t left = x->up_len - x->up_done;
    if (n > left)
        n = (size_t)left;
    if (n == 0)
        return 0;
    if (x->up_mem) {
        memcpy(data, x->up_mem + x->up_done, n);
    } else if (sp_pread_all(x->up_fd, data, n, x->up_off + x->up_done) != 0) {
        return CURL_READFUNC_ABORT;
    }
    x->up_done += n;
    return n;
}

/* Rewinds an upload's body for a resend (a redirect, an auth round). */
static int on_seek(void *user, curl_off_t offset, int origin)
{
    rm_xfer *x = user;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->up_len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->up_done = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

int rm_xfer_prepare(rm_xfer *x)
{
    rm_site *s = x->site;
    CURL *h = x->h;
    curl_easy_reset(h);
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    x->status = 0;
    x->got = 0;
    x->overflow = false;
    x->have_range = false;
    x->clen = -1;
    x->etag[0] = '\0';
    x->errlen = 0;
    x->errbody[0] = '\0';
    x->curlerr[0] = '\0';
    char range[64];
    if (x->tail)
        snprintf(range, sizeof range, "-%llu", (unsigned long long)x->len);
    else if (x->len)
        snprintf(range, sizeof range, "%llu-%llu", (unsigned long long)x->off,
                 (unsigned long long)(x->off + x->len - 1));
    sp_free(x->url);
    x->url = NULL;
    if (x->query) {
        size_t n = strlen(x->obj->http) + strlen(x->query) + 2;
        if (!(x->url = sp_malloc(n)))
            return SP_ENOMEM;
        snprintf(x->url, n, "%s?%s", x->obj->http, x->query);
    }
    bool ok = curl_easy_setopt(h, CURLOPT_URL, x->url ? x->url : x->obj->http) == CURLE_OK;
    if (x->method) {
        x->up_done = 0;
        if (strcmp(x->method, "PUT") == 0) {
            curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->up_len);
        } else if (strcmp(x->method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POST, 1L);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->up_len);
        } else {
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method);
        }
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
    }
    if (x->tail || x->len)
        ok &= curl_easy_setopt(h, CURLOPT_RANGE, range) == CURLE_OK;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024); /* fewer, larger copies into the ring */
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->curlerr);
    /* A retry waits no longer than the retries have left (remote_retry_time), so that a request
     * that keeps failing ends within it, not up to a whole remote_timeout after it. */
    long wait = s->timeout;
    if (x->tries > 0) {
        double left = s->retry_time - (sp_now() - x->first_try);
        long w = left < 1.0 ? 1 : (long)left + 1;
        wait = w < wait ? w : wait;
    }
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, wait);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, wait);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "shardpack");
    if (s->ca)
        ok &= curl_easy_setopt(h, CURLOPT_CAINFO, s->ca) == CURLE_OK;
    if (s->scheme == RM_S3) {
        if (s->key_id) {
            /* Separately, since an access key may hold a ':' (Swift's "account:user"). */
            ok &= curl_easy_setopt(h, CURLOPT_USERNAME, s->key_id) == CURLE_OK;
            ok &= curl_easy_setopt(h, CURLOPT_PASSWORD, s->secret) == CURLE_OK;
            ok &= curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4) == CURLE_OK;
            x->hdrs = curl_slist_append(x->hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
            if (s->token) {
                size_t n = strlen(s->token) + 32;
                char *t = sp_malloc(n);
                if (t) {
                    snprintf(t, n, "x-amz-security-token: %s", s->token);
                    x->hdrs = curl_slist_append(x->hdrs, t);
                    sp_free(t);
                }
                ok &= t != NULL;
            }
            ok &= x->hdrs != NULL;
        }
    } else {
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        if (s->bearer) {
            ok &= curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BEARER) == CURLE_OK;
            ok &= curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, s->bearer) == CURLE_OK;
        } else if (s->user) {
            ok &= curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC) == CURLE_OK;
            ok &= curl_easy_setopt(h, CURLOPT_USERPWD, s->user) == CURLE_OK;
        }
    }
    if (x->hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    return ok ? SP_OK : SP_ENOMEM;
}

void rm_xfer_release(rm_xfer *x)
{
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    sp_free(x->url);
    x->url = NULL;
}

bool rm_xml_text(const char *body, const char *tag, bool escape, char *out, size_t n)
{
    char open[40], close[40];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = strstr(body, open), *b = a ? strstr(a, close) : NULL;
    out[0] = '\0';
    if (!a || !b)
        return false;
    size_t len = (size_t)(b - a - strlen(open));
    if (escape) {
        sp_text_escape(a + strlen(open), len, out, n);
        return true;
    }
    if (len >= n)
        return false;
    memcpy(out, a + strlen(open), len);
    out[len] = '\0';
    return true;
}

/* "HTTP 403: SignatureDoesNotMatch: The request signature ..." or "HTTP 404" and so on. */
static void status_words(const rm_xfer *x, char *out, size_t n)
{
    char code[128], msg[256];
    rm_xml_text(x->errbody, "Code", true, code, sizeof code);
    rm_xml_text(x->errbody, "Message", true, msg, sizeof msg);
    if (code[0])
        snprintf(out, n, "HTTP %ld: %s%s%s", x->status, code, msg[0] ? ": " : "", msg);
    else
        snprintf(out, n, "HTTP %ld", x->status);
}

/* "URL (bytes A-B)", or "bytes A-B" without name_url. */
static int where(const rm_xfer *x, bool name_url, char *out, size_t n)
{
    char range[128];
    if (x->method)
        snprintf(range, sizeof range, "%s%s%.40s, %llu bytes", x->method, x->query ? " ?" : "",
                 x->query ? x->query : "", (unsigned long long)x->up_len);
    else if (x->tail)
        snprintf(range, sizeof range, "last %llu bytes", (unsigned long long)x->len);
    else if (x->len)
        snprintf(range, sizeof range, "bytes %llu-%llu", (unsigned long long)x->off,
                 (unsigned long long)(x->off + x->len - 1));
    else
        snprintf(range, sizeof range, "whole object");
    return name_url ? snprintf(out, n, "%s (%s)", x->obj->url, range) : snprintf(out, n, "%s", range);
}

/* What o knows, copied; obj_mu held. */
static void rm_obj_known_locked(const rm_obj *o, rm_known *k)
{
    k->size = o->size;
    k->size_from = o->size_from;
    memcpy(k->etag, o->etag, sizeof k->etag);
}

/* Whether an answer for an object of total bytes with ETag etag ("" when it sent none) agrees with
 * what k knows of it. */
static bool agrees(const rm_known *k, uint64_t total, const char *etag)
{
    return (k->size == UINT64_MAX || total == k->size) && !(k->etag[0] && etag[0] && strcmp(k->etag, etag) != 0);
}

void rm_obj_known(const rm_obj *o, rm_known *k)
{
    pthread_mutex_lock(&obj_mu);
    rm_obj_known_locked(o, k);
    pthread_mutex_unlock(&obj_mu);
}

/* An answer of total bytes that disagrees with what k knows: SP_ECHANGED, why saying both. */
static int changed(const rm_xfer *x, const char *at, const rm_known *k, uint64_t total, char *why, size_t whylen)
{
    snprintf(why, whylen, "%s: HTTP %ld: the object changed since it was opened (was %llu bytes, ETag %s; "
             "now %llu bytes, ETag %s)", at, x->status, (unsigned long long)k->size, k->etag[0] ? k->etag : "none",
             (unsigned long long)total, x->etag[0] ? x->etag : "none");
    return SP_ECHANGED;
}

int rm_xfer_verdict(rm_xfer *x, CURLcode cc, bool name_url, char *why, size_t whylen, bool *retry)
{
    *retry = false;
    char at[1024];
    where(x, name_url, at, sizeof at);
    if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && (x->status < 200 || x->status >= 300))) {
        if (x->overflow) {
            snprintf(why, whylen, "%s: HTTP %ld: the server sent more bytes than asked for (Content-Length %lld)",
                     at, x->status, (long long)x->clen);
            return SP_EREMOTE;
        }
        switch (cc) {
        case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
        case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
            *retry = true;
            break;
        default:
            break;
        }
        snprintf(why, whylen, "%s: %s%s%s", at, curl_easy_strerror(cc), x->curlerr[0] ? ": " : "", x->curlerr);
        return SP_EREMOTE;
    }
    char words[512];
    status_words(x, words, sizeof words);
    rm_known k; /* what the object knew when this answer came */
    rm_obj_known(x->obj, &k);
    if (x->status == 408 || x->status == 429 || (x->status >= 500 && x->status <= 599)) {
        *retry = true;
        snprintf(why, whylen, "%s: %s", at, words);
        return SP_EREMOTE;
    }
    if (x->status == 404 || x->status == 410) {
        snprintf(why, whylen, "%s: not found (%s)", at, words);
        return SP_ENOENT;
    }
    if (x->status == 401 || x->status == 403) {
        snprintf(why, whylen, "%s: access denied (%s)", at, words);
        return SP_EDENIED;
    }
    if (x->status == 416 && k.size != UINT64_MAX && k.size_from) {
        snprintf(why, whylen, "%s: %s: the object is shorter than the %llu bytes %s records: truncated, or "
                 "replaced since", at, words, (unsigned long long)k.size, k.size_from);
        return SP_ETRUNC;
    }
    if (x->status == 412 || (x->status == 416 && k.size != UINT64_MAX)) {
        snprintf(why, whylen, "%s: %s: the object changed since it was opened (%llu bytes then)", at, words,
                 (unsigned long long)k.size);
        return SP_ECHANGED;
    }
    if (x->method) {
        /* an upload: any 2xx without an <Error> in its body (S3 may report a failed
         * CompleteMultipartUpload so) */
        if (x->status >= 200 && x->status < 300 && !strstr(x->errbody, "<Error>"))
            return SP_OK;
        *retry = x->status >= 200 && x->status < 300 && strstr(x->errbody, "InternalError");
        snprintf(why, whylen, "%s: %s", at, words);
        return SP_EREMOTE;
    }
    if (x->status != 200 && x->status != 206) {
        snprintf(why, whylen, "%s: %s", at, words);
        return x->status == 416 ? SP_ETRUNC : SP_EREMOTE;
    }
    /* A 2xx: is it the range asked for, of the object first seen? */
    uint64_t total = x->status == 206 && x->have_range ? x->r_total : x->status == 200 ? x->got : UINT64_MAX;
    if (x->status == 206 && !x->have_range) {
        snprintf(why, whylen, "%s: HTTP 206 without a Content-Range", at);
        return SP_EREMOTE;
    }
    if (x->status == 200 && (x->tail ? false : x->len && (x->off != 0 || x->got < x->len))) {
        snprintf(why, whylen, "%s: HTTP 200: the server ignored the range and sent %llu bytes", at,
                 (unsigned long long)x->got);
        return SP_EREMOTE;
    }
    if (k.size != UINT64_MAX && total != k.size && k.size_from) {
        snprintf(why, whylen, "%s: HTTP %ld: the object is %llu bytes where %s records %llu: %s", at, x->status,
                 (unsigned long long)total, k.size_from, (unsigned long long)k.size,
                 total < k.size ? "truncated, or replaced since" : "replaced or damaged since");
        return total < k.size ? SP_ETRUNC : SP_ECORRUPT;
    }
    if (!agrees(&k, total, x->etag))
        return changed(x, at, &k, total, why, whylen);
    uint64_t want = x->tail ? (x->len < total ? x->len : total) : x->len ? x->len : x->got;
    uint64_t first = x->tail ? total - want : x->off;
    if (x->status == 206 && (x->r_first != first || x->r_last + 1 != first + want)) {
        snprintf(why, whylen, "%s: HTTP 206 with Content-Range bytes %llu-%llu/%llu, not the range asked for", at,
                 (unsigned long long)x->r_first, (unsigned long long)x->r_last, (unsigned long long)x->r_total);
        return SP_EREMOTE;
    }
    if (x->got != want || (x->clen >= 0 && (uint64_t)x->clen != x->got)) {
        /* cut short on the way (a proxy, a reset): another try may get it whole */
        *retry = true;
        snprintf(why, whylen, "%s: HTTP %ld: a body of %llu bytes (Content-Length %lld) where %llu were due", at,
                 x->status, (unsigned long long)x->got, (long long)x->clen, (unsigned long long)want);
        return SP_EREMOTE;
    }
    /* Pinned (or checked again) under the lock: another thread's answer may have pinned the object
     * since the copy above, and then this one must agree with it. */
    pthread_mutex_lock(&obj_mu);
    rm_obj_known_locked(x->obj, &k);
    bool ok = agrees(&k, total, x->etag);
    if (ok) {
        x->obj->size_from = NULL; /* a response agreed (the shard's tail, read at its opening): from now
                                   * on another size is a change */
        if (x->obj->size == UINT64_MAX) {
            x->obj->size = total;
            snprintf(x->obj->etag, sizeof x->obj->etag, "%s", x->etag);
        } else if (!x->obj->etag[0] && x->etag[0]) {
            snprintf(x->obj->etag, sizeof x->obj->etag, "%s", x->etag);
        }
    }
    pthread_mutex_unlock(&obj_mu);
    return ok ? SP_OK : changed(x, at, &k, total, why, whylen);
}

/* A random number in [0, 1) for jitter, per thread. */
static double jitter_unit(void)
{
    static _Thread_local uint64_t st;
    if (!st)
        st = (uint64_t)(sp_now() * 1e9) ^ ((uint64_t)(uintptr_t)&st << 17) ^ 0x9e3779b97f4a7c15ull;
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (double)(st >> 11) / 9007199254740992.0;
}

bool rm_xfer_retry_at(rm_xfer *x, char *why, size_t whylen)
{
    double now = sp_now();
    if (x->tries == 0)
        x->first_try = now;
    x->tries++;
    /* 0.1 s doubling to at most 5 s, each pause drawn from its upper half (jitter) */
    double cap = 0.1 * (double)(1u << (x->tries < 6 ? x->tries - 1 : 6));
    cap = cap < 5.0 ? cap : 5.0;
    double pause = cap * (0.5 + 0.5 * jitter_unit());
    if (x->tries > x->site->retries || now + pause - x->first_try > x->site->retry_time) {
        size_t n = strlen(why);
        if (x->tries > 1)
            snprintf(why + n, whylen - n, " (after %u tries in %.1f s)", x->tries, now - x->first_try);
        return false;
    }
    x->not_before = now + pause;
    return true;
}
