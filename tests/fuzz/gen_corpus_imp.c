/* gen_corpus_imp.c - writes the seed corpora of the importer fuzz targets (fuzz_imp_*.c): small
 * valid llm.c token files, WebDataset tars, .npy arrays and TSV lists, plus broken ones. Each file
 * is a mode byte (fuzz_imp.h and the target's header comment), with FIMP_SPLIT two length bytes,
 * then the source(s). Run once by hand (tests/README.md):
 *
 *   build/tests/fuzz/fuzz_gen_corpus_imp tests/fuzz/corpus
 *
 * It overwrites its own files only, so inputs added from fuzzing findings stay. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "fuzz_imp.h"

static const char *g_out;
static int g_count;

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    if (n)
        memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_zeros(buf *b, size_t n)
{
    while (n--)
        put(b, "", 1);
}

static void putf(buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

static void put_le(buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        unsigned char c = (unsigned char)(v >> (8 * i));
        put(b, &c, 1);
    }
}

/* corpus/<kind>/<name>: the mode byte, then one source, or (second != NULL) FIMP_SPLIT's two. */
static void emit(const char *kind, const char *name, unsigned mode, const buf *first,
                 const buf *second)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_out, kind);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", g_out, kind, name);
    buf b = {0};
    unsigned char m = (unsigned char)(mode | (second ? FIMP_SPLIT : 0));
    put(&b, &m, 1);
    if (second) {
        if (first->n > 0xFFFF)
            abort();
        put_le(&b, first->n, 2);
    }
    put(&b, first->p, first->n);
    if (second)
        put(&b, second->p, second->n);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b.p, 1, b.n, f) != b.n || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus_imp: cannot write %s\n", path);
        exit(1);
    }
    free(b.p);
    g_count++;
}

static void reset(buf *b) { b->n = 0; }

/* ---- JPEGs ----------------------------------------------------------------------------------- */

static buf g_jpeg_small, g_jpeg_big;

static void make_jpeg(buf *out, int w, int h, int noise)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    uint32_t x = 99;
    for (int i = 0; i < w * h * 3; i++) {
        x = x * 1664525u + 1013904223u;
        px[i] = noise ? (unsigned char)(x >> 24) : (unsigned char)(i * 5 % 253);
    }
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long len = 0;
    if (!tj || tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jpeg, &len, TJSAMP_420, 85, 0) != 0)
        abort();
    put(out, jpeg, len);
    tjFree(jpeg);
    tjDestroy(tj);
    free(px);
}

/* ---- llm.c ------------------------------------------------------------------------------------ */

/* A token file: header (magic, version, count) and ntokens tokens of width bytes. */
static void llmc(buf *b, uint32_t magic, int32_t version, int32_t count, uint32_t ntokens,
                 unsigned width)
{
    reset(b);
    put_le(b, magic, 4);
    put_le(b, (uint32_t)version, 4);
    put_le(b, (uint32_t)count, 4);
    put_zeros(b, 1024 - 12);
    for (uint32_t k = 0; k < ntokens; k++)
        put_le(b, (k * 7919u + 13u) % (width == 2 ? 50257u : 100277u), (int)width);
}

#define U16 20240520u
#define U32 20240801u
/* Mode bits 4-6 of fuzz_imp_llmc.c: the --seq-len index; bit 7: the target fixes the count. */
#define T_1 (0u << 4)
#define T_3 (2u << 4)
#define T_5 (3u << 4)
#define T_8 (4u << 4)
#define T_256 (6u << 4)
#define T_1000 (7u << 4)
#define FIX_COUNT (8u << 4)

static void gen_llmc(void)
{
    buf a = {0}, b = {0};
    const char *k = "imp_llmc";
    llmc(&a, U16, 1, 100, 100, 2);
    emit(k, "u16-t8", T_8, &a, NULL);
    emit(k, "u16-t8-tight", T_8 | FIMP_TIGHT, &a, NULL);
    llmc(&a, U32, 7, 50, 50, 4);
    emit(k, "u32-t5-from", T_5 | FIMP_FROM, &a, NULL);
    llmc(&a, U16, 1, 10, 10, 2);
    emit(k, "u16-t1-strict", T_1 | FIMP_STRICT, &a, NULL);
    llmc(&a, U16, 1, 1001, 1001, 2);
    emit(k, "u16-t1000", T_1000, &a, NULL);
    llmc(&a, U32, 7, 600, 600, 4);
    emit(k, "u32-t256-tight-refused", T_256 | FIMP_TIGHT, &a, NULL);
    llmc(&a, U16, 1, 2000, 2000, 2);
    emit(k, "u16-t8-tight-shards", T_8 | FIMP_TIGHT, &a, NULL);

    llmc(&a, U16, 1, 30, 30, 2);
    llmc(&b, U16, 1, 20, 20, 2);
    emit(k, "split-u16-t3", T_3, &a, &b);
    llmc(&b, U32, 7, 20, 20, 4);
    emit(k, "split-mixed-width", T_3, &a, &b);
    llmc(&b, U16, 1, 2, 2, 2);
    emit(k, "split-second-short", T_3, &a, &b);

    llmc(&a, U16, 7, 10, 10, 2);
    emit(k, "bad-version-u16", T_1, &a, NULL);
    llmc(&a, U32, 1, 10, 10, 4);
    emit(k, "bad-version-u32", T_1 | FIMP_FROM, &a, NULL);
    llmc(&a, 12345, 1, 10, 10, 2);
    emit(k, "bad-magic-bin", T_1, &a, NULL);
    emit(k, "bad-magic-from", T_1 | FIMP_FROM, &a, NULL);
    llmc(&a, U16, 1, -5, 0, 2);
    emit(k, "negative-count", T_1, &a, NULL);
    llmc(&a, U16, 1, 100, 90, 2);
    emit(k, "size-short", T_8, &a, NULL);
    emit(k, "size-short-fixed", T_8 | FIMP_STRICT | FIX_COUNT, &a, NULL);
    llmc(&a, U32, 7, 0, 77, 4);
    llmc(&b, U32, 7, 999, 40, 4);
    emit(k, "split-fixed-counts", T_5 | FIX_COUNT, &a, &b);
    llmc(&a, U32, 7, 10, 11, 4);
    emit(k, "size-long", T_1, &a, NULL);
    llmc(&a, U16, 1, 10, 10, 2);
    a.n = 500;
    emit(k, "truncated-header", T_1, &a, NULL);
    reset(&a);
    emit(k, "empty", T_1, &a, NULL);
    llmc(&a, U16, 1, 5, 5, 2);
    emit(k, "too-few-tokens", T_8, &a, NULL);
    llmc(&a, U16, 1, 0, 0, 2);
    emit(k, "no-tokens", T_1, &a, NULL);
    free(a.p);
    free(b.p);
}

/* ---- tar -------------------------------------------------------------------------------------- */

typedef struct tar_opt {
    const char *prefix;   /* ustar prefix field */
    int gnu;              /* "ustar  " magic instead of POSIX "ustar" */
    int base256;          /* size in GNU base-256 */
    int bad_checksum;
} tar_opt;

static void tar_header(buf *b, const char *name, uint64_t size, char type, const tar_opt *o)
{
    unsigned char h[512];
    memset(h, 0, sizeof h);
    memcpy(h, name, strnlen(name, 100));
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0001750", 8);
    memcpy(h + 116, "0001750", 8);
    if (o && o->base256) {
        h[124] = 0x80;
        for (int i = 0; i < 8; i++)
            h[135 - i] = (unsigned char)(size >> (8 * i));
    } else {
        snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    }
    memcpy(h + 136, "14712345670", 12);
    h[156] = (unsigned char)type;
    if (o && o->gnu)
        memcpy(h + 257, "ustar  ", 8);
    else
        memcpy(h + 257, "ustar\0" "00", 8);
    memcpy(h + 265, "user", 4);
    memcpy(h + 297, "group", 5);
    if (o && o->prefix)
        memcpy(h + 345, o->prefix, strnlen(o->prefix, 155));
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    if (o && o->bad_checksum)
        sum += 3;
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    put(b, h, sizeof h);
}

static void tar_data(buf *b, const void *d, size_t n)
{
    put(b, d, n);
    put_zeros(b, (512 - n % 512) % 512);
}

static void tar_member(buf *b, const char *name, const void *d, size_t n, const tar_opt *o)
{
    tar_header(b, name, n, '0', o);
    tar_data(b, d, n);
}

static void tar_label(buf *b, const char *name, const char *text)
{
    tar_member(b, name, text, strlen(text), NULL);
}

/* A GNU 'L' record naming the next member. */
static void tar_longname(buf *b, const char *name)
{
    tar_opt gnu = {NULL, 1, 0, 0};
    tar_header(b, "././@LongLink", strlen(name) + 1, 'L', &gnu);
    tar_data(b, name, strlen(name) + 1);
}

/* One pax record "LEN KEY=VALUE\n", LEN counting itself. */
static void pax_record(buf *b, const char *key, const char *value)
{
    size_t body = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
    size_t len = body + 1;
    while (len != body + (size_t)snprintf(NULL, 0, "%zu", len))
        len = body + (size_t)snprintf(NULL, 0, "%zu", len);
    putf(b, "%zu %s=%s\n", len, key, value);
}

static void tar_pax(buf *b, char type, const buf *records)
{
    tar_header(b, "PaxHeaders.0/x", records->n, type, NULL);
    tar_data(b, records->p, records->n);
}

static void tar_end(buf *b) { put_zeros(b, 1024); }

static void sample(buf *b, const char *key, const buf *jpeg, const char *label)
{
    char name[400];
    snprintf(name, sizeof name, "%s.jpg", key);
    tar_member(b, name, jpeg->p, jpeg->n, NULL);
    snprintf(name, sizeof name, "%s.cls", key);
    tar_label(b, name, label);
}

#define TAR_PIPE (1u << 4)
#define TAR_FIX_CHECKSUMS (2u << 4)

static void gen_tar(void)
{
    const char *k = "imp_tar";
    buf a = {0}, b = {0}, rec = {0};

    sample(&a, "s/000001", &g_jpeg_small, "3");
    sample(&a, "s/000002", &g_jpeg_small, " 17\n");
    tar_end(&a);
    emit(k, "basic", 0, &a, NULL);
    emit(k, "basic-from-strict", FIMP_FROM | FIMP_STRICT, &a, NULL);
    emit(k, "basic-pipe", TAR_PIPE, &a, NULL);
    reset(&b);
    sample(&b, "t/000003", &g_jpeg_big, "-4");
    tar_end(&b);
    emit(k, "split", 0, &a, &b);
    emit(k, "split-pipe-tight", TAR_PIPE | FIMP_TIGHT, &a, &b);

    /* GNU long names for a sample's two members, a directory and a link between. */
    char longkey[300];
    memset(longkey, 'k', 150);
    strcpy(longkey + 150, "/deep/sample-with-a-long-name");
    char name[400];
    reset(&a);
    tar_opt gnu = {NULL, 1, 0, 0};
    tar_header(&a, "dir/", 0, '5', &gnu);
    snprintf(name, sizeof name, "%s.jpg", longkey);
    tar_longname(&a, name);
    tar_member(&a, "trimmed.jpg", g_jpeg_small.p, g_jpeg_small.n, &gnu);
    tar_header(&a, "link.jpg", 0, '2', &gnu);
    snprintf(name, sizeof name, "%s.cls", longkey);
    tar_longname(&a, name);
    tar_member(&a, "trimmed.cls", "8", 1, &gnu);
    tar_end(&a);
    emit(k, "gnu-longname", 0, &a, NULL);
    emit(k, "gnu-longname-pipe", TAR_PIPE, &a, NULL);
    emit(k, "gnu-longname-fixed-pipe", TAR_PIPE | TAR_FIX_CHECKSUMS, &a, NULL);

    /* pax: a global header, a per-file path and size override, a ustar prefix. */
    reset(&a);
    reset(&rec);
    pax_record(&rec, "comment", "made by gen_corpus_imp");
    tar_pax(&a, 'g', &rec);
    reset(&rec);
    pax_record(&rec, "path", "pax/a-path-from-the-extended-header.jpg");
    pax_record(&rec, "mtime", "1700000000.5");
    char sz[32];
    snprintf(sz, sizeof sz, "%zu", g_jpeg_small.n);
    pax_record(&rec, "size", sz);
    tar_pax(&a, 'x', &rec);
    tar_opt wrong_size = {NULL, 0, 0, 0};
    tar_header(&a, "ignored.jpg", 1, '0', &wrong_size); /* size comes from the pax record */
    tar_data(&a, g_jpeg_small.p, g_jpeg_small.n);
    reset(&rec);
    pax_record(&rec, "path", "pax/a-path-from-the-extended-header.cls");
    tar_pax(&a, 'x', &rec);
    tar_label(&a, "ignored.cls", "12");
    tar_opt pre = {"prefix/dir", 0, 0, 0};
    tar_member(&a, "p.jpg", g_jpeg_small.p, g_jpeg_small.n, &pre);
    tar_opt pre256 = {"prefix/dir", 0, 1, 0};
    tar_member(&a, "p.cls", "5", 1, &pre256);
    tar_end(&a);
    emit(k, "pax-prefix-base256", 0, &a, NULL);
    emit(k, "pax-prefix-base256-pipe", TAR_PIPE | FIMP_STRICT, &a, NULL);
    emit(k, "pax-prefix-base256-fixed", TAR_FIX_CHECKSUMS, &a, NULL);

    /* Bad samples that are skipped: no label, a bad label, two images, a big label, a bad JPEG,
     * and an image the tight writer refuses; the archive ends without the zero blocks. */
    reset(&a);
    tar_member(&a, "x/nolabel.jpg", g_jpeg_small.p, g_jpeg_small.n, NULL);
    tar_label(&a, "x/badlabel.cls", "seven");
    tar_member(&a, "x/badlabel.jpg", g_jpeg_small.p, g_jpeg_small.n, NULL);
    tar_member(&a, "x/two.jpg", g_jpeg_small.p, g_jpeg_small.n, NULL);
    tar_member(&a, "x/two.jpeg", g_jpeg_small.p, g_jpeg_small.n, NULL);
    tar_label(&a, "x/two.cls", "1");
    char big[5000];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    tar_member(&a, "x/biglabel.cls", big, sizeof big, NULL);
    tar_member(&a, "x/notjpeg.jpg", "GIF89a", 6, NULL);
    tar_label(&a, "x/notjpeg.cls", "2");
    tar_member(&a, "x/huge.jpg", g_jpeg_big.p, g_jpeg_big.n, NULL);
    tar_label(&a, "x/huge.cls", "9");
    tar_member(&a, "x/ok.JPG", g_jpeg_small.p, g_jpeg_small.n, NULL);
    tar_label(&a, "x/ok.CLS", "0");
    tar_label(&a, "x/nojpeg.cls", "0");
    emit(k, "bad-samples", 0, &a, NULL);
    emit(k, "bad-samples-tight", FIMP_TIGHT, &a, NULL);
    emit(k, "bad-samples-strict", FIMP_STRICT, &a, NULL);
    emit(k, "bad-samples-fixed", TAR_FIX_CHECKSUMS, &a, NULL);

    /* Broken archives. */
    reset(&a);
    tar_opt badsum = {NULL, 0, 0, 1};
    tar_member(&a, "b/1.jpg", g_jpeg_small.p, g_jpeg_small.n, &badsum);
    emit(k, "bad-checksum", 0, &a, NULL);
    emit(k, "bad-checksum-fixed", TAR_FIX_CHECKSUMS, &a, NULL);
    reset(&a);
    sample(&a, "b/1", &g_jpeg_small, "1");
    a.n -= 700;
    emit(k, "truncated-data", 0, &a, NULL);
    emit(k, "truncated-data-pipe", TAR_PIPE, &a, NULL);
    reset(&a);
    sample(&a, "b/1", &g_jpeg_small, "1");
    a.n = 512 + 512 * ((g_jpeg_small.n + 511) / 512) + 300;
    emit(k, "truncated-header", 0, &a, NULL);
    reset(&a);
    reset(&rec);
    put(&rec, "99 path=x\n", 10);
    tar_pax(&a, 'x', &rec);
    sample(&a, "b/1", &g_jpeg_small, "1");
    emit(k, "pax-bad-length", 0, &a, NULL);
    reset(&a);
    reset(&rec);
    pax_record(&rec, "size", "notanumber");
    tar_pax(&a, 'x', &rec);
    sample(&a, "b/1", &g_jpeg_small, "1");
    emit(k, "pax-bad-size", 0, &a, NULL);
    reset(&a);
    reset(&rec);
    pax_record(&rec, "size", "99999999999");
    tar_pax(&a, 'x', &rec);
    sample(&a, "b/1", &g_jpeg_small, "1");
    emit(k, "pax-size-past-end", FIMP_FROM, &a, NULL);
    emit(k, "pax-size-past-end-pipe", TAR_PIPE, &a, NULL);
    reset(&a);
    tar_header(&a, "././@LongLink", 2u << 20, 'L', &gnu);
    put_zeros(&a, 512);
    emit(k, "longname-too-big", TAR_PIPE, &a, NULL);
    reset(&a);
    putf(&a, "this is not a tar file at all\n");
    emit(k, "not-tar", 0, &a, NULL);
    reset(&a);
    tar_end(&a);
    emit(k, "only-end-blocks", 0, &a, NULL);
    reset(&a);
    emit(k, "empty", 0, &a, NULL);
    free(a.p);
    free(b.p);
    free(rec.p);
}

/* ---- npy -------------------------------------------------------------------------------------- */

/* A .npy file: version major, the header dict text (padded as numpy does), nbytes of data. */
static void npy(buf *b, int major, const char *dict, size_t nbytes)
{
    reset(b);
    put(b, "\x93NUMPY", 6);
    unsigned char ver[2] = {(unsigned char)major, 0};
    put(b, ver, 2);
    size_t pre = major == 1 ? 10 : 12;
    size_t hlen = strlen(dict) + 1;
    hlen += (64 - (pre + hlen) % 64) % 64;
    put_le(b, hlen, major == 1 ? 2 : 4);
    put(b, dict, strlen(dict));
    for (size_t i = strlen(dict); i + 1 < hlen; i++)
        put(b, " ", 1);
    put(b, "\n", 1);
    for (size_t i = 0; i < nbytes; i++) {
        unsigned char c = (unsigned char)(i * 31 + 7);
        put(b, &c, 1);
    }
}

#define NPY_SAME_NAME (1u << 4)
#define NPY_STEM(n) ((unsigned)(n) << 5)

static void gen_npy(void)
{
    const char *k = "imp_npy";
    buf a = {0}, b = {0};
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48);
    emit(k, "f4-2d", 0, &a, NULL);
    emit(k, "f4-2d-from-sanitised", FIMP_FROM | NPY_STEM(1), &a, NULL);
    emit(k, "f4-2d-long-stem", NPY_STEM(2), &a, NULL);
    emit(k, "f4-2d-empty-stem", FIMP_FROM | NPY_STEM(3), &a, NULL);
    npy(&a, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (10,), }", 10);
    emit(k, "u1-1d", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (7,), }", 14);
    emit(k, "i2-fortran-1d", FIMP_STRICT, &a, NULL);
    npy(&a, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", 48);
    emit(k, "f8-fortran-2d", 0, &a, NULL);
    npy(&a, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (5, 2), }", 10);
    emit(k, "b1", 0, &a, NULL); /* bytes other than 0 and 1: refused */
    npy(&a, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (5, 2), }", 0);
    for (int i = 0; i < 10; i++) {
        unsigned char c = (unsigned char)(i % 3 == 0);
        put(&a, &c, 1);
    }
    emit(k, "b1-01", 0, &a, NULL);
    npy(&a, 2, "{'descr': '<u8', 'fortran_order': False, 'shape': (4, 2, 3), }", 192);
    emit(k, "u8-3d-v2", 0, &a, NULL);
    npy(&a, 3, "{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }", 12);
    emit(k, "f2-v3", FIMP_FROM, &a, NULL);
    npy(&a, 1, "{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (3L, 1L)}", 24);
    emit(k, "i8-python2", 0, &a, NULL);
    npy(&a, 1, "{'descr': '=i4', 'fortran_order': False, 'shape': (2,), }", 8);
    emit(k, "i4-native-order", 0, &a, NULL);
    npy(&a, 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", 8);
    emit(k, "i4-big-endian", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16);
    emit(k, "c8-unsupported", 0, &a, NULL);
    npy(&a, 1, "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }",
        16);
    emit(k, "structured", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4);
    emit(k, "0d", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", 0);
    emit(k, "zero-rows", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }", 0);
    emit(k, "zero-dim", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1, 1), }",
        4);
    emit(k, "too-many-dims", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 47);
    emit(k, "data-short", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'extra': 1}", 48);
    emit(k, "unknown-key", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False}", 48);
    emit(k, "no-shape", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3, 4)}", 48);
    emit(k, "bad-order", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)", 48);
    emit(k, "unclosed", 0, &a, NULL);
    npy(&a, 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
    emit(k, "version-4", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
    a.p[9] = 0x7f; /* header length past the end */
    emit(k, "header-past-end", 0, &a, NULL);
    npy(&a, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
    a.p[11] = 0x01; /* a 16 MiB header */
    emit(k, "header-too-big", 0, &a, NULL);
    reset(&a);
    put(&a, "\x93NUMPZ\x01\x00", 8);
    emit(k, "bad-magic", 0, &a, NULL);
    reset(&a);
    emit(k, "empty", 0, &a, NULL);
    npy(&a, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 200), }", 3200);
    emit(k, "f8-rows-tight-refused", FIMP_TIGHT, &a, NULL);

    npy(&a, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", 32);
    npy(&b, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 4);
    emit(k, "split-two-fields", 0, &a, &b);
    emit(k, "split-same-name", NPY_SAME_NAME, &a, &b);
    emit(k, "split-empty-stems", NPY_STEM(3), &a, &b);
    emit(k, "split-long-stems", NPY_STEM(2) | FIMP_FROM, &a, &b);
    npy(&b, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 5);
    emit(k, "split-rows-differ", 0, &a, &b);
    free(a.p);
    free(b.p);
}

/* ---- tsv -------------------------------------------------------------------------------------- */

#define TSV_IN_SUBDIR (1u << 4)

static void text(buf *b, const char *s)
{
    reset(b);
    put(b, s, strlen(s));
}

static void gen_tsv(void)
{
    const char *k = "imp_tsv";
    buf a = {0}, b = {0};
    text(&a, "a.jpg\t0\nd/c.jpg\t1\nbig.jpg\t2\n");
    emit(k, "good", 0, &a, NULL);
    emit(k, "good-from", FIMP_FROM, &a, NULL);
    emit(k, "good-tight", FIMP_TIGHT, &a, NULL);
    emit(k, "good-tight-strict", FIMP_TIGHT | FIMP_STRICT, &a, NULL);
    text(&a, "# a comment\n"
             "\n"
             "   \t \n"
             "a.jpg\t 3 \r\n"
             "a.jpg\tx\n"
             "a.jpg 3\n"
             "\t4\n"
             "missing.jpg\t1\n"
             "empty.jpg\t2\n"
             "bad.jpg\t3\n"
             "cut.jpg\t1\n"
             "d\t5\n"
             "a.jpg\t-9223372036854775808\n"
             "a.jpg\t9223372036854775808\n"
             "a.jpg\t1\t2\n"
             "d/c.jpg\t7");
    emit(k, "mixed", 0, &a, NULL);
    emit(k, "mixed-strict", FIMP_STRICT, &a, NULL);
    text(&a, "c.jpg\t1\na.jpg\t2\n");
    emit(k, "subdir", TSV_IN_SUBDIR, &a, NULL);
    text(&b, "big.jpg\t9\nd/c.jpg\t-1\n");
    emit(k, "split", 0, &a, &b);
    emit(k, "split-subdir-from", TSV_IN_SUBDIR | FIMP_FROM, &a, &b);
    text(&a, "missing.jpg\t1\nbad.jpg\t2\n");
    emit(k, "all-bad", 0, &a, NULL);
    text(&a, "# nothing\n\n");
    emit(k, "comments-only", 0, &a, NULL);
    reset(&a);
    emit(k, "empty", 0, &a, NULL);
    reset(&a);
    put(&a, "a.jpg\t1\n\0\xff\xfe\t2\n", 14);
    emit(k, "binary", 0, &a, NULL);
    text(&a, "\xEF\xBB\xBF" "a.jpg\t0\nd/c.jpg\t1\n");
    emit(k, "bom", 0, &a, NULL);
    reset(&a);
    put(&a, "a.jpg\t1\0tail\n\0a.jpg\t2\na.jpg\t3\n", 30);
    emit(k, "nul", 0, &a, NULL);
    emit(k, "nul-strict", FIMP_STRICT, &a, NULL);
    free(a.p);
    free(b.p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    g_out = argv[1];
    make_jpeg(&g_jpeg_small, 16, 16, 0);
    make_jpeg(&g_jpeg_big, 48, 48, 1);
    if (g_jpeg_big.n <= 1024)
        abort(); /* the tight writer must refuse it */
    gen_llmc();
    gen_tar();
    gen_npy();
    gen_tsv();
    free(g_jpeg_small.p);
    free(g_jpeg_big.p);
    printf("wrote %d corpus files to %s\n", g_count, g_out);
    return 0;
}
