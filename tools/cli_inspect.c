/* cli_inspect.c - `shardpack inspect`: schema, sizes, per-field compression, metadata, labels,
 * image formats. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define SAMPLE_BLOCKS 64 /* blocks read for the per-field figures unless --full */
#define LIST_LABELS 64   /* label counts listed in full up to this many distinct labels */
#define TOP_LABELS 20

/* ---- label counts: an open-addressing hash map int64 -> count ----------------------------- */

typedef struct label_slot {
    int64_t label;
    uint64_t count; /* 0: empty */
} label_slot;

typedef struct label_map {
    label_slot *slots;
    size_t cap, used;
} label_map;

static size_t hash64(int64_t v)
{
    uint64_t x = (uint64_t)v * 0x9E3779B97F4A7C15ull;
    return (size_t)(x ^ (x >> 29));
}

static void label_grow(label_map *m)
{
    label_map old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->slots = cli_xcalloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i].count)
            continue;
        size_t j = hash64(old.slots[i].label) & (m->cap - 1);
        while (m->slots[j].count)
            j = (j + 1) & (m->cap - 1);
        m->slots[j] = old.slots[i];
    }
    free(old.slots);
}

static void label_add(label_map *m, int64_t label)
{
    if ((m->used + 1) * 2 > m->cap)
        label_grow(m);
    size_t j = hash64(label) & (m->cap - 1);
    while (m->slots[j].count && m->slots[j].label != label)
        j = (j + 1) & (m->cap - 1);
    if (!m->slots[j].count) {
        m->slots[j].label = label;
        m->used++;
    }
    m->slots[j].count++;
}

static int cmp_by_label(const void *a, const void *b)
{
    const label_slot *x = a, *y = b;
    return (x->label > y->label) - (x->label < y->label);
}

static int cmp_by_count(const void *a, const void *b)
{
    const label_slot *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return cmp_by_label(a, b);
}

/* The map's entries, compacted and sorted for display. */
static label_slot *label_sorted(const label_map *m)
{
    label_slot *v = cli_xcalloc(m->used ? m->used : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].count)
            v[k++] = m->slots[i];
    qsort(v, k, sizeof *v, m->used > LIST_LABELS ? cmp_by_count : cmp_by_label);
    return v;
}

/* ---- the figures ------------------------------------------------------------------------------- */

typedef struct field_stats {
    sp_field_info info;
    uint64_t seen_raw;  /* bytes of this field in the examined blocks */
    uint64_t seen_zstd; /* the same, zstd level 3, column by column */
    uint64_t raw;       /* whole dataset: exact or estimated */
    label_map labels;
    uint64_t formats[4]; /* image fields: [0] not decodable, else by SP_IMAGE_FORMAT_* (from the bytes) */
} field_stats;

static const char *const format_names[4] = { "undecodable", "JPEG", "PNG", "WebP" };

/* The format slot of an image value: what sp_image_probe finds (its headers, no pixels). */
static int image_format_of(const void *data, size_t size)
{
    sp_image_info info = { .struct_size = sizeof info };
    if (!size || sp_image_probe(data, size, 0, &info) != 0 || info.format < 1 || info.format > 3)
        return 0;
    return info.format;
}

typedef struct inspect {
    const char *path;
    sp_dataset *d;
    size_t nfields;
    field_stats *fields;
    uint64_t samples, shards, blocks, file_bytes, raw_bytes, stored_bytes, blocks_raw;
    uint64_t examined_blocks, examined_samples;
    char **class_names;
    size_t nclasses;
    char *class_text;
    /* --order-check: how epoch 0 of the loader's order mixes (ord), and the stored order (stored) */
    int order_check;
    int64_t batch, seed, window;
    int64_t rank, world, partitions; /* whose share (--rank, --world-size, --partitions; 0 of 1) */
    const char *label_name; /* the label field measured, or NULL */
    uint64_t order_samples;
    cli_mix_result ord, stored;
} inspect;

static int read_sizes(inspect *in)
{
    for (uint64_t s = 0; s < in->shards; s++) {
        sp_shard_info si = { .struct_size = sizeof si };
        int rc = sp_dataset_shard_info(in->d, s, &si);
        if (rc != 0)
            return cli_lib_err(in->path, rc, sp_dataset_errmsg(in->d));
        in->file_bytes += si.file_bytes;
    }
    for (uint64_t b = 0; b < in->blocks; b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        int rc = sp_dataset_block_info(in->d, b, &bi);
        if (rc != 0)
            return cli_lib_err(in->path, rc, sp_dataset_errmsg(in->d));
        in->raw_bytes += bi.raw_bytes;
        in->stored_bytes += bi.stored_bytes;
        in->blocks_raw += bi.codec == SP_CODEC_STORED;
    }
    return CLI_OK;
}

static int64_t le_i64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* Reads one block and adds its columns to the per-field figures. */
static int examine_block(inspect *in, uint64_t block, ZSTD_CCtx *cctx, cli_buf *col, cli_buf *dst)
{
    sp_block *b = NULL;
    int rc = sp_dataset_read_block(in->d, block, &b);
    if (rc != 0)
        return cli_lib_err(in->path, rc, sp_dataset_errmsg(in->d));
    uint32_t rows = sp_block_num_samples(b);
    for (size_t f = 0; f < in->nfields; f++) {
        field_stats *fs = &in->fields[f];
        col->len = 0;
        for (uint32_t r = 0; r < rows; r++) {
            const void *data;
            size_t size;
            rc = sp_block_get(b, r, f, &data, &size);
            if (rc != 0) {
                cli_lib_err(in->path, rc, sp_last_error());
                sp_block_free(b);
                return CLI_EDATA;
            }
            cli_buf_append(col, data, size);
            if (fs->info.kind == SP_FIELD_LABEL && size == 8)
                label_add(&fs->labels, le_i64(data));
            if (fs->info.kind == SP_FIELD_IMAGE)
                fs->formats[image_format_of(data, size)]++;
        }
        fs->seen_raw += col->len;
        if (col->len) {
            size_t bound = ZSTD_compressBound(col->len);
            cli_buf_reserve(dst, bound);
            size_t z = ZSTD_compressCCtx(cctx, dst->data, bound, col->data, col->len, 3);
            fs->seen_zstd += ZSTD_isError(z) ? col->len : z;
        }
    }
    in->examined_samples += rows;
    in->examined_blocks++;
    sp_block_free(b);
    return CLI_OK;
}

static int examine(inspect *in, int full)
{
    uint64_t k = in->blocks;
    if (!full && k > SAMPLE_BLOCKS)
        k = SAMPLE_BLOCKS;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (!cctx) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    cli_buf col = {0}, dst = {0};
    int rc = CLI_OK;
    for (uint64_t i = 0; i < k && rc == CLI_OK; i++) {
        /* Evenly spread over the dataset: block floor(i * N / k). */
        uint64_t block = k == in->blocks ? i : (uint64_t)((double)i * (double)in->blocks / (double)k);
        rc = examine_block(in, block, cctx, &col, &dst);
    }
    ZSTD_freeCCtx(cctx);
    cli_buf_free(&col);
    cli_buf_free(&dst);
    if (rc)
        return rc;
    for (size_t f = 0; f < in->nfields; f++) {
        field_stats *fs = &in->fields[f];
        if (fs->info.fixed_bytes)
            fs->raw = fs->info.fixed_bytes * in->samples;
        else if (in->examined_blocks == in->blocks || in->examined_samples == 0)
            fs->raw = fs->seen_raw;
        else
            fs->raw = (uint64_t)((double)fs->seen_raw * (double)in->samples /
                                 (double)in->examined_samples);
    }
    return CLI_OK;
}

static void load_class_names(inspect *in)
{
    const void *v;
    size_t len;
    if (sp_dataset_meta_get(in->d, "class_names", &v, &len) != 0)
        return;
    in->class_text = cli_xmalloc(len + 1);
    memcpy(in->class_text, v, len);
    in->class_text[len] = 0;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += in->class_text[i] == '\n';
    in->class_names = cli_xcalloc(n, sizeof *in->class_names);
    char *s = in->class_text;
    for (;;) {
        in->class_names[in->nclasses++] = s;
        char *nl = strchr(s, '\n');
        if (!nl)
            break;
        *nl = 0;
        s = nl + 1;
    }
}

static const char *class_name(const inspect *in, int64_t label)
{
    if (label >= 0 && (uint64_t)label < in->nclasses)
        return in->class_names[label];
    return NULL;
}

static double ratio(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

static void fmt_shape(char *buf, size_t n, const sp_field_info *fi)
{
    if (fi->kind == SP_FIELD_IMAGE || fi->kind == SP_FIELD_BYTES) {
        snprintf(buf, n, "variable");
        return;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (uint32_t i = 0; i < fi->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? "," : "",
                              (unsigned long long)fi->shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* Printable text: no control characters other than newline and tab. */
static int is_text(const void *v, size_t len)
{
    const unsigned char *p = v;
    for (size_t i = 0; i < len; i++)
        if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\t') || p[i] == 0x7F)
            return 0;
    return 1;
}

/* ---- --order-check: the loader's order and the stored one, measured as bench does (cli_mix) -- */

/* Every sample's label (field lf), by sample id: every block is read. */
static int read_labels(inspect *in, size_t lf, int64_t *labels)
{
    uint64_t id = 0;
    for (uint64_t blk = 0; blk < in->blocks; blk++) {
        sp_block *b = NULL;
        int rc = sp_dataset_read_block(in->d, blk, &b);
        if (rc != 0)
            return cli_lib_err(in->path, rc, sp_dataset_errmsg(in->d));
        uint32_t rows = sp_block_num_samples(b);
        for (uint32_t r = 0; r < rows && id < in->samples; r++, id++) {
            const void *data;
            size_t size;
            if ((rc = sp_block_get(b, r, lf, &data, &size)) != 0) {
                cli_lib_err(in->path, rc, sp_last_error());
                sp_block_free(b);
                return CLI_EDATA;
            }
            labels[id] = size == 8 ? le_i64(data) : 0;
        }
        sp_block_free(b);
    }
    return CLI_OK;
}

/* Feeds ids[0..n) to m batch by batch, with their labels when labels is not NULL. */
static void mix_feed(cli_mix *m, const uint64_t *ids, uint64_t n, const int64_t *labels, uint32_t batch,
                     int64_t *chunk)
{
    for (uint64_t at = 0; at < n; at += batch) {
        uint32_t rows = n - at < batch ? (uint32_t)(n - at) : batch;
        for (uint32_t i = 0; labels && i < rows; i++)
            chunk[i] = labels[ids[at + i]];
        if (cli_mix_add(m, ids + at, labels ? chunk : NULL, rows) != 0) {
            cli_err("out of memory counting labels");
            exit(CLI_EDATA);
        }
    }
}

static int check_order(inspect *in, const char *arg, sp_params *params)
{
    size_t lf = SIZE_MAX;
    for (size_t f = 0; f < in->nfields && lf == SIZE_MAX; f++)
        if (in->fields[f].info.kind == SP_FIELD_LABEL)
            lf = f;
    /* rank 0 of 1 unless --rank/--world-size say otherwise: the launcher's variables never choose */
    sp_params_set(params, SP_PARAM_RANK, in->rank);
    sp_params_set(params, SP_PARAM_WORLD_SIZE, in->world);
    in->partitions = sp_params_get(params, SP_PARAM_PARTITIONS);
    in->batch = sp_params_get(params, SP_PARAM_BATCH_SIZE);
    in->seed = sp_params_get(params, SP_PARAM_SEED);
    in->window = sp_params_get(params, SP_PARAM_SHUFFLE_WINDOW);
    sp_loader *l = NULL;
    int r = sp_loader_open(arg, params, &l);
    if (r != 0)
        return cli_lib_err(in->path, r, sp_last_error());
    int64_t n = sp_loader_epoch_order(l, 0, NULL, 0);
    uint64_t *ids = n > 0 ? cli_xmalloc((size_t)n * sizeof *ids) : NULL;
    if (n > 0)
        n = sp_loader_epoch_order(l, 0, ids, (uint64_t)n);
    if (n < 0) {
        int rc = cli_lib_err(in->path, (int)n, sp_loader_errmsg(l));
        sp_loader_close(l);
        free(ids);
        return rc;
    }
    sp_loader_close(l);
    for (int64_t i = 0; i < n; i++)
        ids[i] &= ~(UINT64_C(1) << 63); /* a rank_pad repeat is its sample again */
    int64_t *labels = NULL;
    int rc = CLI_OK;
    if (lf != SIZE_MAX) {
        in->label_name = in->fields[lf].info.name;
        labels = cli_xmalloc((in->samples ? in->samples : 1) * sizeof *labels);
        rc = read_labels(in, lf, labels);
    }
    if (rc == CLI_OK) {
        uint32_t batch = (uint32_t)in->batch;
        int64_t *chunk = cli_xmalloc(batch * sizeof *chunk);
        cli_mix m;
        /* a rank's share measured as bench measures it there: placed among the world's batches */
        cli_mix_init(&m, batch, in->world > 1 ? (uint64_t)n * (uint64_t)in->world : in->samples, (uint32_t)in->world,
                     (uint32_t)in->rank);
        mix_feed(&m, ids, (uint64_t)n, labels, batch, chunk);
        cli_mix_get(&m, &in->ord);
        cli_mix_free(&m);
        /* the stored order: the samples as the files hold them, batch after batch */
        uint64_t *seq = cli_xmalloc((in->samples ? in->samples : 1) * sizeof *seq);
        for (uint64_t i = 0; i < in->samples; i++)
            seq[i] = i;
        cli_mix_init(&m, batch, in->samples, 1, 0);
        mix_feed(&m, seq, in->samples, labels, batch, chunk);
        cli_mix_get(&m, &in->stored);
        cli_mix_free(&m);
        free(seq);
        free(chunk);
        in->order_samples = (uint64_t)n;
    }
    free(labels);
    free(ids);
    return rc;
}

static double of(double a, double b) { return b > 0 ? a / b : 0; }

static void print_order_text(const inspect *in)
{
    char who[96] = "one process";
    if (in->world > 1)
        snprintf(who, sizeof who, "rank %lld of %lld, %lld partitions", (long long)in->rank, (long long)in->world,
                 (long long)(in->partitions ? in->partitions : in->world));
    printf("\norder (epoch 0 as %s gets it: batch_size %lld, seed %lld, shuffle_window %lld; "
           "%llu samples):\n", who, (long long)in->batch, (long long)in->seed, (long long)in->window,
           (unsigned long long)in->order_samples);
    if (in->ord.has_labels) {
        printf("  labels per batch  %.2f distinct of '%s'; a uniform shuffle %.2f (ratio %.3f)\n",
               in->ord.labels_per_batch, in->label_name, in->ord.labels_uniform,
               of(in->ord.labels_per_batch, in->ord.labels_uniform));
        printf("  stored order      %.2f distinct per %lld consecutive samples (ratio %.3f)\n",
               in->stored.labels_per_batch, (long long)in->batch,
               of(in->stored.labels_per_batch, in->stored.labels_uniform));
    } else if (in->label_name) { /* only a short last batch: no batch of batch_size labels */
        printf("  no whole batch of %lld samples in the epoch: labels per batch not measured\n", (long long)in->batch);
    } else {
        printf("  no label field: labels per batch not measured\n");
    }
    printf("  mean move         %.1f samples from the stored position; a uniform shuffle %.1f "
           "(ratio %.3f)\n", in->ord.move, in->ord.move_uniform, of(in->ord.move, in->ord.move_uniform));
}

static void print_order_json(const inspect *in, cli_json *j)
{
    cli_json_key(j, "order");
    cli_json_object(j);
    cli_json_key(j, "batch_size");
    cli_json_i64(j, in->batch);
    cli_json_key(j, "seed");
    cli_json_i64(j, in->seed);
    cli_json_key(j, "shuffle_window");
    cli_json_i64(j, in->window);
    cli_json_key(j, "rank");
    cli_json_i64(j, in->rank);
    cli_json_key(j, "world_size");
    cli_json_i64(j, in->world);
    cli_json_key(j, "partitions");
    cli_json_i64(j, in->partitions ? in->partitions : in->world);
    cli_json_key(j, "samples");
    cli_json_u64(j, in->order_samples);
    if (in->ord.has_labels) {
        cli_json_key(j, "label_field");
        cli_json_str(j, in->label_name);
        cli_json_key(j, "labels_per_batch");
        cli_json_double(j, in->ord.labels_per_batch);
        cli_json_key(j, "labels_per_batch_uniform");
        cli_json_double(j, in->ord.labels_uniform);
        cli_json_key(j, "labels_per_batch_ratio");
        cli_json_double(j, of(in->ord.labels_per_batch, in->ord.labels_uniform));
        cli_json_key(j, "stored_labels_per_batch");
        cli_json_double(j, in->stored.labels_per_batch);
        cli_json_key(j, "stored_labels_per_batch_ratio");
        cli_json_double(j, of(in->stored.labels_per_batch, in->stored.labels_uniform));
    }
    cli_json_key(j, "mean_move");
    cli_json_double(j, in->ord.move);
    cli_json_key(j, "mean_move_uniform");
    cli_json_double(j, in->ord.move_uniform);
    cli_json_end_object(j);
}

static void print_text(const inspect *in, int full)
{
    char a[32], b[32];
    cli_line(stdout, "dataset      %s", in->path);
    printf("samples      %llu\n", (unsigned long long)in->samples);
    printf("shards       %llu\n", (unsigned long long)in->shards);
    printf("blocks       %llu (%llu stored uncompressed)\n", (unsigned long long)in->blocks,
           (unsigned long long)in->blocks_raw);
    cli_fmt_bytes(a, sizeof a, in->file_bytes);
    printf("on disk      %s (%llu bytes)\n", a, (unsigned long long)in->file_bytes);
    cli_fmt_bytes(b, sizeof b, in->raw_bytes);
    printf("raw          %s (%llu bytes)\n", b, (unsigned long long)in->raw_bytes);
    printf("ratio        %.3f (raw / on disk)\n", ratio(in->raw_bytes, in->file_bytes));
    printf("fingerprint  %016llx\n", (unsigned long long)sp_dataset_fingerprint(in->d));

    printf("\nfields");
    if (in->examined_blocks < in->blocks)
        printf(" (raw bytes and zstd-3 ratios estimated from %llu of %llu blocks; --full reads "
               "all)",
               (unsigned long long)in->examined_blocks, (unsigned long long)in->blocks);
    printf(":\n  %-20s %-7s %-9s %-14s %14s %8s\n", "name", "kind", "dtype", "shape", "raw bytes",
           "zstd-3");
    for (size_t f = 0; f < in->nfields; f++) {
        const field_stats *fs = &in->fields[f];
        char shape[128];
        fmt_shape(shape, sizeof shape, &fs->info);
        const char *dn = sp_dtype_name(fs->info.dtype);
        const char *kn = sp_field_kind_name(fs->info.kind);
        printf("  %-20s %-7s %-9s %-14s %14llu %8.3f\n", fs->info.name, kn ? kn : "?",
               dn ? dn : "?", shape, (unsigned long long)fs->raw,
               ratio(fs->seen_raw, fs->seen_zstd));
    }
    (void)full;

    size_t nmeta = sp_dataset_meta_count(in->d);
    printf("\nmetadata (%zu):\n", nmeta);
    for (size_t i = 0; i < nmeta; i++) {
        const char *key;
        const void *v;
        size_t len;
        if (sp_dataset_meta_at(in->d, i, &key, &v, &len) != 0)
            continue;
        if (strcmp(key, "class_names") == 0 && in->class_names) {
            printf("  class_names (%zu classes):", in->nclasses);
            for (size_t c = 0; c < in->nclasses; c++) {
                if (c == 64) {
                    printf(" ... and %zu more", in->nclasses - 64);
                    break;
                }
                fputs(c ? ", " : " ", stdout);
                cli_put_escaped(stdout, in->class_names[c], strlen(in->class_names[c]));
            }
            printf("\n");
        } else if (is_text(v, len) && len <= 240 && !memchr(v, '\n', len)) {
            cli_line(stdout, "  %s: %.*s", key, (int)len, (const char *)v);
        } else if (is_text(v, len)) {
            size_t show = len > 240 ? 240 : len;
            cli_line(stdout, "  %s (%zu bytes): %.*s%s", key, len, (int)show, (const char *)v, len > show ? "..." : "");
        } else {
            cli_line(stdout, "  %s: <%zu bytes of binary data>", key, len);
        }
    }

    for (size_t f = 0; f < in->nfields; f++) {
        const field_stats *fs = &in->fields[f];
        if (fs->info.kind != SP_FIELD_LABEL)
            continue;
        printf("\nlabels of '%s' (%zu distinct", fs->info.name, fs->labels.used);
        if (in->examined_blocks < in->blocks)
            printf(", counted in %llu sampled blocks", (unsigned long long)in->examined_blocks);
        printf("):\n");
        label_slot *v = label_sorted(&fs->labels);
        size_t show = fs->labels.used > LIST_LABELS ? TOP_LABELS : fs->labels.used;
        if (fs->labels.used > LIST_LABELS)
            printf("  (top %d by count)\n", TOP_LABELS);
        for (size_t i = 0; i < show; i++) {
            const char *name = class_name(in, v[i].label);
            printf("  %8lld  ", (long long)v[i].label);
            size_t wide = name ? cli_put_escaped(stdout, name, strlen(name)) : 0;
            printf("%*s %llu\n", wide < 24 ? (int)(24 - wide) : 0, "", (unsigned long long)v[i].count);
        }
        if (show < fs->labels.used)
            printf("  ... %zu more labels\n", fs->labels.used - show);
        free(v);
    }

    for (size_t f = 0; f < in->nfields; f++) {
        const field_stats *fs = &in->fields[f];
        if (fs->info.kind != SP_FIELD_IMAGE)
            continue;
        printf("\nimages of '%s' by format", fs->info.name);
        if (in->examined_blocks < in->blocks)
            printf(" (counted in %llu sampled blocks)", (unsigned long long)in->examined_blocks);
        printf(":");
        for (int k = 1; k <= 4; k++)
            printf(" %s %llu%s", format_names[k % 4], (unsigned long long)fs->formats[k % 4], k < 4 ? "," : "\n");
    }
    if (in->order_check)
        print_order_text(in);
}

static void print_json(const inspect *in)
{
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_key(&j, "path");
    cli_json_str(&j, in->path);
    cli_json_key(&j, "samples");
    cli_json_u64(&j, in->samples);
    cli_json_key(&j, "shards");
    cli_json_u64(&j, in->shards);
    cli_json_key(&j, "blocks");
    cli_json_u64(&j, in->blocks);
    cli_json_key(&j, "blocks_stored_raw");
    cli_json_u64(&j, in->blocks_raw);
    cli_json_key(&j, "bytes");
    cli_json_u64(&j, in->file_bytes);
    cli_json_key(&j, "stored_bytes");
    cli_json_u64(&j, in->stored_bytes);
    cli_json_key(&j, "raw_bytes");
    cli_json_u64(&j, in->raw_bytes);
    cli_json_key(&j, "compression_ratio");
    cli_json_double(&j, ratio(in->raw_bytes, in->file_bytes));
    char fp[24];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)sp_dataset_fingerprint(in->d));
    cli_json_key(&j, "fingerprint");
    cli_json_str(&j, fp);
    cli_json_key(&j, "blocks_examined");
    cli_json_u64(&j, in->examined_blocks);
    cli_json_key(&j, "estimated");
    cli_json_bool(&j, in->examined_blocks < in->blocks);

    cli_json_key(&j, "fields");
    cli_json_array(&j);
    for (size_t f = 0; f < in->nfields; f++) {
        const field_stats *fs = &in->fields[f];
        cli_json_object(&j);
        cli_json_key(&j, "name");
        cli_json_str(&j, fs->info.name);
        cli_json_key(&j, "kind");
        cli_json_str(&j, sp_field_kind_name(fs->info.kind));
        cli_json_key(&j, "dtype");
        cli_json_str(&j, sp_dtype_name(fs->info.dtype));
        /* As sp_field_info has it: [] for variable-length kinds, whose fixed_bytes is 0. */
        cli_json_key(&j, "shape");
        cli_json_array(&j);
        for (uint32_t i = 0; i < fs->info.ndim && i < SP_MAX_DIMS; i++)
            cli_json_u64(&j, fs->info.shape[i]);
        cli_json_end_array(&j);
        cli_json_key(&j, "fixed_bytes");
        cli_json_u64(&j, fs->info.fixed_bytes);
        cli_json_key(&j, "raw_bytes");
        cli_json_u64(&j, fs->raw);
        cli_json_key(&j, "compression_ratio");
        cli_json_double(&j, ratio(fs->seen_raw, fs->seen_zstd));
        if (fs->info.kind == SP_FIELD_IMAGE) { /* counted in the examined blocks */
            cli_json_key(&j, "formats");
            cli_json_object(&j);
            for (int k = 1; k <= 4; k++) {
                cli_json_key(&j, format_names[k % 4]);
                cli_json_u64(&j, fs->formats[k % 4]);
            }
            cli_json_end_object(&j);
        }
        cli_json_end_object(&j);
    }
    cli_json_end_array(&j);

    cli_json_key(&j, "meta");
    cli_json_object(&j);
    size_t nmeta = sp_dataset_meta_count(in->d);
    for (size_t i = 0; i < nmeta; i++) {
        const char *key;
        const void *v;
        size_t len;
        if (sp_dataset_meta_at(in->d, i, &key, &v, &len) != 0)
            continue;
        cli_json_key(&j, key);
        cli_json_strn(&j, v, len);
    }
    cli_json_end_object(&j);

    cli_json_key(&j, "labels");
    cli_json_object(&j);
    for (size_t f = 0; f < in->nfields; f++) {
        const field_stats *fs = &in->fields[f];
        if (fs->info.kind != SP_FIELD_LABEL)
            continue;
        cli_json_key(&j, fs->info.name);
        cli_json_object(&j);
        cli_json_key(&j, "distinct");
        cli_json_u64(&j, fs->labels.used);
        cli_json_key(&j, "samples_counted");
        cli_json_u64(&j, in->examined_samples);
        label_slot *v = label_sorted(&fs->labels);
        size_t show = fs->labels.used > LIST_LABELS ? LIST_LABELS : fs->labels.used;
        cli_json_key(&j, "truncated");
        cli_json_bool(&j, show < fs->labels.used);
        cli_json_key(&j, "counts");
        cli_json_array(&j);
        for (size_t i = 0; i < show; i++) {
            cli_json_object(&j);
            cli_json_key(&j, "label");
            cli_json_i64(&j, v[i].label);
            const char *name = class_name(in, v[i].label);
            if (name) {
                cli_json_key(&j, "name");
                cli_json_str(&j, name);
            }
            cli_json_key(&j, "count");
            cli_json_u64(&j, v[i].count);
            cli_json_end_object(&j);
        }
        cli_json_end_array(&j);
        free(v);
        cli_json_end_object(&j);
    }
    cli_json_end_object(&j);
    if (in->order_check)
        print_order_json(in, &j);
    cli_json_end_object(&j);
    cli_json_finish(&j);
}

enum { OPT_JSON = 1, OPT_FULL, OPT_ORDER, OPT_BATCH, OPT_SEED, OPT_WINDOW, OPT_RANK, OPT_WORLD, OPT_PARTS };

static const cli_opt inspect_opts[] = {
    {"json", 0, 0, OPT_JSON, NULL, "print one JSON object to stdout"},
    {"full", 0, 0, OPT_FULL, NULL, "read every block (exact per-field sizes and label counts)"},
    {"order-check", 0, 0, OPT_ORDER, NULL,
     "measure how the loader's order mixes: distinct labels per batch and the distance samples move, "
     "against a uniform shuffle (reads every block's labels)"},
    {"batch-size", 0, 1, OPT_BATCH, "N", "--order-check: batch size (default 32)"},
    {"seed", 0, 1, OPT_SEED, "N", "--order-check: the loader's seed (default 0)"},
    {"shuffle-window", 0, 1, OPT_WINDOW, "N", "--order-check: the loader's shuffle_window (default 8)"},
    {"rank", 0, 1, OPT_RANK, "R", "--order-check: the share of rank R (default 0; below --world-size)"},
    {"world-size", 0, 1, OPT_WORLD, "W", "--order-check: ranks sharing the epoch (default 1)"},
    {"partitions", 0, 1, OPT_PARTS, "P", "--order-check: the loader's partitions (default: the world size)"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_inspect = {
    "inspect",
    "inspect PATH [--json] [--full] [--order-check [--batch-size N] [--seed N] [--shuffle-window N] "
    "[--rank R --world-size W [--partitions P]]] [parameters]",
    "Describes a dataset directory, manifest or shard: schema, sizes, compression, metadata, "
    "labels.",
    "Per-field compression ratios are measured by compressing each field's column of a block with\n"
    "zstd level 3. Without --full at most 64 evenly spread blocks are read, and the per-field\n"
    "figures and label counts are estimates from those blocks.\n"
    "\n"
    "--order-check plans epoch 0 of the loader's order for one process, or with --rank and\n"
    "--world-size for that rank's share (sp_loader_epoch_order: no sample is decoded) and reports,\n"
    "for the first label field, the mean number of distinct labels in a full batch against what a\n"
    "uniform shuffle of the same samples gives, the same for the stored order (batches of\n"
    "consecutive samples: low when pack wrote classes together), and the mean distance a sample\n"
    "moves from its stored position against a uniform shuffle's (N^2-1)/3N. It reads every block\n"
    "for the labels and holds 16 bytes a sample.\n",
    inspect_opts,
    SP_SCOPE_READ,
};

int cli_inspect_main(int argc, char **argv)
{
    inspect in;
    memset(&in, 0, sizeof in);
    const char *arg = NULL; /* the PATH as typed, opened; in.path is what is printed */
    char shown[4096];
    int json = 0, full = 0, order_opts = 0, rc = CLI_OK;
    sp_params *params = sp_params_create();
    if (!params) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_inspect, argc, argv, params);
    for (int id; (id = cli_next(&g)) != CLI_ARG_END;) {
        if (id == CLI_ARG_ERR) {
            rc = CLI_EUSAGE;
            goto out;
        } else if (id == CLI_ARG_HELP) {
            cli_print_help(stdout, &cli_cmd_inspect);
            goto out;
        } else if (id == CLI_ARG_POS) {
            if (in.path) {
                rc = cli_usage_err(&cli_cmd_inspect, "one PATH only (got '%s' and '%s')",
                                   in.path, g.value);
                goto out;
            }
            arg = g.value;
            in.path = cli_shown(arg, shown, sizeof shown);
        } else if (id == OPT_JSON) {
            json = 1;
        } else if (id == OPT_FULL) {
            full = 1;
        } else if (id == OPT_ORDER) {
            in.order_check = 1;
        } else if (id == OPT_BATCH || id == OPT_SEED || id == OPT_WINDOW || id == OPT_RANK || id == OPT_WORLD ||
                   id == OPT_PARTS) {
            const char *name = id == OPT_BATCH ? "batch_size" : id == OPT_SEED ? "seed" : id == OPT_WINDOW ?
                "shuffle_window" : id == OPT_RANK ? "rank" : id == OPT_WORLD ? "world_size" : "partitions";
            if (sp_params_set_str(params, name, g.value) != 0) {
                rc = cli_usage_err(&cli_cmd_inspect, "%s", sp_last_error());
                goto out;
            }
            order_opts = 1;
        }
    }
    if (!in.path) {
        rc = cli_usage_err(&cli_cmd_inspect, "no dataset PATH given");
        goto out;
    }
    if (order_opts && !in.order_check) {
        rc = cli_usage_err(&cli_cmd_inspect, "--batch-size, --seed, --shuffle-window, --rank, --world-size and "
                           "--partitions go with --order-check");
        goto out;
    }
    /* one process unless told: rank 0 of 1 (the parameters' -1 and 0 would ask the launcher) */
    in.rank = sp_params_get(params, SP_PARAM_RANK);
    in.world = sp_params_get(params, SP_PARAM_WORLD_SIZE);
    in.rank = in.rank < 0 ? 0 : in.rank;
    in.world = in.world < 1 ? 1 : in.world;
    if (in.rank >= in.world) {
        rc = cli_usage_err(&cli_cmd_inspect, "--rank %lld is not below --world-size %lld", (long long)in.rank,
                           (long long)in.world);
        goto out;
    }
    cli_oom_context("inspecting %s", in.path);
    int r = sp_dataset_open(arg, params, &in.d);
    if (r != 0) {
        rc = cli_lib_err(in.path, r, sp_last_error());
        in.d = NULL;
        goto out;
    }
    const sp_schema *schema = sp_dataset_schema(in.d);
    in.nfields = sp_schema_num_fields(schema);
    in.fields = cli_xcalloc(in.nfields, sizeof *in.fields);
    for (size_t f = 0; f < in.nfields; f++) {
        in.fields[f].info.struct_size = sizeof in.fields[f].info;
        sp_schema_field(schema, f, &in.fields[f].info);
    }
    in.samples = sp_dataset_num_samples(in.d);
    in.shards = sp_dataset_num_shards(in.d);
    in.blocks = sp_dataset_num_blocks(in.d);
    if ((rc = read_sizes(&in)) != CLI_OK || (rc = examine(&in, full)) != CLI_OK ||
        (in.order_check && (rc = check_order(&in, arg, params)) != CLI_OK))
        goto out;
    load_class_names(&in);
    if (json)
        print_json(&in);
    else
        print_text(&in, full);
    fflush(stdout);
out:
    for (size_t f = 0; f < in.nfields; f++)
        free(in.fields[f].labels.slots);
    free(in.fields);
    free(in.class_names);
    free(in.class_text);
    sp_dataset_close(in.d);
    sp_params_destroy(params);
    return rc;
}
