/* fuzz_imp_npy.c - libFuzzer target: the .npy importer (lib/import/imp_npy.c) on arbitrary bytes,
 * run by the library's import into a real writer (fuzz_imp.h).
 *
 * Input: a mode byte, then the .npy file (or two, with FIMP_SPLIT: two fields that must share the
 * first axis). Mode bits 0-3 are the common ones of fuzz_imp.h (kind npy and names without
 * ".npy"; strict; two sources; tight writer limits). Own bits:
 *   bit 4     the second source has the first one's name, in a subdirectory (field names clash);
 *   bits 5-6  the name's stem, which becomes the field name: 0 "a" (second "b"), 1 "x y+z" (to be
 *             sanitised), 2 a stem longer than SP_MAX_NAME, 3 an empty stem (".npy").
 *
 * When the pack succeeds, every field's rows, concatenated in sample order, must be the tail of
 * its file (the data after the header), byte for byte, and a bool field holds only 0 and 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_imp.h"
#include "fuzz_target.h"

#define NPY_OWN_SAME_NAME (1u << FIMP_OWN_SHIFT)
#define NPY_OWN_STEM_SHIFT (FIMP_OWN_SHIFT + 1)

typedef struct expect {
    const fimp_input *in;
    uint64_t nsamples;
    size_t row[FIMP_MAX_SRCS];
    size_t start[FIMP_MAX_SRCS];
    int bool_field[FIMP_MAX_SRCS];
} expect;

static void check_sample(void *user, uint64_t s, const sp_block *blk, uint32_t row)
{
    expect *e = user;
    for (size_t k = 0; k < e->in->nparts; k++) {
        size_t size;
        const uint8_t *got = fimp_field(blk, row, k, &size);
        if (s == 0) {
            /* The rows of a field all have its size; the data is the file's tail. */
            if (size == 0 || e->nsamples > e->in->len[k] / size ||
                e->nsamples * size + 10 > e->in->len[k])
                fimp_fail("field %zu: %llu rows of %zu bytes do not fit in a file of %zu bytes", k,
                          (unsigned long long)e->nsamples, size, e->in->len[k]);
            e->row[k] = size;
            e->start[k] = e->in->len[k] - (size_t)e->nsamples * size;
        }
        if (size != e->row[k])
            fimp_fail("field %zu of sample %llu has %zu bytes, the first had %zu", k,
                      (unsigned long long)s, size, e->row[k]);
        if (memcmp(got, e->in->part[k] + e->start[k] + s * size, size) != 0)
            fimp_fail("field %zu of sample %llu differs from row %llu of the file", k,
                      (unsigned long long)s, (unsigned long long)s);
        for (size_t i = 0; e->bool_field[k] && i < size; i++)
            if (got[i] > 1)
                fimp_fail("bool field %zu of sample %llu holds %u", k, (unsigned long long)s, got[i]);
    }
}

static void check_output(const fimp_input *in)
{
    sp_dataset *ds = fimp_open_output();
    if (sp_schema_num_fields(sp_dataset_schema(ds)) != in->nparts)
        fimp_fail("%zu fields from %zu .npy files", sp_schema_num_fields(sp_dataset_schema(ds)),
                  in->nparts);
    expect e = {in, sp_dataset_num_samples(ds), {0}, {0}, {0}};
    for (size_t k = 0; k < in->nparts; k++) {
        sp_field_info fi = { .struct_size = sizeof fi };
        e.bool_field[k] = sp_schema_field(sp_dataset_schema(ds), k, &fi) == 0 && fi.dtype == SP_DTYPE_BOOL;
    }
    fimp_each_sample(ds, check_sample, &e);
    sp_dataset_close(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fimp_input in;
    if (!fimp_parse(data, size, &in))
        return 0;
    int from = (in.mode & FIMP_FROM) != 0;
    unsigned stem = (in.mode >> NPY_OWN_STEM_SHIFT) & 3;
    char names[FIMP_MAX_SRCS][128];
    for (size_t k = 0; k < FIMP_MAX_SRCS; k++) {
        switch (stem) {
        case 0: snprintf(names[k], sizeof names[k], "%s", k ? "b" : "a"); break;
        case 1: snprintf(names[k], sizeof names[k], "x y+z%s", k ? "2" : ""); break;
        case 2:
            memset(names[k], 'n', 80);
            snprintf(names[k] + 80, sizeof names[k] - 80, "%s", k ? "2" : "");
            break;
        default: names[k][0] = 0; break;
        }
        /* An empty stem needs the extension even with the kind named: a file name cannot be empty. */
        if (!from || stem == 3)
            strcat(names[k], ".npy");
    }
    if (in.nparts == 2 && (in.mode & NPY_OWN_SAME_NAME)) {
        char moved[140];
        snprintf(moved, sizeof moved, "d/%s", names[0]);
        strcpy(names[1], moved);
    }
    if (stem == 3 && in.nparts == 2 && !(in.mode & NPY_OWN_SAME_NAME))
        strcpy(names[1], "d/.npy"); /* two empty stems: both fields are "tensor" */
    fimp_begin();
    fimp_mkdir("d");
    const char *srcs[FIMP_MAX_SRCS];
    for (size_t k = 0; k < in.nparts; k++)
        srcs[k] = fimp_write(names[k], in.part[k], in.len[k]);
    if (fimp_pack(in.mode, "npy", srcs, in.nparts, 0) == 0)
        check_output(&in);
    fimp_end();
    return 0;
}
