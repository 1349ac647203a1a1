/* rt_util.h - helpers for the remote tests: real servers started through servers.py (its
 * path in SP_SERVERS_PY), their variables put into the environment, and the comparison of a
 * remote loader's batches with a local one's. */
#ifndef SP_RT_UTIL_H
#define SP_RT_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "lt_util.h"

/* Runs `servers.py ARGS...` (NULL-terminated) and setenv()s every NAME=VALUE line it prints.
 * 0 on success; 77 when a package is missing (the reason printed); -1 on another failure. */
int rt_servers(const char *arg, ...);
/* Starts the fault proxy (faultproxy.start_proxy) in front of upstream, recorded in state (so
 * rt_stop ends it), and setenv()s SP_TEST_PROXY_URL and SP_TEST_PROXY_RULES. 0 or -1. */
int rt_proxy(const char *upstream, const char *state);
/* nginx serving root (its state in root/servers, into state, n bytes) with the fault proxy in front:
 * 0, 77 when nginx is missing (the servers stopped), -1 on another failure (stopped too). */
int rt_nginx_proxied(const char *root, char *state, size_t n);
/* Gives the proxy the rules json at once (a new file renamed over SP_TEST_PROXY_RULES, which it
 * reads again; test cases only). */
void rt_rules(const char *json);
/* Requests the nginx started with --access-log in state has logged so far (its log's lines). */
size_t rt_requests(const char *state);
/* `servers.py stop --state STATE`. */
void rt_stop(const char *state);
/* getenv, or "" with a failed ck_assert when unset (test cases only). */
const char *rt_env(const char *name);
/* base + "/" + rel in a static buffer of 4096 bytes (one at a time). */
const char *rt_url(const char *base, const char *rel);

/* Batches of one run over path, recorded (rows checked against d), with the extra loader
 * parameters (NULL-terminated name/value pairs). The code that ended the run (SP_EDONE after
 * every epoch); *msg the loader's last message. */
int rt_run(const lt_ds *d, const char *path, lt_rec *r, char *msg, size_t msglen, ...);
/* Checks that url delivers the same batches, bit for bit, as d's local directory, both runs with
 * the extra pairs (NULL-terminated; ck_assert on a difference). */
void rt_check_same(const lt_ds *d, const char *url, ...);
/* Whether two runs delivered the same batches, bit for bit. */
bool rt_same(const lt_rec *a, const lt_rec *b, char *why, size_t whylen);

#endif
