/* imp_llmc.c - llm.c token files: a 1024-byte header of 256 int32, then uint16/uint32 tokens.
 * Samples are windows of T+1 tokens taken with stride T. order=source: file by file, window by
 * window, read a chunk at a time. order=shuffled (the default): the windows of all the files
 * together in imp_item_order's permutation, each read by itself at its offset; the tokens are
 * never held, only the permutation (8 bytes a window). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imp.h"
#include "sp_file.h"

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

typedef struct llmc {
    token_file *files;
    size_t n, fi;       /* the file being read: files[fi] */
    uint64_t seq_len;
    int fd;             /* open on files[fi], or -1 */
    uint64_t next;      /* its next sample */
    uint64_t chunk_first, chunk_n; /* samples chunk_first .. +chunk_n are in buf */
    imp_buf buf;
    sp_value value;
    /* order=shuffled: window perm[k] of all the files' windows is written k-th; first[i] is the
     * index of file i's first window among them; fd is open on file fi. */
    uint64_t *perm, *first, k, total;
} llmc;

static int32_t le32(const unsigned char *p) { return (int32_t)sp_ld32(p); }

static int llmc_sniff(const char *path, const struct stat *st, const char **why)
{
    if (S_ISDIR(st->st_mode) || !imp_ends_with_ci(path, ".bin"))
        return 0;
    unsigned char h[4];
    struct stat fst;
    const char *open_why;
    int fd = imp_open_regular(path, &fst, &open_why);
    int ok = fd >= 0 && sp_pread_all(fd, h, sizeof h, 0) == 0;
    if (fd >= 0)
        close(fd);
    int32_t magic = ok ? le32(h) : 0;
    if (magic == MAGIC_U16 || magic == MAGIC_U32)
        return 1;
    *why = "not an llm.c token file (no magic 20240520 or 20240801 in its header)";
    return 0;
}

/* Reads and checks the header of tf->path; fills width, token and sample counts. */
static int read_header(imp_ctx *c, token_file *tf, uint64_t seq_len)
{
    unsigned char h[HEADER_BYTES];
    struct stat st;
    const char *why;
    int fd = imp_open_regular(tf->path, &st, &why);
    if (fd < 0)
        return imp_fail(c, SP_EIO, "%s: %s", tf->path, why);
    int r = sp_pread_all(fd, h, sizeof h, 0);
    close(fd);
    if (r == SP_ETRUNC)
        return imp_fail(c, SP_ETRUNC, "%s: truncated: %lld bytes, shorter than the %d-byte llm.c header", tf->path,
                        (long long)st.st_size, HEADER_BYTES);
    if (r)
        return imp_fail(c, SP_EIO, "%s: read error: %s", tf->path, strerror(-r));

    int32_t magic = le32(h), version = le32(h + 4), count = le32(h + 8);
    if (magic == MAGIC_U16 && version == 1)
        tf->width = 2;
    else if (magic == MAGIC_U32 && version == 7)
        tf->width = 4;
    else if (magic == MAGIC_U16 || magic == MAGIC_U32)
        return imp_fail(c, SP_EVERSION, "%s: unsupported llm.c header version %d for magic %d (expected %d)",
                        tf->path, (int)version, (int)magic, magic == MAGIC_U16 ? 1 : 7);
    else
        return imp_fail(c, SP_EFORMAT, "%s: not an llm.c token file (magic %d, expected %d or %d)", tf->path,
                        (int)magic, MAGIC_U16, MAGIC_U32);
    if (count < 0)
        return imp_fail(c, SP_ECORRUPT, "%s: corrupt header: negative token count %d", tf->path, (int)count);
    tf->tokens = (uint64_t)count;
    uint64_t expect = HEADER_BYTES + tf->tokens * tf->width;
    if ((uint64_t)st.st_size != expect)
        return imp_fail(c, SP_ETRUNC, "%s: file size %llu does not match its header: %llu tokens of %u bytes need "
                        "%llu bytes (truncated or not an llm.c file)", tf->path, (unsigned long long)st.st_size,
                        (unsigned long long)tf->tokens, tf->width, (unsigned long long)expect);
    /* Sample i covers tokens [i*T, i*T+T], so it exists while i*T+T < count. */
    tf->samples = tf->tokens ? (tf->tokens - 1) / seq_len : 0;
    return SP_OK;
}

static int llmc_check(imp_ctx *c, const char *const *srcs, size_t n)
{
    (void)n;
    if (sp_params_get(imp_params(c), SP_PARAM_SEQ_LEN) == 0)
        return imp_fail(c, SP_EINVAL, "%s: llm.c token files need seq_len T (tokens per sample, plus one)", srcs[0]);
    return SP_OK;
}

static int tokens_schema(imp_ctx *c, const llmc *l)
{
    sp_schema *schema = sp_schema_create();
    if (!schema)
        return imp_oom(c, l->files[0].path, sizeof(sp_field_info));
    uint64_t shape[1] = { l->seq_len + 1 };
    int rc = sp_schema_add(schema, "tokens", SP_FIELD_TOKENS, l->files[0].width == 2 ? SP_DTYPE_U16 : SP_DTYPE_U32,
                           1, shape);
    if (rc) {
        sp_schema_destroy(schema);
        return imp_fail(c, SP_EINVAL, "seq_len %llu: %s", (unsigned long long)l->seq_len,
                        *sp_last_error() ? sp_last_error() : sp_strerror(rc));
    }
    imp_set_schema(c, schema);
    return SP_OK;
}

static int llmc_open(imp_ctx *c, void *priv, const char *const *srcs, size_t n)
{
    llmc *l = priv;
    l->fd = -1;
    l->n = n;
    l->seq_len = (uint64_t)sp_params_get(imp_params(c), SP_PARAM_SEQ_LEN);
    if (!(l->files = sp_calloc(n, sizeof *l->files)))
        return imp_oom(c, srcs[0], n * sizeof *l->files);
    uint64_t total_samples = 0, total_tokens = 0;
    for (size_t i = 0; i < n; i++) {
        l->files[i].path = srcs[i];
        int rc = read_header(c, &l->files[i], l->seq_len);
        if (rc)
            return rc;
        if (l->files[i].width != l->files[0].width)
            return imp_fail(c, SP_ESCHEMA, "%s: has %u-byte tokens but %s has %u-byte tokens; all token files of "
                            "one pack must share the width", srcs[i], l->files[i].width, srcs[0], l->files[0].width);
        total_samples += l->files[i].samples;
        total_tokens += l->files[i].tokens;
    }
    if (total_samples == 0)
        return imp_fail(c, SP_EBADINPUT, "%s: no samples: %llu tokens in all, fewer than seq_len + 1 = %llu per file; "
                        "nothing was written", srcs[0], (unsigned long long)total_tokens,
                        (unsigned long long)l->seq_len + 1);
    int rc = tokens_schema(c, l);
    if (rc)
        return rc;
    char text[32];
    snprintf(text, sizeof text, "%llu", (unsigned long long)l->seq_len);
    if ((rc = imp_set_meta(c, "seq_len", text, strlen(text))) != SP_OK)
        return rc;
    imp_set_totals(c, total_samples, total_samples * l->seq_len * l->files[0].width);
    if (sp_params_get(imp_params(c), SP_PARAM_ORDER) != SP_ORDER_SHUFFLED)
        return SP_OK;
    if (!(l->first = sp_malloc((n + 1) * sizeof *l->first)))
        return imp_oom(c, srcs[0], (n + 1) * sizeof *l->first);
    l->first[0] = 0;
    for (size_t i = 0; i < n; i++)
        l->first[i + 1] = l->first[i] + l->files[i].samples;
    l->total = total_samples;
    return imp_item_order(c, total_samples, &l->perm);
}

/* The file an empty file is (no window): a bad input item, said so. */
static int skip_empty(imp_ctx *c, const llmc *l, const token_file *tf)
{
    char why[96];
    snprintf(why, sizeof why, "%llu tokens, fewer than seq_len + 1 = %llu: no sample", (unsigned long long)tf->tokens,
             (unsigned long long)l->seq_len + 1);
    int rc = imp_skip(c, tf->path, why, 0);
    return rc < 0 ? rc : SP_OK;
}

/* order=shuffled: the k-th window of the permutation, read at its offset. */
static int next_shuffled(imp_ctx *c, llmc *l, imp_sample *out)
{
    if (l->k == 0) /* the files that give nothing, said once before the first sample */
        for (size_t i = 0; i < l->n; i++) {
            int rc = l->files[i].samples ? SP_OK : skip_empty(c, l, &l->files[i]);
            if (rc)
                return rc;
        }
    if (l->k == l->total)
        return 0;
    uint64_t g = l->perm[l->k++];
    /* the last file starting at or before g: an empty file shares its start with the next one */
    size_t fi = sp_floor_index(l->first, l->n, g);
    const token_file *tf = &l->files[fi];
    if (l->fd < 0 || l->fi != fi) {
        if (l->fd >= 0)
            close(l->fd);
        struct stat st;
        const char *why;
        l->fi = fi;
        if ((l->fd = imp_open_regular(tf->path, &st, &why)) < 0)
            return imp_fail(c, SP_EIO, "%s: %s", tf->path, why);
#if defined(POSIX_FADV_RANDOM)
        posix_fadvise(l->fd, 0, 0, POSIX_FADV_RANDOM);
#endif
    }
    const uint64_t stride = l->seq_len * tf->width, i = g - l->first[fi];
    size_t bytes = (size_t)(stride + tf->width);
    int rc = imp_buf_reserve(c, &l->buf, bytes, tf->path);
    if (rc)
        return rc;
    uint64_t at = HEADER_BYTES + i * stride;
    int r = sp_pread_all(l->fd, l->buf.data, bytes, at);
    if (r)
        return imp_fail(c, r == SP_ETRUNC ? SP_ETRUNC : SP_EIO, "%s: read error at byte %llu: %s", tf->path,
                        (unsigned long long)at, r == SP_ETRUNC ? "file shrank while reading" : strerror(-r));
    l->value = (sp_value){ l->buf.data, bytes };
    *out = (imp_sample){ &l->value, 1, stride, tf->path };
    return 1;
}

/* Reads the chunk of samples starting at l->next of the current file. */
static int read_chunk(imp_ctx *c, llmc *l, const token_file *tf)
{
    const uint64_t stride = l->seq_len * tf->width; /* bytes between sample starts */
    uint64_t per_chunk = CHUNK_BYTES / stride;
    if (per_chunk == 0)
        per_chunk = 1;
    uint64_t m = tf->samples - l->next < per_chunk ? tf->samples - l->next : per_chunk;
    size_t bytes = (size_t)(m * stride + tf->width); /* one token of overlap with the next */
    int rc = imp_buf_reserve(c, &l->buf, (size_t)(per_chunk * stride + tf->width), tf->path);
    if (rc)
        return rc;
    uint64_t at = HEADER_BYTES + l->next * stride;
    int r = sp_pread_all(l->fd, l->buf.data, bytes, at);
    if (r)
        return imp_fail(c, r == SP_ETRUNC ? SP_ETRUNC : SP_EIO, "%s: read error at byte %llu: %s", tf->path,
                        (unsigned long long)at, r == SP_ETRUNC ? "file shrank while reading" : strerror(-r));
    l->chunk_first = l->next;
    l->chunk_n = m;
    return SP_OK;
}

static int llmc_next(imp_ctx *c, void *priv, imp_sample *out)
{
    llmc *l = priv;
    if (l->perm)
        return next_shuffled(c, l, out);
    for (;;) {
        if (l->fi == l->n)
            return 0;
        const token_file *tf = &l->files[l->fi];
        if (tf->samples == 0) { /* contributes nothing: a bad input item, said so */
            int rc = skip_empty(c, l, tf);
            if (rc)
                return rc;
        }
        if (l->next == tf->samples) {
            if (l->fd >= 0)
                close(l->fd);
            l->fd = -1;
            l->fi++;
            l->next = l->chunk_first = l->chunk_n = 0;
            continue;
        }
        if (l->fd < 0) {
            struct stat st;
            const char *why;
            if ((l->fd = imp_open_regular(tf->path, &st, &why)) < 0)
                return imp_fail(c, SP_EIO, "%s: %s", tf->path, why);
#if defined(POSIX_FADV_SEQUENTIAL)
            posix_fadvise(l->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
        }
        if (l->next == l->chunk_first + l->chunk_n) {
            int rc = read_chunk(c, l, tf);
            if (rc)
                return rc;
        }
        const uint64_t stride = l->seq_len * tf->width;
        l->value = (sp_value){ l->buf.data + (l->next - l->chunk_first) * stride, (size_t)(stride + tf->width) };
        l->next++;
        *out = (imp_sample){ &l->value, 1, stride, tf->path };
        return 1;
    }
}

static void llmc_close(void *priv)
{
    llmc *l = priv;
    if (l->fd >= 0)
        close(l->fd);
    sp_free(l->files);
    sp_free(l->perm);
    sp_free(l->first);
    imp_buf_free(&l->buf);
}

const imp_kind imp_kind_llmc = {
    .name = "llmc",
    .sniff = llmc_sniff,
    .uses_seq_len = 1,
    .priv_size = sizeof(llmc),
    .check = llmc_check,
    .open = llmc_open,
    .next = llmc_next,
    .close = llmc_close,
};
