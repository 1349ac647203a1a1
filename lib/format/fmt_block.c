/* fmt_block.c - the raw layout of a block and its checked decoding. */
#include <stdio.h>

#include "fmt.h"

/* Walks the columns of a raw block, checking every offset table; the only code that trusts
 * nothing about raw except raw_size. */
int fmt_block_parse(const sp_schema *s, const uint8_t *raw, uint64_t raw_size, uint32_t n,
                    fmt_block_view *v, fmt_err *e)
{
    v->schema = s;
    v->raw = raw;
    v->n = n;
    uint64_t pos = 0;
    for (size_t f = 0; f < s->n; f++) {
        pos = sp_align_up(pos, 8);
        v->col[f] = pos;
        uint64_t len;
        if (s->f[f].fixed_bytes) {
            if (sp_mul_overflow(s->f[f].fixed_bytes, n, &len) || len > raw_size || pos > raw_size - len)
                return fmt_errf(e, SP_ECORRUPT, pos, "column '%s' runs past the block end", s->f[f].name);
            pos += len;
            continue;
        }
        uint64_t table = ((uint64_t)n + 1) * 4;
        if (table > raw_size || pos > raw_size - table)
            return fmt_errf(e, SP_ECORRUPT, pos, "offset table of '%s' runs past the block end", s->f[f].name);
        const uint8_t *off = raw + pos;
        if (sp_ld32(off) != 0)
            return fmt_errf(e, SP_ECORRUPT, pos, "offset table of '%s' does not start at 0", s->f[f].name);
        for (uint32_t i = 0; i < n; i++)
            if (sp_ld32(off + 4 * (i + 1)) < sp_ld32(off + 4 * i))
                return fmt_errf(e, SP_ECORRUPT, pos + 4 * (i + 1),
                                "offsets of '%s' decrease at sample %u", s->f[f].name, i);
        len = sp_ld32(off + 4 * (uint64_t)n);
        pos += table;
        if (len > raw_size - pos)
            return fmt_errf(e, SP_ECORRUPT, pos, "data of '%s' runs past the block end", s->f[f].name);
        pos += len;
    }
    if (pos != raw_size)
        return fmt_errf(e, SP_ECORRUPT, pos, "block has %llu bytes after its last column",
                        (unsigned long long)(raw_size - pos));
    return SP_OK;
}

void fmt_block_get(const fmt_block_view *v, uint32_t row, size_t field, const uint8_t **data,
                   size_t *size)
{
    const sp_field *f = &v->schema->f[field];
    const uint8_t *col = v->raw + v->col[field];
    if (f->fixed_bytes) {
        *data = col + (uint64_t)row * f->fixed_bytes;
        *size = f->fixed_bytes;
        return;
    }
    uint32_t a = sp_ld32(col + 4 * (uint64_t)row), b = sp_ld32(col + 4 * ((uint64_t)row + 1));
    *data = col + ((uint64_t)v->n + 1) * 4 + a;
    *size = b - a;
}

int fmt_zstd_frame_check(const fmt_block_entry *be, const uint8_t *stored, fmt_err *e)
{
    /* ZSTD_decompressDCtx alone would also take frames concatenated, or followed by an empty or a
     * skippable one: every reader (loader, block reads, verify) must agree on what a block is. */
    size_t frame = ZSTD_findFrameCompressedSize(stored, be->stored_size);
    if (ZSTD_isError(frame))
        return fmt_errf(e, SP_ECORRUPT, be->offset, "zstd: %s", ZSTD_getErrorName(frame));
    if (frame != be->stored_size)
        return fmt_errf(e, SP_ECORRUPT, be->offset, "%u stored bytes hold a %zu-byte zstd frame and more; a block is "
                        "exactly one frame", be->stored_size, frame);
    if (ZSTD_getFrameContentSize(stored, frame) != be->raw_size)
        return fmt_errf(e, SP_ECORRUPT, be->offset, "zstd frame does not declare the %u raw bytes of the index",
                        be->raw_size);
    return SP_OK;
}

int fmt_block_decode(const fmt_block_entry *be, const uint8_t *stored, uint8_t *raw,
                     ZSTD_DCtx *dctx, fmt_err *e)
{
    if (sp_checksum64(stored, be->stored_size) != be->checksum)
        return fmt_errf(e, SP_ECHECKSUM, be->offset, "checksum mismatch in the stored bytes");
    if (be->codec == SP_CODEC_STORED) {
        if (raw != stored)
            memcpy(raw, stored, be->raw_size);
    } else {
        int rc = fmt_zstd_frame_check(be, stored, e);
        if (rc)
            return rc;
        size_t r = ZSTD_decompressDCtx(dctx, raw, be->raw_size, stored, be->stored_size);
        if (ZSTD_isError(r))
            return fmt_errf(e, SP_ECORRUPT, be->offset, "zstd: %s", ZSTD_getErrorName(r));
        if (r != be->raw_size)
            return fmt_errf(e, SP_ECORRUPT, be->offset, "decompressed to %zu bytes, index says %u", r,
                            be->raw_size);
    }
    if (be->codec != SP_CODEC_STORED && sp_checksum64(raw, be->raw_size) != be->raw_checksum)
        return fmt_errf(e, SP_ECHECKSUM, be->offset, "checksum mismatch after decompression");
    return SP_OK;
}
