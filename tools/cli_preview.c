/* cli_preview.c - `shardpack preview`: a contact sheet of decoded, transformed samples with their
 * labels, written as one JPEG, so that augmentation and labels can be checked by eye.
 *
 * Samples: --count of them, one drawn from each of --count equal stretches of the dataset by a
 * generator seeded with --seed, shown in dataset order (all of them when the dataset is smaller).
 * Each tile is what sp_image_transform_apply gives for (epoch, sample) with the command's image
 * parameters, as uint8 NHWC: the crop and flip the loader delivers for that sample in that epoch.
 *
 * Layout (all in pixels; S = --image-size, k = the font scale, S/112 within 1..4):
 *   cell width   CW = max(S, 64 k), the tile centred in it
 *   caption      2k padding + one line of 9k per text line under the tile: the sample
 *                ("#12", or "bad: 12" for a tile that failed), then, when the dataset has a label
 *                field, "LABEL CLASS-NAME"
 *   grid         columns x rows cells with GAP pixels between and around them
 * A tile that cannot be read or decoded is drawn mid-grey; the command goes on and exits 1.
 * The JPEG is written to a temporary file beside the output, synced, then renamed over it; into
 * standard output for "-o -", and straight into a character device or FIFO (see plan_output).
 */
#include "cli.h"
#include "cli_font.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#define PREVIEW_DEFAULT_COUNT 16
#define PREVIEW_MAX_COUNT 1024
#define PREVIEW_MAX_COLUMNS 1024
#define PREVIEW_JPEG_QUALITY 90
#define PREVIEW_JPEG_MAX_SIDE 65535          /* JPEG's limit on either side */
#define PREVIEW_MAX_PIXELS (1ull << 28)      /* the grid is held in memory: 768 MiB of RGB */
#define PREVIEW_MAX_BAD_SHOWN 20             /* failed tiles whose reason is printed */
#define GAP 4                                /* pixels between and around cells */
#define CAPTION_MIN_GLYPHS 10                /* a cell is at least this many glyphs wide */

static const unsigned char background[3] = {24, 24, 24};
static const unsigned char strip_colour[3] = {0, 0, 0};
static const unsigned char text_colour[3] = {255, 255, 255};
static const unsigned char bad_text_colour[3] = {255, 112, 112};
#define BAD_TILE_GREY 128

typedef struct layout {
    int size;          /* S: side of a tile */
    int scale;         /* font scale k */
    int pad;           /* caption padding, 2k */
    int line_h;        /* 9k */
    int lines;         /* caption text lines: 1, or 2 with a label field */
    int cell_w;        /* CW */
    int caption_h;     /* 2k + lines * 9k */
    int cols, rows;
    uint64_t width, height;
    size_t glyphs;     /* glyphs one caption line holds */
} layout;

static void plan_layout(layout *L, int size, int lines, uint64_t n, uint64_t columns)
{
    L->size = size;
    L->scale = size / 112 < 1 ? 1 : size / 112 > 4 ? 4 : size / 112;
    L->pad = 2 * L->scale;
    L->line_h = (CLI_FONT_H + 2) * L->scale;
    L->lines = lines;
    int min_w = 2 * L->pad + CAPTION_MIN_GLYPHS * CLI_FONT_ADVANCE * L->scale;
    L->cell_w = size > min_w ? size : min_w;
    L->caption_h = L->pad + lines * L->line_h;
    /* The last glyph of a line needs no spacing column after it. */
    L->glyphs = (size_t)((L->cell_w - 2 * L->pad + L->scale) / (CLI_FONT_ADVANCE * L->scale));
    uint64_t cols = columns ? columns : 1;
    if (!columns)
        while (cols * cols < n)
            cols++;
    if (cols > n)
        cols = n;
    L->cols = (int)cols;
    L->rows = (int)((n + cols - 1) / cols);
    L->width = cols * (uint64_t)L->cell_w + (cols + 1) * GAP;
    L->height = (uint64_t)L->rows * (uint64_t)(size + L->caption_h) + ((uint64_t)L->rows + 1) * GAP;
}

/* ---- which samples ---------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* floor(total * i / n) without overflow, for n <= PREVIEW_MAX_COUNT. */
static uint64_t stretch_start(uint64_t total, uint64_t i, uint64_t n)
{
    return total / n * i + total % n * i / n;
}

/* n distinct samples of total (n <= total), ascending: one picked at random from each of n equal
 * stretches, so they spread over every part of the dataset. */
static void pick_samples(uint64_t total, uint64_t n, uint64_t seed, uint64_t *out)
{
    uint64_t state = seed ^ 0x70726576696577ull; /* "preview" */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t lo = stretch_start(total, i, n), hi = stretch_start(total, i + 1, n);
        out[i] = lo + splitmix64(&state) % (hi - lo);
    }
}

/* ---- captions ---------------------------------------------------------------------------------- */

typedef struct class_names {
    const char **name; /* into the dataset's metadata; not NUL-terminated */
    size_t *len;
    size_t count;
} class_names;

/* Splits the "class_names" metadata entry ('\n'-separated), if the dataset has one. */
static void load_class_names(const sp_dataset *d, class_names *cn)
{
    memset(cn, 0, sizeof *cn);
    const void *value;
    size_t len;
    if (sp_dataset_meta_get(d, "class_names", &value, &len) != 0 || len == 0)
        return;
    const char *s = value;
    size_t count = 1;
    for (size_t i = 0; i < len; i++)
        count += s[i] == '\n';
    cn->name = cli_xcalloc(count, sizeof *cn->name);
    cn->len = cli_xcalloc(count, sizeof *cn->len);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++)
        if (i == len || s[i] == '\n') {
            cn->name[cn->count] = s + start;
            cn->len[cn->count++] = i - start;
            start = i + 1;
        }
}

static void free_class_names(class_names *cn)
{
    free(cn->name);
    free(cn->len);
}

/* The caption's label line: "LABEL NAME", or "LABEL" when the label has no class name. */
static char *label_text(const class_names *cn, int64_t label)
{
    if (label >= 0 && (uint64_t)label < cn->count)
        return cli_xasprintf("%lld %.*s", (long long)label, (int)cn->len[label], cn->name[label]);
    return cli_xasprintf("%lld", (long long)label);
}

static void fill_rect(unsigned char *img, uint64_t width, int x, int y, int w, int h,
                      const unsigned char rgb[3])
{
    for (int r = 0; r < h; r++) {
        unsigned char *p = img + ((uint64_t)(y + r) * width + (uint64_t)x) * 3;
        for (int c = 0; c < w; c++, p += 3) {
            p[0] = rgb[0];
            p[1] = rgb[1];
            p[2] = rgb[2];
        }
    }
}

/* ---- writing the JPEG ------------------------------------------------------------------------- */

/* Where the JPEG goes, decided from what FILE is before any work is done:
 *   "-"                              standard output
 *   a character device or a FIFO     written straight into (/dev/null, a pipe), never replaced
 *   a regular file, or nothing yet   a temporary file beside it, renamed over it when complete
 * A symbolic link is refused (a rename would replace the link, not what it points to), and so is
 * anything else: a directory, a block device, a socket. */
enum { OUT_STDOUT, OUT_DIRECT, OUT_REPLACE };

typedef struct out_target {
    const char *path;
    int how;
    char *dir;        /* OUT_REPLACE: the directory holding the file ("." for a bare name) */
    const char *name; /* OUT_REPLACE: its last component, inside path */
} out_target;

static int refuse_output(const char *out, const struct stat *st)
{
    if (S_ISLNK(st->st_mode))
        cli_err("%s: is a symbolic link; name the real file (or -o - for standard output)", out);
    else if (S_ISDIR(st->st_mode))
        cli_err("%s: is a directory; -o names the JPEG file to write", out);
    else
        cli_err("%s: is not a regular file, a character device or a FIFO; preview does not write "
                "there",
                out);
    return CLI_EDATA;
}

/* Decides how to write out, refusing before any work an output that could never be written.
 * Fills *t on CLI_OK; release with out_target_free. */
static int plan_output(const char *out, out_target *t)
{
    memset(t, 0, sizeof *t);
    t->path = out;
    if (strcmp(out, "-") == 0) {
        if (isatty(STDOUT_FILENO)) {
            cli_err("standard output is a terminal; redirect it, or name a file with -o");
            return CLI_EDATA;
        }
        t->how = OUT_STDOUT;
        return CLI_OK;
    }
    struct stat st;
    if (lstat(out, &st) == 0) {
        if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
            t->how = OUT_DIRECT;
            return CLI_OK;
        }
        if (!S_ISREG(st.st_mode))
            return refuse_output(out, &st);
    } else if (errno != ENOENT) {
        cli_err("%s: cannot examine: %s", out, strerror(errno));
        return CLI_EDATA;
    }
    t->how = OUT_REPLACE;
    const char *slash = strrchr(out, '/');
    t->name = slash ? slash + 1 : out;
    if (!*t->name || !strcmp(t->name, ".") || !strcmp(t->name, "..")) {
        cli_err("%s: names a directory; -o names the JPEG file to write", out);
        return CLI_EDATA;
    }
    t->dir = !slash ? cli_xstrdup(".") : slash == out ? cli_xstrdup("/")
                                                      : cli_xasprintf("%.*s", (int)(slash - out), out);
    if (stat(t->dir, &st) != 0) {
        cli_err("%s: cannot write there: %s: %s", out, t->dir, strerror(errno));
        return CLI_EDATA;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_err("%s: cannot write there: %s is not a directory", out, t->dir);
        return CLI_EDATA;
    }
    if (access(t->dir, W_OK | X_OK) != 0) {
        cli_err("%s: cannot write there: %s: %s", out, t->dir, strerror(errno));
        return CLI_EDATA;
    }
    return CLI_OK;
}

static void out_target_free(out_target *t)
{
    free(t->dir);
    t->dir = NULL;
}

static int write_full(int fd, const unsigned char *data, size_t size)
{
    while (size) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Standard output, or a character device or FIFO written in place. The open does not block (a
 * FIFO with no reader fails with ENXIO instead of waiting for one, a device with no carrier does
 * not hang), nor follow a link planted since plan_output; the writes then block as usual. */
static int write_direct(const out_target *t, const unsigned char *data, size_t size)
{
    const char *name = t->how == OUT_STDOUT ? "standard output" : t->path;
    int fd = STDOUT_FILENO;
    if (t->how == OUT_DIRECT) {
        fd = open(t->path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENXIO)
                cli_err("%s: cannot write: no process is reading this FIFO", name);
            else
                cli_err("%s: cannot open: %s", name, strerror(errno));
            return CLI_EDATA;
        }
        struct stat st;
        int flags = fcntl(fd, F_GETFL);
        if (fstat(fd, &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
            cli_err("%s: was replaced by something else than a character device or a FIFO; "
                    "nothing written",
                    name);
            close(fd);
            return CLI_EDATA;
        }
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
            cli_err("%s: cannot write: %s", name, strerror(errno));
            close(fd);
            return CLI_EDATA;
        }
    }
    int rc = CLI_OK;
    if (write_full(fd, data, size) != 0) {
        cli_err("%s: cannot write: %s", name, strerror(errno));
        rc = CLI_EDATA;
    }
    if (t->how == OUT_DIRECT && close(fd) != 0 && rc == CLI_OK) {
        cli_err("%s: cannot write: %s", name, strerror(errno));
        rc = CLI_EDATA;
    }
    return rc;
}

/* A temporary file in the directory dfd: created there, never through a link, never over an
 * existing name; mode 0666 less the umask, as for any new file. Returns its descriptor or -1. */
static int create_temp(int dfd, char *name, size_t len)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char r[6];
        if (getentropy(r, sizeof r) != 0)
            return -1;
        static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        char suffix[7];
        for (size_t i = 0; i < sizeof r; i++)
            suffix[i] = chars[r[i] % (sizeof chars - 1)];
        suffix[6] = '\0';
        snprintf(name, len, ".shardpack-preview.%s", suffix);
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Writes data to a temporary file in the output's directory, syncs it and renames it over the
 * output, every name resolved relative to one descriptor of that directory. Signals that would
 * end the process are held meanwhile, so no temporary file is left behind. */
static int write_replace(const out_target *t, const unsigned char *data, size_t size)
{
    const char *out = t->path;
    sigset_t hold, old;
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGTERM);
    sigaddset(&hold, SIGHUP);
    sigaddset(&hold, SIGQUIT);
    sigprocmask(SIG_BLOCK, &hold, &old);

    int rc = CLI_EDATA;
    char tmp[64] = "";
    int fd = -1, dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        cli_err("%s: cannot open its directory %s: %s", out, t->dir, strerror(errno));
        goto done;
    }
    if ((fd = create_temp(dfd, tmp, sizeof tmp)) < 0) {
        cli_err("%s: cannot create a temporary file in %s: %s", out, t->dir, strerror(errno));
        goto done;
    }
    const char *step = NULL;
    if (write_full(fd, data, size) != 0)
        step = "cannot write";
    else if (fsync(fd) != 0)
        step = "cannot sync";
    int saved = errno;
    if (close(fd) != 0 && !step) {
        saved = errno;
        step = "cannot write";
    }
    fd = -1;
    /* Once more just before the rename: it must still replace a regular file or nothing. */
    struct stat st;
    if (!step && fstatat(dfd, t->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        unlinkat(dfd, tmp, 0);
        refuse_output(out, &st);
        goto done;
    }
    if (!step && renameat(dfd, tmp, dfd, t->name) != 0) {
        saved = errno;
        step = "cannot rename into place";
    }
    if (step) {
        unlinkat(dfd, tmp, 0);
        cli_err("%s: %s %s/%s: %s", out, step, t->dir, tmp, strerror(saved));
        goto done;
    }
    /* Make the rename durable; some file systems refuse fsync on a directory, which is harmless. */
    (void)fsync(dfd);
    rc = CLI_OK;
done:
    if (dfd >= 0)
        close(dfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int write_output(const out_target *t, const unsigned char *data, size_t size)
{
    return t->how == OUT_REPLACE ? write_replace(t, data, size) : write_direct(t, data, size);
}

static int encode_jpeg(const unsigned char *rgb, int width, int height, unsigned char **jpeg,
                       unsigned long *size)
{
    tjhandle tj = tjInitCompress();
    if (!tj) {
        cli_err("cannot start the JPEG encoder: %s", tjGetErrorStr2(NULL));
        return CLI_EDATA;
    }
    *jpeg = NULL;
    *size = 0;
    /* 4:4:4 keeps the one-pixel strokes of the captions sharp in colour. */
    if (tjCompress2(tj, rgb, width, 0, height, TJPF_RGB, jpeg, size, TJSAMP_444,
                    PREVIEW_JPEG_QUALITY, 0) != 0) {
        cli_err("encoding the %dx%d JPEG failed: %s", width, height, tjGetErrorStr2(tj));
        tjFree(*jpeg);
        *jpeg = NULL;
        tjDestroy(tj);
        return CLI_EDATA;
    }
    tjDestroy(tj);
    return CLI_OK;
}

/* ---- the command ---------------------------------------------------------------------------- */

enum { OPT_OUTPUT = 1, OPT_COUNT, OPT_EPOCH, OPT_COLUMNS, OPT_FIELD };

static const cli_opt preview_opts[] = {
    {"output", 'o', 1, OPT_OUTPUT, "FILE", "the JPEG file to write (not .png, .webp, ...), or - for stdout (required)"},
    {"count", 'n', 1, OPT_COUNT, "N", "samples to show, 1..1024 (default 16)"},
    {"epoch", 0, 1, OPT_EPOCH, "E", "epoch whose train crops are shown (default 0)"},
    {"columns", 0, 1, OPT_COLUMNS, "C",
     "tiles per row, 1..1024 (default: a square grid as near as possible)"},
    {"field", 0, 1, OPT_FIELD, "F", "the image field, by name or number (default: the first)"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_preview = {
    "preview",
    "preview PATH -o FILE [--transform train|eval] [--count N]\n"
    "                 [--seed S] [--epoch E] [--columns C] [--field F] [parameters]",
    "Draws a contact sheet of transformed samples with their labels, as one JPEG.",
    "Samples: --count of them spread over the dataset, one picked by --seed from each of --count\n"
    "equal stretches, in dataset order. Each tile is the image the loader would deliver for that\n"
    "sample in epoch --epoch with the same --transform, --image-size, --resize, --max-pixels and\n"
    "--seed, as uint8 pixels (--image-dtype, --image-layout, --mean and --std do not apply).\n"
    "Under each tile: the sample's index and, when the dataset has a label field, the label and\n"
    "its class name (from the \"class_names\" metadata). A tile that cannot be decoded is drawn\n"
    "grey with the caption \"bad: SAMPLE\"; the rest are still drawn. The file is written under a\n"
    "temporary name beside FILE and renamed over it when complete. -o - writes the JPEG to\n"
    "standard output; a character device or FIFO is written into, never replaced; a symbolic\n"
    "link is refused (name the real file).\n"
    "Exit status: 0 ok, 1 data error (any tile bad included), 2 usage.\n",
    preview_opts,
    SP_SCOPE_LOAD,
};

/* The extension of name when it names an image format other than JPEG (".png" for "sheet.PNG"),
 * else NULL: a viewer would be handed JPEG bytes under another format's name. */
static const char *other_image_ext(const char *name)
{
    static const char *const exts[] = { ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm",
                                        ".pnm", ".avif", ".heic", ".jxl", ".svg" };
    const char *dot = strrchr(name, '.');
    if (!dot || strchr(dot, '/'))
        return NULL;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return exts[i];
    return NULL;
}

/* The image field: field_arg by name or number, else the first image field. Returns an exit
 * status; *field is set on CLI_OK. */
static int pick_image_field(const char *path, const sp_schema *schema, const char *field_arg,
                            size_t *field)
{
    size_t nfields = sp_schema_num_fields(schema);
    sp_field_info fi = { .struct_size = sizeof fi };
    if (!field_arg) {
        for (size_t i = 0; i < nfields; i++)
            if (sp_schema_field(schema, i, &fi) == 0 && fi.kind == SP_FIELD_IMAGE) {
                *field = i;
                return CLI_OK;
            }
        cli_buf names = {0};
        for (size_t i = 0; i < nfields; i++)
            if (sp_schema_field(schema, i, &fi) == 0) {
                char *one = cli_xasprintf("%s%s (%s)", names.len ? ", " : "", fi.name,
                                          sp_field_kind_name(fi.kind));
                cli_buf_append(&names, one, strlen(one));
                free(one);
            }
        cli_buf_append(&names, "", 1);
        cli_err("%s: no image field to preview (fields: %s)", path, (char *)names.data);
        cli_buf_free(&names);
        return CLI_EDATA;
    }
    int k = sp_schema_find(schema, field_arg);
    uint64_t num;
    if (k >= 0)
        *field = (size_t)k;
    else if (cli_parse_u64(field_arg, &num) == 0 && num < nfields)
        *field = (size_t)num;
    else
        return cli_usage_err(&cli_cmd_preview, "%s: no field '%s'", path, field_arg);
    if (sp_schema_field(schema, *field, &fi) != 0 || fi.kind != SP_FIELD_IMAGE)
        return cli_usage_err(&cli_cmd_preview, "%s: field '%s' is %s, not image", path, field_arg,
                             sp_field_kind_name(fi.kind));
    return CLI_OK;
}

/* The first label field, or -1. */
static long first_label_field(const sp_schema *schema)
{
    size_t nfields = sp_schema_num_fields(schema);
    for (size_t i = 0; i < nfields; i++) {
        sp_field_info fi = { .struct_size = sizeof fi };
        if (sp_schema_field(schema, i, &fi) == 0 && fi.kind == SP_FIELD_LABEL)
            return (long)i;
    }
    return -1;
}

/* Blocks are read once each: samples come in ascending order. */
typedef struct block_cache {
    sp_dataset *d;
    uint64_t index;
    int have;    /* index is the block last asked for */
    sp_block *b; /* NULL when that block could not be read */
    int rc;
    char *msg;   /* why it could not be read */
} block_cache;

static const sp_block *cache_get(block_cache *c, uint64_t block)
{
    if (c->have && c->index == block)
        return c->b;
    sp_block_free(c->b);
    c->b = NULL;
    free(c->msg);
    c->msg = NULL;
    c->have = 1;
    c->index = block;
    c->rc = sp_dataset_read_block(c->d, block, &c->b);
    if (c->rc != 0) {
        c->b = NULL;
        const char *m = sp_dataset_errmsg(c->d);
        c->msg = cli_xstrdup(m && *m ? m : sp_strerror(c->rc));
    }
    return c->b;
}

/* Options of one run, once parsed. */
typedef struct preview_args {
    const char *path, *out, *field_arg;
    uint64_t count, epoch, columns; /* columns 0: automatic */
} preview_args;

static int parse_count(const char *opt, const char *value, uint64_t max, uint64_t *out)
{
    if (cli_parse_u64(value, out) != 0 || *out < 1 || *out > max)
        return cli_usage_err(&cli_cmd_preview, "%s '%s': expected a number from 1 to %llu", opt,
                             value, (unsigned long long)max);
    return CLI_OK;
}

static int parse_args(int argc, char **argv, sp_params *params, preview_args *a, int *help)
{
    memset(a, 0, sizeof *a);
    a->count = PREVIEW_DEFAULT_COUNT;
    *help = 0;
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_preview, argc, argv, params);
    for (int id; (id = cli_next(&g)) != CLI_ARG_END;) {
        int rc = CLI_OK;
        switch (id) {
        case CLI_ARG_ERR: return CLI_EUSAGE;
        case CLI_ARG_HELP: *help = 1; return CLI_OK;
        case CLI_ARG_POS:
            if (a->path)
                return cli_usage_err(&cli_cmd_preview, "one PATH only (got '%s' and '%s')",
                                     a->path, g.value);
            a->path = g.value;
            break;
        case OPT_OUTPUT:
            if (!*g.value)
                return cli_usage_err(&cli_cmd_preview, "-o: the output file name is empty");
            if (other_image_ext(g.value))
                return cli_usage_err(&cli_cmd_preview, "-o %s: preview writes a JPEG, and this name says %s; "
                                     "name it .jpg (any name without an image extension is written as a JPEG too)",
                                     g.value, other_image_ext(g.value));
            a->out = g.value;
            break;
        case OPT_COUNT: rc = parse_count("--count", g.value, PREVIEW_MAX_COUNT, &a->count); break;
        case OPT_COLUMNS:
            rc = parse_count("--columns", g.value, PREVIEW_MAX_COLUMNS, &a->columns);
            break;
        case OPT_EPOCH:
            if (cli_parse_u64(g.value, &a->epoch) != 0)
                rc = cli_usage_err(&cli_cmd_preview, "--epoch '%s': expected an epoch number "
                                                     "from 0",
                                   g.value);
            break;
        case OPT_FIELD: a->field_arg = g.value; break;
        default: break;
        }
        if (rc != CLI_OK)
            return rc;
    }
    if (!a->path)
        return cli_usage_err(&cli_cmd_preview, "no dataset PATH given");
    if (!a->out)
        return cli_usage_err(&cli_cmd_preview, "-o FILE is required");
    return CLI_OK;
}

/* Everything one run holds; released by preview_free. */
typedef struct preview {
    const char *path;
    uint64_t epoch;
    size_t image_field;
    long label_field; /* -1: none */
    layout L;
    uint64_t bad;     /* tiles that failed */
    sp_dataset *d;
    sp_image_transform *xf;
    block_cache cache;
    class_names names;
    uint64_t *samples;
    unsigned char *grid, *tile;
    unsigned char *jpeg;
} preview;

static void preview_free(preview *p)
{
    tjFree(p->jpeg);
    free(p->grid);
    free(p->tile);
    free(p->samples);
    free_class_names(&p->names);
    sp_block_free(p->cache.b);
    free(p->cache.msg);
    sp_image_transform_destroy(p->xf);
    sp_dataset_close(p->d);
}


/* Reads and transforms sample s into p->tile. Returns 0, or -1 with *why set (valid until the
 * next library call or cache_get). */
static int load_tile(preview *p, uint64_t s, const char **why)
{
    uint64_t block;
    uint32_t row;
    int rc = sp_dataset_locate(p->d, s, &block, &row);
    if (rc != 0) {
        *why = sp_last_error();
        return -1;
    }
    const sp_block *b = cache_get(&p->cache, block);
    if (!b) {
        *why = p->cache.msg;
        return -1;
    }
    const void *data;
    size_t size;
    if ((rc = sp_block_get(b, row, p->image_field, &data, &size)) != 0) {
        *why = sp_last_error();
        return -1;
    }
    if ((rc = sp_image_transform_apply(p->xf, data, size, p->epoch, s, p->tile, NULL)) != 0) {
        *why = sp_image_transform_errmsg(p->xf);
        if (!*why || !**why)
            *why = sp_strerror(rc);
        return -1;
    }
    return 0;
}

/* The label of sample s, or 0 when it cannot be read (its block already failed the tile). */
static int read_label(preview *p, uint64_t s, int64_t *label)
{
    uint64_t block;
    uint32_t row;
    const void *data;
    size_t size;
    const sp_block *b;
    if (sp_dataset_locate(p->d, s, &block, &row) != 0 || !(b = cache_get(&p->cache, block)) ||
        sp_block_get(b, row, (size_t)p->label_field, &data, &size) != 0 || size != 8)
        return 0;
    const unsigned char *q = data;
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | q[k];
    *label = (int64_t)v;
    return 1;
}

/* Draws cell i, showing sample s: its tile, or a grey one when it fails, and its caption. */
static void draw_cell(preview *p, uint64_t i, uint64_t s)
{
    const layout *L = &p->L;
    int col = (int)(i % (uint64_t)L->cols), row = (int)(i / (uint64_t)L->cols);
    int cx = GAP + col * (L->cell_w + GAP);
    int cy = GAP + row * (L->size + L->caption_h + GAP);
    int tx = cx + (L->cell_w - L->size) / 2;

    const char *why = NULL;
    int ok = load_tile(p, s, &why) == 0;
    if (ok) {
        size_t line = (size_t)L->size * 3;
        for (int y = 0; y < L->size; y++)
            memcpy(p->grid + ((uint64_t)(cy + y) * L->width + (uint64_t)tx) * 3,
                   p->tile + (size_t)y * line, line);
    } else {
        static const unsigned char grey[3] = {BAD_TILE_GREY, BAD_TILE_GREY, BAD_TILE_GREY};
        fill_rect(p->grid, L->width, tx, cy, L->size, L->size, grey);
        if (p->bad < PREVIEW_MAX_BAD_SHOWN) {
            /* Library messages usually name the file already. */
            if (strncmp(why, p->path, strlen(p->path)) == 0)
                cli_err("%s (drawn grey)", why);
            else if (strstr(why, "sample"))
                cli_err("%s: %s (drawn grey)", p->path, why);
            else
                cli_err("%s: sample %llu: %s (drawn grey)", p->path, (unsigned long long)s, why);
        }
        p->bad++;
    }

    int ty = cy + L->size;
    fill_rect(p->grid, L->width, cx, ty, L->cell_w, L->caption_h, strip_colour);
    char *first = ok ? cli_xasprintf("#%llu", (unsigned long long)s)
                     : cli_xasprintf("bad: %llu", (unsigned long long)s);
    cli_font_draw(p->grid, (int)L->width, (int)L->height, cx + L->pad, ty + L->pad, L->scale,
                  ok ? text_colour : bad_text_colour, first, L->glyphs);
    free(first);
    if (p->label_field >= 0) {
        int64_t label;
        char *second = read_label(p, s, &label) ? label_text(&p->names, label) : cli_xstrdup("?");
        cli_font_draw(p->grid, (int)L->width, (int)L->height, cx + L->pad,
                      ty + L->pad + L->line_h, L->scale, text_colour, second, L->glyphs);
        free(second);
    }
}

int cli_preview_main(int argc, char **argv)
{
    preview p;
    memset(&p, 0, sizeof p);
    preview_args a;
    out_target target = {0};
    int help, rc;
    sp_params *params = sp_params_create();
    if (!params) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    if ((rc = parse_args(argc, argv, params, &a, &help)) != CLI_OK || help) {
        if (help)
            cli_print_help(stdout, &cli_cmd_preview);
        goto out;
    }
    const char *arg = a.path; /* as typed, opened; a.path is what is printed */
    char shown[4096];
    a.path = cli_shown(arg, shown, sizeof shown);
    p.path = a.path;
    p.epoch = a.epoch;
    /* Tiles are pixels to look at, whatever dtype and layout a trainer asks the loader for. */
    sp_params_set(params, SP_PARAM_IMAGE_DTYPE, SP_IMAGE_UINT8);
    sp_params_set(params, SP_PARAM_IMAGE_LAYOUT, SP_LAYOUT_NHWC);
    if ((rc = plan_output(a.out, &target)) != CLI_OK)
        goto out;

    cli_oom_context("previewing %s", a.path);
    int r = sp_dataset_open(arg, params, &p.d);
    if (r != 0) {
        p.d = NULL;
        rc = cli_lib_err(a.path, r, sp_last_error());
        goto out;
    }
    const sp_schema *schema = sp_dataset_schema(p.d);
    if ((rc = pick_image_field(a.path, schema, a.field_arg, &p.image_field)) != CLI_OK)
        goto out;
    p.label_field = first_label_field(schema);
    uint64_t total = sp_dataset_num_samples(p.d);
    if (total == 0) {
        cli_err("%s: the dataset holds no samples", a.path);
        rc = CLI_EDATA;
        goto out;
    }
    uint64_t n = a.count < total ? a.count : total;
    int size = (int)sp_params_get(params, SP_PARAM_IMAGE_SIZE);
    plan_layout(&p.L, size, p.label_field >= 0 ? 2 : 1, n, a.columns);
    if (p.L.width > PREVIEW_JPEG_MAX_SIDE || p.L.height > PREVIEW_JPEG_MAX_SIDE ||
        p.L.width * p.L.height > PREVIEW_MAX_PIXELS) {
        rc = cli_usage_err(&cli_cmd_preview,
                           "a grid of %llux%llu pixels is too large (at most %d on a side and "
                           "%llu pixels); lower --count, --columns or --image-size",
                           (unsigned long long)p.L.width, (unsigned long long)p.L.height,
                           PREVIEW_JPEG_MAX_SIDE, (unsigned long long)PREVIEW_MAX_PIXELS);
        goto out;
    }
    if ((r = sp_image_transform_create(params, &p.xf)) != 0) {
        p.xf = NULL;
        const char *msg = sp_last_error();
        if (r == SP_EINVAL)
            rc = cli_usage_err(&cli_cmd_preview, "%s", msg && *msg ? msg : sp_strerror(r));
        else
            rc = cli_lib_err(a.path, r, msg);
        goto out;
    }
    load_class_names(p.d, &p.names);
    p.cache.d = p.d;
    p.samples = cli_xcalloc(n, sizeof *p.samples);
    pick_samples(total, n, (uint64_t)sp_params_get(params, SP_PARAM_SEED), p.samples);
    p.tile = cli_xmalloc(sp_image_transform_bytes(p.xf));
    size_t grid_bytes = (size_t)(p.L.width * p.L.height * 3);
    p.grid = cli_xmalloc(grid_bytes);
    for (size_t k = 0; k < grid_bytes; k += 3)
        memcpy(p.grid + k, background, 3);
    for (uint64_t i = 0; i < n; i++)
        draw_cell(&p, i, p.samples[i]);
    /* Blocks are no longer needed; the encoder may want the memory. */
    sp_block_free(p.cache.b);
    p.cache.b = NULL;

    unsigned long jpeg_size;
    if ((rc = encode_jpeg(p.grid, (int)p.L.width, (int)p.L.height, &p.jpeg, &jpeg_size)) !=
        CLI_OK)
        goto out;
    if ((rc = write_output(&target, p.jpeg, jpeg_size)) != CLI_OK)
        goto out;
    /* With -o - the JPEG has standard output to itself. */
    cli_line(target.how == OUT_STDOUT ? stderr : stdout, "%s: %llu samples, %llux%llu pixels",
             target.how == OUT_STDOUT ? "standard output" : a.out, (unsigned long long)n,
             (unsigned long long)p.L.width, (unsigned long long)p.L.height);
    if (p.bad) {
        if (p.bad > PREVIEW_MAX_BAD_SHOWN)
            cli_err("%s: ... and %llu more", a.path,
                    (unsigned long long)(p.bad - PREVIEW_MAX_BAD_SHOWN));
        cli_err("%s: %llu of %llu samples could not be decoded (grey tiles)", a.path,
                (unsigned long long)p.bad, (unsigned long long)n);
        rc = CLI_EDATA;
    }
out:
    out_target_free(&target);
    preview_free(&p);
    sp_params_destroy(params);
    return rc;
}
