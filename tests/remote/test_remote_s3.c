/* test_remote_s3.c - datasets read from a real S3 endpoint on 127.0.0.1 (OpenStack Swift with s3api, an access key holding a colon): the same batches, bit for bit, as from local disk; credentials from the environment or from a profile in ~/.aws-style files; a wrong secret (403 naming the URL and SignatureDoesNotMatch), a missing bucket and a missing key end in one-line errors with the server's <Code> and <Message>. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_util.h"
#include "test_util.h"

static lt_ds g_ds;
static char g_state[4096];

static void expect_same_run(const char *url)
{
    lt_rec a = { 0 }, b = { 0 };
    char msg[SP_ERRMSG_MAX], why[128];
    int rc = rt_run(&g_ds, g_ds.dir, &a, msg, sizeof msg, NULL);
    ck_assert_msg(rc == SP_EDONE, "local: %d %s", rc, msg);
    rc = rt_run(&g_ds, url, &b, msg, sizeof msg, NULL);
    ck_assert_msg(rc == SP_EDONE, "%s: %d %s", url, rc, msg);
    ck_assert_msg(b.bad == 0, "%s: %s", url, b.why);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "%s: %s", url, why);
    lt_rec_free(&a);
    lt_rec_free(&b);
}

START_TEST(s3_same_batches)
{
    expect_same_run("s3://spbucket/data");
    expect_same_run("s3://spbucket/data/manifest.spm");
}
END_TEST

START_TEST(s3_wrong_secret)
{
    setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/data", NULL, &d), SP_EDENIED);
    const char *m = sp_last_error();
    ck_assert_msg(strstr(m, "s3://spbucket/data/manifest.spm") && strstr(m, "HTTP 403") &&
                  strstr(m, "SignatureDoesNotMatch"), "%s", m);
    ck_assert_msg(!strchr(m, '\n'), "not one line: %s", m);
}
END_TEST

START_TEST(s3_missing)
{
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open("s3://nobucket/data", NULL, &d), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "s3://nobucket/data") && strstr(sp_last_error(), "NoSuchBucket"), "%s",
                  sp_last_error());
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/elsewhere", NULL, &d), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "s3://spbucket/elsewhere/manifest.spm") &&
                  strstr(sp_last_error(), "NoSuchKey"), "%s", sp_last_error());
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/data/shard-009999.sps", NULL, &d), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "NoSuchKey"), "%s", sp_last_error());
}
END_TEST

/* Credentials, region and endpoint from a named profile, as every S3 tool reads them. */
START_TEST(s3_profile)
{
    char *creds = tu_join(g_ds.root, "aws-credentials"), *conf = tu_join(g_ds.root, "aws-config");
    char text[2048];
    int n = snprintf(text, sizeof text, "[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n\n"
                     "[sp]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
                     rt_env("AWS_ACCESS_KEY_ID"), rt_env("AWS_SECRET_ACCESS_KEY"));
    tu_write_file(creds, text, (size_t)n);
    n = snprintf(text, sizeof text, "[profile sp]\nregion = %s\nendpoint_url = %s\n", rt_env("AWS_REGION"),
                 rt_env("AWS_ENDPOINT_URL"));
    tu_write_file(conf, text, (size_t)n);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    setenv("AWS_PROFILE", "sp", 1);
    expect_same_run("s3://spbucket/data");
    /* the default profile's key is not the server's */
    unsetenv("AWS_PROFILE");
    n = snprintf(text, sizeof text, "[default]\nregion = %s\nendpoint_url = %s\n", "us-east-1", getenv("SP_EP"));
    tu_write_file(conf, text, (size_t)n);
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/data", NULL, &d), SP_EDENIED);
    ck_assert_msg(strstr(sp_last_error(), "InvalidAccessKeyId") || strstr(sp_last_error(), "HTTP 403"), "%s",
                  sp_last_error());
    free(creds);
    free(conf);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make(&g_ds, "remote-s3", 2000, 17, seed, "4K", "32K"))
        return 1;
    snprintf(g_state, sizeof g_state, "%s/servers", g_ds.root);
    int rc = rt_servers("swift", "start", "--state", g_state, NULL);
    if (rc == 0)
        rc = rt_servers("s3", "mb", "--state", g_state, "spbucket", NULL);
    if (rc == 0)
        rc = rt_servers("s3", "put-dir", "--state", g_state, "--prefix", "data/", "spbucket", g_ds.dir, NULL);
    if (rc) {
        rt_stop(g_state);
        lt_ds_free(&g_ds);
        return rc == 77 ? 77 : 1;
    }
    setenv("SP_EP", getenv("AWS_ENDPOINT_URL"), 1);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
    unsetenv("AWS_ENDPOINT_URL_S3");
    Suite *s = suite_create("remote_s3");
    TCase *tc = tcase_create("s3");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, s3_same_batches);
    tcase_add_test(tc, s3_wrong_secret);
    tcase_add_test(tc, s3_missing);
    tcase_add_test(tc, s3_profile);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    return rc;
}
