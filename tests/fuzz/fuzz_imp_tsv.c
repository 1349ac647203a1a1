/* fuzz_imp_tsv.c - libFuzzer target: the TSV importer (lib/import/imp_tsv.c: lines PATH<TAB>LABEL,
 * relative paths from the TSV's directory) on arbitrary bytes, run by the library's import into a
 * real writer (fuzz_imp.h).
 *
 * Input: a mode byte, then the TSV text (or two, with FIMP_SPLIT). Mode bits 0-3 are the common
 * ones of fuzz_imp.h (kind tsv and names without ".tsv"; strict; two sources; tight writer
 * limits: big.jpg is then refused by the writer). Own bit:
 *   bit 4  the first TSV lies in the subdirectory d/ (so "c.jpg" resolves there).
 *
 * The run directory holds fixtures the lines can name: a.jpg (a small JPEG), big.jpg (a JPEG over
 * 1 KiB), cut.jpg (its first half), empty.jpg, bad.jpg (text), d/ (a directory) and d/c.jpg (a
 * grey JPEG). Inputs with a line that starts with '/' (after a byte order mark, for the first) or
 * with ".." anywhere are refused (-1), so a line never names a file outside the run directory.
 *
 * When the pack succeeds, every sample's image must be the bytes of a fixture (or of a TSV) and its
 * label 8 bytes; there cannot be more samples than lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "fuzz_imp.h"
#include "fuzz_target.h"

#define TSV_OWN_IN_SUBDIR (1u << FIMP_OWN_SHIFT)

typedef struct blob {
    const char *name;
    unsigned char *data;
    size_t size;
} blob;

enum { FIX_A, FIX_BIG, FIX_CUT, FIX_EMPTY, FIX_BAD, FIX_C, NFIX };

static blob g_fix[NFIX];

/* A w x h JPEG of a pattern (noise makes it large), allocated with malloc. */
static unsigned char *make_jpeg(int w, int h, int gray, int noise, size_t *size)
{
    int ch = gray ? 1 : 3;
    unsigned char *px = malloc((size_t)w * h * ch);
    uint32_t x = 12345;
    for (int i = 0; i < w * h * ch; i++) {
        x = x * 1103515245u + 12345u;
        px[i] = noise ? (unsigned char)(x >> 24) : (unsigned char)(i * 7 % 251);
    }
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long len = 0;
    if (!tj || tjCompress2(tj, px, w, 0, h, gray ? TJPF_GRAY : TJPF_RGB, &jpeg, &len,
                           gray ? TJSAMP_GRAY : TJSAMP_420, 90, 0) != 0)
        abort();
    tjDestroy(tj);
    free(px);
    unsigned char *out = malloc(len);
    memcpy(out, jpeg, len);
    tjFree(jpeg);
    *size = len;
    return out;
}

static void free_fixtures(void)
{
    for (int i = 0; i < NFIX; i++)
        free(g_fix[i].data);
}

static void make_fixtures(void)
{
    g_fix[FIX_A] = (blob){"a.jpg", NULL, 0};
    g_fix[FIX_A].data = make_jpeg(16, 16, 0, 0, &g_fix[FIX_A].size);
    g_fix[FIX_BIG] = (blob){"big.jpg", NULL, 0};
    g_fix[FIX_BIG].data = make_jpeg(48, 48, 0, 1, &g_fix[FIX_BIG].size);
    if (g_fix[FIX_BIG].size <= 1024)
        abort(); /* must be over the tight max_sample_bytes */
    g_fix[FIX_CUT] = (blob){"cut.jpg", malloc(g_fix[FIX_BIG].size / 2), g_fix[FIX_BIG].size / 2};
    memcpy(g_fix[FIX_CUT].data, g_fix[FIX_BIG].data, g_fix[FIX_CUT].size);
    g_fix[FIX_EMPTY] = (blob){"empty.jpg", malloc(1), 0};
    g_fix[FIX_BAD] = (blob){"bad.jpg", malloc(12), 11};
    memcpy(g_fix[FIX_BAD].data, "not a jpeg\n", 11);
    g_fix[FIX_C] = (blob){"d/c.jpg", NULL, 0};
    g_fix[FIX_C].data = make_jpeg(8, 8, 1, 0, &g_fix[FIX_C].size);
    atexit(free_fixtures);
}

/* 1 when a line could name a file outside the run directory (the importer drops a UTF-8 byte
 * order mark before the first line's path). */
static int escapes(const uint8_t *p, size_t n)
{
    if (memmem(p, n, "..", 2))
        return 1;
    size_t bom = n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '/' && (i == bom || i == 0 || p[i - 1] == '\n'))
            return 1;
    return 0;
}

static size_t count_lines(const uint8_t *p, size_t n)
{
    size_t lines = n && p[n - 1] != '\n';
    for (size_t i = 0; i < n; i++)
        lines += p[i] == '\n';
    return lines;
}

static void check_sample(void *user, uint64_t s, const sp_block *blk, uint32_t row)
{
    const fimp_input *in = user;
    size_t isize;
    const uint8_t *img = fimp_image_of(blk, row, s, &isize);
    for (int i = 0; i < NFIX; i++)
        if (isize == g_fix[i].size && memcmp(img, g_fix[i].data, isize) == 0)
            return;
    for (size_t k = 0; k < in->nparts; k++)
        if (isize == in->len[k] && memcmp(img, in->part[k], isize) == 0)
            return;
    fimp_fail("sample %llu: its image of %zu bytes is no file a line can name",
              (unsigned long long)s, isize);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fimp_input in;
    if (!fimp_parse(data, size, &in))
        return 0;
    size_t lines = 0;
    for (size_t k = 0; k < in.nparts; k++) {
        if (escapes(in.part[k], in.len[k]))
            return -1;
        lines += count_lines(in.part[k], in.len[k]);
    }
    if (!g_fix[FIX_A].data)
        make_fixtures();
    fimp_begin();
    fimp_mkdir("d");
    for (int i = 0; i < NFIX; i++)
        fimp_write(g_fix[i].name, g_fix[i].data, g_fix[i].size);
    int from = (in.mode & FIMP_FROM) != 0;
    const char *srcs[FIMP_MAX_SRCS];
    for (size_t k = 0; k < in.nparts; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s%s%s", k == 0 && (in.mode & TSV_OWN_IN_SUBDIR) ? "d/" : "",
                 k ? "list2" : "list", from ? "" : ".tsv");
        srcs[k] = fimp_write(name, in.part[k], in.len[k]);
    }
    if (fimp_pack(in.mode, "tsv", srcs, in.nparts, 0) == 0) {
        sp_dataset *ds = fimp_open_output();
        if (sp_dataset_num_samples(ds) > lines)
            fimp_fail("%llu samples from %zu lines", (unsigned long long)sp_dataset_num_samples(ds),
                      lines);
        fimp_each_sample(ds, check_sample, &in);
        sp_dataset_close(ds);
    }
    fimp_end();
    return 0;
}
