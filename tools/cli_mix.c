/* cli_mix.c - how well an order mixes, from the rows a loader delivers (bench: its batches;
 * inspect: sp_loader_epoch_order's ids with the labels read from the blocks): the mean number of
 * distinct labels in a full batch against what a uniform shuffle of the same samples gives, and
 * the mean distance a sample moves from its stored position against a uniform shuffle's. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cli_mix_init(cli_mix *m, uint32_t batch, uint64_t total, uint32_t world, uint32_t rank)
{
    memset(m, 0, sizeof *m);
    m->batch = batch;
    m->total = total;
    m->world = world;
    m->rank = rank;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Counts one more sample of label v (an open-addressing table, grown at half full). */
static int count_label(cli_mix *m, int64_t v)
{
    if (2 * (m->nlabels + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        int64_t *keys = calloc(cap, sizeof *keys);
        uint64_t *counts = calloc(cap, sizeof *counts);
        if (!keys || !counts) {
            free(keys);
            free(counts);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->counts[i]) {
                size_t h = (size_t)((uint64_t)m->keys[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
                while (counts[h])
                    h = (h + 1) & (cap - 1);
                keys[h] = m->keys[i];
                counts[h] = m->counts[i];
            }
        free(m->keys);
        free(m->counts);
        m->keys = keys;
        m->counts = counts;
        m->cap = cap;
    }
    size_t h = (size_t)((uint64_t)v * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->counts[h] && m->keys[h] != v)
        h = (h + 1) & (m->cap - 1);
    if (!m->counts[h])
        m->nlabels++;
    m->keys[h] = v;
    m->counts[h]++;
    return 0;
}

int cli_mix_add(cli_mix *m, const uint64_t *ids, const int64_t *labels, uint32_t rows)
{
    for (uint32_t i = 0; i < rows; i++) {
        if (ids[i] == UINT64_MAX)
            continue;
        double pos = (double)(m->samples + i) * m->world + m->rank;
        m->move_sum += fabs(pos - (double)ids[i]);
        m->moved++;
    }
    m->samples += rows;
    if (!labels)
        return 0;
    m->has_labels = 1;
    if (rows > m->scratch_len) {
        int64_t *s = realloc(m->scratch, rows * sizeof *s);
        if (!s)
            return -1;
        m->scratch = s;
        m->scratch_len = rows;
    }
    memcpy(m->scratch, labels, rows * sizeof *m->scratch);
    for (uint32_t i = 0; i < rows; i++)
        if (count_label(m, m->scratch[i]))
            return -1;
    if (rows != m->batch)
        return 0; /* a short last batch holds fewer labels: not measured */
    qsort(m->scratch, rows, sizeof *m->scratch, cmp_i64);
    uint64_t distinct = rows > 0;
    for (uint32_t i = 1; i < rows; i++)
        distinct += m->scratch[i] != m->scratch[i - 1];
    m->distinct_sum += distinct;
    m->batches++;
    return 0;
}

int cli_mix_batch(cli_mix *m, const sp_batch *b)
{
    uint32_t rows = sp_batch_size(b);
    if (rows > m->ids_len) {
        uint64_t *v = realloc(m->ids, rows * sizeof *v);
        if (!v)
            return -1;
        m->ids = v;
        m->ids_len = rows;
    }
    for (uint32_t i = 0; i < rows; i++)
        m->ids[i] = sp_batch_sample_id(b, i);
    int f = sp_batch_find(b, "label");
    const DLTensor *t = f >= 0 ? sp_batch_tensor(b, (size_t)f) : NULL;
    int labelled = t && t->ndim == 1 && t->dtype.code == kDLInt && t->dtype.bits == 64;
    return cli_mix_add(m, m->ids, labelled ? (const int64_t *)t->data : NULL, rows);
}

void cli_mix_get(const cli_mix *m, cli_mix_result *r)
{
    memset(r, 0, sizeof *r);
    r->has_labels = m->has_labels && m->batches > 0;
    if (r->has_labels) {
        r->labels_per_batch = (double)m->distinct_sum / (double)m->batches;
        /* Batches of B drawn without replacement from the N samples seen, n_c of label c: label c
         * is missing from a batch with probability prod_{i<B} (N - n_c - i) / (N - i). */
        double n = (double)m->samples, expect = 0;
        for (size_t k = 0; k < m->cap; k++) {
            if (!m->counts[k])
                continue;
            double absent = 1;
            for (uint32_t i = 0; i < m->batch && absent > 0; i++)
                absent *= n - (double)m->counts[k] - i > 0 ? (n - (double)m->counts[k] - i) / (n - i) : 0;
            expect += 1 - absent;
        }
        r->labels_uniform = expect;
    }
    double total = (double)m->total;
    r->move = m->moved ? m->move_sum / (double)m->moved : 0;
    r->move_uniform = total > 0 ? (total * total - 1) / (3 * total) : 0;
}

void cli_mix_free(cli_mix *m)
{
    free(m->keys);
    free(m->counts);
    free(m->scratch);
    free(m->ids);
    memset(m, 0, sizeof *m);
}
