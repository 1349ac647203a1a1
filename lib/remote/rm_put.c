/* rm_put.c - publishing to S3: a file as one object, by one PUT or a multipart upload. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rm_xfer.h"
#include "sp_file.h"

#define RM_PART_MIN (5ull << 20) /* S3's smallest part but the last */
#define RM_PARTS_MAX 10000u

int rm_exists(rm_site *s, rm_obj *o, sp_errbuf *eb)
{
    uint8_t byte;
    uint64_t got;
    int rc = rm_get_tail(s, o, 1, &byte, &got, eb);
    if (rc == SP_ENOENT && strstr(eb->msg, "NoSuchBucket")) { /* nothing can be put there either */
        char said[SP_ERRMSG_MAX];
        snprintf(said, sizeof said, "%s", eb->msg);
        return sp_fail(eb, SP_ENOENT, "%s: its bucket does not exist; create the bucket first (shardpack writes "
                       "objects, never buckets). The server's answer: %s", o->url, said);
    }
    return rc == SP_OK ? 1 : rc == SP_ENOENT ? 0 : rc;
}

static int put_whole(rm_site *s, rm_obj *o, int fd, uint64_t size, sp_errbuf *eb)
{
    rm_xfer x = { .obj = o, .method = "PUT", .up_fd = fd, .up_len = size };
    return rm_xfer_run(s, &x, true, eb);
}

static int put_parts(rm_site *s, rm_obj *o, int fd, uint64_t size, uint64_t part, sp_errbuf *eb)
{
    rm_xfer x = { .obj = o, .method = "POST", .query = "uploads=", .up_mem = (const uint8_t *)"" };
    int rc = rm_xfer_run(s, &x, true, eb);
    char id[512];
    if (rc == SP_OK && !rm_xml_text(x.errbody, "UploadId", false, id, sizeof id))
        rc = sp_fail(eb, SP_EREMOTE, "%s: the answer to a multipart upload's start holds no UploadId", o->url);
    if (rc)
        return rc;
    uint64_t nparts = (size + part - 1) / part;
    sp_buf done = { 0 };
    static const char head[] = "<CompleteMultipartUpload>";
    sp_buf_put(&done, head, sizeof head - 1);
    char query[700], line[700];
    for (uint64_t k = 0; rc == SP_OK && k < nparts; k++) {
        uint64_t off = k * part, len = size - off < part ? size - off : part;
        snprintf(query, sizeof query, "partNumber=%llu&uploadId=%s", (unsigned long long)k + 1, id);
        rm_xfer p = { .obj = o, .method = "PUT", .query = query, .up_fd = fd, .up_off = off, .up_len = len };
        rc = rm_xfer_run(s, &p, true, eb);
        if (rc == SP_OK && !p.etag[0])
            rc = sp_fail(eb, SP_EREMOTE, "%s: part %llu of a multipart upload: the answer has no ETag", o->url,
                         (unsigned long long)k + 1);
        int n = snprintf(line, sizeof line, "<Part><PartNumber>%llu</PartNumber><ETag>%s</ETag></Part>",
                         (unsigned long long)k + 1, p.etag);
        sp_buf_put(&done, line, (size_t)n);
    }
    static const char tail[] = "</CompleteMultipartUpload>";
    sp_buf_put(&done, tail, sizeof tail - 1);
    if (rc == SP_OK && done.failed)
        rc = sp_fail(eb, SP_ENOMEM, "%s: out of memory", o->url);
    snprintf(query, sizeof query, "uploadId=%s", id);
    if (rc == SP_OK) {
        rm_xfer c = { .obj = o, .method = "POST", .query = query, .up_mem = done.data, .up_len = done.len };
        rc = rm_xfer_run(s, &c, true, eb);
    }
    sp_buf_free(&done);
    if (rc) {
        /* leave no parts behind to be billed: abort, keeping the first failure's message */
        sp_errbuf first = *eb, ignore;
        rm_xfer a = { .obj = o, .method = "DELETE", .query = query, .up_mem = (const uint8_t *)"" };
        rm_xfer_run(s, &a, true, &ignore);
        sp_fail(eb, rc, "%s", first.msg); /* the thread's last error too */
    }
    return rc;
}

int rm_put_file(rm_site *s, rm_obj *o, const char *path, sp_errbuf *eb)
{
    if (!rm_site_is_s3(s))
        return sp_fail(eb, SP_ENOTSUP, "%s: publishing is to s3:// only", o->url);
    struct stat st;
    int fd = sp_open_regular(path, 0, &st);
    if (fd < 0)
        return sp_fail(eb, sp_open_code(fd), "%s: cannot open: %s", path, sp_open_why(fd, &st));
    uint64_t size = (uint64_t)st.st_size, part = rm_site_part_size(s);
    if (part < RM_PART_MIN)
        part = RM_PART_MIN;
    while ((size + part - 1) / part > RM_PARTS_MAX)
        part *= 2;
    int rc = size > 2 * part ? put_parts(s, o, fd, size, part, eb) : put_whole(s, o, fd, size, eb);
    close(fd);
    return rc;
}
