/* fuzz_imp_llmc.c - libFuzzer target: the llm.c token-file importer (lib/import/imp_llmc.c) on
 * arbitrary bytes, run by the library's import into a real writer (fuzz_imp.h).
 *
 * Input: a mode byte, then the token file (or two, with FIMP_SPLIT). Mode bits 0-3 are the common
 * ones of fuzz_imp.h (kind llmc with sources "tokens-a"/"tokens-b" instead of detection by the
 * ".bin" name and its magic; strict; two sources; tight writer limits). Own bits:
 *   bits 4-6  seq_len, one of {1, 2, 3, 5, 8, 16, 256, 1000};
 *   bit 7     the target sets each file's token count (header bytes 8-11) to what its size holds
 *             when the magic is known, so mutated files get past the size test.
 *
 * When the pack succeeds, the dataset must hold, for every file in order, the windows of T+1
 * tokens taken with stride T that its header promises, byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_imp.h"
#include "fuzz_target.h"

#define HEADER_BYTES 1024

#define LLMC_OWN_FIX_COUNT (8u << FIMP_OWN_SHIFT)

static const unsigned seq_lens[8] = {1, 2, 3, 5, 8, 16, 256, 1000};

typedef struct expect {
    const fimp_input *in;
    uint64_t seq_len;
    unsigned width;
    uint64_t first[FIMP_MAX_SRCS + 1]; /* first sample of each file; [nparts]: the total */
} expect;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void check_sample(void *user, uint64_t s, const sp_block *blk, uint32_t row)
{
    const expect *e = user;
    size_t k = 0;
    while (k + 1 < e->in->nparts && s >= e->first[k + 1])
        k++;
    uint64_t i = s - e->first[k];
    size_t size;
    const uint8_t *got = fimp_field(blk, row, 0, &size);
    size_t want = (size_t)((e->seq_len + 1) * e->width);
    uint64_t off = HEADER_BYTES + i * e->seq_len * e->width;
    if (size != want)
        fimp_fail("sample %llu has %zu bytes, expected %zu", (unsigned long long)s, size, want);
    if (off + want > e->in->len[k] || memcmp(got, e->in->part[k] + off, want) != 0)
        fimp_fail("sample %llu (window %llu of file %zu) differs from the tokens",
                  (unsigned long long)s, (unsigned long long)i, k);
}

static void check_output(const fimp_input *in, uint64_t seq_len)
{
    expect e = {in, seq_len, 0, {0}};
    for (size_t k = 0; k < in->nparts; k++) {
        if (in->len[k] < HEADER_BYTES)
            fimp_fail("file %zu of %zu bytes was accepted", k, in->len[k]);
        uint32_t magic = le32(in->part[k]), count = le32(in->part[k] + 8);
        unsigned w = magic == 20240520u ? 2 : magic == 20240801u ? 4 : 0;
        if (!w || (e.width && w != e.width))
            fimp_fail("file %zu with magic %u was accepted", k, magic);
        e.width = w;
        if ((uint64_t)in->len[k] != HEADER_BYTES + (uint64_t)count * w)
            fimp_fail("file %zu of %zu bytes for %u tokens was accepted", k, in->len[k], count);
        e.first[k + 1] = e.first[k] + (count ? (count - 1) / seq_len : 0);
    }
    sp_dataset *ds = fimp_open_output();
    if (sp_dataset_num_samples(ds) != e.first[in->nparts])
        fimp_fail("%llu samples packed, the headers promise %llu",
                  (unsigned long long)sp_dataset_num_samples(ds),
                  (unsigned long long)e.first[in->nparts]);
    fimp_each_sample(ds, check_sample, &e);
    sp_dataset_close(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fimp_input in;
    if (!fimp_parse(data, size, &in))
        return 0;
    unsigned seq_len = seq_lens[(in.mode >> FIMP_OWN_SHIFT) & 7];
    int from = (in.mode & FIMP_FROM) != 0;
    uint8_t *fixed[FIMP_MAX_SRCS] = {NULL, NULL};
    for (size_t k = 0; k < in.nparts && (in.mode & LLMC_OWN_FIX_COUNT); k++) {
        if (in.len[k] < HEADER_BYTES)
            continue;
        uint32_t magic = le32(in.part[k]);
        unsigned w = magic == 20240520u ? 2 : magic == 20240801u ? 4 : 0;
        if (!w)
            continue;
        uint64_t count = (in.len[k] - HEADER_BYTES) / w;
        fixed[k] = malloc(in.len[k]);
        if (!fixed[k])
            abort();
        memcpy(fixed[k], in.part[k], in.len[k]);
        for (int i = 0; i < 4; i++)
            fixed[k][8 + i] = (uint8_t)(count >> (8 * i));
        in.part[k] = fixed[k];
    }
    fimp_begin();
    const char *srcs[FIMP_MAX_SRCS];
    for (size_t k = 0; k < in.nparts; k++) {
        const char *name = from ? (k ? "tokens-b" : "tokens-a") : (k ? "tokens2.bin" : "tokens.bin");
        srcs[k] = fimp_write(name, in.part[k], in.len[k]);
    }
    int rc = fimp_pack(in.mode, "llmc", srcs, in.nparts, seq_len);
    if (rc == 0)
        check_output(&in, seq_len);
    fimp_end();
    for (size_t k = 0; k < FIMP_MAX_SRCS; k++)
        free(fixed[k]);
    return 0;
}
