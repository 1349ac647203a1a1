/* gen_corpus_img.c - writes the seed corpora of the PNG and WebP fuzz targets: small images of
 * every PNG colour type, bit depth and interlace (libpng) and every WebP kind (libwebp's encoder:
 * lossy, lossless, with alpha), each under a few mode bytes, plus a bomb header and a cut copy.
 * Run once by hand (tests/README.md); its output is checked in under tests/fuzz/corpus/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jpeg_gen.h"
#include "pw_gen.h"

static const char *g_out;
static int g_count;

/* Writes mode byte, pick byte and the first n bytes of p as corpus/<kind>/<name>. */
static void emit(const char *kind, const char *name, unsigned mode, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", g_out, kind, name);
    FILE *f = fopen(path, "wb");
    uint8_t head[2] = { (uint8_t)mode, (uint8_t)(g_count * 37) };
    if (!f || fwrite(head, 1, 2, f) != 2 || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
        fprintf(stderr, "gen_corpus_img: cannot write %s\n", path);
        exit(1);
    }
    g_count++;
}

/* The image under two modes (eval, 64 pixels, float32 / train, 24 pixels, uint8, shrink to 16 and
 * transcode), and cut in half. */
static void seeds(const char *kind, const char *tag, uint8_t *p, size_t n)
{
    char name[128];
    snprintf(name, sizeof name, "%s", tag);
    emit(kind, name, 0x0F, p, n);
    snprintf(name, sizeof name, "%s-train", tag);
    emit(kind, name, 0x60, p, n);
    snprintf(name, sizeof name, "%s-cut", tag);
    emit(kind, name, 0x02, p, n / 2);
    free(p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    g_out = argv[1];
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/png", g_out);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/webp", g_out);
    mkdir(sub, 0755);
    const int w = 40, h = 29;
    uint8_t *pic = jg_picture(w, h, 7);
    char err[256], tag[64];
    static const struct {
        const char *name;
        int color, depth, interlace;
    } pngs[] = {
        { "rgb8", PW_RGB, 8, 0 },       { "rgba8", PW_RGBA, 8, 0 },      { "gray8", PW_GRAY, 8, 0 },
        { "ga8", PW_GA, 8, 0 },         { "palette8", PW_PALETTE, 8, 0 }, { "palette2", PW_PALETTE, 2, 0 },
        { "gray1", PW_GRAY, 1, 0 },     { "gray4", PW_GRAY, 4, 0 },       { "rgb16", PW_RGB, 16, 0 },
        { "rgba16-adam7", PW_RGBA, 16, 1 }, { "rgb8-adam7", PW_RGB, 8, 1 }, { "palette4-adam7", PW_PALETTE, 4, 1 },
    };
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        uint8_t *p;
        size_t n;
        pw_png_opts o = { pngs[i].color, pngs[i].depth, pngs[i].interlace };
        if (pw_png(pic, w, h, &o, &p, &n, err, sizeof err)) {
            fprintf(stderr, "gen_corpus_img: %s\n", err);
            return 1;
        }
        seeds("png", pngs[i].name, p, n);
    }
    size_t n;
    uint8_t *bomb = pw_png_bomb(65535, 65535, &n);
    emit("png", "bomb-65535", 0x0F, bomb, n);
    free(bomb);
    bomb = pw_png_bomb(3000, 1000, &n);
    emit("png", "bomb-empty-idat", 0x0F, bomb, n);
    free(bomb);
    for (int kind = 0; kind < 4; kind++) {
        int lossless = kind & 1, alpha = kind >> 1;
        uint8_t *p;
        if (pw_webp(pic, w, h, 60, lossless, alpha, &p, &n, err, sizeof err)) {
            fprintf(stderr, "gen_corpus_img: %s\n", err);
            return 1;
        }
        snprintf(tag, sizeof tag, "%s%s", lossless ? "lossless" : "lossy", alpha ? "-alpha" : "");
        seeds("webp", tag, p, n);
    }
    free(pic);
    printf("wrote %d corpus files to %s\n", g_count, g_out);
    return 0;
}
