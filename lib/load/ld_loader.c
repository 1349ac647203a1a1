/* ld_loader.c - the loader's API: open (tables, memory budget, pools), the consumer's
 * next/release, epochs, resume state and statistics. The threads live in ld_pipeline.c. */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateDCtxSize, to count each worker's context */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ld_device.h"
#include "ld_internal.h"
#include "ds.h"

/* "1.5 GiB" style sizes for messages. */
static const char *human(uint64_t n, char *buf, size_t len)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

/* ---------------------------------------------------------------- configuration */

/* Where batches go. On the host, device_dtype and device_layout act as image_dtype and
 * image_layout, so code written for a GPU gets the same tensors, in host memory, without one. */
static int read_device_config(sp_loader *l, const sp_params *p)
{
    l->cfg.dev_budget = (uint64_t)sp_params_get(p, SP_PARAM_DEVICE_MEMORY);
    l->cfg.dev_dtype = (int)sp_params_get(p, SP_PARAM_DEVICE_DTYPE);
    l->cfg.dev_layout = (int)sp_params_get(p, SP_PARAM_DEVICE_LAYOUT);
    /* device_dtype's choices after none are image_dtype's after uint8, in the same order */
    l->cfg.dev_img_dtype = l->cfg.dev_dtype == SP_DEVICE_DTYPE_NONE
                               ? SP_IMAGE_UINT8
                               : SP_IMAGE_FLOAT16 + (l->cfg.dev_dtype - SP_DEVICE_DTYPE_FLOAT16);
    int rc = cu_resolve(sp_params_get(p, SP_PARAM_DEVICE), &l->cfg.device, l->stats.s.device_note,
                        sizeof l->stats.s.device_note, &l->eb);
    l->stats.s.device = l->cfg.device;
    if (rc || l->cfg.dev_dtype == SP_DEVICE_DTYPE_NONE)
        return rc;
    if (l->cfg.img.dtype != SP_IMAGE_UINT8 || l->cfg.img.layout != SP_LAYOUT_NHWC)
        return sp_fail(&l->eb, SP_EINVAL,
                       "device_dtype converts images from the uint8 NHWC pixels the host makes: leave image_dtype "
                       "and image_layout at uint8 and nhwc (device_layout sets the layout)");
    if (l->cfg.device < 0) {
        l->cfg.img.dtype = l->cfg.dev_img_dtype;
        l->cfg.img.layout = l->cfg.dev_layout == SP_DEVICE_LAYOUT_NCHW ? SP_LAYOUT_NCHW : SP_LAYOUT_NHWC;
    }
    return SP_OK;
}

/* host_memory, or for 0 the node's share: an eighth of the memory this process may take
 * (MemAvailable, or what its cgroup's limit leaves when that is less), divided among the local world
 * size's ranks, at most 2 GiB each. note says how it was derived. */
static uint64_t default_host_memory(uint64_t param, uint32_t local_world, char *note, size_t len)
{
    if (param)
        return param;
    char src[SP_ERRMSG_MAX] = "";
    uint64_t avail = sp_memory_available(src, sizeof src);
    if (!avail) {
        avail = 1ull << 30; /* nothing to read: assume a small machine */
        snprintf(src, sizeof src, "nothing readable, 1 GiB assumed");
    }
    uint64_t share = avail / 8 / local_world;
    uint64_t v = share < (2ull << 30) ? share : (2ull << 30);
    char a[32], b[32], c[48] = "";
    if (local_world > 1)
        snprintf(c, sizeof c, " shared by %u local ranks", local_world);
    snprintf(note, len, "an eighth of %s (%s)%s%s: %s", human(avail, a, sizeof a), src, c,
             share > v ? ", at most 2 GiB" : "", human(v, b, sizeof b));
    return v;
}

/* threads=0: the usable cores shared by the ranks of this node (at least one each); the note says
 * how. */
static int default_threads(uint32_t local_world, char *note, size_t len)
{
    int n = sp_usable_cores(note, len);
    if (local_world <= 1)
        return n;
    int each = n / (int)local_world > 1 ? n / (int)local_world : 1;
    size_t k = strlen(note);
    snprintf(note + k, len - k, "; shared by the local world size %u: threads=%d", local_world, each);
    return each;
}

/* The canonical partitions: the parameter, else the world size. Each rank holds parts / world of
 * them, and each global batch takes as many samples of every partition. */
static int read_parts(sp_loader *l, const sp_params *p)
{
    int64_t parts = sp_params_get(p, SP_PARAM_PARTITIONS);
    uint32_t world = l->cfg.world;
    uint64_t global = (uint64_t)l->cfg.batch * world;
    l->cfg.parts = parts ? (uint32_t)parts : world;
    l->stats.s.partitions = (int)l->cfg.parts;
    if (l->cfg.parts % world != 0)
        return sp_fail(&l->eb, SP_EINVAL, "partitions=%u is not a multiple of the world size %u: each rank holds "
                       "partitions / world_size of them", l->cfg.parts, world);
    if (global % l->cfg.parts != 0)
        return sp_fail(&l->eb, SP_EINVAL, "partitions=%u does not divide the global batch (batch_size %u x world size "
                       "%u = %llu): every global batch takes as many samples of each partition", l->cfg.parts,
                       l->cfg.batch, world, (unsigned long long)global);
    return SP_OK;
}

static int read_config(sp_loader *l, const sp_params *p)
{
    l->cfg.batch = (uint32_t)sp_params_get(p, SP_PARAM_BATCH_SIZE);
    l->cfg.threads = (int)sp_params_get(p, SP_PARAM_THREADS);
    l->cfg.threads_auto = l->cfg.threads == 0;
    int rc = ld_read_ranks(l, p);
    if (rc)
        return rc;
    if (l->cfg.threads_auto)
        l->cfg.threads = default_threads(l->cfg.local_world, l->stats.s.threads_note, sizeof l->stats.s.threads_note);
    l->cfg.seed = (uint64_t)sp_params_get(p, SP_PARAM_SEED);
    l->cfg.shuffle = sp_params_get(p, SP_PARAM_SHUFFLE) != 0;
    l->cfg.window_blocks = (uint32_t)sp_params_get(p, SP_PARAM_SHUFFLE_WINDOW);
    l->cfg.epochs = (uint64_t)sp_params_get(p, SP_PARAM_EPOCHS);
    l->cfg.drop_last = sp_params_get(p, SP_PARAM_DROP_LAST) != 0;
    l->cfg.pad = sp_params_get(p, SP_PARAM_RANK_PAD) != 0;
    l->cfg.io_mode = (int)sp_params_get(p, SP_PARAM_IO);
    l->cfg.direct_mode = (int)sp_params_get(p, SP_PARAM_DIRECT_IO);
    l->cfg.on_error = (int)sp_params_get(p, SP_PARAM_ON_ERROR);
    l->cfg.token_dtype = (int)sp_params_get(p, SP_PARAM_TOKEN_DTYPE);
    l->cfg.max_sample = (uint64_t)sp_params_get(p, SP_PARAM_MAX_SAMPLE_BYTES);
    l->cfg.sim_sample_ns = 1000 * (uint64_t)sp_params_get(p, SP_PARAM_SIM_SAMPLE_US);
    l->cfg.sim_read_ns = 1000 * (uint64_t)sp_params_get(p, SP_PARAM_SIM_READ_US);
    l->cfg.remote_threads = (int)sp_params_get(p, SP_PARAM_REMOTE_THREADS);
    if (img_cfg_from_params(&l->cfg.img, p) != SP_OK)
        return sp_fail_keep(&l->eb, SP_EINVAL);
    rc = read_parts(l, p);
    if (rc)
        return rc;
    l->cfg.host_memory_auto = sp_params_get(p, SP_PARAM_HOST_MEMORY) == 0;
    l->cfg.host_memory = default_host_memory((uint64_t)sp_params_get(p, SP_PARAM_HOST_MEMORY), l->cfg.local_world,
                                             l->stats.s.host_memory_note, sizeof l->stats.s.host_memory_note);
    l->stats.s.host_memory_bytes = l->cfg.host_memory;
    l->stats.s.threads = l->cfg.threads;
    l->cfg.split = l->cfg.sim_sample_ns > 0; /* and image fields (plan_image) */
    return read_device_config(l, p);
}

DLDataType ld_image_dltype(int image_dtype)
{
    static const DLDataType dts[] = {
        [SP_IMAGE_UINT8] = { kDLUInt, 8, 1 }, [SP_IMAGE_FLOAT16] = { kDLFloat, 16, 1 },
        [SP_IMAGE_BFLOAT16] = { kDLBfloat, 16, 1 }, [SP_IMAGE_FLOAT32] = { kDLFloat, 32, 1 },
    };
    return dts[image_dtype];
}

/* An image field becomes [B, S, S, 3] (or [B, 3, S, S]) in the image dtype. */
static void plan_image(sp_loader *l, ld_out *o)
{
    int64_t s = l->cfg.img.size;
    o->convert = CONVERT_IMAGE;
    o->src_bytes = 0;
    o->row_bytes = img_out_bytes(&l->cfg.img);
    o->dt = ld_image_dltype(l->cfg.img.dtype);
    o->ndim = 4;
    o->shape[0] = l->lay.rows;
    bool nchw = l->cfg.img.layout == SP_LAYOUT_NCHW;
    o->shape[1] = nchw ? 3 : s;
    o->shape[2] = nchw ? s : s;
    o->shape[3] = nchw ? s : 3;
    l->cfg.has_image = true;
    l->cfg.split = true; /* a block's images are decoded by several workers at once */
}

/* Headroom beside a JPEG's coefficients in libjpeg's whole-image memory (what img_jpeg.c takes). */
#define LD_WHOLE_HEADROOM (1ull << 20)

/* The loader's sources: a mixture's, or its one dataset. */
static uint32_t nsources(const sp_loader *l) { return l->mix.n ? l->mix.n : 1; }
static sp_dataset *source(const sp_loader *l, uint32_t d) { return l->mix.n ? l->mix_ds[d] : l->ds; }

/* One dataset's "image_sizes" line for schema field f (shardpack.h): false when it has none. */
static bool image_sizes_of(const sp_dataset *d, size_t f, uint64_t v[5])
{
    const void *val;
    size_t len;
    if (sp_dataset_meta_get(d, "image_sizes", &val, &len) != SP_OK) {
        sp_clear_error(); /* an older dataset: not an error */
        return false;
    }
    char text[64 * (SP_MAX_FIELDS + 1)];
    if (len >= sizeof text)
        return false;
    memcpy(text, val, len);
    text[len] = '\0';
    if (strncmp(text, "image_sizes 1\n", 14) != 0)
        return false;
    for (const char *p = text + 14; *p; p = strchr(p, '\n') + 1) {
        unsigned long long g, a[5];
        if (sscanf(p, "%llu %llu %llu %llu %llu %llu", &g, &a[0], &a[1], &a[2], &a[3], &a[4]) == 6 && g == f) {
            for (int i = 0; i < 5; i++)
                v[i] = a[i];
            return true;
        }
        if (!strchr(p, '\n'))
            break;
    }
    return false;
}

/* The decoders sized for the largest image the dataset holds, as its "image_sizes" (written when
 * it was packed) says, instead of any image the parameters allow: their crop and resampling
 * buffers (touched at open) follow its longest side and pixels, and libjpeg's whole-image memory,
 * shared by the workers, is its largest JPEG's coefficients (or interlaced PNG's rows) and 1 MiB,
 * when that is less than max_image_memory (a WebP keeps max_image_memory: its planes and the
 * full-resolution crop come from there). When it is more and max_image_memory was left at its
 * default, the allowance grows to it (within the parameter's range): every image the pack kept
 * decodes (a progressive 4K or 5K wallpaper needs 50-100 MiB of coefficients, beyond the 48 MiB
 * default); a max_image_memory that was set is a bound, kept. A dataset without it keeps the
 * bounds of the parameters. */
static void use_image_sizes(sp_loader *l)
{
    uint64_t side = 0, px = 0, whole = 0;
    bool webp = false;
    for (uint32_t d = 0; d < nsources(l); d++) {
        for (size_t i = 0; i < l->lay.nout; i++) {
            uint64_t v[5]; /* width, height, pixels, whole, webp */
            if (l->lay.out[i].convert != CONVERT_IMAGE)
                continue;
            if (!image_sizes_of(source(l, d), l->lay.out[i].field, v) || !v[2])
                return;
            side = v[0] > side ? v[0] : side;
            side = v[1] > side ? v[1] : side;
            px = v[2] > px ? v[2] : px;
            whole = v[3] > whole ? v[3] : whole;
            webp |= v[4] != 0;
        }
    }
    l->cfg.img.data_side = side;
    l->cfg.img.data_pixels = px;
    if (!webp && whole + LD_WHOLE_HEADROOM < l->cfg.img.max_image_memory)
        l->cfg.img.max_image_memory = whole + LD_WHOLE_HEADROOM;
    else if (l->cfg.img.max_image_memory_default && whole + LD_WHOLE_HEADROOM > l->cfg.img.max_image_memory) {
        sp_param_info mi = { .struct_size = sizeof mi };
        uint64_t cap = sp_param_describe(SP_PARAM_MAX_IMAGE_MEMORY, &mi) == SP_OK ? (uint64_t)mi.max : 0;
        l->cfg.img.max_image_memory = whole + LD_WHOLE_HEADROOM < cap ? whole + LD_WHOLE_HEADROOM : cap;
    }
}

/* The samples an epoch draws from: the dataset's, or a mixture's takes. */
static uint64_t epoch_samples(const sp_loader *l)
{
    if (!l->mix.n)
        return sp_dataset_num_samples(l->ds);
    uint64_t n = 0;
    for (uint32_t d = 0; d < l->mix.n; d++)
        n += l->mix.take[d];
    return n;
}

/* What a state is valid with: the dataset's fingerprint, or the mixture's datasets and weights. */
static uint64_t loader_fingerprint(const sp_loader *l)
{
    uint64_t h = sp_dataset_fingerprint(l->ds);
    for (uint32_t d = 1; d < l->mix.n; d++) {
        uint64_t w;
        memcpy(&w, &l->mix_w[d], sizeof w);
        h = (h ^ sp_dataset_fingerprint(l->mix_ds[d])) * 0x100000001B3ull ^ w;
    }
    if (l->mix.n) {
        uint64_t w;
        memcpy(&w, &l->mix_w[0], sizeof w);
        h ^= w * 0x9E3779B97F4A7C15ull;
    }
    if (l->mix.epoch_samples) /* another epoch rule, another order (0 keeps the earlier fingerprints) */
        h = (h ^ l->mix.epoch_samples) * 0xC2B2AE3D27D4EB4Full;
    return h;
}

/* One batch tensor per fixed-size or image field; bytes fields stay out of loader batches. */
static int plan_outputs(sp_loader *l)
{
    /* A batch holds at most the samples a rank keeps in an epoch: the fewest any rank is dealt,
     * at most an even share of the dataset. A batch_size beyond that needs no rows it cannot fill. */
    uint64_t share = epoch_samples(l) / l->cfg.world;
    l->lay.rows = share && share < l->cfg.batch ? (uint32_t)share : l->cfg.batch;
    uint64_t off = 0;
    for (size_t f = 0; f < l->tab.schema->n; f++) {
        const sp_field *fd = &l->tab.schema->f[f];
        if (fd->kind == SP_FIELD_IMAGE) {
            ld_out *o = &l->lay.out[l->lay.nout++];
            o->field = f;
            plan_image(l, o);
            o->offset = off;
            off = sp_align_up(off + o->row_bytes * l->lay.rows, LD_FIELD_ALIGN);
            continue;
        }
        if (!fd->fixed_bytes)
            continue;
        ld_out *o = &l->lay.out[l->lay.nout++];
        o->field = f;
        o->src_bytes = fd->fixed_bytes;
        int dtype = fd->dtype;
        o->convert = CONVERT_COPY;
        if (fd->kind == SP_FIELD_TOKENS && l->cfg.token_dtype == SP_TOKEN_DTYPE_INT32) {
            o->convert = fd->dtype == SP_DTYPE_U16 ? CONVERT_U16_I32 : CONVERT_U32_I32;
            dtype = SP_DTYPE_I32;
        }
        uint64_t elems = fd->fixed_bytes / sp_dtype_size(fd->dtype);
        o->row_bytes = elems * sp_dtype_size(dtype);
        static const uint8_t codes[] = {
            [SP_DTYPE_U8] = kDLUInt, [SP_DTYPE_I8] = kDLInt, [SP_DTYPE_U16] = kDLUInt, [SP_DTYPE_I16] = kDLInt,
            [SP_DTYPE_U32] = kDLUInt, [SP_DTYPE_I32] = kDLInt, [SP_DTYPE_U64] = kDLUInt, [SP_DTYPE_I64] = kDLInt,
            [SP_DTYPE_F16] = kDLFloat, [SP_DTYPE_BF16] = kDLBfloat, [SP_DTYPE_F32] = kDLFloat,
            [SP_DTYPE_F64] = kDLFloat, [SP_DTYPE_BOOL] = kDLUInt, /* DLPack before 0.8 has no kDLBool */
        };
        o->dt = (DLDataType){ codes[dtype], (uint8_t)(8 * sp_dtype_size(dtype)), 1 };
        o->ndim = (int)fd->ndim + 1;
        o->shape[0] = l->lay.rows;
        for (uint32_t d = 0; d < fd->ndim; d++)
            o->shape[d + 1] = (int64_t)fd->shape[d];
        o->offset = off;
        off = sp_align_up(off + o->row_bytes * l->lay.rows, LD_FIELD_ALIGN);
    }
    if (l->lay.nout == 0)
        return sp_fail(&l->eb, SP_ENOTSUP, "the dataset has no field the loader batches (image, label, tokens, tensor)");
    for (size_t f = 0; f < l->lay.nout; f++) {
        l->lay.names[f] = l->tab.schema->f[l->lay.out[f].field].name;
        l->lay.ndims += (uint64_t)l->lay.out[f].ndim;
    }
    l->lay.batch_bytes = off;
    return SP_OK;
}

sp_dataset *ld_shard_source(const sp_loader *l, uint64_t i, uint64_t *local, uint64_t *first_block)
{
    uint32_t d = 0;
    while (d + 1 < l->mix.n && i >= l->mix_first_shard[d + 1])
        d++;
    *local = i - l->mix_first_shard[d]; /* all 0 for one dataset */
    *first_block = l->mix.n ? l->mix.first_block[d] : 0;
    return source(l, d);
}

rm_site *ld_shard_site(const sp_loader *l, uint64_t i)
{
    uint64_t local, first;
    return ds_site(ld_shard_source(l, i, &local, &first));
}

bool ld_any_remote(const sp_loader *l)
{
    for (uint32_t d = 0; d < nsources(l); d++)
        if (ds_site(source(l, d)))
            return true;
    return false;
}

/* What libcurl holds per connection beside the read ring: its 256 KiB receive buffer and TLS state,
 * counted as 512 KiB. */
#define LD_RM_PER_CONN (512u * 1024)
/* By default the read ring of a remote dataset aims at this many parts (16 x 8 MiB: 10 Gb/s at 100
 * ms a request), and the driver opens enough transfers to keep half of it in flight (the other half
 * holds blocks landed and waiting for a worker), between 16 and LD_RM_AUTO_MAX. */
#define LD_RM_GOAL_PARTS 16u
#define LD_RM_AUTO_MIN 16u
#define LD_RM_AUTO_MAX 64u

/* Sizes the remote reads once the block tables are known: transfers, part and goal (l->rdr), all 0
 * when every source is local. One driver carries every source's GETs, so a source that sets
 * remote_inflight gets at least that many transfers, and its part size the largest. A source that
 * leaves it at 0 asks for enough transfers to keep half the ring's goal in flight with GETs of the
 * remote sources' largest block: a shuffled epoch fetches one block a GET (neighbours are rarely queued
 * together), so 16 GETs of 1 MiB blocks would hold 16 MiB in flight, 1.3 Gb/s at 100 ms a request,
 * where 16 joined 8 MiB parts hold 128 MiB; 64 of them hold 64 MiB. No more transfers than an
 * eighth of host_memory pays for in their buffers, and never fewer than 16. */
static void remote_reads(sp_loader *l)
{
    unsigned set = 0;
    bool any = false, any_auto = false;
    uint64_t part = 0;
    for (uint32_t d = 0; d < nsources(l); d++) {
        rm_site *s = ds_site(source(l, d));
        if (!s)
            continue;
        any = true;
        if (rm_site_part_size(s) > part)
            part = rm_site_part_size(s);
        if (rm_site_inflight_auto(s))
            any_auto = true;
        else if (rm_site_inflight(s) > set)
            set = rm_site_inflight(s);
    }
    l->rdr.transfers = 0;
    l->rdr.part = l->rdr.goal = 0;
    if (!any)
        return;
    uint64_t n = set;
    if (any_auto) {
        uint64_t get = l->rdr.max_get > LD_PAGE ? l->rdr.max_get : LD_PAGE; /* a mixture's local blocks aside */
        uint64_t want = (LD_RM_GOAL_PARTS * part / 2 + get - 1) / get, afford = l->cfg.host_memory / 8 / LD_RM_PER_CONN;
        want = want < afford ? want : afford;
        want = want < LD_RM_AUTO_MAX ? want : LD_RM_AUTO_MAX;
        want = want > LD_RM_AUTO_MIN ? want : LD_RM_AUTO_MIN;
        n = n > want ? n : want;
    }
    l->rdr.transfers = (unsigned)n;
    l->rdr.part = part;
    /* the ring: the parts of the transfers a source asked for, else the default goal */
    l->rdr.goal = (set > LD_RM_GOAL_PARTS ? set : LD_RM_GOAL_PARTS) * part;
}

/* The remote reads' transfers and part size (remote_reads); 0 when every source is local. */
static unsigned remote_inflight(const sp_loader *l, uint64_t *part)
{
    *part = l->rdr.part;
    return l->rdr.transfers;
}

/* Shard si of ds, global shard i, in a lazy source (a dataset, local or remote, whose manifest
 * records its largest blocks): its blocks' entries from the manifest alone (sample counts), the
 * index itself read (local) or fetched (remote) when the reader first needs it (ld_pipeline.c), so
 * that the open reads no index (remote: makes no request per shard; local: holds no index). b and
 * first: the global block and sample numbers, advanced past the shard. */
static void lazy_shard(sp_loader *l, sp_dataset *ds, uint64_t si, uint64_t i, uint64_t *b, uint64_t *first)
{
    uint64_t fb, n;
    ds_shard_blocks(ds, si, &fb, &n);
    for (uint64_t k = 0; k < n; k++, (*b)++) {
        l->tab.block_samples[*b] = ds_block_samples(ds, fb + k);
        l->tab.block_first[*b] = *first;
        l->tab.block_shard[*b] = (uint32_t)i;
        l->tab.block_entry[*b] = NULL;
        *first += l->tab.block_samples[*b];
        if (l->tab.block_samples[*b] > l->tab.max_block_samples)
            l->tab.max_block_samples = l->tab.block_samples[*b];
    }
}

/* The tail a lazy remote source's shards need for one GET to fetch each whole index: the largest
 * of them (ds_shard_tail_len, from the manifest), at least FMT_TAIL_READ, at most
 * LD_RM_TAILS_BYTES (a shard whose index is larger, above some 87,000 blocks, has its remainder
 * read by a second GET). */
static uint64_t lazy_tail_size(const sp_loader *l)
{
    uint64_t size = FMT_TAIL_READ;
    for (uint32_t d = 0; d < nsources(l); d++) {
        sp_dataset *ds = source(l, d);
        uint32_t max_stored, max_raw;
        if (!ds_site(ds) || !ds_block_bounds(ds, &max_stored, &max_raw))
            continue;
        for (uint64_t i = 0; i < sp_dataset_num_shards(ds); i++)
            if (ds_shard_tail_len(ds, i) > size)
                size = ds_shard_tail_len(ds, i);
    }
    return size < LD_RM_TAILS_BYTES ? size : LD_RM_TAILS_BYTES;
}

/* The lazy sources' index reads: which shards are read (opened, set already for the others); a
 * local source's block entries (entries, kept by the loader as each index is read and let go); a
 * remote one's tail buffers, two per transfer (at most LD_RM_TAILS_MAX, and no more than
 * LD_RM_TAILS_BYTES of them, at least one), and a mark per shard. */
static int lazy_buffers(sp_loader *l, bool local, bool remote)
{
    l->tab.opened = sp_calloc(l->tab.nshards, 1);
    if (local)
        l->tab.entries = sp_malloc(l->tab.nblocks * sizeof *l->tab.entries);
    if (!l->tab.opened || (local && !l->tab.entries))
        return sp_fail(&l->eb, SP_ENOMEM, "out of memory for the tables of %llu blocks",
                       (unsigned long long)l->tab.nblocks);
    for (uint64_t i = 0; i < l->tab.nshards; i++)
        l->tab.opened[i] = l->tab.shards[i] != NULL;
    if (!remote)
        return SP_OK;
    uint64_t part;
    unsigned n = 2 * remote_inflight(l, &part);
    l->rdr.tail_size = lazy_tail_size(l);
    uint64_t fit = LD_RM_TAILS_BYTES / l->rdr.tail_size;
    n = n < LD_RM_TAILS_MAX ? n : LD_RM_TAILS_MAX;
    l->rdr.ntails = n < fit ? n : fit > 1 ? (unsigned)fit : 1;
    l->rdr.tails = sp_malloc((size_t)(l->rdr.ntails * l->rdr.tail_size));
    l->rdr.tail_shard = sp_malloc(l->rdr.ntails * sizeof *l->rdr.tail_shard);
    l->rdr.idx_asked = sp_calloc(l->tab.nshards, 1);
    if (!l->rdr.tails || !l->rdr.tail_shard || !l->rdr.idx_asked)
        return sp_fail(&l->eb, SP_ENOMEM, "out of memory for the index reads of %llu shards",
                       (unsigned long long)l->tab.nshards);
    for (unsigned t = 0; t < l->rdr.ntails; t++)
        l->rdr.tail_shard[t] = UINT64_MAX;
    return SP_OK;
}

/* Flattens the block tables, of a mixture its sources one after another: every shard's index
 * (one tail read each) of a source whose manifest does not record its largest blocks (format 1.0,
 * or no manifest); a source whose manifest does is lazy (lazy_shard), local or remote. */
static int load_tables(sp_loader *l)
{
    uint32_t nds = nsources(l);
    sp_dataset *const *dss = l->mix.n ? l->mix_ds : &l->ds;
    for (uint32_t d = 0; d < nds; d++) {
        l->tab.nshards += sp_dataset_num_shards(dss[d]);
        l->tab.nblocks += sp_dataset_num_blocks(dss[d]);
    }
    l->tab.shards = sp_calloc(l->tab.nshards, sizeof *l->tab.shards);
    l->tab.block_samples = sp_malloc(l->tab.nblocks * sizeof *l->tab.block_samples);
    l->tab.block_first = sp_malloc(l->tab.nblocks * sizeof *l->tab.block_first);
    l->tab.block_shard = sp_malloc(l->tab.nblocks * sizeof *l->tab.block_shard);
    l->tab.block_entry = sp_malloc(l->tab.nblocks * sizeof *l->tab.block_entry);
    l->tab.marks = sp_calloc(l->tab.nshards, sizeof *l->tab.marks);
    l->rdr.fd = sp_malloc(l->tab.nshards * sizeof *l->rdr.fd);
    l->rdr.fd_direct = sp_calloc(l->tab.nshards, sizeof *l->rdr.fd_direct);
    l->rdr.fd_tick = sp_calloc(l->tab.nshards, sizeof *l->rdr.fd_tick);
    /* Before any early return: loader_free closes every descriptor that is not -1. */
    for (uint64_t i = 0; l->rdr.fd && i < l->tab.nshards; i++)
        l->rdr.fd[i] = -1;
    if (!l->tab.shards || !l->tab.block_samples || !l->tab.block_first || !l->tab.block_shard || !l->tab.block_entry ||
        !l->tab.marks || !l->rdr.fd || !l->rdr.fd_direct || !l->rdr.fd_tick)
        return sp_fail(&l->eb, SP_ENOMEM, "out of memory for the tables of %llu blocks",
                       (unsigned long long)l->tab.nblocks);
    uint64_t b = 0, first = 0, i = 0;
    bool lazy_local = false, lazy_remote = false;
    for (uint32_t d = 0; d < nds; d++) {
        sp_dataset *ds = dss[d];
        uint32_t max_stored, max_raw;
        bool lazy = ds_block_bounds(ds, &max_stored, &max_raw);
        int orc = lazy ? SP_OK : ds_shard_open_all(ds); /* a remote dataset's shard tails, fetched together */
        if (orc)
            return sp_fail(&l->eb, orc, "%s", sp_dataset_errmsg(ds));
        if (l->mix.n) {
            l->mix.first_block[d] = b;
            l->mix_first_sample[d] = first;
            l->mix_first_shard[d] = i;
        }
        if (lazy) {
            l->tab.lazy = true;
            *(ds_site(ds) ? &lazy_remote : &lazy_local) = true;
            if (sp_align_up(max_stored, LD_PAGE) > l->tab.max_read)
                l->tab.max_read = sp_align_up(max_stored, LD_PAGE);
            if (ds_site(ds) && sp_align_up(max_stored, LD_PAGE) > l->rdr.max_get)
                l->rdr.max_get = sp_align_up(max_stored, LD_PAGE);
            if (max_raw > l->tab.max_raw)
                l->tab.max_raw = max_raw;
        }
        for (uint64_t si = 0; si < sp_dataset_num_shards(ds); si++, i++) {
            if (lazy) {
                lazy_shard(l, ds, si, i, &b, &first);
                continue;
            }
            int rc = ds_shard_get(ds, si, &l->tab.shards[i]);
            if (rc)
                return sp_fail(&l->eb, rc, "%s", sp_dataset_errmsg(ds));
            const fmt_index *ix = &l->tab.shards[i]->index;
            l->tab.marks[i] = fmt_shard_mark_of(l->tab.shards[i]);
            for (uint64_t k = 0; k < ix->nblocks; k++, b++) {
                const fmt_block_entry *be = &ix->blocks[k];
                l->tab.block_samples[b] = be->nsamples;
                l->tab.block_first[b] = first;
                l->tab.block_shard[b] = (uint32_t)i;
                l->tab.block_entry[b] = be;
                first += be->nsamples;
                if (be->nsamples > l->tab.max_block_samples)
                    l->tab.max_block_samples = be->nsamples;
                if (sp_align_up(be->stored_size, LD_PAGE) > l->tab.max_read)
                    l->tab.max_read = sp_align_up(be->stored_size, LD_PAGE);
                if (ds_site(ds) && sp_align_up(be->stored_size, LD_PAGE) > l->rdr.max_get)
                    l->rdr.max_get = sp_align_up(be->stored_size, LD_PAGE);
                if (be->codec != SP_CODEC_STORED && be->raw_size > l->tab.max_raw)
                    l->tab.max_raw = be->raw_size;
            }
        }
    }
    if (l->mix.n) {
        l->mix.first_block[nds] = b;
        l->mix_first_sample[nds] = first;
        l->mix_first_shard[nds] = i;
    }
    remote_reads(l);
    return l->tab.lazy ? lazy_buffers(l, lazy_local, lazy_remote) : SP_OK;
}

/* ---------------------------------------------------------------- memory budget */

/* Every allocation the loader makes is counted here, before any is made, so that host_memory
 * bounds them all; what depends on a dataset's counts (samples per block, blocks) is sized from
 * those counts and refused when it does not fit. */
typedef struct ld_sizes {
    uint64_t win_cap, bpw, slots, slot_bytes, read, scratch, windows, tables, total;
    uint64_t shared; /* libjpeg's whole-image memory, shared by the workers (max_image_memory) */
    uint32_t win_blocks; /* blocks a window can hold: shuffle_window, or the most a rank is dealt */
} ld_sizes;

/* a * b, or UINT64_MAX when that does not fit (then it fits no budget either). */
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t r;
    return sp_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* One batch slot: its rows, their sample ids and bad-row marks, and its descriptor (the slot
 * itself, its entries in the slot map and the free stack, a DLTensor per field and the tensors'
 * shapes). */
static uint64_t slot_bytes(const sp_loader *l)
{
    return l->lay.batch_bytes + (uint64_t)l->lay.rows * (sizeof(uint64_t) + 1) + sizeof(ld_slot) +
           2 * sizeof(uint32_t) +
           l->lay.nout * sizeof(DLTensor) + l->lay.ndims * sizeof(int64_t);
}

/* A read ring of n bytes with its bookkeeping: at most one region and one job per page. */
static uint64_t read_cost(uint64_t n) { return n + n / LD_PAGE * (sizeof(ld_region) + sizeof(ld_job)); }

/* Per worker beside its buffers: a zstd context, the worker's handles, and its decoded-block entry. */
#define LD_WORKER_HANDLES 64u
static uint64_t worker_fixed(void)
{
    return ZSTD_estimateDCtxSize() + LD_WORKER_HANDLES + sizeof(ld_dec) + 2 * sizeof(uint32_t);
}

/* What a remote dataset's reads hold beside the read ring: the reader's larger table of reads in
 * flight and its table of blocks fetched ahead, the driver's requests with room for a message
 * each, libcurl's buffers per connection (LD_RM_PER_CONN), and a lazy open's tail buffers and
 * per-shard marks. */
static uint64_t remote_bytes(const sp_loader *l)
{
    uint64_t part;
    unsigned inflight = remote_inflight(l, &part);
    if (!inflight)
        return 0;
    return (uint64_t)LD_RM_DEPTH * (sizeof(ld_job) + 64 + SP_ERRMSG_MAX + 3 * sizeof(uint32_t)) +
           (uint64_t)inflight * LD_RM_PER_CONN +
           (uint64_t)l->rdr.ntails * (l->rdr.tail_size + sizeof(uint64_t)) + (l->rdr.ntails ? l->tab.nshards : 0) +
           LD_AHEAD_MAX * sizeof(ld_ahead);
}

/* The flattened block and shard tables (already allocated) and the plans: the consumer's, the
 * reader's two, and one more while it is built, with its shuffled order. */
static uint64_t tables_bytes(const sp_loader *l)
{
    uint64_t per_block = 2 * sizeof(uint32_t) + sizeof(uint64_t) + sizeof(void *);
    uint64_t per_shard = sizeof(void *) + sizeof(int) + sizeof(bool) + sizeof(uint64_t) + sizeof(fmt_shard_mark);
    /* lazy sources: the shards read; of local ones, the block entries the loader keeps of each
     * index and the dataset's own tables (paths, counts) that stand in for the indexes */
    uint64_t lazy_local = (l->tab.lazy ? l->tab.nshards : 0) + (l->tab.entries ? l->tab.nblocks * sizeof(fmt_block_entry) : 0);
    for (uint32_t d = 0; d < nsources(l); d++) {
        const sp_dataset *ds = source(l, d);
        uint32_t max_stored, max_raw;
        if (!ds_site(ds) && ds_block_bounds(ds, &max_stored, &max_raw))
            lazy_local += ds_table_bytes(ds);
    }
    uint64_t per = l->cfg.parts / l->cfg.world;
    uint64_t pads = l->cfg.pad ? per : 0; /* rank_pad: a block and a window more a partition */
    /* the epoch's places: its blocks, a mixture's repeated ones (mix_epoch_samples) again */
    uint64_t places = ld_plan_places(l->mix.n ? &l->mix : NULL, l->tab.block_samples, l->tab.nblocks);
    uint64_t plan = (places + per + pads) * (2 * sizeof(uint64_t) + sizeof(uint32_t)) +
                    (places / l->cfg.window_blocks + 2 * per + pads + 1) * sizeof(ld_pwin); /* ld_plan_build */
    /* the block order and its offsets; a mixture's passes over its sources */
    uint64_t building = (2 * places + 1) * sizeof(uint64_t) + (l->mix.n ? l->tab.nblocks * sizeof(uint64_t) : 0);
    return l->tab.nblocks * per_block + l->tab.nshards * per_shard + 4 * plan + building + remote_bytes(l) +
           lazy_local + ld_cache_bytes(l, plan);
}

static uint64_t sizes_total(const sp_loader *l, ld_sizes *z)
{
    z->windows =
        (3ull * z->win_cap + 2ull * z->win_blocks + (uint64_t)l->cfg.threads * z->bpw) * sizeof(uint32_t);
    z->total = add_sat(mul_sat(z->slots, z->slot_bytes),
                       read_cost(z->read) + z->scratch + z->shared + z->windows + z->tables);
    return z->total;
}

/* The refusal names the minimum as the sum of its parts, each part with its size, so that they
 * add up to it (each rounded as printed). */
static int refuse_minimum(sp_loader *l, const ld_sizes *z)
{
    char a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[32], i[32], k[32];
    const int n = l->cfg.threads;
    char image[96] = "";
    if (l->cfg.has_image)
        snprintf(image, sizeof image, " + %s for max_image_memory (shared by the workers)",
                 human(z->shared, i, sizeof i));
    return sp_fail(&l->eb, SP_ELIMIT,
                   "%s%shost_memory %s cannot hold one shuffle window and its batches: need at least %s = %s for "
                   "%llu batch slots (each %s of rows and %llu bytes of ids and descriptors, for a window of %u "
                   "block%s of up to %u samples) + %s for the read ring (two of the largest block, %s) + %s for %d "
                   "worker%s buffers of %s%s%s + %s for tables; raise host_memory, or lower batch_size%s%s%s",
                   l->stats.s.memory_note, l->stats.s.memory_note[0] ? "; " : "",
                   human(l->cfg.host_memory, a, sizeof a), human(z->total, b, sizeof b),
                   human(mul_sat(z->slots, z->slot_bytes), c, sizeof c), (unsigned long long)z->slots,
                   human(l->lay.batch_bytes, d, sizeof d), (unsigned long long)(z->slot_bytes - l->lay.batch_bytes),
                   z->win_blocks, z->win_blocks == 1 ? "" : "s", l->tab.max_block_samples,
                   human(read_cost(z->read), e, sizeof e), human(l->tab.max_read, f, sizeof f),
                   human(z->scratch, g, sizeof g), n, n == 1 ? "'s" : "s'", human(z->scratch / (uint64_t)n, h, sizeof h),
                   l->cfg.threads_auto ? " (threads=0, cut to what fits)" : "", image,
                   human(z->windows + z->tables, k, sizeof k), z->win_blocks > 1 ? ", shuffle_window" : "",
                   n > 1 && !l->cfg.threads_auto ? ", threads" : "", l->cfg.has_image ? " or max_image_memory" : "");
}

/* threads=0 and the usable cores' workers do not fit host_memory beside the smallest pools: as
 * many as fit (at least one), leaving a window of batches of read-ahead where that still leaves
 * one; the threads note says so. The new minimum. */
static uint64_t fit_auto_threads(sp_loader *l, ld_sizes *z, uint64_t per_worker)
{
    uint64_t each = per_worker + z->bpw * sizeof(uint32_t); /* its buffers and its row counters */
    uint64_t others = z->total - (uint64_t)l->cfg.threads * each;
    uint64_t room = l->cfg.host_memory > others ? l->cfg.host_memory - others : 0;
    uint64_t ahead = mul_sat(z->bpw, z->slot_bytes);
    uint64_t n = room > ahead && (room - ahead) / each >= 1 ? (room - ahead) / each : room / each;
    if (n < 1)
        n = 1;
    if (n >= (uint64_t)l->cfg.threads)
        return z->total;
    char a[32], b[32];
    size_t len = strlen(l->stats.s.threads_note);
    snprintf(l->stats.s.threads_note + len, sizeof l->stats.s.threads_note - len,
             "; %llu of those %d workers fit host_memory %s (%s each): threads=%llu", (unsigned long long)n,
             l->cfg.threads, human(l->cfg.host_memory, a, sizeof a), human(each, b, sizeof b), (unsigned long long)n);
    l->cfg.threads = (int)n;
    l->stats.s.threads = (int)n;
    z->scratch = n * per_worker;
    return sizes_total(l, z);
}

/* host_memory=0 and the default budget (an eighth of the memory this process may take) cannot hold
 * the configuration's smallest pools: the budget becomes what they need, as long as that is at most
 * three quarters of that memory (else that much, and the refusal names both). `one` is the need with
 * a single worker: with threads=0 and room for it, the workers are cut first (fit_auto_threads), as
 * they always were; only batches and windows larger than the default grow it. The memory note says
 * so. */
static void grow_auto_budget(sp_loader *l, uint64_t need, uint64_t one)
{
    if (l->cfg.threads_auto && one <= l->cfg.host_memory)
        return;
    uint64_t avail = sp_memory_available(NULL, 0);
    uint64_t cap = avail ? avail / 4 * 3 : l->cfg.host_memory;
    char a[32], b[32], c[32];
    snprintf(l->stats.s.memory_note, sizeof l->stats.s.memory_note,
             "host_memory=0: this configuration needs %s, more than the default %s (1/8 of the %s available, at "
             "most 2 GiB); %s",
             human(need, c, sizeof c), human(l->cfg.host_memory, a, sizeof a), human(avail, b, sizeof b),
             need <= cap ? "the budget is what it needs" : "that is more than 3/4 of the memory available");
    l->cfg.host_memory = need <= cap ? need : cap > l->cfg.host_memory ? cap : l->cfg.host_memory;
    l->stats.s.host_memory_bytes = l->cfg.host_memory;
}

static bool want_direct(const sp_loader *l);

/* The smallest pools that work, then more read-ahead and more batches while the budget allows:
 * at most two windows of blocks in the read ring, and one more window of batches. */
static int size_pools(sp_loader *l, ld_sizes *z)
{
    uint64_t total_samples = epoch_samples(l);
    /* A window holds at most the dataset's blocks. The plan keeps shuffle_window as given (the
     * order does not depend on this); only the memory stops at what a window can hold. */
    uint64_t rank_max = ld_plan_places(l->mix.n ? &l->mix : NULL, l->tab.block_samples, l->tab.nblocks);
    z->win_blocks = l->cfg.window_blocks < rank_max ? l->cfg.window_blocks : (uint32_t)rank_max;
    uint64_t cap = (uint64_t)z->win_blocks * l->tab.max_block_samples;
    /* A window's rows are its blocks' whole: a mixture's source whose take cuts its last block
     * (one a source) decodes that block's rows past the take too. */
    uint64_t rows = total_samples + (uint64_t)l->mix.n * l->tab.max_block_samples;
    z->win_cap = cap < rows ? cap : rows;
    /* A window's samples are one partition's, bp of them in each batch (bp = batch when each rank
     * holds one partition): the batches one window can touch. */
    uint64_t kept = cap < total_samples ? cap : total_samples;
    uint64_t bp = (uint64_t)l->cfg.batch * l->cfg.world / l->cfg.parts;
    uint64_t bpw = (kept + bp - 1) / bp + 1;
    z->bpw = bpw;
    z->slots = 2 * bpw + 2;
    z->slot_bytes = slot_bytes(l);
    z->read = 2 * l->tab.max_read;
    uint64_t per_worker = l->tab.max_raw + (l->cfg.has_image ? img_ctx_bytes_shared(&l->cfg.img) : 0) + worker_fixed();
    z->shared = l->cfg.has_image ? l->cfg.img.max_image_memory : 0;
    z->scratch = (uint64_t)l->cfg.threads * per_worker;
    z->tables = tables_bytes(l);
    uint64_t min = sizes_total(l, z);
    if (min > l->cfg.host_memory && l->cfg.host_memory_auto)
        grow_auto_budget(l, min, min - ((uint64_t)l->cfg.threads - 1) * (per_worker + z->bpw * sizeof(uint32_t)));
    if (min > l->cfg.host_memory && l->cfg.threads_auto)
        min = fit_auto_threads(l, z, per_worker);
    if (min > l->cfg.host_memory || z->win_cap > UINT32_MAX)
        return refuse_minimum(l, z);
    uint64_t spare = l->cfg.host_memory - min;
    uint64_t part;
    unsigned inflight = remote_inflight(l, &part);
    bool site = inflight > 0;
    /* Read-ahead that follows need: a local dataset read through the page cache is read far faster
     * than it is decoded, so one window of blocks ahead and two more keep the workers fed (every page
     * of the ring is touched as it turns: more would only be resident memory); O_DIRECT and remote
     * reads keep two windows. */
    uint64_t read_goal = (site || want_direct(l) ? 2ull * z->win_blocks : z->win_blocks + 2ull) * l->tab.max_read;
    /* remote: room for the bytes it aims to keep in flight, the bandwidth-latency product */
    if (site && read_goal < l->rdr.goal)
        read_goal = l->rdr.goal;
    if (read_goal > LD_READ_RING_MAX)
        read_goal = LD_READ_RING_MAX;
    if (read_goal > z->read) {
        uint64_t fits = spare / 2 / (read_cost(LD_PAGE)) * LD_PAGE; /* ring bytes half the spare pays for */
        uint64_t add = read_goal - z->read < fits ? read_goal - z->read : fits;
        add -= add % LD_PAGE;
        spare -= read_cost(z->read + add) - read_cost(z->read);
        z->read += add;
    }
    uint64_t extra = l->cfg.prefetch ? l->cfg.prefetch : bpw;
    if (mul_sat(extra, z->slot_bytes) > spare) {
        if (l->cfg.prefetch) {
            char a[32], b[32];
            return sp_fail(&l->eb, SP_ELIMIT, "prefetch %llu needs %s more than host_memory leaves (%s spare)",
                           (unsigned long long)l->cfg.prefetch, human(mul_sat(extra, z->slot_bytes), a, sizeof a),
                           human(spare, b, sizeof b));
        }
        extra = spare / z->slot_bytes;
    }
    z->slots += extra;
    sizes_total(l, z);
    return SP_OK;
}

/* Points slot i's batch at its rows, ids, bad-row marks and its share of the descriptor pools. */
static void init_slot(sp_loader *l, ld_slot *s, uint32_t i, uint8_t *mem, uint64_t *ids, uint8_t *bad)
{
    s->mem = mem;
    s->bad = bad;
    s->k = UINT64_MAX;
    s->state = SLOT_FREE;
    s->b.owner = l;
    s->b.slot = i;
    s->b.ids = ids;
    s->b.nfields = l->lay.nout;
    s->b.names = l->lay.names;
    s->b.t = l->pool.tensors + (size_t)i * l->lay.nout;
    int64_t *shape = l->pool.shapes + (size_t)i * l->lay.ndims;
    for (size_t f = 0; f < l->lay.nout; f++) {
        const ld_out *o = &l->lay.out[f];
        memcpy(shape, o->shape, (size_t)o->ndim * sizeof *shape);
        s->b.t[f] = (DLTensor){ .data = mem + o->offset, .device = { kDLCPU, 0 }, .ndim = o->ndim, .dtype = o->dt,
                                .shape = shape, .strides = NULL, .byte_offset = 0 };
        shape += o->ndim;
    }
}

/* The first pool that could not be allocated, for the message. */
typedef struct ld_oom {
    const char *what;
    uint64_t bytes;
} ld_oom;

static void *pool(ld_oom *o, void *p, const char *what, uint64_t bytes)
{
    if (!p && !o->what)
        *o = (ld_oom){ what, bytes };
    return p;
}

/* Where this loader reads from, for messages: its first shard, and how many more. */
static void loader_where(const sp_loader *l, char *buf, size_t len)
{
    const char *first = !l->tab.nshards ? "the dataset" : l->tab.shards[0] ? l->tab.shards[0]->path : ds_shard_path(l->ds, 0);
    if (l->tab.nshards > 1)
        snprintf(buf, len, "%s and %llu more shards", first, (unsigned long long)(l->tab.nshards - 1));
    else
        snprintf(buf, len, "%s", first);
}

static int pools_failed(sp_loader *l, const ld_oom *o, const ld_sizes *z)
{
    char where[SP_ERRMSG_MAX / 2], a[32], b[32], c[32];
    loader_where(l, where, sizeof where);
    return sp_fail(&l->eb, SP_ENOMEM,
                   "%s: out of memory allocating the loader's %s (%s, %llu bytes; %s of pools in all, host_memory %s): "
                   "the system has less memory than host_memory promises (check ulimit -v and the memory of "
                   "this process or container); lower host_memory, threads or batch_size",
                   where, o->what, human(o->bytes, a, sizeof a), (unsigned long long)o->bytes,
                   human(z->total, b, sizeof b), human(l->cfg.host_memory, c, sizeof c));
}

/* The reader's two window slots. False when one allocation failed (named in *o). */
static bool alloc_windows(sp_loader *l, const ld_sizes *z, ld_oom *o)
{
    for (int w = 0; w < 2; w++) {
        l->rdr.win[w].pos =
            pool(o, sp_malloc((size_t)z->win_cap * sizeof(uint32_t)), "window rows", z->win_cap * sizeof(uint32_t));
        l->rdr.win[w].row_base = pool(o, sp_malloc((size_t)z->win_blocks * sizeof(uint32_t)), "window blocks",
                                      z->win_blocks * sizeof(uint32_t));
        if (o->what)
            return false;
    }
    return true;
}

/* Each decode worker's buffers: decompression, row counters, zstd and image decoder contexts. */
static bool alloc_worker_buffers(sp_loader *l, const ld_sizes *z, ld_oom *o)
{
    for (int t = 0; t < l->cfg.threads; t++) {
        l->pool.scratch[t] =
            l->tab.max_raw ? pool(o, sp_malloc(l->tab.max_raw), "decompression buffer", l->tab.max_raw) : NULL;
        l->pool.row_counts[t] =
            pool(o, sp_malloc(z->bpw * sizeof(uint32_t)), "row counters", z->bpw * sizeof(uint32_t));
        l->pool.dctx[t] = pool(o, ZSTD_createDCtx(), "zstd context", ZSTD_estimateDCtxSize());
        if (o->what)
            return false;
        if (l->cfg.has_image && img_ctx_create(&l->cfg.img, &l->pool.imgc[t]) != SP_OK) {
            pool(o, NULL, "image decoder", img_ctx_bytes_shared(&l->cfg.img));
            return false;
        }
        if (l->cfg.has_image)
            img_ctx_share(l->pool.imgc[t], l->pool.img_share);
    }
    return true;
}

static int alloc_pools(sp_loader *l, const ld_sizes *z)
{
    ld_oom o = { 0 };
    l->ring.nslots = z->slots;
    l->pool.read_ring_bytes = z->read;
    l->rdr.win_cap = (uint32_t)z->win_cap;
    l->ring.nregions = (uint32_t)(z->read / LD_PAGE);
    l->ring.jobs_cap = l->ring.nregions;
    l->pool.read_ring = pool(&o, sp_aligned_alloc(LD_PAGE, z->read), "read ring", z->read);
    l->pool.batch_mem =
        pool(&o, sp_aligned_alloc(LD_PAGE, z->slots * l->lay.batch_bytes), "batch ring", z->slots * l->lay.batch_bytes);
    l->ring.slots =
        pool(&o, sp_calloc(z->slots, sizeof *l->ring.slots), "batch slots", z->slots * sizeof *l->ring.slots);
    l->ring.slot_of = pool(&o, sp_calloc(z->slots, sizeof *l->ring.slot_of), "batch slot map",
                           z->slots * sizeof *l->ring.slot_of);
    l->ring.free_slots = pool(&o, sp_calloc(z->slots, sizeof *l->ring.free_slots), "batch slot map",
                              z->slots * sizeof *l->ring.free_slots);
    l->pool.tensors = pool(&o, sp_calloc(z->slots * l->lay.nout, sizeof *l->pool.tensors), "batch tensor descriptors",
                           z->slots * l->lay.nout * sizeof *l->pool.tensors);
    l->pool.shapes = pool(&o, sp_calloc(z->slots * l->lay.ndims, sizeof *l->pool.shapes), "batch tensor shapes",
                          z->slots * l->lay.ndims * sizeof *l->pool.shapes);
    uint64_t *ids = pool(&o, sp_malloc(z->slots * l->lay.rows * sizeof *ids), "batch sample ids",
                         z->slots * l->lay.rows * sizeof *ids);
    uint8_t *bad = pool(&o, sp_calloc(z->slots * l->lay.rows, 1), "batch row marks", z->slots * l->lay.rows);
    l->ring.regions = pool(&o, sp_calloc(l->ring.nregions, sizeof *l->ring.regions), "read regions",
                           l->ring.nregions * sizeof *l->ring.regions);
    l->ring.jobs = pool(&o, sp_calloc(l->ring.jobs_cap, sizeof *l->ring.jobs), "read jobs",
                        l->ring.jobs_cap * sizeof *l->ring.jobs);
    l->rdr.win_perm = pool(&o, sp_malloc((size_t)z->win_cap * sizeof *l->rdr.win_perm), "window permutation",
                           z->win_cap * sizeof *l->rdr.win_perm);
    l->pool.scratch = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->pool.scratch), "worker table",
                           l->cfg.threads * sizeof(void *));
    l->pool.row_counts = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->pool.row_counts), "worker table",
                              l->cfg.threads * sizeof(void *));
    l->pool.bpw = z->bpw;
    l->pool.dctx = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->pool.dctx), "worker table",
                        l->cfg.threads * sizeof(void *));
    l->pool.imgc = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->pool.imgc), "worker table",
                        l->cfg.threads * sizeof(void *));
    l->thr.workers = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->thr.workers), "worker table",
                          l->cfg.threads * sizeof(pthread_t));
    l->pool.dec = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->pool.dec), "decoded-block table",
                       l->cfg.threads * sizeof *l->pool.dec);
    l->ring.dec_free = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->ring.dec_free), "worker table",
                            l->cfg.threads * sizeof(uint32_t));
    l->ring.parts = pool(&o, sp_calloc((size_t)l->cfg.threads, sizeof *l->ring.parts), "worker table",
                         l->cfg.threads * sizeof(uint32_t));
    if (l->cfg.has_image && !o.what && img_share_create(l->cfg.img.max_image_memory, &l->pool.img_share) != SP_OK)
        pool(&o, NULL, "image decoders' shared memory", sizeof(void *));
    bool ok = !o.what && alloc_windows(l, z, &o) && alloc_worker_buffers(l, z, &o);
    if (!ok) {
        sp_free(ids);
        sp_free(bad);
        return pools_failed(l, &o, z);
    }
    for (uint64_t i = 0; i < z->slots; i++)
        init_slot(l, &l->ring.slots[i], (uint32_t)i, l->pool.batch_mem + i * l->lay.batch_bytes, ids + i * l->lay.rows,
                  bad + i * l->lay.rows);
    l->stats.s.read_ring_bytes = z->read;
    l->stats.s.batch_ring_bytes = z->slots * l->lay.batch_bytes;
    l->stats.s.batch_ring_slots = z->slots;
    /* Prefetch follows need: one window of batches and two more to start with (the rows of slots
     * never used are never touched), growing while the consumer waits on the limit. A prefetch
     * given asks for its slots at once. */
    l->ring.slot_limit = l->cfg.prefetch || z->bpw + 2 > z->slots ? z->slots : z->bpw + 2;
    l->stats.s.batch_ring_limit = l->ring.slot_limit;
    l->stats.s.scratch_bytes = z->scratch + z->shared;
    l->stats.s.image_scratch_bytes =
        l->cfg.has_image ? (uint64_t)l->cfg.threads * img_ctx_bytes_shared(&l->cfg.img) + z->shared : 0;
    l->stats.s.host_allocated_bytes = z->total;
    return SP_OK;
}

/* direct_io=auto: O_DIRECT only for a dataset the page cache could not keep anyway. A dataset that
 * fits stays cached across epochs, and reading it through the cache measured 1.3x faster than
 * O_DIRECT from disk on every epoch (docs/performance.md). */
static bool want_direct(const sp_loader *l)
{
    if (ld_any_remote(l))
        return false;
    if (l->cfg.direct_mode >= 0)
        return l->cfg.direct_mode == 1;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < l->tab.nshards; i++) {
        sp_shard_info si = { sizeof si };
        uint64_t local, base;
        sp_dataset *ds = ld_shard_source(l, i, &local, &base);
        if (l->tab.shards[i])
            bytes += l->tab.shards[i]->file_size;
        else if (sp_dataset_shard_info(ds, local, &si) == SP_OK) /* a lazy source's, from its manifest */
            bytes += si.file_bytes;
    }
    uint64_t avail = sp_memory_available(NULL, 0);
    return avail && bytes > avail / 2;
}

/* Receive threads for the remote reads (remote_threads): -1 none (the reader drives every transfer
 * and makes libcurl's copy of every byte itself), 0 one per 8 usable cores of this rank (shared by
 * the local world as the workers are), 1 to 4, else the number set. rm_fetch gives each at least
 * 4 transfers. One receive thread already takes that copy off the reader: on 2 cores, raw tokens
 * over nginx went from 1.30-1.35 to 1.65-1.69 GB/s (docs/performance.md). */
static unsigned receive_threads(const sp_loader *l)
{
    if (l->cfg.remote_threads < 0)
        return 0;
    if (l->cfg.remote_threads > 0)
        return (unsigned)l->cfg.remote_threads;
    char note[SP_ERRMSG_MAX];
    int n = default_threads(l->cfg.local_world, note, sizeof note) / 8; /* this rank's cores, as threads=0 */
    return n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
}

static int open_io(sp_loader *l)
{
    uint64_t part;
    unsigned inflight = remote_inflight(l, &part);
    bool local = false; /* a source of local files */
    rm_site *site = NULL; /* the driver's own: the first remote source's (each request names its own) */
    for (uint32_t d = 0; d < nsources(l); d++) {
        rm_site *s = ds_site(source(l, d));
        local |= !s && sp_dataset_num_shards(source(l, d)) > 0;
        site = site ? site : s;
    }
    if (site) {
        if (rm_fetch_open_threads(site, LD_RM_DEPTH, inflight, receive_threads(l), &l->rdr.rf))
            return sp_fail(&l->eb, SP_ENOMEM, "out of memory setting up remote reads");
        l->stats.s.io = SP_IO_PREAD;
        unsigned nrecv = rm_fetch_threads(l->rdr.rf);
        char on[64];
        if (nrecv)
            snprintf(on, sizeof on, " on %u receive thread%s", nrecv, nrecv == 1 ? "" : "s");
        else
            snprintf(on, sizeof on, " driven by the reader");
        snprintf(l->stats.s.io_note, sizeof l->stats.s.io_note,
                 "remote: ranged GETs, %u in flight%s, adjacent blocks joined up to %llu KiB%s", rm_fetch_transfers(l->rdr.rf),
                 on, (unsigned long long)(part >> 10), local ? "; local sources: pread on the reader thread" : "");
        if (!local)
            return SP_OK;
    }
    l->rdr.direct = want_direct(l);
    char note[SP_ERRMSG_MAX];
    /* A mixture of local and remote sources: one reader thread waits on libcurl for the remote
     * reads, so the local ones are read by pread when reaped (never waited for) and not io_uring. */
    int rc = ld_io_open(&l->rdr.io, site ? SP_IO_PREAD : l->cfg.io_mode, l->pool.read_ring, l->pool.read_ring_bytes,
                        LD_IO_DEPTH, note, sizeof note);
    if (rc == SP_ENOTSUP)
        return sp_fail(&l->eb, rc, "io=uring was requested but %s", note);
    if (rc)
        return sp_fail(&l->eb, rc, "out of memory setting up I/O");
    if (site)
        return SP_OK; /* the remote note stays */
    l->stats.s.io = ld_io_mode(l->rdr.io);
    l->stats.s.direct_io = l->rdr.direct;
    snprintf(l->stats.s.io_note, sizeof l->stats.s.io_note, "%s", note);
    return SP_OK;
}

static void loader_free(sp_loader *l)
{
    if (!l)
        return;
    cu_close(l->dev); /* before the batch ring it pinned */
    l->dev = NULL;
    sp_trace_close(l->trace, NULL, 0); /* an open that failed still leaves a valid trace */
    l->trace = NULL;
    ld_io_close(l->rdr.io);
    rm_fetch_close(l->rdr.rf);
    ld_cache_close(l);
    sp_free(l->rdr.tails);
    sp_free(l->rdr.tail_shard);
    sp_free(l->rdr.idx_asked);
    for (uint64_t i = 0; l->rdr.fd && i < l->tab.nshards; i++)
        if (l->rdr.fd[i] >= 0)
            close(l->rdr.fd[i]);
    for (int t = 0; t < l->cfg.threads; t++) {
        if (l->pool.scratch)
            sp_free(l->pool.scratch[t]);
        if (l->pool.row_counts)
            sp_free(l->pool.row_counts[t]);
        if (l->pool.dctx)
            ZSTD_freeDCtx(l->pool.dctx[t]);
        if (l->pool.imgc)
            img_ctx_destroy(l->pool.imgc[t]);
    }
    if (l->ring.slots) {
        sp_free(l->ring.slots[0].b.ids);
        sp_free(l->ring.slots[0].bad);
    }
    for (int w = 0; w < 2; w++) {
        sp_free(l->rdr.win[w].pos);
        sp_free(l->rdr.win[w].row_base);
    }
    ld_plan_free(&l->cons.plan);
    ld_plan_free(&l->rdr.rplan[0]);
    ld_plan_free(&l->rdr.rplan[1]);
    sp_free(l->pool.scratch);
    sp_free(l->pool.row_counts);
    sp_free(l->pool.dctx);
    sp_free(l->pool.imgc);
    sp_free(l->thr.workers);
    sp_free(l->pool.dec);
    img_share_destroy(l->pool.img_share); /* after the contexts that drew from it */
    sp_free(l->ring.dec_free);
    sp_free(l->ring.parts);
    sp_free(l->rdr.win_perm);
    sp_free(l->ring.jobs);
    sp_free(l->ring.regions);
    sp_free(l->ring.slots);
    sp_free(l->ring.slot_of);
    sp_free(l->ring.free_slots);
    sp_free(l->pool.tensors);
    sp_free(l->pool.shapes);
    sp_free(l->pool.batch_mem);
    sp_free(l->pool.read_ring);
    sp_free(l->rdr.fd);
    sp_free(l->rdr.fd_direct);
    sp_free(l->rdr.fd_tick);
    sp_free(l->tab.block_entry);
    sp_free(l->tab.block_shard);
    sp_free(l->tab.block_first);
    sp_free(l->tab.block_samples);
    sp_free(l->tab.shards);
    sp_free(l->tab.opened);
    sp_free(l->tab.entries);
    sp_free(l->tab.marks);
    if (l->mix.n)
        for (uint32_t d = 1; d < l->mix.n; d++)
            sp_dataset_close(l->mix_ds[d]);
    sp_dataset_close(l->ds);
    pthread_mutex_destroy(&l->ring.mu);
    pthread_mutex_destroy(&l->bench_mu);
    sp_free(l->bench_at);
    pthread_cond_destroy(&l->ring.c_reader);
    pthread_cond_destroy(&l->ring.c_worker);
    pthread_cond_destroy(&l->ring.c_consumer);
    sp_free(l);
}

static sp_loader *loader_new(void)
{
    sp_loader *l = sp_calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->ring.mu, NULL);
    pthread_mutex_init(&l->bench_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->ring.c_consumer, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&l->ring.c_reader, NULL);
    pthread_cond_init(&l->ring.c_worker, NULL);
    l->ring.waiting_for = UINT64_MAX;
    l->cons.eb = &l->eb;
    l->cons.track = LD_TRACK_CONSUMER;
    l->cfg.device = -1;
    l->pid = sp_proc_self();
    return l;
}

/* The trace parameter, else SHARDPACK_TRACE: a timeline of every thread, written at close. */
static int open_trace(sp_loader *l, const sp_params *params)
{
    sp_trace_ready(); /* NVTX set up here, before any of the loader's threads exists */
    const char *path = sp_params_get_str(params, SP_PARAM_TRACE);
    if (!path || !*path)
        path = getenv("SHARDPACK_TRACE");
    if (!path || !*path)
        return SP_OK;
    unsigned tracks = LD_TRACK_WORKER + (unsigned)l->cfg.threads;
    const char *cap = getenv("SHARDPACK_TRACE_EVENTS"); /* the events kept, all threads together */
    int rc = sp_trace_open(&l->trace, path, tracks, cap ? strtoull(cap, NULL, 10) : 0, l->name, &l->eb);
    if (rc)
        return rc;
    sp_trace_track(l->trace, LD_TRACK_CONSUMER, "consumer (next)");
    sp_trace_track(l->trace, LD_TRACK_READER, "reader");
    if (l->cfg.device >= 0)
        sp_trace_track(l->trace, LD_TRACK_COPY, "device copy thread");
    for (int i = 0; i < l->cfg.threads; i++) {
        char name[32];
        snprintf(name, sizeof name, "worker %d", i);
        sp_trace_track(l->trace, LD_TRACK_WORKER + (unsigned)i, name);
    }
    return SP_OK;
}

/* Everything after the dataset is open: tables, budget, pools, I/O. */
static int loader_setup(sp_loader *l, const sp_params *params)
{
    l->tab.schema = sp_dataset_schema(l->ds);
    l->cfg.prefetch = (uint64_t)sp_params_get(params, SP_PARAM_PREFETCH);
    int rc = read_config(l, params);
    if (rc == SP_OK)
        rc = ld_cache_config(l, params);
    if (rc == SP_OK)
        rc = plan_outputs(l);
    if (rc == SP_OK && l->cfg.has_image)
        use_image_sizes(l);
    if (rc == SP_OK)
        rc = load_tables(l);
    if (rc == SP_OK && epoch_samples(l) < l->cfg.parts)
        rc = sp_fail(&l->eb, SP_EINVAL, "the %s has %llu samples, fewer than the %u partitions (world size %u)",
                     l->mix.n ? "mixture's epoch" : "dataset", (unsigned long long)epoch_samples(l), l->cfg.parts,
                     l->cfg.world);
    ld_sizes z;
    if (rc == SP_OK)
        rc = size_pools(l, &z);
    if (rc == SP_OK)
        rc = alloc_pools(l, &z);
    if (rc == SP_OK)
        rc = open_trace(l, params);
    if (rc == SP_OK)
        rc = open_io(l);
    if (rc == SP_OK)
        rc = ld_cache_open(l);
    if (rc == SP_OK && l->cfg.device >= 0) {
        cu_config cfg = { l->cfg.device, l->cfg.dev_dtype, l->cfg.dev_layout, l->cfg.dev_img_dtype, l->cfg.dev_budget };
        rc = cu_open(l, &cfg, &l->dev);
    }
    l->cons.done = l->cfg.epochs != 0 && l->cons.epoch >= l->cfg.epochs;
    return rc;
}

static int loader_finish_open(sp_loader *l, int rc, const sp_params *params, sp_loader **out)
{
    if (rc == SP_OK && !l->mix.n && params && sp_params_get(params, SP_PARAM_MIX_EPOCH_SAMPLES))
        rc = sp_fail(&l->eb, SP_EINVAL, "mix_epoch_samples=%lld: only a mixture (sp_loader_open_mix) has an epoch "
                     "of a sample count; one dataset's epoch is all of it",
                     (long long)sp_params_get(params, SP_PARAM_MIX_EPOCH_SAMPLES));
    if (rc == SP_OK)
        rc = loader_setup(l, params);
    if (rc) {
        loader_free(l);
        return rc;
    }
    *out = l;
    return SP_OK;
}

int sp_loader_open(const char *path, const sp_params *params, sp_loader **out)
{
    sp_clear_error();
    if (!out || !path)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_open: NULL argument");
    *out = NULL;
    sp_loader *l = loader_new();
    if (!l)
        return sp_fail(NULL, SP_ENOMEM, "%s: out of memory", path);
    char shown[4096];
    snprintf(l->name, sizeof l->name, "%s", rm_shown(path, shown, sizeof shown)); /* no user:password@ */
    int rc = sp_dataset_open(path, params, &l->ds); /* a glob of shards too */
    if (rc)
        sp_fail_keep(&l->eb, rc); /* "%s" of sp_last_error() into itself was undefined */
    return loader_finish_open(l, rc, params, out);
}

int sp_loader_open_shards(const char *const *paths, size_t n, const sp_params *params, sp_loader **out)
{
    sp_clear_error();
    if (!out || (!paths && n))
        return sp_fail(NULL, SP_EINVAL, "sp_loader_open_shards: NULL argument");
    *out = NULL;
    sp_loader *l = loader_new();
    if (!l)
        return sp_fail(NULL, SP_ENOMEM, "sp_loader_open_shards: out of memory");
    char shown[4096]; /* no user:password@ in messages */
    if (n && paths && paths[0])
        snprintf(l->name, sizeof l->name, n > 1 ? "%s and %zu more shards" : "%s",
                 rm_shown(paths[0], shown, sizeof shown), n - 1);
    int rc = sp_dataset_open_shards(paths, n, params, &l->ds);
    if (rc)
        sp_fail_keep(&l->eb, rc); /* "%s" of sp_last_error() into itself was undefined */
    return loader_finish_open(l, rc, params, out);
}

/* Sources' schemas must agree: the same fields, kinds, dtypes and shapes. */
static int check_mix_schema(sp_loader *l, const char *const *paths, uint32_t d)
{
    const sp_schema *a = sp_dataset_schema(l->mix_ds[0]), *b = sp_dataset_schema(l->mix_ds[d]);
    size_t n = a->n > b->n ? a->n : b->n;
    for (size_t i = 0; i < n; i++) {
        const sp_field *x = i < a->n ? &a->f[i] : NULL, *y = i < b->n ? &b->f[i] : NULL;
        if (x && y && !strcmp(x->name, y->name) && x->kind == y->kind && x->dtype == y->dtype &&
            x->ndim == y->ndim && !memcmp(x->shape, y->shape, x->ndim * sizeof *x->shape))
            continue;
        char p0[4096], pd[4096]; /* no user:password@ in messages */
        return sp_fail(&l->eb, SP_EINVAL, "mixture: %s and %s have different schemas: field %zu is %s in the first "
                       "and %s in the other (sources must agree on every field, name, kind, dtype and shape)",
                       rm_shown(paths[0], p0, sizeof p0), rm_shown(paths[d], pd, sizeof pd), i, x ? x->name : "missing",
                       y ? y->name : "missing");
    }
    return SP_OK;
}

/* The epoch's draw (sp_loader_open_mix): floor(w[d] * M) of source d, M = min N[d] / w[d]; with
 * mix_epoch_samples M, each source's share of M by weight, rounded so that they add up to M (the
 * largest remainders get the samples left, the first source on a tie). */
static void mix_takes(sp_loader *l, uint64_t epoch_samples)
{
    double sum = 0, m = -1;
    for (uint32_t d = 0; d < l->mix.n; d++)
        sum += l->mix_w[d];
    l->mix.epoch_samples = epoch_samples;
    if (epoch_samples) {
        double rest[LD_MIX_MAX];
        uint64_t given = 0;
        for (uint32_t d = 0; d < l->mix.n; d++) {
            double share = l->mix_w[d] / sum * (double)epoch_samples;
            l->mix.take[d] = (uint64_t)share;
            if (l->mix.take[d] > epoch_samples)
                l->mix.take[d] = epoch_samples;
            rest[d] = share - (double)l->mix.take[d];
            given += l->mix.take[d];
        }
        while (given < epoch_samples) {
            uint32_t best = 0;
            for (uint32_t d = 1; d < l->mix.n; d++)
                if (rest[d] > rest[best])
                    best = d;
            l->mix.take[best]++;
            rest[best] -= 1;
            given++;
        }
        while (given > epoch_samples) { /* only from rounding of huge weights */
            uint32_t worst = 0;
            for (uint32_t d = 1; d < l->mix.n; d++)
                if (l->mix.take[d] && (rest[d] < rest[worst] || !l->mix.take[worst]))
                    worst = d;
            l->mix.take[worst]--;
            rest[worst] += 1;
            given--;
        }
        return;
    }
    for (uint32_t d = 0; d < l->mix.n; d++) {
        double v = (double)sp_dataset_num_samples(l->mix_ds[d]) / (l->mix_w[d] / sum);
        m = m < 0 || v < m ? v : m;
    }
    for (uint32_t d = 0; d < l->mix.n; d++) {
        uint64_t n = sp_dataset_num_samples(l->mix_ds[d]);
        double t = l->mix_w[d] / sum * m + 1e-6; /* the source that runs out takes all of it */
        l->mix.take[d] = (uint64_t)t < n ? (uint64_t)t : n;
    }
}

int sp_loader_open_mix(const char *const *paths, const double *weights, size_t n, const sp_params *params,
                       sp_loader **out)
{
    sp_clear_error();
    if (!out || !paths || !weights)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_open_mix: NULL argument");
    *out = NULL;
    if (n < 1 || n > SP_MIX_MAX)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_open_mix: %zu sources; a mixture has 1 to %d", n, SP_MIX_MAX);
    for (size_t d = 0; d < n; d++)
        if (!paths[d] || !(weights[d] > 0) || weights[d] > 1e300) {
            char shown[4096]; /* no user:password@ in messages */
            return sp_fail(NULL, SP_EINVAL, "sp_loader_open_mix: source %zu (%s) has weight %g; weights are positive "
                           "finite numbers", d, paths[d] ? rm_shown(paths[d], shown, sizeof shown) : "NULL", weights[d]);
        }
    sp_loader *l = loader_new();
    if (!l)
        return sp_fail(NULL, SP_ENOMEM, "sp_loader_open_mix: out of memory");
    char shown[4096]; /* no user:password@ in messages */
    snprintf(l->name, sizeof l->name, n > 1 ? "%s and %zu more (a mixture)" : "%s", rm_shown(paths[0], shown, sizeof shown),
             n - 1);
    int rc = SP_OK;
    for (uint32_t d = 0; d < n && rc == SP_OK; d++) {
        l->mix_w[d] = weights[d];
        rc = sp_dataset_open(paths[d], params, &l->mix_ds[d]);
        if (rc)
            sp_fail_keep(&l->eb, rc);
        else
            l->mix.n = d + 1;
        if (d == 0)
            l->ds = l->mix_ds[0];
        if (rc == SP_OK && d > 0)
            rc = check_mix_schema(l, paths, d);
    }
    if (rc == SP_OK) {
        mix_takes(l, params ? (uint64_t)sp_params_get(params, SP_PARAM_MIX_EPOCH_SAMPLES) : 0);
        l->stats.s.sources = (int)n;
    }
    return loader_finish_open(l, rc, params, out);
}

/* ---------------------------------------------------------------- the consumer contract */

/* SP_ESTATE when l was opened in another process: this one is a fork() child holding a copy of
 * the loader without its threads, whose mutex and condition variables may have been copied in use.
 * Nothing of the copy is touched (the ring, its registered buffers and the descriptors are the
 * parent's too); the message goes to the thread's sp_last_error() only. */
static int foreign(const sp_loader *l, const char *fn) { return sp_proc_check(l->pid, fn, "loader"); }

/* Enters a consumer call (shardpack.h: one at a time per loader), or returns SP_EBUSY when another
 * thread is inside one. Refusing reads and writes nothing of the loader: its error buffer belongs
 * to the call in flight, so the message goes to this thread's sp_last_error() only. In a forked
 * child every consumer call is refused first: the busy flag may be a copy of a parent's call. */
static int consumer_enter(const sp_loader *l, const char *fn)
{
    int rc = foreign(l, fn);
    if (rc)
        return rc;
    int idle = 0;
    if (atomic_compare_exchange_strong_explicit(&((sp_loader *)l)->cons.busy, &idle, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return SP_OK;
    return sp_fail(NULL, SP_EBUSY,
                   "%s: another thread is inside a call on this loader (next, set_epoch, the state and count "
                   "functions and close take turns: one consumer thread at a time)", fn);
}

/* Leaves a consumer call, passing its result through. */
static int consumer_leave(const sp_loader *l, int rc)
{
    atomic_store_explicit(&((sp_loader *)l)->cons.busy, 0, memory_order_release);
    return rc;
}

/* Batches leased to the caller. Under mu: a release on another thread may be returning the last
 * one, and close must not free the loader before that release has let go of mu. */
static uint64_t host_leases(sp_loader *l)
{
    pthread_mutex_lock(&l->ring.mu);
    uint64_t n = l->ring.leases;
    pthread_mutex_unlock(&l->ring.mu);
    return n;
}

int sp_loader_close(sp_loader *l)
{
    sp_clear_error();
    if (!l)
        return SP_OK;
    int rc = consumer_enter(l, "sp_loader_close");
    if (rc)
        return rc; /* the call in flight still uses the loader: nothing is freed */
    uint64_t leased = l->dev ? cu_leases(l->dev) : host_leases(l);
    if (leased)
        return consumer_leave(l, sp_fail(&l->eb, SP_EBUSY,
                                         "sp_loader_close: %llu batch(es) still leased; release them before closing",
                                         (unsigned long long)leased));
    cu_close(l->dev); /* its copy thread gives the host stage its batches back; the GPU is done */
    l->dev = NULL;
    if (l->thr.running)
        ld_pipeline_stop(l);
    char why[SP_ERRMSG_MAX];
    rc = sp_trace_close(l->trace, why, sizeof why);
    l->trace = NULL;
    loader_free(l);
    return rc ? sp_fail(NULL, rc, "sp_loader_close: the loader is closed, but %s", why) : SP_OK;
}

const char *sp_loader_errmsg(const sp_loader *l) { return l ? l->eb.msg : ""; }

/* ---------------------------------------------------------------- epochs */

int ld_epoch_plan(const sp_loader *l, uint64_t epoch, ld_plan *p, char *why, size_t whylen)
{
    return ld_rank_plan(l, epoch, l->cfg.rank, p, why, whylen);
}

int ld_rank_plan(const sp_loader *l, uint64_t epoch, uint32_t rank, ld_plan *p, char *why, size_t whylen)
{
    const ld_config *c = &l->cfg;
    ld_plan_cfg cfg = { c->seed, epoch, rank, c->world, c->batch, c->window_blocks, c->parts, c->shuffle,
                        c->drop_last, c->pad, l->mix.n ? &l->mix : NULL };
    return ld_plan_build(p, &cfg, l->tab.block_samples, l->tab.nblocks, why, whylen);
}

static int ensure_plan(sp_loader *l)
{
    if (l->cons.plan_valid && l->cons.plan.cfg.epoch == l->cons.epoch)
        return SP_OK;
    ld_plan_free(&l->cons.plan);
    l->cons.plan_valid = false;
    char why[SP_ERRMSG_MAX];
    int rc = ld_epoch_plan(l, l->cons.epoch, &l->cons.plan, why, sizeof why);
    if (rc)
        return sp_fail(l->cons.eb, rc, "%s", why);
    l->cons.plan_valid = true;
    pthread_mutex_lock(&l->ring.mu); /* sp_loader_stats_get may read st from any thread */
    l->stats.s.samples_dropped_per_epoch = l->cons.plan.dropped;
    l->stats.s.samples_padded_per_epoch = l->cons.plan.padded;
    pthread_mutex_unlock(&l->ring.mu);
    return SP_OK;
}

/* Starts the threads at (epoch, start_k); they then run on through every later epoch. */
static int start_run(sp_loader *l)
{
    int rc = ensure_plan(l);
    if (rc)
        return rc;
    if (l->cons.start_k > l->cons.plan.nbatches)
        return sp_fail(l->cons.eb, SP_ERANGE, "resume batch %llu is past the epoch's %llu batches",
                       (unsigned long long)l->cons.start_k, (unsigned long long)l->cons.plan.nbatches);
    l->cons.next_k = l->cons.start_k;
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.epoch = l->cons.epoch;
    if (l->stats.t_first == 0)
        l->stats.t_first = sp_now();
    pthread_mutex_unlock(&l->ring.mu);
    pthread_mutex_lock(&l->bench_mu); /* the read ring is the pipeline's from now on */
    sp_free(l->bench_at);
    l->bench_at = NULL;
    l->bench_used = 0;
    pthread_mutex_unlock(&l->bench_mu);
    rc = ld_pipeline_start(l);
    if (rc) {
        ld_pipeline_stop(l);
        return rc;
    }
    return SP_OK;
}

/* Moves to epoch e at batch k; the pipeline restarts there on the next call to next(). */
static void reposition(sp_loader *l, uint64_t e, uint64_t k)
{
    if (l->thr.running)
        ld_pipeline_stop(l);
    l->cons.epoch = e;
    l->cons.start_k = k;
    l->cons.next_k = k;
    l->cons.done = l->cfg.epochs != 0 && e >= l->cfg.epochs;
}

/* Moves the consumer to epoch e at batch k, whichever stage it takes batches from. */
static void seek(sp_loader *l, uint64_t e, uint64_t k)
{
    if (l->dev)
        cu_halt(l->dev);
    reposition(l, e, k);
    if (l->dev)
        cu_seek(l->dev, e, k);
}

/* The consumer reached the end of its epoch: the threads go on (they are already reading the
 * next one) unless that was the last epoch. */
static void end_epoch(sp_loader *l)
{
    l->cons.cons_base += l->cons.plan.nbatches;
    l->cons.epoch++;
    pthread_mutex_lock(&l->ring.mu);
    l->stats.s.epoch = l->cons.epoch;
    pthread_mutex_unlock(&l->ring.mu);
    l->cons.start_k = 0;
    l->cons.next_k = 0;
    l->cons.done = l->cfg.epochs != 0 && l->cons.epoch >= l->cfg.epochs;
    if (l->cons.done && l->thr.running)
        ld_pipeline_stop(l);
}

/* Epochs are counted in 64 bits and the reader plans one epoch ahead: a position past this one
 * could wrap to epoch 0. Even at a billion one-batch epochs a second, nothing reaches it. */
#define LD_EPOCH_MAX ((uint64_t)INT64_MAX)

/* Whether batch k of epoch e is a position this loader could be at: an epoch it counts to, and a
 * batch of that epoch or its end; past the last epoch, only its start (where a finished loader is). */
static int check_position(sp_loader *l, uint64_t e, uint64_t k, const char *what)
{
    if (e > LD_EPOCH_MAX)
        return sp_fail(&l->eb, SP_ERANGE, "%s epoch %llu is past the largest epoch, 2^63 - 1", what,
                       (unsigned long long)e);
    if (l->cfg.epochs != 0 && e >= l->cfg.epochs) {
        if (k == 0)
            return SP_OK;
        return sp_fail(&l->eb, SP_ERANGE, "%s position, batch %llu of epoch %llu, is past the last epoch (epochs=%llu)",
                       what, (unsigned long long)k, (unsigned long long)e, (unsigned long long)l->cfg.epochs);
    }
    if (k == 0)
        return SP_OK;
    ld_plan plan = { 0 };
    char why[SP_ERRMSG_MAX];
    int rc = ld_epoch_plan(l, e, &plan, why, sizeof why);
    uint64_t n = plan.nbatches;
    ld_plan_free(&plan);
    if (rc)
        return sp_fail(&l->eb, rc, "%s", why);
    if (k > n)
        return sp_fail(&l->eb, SP_ERANGE, "%s position, batch %llu of epoch %llu, is past the epoch's %llu batches", what,
                       (unsigned long long)k, (unsigned long long)e, (unsigned long long)n);
    return SP_OK;
}

int sp_loader_set_epoch(sp_loader *l, uint64_t epoch)
{
    sp_clear_error();
    if (!l)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_set_epoch: NULL loader");
    int rc = consumer_enter(l, "sp_loader_set_epoch");
    if (rc)
        return rc;
    rc = check_position(l, epoch, 0, "sp_loader_set_epoch:");
    if (rc)
        return consumer_leave(l, rc);
    seek(l, epoch, 0);
    return consumer_leave(l, SP_OK);
}

/* The consumer's epoch's plan, for the counting functions. With a device stage its copy thread
 * owns l->cons.plan (it runs ahead), so the count comes from a plan of the caller's own. */
static int count_plan(const sp_loader *l, uint64_t *batches, uint64_t *samples)
{
    sp_loader *m = (sp_loader *)l; /* planning caches; the observable state does not change */
    if (!l->dev) {
        int rc = ensure_plan(m);
        *batches = rc ? 0 : m->cons.plan.nbatches;
        *samples = rc ? 0 : m->cons.plan.samples;
        return rc;
    }
    uint64_t epoch, k;
    cu_position(l->dev, &epoch, &k);
    ld_plan plan = { 0 };
    char why[SP_ERRMSG_MAX];
    int rc = ld_epoch_plan(l, epoch, &plan, why, sizeof why);
    *batches = rc ? 0 : plan.nbatches;
    *samples = rc ? 0 : plan.samples;
    ld_plan_free(&plan);
    return rc;
}

uint64_t sp_loader_batches_per_epoch(const sp_loader *l)
{
    uint64_t b = 0, s = 0;
    if (!l)
        sp_fail(NULL, SP_EINVAL, "sp_loader_batches_per_epoch: NULL loader");
    else if (consumer_enter(l, "sp_loader_batches_per_epoch") == SP_OK)
        consumer_leave(l, count_plan(l, &b, &s));
    return b;
}

uint64_t sp_loader_samples_per_epoch(const sp_loader *l)
{
    uint64_t b = 0, s = 0;
    if (!l)
        sp_fail(NULL, SP_EINVAL, "sp_loader_samples_per_epoch: NULL loader");
    else if (consumer_enter(l, "sp_loader_samples_per_epoch") == SP_OK)
        consumer_leave(l, count_plan(l, &b, &s));
    return s;
}

int64_t sp_loader_epoch_order(sp_loader *l, uint64_t epoch, uint64_t *ids, uint64_t cap)
{
    sp_clear_error();
    if (!l)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_epoch_order: NULL loader");
    int rc = consumer_enter(l, "sp_loader_epoch_order"); /* its error buffer is the consumer's */
    if (rc)
        return rc;
    if (!ids && cap)
        return consumer_leave(l, sp_fail(&l->eb, SP_EINVAL, "sp_loader_epoch_order: NULL ids with cap %llu",
                                         (unsigned long long)cap));
    if (epoch > LD_EPOCH_MAX)
        return consumer_leave(l, sp_fail(&l->eb, SP_ERANGE, "sp_loader_epoch_order: epoch %llu is past the largest "
                                         "epoch, 2^63 - 1", (unsigned long long)epoch));
    ld_plan plan = { 0 };
    char why[SP_ERRMSG_MAX];
    rc = ld_epoch_plan(l, epoch, &plan, why, sizeof why);
    if (rc)
        return consumer_leave(l, sp_fail(&l->eb, rc, "sp_loader_epoch_order: %s", why));
    uint64_t n = plan.samples < cap ? plan.samples : cap;
    if (n && (rc = ld_plan_ids(&plan, l->tab.block_samples, l->tab.block_first, ids, n)) != SP_OK)
        sp_fail(&l->eb, rc, "sp_loader_epoch_order: %s planning epoch %llu",
                rc == SP_ENOMEM ? "out of memory" : "a window too large", (unsigned long long)epoch);
    ld_plan_free(&plan);
    return consumer_leave(l, rc) ? rc : (int64_t)(cap ? n : plan.samples);
}

/* ---------------------------------------------------------------- the consumer */

/* The ring cannot advance: the reader waits for a slot with every one in use (the limit cannot
 * grow), and no block is left to decode: the slots it needs are leased. */
static bool stuck_locked(const sp_loader *l)
{
    return l->ring.reader_blocked && l->ring.nfree == 0 && l->ring.pending == 0 && l->ring.job_count == 0;
}

/* The batch held longest by the consumer (for the message of a stuck ring), or NULL. */
static const sp_batch *oldest_lease_locked(const sp_loader *l)
{
    const ld_slot *old = NULL;
    for (uint64_t i = 0; i < l->ring.nslots; i++)
        if (l->ring.slots[i].state == SLOT_LEASED && (!old || l->ring.slots[i].taken < old->taken))
            old = &l->ring.slots[i];
    return old ? &old->b : NULL;
}

/* Waits for global batch g, with mu held; its slot in *out. */
static int wait_ready(sp_loader *l, uint64_t g, int timeout_ms, ld_slot **out)
{
    ld_slot *s = ld_slot_of(l, g); /* looked up again after each wait: the reader may claim g meanwhile */
    struct timespec dl;
    if (timeout_ms >= 0)
        sp_deadline_after(&dl, timeout_ms);
    double t0 = sp_now();
    int rc = SP_OK;
    for (;;) {
        if (l->ring.consumer_abort) { /* the device stage is halting its copy thread */
            rc = sp_fail(l->cons.eb, SP_ETIMEDOUT, "interrupted");
            break;
        }
        /* A failure recorded for this batch wins even when its rows all arrived: a bad image's
         * row is written (partly) before its failure is known. */
        if (l->fail.batch <= g) {
            rc = sp_fail(l->cons.eb, l->fail.code, "%s", l->fail.msg);
            break;
        }
        if (s->k == g && s->state == SLOT_READY)
            break;
        ld_grow_slots_locked(l, g); /* the limit holds the reader back from g: one slot more */
        const sp_batch *held = stuck_locked(l) ? oldest_lease_locked(l) : NULL;
        if (held) {
            rc = sp_fail(
                l->cons.eb, SP_EBUSY,
                "batch %llu of epoch %llu cannot be produced while batch %llu of epoch %llu "
                "is still leased: the ring has %llu slots and needs that one; release it, or hold fewer batches",
                (unsigned long long)l->cons.next_k, (unsigned long long)l->cons.epoch, (unsigned long long)held->index,
                (unsigned long long)held->epoch, (unsigned long long)l->ring.nslots);
            break;
        }
        l->ring.waiting_for = g;
        uint64_t tw = sp_trace_begin(l->trace, SPT_CONSUMER_WAIT);
        int w = timeout_ms < 0 ? pthread_cond_wait(&l->ring.c_consumer, &l->ring.mu)
                               : pthread_cond_timedwait(&l->ring.c_consumer, &l->ring.mu, &dl);
        sp_trace_end(l->trace, l->cons.track, SPT_CONSUMER_WAIT, tw, UINT64_MAX);
        l->ring.waiting_for = UINT64_MAX;
        s = ld_slot_of(l, g);
        if (w == ETIMEDOUT && !(s->k == g && s->state == SLOT_READY)) {
            rc = sp_fail(l->cons.eb, SP_ETIMEDOUT, "batch %llu not ready within %d ms",
                         (unsigned long long)l->cons.next_k, timeout_ms);
            break;
        }
    }
    l->stats.s.stall_s += sp_now() - t0;
    *out = s;
    return rc;
}

/* The host stage's consumer: the caller's thread, or the device stage's copy thread. */
int ld_host_next(sp_loader *l, sp_batch **out, int timeout_ms)
{
    *out = NULL;
    if (l->cons.done)
        return sp_fail(l->cons.eb, SP_EDONE, "all %llu epoch(s) delivered", (unsigned long long)l->cfg.epochs);
    int rc;
    if (!l->thr.running && (rc = start_run(l)))
        return rc;
    if ((rc = ensure_plan(l)))
        return rc;
    if (l->cons.next_k == l->cons.plan.nbatches) {
        end_epoch(l);
        return sp_fail(l->cons.eb, SP_EEPOCH, "end of epoch %llu", (unsigned long long)(l->cons.epoch - 1));
    }
    uint64_t t0 = sp_trace_begin(l->trace, SPT_NEXT);
    pthread_mutex_lock(&l->ring.mu);
    uint64_t g = l->cons.cons_base + l->cons.next_k;
    ld_slot *s;
    rc = wait_ready(l, g, timeout_ms, &s);
    if (rc == SP_OK) {
        s->state = SLOT_LEASED;
        s->taken = ++l->ring.taken;
        l->ring.leases++;
        l->cons.next_k++;
        l->stats.s.batches++;
        l->stats.s.samples += s->rows_expected;
        l->stats.s.batches_ready--;
        for (uint32_t r = 0; (l->mix.n || l->cons.plan.cfg.pad) && r < s->rows_expected; r++) {
            uint32_t d = 0;
            uint64_t id = s->b.ids[r];
            if (id != UINT64_MAX && (id & LD_ID_PAD)) { /* a repeat (rank_pad): not counted again */
                l->stats.s.samples_padded++;
                continue;
            }
            if (!l->mix.n)
                continue;
            while (d + 1 < l->mix.n && id >= l->mix_first_sample[d + 1])
                d++;
            l->stats.s.source_samples[d] += id != UINT64_MAX;
        }
        *out = &s->b;
        if (l->trace)
            ld_trace_counters_locked(l);
    }
    pthread_mutex_unlock(&l->ring.mu);
    sp_trace_end(l->trace, l->cons.track, SPT_NEXT, t0, g - l->cons.cons_base);
    return rc;
}

int ld_host_release(sp_loader *l, sp_batch *b)
{
    pthread_mutex_lock(&l->ring.mu);
    ld_slot *s = &l->ring.slots[b->slot];
    int rc = SP_OK;
    if (s->state != SLOT_LEASED) {
        rc = sp_fail(l->cons.eb, SP_EINVAL, "batch %llu is not leased (released twice?)", (unsigned long long)b->index);
    } else {
        s->state = SLOT_FREE;
        l->ring.free_slots[l->ring.nfree++] = b->slot;
        l->ring.leases--;
        l->ring.slots_in_use--;
        l->stats.s.batch_ring_in_use = l->ring.slots_in_use;
        if (l->trace)
            ld_trace_counters_locked(l);
        /* Wake the reader only when it waits for a slot: a system call per batch would otherwise
         * cost more than the batch itself at small batch sizes. */
        if (l->ring.reader_blocked && l->ring.slots_in_use < l->ring.slot_limit) {
            pthread_cond_signal(&l->ring.c_reader);
            if (l->rdr.rf)
                rm_fetch_wakeup(l->rdr.rf); /* it may wait for its reads ahead meanwhile */
        }
    }
    pthread_mutex_unlock(&l->ring.mu);
    return rc;
}

void ld_host_geometry(const sp_loader *l, ld_host_geom *g)
{
    *g = (ld_host_geom){ .batch = l->lay.rows,
                         .slot_bytes = l->lay.batch_bytes,
                         .nfields = l->lay.nout,
                         .names = l->lay.names,
                         .ring = l->pool.batch_mem,
                         .ring_bytes = l->ring.nslots * l->lay.batch_bytes,
                         .img = l->cfg.has_image ? &l->cfg.img : NULL,
                         .eb = (sp_errbuf *)&l->eb,
                         .trace = l->trace };
    for (size_t f = 0; f < l->lay.nout; f++) {
        const ld_out *o = &l->lay.out[f];
        ld_host_field *h = &g->field[f];
        h->offset = o->offset;
        h->dt = o->dt;
        h->ndim = o->ndim;
        memcpy(h->shape, o->shape, sizeof h->shape);
        h->image = o->convert == CONVERT_IMAGE;
    }
}

const uint8_t *ld_host_rows(const sp_loader *l, const sp_batch *b) { return l->ring.slots[b->slot].mem; }

void ld_host_attach(sp_loader *l, sp_errbuf *eb)
{
    l->cons.eb = eb ? eb : &l->eb;
    l->cons.track = eb ? LD_TRACK_COPY : LD_TRACK_CONSUMER;
}

void ld_host_interrupt(sp_loader *l, bool on)
{
    pthread_mutex_lock(&l->ring.mu);
    l->ring.consumer_abort = on;
    if (on)
        pthread_cond_broadcast(&l->ring.c_consumer);
    pthread_mutex_unlock(&l->ring.mu);
}

int sp_loader_next(sp_loader *l, sp_batch **out, int timeout_ms)
{
    sp_clear_error();
    if (!l || !out)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_next: NULL argument");
    int rc = consumer_enter(l, "sp_loader_next");
    if (rc)
        return rc; /* *out is not written either: it may be the slot of the call in flight */
    *out = NULL;
    rc = l->dev ? cu_next(l->dev, out, timeout_ms) : ld_host_next(l, out, timeout_ms);
    return consumer_leave(l, rc);
}

static bool host_batch_of(const sp_loader *l, const sp_batch *b)
{
    return b && b->owner == l && !b->on_device && b->slot < l->ring.nslots && &l->ring.slots[b->slot].b == b;
}

static int release(const char *fn, sp_loader *l, sp_batch *b, void *stream)
{
    sp_clear_error();
    int rc = l ? foreign(l, fn) : SP_OK;
    if (rc)
        return rc;
    if (l && b && b->owner == l && b->on_device && l->dev)
        return cu_release(l->dev, b, stream);
    if (!l || !host_batch_of(l, b))
        return sp_fail(l ? &l->eb : NULL, SP_EINVAL, "%s: %s", fn,
                       !l ? "NULL loader" : !b ? "NULL batch" : "not a batch of this loader");
    return ld_host_release(l, b);
}

int sp_loader_release(sp_loader *l, sp_batch *b) { return release("sp_loader_release", l, b, NULL); }

int sp_loader_release_on(sp_loader *l, sp_batch *b, void *stream)
{
    return release("sp_loader_release_on", l, b, stream);
}

int sp_batch_device(const sp_batch *b) { return b && b->on_device ? b->owner->cfg.device : -1; }

int sp_batch_wait(const sp_batch *b, void *stream)
{
    sp_clear_error();
    if (!b)
        return sp_fail(NULL, SP_EINVAL, "sp_batch_wait: NULL batch");
    int rc = foreign(b->owner, "sp_batch_wait");
    if (rc)
        return rc;
    return b->on_device ? cu_batch_wait(b->owner->dev, b, stream) : SP_OK;
}

int sp_batch_sync(const sp_batch *b)
{
    sp_clear_error();
    if (!b)
        return sp_fail(NULL, SP_EINVAL, "sp_batch_sync: NULL batch");
    int rc = foreign(b->owner, "sp_batch_sync");
    if (rc)
        return rc;
    return b->on_device ? cu_batch_sync(b->owner->dev, b) : SP_OK;
}

int sp_loader_stats_get(sp_loader *l, sp_loader_stats *out)
{
    if (!l)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_stats_get: NULL loader");
    int rc = foreign(l, "sp_loader_stats_get");
    if (rc == SP_OK)
        rc = sp_out_check("sp_loader_stats_get", "sp_loader_stats", out);
    if (rc)
        return rc;
    sp_loader_stats st;
    pthread_mutex_lock(&l->ring.mu);
    st = l->stats.s;
    st.elapsed_s = l->stats.t_first ? sp_now() - l->stats.t_first : 0;
    pthread_mutex_unlock(&l->ring.mu);
    sp_trace_totals(l->trace, &st.trace_events, &st.trace_events_dropped);
    ld_cache_stats(l, &st);
    if (l->dev)
        cu_stats(l->dev, &st);
    sp_out_put(out, &st, sizeof st);
    return SP_OK;
}

/* ---------------------------------------------------------------- limit mode */

/* A lazy local dataset's block read into buf through a descriptor of its own, checked against the
 * shard's mark (not through the dataset, which would read and keep the shard's index again). */
static int local_pread(sp_loader *l, uint64_t block, uint8_t *buf, fmt_err *e)
{
    uint32_t shard = l->tab.block_shard[block];
    const fmt_block_entry *be = l->tab.block_entry[block];
    uint64_t first, nb, local, base;
    const sp_dataset *ds = ld_shard_source(l, shard, &local, &base);
    ds_shard_blocks(ds, local, &first, &nb);
    e->block = (int64_t)(block - base - first);
    struct stat st;
    int fd = sp_open_regular(ld_shard_path(l, shard), 0, &st);
    if (fd < 0)
        return fmt_errf(e, sp_open_code(fd), 0, "cannot reopen: %s", sp_open_why(fd, &st));
    int rc = fmt_mark_check_file(&l->tab.marks[shard], fd, &st, e);
    if (rc == SP_OK && (rc = sp_pread_all(fd, buf, be->stored_size, be->offset)))
        rc = fmt_errf(e, rc == SP_ETRUNC ? SP_ETRUNC : SP_EIO, be->offset, "cannot read: %s",
                      rc == SP_ETRUNC ? "file ends early" : strerror(-rc));
    close(fd);
    return rc;
}

int64_t sp_loader_bench_block(sp_loader *l, int worker, int workers, uint64_t block, uint64_t *cursor)
{
    sp_clear_error();
    if (!l || !cursor)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_bench_block: NULL argument");
    int rc = foreign(l, "sp_loader_bench_block");
    if (rc)
        return rc;
    if (workers < 1 || workers > l->cfg.threads || worker < 0 || worker >= workers || (uint64_t)workers > l->ring.nslots)
        return sp_fail(NULL, SP_EINVAL,
                       "%s: sp_loader_bench_block: worker %d of %d, but the loader has %d decode workers and %llu "
                       "batch slots (one each at least)",
                       l->name, worker, workers, l->cfg.threads, (unsigned long long)l->ring.nslots);
    if (block >= l->tab.nblocks)
        return sp_fail(NULL, SP_ERANGE, "%s: sp_loader_bench_block: block %llu out of range (%llu blocks)", l->name,
                       (unsigned long long)block, (unsigned long long)l->tab.nblocks);
    pthread_mutex_lock(&l->ring.mu);
    bool busy = l->thr.running || l->ring.leases;
    pthread_mutex_unlock(&l->ring.mu);
    if (busy)
        return sp_fail(NULL, SP_EBUSY,
                       "%s: sp_loader_bench_block: the loader is delivering batches (its workers' buffers and the "
                       "batch ring are in use); measure before the first sp_loader_next", l->name);
    uint32_t shard = l->tab.block_shard[block];
    pthread_mutex_lock(&l->bench_mu); /* another call may be reading the same shard's index */
    if (!l->tab.block_entry[block] && !ld_shard_site(l, shard)) { /* a lazy local source's shard not read yet */
        sp_errbuf eb;
        struct stat st;
        int fd = sp_open_regular(ld_shard_path(l, shard), 0, &st);
        int orc = ld_load_local_shard(l, shard, fd, &st, &eb);
        if (fd >= 0)
            close(fd);
        if (orc) {
            pthread_mutex_unlock(&l->bench_mu);
            return sp_fail(NULL, orc, "%s", eb.msg);
        }
    } else if (!l->tab.block_entry[block]) { /* a lazy remote dataset's shard not read yet: its index now */
        fmt_shard *sh;
        uint64_t local, base;
        sp_dataset *src = ld_shard_source(l, shard, &local, &base);
        int orc = ds_shard_get(src, local, &sh);
        if (orc) {
            pthread_mutex_unlock(&l->bench_mu);
            return sp_fail(NULL, orc, "%s", sp_dataset_errmsg(src));
        }
        ld_install_shard(l, shard, sh);
    }
    bool loaded = l->tab.shards[shard] != NULL;
    pthread_mutex_unlock(&l->bench_mu);
    const fmt_block_entry *be = l->tab.block_entry[block];
    uint8_t *buf = sp_aligned_alloc(LD_PAGE, sp_align_up(be->stored_size, LD_PAGE));
    if (!buf)
        return sp_fail(NULL, SP_ENOMEM, "%s: out of memory for a %u-byte block", l->name, be->stored_size);
    fmt_err e = { .block = -1 };
    uint64_t local_shard, base;
    sp_dataset *ds = ld_shard_source(l, shard, &local_shard, &base); /* a mixture's block: its source's */
    uint64_t local = block - base;
    /* A remote block is fetched once, by the warm-up pass, and kept: a worker's work starts from
     * bytes the reader has fetched, so the limit counts no GET, as a local one counts no disk (its
     * warm-up pass fills the page cache). */
    bool remote = ld_shard_site(l, shard) != NULL, kept = false;
    if (remote) {
        pthread_mutex_lock(&l->bench_mu);
        if ((kept = l->bench_at && l->bench_at[block]))
            memcpy(buf, l->pool.read_ring + l->bench_at[block] - 1, be->stored_size);
        pthread_mutex_unlock(&l->bench_mu);
    }
    /* a lazy local source's shard has no fmt_shard: its block entry is the loader's */
    int64_t n = kept ? 0 : loaded ? ds_pread_block(ds, local, buf, &e) : local_pread(l, block, buf, &e);
    if (remote && !kept && n == 0) {
        uint64_t room = sp_align_up(be->stored_size, LD_PAGE);
        pthread_mutex_lock(&l->bench_mu);
        if (!l->bench_at)
            l->bench_at = sp_calloc(l->tab.nblocks, sizeof *l->bench_at);
        if (l->bench_at && !l->bench_at[block] && l->bench_used + room <= l->pool.read_ring_bytes) {
            memcpy(l->pool.read_ring + l->bench_used, buf, be->stored_size);
            l->bench_at[block] = l->bench_used + 1;
            l->bench_used += room;
        }
        pthread_mutex_unlock(&l->bench_mu);
    }
    if (n) {
        n = l->cfg.on_error == SP_ON_ERROR_SKIP ? 0
                                                : ds_fail_at(NULL, (int)n, ld_shard_path(l, shard), &e);
    } else {
        uint64_t share = l->ring.nslots / (uint64_t)workers;
        n = ld_bench_block(l, worker, block, buf, (uint64_t)worker * share, share, cursor);
    }
    sp_free(buf);
    return n;
}

/* ---------------------------------------------------------------- batches */

uint64_t sp_batch_epoch(const sp_batch *b) { return b ? b->epoch : 0; }
uint64_t sp_batch_index(const sp_batch *b) { return b ? b->index : 0; }
uint32_t sp_batch_size(const sp_batch *b) { return b ? b->rows : 0; }
size_t sp_batch_num_fields(const sp_batch *b) { return b ? b->nfields : 0; }

/* The message of an accessor given no batch, or a field past the batch's last. */
static void batch_field_fail(const char *fn, const sp_batch *b, size_t i)
{
    if (!b)
        sp_fail(NULL, SP_EINVAL, "%s: NULL batch", fn);
    else
        sp_fail(NULL, SP_ERANGE, "%s: field %zu is past the batch's %zu fields", fn, i, b->nfields);
}

const char *sp_batch_field_name(const sp_batch *b, size_t i)
{
    if (!b || i >= b->nfields) {
        batch_field_fail("sp_batch_field_name", b, i);
        return NULL;
    }
    return b->names[i];
}

const DLTensor *sp_batch_tensor(const sp_batch *b, size_t i)
{
    if (!b || i >= b->nfields) {
        batch_field_fail("sp_batch_tensor", b, i);
        return NULL;
    }
    /* The leading dimension follows the rows actually delivered (a short last batch). */
    b->t[i].shape[0] = b->rows;
    return &b->t[i];
}

int sp_batch_find(const sp_batch *b, const char *name)
{
    for (size_t i = 0; b && name && i < b->nfields; i++)
        if (strcmp(b->names[i], name) == 0)
            return (int)i;
    if (!b || !name)
        return sp_fail(NULL, SP_ENOENT, "sp_batch_find: NULL %s", b ? "name" : "batch");
    return sp_fail(NULL, SP_ENOENT, "sp_batch_find: the batch has no field '%s'", name);
}

uint64_t sp_batch_sample_id(const sp_batch *b, uint32_t row)
{
    if (!b || row >= b->rows) {
        if (!b)
            sp_fail(NULL, SP_EINVAL, "sp_batch_sample_id: NULL batch");
        else
            sp_fail(NULL, SP_ERANGE, "sp_batch_sample_id: row %u is past the batch's %u rows", row, b->rows);
        return UINT64_MAX;
    }
    uint64_t id = b->ids[row];
    return id == UINT64_MAX ? id : id & ~LD_ID_PAD;
}

int sp_batch_is_padding(const sp_batch *b, uint32_t row)
{
    if (!b)
        return sp_fail(NULL, SP_EINVAL, "sp_batch_is_padding: NULL batch");
    if (row >= b->rows)
        return sp_fail(NULL, SP_ERANGE, "sp_batch_is_padding: row %u is past the batch's %u rows", row, b->rows);
    uint64_t id = b->ids[row];
    return id != UINT64_MAX && (id & LD_ID_PAD);
}

/* ---------------------------------------------------------------- resume state */

#define STATE_MAGIC 0x54535053u /* "SPST" */
#define STATE_VERSION 2u

int sp_loader_state_size(void) { return SP_LOADER_STATE_BYTES; }

int sp_loader_save_state(sp_loader *l, void *buf, size_t cap)
{
    sp_clear_error();
    if (!l || !buf || cap < SP_LOADER_STATE_BYTES)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_save_state: need a buffer of %d bytes", SP_LOADER_STATE_BYTES);
    int rc = consumer_enter(l, "sp_loader_save_state");
    if (rc)
        return rc;
    uint8_t *p = buf;
    memset(p, 0, SP_LOADER_STATE_BYTES);
    sp_st32(p, STATE_MAGIC);
    sp_st32(p + 4, STATE_VERSION);
    sp_st64(p + 8, l->cfg.seed);
    uint64_t epoch, next_k;
    if (l->dev) /* its copy thread is the host stage's consumer, and runs ahead of the caller */
        cu_position(l->dev, &epoch, &next_k);
    else
        epoch = l->cons.epoch, next_k = l->cons.next_k;
    sp_st64(p + 16, epoch);
    sp_st64(p + 24, next_k);
    sp_st32(p + 32, l->cfg.world);
    sp_st32(p + 36, l->cfg.parts); /* the same bytes on every rank: the position is global */
    sp_st32(p + 40, l->cfg.batch);
    sp_st32(p + 44, l->cfg.window_blocks);
    sp_st64(p + 48, loader_fingerprint(l));
    sp_st16(p + 56, (uint16_t)(l->cfg.shuffle | l->cfg.drop_last << 1 | l->cfg.pad << 2));
    sp_st32(p + 60, (uint32_t)sp_checksum64(p, 60));
    return consumer_leave(l, SP_OK);
}

/* The world sizes a state of `parts` partitions resumes on: those dividing it (comma-separated). */
static void valid_worlds(uint32_t parts, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (uint32_t w = 1; w <= parts && k + 16 < len; w++)
        if (parts % w == 0)
            k += (size_t)snprintf(buf + k, len - k, "%s%u", k ? ", " : "", w);
}

/* A state resumes on any world size dividing its partitions, with the same global batch: the
 * position (a global batch index) then names the same samples. */
static int check_elastic(sp_loader *l, uint32_t parts, uint32_t world, uint32_t batch)
{
    char ok[256];
    valid_worlds(parts, ok, sizeof ok);
    uint64_t global = (uint64_t)world * batch, here = (uint64_t)l->cfg.world * l->cfg.batch;
    if (parts != l->cfg.parts)
        return sp_fail(&l->eb, SP_EINVAL,
                       "the saved state was taken with partitions=%u (world size %u), this loader has %u: open it "
                       "with partitions=%u, on a world size dividing it (%s) with batch_size x world size = %llu",
                       parts, world, l->cfg.parts, parts, ok, (unsigned long long)global);
    if (global != here)
        return sp_fail(&l->eb, SP_EINVAL,
                       "the saved state was taken with a different global batch size (batch_size %u x world size %u "
                       "= %llu; here %u x %u = %llu): on %u ranks use batch_size %llu",
                       batch, world, (unsigned long long)global, l->cfg.batch, l->cfg.world,
                       (unsigned long long)here, l->cfg.world,
                       (unsigned long long)(global % l->cfg.world ? 0 : global / l->cfg.world));
    return SP_OK;
}

/* Checks a saved state against this loader and seeks to it; the consumer's call. */
static int load_state(sp_loader *l, const uint8_t *p, size_t len)
{
    if (len != SP_LOADER_STATE_BYTES || sp_ld32(p) != STATE_MAGIC || sp_ld32(p + 60) != (uint32_t)sp_checksum64(p, 60))
        return sp_fail(&l->eb, SP_EINVAL, "not a loader state (%zu bytes, bad magic or checksum)", len);
    if (sp_ld32(p + 4) != STATE_VERSION)
        return sp_fail(&l->eb, SP_EVERSION, "loader state version %u; this library reads %u", sp_ld32(p + 4), STATE_VERSION);
    const char *what = sp_ld64(p + 48) != loader_fingerprint(l)
                           ? l->mix.n > 1 ? "mixture (its sources, their weights or their content differ)"
                                          : "dataset (its content differs)"
                       : sp_ld64(p + 8) != l->cfg.seed                               ? "seed"
                       : sp_ld32(p + 44) != l->cfg.window_blocks                     ? "shuffle window"
                       : sp_ld16(p + 56) != (l->cfg.shuffle | l->cfg.drop_last << 1 | l->cfg.pad << 2)
                           ? "shuffle, drop_last or rank_pad"
                           : NULL;
    if (what)
        return sp_fail(&l->eb, SP_EINVAL, "the saved state was taken with a different %s", what);
    int rc = check_elastic(l, sp_ld32(p + 36), sp_ld32(p + 32), sp_ld32(p + 40));
    if (rc)
        return rc;
    rc = check_position(l, sp_ld64(p + 16), sp_ld64(p + 24), "the saved state's");
    if (rc)
        return rc;
    seek(l, sp_ld64(p + 16), sp_ld64(p + 24));
    return SP_OK;
}

int sp_loader_load_state(sp_loader *l, const void *buf, size_t len)
{
    sp_clear_error();
    if (!l || !buf)
        return sp_fail(NULL, SP_EINVAL, "sp_loader_load_state: NULL argument");
    int rc = consumer_enter(l, "sp_loader_load_state");
    if (rc)
        return rc;
    return consumer_leave(l, load_state(l, buf, len));
}
