/* rt_util.c - servers and runs for the remote tests (rt_util.h). */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rt_util.h"
#include "test_util.h"

int rt_servers(const char *arg, ...)
{
    const char *py = getenv("SP_SERVERS_PY");
    if (!py) {
        fprintf(stderr, "SP_SERVERS_PY is not set (meson sets it to tests/remote/servers.py)\n");
        return -1;
    }
    char cmd[8192];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "python3 '%s'", py);
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < sizeof cmd; a = va_arg(ap, const char *))
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, " '%s'", a);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (line[0] == '#' || !eq)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        size_t len = strlen(v);
        if (len >= 2 && v[0] == '\'' && v[len - 1] == '\'') {
            v[len - 1] = '\0';
            v++;
        }
        setenv(line, v, 1);
    }
    int st = pclose(f);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        return 77;
    fprintf(stderr, "%s: failed (status %d)\n", cmd, st);
    return -1;
}

int rt_proxy(const char *upstream, const char *state)
{
    const char *py = getenv("SP_SERVERS_PY");
    if (!py || !strrchr(py, '/'))
        return -1;
    char code[16384];
    snprintf(code, sizeof code, "python3 -c \"import sys; sys.path.insert(0, '%.*s'); import faultproxy, servers; "
             "print(servers.format_env(faultproxy.start_proxy('%s', '%s')))\"", (int)(strrchr(py, '/') - py), py,
             upstream, state);
    FILE *f = popen(code, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = '\0';
            setenv(line, eq + 1, 1);
        }
    }
    return f && pclose(f) == 0 && getenv("SP_TEST_PROXY_URL") ? 0 : -1;
}

size_t rt_requests(const char *state)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/logs/nginx-access.log", state);
    size_t n = 0, lines = 0;
    uint8_t *p = tu_read_file(path, &n);
    for (size_t i = 0; p && i < n; i++)
        lines += p[i] == '\n';
    free(p);
    return lines;
}

void rt_stop(const char *state) { rt_servers("stop", "--state", state, NULL); }

int rt_nginx_proxied(const char *root, char *state, size_t n)
{
    snprintf(state, n, "%s/servers", root);
    int rc = rt_servers("nginx", "start", "--root", root, "--state", state, NULL);
    if (rc == 0)
        rc = rt_proxy(getenv("SP_TEST_HTTP_URL"), state);
    if (rc)
        rt_stop(state);
    return rc == 77 ? 77 : rc ? -1 : 0;
}

void rt_rules(const char *json)
{
    const char *path = rt_env("SP_TEST_PROXY_RULES");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    tu_write_file(tmp, json, strlen(json));
    ck_assert_int_eq(rename(tmp, path), 0);
}

const char *rt_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v != NULL, "%s is not set", name);
    return v ? v : "";
}

const char *rt_url(const char *base, const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", base, rel);
    return buf;
}

/* rt_run with the extra pairs in an array. */
static int run_kv(const lt_ds *d, const char *path, lt_rec *r, char *msg, size_t msglen, const char *const *extra)
{
    const char *kv[64] = { "epochs", "2", "batch_size", "7" };
    size_t n = 4;
    for (; extra && extra[0] && n + 2 < 64; extra += 2) {
        kv[n++] = extra[0];
        kv[n++] = extra[1];
    }
    kv[n] = NULL;
    msg[0] = '\0';
    sp_loader *l = NULL;
    int rc = lt_open_kv(path, &l, kv);
    if (rc == 0) {
        do
            rc = lt_drain(l, d, r, UINT64_MAX, 60000);
        while (rc == SP_EEPOCH);
    }
    snprintf(msg, msglen, "%s", l ? sp_loader_errmsg(l) : sp_last_error());
    sp_loader_close(l);
    return rc;
}

/* The extra name/value pairs of a call, into kv (room for 64 entries and the NULL). */
#define RT_PAIRS(kv, last)                                                                         \
    do {                                                                                           \
        va_list ap_;                                                                               \
        va_start(ap_, last);                                                                       \
        size_t n_ = 0;                                                                             \
        for (const char *k_; n_ + 2 < 64 && (k_ = va_arg(ap_, const char *));) {                   \
            kv[n_++] = k_;                                                                         \
            kv[n_++] = va_arg(ap_, const char *);                                                  \
        }                                                                                          \
        va_end(ap_);                                                                               \
        kv[n_] = NULL;                                                                             \
    } while (0)

int rt_run(const lt_ds *d, const char *path, lt_rec *r, char *msg, size_t msglen, ...)
{
    const char *kv[65];
    RT_PAIRS(kv, msglen);
    return run_kv(d, path, r, msg, msglen, kv);
}

void rt_check_same(const lt_ds *d, const char *url, ...)
{
    const char *kv[65];
    RT_PAIRS(kv, url);
    lt_rec a = { 0 }, b = { 0 };
    char msg[SP_ERRMSG_MAX], why[128];
    int rc = run_kv(d, d->dir, &a, msg, sizeof msg, kv);
    ck_assert_msg(rc == SP_EDONE, "local: %d %s", rc, msg);
    ck_assert_msg(a.bad == 0, "local: %s", a.why);
    rc = run_kv(d, url, &b, msg, sizeof msg, kv);
    ck_assert_msg(rc == SP_EDONE, "%s: %d %s", url, rc, msg);
    ck_assert_msg(b.bad == 0, "%s: %s", url, b.why);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "%s: %s", url, why);
    lt_rec_free(&a);
    lt_rec_free(&b);
}

bool rt_same(const lt_rec *a, const lt_rec *b, char *why, size_t whylen)
{
    if (a->nb != b->nb) {
        snprintf(why, whylen, "%zu batches against %zu", a->nb, b->nb);
        return false;
    }
    for (size_t i = 0; i < a->nb; i++)
        if (a->hash[i] != b->hash[i] || a->rows[i] != b->rows[i]) {
            snprintf(why, whylen, "batch %zu differs", i);
            return false;
        }
    return true;
}
