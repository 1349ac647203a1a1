/*
 * sp-gen-tokens: writes an llm.c-format token file with text-like statistics.
 *
 * Format: a 1024-byte header of 256 little-endian int32 (magic, version, token count, then zeros),
 * followed by the tokens, little-endian: magic 20240520 / version 1 for uint16 tokens, magic 20240801 /
 * version 7 for uint32 tokens. Tokens are drawn from a Zipf law over the vocabulary, with documents
 * separated by an end-of-text token and frequent repeated phrases, so that compressors see the kind of
 * redundancy real tokenized text has: neither uniform noise nor a constant.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_args.h"
#include "gen_rng.h"

#define PROG "sp-gen-tokens"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

#define HEADER_INTS 256
#define MAGIC_U16 20240520
#define VERSION_U16 1
#define MAGIC_U32 20240801
#define VERSION_U32 7
#define CHUNK_TOKENS 65536u
#define ZIPF_S 1.07         /* exponent close to what word and BPE-token frequencies show */
#define ZIPF_Q 3u           /* Mandelbrot's offset, P(k) ~ (k + q)^-s: the head is flatter than pure Zipf */
#define NPHRASES 65536u     /* repeated n-grams: boilerplate, names, common multi-token words */
#define PHRASE_MAX 12
#define PHRASE_PROB 0.1     /* chance that the next item is a whole phrase rather than a token */
#define DOC_MEAN 600.0      /* mean document length in tokens */

typedef struct {
    const char *out;
    uint64_t seed;
    uint32_t tokens;
    uint32_t vocab;
    int width; /* 16 or 32 bits per token */
} tok_opts;

/*
 * Zipf sampler by rejection-inversion (Hormann and Derflinger): O(1) time and memory for any vocabulary,
 * so a 32-bit vocabulary needs no table. Ranks are 1..n with P(k) proportional to k^-s.
 */
typedef struct {
    double s, n;
    double h_x1, h_n; /* H(1.5) - 1 and H(n + 0.5) */
    double corr;      /* accept-without-test threshold */
} zipf;

/* H: integral of x^-s, written so that it stays accurate as s approaches 1. */
static double zipf_h(const zipf *z, double x)
{
    const double lx = log(x), t = (1.0 - z->s) * lx;
    return fabs(t) > 1e-8 ? expm1(t) / (1.0 - z->s) : lx * (1.0 + 0.5 * t);
}

static double zipf_h_inv(const zipf *z, double y)
{
    const double t = y * (1.0 - z->s);
    return exp(fabs(t) > 1e-8 ? log1p(t) / (1.0 - z->s) : y * (1.0 - 0.5 * t));
}

static void zipf_init(zipf *z, double s, uint32_t n)
{
    z->s = s;
    z->n = (double)n;
    z->h_x1 = zipf_h(z, 1.5) - 1.0;
    z->h_n = zipf_h(z, z->n + 0.5);
    z->corr = 2.0 - zipf_h_inv(z, zipf_h(z, 2.5) - exp(-s * log(2.0)));
}

/* Returns a rank in [1, n]. */
static uint32_t zipf_draw(const zipf *z, gen_rng *r)
{
    for (;;) {
        const double u = z->h_n + gen_uniform(r) * (z->h_x1 - z->h_n);
        const double x = zipf_h_inv(z, u);
        double k = floor(x + 0.5);
        if (k < 1.0)
            k = 1.0;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->corr || u >= zipf_h(z, k + 0.5) - exp(-z->s * log(k)))
            return (uint32_t)k;
    }
}

/* The generator's state between chunks: the phrase being copied out, and the document length left. */
typedef struct {
    gen_rng rng;
    zipf tok_z, phrase_z;
    uint32_t eot;          /* end-of-text token, last id of the vocabulary as in GPT-2 (50256) */
    uint32_t perm_mul;     /* rank -> id is (rank * perm_mul) mod eot, a bijection as gcd(perm_mul, eot) = 1 */
    uint32_t *phrases;     /* NPHRASES * PHRASE_MAX tokens */
    uint8_t *phrase_len;
    const uint32_t *cur;   /* rest of the phrase being emitted */
    uint32_t cur_left;
    uint64_t doc_left;
} tok_stream;

/*
 * A token from the Zipf-Mandelbrot law, never the end-of-text id, which only marks document starts.
 * Ranks are scattered over the ids, as a BPE vocabulary scatters its frequent tokens: ids sorted by
 * frequency would make the high bytes nearly constant and the file far too easy to compress.
 */
static uint32_t draw_token(tok_stream *ts)
{
    uint32_t rank;
    do
        rank = zipf_draw(&ts->tok_z, &ts->rng);
    while (rank <= ZIPF_Q);
    return (uint32_t)(((uint64_t)(rank - ZIPF_Q - 1) * ts->perm_mul) % ts->eot);
}

static uint32_t gcd_u32(uint32_t a, uint32_t b)
{
    while (b != 0) {
        const uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A multiplier near eot / golden ratio that is coprime with eot, so the rank -> id map is a bijection. */
static uint32_t pick_perm_mul(uint32_t m)
{
    uint32_t a = (uint32_t)((double)m * 0.6180339887) | 1u;
    while (m > 1 && gcd_u32(a, m) != 1)
        a += 2;
    return m > 1 ? a : 1;
}

static uint64_t draw_doc_len(gen_rng *r)
{
    /* Exponential lengths: many short documents, a long tail, as in web text. */
    return 1 + (uint64_t)(-DOC_MEAN * log(1.0 - gen_uniform(r)));
}

static int stream_init(tok_stream *ts, const tok_opts *o)
{
    memset(ts, 0, sizeof *ts);
    gen_rng_seed(&ts->rng, o->seed, 0);
    ts->eot = o->vocab - 1;
    /* One id is reserved for end-of-text, so ranks cover the other vocab - 1 ids. */
    zipf_init(&ts->tok_z, ZIPF_S, o->vocab - 1 + ZIPF_Q);
    ts->perm_mul = pick_perm_mul(ts->eot);
    zipf_init(&ts->phrase_z, 1.0, NPHRASES);
    ts->phrases = malloc(sizeof(uint32_t) * NPHRASES * PHRASE_MAX);
    ts->phrase_len = malloc(NPHRASES);
    if (!ts->phrases || !ts->phrase_len)
        return -1;
    for (uint32_t p = 0; p < NPHRASES; p++) {
        ts->phrase_len[p] = (uint8_t)(2 + gen_below(&ts->rng, PHRASE_MAX - 1));
        for (uint32_t i = 0; i < ts->phrase_len[p]; i++)
            ts->phrases[p * PHRASE_MAX + i] = draw_token(ts);
    }
    ts->doc_left = 0;
    return 0;
}

static void stream_free(tok_stream *ts)
{
    free(ts->phrases);
    free(ts->phrase_len);
}

static uint32_t next_token(tok_stream *ts)
{
    if (ts->doc_left == 0) {
        ts->doc_left = draw_doc_len(&ts->rng);
        ts->cur_left = 0;
        return ts->eot;
    }
    ts->doc_left--;
    if (ts->cur_left == 0 && gen_uniform(&ts->rng) < PHRASE_PROB) {
        const uint32_t p = zipf_draw(&ts->phrase_z, &ts->rng) - 1;
        ts->cur = ts->phrases + (size_t)p * PHRASE_MAX;
        ts->cur_left = ts->phrase_len[p];
    }
    if (ts->cur_left > 0) {
        ts->cur_left--;
        return *ts->cur++;
    }
    return draw_token(ts);
}

/* ---------------------------------------------------------------- output */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        const ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_header(int fd, const tok_opts *o)
{
    uint8_t hdr[HEADER_INTS * 4] = { 0 };
    put_le32(hdr + 0, o->width == 16 ? MAGIC_U16 : MAGIC_U32);
    put_le32(hdr + 4, o->width == 16 ? VERSION_U16 : VERSION_U32);
    put_le32(hdr + 8, o->tokens);
    return write_all(fd, hdr, sizeof hdr);
}

/* Tokens go out in fixed chunks, so memory does not grow with --tokens. */
static int write_tokens(int fd, const tok_opts *o, tok_stream *ts, uint8_t *buf)
{
    const size_t bytes_per = (size_t)o->width / 8;
    for (uint32_t done = 0; done < o->tokens;) {
        const uint32_t n = o->tokens - done < CHUNK_TOKENS ? o->tokens - done : CHUNK_TOKENS;
        for (uint32_t i = 0; i < n; i++) {
            const uint32_t t = next_token(ts);
            uint8_t *p = buf + (size_t)i * bytes_per;
            p[0] = (uint8_t)t;
            p[1] = (uint8_t)(t >> 8);
            if (bytes_per == 4) {
                p[2] = (uint8_t)(t >> 16);
                p[3] = (uint8_t)(t >> 24);
            }
        }
        if (write_all(fd, buf, (size_t)n * bytes_per) != 0)
            return -1;
        done += n;
    }
    return 0;
}

/* Writes to FILE.PID.tmp next to FILE, then renames, so readers never see a partial file. */
static int generate(const tok_opts *o)
{
    char tmp[PATH_MAX];
    tok_stream ts;
    uint8_t *buf = NULL;
    int fd = -1, rc = EXIT_ERR;

    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", o->out, (long)getpid()) >= (int)sizeof tmp) {
        fprintf(stderr, PROG ": output path too long: %s\n", o->out);
        return EXIT_ERR;
    }
    if (stream_init(&ts, o) != 0 || !(buf = malloc((size_t)CHUNK_TOKENS * 4))) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, PROG ": cannot create %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (write_header(fd, o) != 0 || write_tokens(fd, o, &ts, buf) != 0) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    const int cerr = close(fd);
    fd = -1;
    if (cerr != 0) {
        fprintf(stderr, PROG ": cannot close %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, o->out) != 0) {
        fprintf(stderr, PROG ": cannot rename %s to %s: %s\n", tmp, o->out, strerror(errno));
        goto out;
    }
    rc = EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    if (rc != EXIT_OK)
        unlink(tmp);
    free(buf);
    stream_free(&ts);
    return rc;
}

/* ---------------------------------------------------------------- command line */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --out FILE --tokens N [--width 16|32] [--vocab V] [--seed S]\n"
            "\n"
            "Writes an llm.c token file: 1024-byte header (256 little-endian int32: magic, version, count),\n"
            "then the tokens little-endian. --width 16: magic 20240520, version 1, uint16 tokens;\n"
            "--width 32: magic 20240801, version 7, uint32 tokens. Same seed, same bytes.\n"
            "\n"
            "  --out FILE      output file (written to FILE.PID.tmp, then renamed)\n"
            "  --tokens N      number of tokens, 1..%d\n"
            "  --width W       16 or 32 bits per token (default 16)\n"
            "  --vocab V       vocabulary size, 2..65536 for width 16, 2..2^31 for width 32\n"
            "                  (default 50257); id V-1 is the end-of-text token between documents\n"
            "  --seed S        64-bit seed, decimal or 0x-hex (default 0)\n"
            "  -h, --help      show this help\n"
            "\n"
            "Exit status: 0 ok, 1 error, 2 usage error.\n",
            INT32_MAX);
}

static int check_opts(const tok_opts *o, int have_tokens)
{
    if (!o->out || !*o->out || !have_tokens) {
        fprintf(stderr, PROG ": --out and --tokens are required (see --help)\n");
        return -1;
    }
    if (o->width == 16 && o->vocab > 65536) {
        fprintf(stderr, PROG ": --vocab %" PRIu32 " does not fit 16-bit tokens; use --width 32\n", o->vocab);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, tok_opts *o)
{
    static const struct option longopts[] = {
        { "out", required_argument, NULL, 'o' },  { "tokens", required_argument, NULL, 'n' },
        { "width", required_argument, NULL, 'w' }, { "vocab", required_argument, NULL, 'v' },
        { "seed", required_argument, NULL, 's' },  { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int have_tokens = 0, ch, li = 0;
    *o = (tok_opts){ .vocab = 50257, .width = 16 };

    while ((ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        switch (ch) {
        case 'o': o->out = optarg; break;
        case 'n':
            if (gen_parse_u64(optarg, 1, INT32_MAX, &v) != 0) /* the header's count is an int32 */
                goto bad_value;
            o->tokens = (uint32_t)v;
            have_tokens = 1;
            break;
        case 'w':
            if (gen_parse_u64(optarg, 16, 32, &v) != 0 || (v != 16 && v != 32))
                goto bad_value;
            o->width = (int)v;
            break;
        case 'v':
            if (gen_parse_u64(optarg, 2, UINT64_C(1) << 31, &v) != 0)
                goto bad_value;
            o->vocab = (uint32_t)v;
            break;
        case 's':
            if (gen_parse_u64(optarg, 0, UINT64_MAX, &o->seed) != 0)
                goto bad_value;
            break;
        case 'h': usage(stdout); exit(EXIT_OK);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return check_opts(o, have_tokens);
bad_value:
    fprintf(stderr, PROG ": invalid value '%s' for --%s (see --help)\n", optarg, longopts[li].name);
    return -1;
}

int main(int argc, char **argv)
{
    tok_opts o;
    if (parse_args(argc, argv, &o) != 0)
        return EXIT_USAGE;
    const int rc = generate(&o);
    if (rc == EXIT_OK)
        printf(PROG ": wrote %" PRIu32 " %d-bit tokens (vocab %" PRIu32 ") to %s\n", o.tokens, o.width, o.vocab,
               o.out);
    return rc;
}
