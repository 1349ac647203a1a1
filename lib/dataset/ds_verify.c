/* ds_verify.c - checks a dataset or shard completely and reports every fault, not only the first:
 * header, trailer, index, every block's checksums and layout, and the manifest's promises. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fmt.h"
#include "ds.h"
#include "sp_file.h"

typedef struct vr_ctx {
    sp_fault_fn fn;
    void *user;
    sp_verify_report *rep;
    fmt_limits lim;
    ZSTD_DCtx *dctx;
    const char *mpath; /* while the shards of a manifest are checked: the manifest, */
    sp_file_id mid;    /* the identity of the file read, */
    bool replaced;     /* and whether mpath was found to name another since */
    char replaced_why[SP_ERRMSG_MAX / 2];
} vr_ctx;

static void fault(vr_ctx *v, const char *file, int64_t block, uint64_t offset, int code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void fault(vr_ctx *v, const char *file, int64_t block, uint64_t offset, int code, const char *fmt, ...)
{
    char msg[SP_ERRMSG_MAX];
    /* A shard that disagrees with the manifest, or cannot be opened, because the dataset was
     * replaced meanwhile is no fault: verification stops, and sp_verify says so. */
    if (v->replaced || (v->mpath && fmt_manifest_replaced(v->mpath, &v->mid, v->replaced_why, sizeof v->replaced_why))) {
        v->replaced = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->rep->faults++;
    if (v->fn)
        v->fn(&(sp_fault){ sizeof(sp_fault), file, block, offset, code, msg }, v->user);
}

static void fault_at(vr_ctx *v, const char *file, int code, const fmt_err *e)
{
    fault(v, file, e->block, e->offset, code, "%s", e->why);
}

/* Padding carries no data, but a nonzero byte there is damage all the same: verification reads
 * it and reports it, so that every byte of a shard is covered by some check. */
static void check_zero(vr_ctx *v, fmt_shard *sh, int64_t block, uint64_t from, uint64_t to)
{
    uint8_t buf[4096];
    fmt_err e = { .block = -1 };
    int fd = fmt_shard_fd(sh, &e); /* a failure is check_header's to report */
    for (uint64_t off = from; fd >= 0 && off < to; off += sizeof buf) {
        size_t n = to - off < sizeof buf ? (size_t)(to - off) : sizeof buf;
        if (sp_pread_all(fd, buf, n, off) != 0) {
            fault(v, sh->path, block, off, SP_EIO, "cannot read padding");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            if (buf[i]) {
                fault(v, sh->path, block, off + i, SP_ECORRUPT, "nonzero byte in padding");
                return;
            }
        }
    }
}

/* The header is not needed to open a shard, so only verification reads and cross-checks it. */
static void check_header(vr_ctx *v, fmt_shard *sh)
{
    uint8_t buf[FMT_HEADER_BYTES];
    fmt_header h;
    fmt_err e = { .block = -1 };
    int fd = fmt_shard_fd(sh, &e);
    if (fd < 0) {
        fault_at(v, sh->path, fd, &e);
        return;
    }
    int rc = sp_pread_all(fd, buf, sizeof buf, 0);
    if (rc) {
        fault(v, sh->path, -1, 0, SP_EIO, "cannot read the header");
        return;
    }
    check_zero(v, sh, -1, FMT_HEADER_BYTES, sh->index.id.align);
    if ((rc = fmt_header_decode(buf, sizeof buf, &h, &e))) {
        fault_at(v, sh->path, rc, &e);
        return;
    }
    const fmt_header *id = &sh->index.id;
    if (h.align != id->align || h.dataset_id != id->dataset_id || h.shard_no != id->shard_no)
        fault(v, sh->path, -1, 16, SP_ECORRUPT, "header (align %u, dataset %016llx, shard %u) disagrees with the index",
              h.align, (unsigned long long)h.dataset_id, h.shard_no);
}

static void check_blocks(vr_ctx *v, fmt_shard *sh)
{
    fmt_err fe = { .block = -1 };
    int fd = fmt_shard_fd(sh, &fe);
    if (fd < 0) /* check_header has reported why */
        return;
    for (uint64_t i = 0; i < sh->index.nblocks && !v->replaced; i++) {
        uint8_t *raw;
        fmt_block_view view;
        fmt_err e = { .block = -1 };
        int rc = fmt_shard_read_block(sh, fd, i, v->dctx, &raw, &view, &e);
        if (rc)
            fault_at(v, sh->path, rc, &e);
        else
            sp_free(raw);
        const fmt_block_entry *be = &sh->index.blocks[i];
        check_zero(v, sh, (int64_t)i, be->offset + be->stored_size,
                   sp_align_up(be->offset + be->stored_size, sh->index.id.align));
        v->rep->blocks++;
        v->rep->bytes += sh->index.blocks[i].stored_size;
    }
    v->rep->samples += sh->index.nsamples;
}

/* Verifies one shard; returns it open (for manifest cross-checks) or NULL when it cannot open. */
static fmt_shard *verify_shard(vr_ctx *v, const char *path)
{
    fmt_shard *sh;
    fmt_err e = { .block = -1 };
    int rc = fmt_shard_open(path, &v->lim, &sh, &e);
    v->rep->shards++;
    if (rc) {
        fault_at(v, path, rc, &e);
        return NULL;
    }
    check_header(v, sh);
    check_blocks(v, sh);
    return sh;
}

static void check_against_manifest(vr_ctx *v, const fmt_manifest *m, uint64_t i, const fmt_shard *sh,
                                   uint64_t first_block)
{
    const fmt_manifest_shard *ms = &m->shards[i];
    const char *what = sh->index.id.shard_no != i                             ? "shard number"
                       : sh->file_size != ms->file_size                        ? "file size"
                       : sh->trailer.index_checksum != ms->index_checksum      ? "index checksum"
                       : sh->index.nblocks != ms->nblocks                      ? "block count"
                       : sh->index.nsamples != ms->nsamples                    ? "sample count"
                       : !sp_schema_equal(&sh->index.schema, &m->schema)       ? "schema"
                       : sh->index.id.dataset_id != m->dataset_id              ? "dataset id"
                                                                               : NULL;
    for (uint64_t k = 0; !what && k < sh->index.nblocks; k++)
        if (sh->index.blocks[k].nsamples != m->block_samples[first_block + k])
            what = "per-block sample count";
    if (what)
        fault(v, sh->path, -1, 0, SP_ECORRUPT, "%s differs from the manifest's entry %llu", what,
              (unsigned long long)i);
}

static int verify_manifest(vr_ctx *v, const char *mpath, const char *dir)
{
    uint8_t *buf;
    size_t n;
    int err;
    int rc = sp_read_file(mpath, 1ull << 31, &buf, &n, &err, &v->mid);
    if (rc)
        return sp_fail(NULL, rc, "%s: cannot read: %s", mpath, sp_read_file_why(rc, err));
    fmt_manifest m;
    fmt_err e = { .block = -1 };
    rc = fmt_manifest_decode(buf, n, &v->lim, &m, &e);
    sp_free(buf);
    if (rc) {
        fault_at(v, mpath, rc, &e);
        return SP_OK;
    }
    uint64_t first_block = 0;
    v->mpath = mpath;
    for (uint64_t i = 0; i < m.nshards && !v->replaced; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s%s", dir, sp_path_sep(dir), m.shards[i].name);
        fmt_shard *sh = verify_shard(v, path);
        if (sh)
            check_against_manifest(v, &m, i, sh, first_block);
        first_block += m.shards[i].nblocks;
        fmt_shard_close(sh);
    }
    v->mpath = NULL;
    fmt_manifest_free(&m);
    return SP_OK;
}

static int verify_dir_shards(vr_ctx *v, const char *dir)
{
    char **paths;
    size_t n;
    int rc = ds_list_shards(dir, v->lim.max_shards, &paths, &n, NULL);
    for (size_t i = 0; rc == SP_OK && i < n; i++)
        fmt_shard_close(verify_shard(v, paths[i]));
    if (rc == SP_OK)
        ds_free_list(paths, n);
    return rc;
}

/* Shards matching a glob (ds_glob_shards): 0 when path is no glob, else 1 or a code. */
static int verify_glob(vr_ctx *v, const char *path)
{
    char **paths;
    size_t n;
    int rc = ds_glob_shards(path, v->lim.max_shards, &paths, &n, NULL);
    if (rc <= 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        fmt_shard_close(verify_shard(v, paths[i]));
    ds_free_list(paths, n);
    return 1;
}

static int verify_file(vr_ctx *v, const char *path)
{
    char dir[4096];
    int rc = ds_sniff_manifest(path, dir, sizeof dir, NULL);
    if (rc < 0)
        return rc;
    if (rc)
        return verify_manifest(v, path, dir);
    fmt_shard_close(verify_shard(v, path));
    return SP_OK;
}

/* ---------------------------------------------------------------- remote datasets */

/* Whether buf[from..to) is zero; a fault naming the first nonzero byte (at file offset base + i)
 * when not. */
static void check_zero_buf(vr_ctx *v, const char *path, int64_t block, const uint8_t *buf, uint64_t from,
                           uint64_t to, uint64_t base)
{
    for (uint64_t i = from; i < to; i++)
        if (buf[i]) {
            fault(v, path, block, base + i, SP_ECORRUPT, "nonzero byte in padding");
            return;
        }
}

/* One shard of a remote dataset, opened through d (its index checked against the manifest): the
 * header and every block with its padding, one ranged GET each. */
static void verify_remote_shard(vr_ctx *v, sp_dataset *d, uint64_t i)
{
    rm_site *site = ds_site(d);
    rm_obj *o = ds_shard_obj(d, i);
    fmt_shard *sh;
    v->rep->shards++;
    int rc = ds_shard_get(d, i, &sh);
    if (rc) {
        fault(v, o->url, -1, 0, rc, "%s", sp_dataset_errmsg(d));
        return;
    }
    uint32_t align = sh->index.id.align;
    uint8_t *buf = sp_malloc(align > FMT_HEADER_BYTES ? align : FMT_HEADER_BYTES);
    sp_errbuf eb;
    fmt_err e = { .block = -1 };
    fmt_header h;
    if (!buf) {
        fault(v, o->url, -1, 0, SP_ENOMEM, "out of memory");
    } else if ((rc = rm_get(site, o, 0, align, buf, false, &eb))) {
        fault(v, o->url, -1, 0, rc, "cannot read the header: %s", eb.msg);
    } else if ((rc = fmt_header_decode(buf, FMT_HEADER_BYTES, &h, &e))) {
        fault_at(v, o->url, rc, &e);
    } else {
        check_zero_buf(v, o->url, -1, buf, FMT_HEADER_BYTES, align, 0);
        const fmt_header *id = &sh->index.id;
        if (h.align != id->align || h.dataset_id != id->dataset_id || h.shard_no != id->shard_no)
            fault(v, o->url, -1, 16, SP_ECORRUPT, "header (align %u, dataset %016llx, shard %u) disagrees with the "
                  "index", h.align, (unsigned long long)h.dataset_id, h.shard_no);
    }
    sp_free(buf);
    for (uint64_t k = 0; k < sh->index.nblocks; k++) {
        const fmt_block_entry *be = &sh->index.blocks[k];
        uint64_t end = sp_align_up(be->offset + be->stored_size, align);
        uint8_t *stored = sp_malloc(end - be->offset), *raw = NULL;
        fmt_block_view view;
        e = (fmt_err){ .block = (int64_t)k };
        if (!stored) {
            fault(v, o->url, (int64_t)k, be->offset, SP_ENOMEM, "out of memory for a %u-byte block", be->stored_size);
        } else if ((rc = rm_get(site, o, be->offset, end - be->offset, stored, false, &eb))) {
            fault(v, o->url, (int64_t)k, be->offset, rc, "%s", eb.msg);
        } else {
            check_zero_buf(v, o->url, (int64_t)k, stored, be->stored_size, end - be->offset, be->offset);
            if ((rc = fmt_shard_decode_block(sh, k, stored, v->dctx, &raw, &view, &e)))
                fault_at(v, o->url, rc, &e);
        }
        if (raw != stored)
            sp_free(raw);
        sp_free(stored);
        v->rep->blocks++;
        v->rep->bytes += be->stored_size;
    }
    v->rep->samples += sh->index.nsamples;
}

/* A dataset at a URL: opened as sp_dataset_open opens it (a manifest that cannot be read or
 * decoded is an error, as a missing local one is), then every shard. */
static int verify_remote(vr_ctx *v, const char *url, const sp_params *params)
{
    sp_dataset *d;
    int rc = sp_dataset_open(url, params, &d);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < sp_dataset_num_shards(d); i++)
        verify_remote_shard(v, d, i);
    sp_dataset_close(d);
    return SP_OK;
}

int sp_verify(const char *path, const sp_params *params, sp_fault_fn fn, void *user, sp_verify_report *report)
{
    sp_clear_error();
    if (report) {
        int rc = sp_out_check("sp_verify", "sp_verify_report", report);
        if (rc)
            return rc;
    }
    sp_verify_report rep = { .struct_size = sizeof rep };
    vr_ctx v = { .fn = fn, .user = user, .rep = &rep };
    if (report)
        sp_out_put(report, &rep, sizeof rep);
    if (!path)
        return sp_fail(NULL, SP_EINVAL, "sp_verify: NULL path");
    fmt_limits_from_params(&v.lim, params);
    if (!(v.dctx = ZSTD_createDCtx()))
        return sp_fail(NULL, SP_ENOMEM, "sp_verify: %s: out of memory", path);
    int rc = rm_is_url(path) ? verify_remote(&v, path, params) : ds_check_scheme(path, NULL);
    if (rc == SP_OK && !rm_is_url(path))
        rc = verify_glob(&v, path);
    if (rm_is_url(path) || rc < 0) {
        /* done above, or a URL of another scheme */
    } else if (rc != 0) {
        rc = rc < 0 ? rc : SP_OK;
    } else if (sp_path_is_dir(path)) {
        char mpath[4096];
        snprintf(mpath, sizeof mpath, "%s%s%s", path, sp_path_sep(path), MANIFEST_NAME);
        rc = access(mpath, F_OK) == 0 ? verify_manifest(&v, mpath, path) : verify_dir_shards(&v, path);
    } else {
        rc = verify_file(&v, path);
    }
    ZSTD_freeDCtx(v.dctx);
    if (report)
        sp_out_put(report, &rep, sizeof rep);
    if (rc)
        return rc;
    if (v.replaced)
        return sp_fail(NULL, SP_ECHANGED, "%s: %s; verify it again", path, v.replaced_why);
    return v.rep->faults ? sp_fail(NULL, SP_ECORRUPT, "%s: %llu fault(s) found", path,
                                   (unsigned long long)v.rep->faults)
                         : SP_OK;
}
