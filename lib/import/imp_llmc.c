/* imp_llmc.c - llm.c token files: a 1024-byte header of 256 int32, then uint16/uint32 tokens.
 * Samples are windows of T+1 tokens taken with stride T, read a chunk at a time. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 1024
#define MAGIC_U16 20240520
#define MAGIC_U32 20240801
#define CHUNK_BYTES (4u << 20)

typedef struct token_file {
    const char *path;
    uint64_t tokens;
    uint64_t samples;
    unsigned width; /* bytes per token */
} token_file;

static int32_t le32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

int imp_llmc_sniff(const char *path)
{
    unsigned char h[4];
    struct stat st;
    const char *why;
    int fd = cli_open_regular(path, 0, &st, &why);
    if (fd < 0)
        return 0;
    int ok = cli_pread_full(fd, h, sizeof h, 0) == 0;
    close(fd);
    int32_t magic = ok ? le32(h) : 0;
    return magic == MAGIC_U16 || magic == MAGIC_U32;
}

/* Reads and checks the header of tf->path; fills width and token count. */
static int read_header(token_file *tf, uint64_t seq_len)
{
    unsigned char h[HEADER_BYTES];
    struct stat st;
    const char *why;
    int fd = cli_open_regular(tf->path, 0, &st, &why);
    if (fd < 0) {
        cli_err("%s: %s", tf->path, why);
        return CLI_EDATA;
    }
    if (cli_pread_full(fd, h, sizeof h, 0) != 0) {
        if (errno)
            cli_err("%s: read error: %s", tf->path, strerror(errno));
        else
            cli_err("%s: truncated: %lld bytes, shorter than the %d-byte llm.c header", tf->path,
                    (long long)st.st_size, HEADER_BYTES);
        close(fd);
        return CLI_EDATA;
    }
    close(fd);

    int32_t magic = le32(h), version = le32(h + 4), count = le32(h + 8);
    if (magic == MAGIC_U16 && version == 1) {
        tf->width = 2;
    } else if (magic == MAGIC_U32 && version == 7) {
        tf->width = 4;
    } else if (magic == MAGIC_U16 || magic == MAGIC_U32) {
        cli_err("%s: unsupported llm.c header version %d for magic %d (expected %d)", tf->path,
                (int)version, (int)magic, magic == MAGIC_U16 ? 1 : 7);
        return CLI_EDATA;
    } else {
        cli_err("%s: not an llm.c token file (magic %d, expected %d or %d)", tf->path,
                (int)magic, MAGIC_U16, MAGIC_U32);
        return CLI_EDATA;
    }
    if (count < 0) {
        cli_err("%s: corrupt header: negative token count %d", tf->path, (int)count);
        return CLI_EDATA;
    }
    tf->tokens = (uint64_t)count;
    uint64_t expect = HEADER_BYTES + tf->tokens * tf->width;
    if ((uint64_t)st.st_size != expect) {
        cli_err("%s: file size %llu does not match its header: %llu tokens of %u bytes need "
                "%llu bytes (truncated or not an llm.c file)",
                tf->path, (unsigned long long)st.st_size, (unsigned long long)tf->tokens,
                tf->width, (unsigned long long)expect);
        return CLI_EDATA;
    }
    /* Sample i covers tokens [i*T, i*T+T], so it exists while i*T+T < count. */
    tf->samples = tf->tokens ? (tf->tokens - 1) / seq_len : 0;
    return CLI_OK;
}

static int pack_file(pack_ctx *pc, const token_file *tf, uint64_t seq_len, cli_buf *buf)
{
    if (tf->samples == 0)
        return CLI_OK;
    struct stat st;
    const char *why;
    int fd = cli_open_regular(tf->path, 0, &st, &why);
    if (fd < 0) {
        cli_err("%s: %s", tf->path, why);
        return CLI_EDATA;
    }
    const uint64_t stride = seq_len * tf->width;     /* bytes between sample starts */
    const uint64_t sample = stride + tf->width;      /* bytes of one sample */
    uint64_t per_chunk = CHUNK_BYTES / stride;
    if (per_chunk == 0)
        per_chunk = 1;
    cli_buf_reserve(buf, (size_t)(per_chunk * stride + tf->width));
#if defined(POSIX_FADV_SEQUENTIAL)
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    int rc = CLI_OK;
    for (uint64_t i = 0; i < tf->samples && rc == CLI_OK; i += per_chunk) {
        uint64_t m = tf->samples - i < per_chunk ? tf->samples - i : per_chunk;
        size_t bytes = (size_t)(m * stride + tf->width); /* one token of overlap with the next */
        if (cli_pread_full(fd, buf->data, bytes, HEADER_BYTES + i * stride) != 0) {
            cli_err("%s: read error at byte %llu: %s", tf->path,
                    (unsigned long long)(HEADER_BYTES + i * stride),
                    errno ? strerror(errno) : "file shrank while reading");
            rc = CLI_EDATA;
            break;
        }
        for (uint64_t j = 0; j < m && rc == CLI_OK; j++) {
            sp_value v = {buf->data + j * stride, (size_t)sample};
            rc = pack_add(pc, &v, 1, stride, tf->path);
        }
    }
    close(fd);
    return rc;
}

int imp_llmc(pack_ctx *pc, const char *const *srcs, size_t n)
{
    const uint64_t seq_len = pack_seq_len(pc);
    token_file *files = cli_xcalloc(n, sizeof *files);
    uint64_t total_samples = 0, total_tokens = 0;
    int rc = CLI_OK;
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        files[i].path = srcs[i];
        rc = read_header(&files[i], seq_len);
        if (rc == CLI_OK && files[i].width != files[0].width) {
            cli_err("%s: has %u-byte tokens but %s has %u-byte tokens; all token files of one "
                    "pack must share the width",
                    srcs[i], files[i].width, srcs[0], files[0].width);
            rc = CLI_EDATA;
        }
        total_samples += files[i].samples;
        total_tokens += files[i].tokens;
    }
    if (rc)
        goto out;
    if (total_samples == 0) {
        cli_err("%s: no samples: %llu tokens in all, fewer than --seq-len + 1 = %llu per file; "
                "nothing was written",
                srcs[0], (unsigned long long)total_tokens, (unsigned long long)seq_len + 1);
        rc = CLI_EDATA;
        goto out;
    }

    sp_schema *schema = sp_schema_create();
    if (!schema) {
        cli_err("out of memory");
        rc = CLI_EDATA;
        goto out;
    }
    uint64_t shape[1] = {seq_len + 1};
    int sr = sp_schema_add(schema, "tokens", SP_FIELD_TOKENS,
                           files[0].width == 2 ? SP_DTYPE_U16 : SP_DTYPE_U32, 1, shape);
    if (sr != 0) {
        cli_err("--seq-len %llu: %s", (unsigned long long)seq_len,
                *sp_last_error() ? sp_last_error() : sp_strerror(sr));
        sp_schema_destroy(schema);
        rc = CLI_EUSAGE;
        goto out;
    }
    pack_set_schema(pc, schema);
    char text[32];
    snprintf(text, sizeof text, "%llu", (unsigned long long)seq_len);
    pack_set_meta(pc, "seq_len", text, strlen(text));
    pack_set_totals(pc, total_samples, total_samples * seq_len * files[0].width);

    cli_buf buf = {0};
    for (size_t i = 0; i < n && rc == CLI_OK; i++)
        rc = pack_file(pc, &files[i], seq_len, &buf);
    cli_buf_free(&buf);
out:
    free(files);
    return rc;
}
