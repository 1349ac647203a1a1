/* test_remote_http.c - datasets read over HTTP and HTTPS from a real nginx on 127.0.0.1: the same blocks and the same batches, bit for bit, as from local disk (joined ranged GETs or not); TLS verified against the test CA and a wrong CA refused; basic and bearer auth, a user:password@ in the URL never shown in a message; a missing object, a URL that is no dataset and an object changed under a running loader end in one-line errors naming the URL and the server's answer; sp_verify over HTTP finds what it finds on local disk; a mixture with a remote source among others (first, second, both) delivers what the mixture of local copies does; the CLI's inspect, verify, cat and bench take the URL (bench reporting its reads as remote, over http); the GETs in flight follow the blocks' size and host_memory unless set; neighbours read in file order are joined into one GET (remote_gets). */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_util.h"
#include "test_util.h"

static lt_ds g_ds;
static char g_state[4096];
static char g_url[4200], g_surl[4200];

static void expect_same_run(const char *url, const char *shuffle, const char *part)
{
    rt_check_same(&g_ds, url, "shuffle", shuffle, "remote_part_size", part, NULL);
}

START_TEST(http_same_batches)
{
    expect_same_run(g_url, "true", "8M");
    expect_same_run(g_url, "false", "8M");  /* in file order: blocks joined into one GET */
    expect_same_run(g_url, "false", "64K"); /* parts of one or two blocks */
}
END_TEST

START_TEST(http_same_blocks)
{
    sp_dataset *l, *r;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &l), 0);
    int rc = sp_dataset_open(g_url, NULL, &r);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(l), sp_dataset_num_samples(r));
    ck_assert_uint_eq(sp_dataset_num_blocks(l), sp_dataset_num_blocks(r));
    ck_assert_uint_eq(sp_dataset_fingerprint(l), sp_dataset_fingerprint(r));
    sp_shard_info si = { sizeof si };
    ck_assert_int_eq(sp_dataset_shard_info(r, 1, &si), 0);
    ck_assert_str_eq(si.path, rt_url(g_url, "shard-000001.sps"));
    for (uint64_t b = 0; b < sp_dataset_num_blocks(l); b += 3) {
        sp_block *x, *y;
        ck_assert_int_eq(sp_dataset_read_block(l, b, &x), 0);
        rc = sp_dataset_read_block(r, b, &y);
        ck_assert_msg(rc == 0, "block %llu: %s", (unsigned long long)b, sp_last_error());
        ck_assert_uint_eq(sp_block_num_samples(x), sp_block_num_samples(y));
        for (uint32_t row = 0; row < sp_block_num_samples(x); row++)
            for (size_t f = 0; f < 3; f++) {
                const void *p, *q;
                size_t n, m;
                ck_assert_int_eq(sp_block_get(x, row, f, &p, &n), 0);
                ck_assert_int_eq(sp_block_get(y, row, f, &q, &m), 0);
                ck_assert(n == m && memcmp(p, q, n) == 0);
            }
        sp_block_free(x);
        sp_block_free(y);
    }
    sp_dataset_close(l);
    sp_dataset_close(r);
}
END_TEST

START_TEST(https_verified)
{
    setenv("CURL_CA_BUNDLE", rt_env("SP_TEST_CA"), 1);
    expect_same_run(g_surl, "true", "8M");
}
END_TEST

START_TEST(https_wrong_ca)
{
    /* The system's bundle does not hold the test CA: the server's certificate is refused, at once. */
    setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt", 1);
    if (!tu_exists("/etc/ssl/certs/ca-certificates.crt")) {
        /* any other PEM certificate will do: a CA made for nothing */
        setenv("CURL_CA_BUNDLE", rt_env("SP_TEST_CA"), 1);
        ck_assert_msg(0, "no /etc/ssl/certs/ca-certificates.crt (install ca-certificates)");
    }
    sp_dataset *d;
    double t0 = lt_now();
    int rc = sp_dataset_open(g_surl, NULL, &d);
    ck_assert_int_eq(rc, SP_EREMOTE);
    const char *m = sp_last_error();
    ck_assert_msg(strstr(m, g_surl) && strstr(m, "certificate"), "%s", m);
    ck_assert_msg(lt_now() - t0 < 5, "a refused certificate was retried: %s", m);
    /* and without any CA: the same */
    unsetenv("CURL_CA_BUNDLE");
    setenv("SSL_CERT_FILE", "/dev/null", 1);
    ck_assert_int_ne(sp_dataset_open(g_surl, NULL, &d), 0);
}
END_TEST

static char *run_cmd(const char *cmd, bool err, int *status);

START_TEST(http_auth)
{
    char url[4300];
    snprintf(url, sizeof url, "%s/basic/data", rt_env("SP_TEST_HTTP_URL"));
    sp_dataset *d;
    int rc = sp_dataset_open(url, NULL, &d);
    ck_assert_int_eq(rc, SP_EDENIED);
    ck_assert_msg(strstr(sp_last_error(), url) && strstr(sp_last_error(), "HTTP 401"), "%s", sp_last_error());
    char up[512];
    snprintf(up, sizeof up, "%s:%s", rt_env("SP_TEST_HTTP_USER"), rt_env("SP_TEST_HTTP_PASSWORD"));
    setenv("SHARDPACK_HTTP_USER", up, 1);
    expect_same_run(url, "true", "8M");
    unsetenv("SHARDPACK_HTTP_USER");
    /* the user and password in the URL: they work, and no message shows them */
    const char *base = rt_env("SP_TEST_HTTP_URL");
    char inurl[4400];
    snprintf(inurl, sizeof inurl, "http://%s:wrong-pw@%s/basic/data", rt_env("SP_TEST_HTTP_USER"), base + 7);
    ck_assert_int_eq(sp_dataset_open(inurl, NULL, &d), SP_EDENIED);
    ck_assert_msg(!strstr(sp_last_error(), "wrong-pw") && strstr(sp_last_error(), "/basic/data"), "%s",
                  sp_last_error());
    snprintf(inurl, sizeof inurl, "http://%s:%s@%s/basic/data", rt_env("SP_TEST_HTTP_USER"),
             rt_env("SP_TEST_HTTP_PASSWORD"), base + 7);
    expect_same_run(inurl, "true", "8M");
    sp_loader *l;
    ck_assert_int_eq(lt_open(inurl, &l, NULL), 0);
    uint64_t cursor = 0;
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, 1u << 30, &cursor), SP_ERANGE); /* names the loader */
    ck_assert_msg(strstr(sp_last_error(), "/basic/data") && !strstr(sp_last_error(), rt_env("SP_TEST_HTTP_PASSWORD")),
                  "%s", sp_last_error());
    sp_shard_info si = { sizeof si };
    ck_assert_int_eq(sp_dataset_open(inurl, NULL, &d), 0);
    ck_assert_int_eq(sp_dataset_shard_info(d, 0, &si), 0);
    ck_assert_msg(!strstr(si.path, rt_env("SP_TEST_HTTP_PASSWORD")), "%s", si.path);
    sp_dataset_close(d);
    sp_loader_close(l);
    /* nor does the CLI, in its reports, JSON or errors (wrong password, then the right one) */
    const char *pw = rt_env("SP_TEST_HTTP_PASSWORD");
    const char *runs[][2] = { { "inspect", "" }, { "inspect", "--json" }, { "verify", "" }, { "verify", "--json" },
                              { "cat", "--index 3 --field tokens" }, { "bench", "--epochs 1" },
                              { "bench", "--epochs 1 --json" } };
    for (int wrong = 0; wrong < 2; wrong++) {
        snprintf(inurl, sizeof inurl, "http://%s:%s@%s/basic/data", rt_env("SP_TEST_HTTP_USER"),
                 wrong ? "wrong-pw" : pw, base + 7);
        for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
            char cmd[6000];
            int st;
            snprintf(cmd, sizeof cmd, "'%s' %s '%s' %s", rt_env("SHARDPACK_CLI"), runs[i][0], inurl, runs[i][1]);
            char *out = run_cmd(cmd, true, &st);
            bool names = wrong || strcmp(runs[i][0], "cat") != 0; /* cat prints the sample's bytes */
            ck_assert_msg(st == (wrong ? 1 : 0) && (!names || strstr(out, "/basic/data")) &&
                              !strstr(out, wrong ? "wrong-pw" : pw),
                          "%s %s: %d %s", runs[i][0], runs[i][1], st, out);
            free(out);
        }
    }
    snprintf(url, sizeof url, "%s/bearer/data", rt_env("SP_TEST_HTTP_URL"));
    ck_assert_int_eq(sp_dataset_open(url, NULL, &d), SP_EDENIED);
    setenv("SHARDPACK_HTTP_BEARER", "not-the-token", 1);
    ck_assert_int_eq(sp_dataset_open(url, NULL, &d), SP_EDENIED);
    setenv("SHARDPACK_HTTP_BEARER", rt_env("SP_TEST_HTTP_TOKEN"), 1);
    expect_same_run(url, "true", "8M");
}
END_TEST

START_TEST(http_missing_and_not_a_dataset)
{
    sp_dataset *d;
    const char *url = rt_url(rt_env("SP_TEST_HTTP_URL"), "nothing-here");
    ck_assert_int_eq(sp_dataset_open(url, NULL, &d), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "nothing-here") && strstr(sp_last_error(), "HTTP 404"), "%s",
                  sp_last_error());
    /* a URL is no glob: a wildcard that names nothing says so beside the 404 */
    char pat[4400];
    const char *globs[] = { "shard-00000[0-3].sps", "*.sps", "*" };
    for (int i = 0; i < 3; i++) {
        snprintf(pat, sizeof pat, "%s/%s", g_url, globs[i]);
        ck_assert_int_eq(sp_dataset_open(pat, NULL, &d), SP_ENOENT);
        ck_assert_msg(strstr(sp_last_error(), "HTTP 404") && strstr(sp_last_error(), "in local paths only, not in URLs"),
                      "%s", sp_last_error());
        ck_assert_int_eq(sp_verify(pat, NULL, NULL, NULL, NULL), SP_ENOENT);
        ck_assert_msg(strstr(sp_last_error(), "in local paths only"), "%s", sp_last_error());
    }
    ck_assert_int_eq(sp_dataset_open(url, NULL, &d), SP_ENOENT); /* none there: no word of wildcards */
    ck_assert_msg(!strstr(sp_last_error(), "wildcard"), "%s", sp_last_error());
    /* a text file where the manifest should be */
    char *dir = tu_join(g_ds.root, "notds");
    mkdir(dir, 0755);
    char *m = tu_join(dir, "manifest.spm");
    tu_write_file(m, "hello\n", 6);
    url = rt_url(rt_env("SP_TEST_HTTP_URL"), "notds");
    ck_assert_int_eq(sp_dataset_open(url, NULL, &d), SP_EFORMAT);
    ck_assert_msg(strstr(sp_last_error(), "notds/manifest.spm") && strstr(sp_last_error(), "not a shardpack manifest"),
                  "%s", sp_last_error());
    /* a missing shard named by a manifest: its index is read when the reader first needs it, so
     * the open succeeds and the first batch that needs it fails, naming it */
    char *copy = tu_join(g_ds.root, "holed");
    mkdir(copy, 0755);
    char *from = tu_join(g_ds.dir, "manifest.spm"), *to = tu_join(copy, "manifest.spm");
    tu_copy_file(from, to);
    url = rt_url(rt_env("SP_TEST_HTTP_URL"), "holed");
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "0", NULL), 0);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, NULL, &r, 1, 30000), SP_ENOENT);
    ck_assert_msg(strstr(sp_loader_errmsg(l), "holed/shard-000000.sps") && strstr(sp_loader_errmsg(l), "HTTP 404") &&
                  strstr(sp_loader_errmsg(l), "index"), "%s", sp_loader_errmsg(l));
    sp_loader_close(l);
    lt_rec_free(&r);
    free(dir), free(m), free(copy), free(from), free(to);
}
END_TEST

/* A shard rewritten under a running loader (same size, other bytes, a new modification time and
 * so a new ETag): the block read from it fails with SP_ECHANGED naming the URL, never delivering
 * its bytes. */
START_TEST(http_changed_object)
{
    /* one shard of 67 blocks: its index is read before the first batch, and the block changed
     * below is read after it (the reader fetches ahead 64 KiB: one part in flight) */
    lt_ds copy;
    ck_assert_int_eq(lt_make(&copy, "remote-changed", 3000, 33, g_ds.salt, "4K", "1M"), 0);
    /* served from under nginx's root: the clone lives beside g_ds */
    char *link = tu_join(g_ds.root, "changed");
    ck_assert_int_eq(symlink(copy.dir, link), 0);
    const char *url = rt_url(rt_env("SP_TEST_HTTP_URL"), "changed");
    sp_loader *l;
    int rc = lt_open(url, &l, "shuffle", "false", "prefetch", "1", "shuffle_window", "1", "batch_size", "16",
                     "remote_inflight", "1", "remote_part_size", "64K", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, &copy, &r, 1, 20000), 0);
    char *last = tu_join(copy.dir, "shard-000000.sps");
    uint64_t size = tu_file_size(last);
    tu_xor_byte(last, size / 2, 0x5a);
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec += 100;
    tv[1] = tv[0];
    ck_assert_int_eq(utimes(last, tv), 0);
    rc = lt_drain(l, &copy, &r, UINT64_MAX, 20000);
    while (rc == SP_EEPOCH)
        rc = lt_drain(l, &copy, &r, UINT64_MAX, 20000);
    ck_assert_int_eq(rc, SP_ECHANGED);
    const char *m = sp_loader_errmsg(l);
    ck_assert_msg(strstr(m, "changed/shard-000000.sps") && strstr(m, "changed since it was opened") &&
                  strstr(m, "ETag"), "%s", m);
    ck_assert_uint_eq(r.bad, 0);
    sp_loader_close(l);
    unlink(link);
    free(link);
    free(last);
    lt_rec_free(&r);
    lt_ds_free(&copy);
}
END_TEST

/* sp_verify over HTTP: a sound dataset passes with the local counts; a damaged copy gets the
 * same faults, at the same places, as from local disk. */
static void on_fault(const sp_fault *f, void *user)
{
    char *log = user;
    const char *name = strrchr(f->file, '/');
    size_t n = strlen(log);
    snprintf(log + n, 4096 - n, "%s %lld %llu %d|", name ? name : f->file, (long long)f->block,
             (unsigned long long)f->offset, f->code);
}

START_TEST(http_verify)
{
    sp_verify_report a = { sizeof a }, b = { sizeof b };
    ck_assert_int_eq(sp_verify(g_ds.dir, NULL, NULL, NULL, &a), 0);
    int rc = sp_verify(g_url, NULL, NULL, NULL, &b);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    ck_assert(a.shards == b.shards && a.blocks == b.blocks && a.samples == b.samples && a.bytes == b.bytes);
    lt_ds copy;
    ck_assert_int_eq(lt_clone(&g_ds, &copy, "remote-verify"), 0);
    char *link = tu_join(g_ds.root, "damaged");
    ck_assert_int_eq(symlink(copy.dir, link), 0);
    char *shard = tu_join(copy.dir, "shard-000001.sps");
    tu_xor_byte(shard, 4096 + 10, 0x01); /* in the first block */
    tu_xor_byte(shard, 20, 0x01);        /* in the header */
    static char la[4096], lb[4096];
    ck_assert_int_eq(sp_verify(copy.dir, NULL, on_fault, la, NULL), SP_ECORRUPT);
    ck_assert_int_eq(sp_verify(rt_url(rt_env("SP_TEST_HTTP_URL"), "damaged"), NULL, on_fault, lb, NULL), SP_ECORRUPT);
    ck_assert_msg(la[0] && strcmp(la, lb) == 0, "local %s, http %s", la, lb);
    unlink(link);
    free(link);
    free(shard);
    lt_ds_free(&copy);
}
END_TEST

/* A shard cut short on the server before it was ever read: the size the manifest records
 * disagrees with the server's, which is a truncated shard (SP_ETRUNC, as from local disk), not
 * an object changed since it was opened; one grown is replaced or damaged (SP_ECORRUPT). */
START_TEST(http_truncated_shard)
{
    lt_ds copy;
    ck_assert_int_eq(lt_clone(&g_ds, &copy, "remote-trunc"), 0);
    char *link = tu_join(g_ds.root, "trunc");
    ck_assert_int_eq(symlink(copy.dir, link), 0);
    char *shard = tu_join(copy.dir, "shard-000001.sps");
    uint64_t size = tu_file_size(shard);
    ck_assert_int_eq(truncate(shard, 3000), 0);
    const char *url = rt_url(rt_env("SP_TEST_HTTP_URL"), "trunc");
    char want[128];
    snprintf(want, sizeof want, "is 3000 bytes where the manifest records %llu: truncated", (unsigned long long)size);
    /* the loader opens shard indexes when it first needs them: the batch that needs shard 1 fails */
    sp_loader *l = NULL;
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", NULL), 0);
    lt_rec r = { 0 };
    int rc = lt_epoch(l, &copy, &r);
    ck_assert_msg(rc == SP_ETRUNC, "%s: %s", sp_error_name(rc), sp_loader_errmsg(l));
    ck_assert_msg(strstr(sp_loader_errmsg(l), "trunc/shard-000001.sps") && strstr(sp_loader_errmsg(l), want) &&
                      !strstr(sp_loader_errmsg(l), "changed since"),
                  "%s", sp_loader_errmsg(l));
    ck_assert_uint_eq(r.bad, 0);
    sp_loader_close(l);
    lt_rec_free(&r);
    static char lb[4096];
    ck_assert_int_eq(sp_verify(copy.dir, NULL, NULL, NULL, NULL), SP_ECORRUPT);
    ck_assert_int_eq(sp_verify(url, NULL, on_fault, lb, NULL), SP_ECORRUPT);
    ck_assert_msg(strstr(lb, "shard-000001.sps -1 0 -") && !strstr(lb, "ECHANGED"), "%s", lb);
    char code[16];
    snprintf(code, sizeof code, " %d|", SP_ETRUNC);
    ck_assert_msg(strstr(lb, code), "%s", lb);
    /* longer than the manifest says */
    ck_assert_int_eq(truncate(shard, (off_t)size + 100), 0);
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", NULL), 0);
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(lt_epoch(l, &copy, &r), SP_ECORRUPT);
    ck_assert_msg(strstr(sp_loader_errmsg(l), "where the manifest records") &&
                      strstr(sp_loader_errmsg(l), "replaced or damaged"),
                  "%s", sp_loader_errmsg(l));
    sp_loader_close(l);
    lt_rec_free(&r);
    unlink(link);
    free(link);
    free(shard);
    lt_ds_free(&copy);
}
END_TEST

/* The output of a shell command (stdout; stderr too with err), its exit status in *status. */
static char *run_cmd(const char *cmd, bool err, int *status)
{
    char full[8192];
    snprintf(full, sizeof full, "%s%s", cmd, err ? " 2>&1" : " 2>/dev/null");
    FILE *f = popen(full, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap + 1);
    size_t got;
    while ((got = fread(out + n, 1, cap - n, f)) > 0)
        n += got;
    out[n] = '\0';
    int st = pclose(f);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* The CLI's commands that read a dataset take its URL: the same output as for the directory. */
START_TEST(http_cli)
{
    const char *cli = rt_env("SHARDPACK_CLI");
    char cmd[8192];
    int st;
    snprintf(cmd, sizeof cmd, "'%s' cat '%s' --index 1234 --field tokens", cli, g_url);
    char *remote = run_cmd(cmd, false, &st);
    ck_assert_int_eq(st, 0);
    snprintf(cmd, sizeof cmd, "'%s' cat '%s' --index 1234 --field tokens", cli, g_ds.dir);
    char *local = run_cmd(cmd, false, &st);
    ck_assert(st == 0 && strlen(local) == strlen(remote) && memcmp(local, remote, strlen(local)) == 0);
    free(remote), free(local);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", cli, g_url);
    char *out = run_cmd(cmd, false, &st);
    ck_assert_msg(st == 0 && strstr(out, "3000"), "%d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' verify '%s'", cli, g_url);
    out = run_cmd(cmd, true, &st);
    ck_assert_msg(st == 0 && strstr(out, "OK"), "%d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' bench '%s' --epochs 1 --quiet --json --host-memory 2G", cli, g_url);
    out = run_cmd(cmd, false, &st);
    /* the report says the reads were ranged GETs over http, not pread, 64 at once (4 KiB blocks, 2 GiB) */
    ck_assert_msg(st == 0 && strstr(out, "samples_per_s") && strstr(out, "\"io\":\"remote\"") &&
                      strstr(out, "\"remote_scheme\":\"http\"") && strstr(out, "64 in flight"),
                  "%d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' bench '%s' --epochs 1", cli, g_url);
    out = run_cmd(cmd, false, &st);
    ck_assert_msg(st == 0 && strstr(out, "io         remote (http): ranged GETs") && !strstr(out, "page cache"),
                  "%d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s/nothing'", cli, g_url);
    out = run_cmd(cmd, true, &st);
    size_t lines = 0;
    for (const char *c = out; *c; c++)
        lines += *c == '\n';
    ck_assert_msg(st == 1 && strstr(out, "/data/nothing") && strstr(out, "HTTP 404") && lines == 1, "%d %s", st, out);
    free(out);
}
END_TEST

/* The trace on a remote dataset: each block's ranged GET is a read span (submission to completion),
 * as a local read is, and the file passes check_trace.py. */
START_TEST(http_trace)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/trace.json", g_ds.root);
    sp_loader *l;
    int rc = lt_open(g_url, &l, "trace", path, "threads", "3", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, g_ds.n);
    ck_assert_msg(r.bad == 0, "%s", r.why);
    lt_rec_free(&r);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.trace_events_dropped, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_check_trace(path, &st, "--need read --need 'block decode'");
    unlink(path);
}
END_TEST

/* A mixture with a remote source among others (remote first, remote second, both) delivers what
 * the mixture of local copies does (it was refused at open, before that it crashed reading the
 * second source's blocks through the first's table). A mixture of one remote source is the dataset
 * alone. */
START_TEST(http_mixture)
{
    const char *both[][2] = { { g_url, g_ds.dir }, { g_ds.dir, g_url }, { g_url, g_url } };
    const char *local[2] = { g_ds.dir, g_ds.dir };
    const double w[2] = { 1, 1 };
    lt_rec ref = { 0 };
    sp_loader *m = NULL;
    ck_assert_msg(sp_loader_open_mix(local, w, 2, NULL, &m) == 0, "%s", sp_last_error());
    ck_assert_int_eq(lt_epoch(m, NULL, &ref), SP_EEPOCH);
    sp_loader_close(m);
    for (int i = 0; i < 3; i++) {
        sp_loader *l = NULL;
        const char *paths[2] = { both[i][0], both[i][1] };
        int rc = sp_loader_open_mix(paths, w, 2, NULL, &l);
        ck_assert_msg(rc == 0, "case %d: %d %s", i, rc, sp_last_error());
        lt_rec r = { 0 };
        char why[128];
        ck_assert_msg(lt_epoch(l, NULL, &r) == SP_EEPOCH, "case %d: %s", i, sp_loader_errmsg(l));
        ck_assert_msg(rt_same(&ref, &r, why, sizeof why), "case %d: %s", i, why);
        lt_rec_free(&r);
        sp_loader_close(l);
    }
    lt_rec_free(&ref);
    sp_loader *l = NULL;
    const char *one[1] = { g_url };
    ck_assert_msg(sp_loader_open_mix(one, w, 1, NULL, &l) == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, g_ds.n);
    ck_assert_msg(r.bad == 0, "%s", r.why);
    lt_rec_free(&r);
    sp_loader_close(l);
}
END_TEST

/* Case i of a table: the loader l's io note holds want, and `epochs` epochs deliver every sample,
 * checked; then l is closed. */
static void note_then_epochs(sp_loader *l, size_t i, const char *want, int epochs)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_msg(strstr(st.io_note, want), "case %zu: '%s' lacks '%s'", i, st.io_note, want);
    for (int e = 0; e < epochs; e++) {
        lt_rec r = { 0 };
        ck_assert_msg(lt_epoch(l, &g_ds, &r) == SP_EEPOCH, "case %zu: %s", i, sp_loader_errmsg(l));
        ck_assert_uint_eq(r.ni, g_ds.n);
        ck_assert_msg(r.bad == 0, "case %zu: %s", i, r.why);
        lt_rec_free(&r);
    }
    sp_loader_close(l);
}

/* remote_inflight 0 (the default): enough GETs of one block each to keep half the read ring's goal
 * (64 MiB) in flight, at most 64 (this dataset's blocks are a few KiB), no more than an eighth of
 * host_memory pays for at 512 KiB a connection, never fewer than 16; a number set is used as set.
 * Each way, an epoch delivers every sample. */
START_TEST(http_transfers_follow_blocks)
{
    static const struct {
        const char *key, *value, *want;
    } cases[] = {
        { "host_memory", "2G", "64 in flight" },
        { "host_memory", "192M", "48 in flight" },
        { "host_memory", "64M", "16 in flight" },
        { "remote_inflight", "5", "5 in flight" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_loader *l;
        int rc = lt_open(g_url, &l, "epochs", "1", cases[i].key, cases[i].value, NULL);
        ck_assert_msg(rc == 0, "case %zu: %s", i, sp_last_error());
        note_then_epochs(l, i, cases[i].want, 1);
    }
}
END_TEST

/* remote_threads: -1 leaves every transfer to the reader, a number splits them among that many
 * receive threads (at most one per 4 transfers), 0 opens one per 8 usable cores (1 to 4). Each way
 * two epochs deliver every sample, checked. */
START_TEST(http_receive_threads)
{
    static const struct {
        const char *threads, *inflight, *want;
    } cases[] = {
        { "-1", "16", "16 in flight driven by the reader" },
        { "3", "16", "16 in flight on 3 receive threads" },
        { "3", "8", "8 in flight on 2 receive threads" },
        { "1", "2", "2 in flight on 1 receive thread," },
        { "0", "16", " receive thread" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_loader *l;
        int rc = lt_open(g_url, &l, "epochs", "2", "remote_threads", cases[i].threads, "remote_inflight",
                         cases[i].inflight, NULL);
        ck_assert_msg(rc == 0, "case %zu: %s", i, sp_last_error());
        note_then_epochs(l, i, cases[i].want, 2);
    }
}
END_TEST

/* This process's threads, from /proc/self/task. */
static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The receive threads start with the run, not at the open: a program may fork between the two
 * (shardpack bench measures its limit in a child), and a child forked with threads running may
 * find their locks held for good. At the close they are all gone. */
START_TEST(http_threads_start_at_first_read)
{
    int before = task_count();
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_url, &l, "threads", "1", "remote_threads", "2", "remote_inflight", "8", NULL), 0);
    ck_assert_int_eq(task_count(), before);
    sp_batch *b;
    ck_assert_msg(sp_loader_next(l, &b, -1) == 0, "%s", sp_loader_errmsg(l));
    ck_assert_int_ge(task_count(), before + 4); /* the reader, a worker, two receive threads */
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(task_count(), before);
}
END_TEST

/* In file order neighbouring blocks go out as one GET of up to remote_part_size (64 KiB here: 16
 * blocks of 4 KiB at most), in a shuffled order mostly one a block; remote_gets counts the GETs
 * sent, remote_requests the reads queued; either way every sample arrives. */
START_TEST(http_gets_joined)
{
    uint64_t gets[2], reads[2];
    for (int shuffle = 0; shuffle < 2; shuffle++) {
        sp_loader *l;
        int rc = lt_open(g_url, &l, "epochs", "1", "shuffle", shuffle ? "true" : "false", "remote_part_size", "64K",
                         NULL);
        ck_assert_msg(rc == 0, "%s", sp_last_error());
        lt_rec r = { 0 };
        ck_assert_msg(lt_epoch(l, &g_ds, &r) == SP_EEPOCH, "%s", sp_loader_errmsg(l));
        ck_assert_uint_eq(r.ni, g_ds.n);
        ck_assert_msg(r.bad == 0, "%s", r.why);
        lt_rec_free(&r);
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
        gets[shuffle] = st.remote_gets;
        reads[shuffle] = st.remote_requests;
        ck_assert_uint_eq(st.remote_transfers, 16); /* host_memory 64M pays for 16 */
        sp_loader_close(l);
    }
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &d), 0);
    ck_assert_uint_ge(reads[0], sp_dataset_num_blocks(d));
    sp_dataset_close(d);
    ck_assert_msg(gets[0] > 0 && gets[0] * 4 <= reads[0], "file order: %llu GETs for %llu reads",
                  (unsigned long long)gets[0], (unsigned long long)reads[0]);
    ck_assert_msg(gets[1] > reads[1] / 2, "shuffled: %llu GETs for %llu reads", (unsigned long long)gets[1],
                  (unsigned long long)reads[1]);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make(&g_ds, "remote-http", 3000, 33, seed, "4K", "64K"))
        return 1;
    snprintf(g_state, sizeof g_state, "%s/servers", g_ds.root);
    int rc = rt_servers("nginx", "start", "--root", g_ds.root, "--state", g_state, NULL);
    if (rc) {
        lt_ds_free(&g_ds);
        return rc == 77 ? 77 : 1;
    }
    snprintf(g_url, sizeof g_url, "%s/data", getenv("SP_TEST_HTTP_URL"));
    snprintf(g_surl, sizeof g_surl, "%s/data", getenv("SP_TEST_HTTPS_URL"));
    /* the tests' own: no CA or credentials from the caller's environment */
    unsetenv("CURL_CA_BUNDLE");
    unsetenv("SSL_CERT_FILE");
    unsetenv("SHARDPACK_HTTP_USER");
    unsetenv("SHARDPACK_HTTP_BEARER");
    Suite *s = suite_create("remote_http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, http_same_batches);
    tcase_add_test(tc, http_same_blocks);
    tcase_add_test(tc, https_verified);
    tcase_add_test(tc, https_wrong_ca);
    tcase_add_test(tc, http_auth);
    tcase_add_test(tc, http_missing_and_not_a_dataset);
    tcase_add_test(tc, http_changed_object);
    tcase_add_test(tc, http_truncated_shard);
    tcase_add_test(tc, http_verify);
    tcase_add_test(tc, http_cli);
    tcase_add_test(tc, http_trace);
    tcase_add_test(tc, http_mixture);
    tcase_add_test(tc, http_transfers_follow_blocks);
    tcase_add_test(tc, http_receive_threads);
    tcase_add_test(tc, http_threads_start_at_first_read);
    tcase_add_test(tc, http_gets_joined);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    return rc;
}
