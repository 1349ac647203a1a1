/* fuzz_manifest.c - libFuzzer target: the manifest decoder on arbitrary bytes; whatever it accepts must encode and decode again to the same tables. */
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "fuzz_target.h"

static void same_or_abort(const fmt_manifest *a, const fmt_manifest *b)
{
    if (a->dataset_id != b->dataset_id || a->nshards != b->nshards || a->nblocks != b->nblocks ||
        a->nsamples != b->nsamples || !sp_schema_equal(&a->schema, &b->schema) || a->meta.n != b->meta.n)
        abort();
    for (uint64_t i = 0; i < a->nshards; i++) {
        const fmt_manifest_shard *x = &a->shards[i], *y = &b->shards[i];
        if (strcmp(x->name, y->name) || x->file_size != y->file_size || x->nblocks != y->nblocks ||
            x->nsamples != y->nsamples || x->index_checksum != y->index_checksum)
            abort();
    }
    if (a->nblocks && memcmp(a->block_samples, b->block_samples, a->nblocks * sizeof *a->block_samples))
        abort();
    for (size_t i = 0; i < a->meta.n; i++) {
        const fmt_meta_entry *x = &a->meta.e[i], *y = &b->meta.e[i];
        if (strcmp(x->key, y->key) || x->len != y->len || (x->len && memcmp(x->value, y->value, x->len)))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    size--;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size);
    if ((mode & FUZZ_FIX_CHECKSUMS) && size >= 8)
        sp_st64(buf + size - 8, sp_checksum64(buf, size - 8));
    fmt_limits lim;
    fmt_limits_from_params(&lim, NULL);
    fmt_manifest m;
    fmt_err e;
    memset(&e, 0, sizeof e);
    if (fmt_manifest_decode(buf, size, &lim, &m, &e) == 0) {
        uint64_t blocks = 0, samples = 0;
        for (uint64_t i = 0; i < m.nshards; i++) {
            if (!fmt_shard_name_ok(m.shards[i].name, strlen(m.shards[i].name)))
                abort();
            blocks += m.shards[i].nblocks;
            samples += m.shards[i].nsamples;
        }
        if (blocks != m.nblocks || samples != m.nsamples)
            abort();
        sp_buf out = { 0 };
        fmt_manifest_encode(&m, &out);
        fmt_manifest m2;
        if (out.failed || fmt_manifest_decode(out.data, out.len, &lim, &m2, &e) != 0)
            abort();
        same_or_abort(&m, &m2);
        fmt_manifest_free(&m2);
        sp_buf_free(&out);
        fmt_manifest_free(&m);
    } else if (e.why[0] == '\0') {
        abort(); /* every refusal says why */
    }
    free(buf);
    return 0;
}
