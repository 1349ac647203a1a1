/* test_remote_s3.c - datasets read from a real S3 endpoint on 127.0.0.1 (OpenStack Swift with s3api, an access key holding a colon): the same batches, bit for bit, as from local disk; credentials from the environment or from a profile in ~/.aws-style files; a wrong secret (403 naming the URL and SignatureDoesNotMatch), a missing bucket and a missing key end in one-line errors with the server's <Code> and <Message>; sp_writer publishes to s3:// (multipart for a large shard, the manifest last), refuses a dataset already there without overwrite, and leaves no manifest when aborted or interrupted. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_util.h"
#include "test_util.h"

static lt_ds g_ds;
static char g_state[4096];

static void expect_same_run(const char *url) { rt_check_same(&g_ds, url, NULL); }

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

/* A dataset of n int64 labels (value = 7 * i) written to url; the writer's finish code. */
static int publish(const char *url, uint64_t n, const char *block, bool overwrite, bool abort_first)
{
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_set_str(p, "block_size", block), 0);
    ck_assert_int_eq(sp_params_set_str(p, "compress", "none"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "shard_size", "64M"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "remote_part_size", "5M"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "overwrite", overwrite ? "true" : "false"), 0);
    sp_writer *w;
    int rc = sp_writer_open(url, s, p, &w);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        int64_t v = (int64_t)(7 * i);
        sp_value val = { &v, sizeof v };
        rc = sp_writer_add(w, &val, 1);
    }
    if (rc == 0 && abort_first)
        sp_writer_abort(w);
    if (rc == 0)
        rc = sp_writer_finish(w);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    return rc;
}

/* Published to S3 by sp_writer: shards (one of 12 MB, in multipart parts of 5 MiB) and the manifest
 * last; read back sample for sample; a dataset there already refused without overwrite; an aborted
 * or failed publication leaves no manifest; a missing bucket refused at open, saying to create it. */
START_TEST(s3_publish)
{
    const uint64_t n = 1500000; /* 12 MB of labels: more than twice the part size */
    int rc = publish("s3://spbucket/pub", n, "1M", false, false);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    sp_dataset *d;
    rc = sp_dataset_open("s3://spbucket/pub", NULL, &d);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(d), n);
    for (uint64_t b = 0; b < sp_dataset_num_blocks(d); b += 5) {
        sp_block *blk;
        ck_assert_int_eq(sp_dataset_read_block(d, b, &blk), 0);
        sp_block_info bi = { sizeof bi };
        ck_assert_int_eq(sp_dataset_block_info(d, b, &bi), 0);
        for (uint32_t r = 0; r < sp_block_num_samples(blk); r += 97) {
            const void *p;
            size_t len;
            ck_assert_int_eq(sp_block_get(blk, r, 0, &p, &len), 0);
            int64_t v;
            memcpy(&v, p, sizeof v);
            ck_assert_int_eq(v, (int64_t)(7 * (bi.first_sample + r)));
        }
        sp_block_free(blk);
    }
    sp_dataset_close(d);
    sp_verify_report rep = { sizeof rep };
    ck_assert_int_eq(sp_verify("s3://spbucket/pub", NULL, NULL, NULL, &rep), 0);
    ck_assert_uint_eq(rep.samples, n);
    /* there already */
    ck_assert_int_eq(publish("s3://spbucket/pub", 100, "4K", false, false), SP_EEXIST);
    ck_assert_msg(strstr(sp_last_error(), "s3://spbucket/pub") && strstr(sp_last_error(), "overwrite"), "%s",
                  sp_last_error());
    ck_assert_int_eq(publish("s3://spbucket/pub", 100, "4K", true, false), 0);
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/pub", NULL, &d), 0);
    ck_assert_uint_eq(sp_dataset_num_samples(d), 100);
    sp_dataset_close(d);
    /* aborted: no manifest */
    ck_assert_int_eq(publish("s3://spbucket/aborted", 100, "4K", false, true), SP_ECANCELED);
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/aborted", NULL, &d), SP_ENOENT);
    /* no bucket: refused when the writer opens */
    ck_assert_int_eq(publish("s3://nobucket/x", 100, "4K", false, false), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "NoSuchBucket") && strstr(sp_last_error(), "create the bucket first"), "%s",
                  sp_last_error());
}
END_TEST

/* A publication that fails after some shards went up (the server refuses the second shard's
 * PUT, through the fault proxy): the error names the object and the answer and says that no
 * manifest was written and what to clean; and none was. */
START_TEST(s3_publish_interrupted)
{
    const char *rules = rt_env("SP_TEST_PROXY_RULES");
    const char json[] = "[{\"fault\": \"status\", \"code\": 500, \"method\": \"PUT\", \"match\": \"shard-000001\", "
                        "\"count\": -1}]";
    tu_write_file(rules, json, sizeof json - 1);
    setenv("AWS_ENDPOINT_URL", rt_env("SP_TEST_PROXY_URL"), 1);
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_set_str(p, "shard_size", "16K"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "block_size", "4K"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "remote_retries", "1"), 0);
    sp_writer *w;
    int rc = sp_writer_open("s3://spbucket/interrupted", s, p, &w);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    for (int64_t i = 0; rc == 0 && i < 5000; i++) {
        sp_value val = { &i, sizeof i };
        rc = sp_writer_add(w, &val, 1);
    }
    ck_assert_int_eq(rc, 0);
    rc = sp_writer_finish(w);
    ck_assert_int_eq(rc, SP_EREMOTE);
    const char *m = sp_writer_errmsg(w);
    ck_assert_msg(strstr(m, "s3://spbucket/interrupted/shard-000001.sps") && strstr(m, "HTTP 500") &&
                  strstr(m, "no manifest.spm was written") && strstr(m, "1 shard(s) uploaded"), "%s", m);
    sp_writer_destroy(w);
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open("s3://spbucket/interrupted", NULL, &d), SP_ENOENT);
    sp_params_destroy(p);
    sp_schema_destroy(s);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make(&g_ds, "remote-s3", 2000, 17, seed, "4K", "32K"))
        return 1;
    snprintf(g_state, sizeof g_state, "%s/servers", g_ds.root);
    int rc = rt_servers("s3", "start", "--state", g_state, NULL);
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
    if (rt_proxy(getenv("AWS_ENDPOINT_URL"), g_state)) {
        rt_stop(g_state);
        lt_ds_free(&g_ds);
        return 1;
    }
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
    tcase_add_test(tc, s3_publish);
    tcase_add_test(tc, s3_publish_interrupted);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    return rc;
}
