/* fuzz_imp_tar.c - libFuzzer target: the WebDataset tar importer (lib/import/imp_tar.c: ustar, GNU long
 * names, pax headers) on arbitrary bytes, run by the library's import into a real writer
 * (fuzz_imp.h).
 *
 * Input: a mode byte, then the tar (or two, with FIMP_SPLIT). Mode bits 0-3 are the common ones of
 * fuzz_imp.h (kind wds and names without ".tar"; strict; two sources; tight writer limits).
 * Own bits:
 *   bit 4  the first source is a pipe (/proc/self/fd/N, filled beforehand), so the reader cannot
 *          seek or know the size and skips member data by reading it; implies kind wds;
 *   bit 5  the target rewrites the checksum of every header block it finds (following member
 *          sizes, pax 'size' records included) before the pack, so mutated headers get past the
 *          checksum test to the parsing behind it.
 *
 * When the pack succeeds, every sample's image must be bytes of an input, its label 8 bytes. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_imp.h"
#include "fuzz_target.h"

#define TAR_OWN_PIPE (1u << FIMP_OWN_SHIFT)
#define TAR_OWN_FIX_CHECKSUMS (2u << FIMP_OWN_SHIFT)

/* A header's size field, leniently: base-256, or the octal digits after leading blanks. */
static uint64_t header_size(const uint8_t *h)
{
    uint64_t v = 0;
    if (h[124] & 0x80) {
        for (int i = 125; i < 136; i++)
            v = v << 8 | h[i];
        return v;
    }
    int i = 124;
    while (i < 136 && h[i] == ' ')
        i++;
    for (; i < 136 && h[i] >= '0' && h[i] <= '7' && v < (UINT64_MAX >> 3); i++)
        v = v << 3 | (uint64_t)(h[i] - '0');
    return v;
}

/* The value of the last "size=" record of a pax body, if any. */
static int pax_size(const uint8_t *body, size_t n, uint64_t *out)
{
    int found = 0;
    for (size_t i = 0; i + 6 <= n; i++) {
        if (memcmp(body + i, " size=", 6) != 0)
            continue;
        uint64_t v = 0;
        for (size_t j = i + 6; j < n && body[j] >= '0' && body[j] <= '9' && v < UINT64_MAX / 10; j++)
            v = v * 10 + (uint64_t)(body[j] - '0');
        *out = v;
        found = 1;
    }
    return found;
}

/* Rewrites the checksum of every header block the reader will meet, walking the members as it
 * does, up to the first zero block or the end. */
static void fix_checksums(uint8_t *b, size_t n)
{
    size_t pos = 0;
    uint64_t next_size = 0;
    int has_next_size = 0;
    while (n - pos >= 512) {
        uint8_t *h = b + pos;
        size_t z = 0;
        while (z < 512 && h[z] == 0)
            z++;
        if (z == 512)
            return;
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++)
            sum += h[i];
        char digits[8];
        snprintf(digits, sizeof digits, "%06o", sum & 0777777u);
        memcpy(h + 148, digits, 7); /* six digits and a NUL; the eighth byte stays a blank */
        uint64_t size = header_size(h);
        char type = (char)h[156];
        if (has_next_size && type != 'L' && type != 'x') {
            size = next_size;
            has_next_size = 0;
        }
        pos += 512;
        if (size > n - pos)
            return;
        if (type == 'x' && pax_size(b + pos, (size_t)size, &next_size))
            has_next_size = 1;
        size_t padded = (size_t)((size + 511) / 512 * 512);
        if (padded > n - pos)
            return;
        pos += padded;
    }
}

/* A pipe holding data with its write end closed, or -1 when data does not fit in one. */
static int filled_pipe(const uint8_t *data, size_t n)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    int cap = fcntl(fds[1], F_GETPIPE_SZ);
    if (cap >= 0 && (size_t)cap < n)
        cap = fcntl(fds[1], F_SETPIPE_SZ, (int)(n < (1u << 20) ? n : (1u << 20)));
    if (cap < 0 || (size_t)cap < n) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    while (n) {
        ssize_t w = write(fds[1], data, n);
        if (w <= 0)
            abort(); /* it fits: a blocking write of it cannot fail */
        data += w;
        n -= (size_t)w;
    }
    close(fds[1]);
    return fds[0];
}

static void check_sample(void *user, uint64_t s, const sp_block *blk, uint32_t row)
{
    const fimp_input *in = user;
    size_t isize;
    const uint8_t *img = fimp_image_of(blk, row, s, &isize);
    for (size_t k = 0; k < in->nparts; k++)
        if (isize && memmem(in->part[k], in->len[k], img, isize))
            return;
    fimp_fail("sample %llu: its image of %zu bytes is in no input", (unsigned long long)s, isize);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fimp_input in;
    if (!fimp_parse(data, size, &in))
        return 0;
    unsigned mode = in.mode;
    uint8_t *fixed[FIMP_MAX_SRCS] = {NULL, NULL};
    if (mode & TAR_OWN_FIX_CHECKSUMS) {
        for (size_t k = 0; k < in.nparts; k++) {
            fixed[k] = malloc(in.len[k] ? in.len[k] : 1);
            if (!fixed[k])
                abort();
            memcpy(fixed[k], in.part[k], in.len[k]);
            fix_checksums(fixed[k], in.len[k]);
            in.part[k] = fixed[k];
        }
    }
    fimp_begin();
    const char *srcs[FIMP_MAX_SRCS];
    char pipe_path[64];
    int pfd = -1;
    if (mode & TAR_OWN_PIPE)
        pfd = filled_pipe(in.part[0], in.len[0]);
    for (size_t k = 0; k < in.nparts; k++) {
        if (k == 0 && pfd >= 0) {
            snprintf(pipe_path, sizeof pipe_path, "/proc/self/fd/%d", pfd);
            srcs[k] = pipe_path;
            mode |= FIMP_FROM;
            continue;
        }
        const char *name = (mode & FIMP_FROM) ? (k ? "shard-b" : "shard-a")
                                              : (k ? "shard2.tar" : "shard.tar");
        srcs[k] = fimp_write(name, in.part[k], in.len[k]);
    }
    if (fimp_pack(mode, "wds", srcs, in.nparts, 0) == 0) {
        sp_dataset *ds = fimp_open_output();
        fimp_each_sample(ds, check_sample, &in);
        sp_dataset_close(ds);
    }
    if (pfd >= 0)
        close(pfd);
    fimp_end();
    for (size_t k = 0; k < FIMP_MAX_SRCS; k++)
        free(fixed[k]);
    return 0;
}
