/* sp_layout.c - the layout of every public struct (sp_struct_*), and the struct_size contract of
 * the structs a caller allocates for the library to fill. */
#include <assert.h>
#include <stdio.h>

#include "sp_internal.h"

typedef struct layout_field {
    const char *name;
    size_t offset, size;
} layout_field;

typedef struct layout {
    const char *name;
    size_t size;
    /* The smallest struct_size accepted: the end of the last member of ABI 2's layout, the first
     * that carried struct_size. Fixed for good; members appended later do not move it. 0 for a
     * struct without struct_size. */
    size_t min_size;
    const layout_field *fields;
    size_t nfields;
} layout;

#define M_(type, member) { #member, offsetof(type, member), sizeof(((type *)0)->member) }
/* Where member ends: the smallest size holding everything up to and including it. */
#define END_(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

static const layout_field param_info_f[] = {
    M_(sp_param_info, struct_size), M_(sp_param_info, key), M_(sp_param_info, name),
    M_(sp_param_info, type), M_(sp_param_info, def), M_(sp_param_info, min), M_(sp_param_info, max),
    M_(sp_param_info, choices), M_(sp_param_info, doc), M_(sp_param_info, scope),
};
static const layout_field field_info_f[] = {
    M_(sp_field_info, struct_size), M_(sp_field_info, name), M_(sp_field_info, kind),
    M_(sp_field_info, dtype), M_(sp_field_info, ndim), M_(sp_field_info, shape),
    M_(sp_field_info, fixed_bytes),
};
static const layout_field value_f[] = { M_(sp_value, data), M_(sp_value, size) };
static const layout_field write_stats_f[] = {
    M_(sp_write_stats, struct_size), M_(sp_write_stats, samples), M_(sp_write_stats, raw_bytes),
    M_(sp_write_stats, stored_bytes), M_(sp_write_stats, file_bytes), M_(sp_write_stats, blocks),
    M_(sp_write_stats, blocks_stored_raw), M_(sp_write_stats, shards), M_(sp_write_stats, field_raw_bytes),
};
static const layout_field shard_info_f[] = {
    M_(sp_shard_info, struct_size), M_(sp_shard_info, path), M_(sp_shard_info, file_bytes),
    M_(sp_shard_info, blocks), M_(sp_shard_info, samples), M_(sp_shard_info, first_block),
    M_(sp_shard_info, first_sample),
};
static const layout_field block_info_f[] = {
    M_(sp_block_info, struct_size), M_(sp_block_info, shard), M_(sp_block_info, index),
    M_(sp_block_info, offset), M_(sp_block_info, stored_bytes), M_(sp_block_info, raw_bytes),
    M_(sp_block_info, samples), M_(sp_block_info, first_sample), M_(sp_block_info, checksum),
    M_(sp_block_info, raw_checksum), M_(sp_block_info, codec),
};
static const layout_field fault_f[] = {
    M_(sp_fault, struct_size), M_(sp_fault, file), M_(sp_fault, block), M_(sp_fault, offset),
    M_(sp_fault, code), M_(sp_fault, message),
};
static const layout_field verify_report_f[] = {
    M_(sp_verify_report, struct_size), M_(sp_verify_report, shards), M_(sp_verify_report, blocks),
    M_(sp_verify_report, samples), M_(sp_verify_report, bytes), M_(sp_verify_report, faults),
};
static const layout_field loader_stats_f[] = {
    M_(sp_loader_stats, struct_size), M_(sp_loader_stats, epoch), M_(sp_loader_stats, batches),
    M_(sp_loader_stats, samples), M_(sp_loader_stats, bytes_read), M_(sp_loader_stats, bytes_decompressed),
    M_(sp_loader_stats, blocks_read), M_(sp_loader_stats, blocks_skipped), M_(sp_loader_stats, samples_skipped),
    M_(sp_loader_stats, samples_dropped_per_epoch), M_(sp_loader_stats, stall_s),
    M_(sp_loader_stats, read_busy_s), M_(sp_loader_stats, decode_busy_s), M_(sp_loader_stats, elapsed_s),
    M_(sp_loader_stats, read_ring_bytes), M_(sp_loader_stats, read_ring_peak),
    M_(sp_loader_stats, batch_ring_bytes), M_(sp_loader_stats, batch_ring_slots),
    M_(sp_loader_stats, batch_ring_peak_slots), M_(sp_loader_stats, batches_ready),
    M_(sp_loader_stats, scratch_bytes), M_(sp_loader_stats, host_memory_bytes),
    M_(sp_loader_stats, host_allocated_bytes), M_(sp_loader_stats, threads), M_(sp_loader_stats, io),
    M_(sp_loader_stats, direct_io), M_(sp_loader_stats, io_note), M_(sp_loader_stats, images_decoded),
    M_(sp_loader_stats, images_bad), M_(sp_loader_stats, image_scratch_bytes), M_(sp_loader_stats, bad_note),
    M_(sp_loader_stats, device), M_(sp_loader_stats, host_pinned), M_(sp_loader_stats, device_note),
    M_(sp_loader_stats, device_memory_bytes), M_(sp_loader_stats, device_ring_bytes),
    M_(sp_loader_stats, device_ring_slots), M_(sp_loader_stats, device_bytes),
    M_(sp_loader_stats, device_bytes_peak), M_(sp_loader_stats, device_batches),
    M_(sp_loader_stats, bytes_copied), M_(sp_loader_stats, copy_s), M_(sp_loader_stats, device_empty_s),
    M_(sp_loader_stats, threads_note), M_(sp_loader_stats, rank), M_(sp_loader_stats, world_size),
    M_(sp_loader_stats, local_rank), M_(sp_loader_stats, local_world_size), M_(sp_loader_stats, rank_note),
    M_(sp_loader_stats, host_memory_note), M_(sp_loader_stats, partitions), M_(sp_loader_stats, sources),
    M_(sp_loader_stats, source_samples),
    M_(sp_loader_stats, trace_events),
    M_(sp_loader_stats, trace_events_dropped), M_(sp_loader_stats, jobs_in_flight_peak),
    M_(sp_loader_stats, read_wait_io_s), M_(sp_loader_stats, read_wait_slot_s),
    M_(sp_loader_stats, read_wait_space_s), M_(sp_loader_stats, memory_note),
    M_(sp_loader_stats, samples_padded_per_epoch), M_(sp_loader_stats, samples_padded),
    M_(sp_loader_stats, remote_bytes), M_(sp_loader_stats, cache_hits), M_(sp_loader_stats, cache_misses),
    M_(sp_loader_stats, cache_hit_bytes), M_(sp_loader_stats, cache_admitted), M_(sp_loader_stats, cache_evictions),
    M_(sp_loader_stats, cache_discarded), M_(sp_loader_stats, cache_bytes), M_(sp_loader_stats, cache_size),
    M_(sp_loader_stats, batch_ring_in_use), M_(sp_loader_stats, batch_ring_limit),
    M_(sp_loader_stats, batch_ring_grown),
    M_(sp_loader_stats, remote_requests), M_(sp_loader_stats, remote_pending_peak),
    M_(sp_loader_stats, shard_indexes_read), M_(sp_loader_stats, remote_gets),
    M_(sp_loader_stats, remote_transfers),
};
static const layout_field image_info_f[] = {
    M_(sp_image_info, struct_size), M_(sp_image_info, width), M_(sp_image_info, height),
    M_(sp_image_info, components), M_(sp_image_info, subsampling), M_(sp_image_info, progressive),
    M_(sp_image_info, format), M_(sp_image_info, bit_depth),
};
static const layout_field image_crop_f[] = {
    M_(sp_image_crop, struct_size), M_(sp_image_crop, x0), M_(sp_image_crop, y0), M_(sp_image_crop, x1),
    M_(sp_image_crop, y1), M_(sp_image_crop, flip), M_(sp_image_crop, scale), M_(sp_image_crop, width),
    M_(sp_image_crop, height),
};
static const layout_field import_progress_f[] = {
    M_(sp_import_progress, struct_size), M_(sp_import_progress, samples), M_(sp_import_progress, skipped),
    M_(sp_import_progress, bytes), M_(sp_import_progress, total_items), M_(sp_import_progress, total_bytes),
};
static const layout_field dl_device_f[] = { M_(DLDevice, device_type), M_(DLDevice, device_id) };
static const layout_field dl_data_type_f[] = { M_(DLDataType, code), M_(DLDataType, bits), M_(DLDataType, lanes) };
static const layout_field dl_tensor_f[] = {
    M_(DLTensor, data), M_(DLTensor, device), M_(DLTensor, ndim), M_(DLTensor, dtype),
    M_(DLTensor, shape), M_(DLTensor, strides), M_(DLTensor, byte_offset),
};
static const layout_field dl_managed_f[] = {
    M_(DLManagedTensor, dl_tensor), M_(DLManagedTensor, manager_ctx), M_(DLManagedTensor, deleter),
};

#define L_(type, min, f) { #type, sizeof(type), min, f, sizeof f / sizeof f[0] }
static const layout layouts[] = {
    L_(sp_param_info, END_(sp_param_info, scope), param_info_f),
    L_(sp_field_info, END_(sp_field_info, fixed_bytes), field_info_f),
    L_(sp_value, 0, value_f),
    L_(sp_write_stats, END_(sp_write_stats, field_raw_bytes), write_stats_f),
    L_(sp_shard_info, END_(sp_shard_info, first_sample), shard_info_f),
    L_(sp_block_info, END_(sp_block_info, codec), block_info_f),
    L_(sp_fault, END_(sp_fault, message), fault_f),
    L_(sp_verify_report, END_(sp_verify_report, faults), verify_report_f),
    L_(sp_loader_stats, END_(sp_loader_stats, device_empty_s), loader_stats_f),
    L_(sp_image_info, END_(sp_image_info, progressive), image_info_f),
    L_(sp_image_crop, END_(sp_image_crop, height), image_crop_f),
    L_(sp_import_progress, END_(sp_import_progress, total_bytes), import_progress_f),
    L_(DLDevice, 0, dl_device_f),
    L_(DLDataType, 0, dl_data_type_f),
    L_(DLTensor, 0, dl_tensor_f),
    L_(DLManagedTensor, 0, dl_managed_f),
};
#define NLAYOUTS (sizeof layouts / sizeof layouts[0])

static const layout *layout_find(const char *name)
{
    for (size_t i = 0; name && i < NLAYOUTS; i++)
        if (strcmp(layouts[i].name, name) == 0)
            return &layouts[i];
    return NULL;
}

const char *sp_struct_name(size_t i)
{
    if (i >= NLAYOUTS) {
        sp_fail(NULL, SP_ERANGE, "sp_struct_name: struct %zu is past the last of %zu", i, NLAYOUTS);
        return NULL;
    }
    return layouts[i].name;
}

int sp_struct_layout(const char *name, size_t *size, size_t *min_size, size_t *nfields)
{
    const layout *l = layout_find(name);
    if (!l)
        return sp_fail(NULL, SP_ENOENT, "sp_struct_layout: no public struct is named '%s'", name ? name : "(null)");
    if (size)
        *size = l->size;
    if (min_size)
        *min_size = l->min_size;
    if (nfields)
        *nfields = l->nfields;
    return SP_OK;
}

int sp_struct_field(const char *name, size_t i, const char **field, size_t *offset, size_t *size)
{
    const layout *l = layout_find(name);
    if (!l)
        return sp_fail(NULL, SP_ENOENT, "sp_struct_field: no public struct is named '%s'", name ? name : "(null)");
    if (i >= l->nfields)
        return sp_fail(NULL, SP_ERANGE, "sp_struct_field: %s has %zu members, not %zu", l->name, l->nfields, i + 1);
    if (field)
        *field = l->fields[i].name;
    if (offset)
        *offset = l->fields[i].offset;
    if (size)
        *size = l->fields[i].size;
    return SP_OK;
}

int sp_out_check(const char *fn, const char *type, const void *out)
{
    if (!out)
        return sp_fail(NULL, SP_EINVAL, "%s: NULL %s", fn, type);
    const layout *l = layout_find(type);
    assert(l && l->min_size > sizeof(size_t));
    size_t have;
    memcpy(&have, out, sizeof have); /* struct_size is every such struct's first member */
    if (have < l->min_size)
        return sp_fail(NULL, SP_EINVAL, "%s: %s.struct_size is %zu, below the %zu bytes of its first layout "
                       "(set it to sizeof(%s))", fn, type, have, l->min_size, type);
    return SP_OK;
}

void sp_out_put(void *out, const void *full, size_t full_size)
{
    size_t have;
    memcpy(&have, out, sizeof have);
    size_t n = have < full_size ? have : full_size;
    /* Everything after struct_size, as far as both sides know; the caller's struct_size stays. */
    memcpy((char *)out + sizeof have, (const char *)full + sizeof have, n - sizeof have);
}
