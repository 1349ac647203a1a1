/* test_remote_url.c - where a URL's requests go, without a server: s3:// on AWS (virtual-host, the region's endpoint) and on a custom endpoint (path-style, or virtual-host when asked), AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL over the profile's endpoint_url, keys percent-encoded, a user:password@ part kept out of messages, half a key pair refused, and a server that does not listen retried within remote_retries and then named. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lt_util.h"
#include "rm.h"
#include "test_util.h"

static void clear_env(void)
{
    const char *vars[] = { "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
                           "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "SHARDPACK_S3_ADDRESSING" };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
    setenv("HOME", "/nonexistent", 1);
}

/* The URL requested for url under the current environment and params. */
static const char *http_of(const char *url, const sp_params *p)
{
    static char out[1024];
    rm_site *s;
    sp_errbuf eb;
    int rc = rm_site_open(url, p, &s, &eb);
    ck_assert_msg(rc == 0, "%s", eb.msg);
    rm_obj o;
    ck_assert_int_eq(rm_obj_init(s, url, &o, &eb), 0);
    snprintf(out, sizeof out, "%s", o.http);
    rm_obj_free(&o);
    rm_site_free(s);
    return out;
}

START_TEST(s3_addressing)
{
    clear_env();
    ck_assert_str_eq(http_of("s3://bkt/a/b.spm", NULL), "https://bkt.s3.us-east-1.amazonaws.com/a/b.spm");
    setenv("AWS_DEFAULT_REGION", "eu-west-3", 1);
    ck_assert_str_eq(http_of("s3://bkt/k", NULL), "https://bkt.s3.eu-west-3.amazonaws.com/k");
    setenv("AWS_REGION", "ap-south-1", 1); /* AWS_REGION first */
    ck_assert_str_eq(http_of("s3://bkt/k", NULL), "https://bkt.s3.ap-south-1.amazonaws.com/k");
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
    ck_assert_str_eq(http_of("s3://bkt/ds/manifest.spm", NULL), "http://127.0.0.1:9000/bkt/ds/manifest.spm");
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_set_str(p, "s3_addressing", "virtual"), 0);
    ck_assert_str_eq(http_of("s3://bkt/ds", p), "http://bkt.127.0.0.1:9000/ds");
    unsetenv("AWS_ENDPOINT_URL");
    ck_assert_int_eq(sp_params_set_str(p, "s3_addressing", "path"), 0);
    ck_assert_str_eq(http_of("s3://bkt/ds", p), "https://s3.ap-south-1.amazonaws.com/bkt/ds");
    sp_params_destroy(p);
    setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
    setenv("AWS_ENDPOINT_URL_S3", "http://s3only:2", 1);
    ck_assert_str_eq(http_of("s3://bkt/x", NULL), "http://s3only:2/bkt/x");
    setenv("SHARDPACK_S3_ADDRESSING", "virtual", 1);
    ck_assert_str_eq(http_of("s3://bkt/x", NULL), "http://bkt.s3only:2/x");
}
END_TEST

START_TEST(keys_and_urls)
{
    clear_env();
    setenv("AWS_ENDPOINT_URL", "http://h:1", 1);
    ck_assert_str_eq(http_of("s3://bkt/a b+c/ü.sps", NULL), "http://h:1/bkt/a%20b%2Bc/%C3%BC.sps");
    rm_site *s;
    sp_errbuf eb;
    ck_assert_int_eq(rm_site_open("https://user:secret@example.org/ds", NULL, &s, &eb), 0);
    rm_obj o;
    ck_assert_int_eq(rm_obj_init(s, "https://user:secret@example.org/ds/manifest.spm", &o, &eb), 0);
    ck_assert_str_eq(o.url, "https://example.org/ds/manifest.spm");
    ck_assert_str_eq(o.http, "https://user:secret@example.org/ds/manifest.spm");
    rm_obj_free(&o);
    rm_site_free(s);
    ck_assert(rm_is_url("s3://b/k") && rm_is_url("http://x") && rm_is_url("https://x"));
    ck_assert(!rm_is_url("/data/s3://x") && !rm_is_url("ftp://x") && !rm_is_url("s3:/b"));
    ck_assert_int_eq(rm_site_open("s3://bkt/k", NULL, &s, &eb), 0);
    ck_assert_int_eq(rm_obj_init(s, "s3://ab/k", &o, &eb), SP_EINVAL); /* bucket names: 3 to 63 */
    rm_site_free(s);
}
END_TEST

START_TEST(credentials)
{
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", "only-the-id", 1);
    rm_site *s;
    sp_errbuf eb;
    ck_assert_int_eq(rm_site_open("s3://bkt/k", NULL, &s, &eb), SP_EINVAL);
    ck_assert_msg(strstr(eb.msg, "s3://bkt/k") && strstr(eb.msg, "AWS_SECRET_ACCESS_KEY"), "%s", eb.msg);
    /* a profile with half a pair is refused the same way */
    clear_env();
    char *dir = tu_tmpdir("remote-url"), *creds = tu_join(dir, "credentials");
    const char text[] = "# comment\n[default]\naws_access_key_id=a\naws_secret_access_key = b\n[half]\n"
                        "aws_access_key_id = c\n";
    tu_write_file(creds, text, sizeof text - 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
    ck_assert_int_eq(rm_site_open("s3://bkt/k", NULL, &s, &eb), 0);
    rm_site_free(s);
    setenv("AWS_PROFILE", "half", 1);
    ck_assert_int_eq(rm_site_open("s3://bkt/k", NULL, &s, &eb), SP_EINVAL);
    ck_assert_msg(strstr(eb.msg, "'half'"), "%s", eb.msg);
    setenv("AWS_ENDPOINT_URL", "ftp://x", 1);
    unsetenv("AWS_PROFILE");
    ck_assert_int_eq(rm_site_open("s3://bkt/k", NULL, &s, &eb), SP_EINVAL);
    tu_rmtree(dir);
    free(dir);
    free(creds);
}
END_TEST

/* Nothing listens: every try is refused; remote_retries bounds them and the message says so. */
START_TEST(retries_bounded)
{
    clear_env();
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_set_str(p, "remote_retries", "3"), 0);
    sp_dataset *d;
    double t0 = lt_now();
    int rc = sp_dataset_open("http://127.0.0.1:9/ds", p, &d);
    double took = lt_now() - t0;
    ck_assert_int_eq(rc, SP_EREMOTE);
    const char *m = sp_last_error();
    ck_assert_msg(strstr(m, "http://127.0.0.1:9/ds/manifest.spm") && strstr(m, "after 4 tries"), "%s", m);
    ck_assert_msg(took < 10, "%.1f s", took);
    ck_assert_int_eq(sp_params_set_str(p, "remote_retries", "0"), 0);
    ck_assert_int_eq(sp_dataset_open("http://127.0.0.1:9/ds", p, &d), SP_EREMOTE);
    ck_assert_msg(!strstr(sp_last_error(), "tries"), "%s", sp_last_error());
    sp_params_destroy(p);
}
END_TEST

/* A URL of a scheme the library does not read is refused naming the scheme and the ones it
 * reads (not "No such file"), by every entry point, without its password; a local path that
 * happens to look like one still opens as a path. */
START_TEST(other_schemes)
{
    clear_env();
    sp_dataset *d = NULL;
    sp_loader *l = NULL;
    const char *urls[] = { "ftp://user:pw@example.org/ds", "file:///data/ds", "gs://bkt/ds" };
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        const char *u = urls[i];
        for (int how = 0; how < 3; how++) {
            int rc = how == 0 ? sp_dataset_open(u, NULL, &d) : how == 1 ? sp_verify(u, NULL, NULL, NULL, NULL)
                                                                        : sp_loader_open(u, NULL, &l);
            const char *m = sp_last_error();
            ck_assert_msg(rc == SP_EINVAL, "%s (%d): %s: %s", u, how, sp_error_name(rc), m);
            ck_assert_msg(strstr(m, "URLs are not supported") && strstr(m, "s3://, http:// or https://") &&
                              !strstr(m, "pw@") && !strstr(m, "No such file"),
                          "%s (%d): %s", u, how, m);
        }
    }
    ck_assert_msg(strstr(sp_last_error(), "gs:// URLs"), "%s", sp_last_error());
    char *tmp = tu_tmpdir("scheme");
    ck_assert_int_eq(chdir(tmp), 0);
    ck_assert_int_eq(mkdir("ftp:", 0755), 0);
    ck_assert_int_eq(mkdir("ftp:/empty", 0755), 0);
    ck_assert_int_eq(sp_dataset_open("ftp://empty", NULL, &d), SP_ENOENT); /* a folder, read as one */
    ck_assert_msg(strstr(sp_last_error(), "no manifest.spm"), "%s", sp_last_error());
    ck_assert_int_eq(chdir("/"), 0);
    tu_rmtree(tmp);
    free(tmp);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    Suite *s = suite_create("remote_url");
    TCase *tc = tcase_create("url");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, s3_addressing);
    tcase_add_test(tc, keys_and_urls);
    tcase_add_test(tc, credentials);
    tcase_add_test(tc, retries_bounded);
    tcase_add_test(tc, other_schemes);
    suite_add_tcase(s, tc);
    return tu_run(s, seed);
}
