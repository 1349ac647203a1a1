/*
 * shardpack.h - the public C API of libshardpack.
 *
 * Conventions, true of every function below unless its comment says otherwise:
 *  - Every call that can fail returns 0 (SP_OK) or a negative sp_error code. Functions that return
 *    a count or a pointer say so.
 *  - Errors: every call that fails sets the calling thread's message (sp_last_error()), naming
 *    the function or the file, block, sample or parameter involved; a call on a handle sets the
 *    handle's own *_errmsg() too. A failure is a negative sp_error code, or the NULL, 0 or -1 that
 *    a function's comment names as its failure. Queries leave the message as it was unless they
 *    fail, so a caller can read statistics or infos after a failure and still report it: the
 *    getters, the lookups (sp_param_lookup, sp_schema_find, sp_batch_find, the *_from_name
 *    functions), sp_param_describe, sp_params_get_float3, sp_schema_field, sp_writer_stats,
 *    sp_dataset_meta_at, sp_dataset_meta_get, sp_dataset_shard_info, sp_dataset_block_info,
 *    sp_dataset_locate, sp_block_get, sp_loader_stats_get, sp_struct_layout and sp_struct_field.
 *    Every other call that returns 0 (SP_OK) or an error code clears the message when it starts,
 *    so after it returns 0 sp_last_error() is "" (and so is sp_writer_errmsg() of a writer it was
 *    called on). Destroy functions never touch it. Every message,
 *    and every note in a struct below, fits in SP_ERRMSG_MAX bytes with its terminating NUL.
 *  - Structs: every public struct but sp_value begins with `size_t struct_size`, set to its sizeof
 *    by whoever allocates it. A struct the caller allocates and the library fills (stats, infos,
 *    reports, crops) needs struct_size set before the call, e.g.
 *        sp_loader_stats st = { .struct_size = sizeof st };
 *    The library writes only the first struct_size bytes, and leaves struct_size as the caller set
 *    it: a caller built against an older, shorter layout gets the fields it knows and nothing is
 *    written past its struct; one built against a newer, longer layout keeps what it had in the
 *    fields this library does not know (zero them). A struct_size below the layout of ABI 2 (the
 *    first with struct_size) is refused with SP_EINVAL, the struct untouched. Fields are only ever
 *    appended, so a struct grows without an ABI bump. A struct the library allocates (sp_fault)
 *    carries the library's sizeof: fields past it do not exist. sp_value is an input array whose
 *    layout is fixed for good (a pointer and a size, like struct iovec); it has no struct_size.
 *    sp_struct_name, sp_struct_layout and sp_struct_field describe every public struct's layout as
 *    this library was built, so a binding can check its mirrors.
 *  - The library never prints, never exits and never aborts on bad input.
 *  - Handles are opaque. Every destroy/close/free function accepts NULL.
 *  - Ownership: a pointer returned by a getter is owned by the handle it came from and stays valid
 *    until that handle is destroyed. Strings passed in are copied; the caller keeps ownership.
 *  - Threads: a handle may be used by one thread at a time unless its section says otherwise.
 *    Separate handles are independent.
 *  - Processes: a loader, writer or import belongs to the process that opened it (its threads live
 *    there). In a fork() child every call on an inherited one fails at once with SP_ESTATE, "loader
 *    opened in process P, used in child C; open it after fork"; close and destroy there free and
 *    join nothing and leave the parent's files alone. Open a new one in the child.
 *  - Every helper a binding needs is a real exported function: no API is macro-only.
 */
#ifndef SHARDPACK_H
#define SHARDPACK_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h> /* Debian: libdlpack-dev */

#include "shardpack_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SP_BUILDING_LIBRARY) && defined(__GNUC__)
#define SP_API __attribute__((visibility("default")))
#else
#define SP_API
#endif

/* ------------------------------------------------------------------------------------------------
 * Version
 * ---------------------------------------------------------------------------------------------- */

/* "MAJOR.MINOR.PATCH" of the library actually loaded. */
SP_API const char *sp_version(void);
/* SP_ABI_VERSION of the library actually loaded; bindings refuse a mismatch. */
SP_API int sp_abi_version(void);

/* The layout of every public struct as this library was built, so that a binding mirroring them
 * (ctypes, cffi) can check its copies: each struct's sizeof, smallest accepted struct_size, and
 * every member's name, offsetof and sizeof (an array member's whole size), in declaration order.
 * Names are the C type names ("sp_loader_stats"); the DLPack structs batches are described with
 * ("DLTensor", "DLDevice", "DLDataType", "DLManagedTensor") are listed too. */
/* The name of the i-th struct described, or NULL past the last (with a message). */
SP_API const char *sp_struct_name(size_t i);
/* *size: sizeof; *min_size: the smallest struct_size accepted (0 for a struct without one);
 * *nfields: its member count. Any of them may be NULL. SP_ENOENT for a name not described. */
SP_API int sp_struct_layout(const char *name, size_t *size, size_t *min_size, size_t *nfields);
/* Member i of struct name: *field its name (static), *offset, *size. Any of them may be NULL.
 * SP_ENOENT for a name not described, SP_ERANGE past the last member. */
SP_API int sp_struct_field(const char *name, size_t i, const char **field, size_t *offset, size_t *size);

/* ------------------------------------------------------------------------------------------------
 * Errors. One table: the codes, their names and their messages. Released numbers never change;
 * new codes are appended.
 * ---------------------------------------------------------------------------------------------- */
#define SP_ERROR_TABLE(X)                                                                          \
    X(SP_OK, 0, "success")                                                                         \
    X(SP_EINVAL, -1, "invalid argument")                                                           \
    X(SP_ENOMEM, -2, "out of memory")                                                              \
    X(SP_EIO, -3, "input/output error")                                                            \
    X(SP_ENOENT, -4, "no such file or entry")                                                      \
    X(SP_EFORMAT, -5, "not a shardpack file")                                                      \
    X(SP_EVERSION, -6, "unsupported format version")                                               \
    X(SP_ETRUNC, -7, "file is truncated")                                                          \
    X(SP_ECORRUPT, -8, "corrupt data")                                                             \
    X(SP_ECHECKSUM, -9, "checksum mismatch")                                                       \
    X(SP_ELIMIT, -10, "a size or count exceeds its limit")                                         \
    X(SP_ERANGE, -11, "value out of range")                                                        \
    X(SP_ESCHEMA, -12, "data does not match the schema")                                           \
    X(SP_EEXIST, -13, "already exists")                                                            \
    X(SP_ENOTSUP, -14, "not supported")                                                            \
    X(SP_EBUSY, -15, "resource busy")                                                              \
    X(SP_ETIMEDOUT, -16, "timed out")                                                              \
    X(SP_EEPOCH, -17, "end of epoch")                                                              \
    X(SP_ESYS, -18, "system resource unavailable")                                                 \
    X(SP_EBADINPUT, -19, "bad input data")                                                         \
    X(SP_ESTATE, -20, "call not valid in this state")                                             \
    X(SP_EDONE, -21, "all epochs delivered")                                                       \
    X(SP_EDEVICE, -22, "CUDA device error")                                                        \
    X(SP_ECHANGED, -23, "file replaced since it was opened")                                      \
    X(SP_ECANCELED, -24, "cancelled")                                                             \
    X(SP_EREMOTE, -25, "remote storage or transport failure")                                      \
    X(SP_EDENIED, -26, "access denied by the server")

typedef enum sp_error {
#define SP_X_(name, value, msg) name = value,
    SP_ERROR_TABLE(SP_X_)
#undef SP_X_
} sp_error;

/* A static string describing code; "unknown error" for a code not in the table. */
SP_API const char *sp_strerror(int code);
/* The code's name ("SP_ECHECKSUM"), or "SP_UNKNOWN". */
SP_API const char *sp_error_name(int code);
/* Bytes of every error message and note, its terminating NUL included: sp_last_error(), the
 * *_errmsg() strings, and the io_note, bad_note, device_note and threads_note of sp_loader_stats. */
#define SP_ERRMSG_MAX 512

/* The message of the last failing call on this thread (naming file, block, sample), or "" if none.
 * Valid until the next library call on this thread. */
SP_API const char *sp_last_error(void);

/* ------------------------------------------------------------------------------------------------
 * Data types and field kinds
 * ---------------------------------------------------------------------------------------------- */
/* X(enum suffix, value, name, bytes per element) */
#define SP_DTYPE_TABLE(X)                                                                          \
    X(U8, 1, "uint8", 1)                                                                           \
    X(I8, 2, "int8", 1)                                                                            \
    X(U16, 3, "uint16", 2)                                                                         \
    X(I16, 4, "int16", 2)                                                                          \
    X(U32, 5, "uint32", 4)                                                                         \
    X(I32, 6, "int32", 4)                                                                          \
    X(U64, 7, "uint64", 8)                                                                         \
    X(I64, 8, "int64", 8)                                                                          \
    X(F16, 9, "float16", 2)                                                                        \
    X(BF16, 10, "bfloat16", 2)                                                                     \
    X(F32, 11, "float32", 4)                                                                       \
    X(F64, 12, "float64", 8)                                                                       \
    X(BOOL, 13, "bool", 1)

typedef enum sp_dtype {
    SP_DTYPE_NONE = 0,
#define SP_X_(sfx, value, name, size) SP_DTYPE_##sfx = value,
    SP_DTYPE_TABLE(SP_X_)
#undef SP_X_
} sp_dtype;

/* "float16", or NULL for an unknown dtype. */
SP_API const char *sp_dtype_name(int dtype);
/* Bytes per element, or 0 for an unknown dtype. */
SP_API size_t sp_dtype_size(int dtype);
/* The dtype named name ("uint16", "f4" is not accepted), or SP_EINVAL. */
SP_API int sp_dtype_from_name(const char *name);

/* X(enum suffix, value, name) */
#define SP_FIELD_KIND_TABLE(X)                                                                     \
    X(IMAGE, 1, "image")   /* encoded image bytes (JPEG, PNG or WebP), variable length */                      \
    X(LABEL, 2, "label")   /* one int64 */                                                         \
    X(TOKENS, 3, "tokens") /* fixed-length sequence of uint16 or uint32 */                         \
    X(TENSOR, 4, "tensor") /* fixed shape, any numeric dtype */                                    \
    X(BYTES, 5, "bytes")   /* opaque bytes, variable length */

typedef enum sp_field_kind {
#define SP_X_(sfx, value, name) SP_FIELD_##sfx = value,
    SP_FIELD_KIND_TABLE(SP_X_)
#undef SP_X_
} sp_field_kind;

SP_API const char *sp_field_kind_name(int kind);
SP_API int sp_field_kind_from_name(const char *name);

/* ------------------------------------------------------------------------------------------------
 * Parameters. One table gives every tunable: its enum key, its name (used as --name on the CLI and
 * as a keyword in Python), its type, default, bounds and a one-line doc. Appended, never renumbered.
 * ---------------------------------------------------------------------------------------------- */
typedef enum sp_param_type {
    SP_PTYPE_INT = 1,  /* integer */
    SP_PTYPE_SIZE = 2, /* byte count; strings accept K, M, G, T suffixes (powers of 1024) */
    SP_PTYPE_BOOL = 3, /* 0 or 1, and -1 (auto) where min is -1; strings accept true/false/yes/no/
                        * on/off/1/0, and auto */
    SP_PTYPE_ENUM = 4, /* index into the '|'-separated choices */
    SP_PTYPE_FLOAT3 = 5, /* three real numbers, one per colour channel, written "a,b,c"; the default
                          * is the string in `choices`, and min/max bound each number in
                          * thousandths; read with sp_params_get_float3 */
    SP_PTYPE_DEVICE = 6, /* where batches go: SP_DEVICE_AUTO (-2, "auto"), SP_DEVICE_CPU (-1, "cpu"),
                          * or N >= 0 ("cuda:N"; "cuda" is cuda:0) */
    SP_PTYPE_STRING = 7, /* text, such as a path; "" when unset (def, min and max are 0). Set with
                          * sp_params_set_str, read with sp_params_get_str */
} sp_param_type;

#define SP_KIB (1024LL)
#define SP_MIB (1024LL * 1024)
#define SP_GIB (1024LL * 1024 * 1024)

/* Which parts of the library read a parameter (sp_param_info.scope, a bit set). */
enum { SP_SCOPE_WRITE = 1, SP_SCOPE_READ = 2, SP_SCOPE_LOAD = 4, SP_SCOPE_IMPORT = 8 };
#define SP_SCOPE_ALL_ (SP_SCOPE_WRITE | SP_SCOPE_READ | SP_SCOPE_LOAD)

/* X(KEY, name, type, default, min, max, choices, scope, doc) */
#define SP_PARAM_TABLE(X)                                                                          \
    X(SHARD_SIZE, "shard_size", SP_PTYPE_SIZE, 256 * SP_MIB, 8 * SP_KIB, 1024 * SP_GIB, NULL,       \
      SP_SCOPE_WRITE, "target size of one shard file; the writer starts a new shard before passing it") \
    X(BLOCK_SIZE, "block_size", SP_PTYPE_SIZE, 1 * SP_MIB, 4 * SP_KIB, 256 * SP_MIB, NULL,          \
      SP_SCOPE_WRITE, "target uncompressed bytes per block (the unit of reading, checking and shuffling)") \
    X(LEVEL, "level", SP_PTYPE_INT, 3, -7, 22, NULL, SP_SCOPE_WRITE, "zstd compression level")      \
    X(THREADS, "threads", SP_PTYPE_INT, 0, 0, 256, NULL, SP_SCOPE_WRITE | SP_SCOPE_LOAD,           \
      "worker threads: compression when writing, decoding when loading (0: one per online core; " \
      "loading: per usable core, within CPU affinity, cgroup CPU quota and host_memory)")          \
    X(COMPRESS, "compress", SP_PTYPE_ENUM, 0, 0, 2, "auto|zstd|none", SP_SCOPE_WRITE,              \
      "block codec: auto stores a block raw when zstd saves under 3%")                            \
    X(OVERWRITE, "overwrite", SP_PTYPE_BOOL, 0, 0, 1, NULL, SP_SCOPE_WRITE,                         \
      "replace an existing dataset in the output directory")                                      \
    X(MAX_BLOCK_BYTES, "max_block_bytes", SP_PTYPE_SIZE, 256 * SP_MIB, 4 * SP_KIB, 2 * SP_GIB - 1, \
      NULL, SP_SCOPE_ALL_, "largest uncompressed block a reader accepts or a writer produces")    \
    X(MAX_SHARDS, "max_shards", SP_PTYPE_INT, 1000000, 1, 100000000, NULL,                          \
      SP_SCOPE_ALL_, "largest number of shards a dataset may name or a writer produce")              \
    X(BATCH_SIZE, "batch_size", SP_PTYPE_INT, 32, 1, 1 << 20, NULL, SP_SCOPE_LOAD,                  \
      "samples per batch")                                                                        \
    X(SEED, "seed", SP_PTYPE_INT, 0, 0, INT64_MAX, NULL, SP_SCOPE_LOAD,                             \
      "seed of the shuffle; with the epoch, rank and world size it fixes every batch")            \
    X(SHUFFLE, "shuffle", SP_PTYPE_BOOL, 1, 0, 1, NULL, SP_SCOPE_LOAD,                              \
      "permute blocks each epoch and samples within each window")                                \
    X(SHUFFLE_WINDOW, "shuffle_window", SP_PTYPE_INT, 8, 1, 1 << 16, NULL, SP_SCOPE_LOAD,           \
      "blocks per shuffle window; samples are permuted across a window")                         \
    X(EPOCHS, "epochs", SP_PTYPE_INT, 1, 0, INT32_MAX, NULL, SP_SCOPE_LOAD,                         \
      "epochs to deliver (0: endless)")                                                           \
    X(DROP_LAST, "drop_last", SP_PTYPE_BOOL, 0, 0, 1, NULL, SP_SCOPE_LOAD,                          \
      "drop the last partial batch of each epoch instead of delivering it short")                \
    X(RANK, "rank", SP_PTYPE_INT, -1, -1, (1 << 20) - 1, NULL, SP_SCOPE_LOAD,                      \
      "this process's rank (-1: the launcher's RANK, OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID; needed when world_size > 1)")     \
    X(WORLD_SIZE, "world_size", SP_PTYPE_INT, 0, 0, 1 << 20, NULL, SP_SCOPE_LOAD,                   \
      "number of ranks sharing the dataset (0: the launcher's WORLD_SIZE, OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_NTASKS, else 1)")    \
    X(HOST_MEMORY, "host_memory", SP_PTYPE_SIZE, 0, 0, 1024 * SP_GIB, NULL, SP_SCOPE_LOAD,          \
      "host memory budget for every loader buffer (0: 1/8 of available memory, within the "       \
      "cgroup memory limit, at most 2 GiB)")                                                        \
    X(IO, "io", SP_PTYPE_ENUM, 0, 0, 2, "auto|uring|pread", SP_SCOPE_LOAD,                          \
      "read path: io_uring with registered buffers, or pread; auto falls back to pread")         \
    X(DIRECT_IO, "direct_io", SP_PTYPE_BOOL, -1, -1, 1, NULL, SP_SCOPE_LOAD,                        \
      "read with O_DIRECT, bypassing the page cache; auto: only for a dataset larger than half the available memory") \
    X(ON_ERROR, "on_error", SP_PTYPE_ENUM, 0, 0, 1, "fail|skip", SP_SCOPE_LOAD,                     \
      "a corrupt block or image fails the batch, or is skipped and its rows filled from the same batch") \
    X(TOKEN_DTYPE, "token_dtype", SP_PTYPE_ENUM, 0, 0, 1, "stored|int32", SP_SCOPE_LOAD,            \
      "dtype of token fields in batches: as stored (uint16/uint32) or int32 for llm.c-style trainers") \
    X(PREFETCH, "prefetch", SP_PTYPE_INT, 0, 0, 4096, NULL, SP_SCOPE_LOAD,                          \
      "batches buffered ahead of the consumer beyond one window, all used from the start (0: as the memory budget allows, used only as the consumer needs: a window and two more at first, a batch slot more each time next() waits for one the ring held back)") \
    X(TRANSFORM, "transform", SP_PTYPE_ENUM, 0, 0, 1, "train|eval", SP_SCOPE_LOAD,                  \
      "image fields: train (random-resized crop, random flip) or eval (resize, centre crop)")    \
    X(IMAGE_SIZE, "image_size", SP_PTYPE_INT, 224, 8, 4096, NULL, SP_SCOPE_LOAD,                    \
      "side in pixels of the square image every image field becomes")                            \
    X(RESIZE, "resize", SP_PTYPE_INT, 0, 0, 16384, NULL, SP_SCOPE_LOAD,                             \
      "eval: the shorter side is resized to this before the centre crop (0: image_size / 0.875)") \
    X(IMAGE_DTYPE, "image_dtype", SP_PTYPE_ENUM, 0, 0, 3, "uint8|float16|bfloat16|float32",         \
      SP_SCOPE_LOAD, "dtype of image tensors: uint8 pixels, or floats normalized by mean and std") \
    X(IMAGE_LAYOUT, "image_layout", SP_PTYPE_ENUM, 0, 0, 1, "nhwc|nchw", SP_SCOPE_LOAD,             \
      "layout of image tensors: [B, H, W, 3] or [B, 3, H, W]")                                    \
    X(MEAN, "mean", SP_PTYPE_FLOAT3, 0, -10000, 10000, "0.485,0.456,0.406", SP_SCOPE_LOAD,          \
      "per-channel mean subtracted from pixels scaled to [0, 1] (float image dtypes)")            \
    X(STD, "std", SP_PTYPE_FLOAT3, 0, 1, 10000, "0.229,0.224,0.225", SP_SCOPE_LOAD,                 \
      "per-channel standard deviation the centred pixels are divided by (float image dtypes)")   \
    X(MAX_PIXELS, "max_pixels", SP_PTYPE_INT, 1 << 25, 1, 1LL << 32, NULL, SP_SCOPE_LOAD | SP_SCOPE_WRITE, \
      "largest image (width x height) decoded; a larger one is a bad sample, handled by on_error (writer and pack, validate_images: a refused sample, so a decompression bomb is never stored)") \
    X(MAX_IMAGE_MEMORY, "max_image_memory", SP_PTYPE_SIZE, 48 * SP_MIB, 1 * SP_MIB, 16 * SP_GIB, NULL, \
      SP_SCOPE_LOAD, "whole-image memory of any image format (progressive JPEGs: 3 bytes a pixel at 4:2:0; interlaced PNGs; WebP planes), one allowance the decode workers share, reserved once in host_memory; an image needing more than all of it is a bad sample") \
    X(MAX_SAMPLE_BYTES, "max_sample_bytes", SP_PTYPE_SIZE, 64 * SP_MIB, 1 * SP_KIB, 2 * SP_GIB - 1, NULL, \
      SP_SCOPE_WRITE | SP_SCOPE_LOAD, "largest sample (its bytes in a block) a writer accepts or the loader decodes; a larger one is refused, or a bad sample") \
    X(DEVICE, "device", SP_PTYPE_DEVICE, -1, -2, 1023, NULL, SP_SCOPE_LOAD,                         \
      "where batches are delivered: cpu, cuda:N (an error without that device), or auto (the current CUDA device when the loader opens, else cpu, saying why in stats)") \
    X(DEVICE_MEMORY, "device_memory", SP_PTYPE_SIZE, 0, 0, 1024 * SP_GIB, NULL, SP_SCOPE_LOAD,     \
      "device memory budget of the device ring (0: room for 4 batches, at most a quarter of the free device memory)") \
    X(DEVICE_DTYPE, "device_dtype", SP_PTYPE_ENUM, 0, 0, 3, "none|float16|bfloat16|float32",        \
      SP_SCOPE_LOAD, "image fields cross PCIe as uint8 and are normalized by mean and std into this dtype on the device (none: as image_dtype; on the host it acts as image_dtype)") \
    X(DEVICE_LAYOUT, "device_layout", SP_PTYPE_ENUM, 0, 0, 1, "nchw|nhwc", SP_SCOPE_LOAD,           \
      "layout of the image tensors device_dtype makes: [B, 3, H, W] or [B, H, W, 3]")             \
    X(DATASET_ID, "dataset_id", SP_PTYPE_INT, 0, 0, INT64_MAX, NULL, SP_SCOPE_WRITE,               \
      "identity stamped into every shard and the manifest (0: drawn at random); a fixed id makes the same input give the same files byte for byte") \
    X(VALIDATE_IMAGES, "validate_images", SP_PTYPE_BOOL, 1, 0, 1, NULL, SP_SCOPE_WRITE,            \
      "image fields take only a decodable image (a JPEG, PNG or WebP whose headers sp_image_probe accepts within max_pixels); other bytes are a refused sample") \
    X(STRICT, "strict", SP_PTYPE_BOOL, 0, 0, 1, NULL, SP_SCOPE_IMPORT,                              \
      "fail at the first bad input item instead of skipping it")                                  \
    X(SEQ_LEN, "seq_len", SP_PTYPE_INT, 0, 0, 1 << 30, NULL, SP_SCOPE_IMPORT,                       \
      "llm.c tokens: samples of T+1 tokens taken with stride T (required for llmc, and only there)") \
    X(MAX_SIDE, "max_side", SP_PTYPE_INT, 0, 0, 65535, NULL, SP_SCOPE_IMPORT,                       \
      "pack: an image whose longer side is above this is resized to it and stored as JPEG (quality); smaller ones stay byte-identical (0: never resize)") \
    X(QUALITY, "quality", SP_PTYPE_INT, 90, 1, 100, NULL, SP_SCOPE_IMPORT,                          \
      "pack: JPEG quality of the images max_side or transcode re-encode")                         \
    X(TRANSCODE, "transcode", SP_PTYPE_ENUM, 0, 0, 1, "none|jpeg", SP_SCOPE_IMPORT,                \
      "pack: jpeg stores every PNG and WebP as JPEG (quality), for sets whose PNGs are photos; none keeps each format") \
    X(PARTITIONS, "partitions", SP_PTYPE_INT, 0, 0, 1 << 20, NULL, SP_SCOPE_LOAD,                     \
      "canonical partitions of the epoch order (0: the world size); a multiple of world_size dividing batch_size x world_size; a state resumes on any world size dividing it") \
    X(ORDER, "order", SP_PTYPE_ENUM, 0, 0, 1, "shuffled|source", SP_SCOPE_IMPORT,                   \
      "order pack writes samples in: shuffled (a seeded permutation of the input items of every kind: images, TSV lines, tar samples, .npy rows, llm.c windows; the list is held, never the bytes; a tar must be a regular file) or source (as listed; ImageFolder: class by class)") \
    X(ORDER_SEED, "order_seed", SP_PTYPE_INT, 0, 0, INT64_MAX, NULL, SP_SCOPE_IMPORT,              \
      "seed of pack's shuffled order; the same seed and inputs give the same files") \
    X(REMOTE_RETRIES, "remote_retries", SP_PTYPE_INT, 8, 0, 1000, NULL, SP_SCOPE_ALL_, \
      "http(s)/s3: tries after the first for a request failing with 408/429/5xx, a timeout or a reset") \
    X(REMOTE_RETRY_TIME, "remote_retry_time", SP_PTYPE_INT, 120, 1, 86400, NULL,                    \
      SP_SCOPE_ALL_, "http(s)/s3: seconds one request may spend in retries before it fails") \
    X(REMOTE_TIMEOUT, "remote_timeout", SP_PTYPE_INT, 30, 1, 3600, NULL, SP_SCOPE_ALL_, \
      "http(s)/s3: seconds without a byte received (or to connect) before a request is retried") \
    X(REMOTE_PART_SIZE, "remote_part_size", SP_PTYPE_SIZE, 8 * SP_MIB, 64 * SP_KIB, 1 * SP_GIB, NULL, \
      SP_SCOPE_WRITE | SP_SCOPE_LOAD, "http(s)/s3: adjacent blocks queued together are fetched by one ranged GET of up to this; publishing: the part size of multipart uploads (at least 5M)") \
    X(REMOTE_INFLIGHT, "remote_inflight", SP_PTYPE_INT, 0, 0, 1024, NULL, SP_SCOPE_READ | SP_SCOPE_LOAD, \
      "http(s)/s3: ranged GETs in flight at once (0: the loader opens enough GETs of one block each to keep 8 parts in flight, 16 to 64, fewer when an eighth of host_memory pays for fewer at 512 KiB each but never under 16; 16 elsewhere)") \
    X(S3_ADDRESSING, "s3_addressing", SP_PTYPE_ENUM, 0, 0, 2, "auto|path|virtual", SP_SCOPE_ALL_, \
      "s3: bucket in the path or in the host name; auto: virtual-host on AWS, path-style on a custom endpoint") \
    X(TRACE, "trace", SP_PTYPE_STRING, 0, 0, 0, NULL, SP_SCOPE_LOAD,                               \
      "write a timeline of the loader's threads to this file at close, as Chrome trace-event JSON (Perfetto, chrome://tracing); %p becomes the process id (\"\": the SHARDPACK_TRACE environment variable, else none)") \
    X(SIM_SAMPLE_US, "sim_sample_us", SP_PTYPE_INT, 0, 0, 10000000, NULL, SP_SCOPE_LOAD,           \
      "testing: every sample a worker writes first sleeps this many microseconds, a decode cost that uses no CPU (simulates many cores on a small machine; 0: off)") \
    X(SIM_READ_US, "sim_read_us", SP_PTYPE_INT, 0, 0, 10000000, NULL, SP_SCOPE_LOAD,               \
      "testing: the reader sleeps this many microseconds before each block read, as a slow disk would (0: off)") \
    X(RANK_PAD, "rank_pad", SP_PTYPE_BOOL, 0, 0, 1, NULL, SP_SCOPE_LOAD,                            \
      "drop no sample to even the ranks' shares: the short partitions repeat a sample each (as DistributedSampler pads), marked by sp_batch_is_padding") \
    X(MIX_EPOCH_SAMPLES, "mix_epoch_samples", SP_PTYPE_INT, 0, 0, 1LL << 40, NULL, SP_SCOPE_LOAD,          \
      "a mixture's epoch: this many samples, each source's share of them by weight (a source with fewer is repeated, one with more gives another part each epoch); 0: until the first source runs out") \
    X(CACHE_DIR, "cache_dir", SP_PTYPE_STRING, 0, 0, 0, NULL, SP_SCOPE_LOAD,                         \
      "http(s)/s3: a local directory where fetched blocks are kept for later epochs (with cache_size; shared safely by processes; docs/remote.md)") \
    X(CACHE_SIZE, "cache_size", SP_PTYPE_SIZE, 0, 0, 1024 * 1024 * SP_GIB, NULL, SP_SCOPE_LOAD, \
      "http(s)/s3: bytes cache_dir may hold, kept by next use in the planned order (0: no cache)") \
    X(REMOTE_THREADS, "remote_threads", SP_PTYPE_INT, 0, -1, 64, NULL, SP_SCOPE_LOAD,                 \
      "http(s)/s3: threads receiving the loader's GETs, each driving its share of the transfers (0: one per 8 usable cores of this rank, 1 to 4; -1: none, the reader drives them itself; at most one per 4 transfers)")

typedef enum sp_param {
#define SP_X_(key, name, type, def, lo, hi, choices, scope, doc) SP_PARAM_##key,
    SP_PARAM_TABLE(SP_X_)
#undef SP_X_
    SP_PARAM_COUNT_
} sp_param;

/* Values of the enum parameters, in the order of their choices. */
enum { SP_COMPRESS_AUTO = 0, SP_COMPRESS_ZSTD = 1, SP_COMPRESS_NONE = 2 };
enum { SP_IO_AUTO = 0, SP_IO_URING = 1, SP_IO_PREAD = 2 };
enum { SP_ON_ERROR_FAIL = 0, SP_ON_ERROR_SKIP = 1 };
enum { SP_TOKEN_DTYPE_STORED = 0, SP_TOKEN_DTYPE_INT32 = 1 };
enum { SP_TRANSFORM_TRAIN = 0, SP_TRANSFORM_EVAL = 1 };
enum { SP_TRANSCODE_NONE = 0, SP_TRANSCODE_JPEG = 1 };
enum { SP_IMAGE_UINT8 = 0, SP_IMAGE_FLOAT16 = 1, SP_IMAGE_BFLOAT16 = 2, SP_IMAGE_FLOAT32 = 3 };
enum { SP_LAYOUT_NHWC = 0, SP_LAYOUT_NCHW = 1 };
enum { SP_DEVICE_AUTO = -2, SP_DEVICE_CPU = -1 };
enum { SP_DEVICE_DTYPE_NONE = 0, SP_DEVICE_DTYPE_FLOAT16 = 1, SP_DEVICE_DTYPE_BFLOAT16 = 2,
       SP_DEVICE_DTYPE_FLOAT32 = 3 };
enum { SP_DEVICE_LAYOUT_NCHW = 0, SP_DEVICE_LAYOUT_NHWC = 1 };
enum { SP_ORDER_SHUFFLED = 0, SP_ORDER_SOURCE = 1 }; /* the order parameter */
enum { SP_S3_ADDRESSING_AUTO = 0, SP_S3_ADDRESSING_PATH = 1, SP_S3_ADDRESSING_VIRTUAL = 2 };

/* Description of one parameter; all strings are static. */
typedef struct sp_param_info {
    size_t struct_size;  /* sizeof(sp_param_info), set by the caller (see the conventions at the top) */
    int key;             /* sp_param */
    const char *name;    /* "block_size" */
    int type;            /* sp_param_type */
    int64_t def, min, max;
    const char *choices; /* "auto|zstd|none" for SP_PTYPE_ENUM, else NULL */
    const char *doc;
    int scope;           /* SP_SCOPE_* bits: which parts read it */
} sp_param_info;

/* Number of parameters (SP_PARAM_COUNT_ of the loaded library). */
SP_API int sp_param_count(void);
/* Fills *out for key. SP_EINVAL for an unknown key. */
SP_API int sp_param_describe(int key, sp_param_info *out);
/* The key whose name is name ('-' and '_' are interchangeable), or SP_ENOENT. */
SP_API int sp_param_lookup(const char *name);

typedef struct sp_params sp_params;

/* A parameter set holding every default. NULL when out of memory. */
SP_API sp_params *sp_params_create(void);
SP_API void sp_params_destroy(sp_params *p);
/* Sets key to value. SP_EINVAL for an unknown key, SP_ERANGE outside [min, max]. */
SP_API int sp_params_set(sp_params *p, int key, int64_t value);
/* Parses value for the parameter named name: sizes with suffixes, booleans, enum choices by name.
 * SP_ENOENT for an unknown name, SP_EINVAL for an unparsable value, SP_ERANGE out of bounds; the
 * message (sp_last_error) names the parameter and its bounds or choices. */
SP_API int sp_params_set_str(sp_params *p, const char *name, const char *value);
/* The current value of key; the default when p is NULL; 0 for an unknown key or a FLOAT3 one. */
SP_API int64_t sp_params_get(const sp_params *p, int key);
/* A FLOAT3 parameter's three numbers (the default when p is NULL). SP_EINVAL when key is not one. */
SP_API int sp_params_get_float3(const sp_params *p, int key, double out[3]);
/* The value of a string parameter (SP_PTYPE_STRING): "" when unset; valid until p changes or is
 * destroyed. NULL (SP_EINVAL in sp_last_error()) for a key that does not take a string. */
SP_API const char *sp_params_get_str(const sp_params *p, int key);
/* Sets a FLOAT3 parameter. SP_EINVAL when key is not one or a number is not finite, SP_ERANGE
 * outside the parameter's bounds. */
SP_API int sp_params_set_float3(sp_params *p, int key, const double v[3]);

/* ------------------------------------------------------------------------------------------------
 * Schema: the named, typed fields of a sample
 * ---------------------------------------------------------------------------------------------- */
#define SP_MAX_FIELDS 64
#define SP_MAX_DIMS 8
#define SP_MAX_NAME 63

typedef struct sp_schema sp_schema;

typedef struct sp_field_info {
    size_t struct_size;  /* sizeof(sp_field_info), set by the caller (see the conventions at the top) */
    const char *name;          /* owned by the schema */
    int kind;                  /* sp_field_kind */
    int dtype;                 /* sp_dtype of one element */
    uint32_t ndim;             /* 0 for image, label, bytes; 1 for tokens; 0..SP_MAX_DIMS tensor */
    uint64_t shape[SP_MAX_DIMS];
    uint64_t fixed_bytes;      /* bytes per sample; 0 for variable-length kinds (image, bytes) */
} sp_field_info;

SP_API sp_schema *sp_schema_create(void);
SP_API void sp_schema_destroy(sp_schema *s);
/* Appends a field. Rules: image and bytes take dtype uint8 and ndim 0; label takes int64 and ndim 0;
 * tokens take uint16 or uint32 and ndim 1 (shape[0] = sequence length); tensor takes any numeric
 * dtype and 0..SP_MAX_DIMS dims, each >= 1. Names are 1..SP_MAX_NAME bytes of [A-Za-z0-9_.-] and
 * unique. SP_EINVAL when a rule is broken, SP_EEXIST for a duplicate, SP_ELIMIT past SP_MAX_FIELDS
 * or when one sample would exceed 1 GiB. */
SP_API int sp_schema_add(sp_schema *s, const char *name, int kind, int dtype, uint32_t ndim,
                         const uint64_t *shape);
SP_API size_t sp_schema_num_fields(const sp_schema *s);
/* Fills *out for field i. SP_ERANGE past the last field; SP_EINVAL for a NULL out or a struct_size
 * below the first layout (as every function filling a struct). */
SP_API int sp_schema_field(const sp_schema *s, size_t i, sp_field_info *out);
/* Index of the field named name, or SP_ENOENT. */
SP_API int sp_schema_find(const sp_schema *s, const char *name);
/* 1 when both schemas have the same fields in the same order, else 0. */
SP_API int sp_schema_equal(const sp_schema *a, const sp_schema *b);

/* ------------------------------------------------------------------------------------------------
 * Writer: samples in, a dataset directory out.
 *
 * The dataset is written into a hidden staging directory beside the destination
 * (PARENT/.NAME.shardpack-tmp), every shard fsynced with its trailer written last, then the manifest;
 * sp_writer_finish() makes it appear at the destination in one rename (or one atomic exchange with
 * the dataset it replaces). A writer destroyed before finish, or a process killed at any moment,
 * leaves the destination as it was: never a file that opens as a complete shard, never a manifest
 * naming one. The destination must be missing, empty, or (with overwrite) a dataset; a directory
 * holding other files is refused, so a writer never deletes files it did not write.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sp_writer sp_writer;

/* One field's value for sp_writer_add. For fixed-size kinds size must equal the field's
 * fixed_bytes; a label is one little-endian int64. */
typedef struct sp_value {
    const void *data;
    size_t size;
} sp_value;

typedef struct sp_write_stats {
    size_t struct_size;  /* sizeof(sp_write_stats), set by the caller (see the conventions at the top) */
    uint64_t samples;      /* samples added */
    uint64_t raw_bytes;    /* uncompressed block bytes produced */
    uint64_t stored_bytes; /* block bytes written to shards (compressed or stored) */
    uint64_t file_bytes;   /* bytes of shard files, headers, padding and indexes included */
    uint64_t blocks;       /* blocks written */
    uint64_t blocks_stored_raw; /* of which stored uncompressed (compress=auto or none) */
    uint64_t shards;       /* shards finished */
    uint64_t field_raw_bytes[SP_MAX_FIELDS]; /* raw bytes per field, in schema order */
} sp_write_stats;

/* Prepares to write a dataset of the given schema (copied) to dir. params may be NULL for defaults
 * (shard_size, block_size, level, threads, compress, overwrite, max_block_bytes, max_shards,
 * max_sample_bytes, dataset_id, validate_images). Everything a writer produces is a function of
 * its samples, metadata and parameters except the dataset id, drawn at random unless dataset_id
 * sets it: with a fixed dataset_id the same input gives the same files, byte for byte.
 * SP_EEXIST when dir holds a dataset and overwrite is off, or holds other files, or when dir or its
 * staging name is a symbolic link or not a directory, or the staging directory belongs to another
 * user (nothing is written through a link: name the real directory), or dir is a mount point (the
 * dataset is staged beside dir and renamed into place, which a mount point refuses: name a new
 * directory inside it; finish refuses one that appeared meanwhile the same way); SP_EBUSY when another
 * writer is writing it; SP_EIO when the staging directory cannot be created; SP_ESYS when
 * threads cannot be started. */
SP_API int sp_writer_open(const char *dir, const sp_schema *schema, const sp_params *params,
                          sp_writer **out);
/* Sets a dataset metadata entry (value up to 16 MiB), replacing an earlier one. A key is 1..255
 * bytes of UTF-8 text (shortest forms, no surrogates) without control characters (U+0000..U+001F,
 * U+007F..U+009F); any other key is refused with SP_EINVAL, the message showing it escaped.
 * Readers accept every key the format allows (docs/format.md), so files from elsewhere may hold
 * others. Only until the first shard is complete (SP_ESTATE after), so every shard carries the
 * same metadata. Conventional keys: "class_names" (names separated by '\n'), "source",
 * "created_by". At finish the writer adds "image_sizes" to the manifest (only: the shards are
 * complete by then) when the schema has image fields: "image_sizes 1\n", then per image field whose
 * every value is an image "INDEX WIDTH HEIGHT PIXELS WHOLE WEBP\n" (the largest width, height and
 * width x height, the most whole-image bytes a JPEG's coefficients or an interlaced PNG's rows take,
 * 1 when any value is a WebP); the loader sizes its image decoders by it. */
SP_API int sp_writer_set_meta(sp_writer *w, const char *key, const void *value, size_t len);
/* Adds one sample; values[i] is field i of the schema, nvalues must equal the field count.
 * SP_ESCHEMA when a size does not match; SP_ELIMIT when one sample exceeds max_sample_bytes or
 * max_block_bytes; SP_EINVAL for a NULL value; SP_EBADINPUT, with validate_images on (the
 * default), when an image field's bytes are not an image the loader can decode (sp_image_probe
 * refuses them: a PNG, an empty value, a damaged JPEG header; the message names the sample, the
 * field and the cause): the sample is refused and the writer goes on.
 * May block while compression threads catch up (bounded memory), writing finished blocks; a failure
 * there (SP_EIO, SP_ENOMEM, SP_ELIMIT past max_shards, SP_ECANCELED after sp_writer_abort) leaves
 * the writer failed: only destroy is then valid. sp_writer_failed tells the two apart. */
SP_API int sp_writer_add(sp_writer *w, const sp_value *values, size_t nvalues);
/* Progress so far; safe to call between adds. */
SP_API int sp_writer_stats(const sp_writer *w, sp_write_stats *out);
/* Flushes, writes the manifest and publishes the dataset at its destination. After it only stats
 * and destroy are valid. SP_EINVAL when no sample was added (an empty dataset is not published);
 * SP_EEXIST when the destination gained foreign files meanwhile; SP_ECANCELED when
 * sp_writer_abort was called before the moment of publication (nothing is published). */
SP_API int sp_writer_finish(sp_writer *w);
/* Asks w to stop: the add or finish running now, or the next one, fails with SP_ECANCELED and
 * leaves the writer failed, so nothing is published; destroy then removes what was staged.
 * finish looks at the request before writing each block and once more just before the rename that
 * publishes; a request that comes after that rename changes nothing (finish returns 0).
 * Threads: the one call that may run concurrently with the thread using w, and
 * async-signal-safe: it only sets a flag, so a signal handler may call it (on the thread that owns
 * w, or any thread, as long as w is not being destroyed meanwhile). The writer's own threads block
 * every signal, so a process's handlers never run on them. */
SP_API void sp_writer_abort(sp_writer *w);
/* 1 when w takes no more samples: a call failed for a reason of the writer's own (a write error,
 * max_shards reached, out of memory) or sp_writer_abort was called, and only destroy is left;
 * 0 otherwise, also after a refused sample (SP_ESCHEMA, SP_ELIMIT, SP_EINVAL of that sample),
 * after which adding goes on. Tells a bad input item from a writer that cannot go on. */
SP_API int sp_writer_failed(const sp_writer *w);
/* Frees w; unless finish succeeded, removes the staging directory and everything in it. */
SP_API void sp_writer_destroy(sp_writer *w);
SP_API const char *sp_writer_errmsg(const sp_writer *w);

/* ------------------------------------------------------------------------------------------------
 * Import: a dataset built from files of another format.
 *
 * Each source kind is one entry of the library's table; the kinds, by name:
 *   "imagefolder"  a directory DIR/CLASS/NAME.jpg|.jpeg; label = index of CLASS in sorted order
 *                  (the output directory and writers' staging directories are not classes; a class
 *                  without a .jpg/.jpeg file is refused); metadata class_names. One source.
 *   "tsv"          lines PATH<TAB>LABEL naming JPEG files (relative to the list's directory)
 *   "llmc"         llm.c token files (uint16 or uint32 tokens): samples of seq_len + 1 tokens
 *                  taken with stride seq_len (the parameter is required); metadata seq_len
 *   "wds"          WebDataset tar files ("webdataset", "tar"): members KEY.jpg|.jpeg and KEY.cls
 *   "npy"          NumPy .npy files, one tensor field each (named after the file's stem); rows
 *                  are samples, and every file must have as many
 * The image kinds write the schema (image: image, label: label). An input item that cannot be used
 * (unreadable, empty, not a decodable image under validate_images, a bad TSV line, a tar sample
 * missing a member, a sample the writer refuses) is skipped: it goes to the skip callback, never
 * to stdout or stderr, and the import goes on; with strict it ends the import (SP_EBADINPUT, the
 * message naming the item and the cause). Anything wrong with a source as a whole (a truncated
 * tar, a .npy header that does not parse, a token file whose size does not match its header), and
 * any failure of the writer itself (a write error, max_shards), ends the import.
 *
 * The writer is opened at the first sample, so an import that yields none creates nothing, and its
 * dataset is published only when every item was read: a failed or cancelled import leaves the
 * output directory as it was. Metadata written: the caller's (sp_import_set_meta), "source" (the
 * sources, one per line, as given), then the kind's. Parameters read: strict and seq_len, and
 * every writer parameter (validate_images is applied by the import itself, naming the item).
 * Threads: an import is used by one thread at a time; only sp_import_abort may be called from
 * another thread or a signal handler meanwhile. The callbacks run on the thread inside sp_import_run.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sp_import sp_import;

/* Where an import stands. Caller-allocated for sp_import_progress_get, with struct_size set as
 * for every public struct (see the conventions at the top). The progress callback receives one the
 * library filled (struct_size: the library's sizeof). */
typedef struct sp_import_progress {
    size_t struct_size;
    uint64_t samples;     /* input items written as samples */
    uint64_t skipped;     /* input items skipped */
    uint64_t bytes;       /* input bytes of the items handled (written or skipped) */
    uint64_t total_items; /* items the sources hold, when the kind can tell ahead (else 0) */
    uint64_t total_bytes; /* input bytes the sources hold, when known (else 0) */
} sp_import_progress;

/* Called once per skipped input item: what names it (a path, "list.tsv:7", "x.tar:KEY",
 * "a.npy row 3"), reason says why, bytes is its input size. The strings are valid during the call. */
typedef void (*sp_import_skip_fn)(void *user, const char *what, const char *reason, uint64_t bytes);
/* Called after every item handled (the caller rate-limits any drawing itself). */
typedef void (*sp_import_progress_fn)(void *user, const sp_import_progress *progress);

/* Number of source kinds; sp_import_kind_name(i) for i below it names each ("imagefolder"...);
 * NULL (SP_ERANGE's message) past the last. */
SP_API int sp_import_kind_count(void);
SP_API const char *sp_import_kind_name(int kind);
/* The kind named name (or one of its aliases: "webdataset" and "tar" for "wds"), or SP_ENOENT
 * with a message listing the kinds. */
SP_API int sp_import_kind_lookup(const char *name);
/* The kind of source path, from what it is (a directory is an ImageFolder) and its name (.tsv,
 * .tar, .npy, .bin with an llm.c magic). SP_ENOENT / SP_EIO when path cannot be examined;
 * SP_EFORMAT for a .bin without an llm.c magic; SP_EEXIST for a shardpack dataset (its directory,
 * manifest or a shard), which is not a source; SP_ENOTSUP when nothing tells (name the kind). */
SP_API int sp_import_detect(const char *path);

/* Opens an import of n sources (copied) of one kind into the dataset directory outdir: kind is a
 * name sp_import_kind_lookup takes, or NULL to detect it from every source (all must agree).
 * Examines the sources far enough to fix the schema, the totals and the metadata (an ImageFolder's
 * class list, a .npy header, an llm.c header), reading no sample yet. params may be NULL.
 * SP_EINVAL for what the request itself gets wrong (no source, sources of several kinds, two
 * ImageFolders, an unknown kind, llmc without seq_len or seq_len given to another kind);
 * SP_ENOTSUP / SP_EFORMAT as sp_import_detect; a source that cannot be used at all: SP_ENOENT,
 * SP_EIO, SP_EFORMAT (not of its kind), SP_EBADINPUT (an ImageFolder without images, a class
 * without any, token files too short for one sample); SP_ENOMEM. The message names the file. *out is NULL on failure. */
SP_API int sp_import_open(const char *kind, const char *const *sources, size_t n, const char *outdir,
                          const sp_params *params, sp_import **out);
/* Frees imp; an import not run to success removes what its writer staged. NULL is accepted. */
SP_API void sp_import_destroy(sp_import *imp);
SP_API const char *sp_import_errmsg(const sp_import *imp);
/* The kind chosen (a name from the table); NULL for a NULL imp. */
SP_API const char *sp_import_kind(const sp_import *imp);
/* The schema the dataset will have; owned by imp. NULL for a NULL imp. */
SP_API const sp_schema *sp_import_schema(const sp_import *imp);
/* Callbacks (each may be NULL) and the pointer they receive; before sp_import_run. Without an
 * on_skip, skipped items are only counted. SP_EINVAL for a NULL imp. */
SP_API int sp_import_set_callbacks(sp_import *imp, sp_import_skip_fn on_skip,
                                   sp_import_progress_fn on_progress, void *user);
/* A metadata entry of the caller's ("created_by", ...), written before the library's own; before
 * sp_import_run. Limits as sp_writer_set_meta; SP_EINVAL, SP_ENOMEM, SP_ESTATE once run. */
SP_API int sp_import_set_meta(sp_import *imp, const char *key, const void *value, size_t len);
/* Reads every item, writes the samples and publishes the dataset. Once per import. 0 when the
 * dataset is in place. SP_EBADINPUT when no sample came out of the input (every item skipped, or
 * none there; nothing is written), with a message naming the first skipped item or the source,
 * and for a bad item under strict; SP_ECANCELED after sp_import_abort (nothing
 * published); a source's read error (SP_EIO, SP_ETRUNC, SP_EFORMAT...); or the writer's own
 * failure (sp_writer_open's and sp_writer_finish's codes, SP_EIO, SP_ELIMIT past max_shards). */
SP_API int sp_import_run(sp_import *imp);
/* Asks a running import to stop: the current item is its last, and its writer stops short of
 * publishing (sp_writer_abort); sp_import_run then returns SP_ECANCELED. Async-signal-safe (it
 * only sets flags), so a signal handler may call it; a request that comes after the dataset was
 * published changes nothing. */
SP_API void sp_import_abort(sp_import *imp);
/* Fills *out up to its struct_size. SP_EINVAL for a NULL argument or a struct_size below the
 * first layout. A query: success leaves sp_last_error() as it was. */
SP_API int sp_import_progress_get(const sp_import *imp, sp_import_progress *out);
/* The import's writer, for sp_writer_stats: NULL before the first sample; owned by imp, valid
 * until sp_import_destroy. */
SP_API const sp_writer *sp_import_writer(const sp_import *imp);

/* The whole import in one call: open (kind NULL: detected), callbacks, run, destroy. Returns what
 * the failing step returned; the message is in sp_last_error(). on_skip and user may be NULL. */
SP_API int sp_pack(const char *kind, const char *const *sources, size_t n, const char *outdir,
                   const sp_params *params, sp_import_skip_fn on_skip, void *user);

/* ------------------------------------------------------------------------------------------------
 * Dataset reader: a dataset directory (manifest), a manifest file, a single shard, or a list of
 * shards. Shards are opened lazily, so opening a dataset of 10,000 shards reads only its manifest.
 * Every size and offset read from a file is checked before use. A shard that disagrees with the
 * manifest, cannot be opened or fails a read while the manifest's path names another file than
 * the one read (a writer published a new dataset there) gives SP_ECHANGED, "the dataset was
 * replaced while being read ...; reopen the dataset", not a corruption code.
 *
 * Threads: after open, sp_dataset_read_block, sp_dataset_block_info and sp_dataset_shard_info may be
 * called from several threads at once; the rest is for one thread at a time.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sp_dataset sp_dataset;
typedef struct sp_block sp_block;

typedef struct sp_shard_info {
    size_t struct_size;  /* sizeof(sp_shard_info), set by the caller (see the conventions at the top) */
    const char *path;      /* owned by the dataset */
    uint64_t file_bytes;
    uint64_t blocks;
    uint64_t samples;
    uint64_t first_block;  /* global index of its first block */
    uint64_t first_sample; /* global index of its first sample */
} sp_shard_info;

enum { SP_CODEC_STORED = 0, SP_CODEC_ZSTD = 1 };

typedef struct sp_block_info {
    size_t struct_size;  /* sizeof(sp_block_info), set by the caller (see the conventions at the top) */
    uint64_t shard;        /* shard index */
    uint64_t index;        /* block index within the shard */
    uint64_t offset;       /* byte offset in the shard file */
    uint64_t stored_bytes; /* bytes on disk */
    uint64_t raw_bytes;    /* bytes after decompression */
    uint64_t samples;
    uint64_t first_sample; /* global index of its first sample */
    uint64_t checksum;     /* XXH3-64 of the stored bytes */
    uint64_t raw_checksum; /* XXH3-64 of the raw bytes */
    int codec;             /* SP_CODEC_* */
} sp_block_info;

/* Opens path: a dataset directory (its manifest.spm, or every *.sps in it when it has none), a
 * manifest file, one shard file, or a glob pattern such as "data/shard-0*.sps" naming shard files
 * (taken when path names nothing itself; the matches in natural name order, as in a directory).
 * params may be NULL (limits: max_block_bytes, max_shards).
 * SP_ENOENT, SP_EFORMAT, SP_EVERSION, SP_ETRUNC, SP_ECORRUPT, SP_ECHECKSUM, SP_ELIMIT, SP_EIO. */
SP_API int sp_dataset_open(const char *path, const sp_params *params, sp_dataset **out);
/* Opens the listed shard files as one dataset, in the given order; they must share a schema. A
 * shard given twice (one file under two names, or a copy: the same dataset id, shard number and
 * index checksum) is refused with SP_EINVAL naming both; so is it by sp_loader_open_shards. */
SP_API int sp_dataset_open_shards(const char *const *paths, size_t n, const sp_params *params,
                                  sp_dataset **out);
SP_API void sp_dataset_close(sp_dataset *d);
SP_API const char *sp_dataset_errmsg(const sp_dataset *d);

SP_API const sp_schema *sp_dataset_schema(const sp_dataset *d);
SP_API uint64_t sp_dataset_num_samples(const sp_dataset *d);
SP_API uint64_t sp_dataset_num_blocks(const sp_dataset *d);
SP_API uint64_t sp_dataset_num_shards(const sp_dataset *d);
/* 64-bit identity of the dataset's content (hash of manifest entries); stable across opens. */
SP_API uint64_t sp_dataset_fingerprint(const sp_dataset *d);
/* Metadata entries. meta_get: SP_ENOENT when key is absent. */
SP_API size_t sp_dataset_meta_count(const sp_dataset *d);
SP_API int sp_dataset_meta_at(const sp_dataset *d, size_t i, const char **key, const void **value,
                              size_t *len);
SP_API int sp_dataset_meta_get(const sp_dataset *d, const char *key, const void **value,
                               size_t *len);

/* SP_ERANGE past the last shard. */
SP_API int sp_dataset_shard_info(sp_dataset *d, uint64_t shard, sp_shard_info *out);
/* Needs the block's shard opened (done here, lazily). SP_ERANGE past the last block. */
SP_API int sp_dataset_block_info(sp_dataset *d, uint64_t block, sp_block_info *out);
/* Global block and row of global sample i. SP_ERANGE past the last sample. */
SP_API int sp_dataset_locate(const sp_dataset *d, uint64_t sample, uint64_t *block, uint32_t *row);

/* Reads block, verifies both checksums, decompresses and validates its layout. *out is owned by the
 * caller (sp_block_free). SP_ECHECKSUM / SP_ECORRUPT name shard, block and byte offset. */
SP_API int sp_dataset_read_block(sp_dataset *d, uint64_t block, sp_block **out);
SP_API void sp_block_free(sp_block *b);
SP_API uint32_t sp_block_num_samples(const sp_block *b);
/* Field `field` of row `row`: *data points into the block (valid until sp_block_free), *size bytes.
 * SP_ERANGE for a bad row or field. */
SP_API int sp_block_get(const sp_block *b, uint32_t row, size_t field, const void **data,
                        size_t *size);

/* ------------------------------------------------------------------------------------------------
 * Verification: every checksum and every index invariant, reporting each fault and going on.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sp_fault {
    size_t struct_size; /* sizeof(sp_fault) of the library: fields past it do not exist */
    const char *file;   /* the shard or manifest */
    int64_t block;      /* block index within the shard, -1 when the fault is not in a block */
    uint64_t offset;    /* byte offset in file where the fault lies */
    int code;           /* sp_error */
    const char *message;
} sp_fault;

typedef void (*sp_fault_fn)(const sp_fault *fault, void *user);

typedef struct sp_verify_report {
    size_t struct_size;  /* sizeof(sp_verify_report), set by the caller (see the conventions at the top) */
    uint64_t shards, blocks, samples, bytes; /* checked */
    uint64_t faults;
} sp_verify_report;

/* Verifies the dataset or shard at path (any path sp_dataset_open takes, a glob of shards
 * included: each match is verified as a shard); fn (may be NULL) is called once per fault, on the calling
 * thread. Returns 0 when sound, SP_ECORRUPT when any fault was found, or another code when path
 * cannot be examined at all. SP_ECHANGED when the dataset was replaced while being verified (a
 * writer published another at path, e.g. pack --overwrite): a shard that disagreed with the
 * manifest, or could not be opened, came with the manifest path naming another file than the one
 * read; that is not reported as a fault, verification stops there, and running it again checks
 * the new dataset. Faults found before it stand. */
SP_API int sp_verify(const char *path, const sp_params *params, sp_fault_fn fn, void *user,
                     sp_verify_report *report);

/* ------------------------------------------------------------------------------------------------
 * Loader: batches streamed from a dataset with bounded memory.
 *
 * Pipeline: one reader thread (io_uring, or pread) fills a ring of page-aligned buffers with whole
 * compressed blocks; `threads` decode workers verify, decompress and write each sample straight into
 * its row of a fixed-size batch; batches leave in order. Every buffer is allocated at open from
 * host_memory and never grows.
 *
 * Order: for epoch e the order is a pure function of (seed, e, rank, world_size) and the dataset:
 * blocks are permuted, dealt to ranks so each rank holds the same number of samples, grouped into
 * windows of shuffle_window blocks, and samples are permuted within a window. Output is
 * bit-identical for any thread count and timing; resuming starts at a batch, replaying nothing.
 *
 * Fields delivered: label ([B] int64), tokens ([B, T+1]), tensor ([B, ...]), and image fields
 * decoded and transformed ([B, S, S, 3] or [B, 3, S, S] by image_layout, S = image_size, in
 * image_dtype; see sp_image_transform below for the transform). Bytes fields are not batched.
 * An image that cannot be decoded (corrupt, libjpeg warning, beyond max_pixels) is handled like a
 * corrupt block, by on_error: it fails its batch, or its row is filled from the same batch.
 *
 * Threads: the consumer calls are sp_loader_next, sp_loader_set_epoch, sp_loader_save_state,
 * sp_loader_load_state, sp_loader_batches_per_epoch, sp_loader_samples_per_epoch and
 * sp_loader_close. They take turns: one may run at a time per loader, from any thread. A consumer
 * call made while another thread is inside one returns SP_EBUSY at once, without waiting and
 * without reading or writing anything of the loader or its out arguments (its message is in
 * sp_last_error() only; the counting functions return 0). sp_loader_release, sp_loader_release_on
 * and sp_loader_stats_get may be called from any thread at any time before close (bindings release
 * a batch wherever its last view dies). No call may start once sp_loader_close has returned 0:
 * a caller that shares a loader between threads must make sure of that itself.
 * Processes: every call on a loader in a fork() child of the process that opened it returns
 * SP_ESTATE (the counting functions 0), sp_loader_close included, which then frees nothing; the
 * parent's loader is untouched (docs/loader.md, "Processes and fork()").
 * ---------------------------------------------------------------------------------------------- */
typedef struct sp_loader sp_loader;
typedef struct sp_batch sp_batch;

/* Opens a loader over path (as sp_dataset_open: directory, manifest, shard, or a glob pattern
 * such as "data/shard-0*.sps" naming shard files). params may be NULL.
 * SP_ELIMIT when host_memory cannot hold one window and two batches, or device_memory two device
 * batches (the message names the minimum); SP_EINVAL when rank >= world_size or the dataset has
 * fewer blocks than ranks; SP_EDEVICE when device=cuda:N cannot be used (SP_ENOTSUP in a library
 * built without CUDA); the dataset open codes otherwise. Nothing is read until the first sp_loader_next. */
SP_API int sp_loader_open(const char *path, const sp_params *params, sp_loader **out);
/* Opens a loader over an explicit list of shard files. */
SP_API int sp_loader_open_shards(const char *const *paths, size_t n, const sp_params *params,
                                 sp_loader **out);
/* Stops the pipeline and frees everything. SP_EBUSY, and nothing is freed or changed, while
 * batches are leased (release them first) or while another thread is inside a consumer call
 * (close is refused rather than waiting, as that thread would use the loader again when its call
 * returns; close once it has returned). NULL is accepted. */
SP_API int sp_loader_close(sp_loader *l);
SP_API const char *sp_loader_errmsg(const sp_loader *l);

/* The next batch, leased to the caller until sp_loader_release. timeout_ms < 0 waits without limit.
 * Returns 0; SP_EEPOCH once at the end of each epoch (the next call starts the next epoch);
 * SP_EDONE after the last epoch; SP_ETIMEDOUT; SP_EBUSY when the ring cannot advance because the
 * caller holds too many batches, or at once (leaving *out as it was) when another thread is inside
 * a consumer call; or the error of a corrupt or unreadable block (on_error=fail), whose message
 * names shard, block and sample. *out is NULL on every other failure. */
SP_API int sp_loader_next(sp_loader *l, sp_batch **out, int timeout_ms);
/* Returns a batch's memory to the ring. SP_EINVAL for a batch not leased from l. */
SP_API int sp_loader_release(sp_loader *l, sp_batch *b);
/* Restarts at the beginning of epoch (0-based), as if it had just begun. Batches still leased stay
 * valid until released, and the new epoch reaches their slots last. SP_ERANGE past epoch 2^63 - 1.
 * SP_EBUSY when another thread is inside a consumer call. */
SP_API int sp_loader_set_epoch(sp_loader *l, uint64_t epoch);
/* Batches and samples per epoch for this rank (equal on every rank; see stats for those dropped).
 * Consumer calls: 0, with SP_EBUSY's message in sp_last_error(), while another thread is inside one. */
SP_API uint64_t sp_loader_batches_per_epoch(const sp_loader *l);
SP_API uint64_t sp_loader_samples_per_epoch(const sp_loader *l);
/* The sample ids this rank's epoch delivers, in order (batch after batch, row after row), as
 * sp_batch_sample_id gives them, computed from the order alone: nothing is read and the loader's
 * position does not move. Writes min(cap, samples of that epoch) ids and returns that count; with
 * ids NULL and cap 0, returns the epoch's samples. A repeat (rank_pad) has bit 63 set. A consumer
 * call (SP_EBUSY while another thread is inside one). SP_EINVAL, SP_ERANGE, SP_ENOMEM. */
SP_API int64_t sp_loader_epoch_order(sp_loader *l, uint64_t epoch, uint64_t *ids, uint64_t cap);

/* Batch accessors; pointers are valid until the batch is released. */
SP_API uint64_t sp_batch_epoch(const sp_batch *b);
SP_API uint64_t sp_batch_index(const sp_batch *b);  /* within its epoch */
SP_API uint32_t sp_batch_size(const sp_batch *b);   /* rows: batch_size, or fewer for a last batch */
SP_API size_t sp_batch_num_fields(const sp_batch *b);
SP_API const char *sp_batch_field_name(const sp_batch *b, size_t i);
/* Field i as a DLPack tensor (dlpack/dlpack.h): compact row-major, byte_offset 0, shape[0] rows.
 * NULL past the last field. */
SP_API const DLTensor *sp_batch_tensor(const sp_batch *b, size_t i);
/* Index of the field named name, or SP_ENOENT. */
SP_API int sp_batch_find(const sp_batch *b, const char *name);
/* Global sample index (in the dataset) of row `row`, for checking coverage; UINT64_MAX when the
 * row was filled in for a skipped corrupt sample. */
SP_API uint64_t sp_batch_sample_id(const sp_batch *b, uint32_t row);
/* 1 when row `row` repeats a sample to fill this rank's share of the epoch (rank_pad; its
 * sample id is the sample repeated), else 0: leave such rows out of metrics. SP_EINVAL for NULL,
 * SP_ERANGE for a row past the batch. */
SP_API int sp_batch_is_padding(const sp_batch *b, uint32_t row);

#define SP_MIX_MAX 16 /* sources of one mixture */

typedef struct sp_loader_stats {
    size_t struct_size;  /* sizeof(sp_loader_stats), set by the caller (see the conventions at the top) */
    uint64_t epoch, batches, samples;       /* delivered */
    uint64_t bytes_read;                    /* compressed bytes read from files */
    uint64_t bytes_decompressed;            /* raw bytes produced by decoding */
    uint64_t blocks_read, blocks_skipped, samples_skipped;
    uint64_t samples_dropped_per_epoch;     /* to give every rank the same batch count */
    double stall_s;                         /* consumer time spent waiting inside next() */
    double read_busy_s, decode_busy_s;      /* busy time of the reader and of all workers */
    double elapsed_s;                       /* since the first next() */
    uint64_t read_ring_bytes, read_ring_peak;   /* pool size and peak bytes in use */
    uint64_t batch_ring_bytes, batch_ring_slots, batch_ring_peak_slots;
    uint64_t batches_ready;                 /* decoded, waiting for the consumer, now */
    uint64_t scratch_bytes;                 /* per-worker decompression buffers, all workers */
    uint64_t host_memory_bytes;             /* the budget */
    uint64_t host_allocated_bytes;          /* every pool together (never above the budget) */
    int threads;
    int io;                                 /* SP_IO_URING or SP_IO_PREAD: the path in use */
    int direct_io;                          /* 1 when O_DIRECT reads are in use */
    char io_note[SP_ERRMSG_MAX];                    /* why the fallback happened, or "" */
    uint64_t images_decoded;                /* images decoded into rows */
    uint64_t images_bad;                    /* images refused: corrupt, warned about or too large */
    uint64_t image_scratch_bytes;           /* per-worker decoder buffers, all workers (in scratch_bytes) */
    char bad_note[SP_ERRMSG_MAX];                   /* the latest corrupt block or refused image, naming its
                                             * shard, block and sample, or "" */
    /* The device stage (device=cuda:N or auto); zero for host batches. With it, the fields above
     * describe the host stage, whose consumer is the copy thread: it runs up to a few batches (and
     * across an epoch's end) ahead of the caller, so epoch, batches, samples and stall_s count what
     * reached the copy thread; device_empty_s is the caller's own wait. */
    int device;                             /* CUDA device of the batches, or -1 for host batches */
    int host_pinned;                        /* 1 when the batch ring is page-locked for the copies */
    char device_note[SP_ERRMSG_MAX];                /* device=auto: why batches stay in host memory, or "" */
    uint64_t device_memory_bytes;           /* the device budget */
    uint64_t device_ring_bytes, device_ring_slots; /* the device ring (and its tables), allocated at open */
    uint64_t device_bytes, device_bytes_peak;      /* bytes of device slots holding a batch, now and peak */
    uint64_t device_batches;                /* batches copied to the device */
    uint64_t bytes_copied;                  /* host-to-device bytes */
    double copy_s;                          /* GPU time of the copies and conversions (CUDA events) */
    double device_empty_s;                  /* consumer time in next() with no batch ready on the device */
    char threads_note[SP_ERRMSG_MAX];       /* threads=0: how the worker count was derived (usable
                                             * cores, then what host_memory holds); "" when given */
    /* Which process of the job this is, and where each value came from (the parameters, or the
     * launcher variables RANK/WORLD_SIZE, OMPI_COMM_WORLD_*, PMI_*, SLURM_PROCID/SLURM_NTASKS;
     * LOCAL_RANK/LOCAL_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_*, MPI_LOCAL*, SLURM_LOCALID with
     * SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE). local_rank is -1 and local_world_size 0
     * where no launcher says; the defaults (threads=0, host_memory=0) divide the node among the
     * local world size's ranks. */
    int rank, world_size, local_rank, local_world_size;
    char rank_note[SP_ERRMSG_MAX];
    char host_memory_note[SP_ERRMSG_MAX];   /* host_memory=0: how the budget was derived; "" when given */
    int partitions;                         /* canonical partitions of the order (docs/loader.md, Order) */
    /* A mixture (sp_loader_open_mix): its sources, and the samples of each delivered (rows of the
     * batches handed out); 0 sources for one dataset. */
    int sources;
    uint64_t source_samples[SP_MIX_MAX];
    uint64_t trace_events;                  /* trace events recorded (the trace parameter), and of them */
    uint64_t trace_events_dropped;          /* those overwritten: each thread's ring keeps its latest */
    uint64_t jobs_in_flight_peak;           /* most decode jobs run by workers at once */
    double read_wait_io_s;                  /* reader time waiting for a read with every I/O slot in use */
    double read_wait_slot_s;                /* reader time held up by a batch slot the consumer has not freed */
    double read_wait_space_s;               /* reader time held up by read-ring space (blocks not yet decoded);
                                             * reads that complete meanwhile are reaped within these two */
    char memory_note[SP_ERRMSG_MAX];        /* host_memory=0: why the budget is not the default, or "" */
    /* rank_pad: this rank's rows per epoch that repeat a sample (sp_batch_is_padding), and those
     * handed out so far (counted in samples too, never in source_samples); 0 without rank_pad. */
    uint64_t samples_padded_per_epoch;
    uint64_t samples_padded;
    /* A remote dataset: the block bytes fetched from the server; with cache_dir and cache_size
     * (docs/remote.md, "The cache"), the block reads the cache served and those that sent a GET
     * (a read that took a copy of the same block's fetch, still out or still in memory, is neither),
     * the bytes it served, the blocks it took in, the entries evicted to make room (by any of this loader's
     * reads), the damaged or cut entries removed, and the bytes the directory holds (every process's
     * entries) and may hold. */
    uint64_t remote_bytes;
    uint64_t cache_hits, cache_misses, cache_hit_bytes;
    uint64_t cache_admitted, cache_evictions, cache_discarded;
    uint64_t cache_bytes, cache_size;
    /* Prefetch that follows need: the batch ring (batch_ring_slots at most) starts with one shuffle
     * window of batches and two more, and grows by a slot each time the consumer waits for a batch
     * that limit held back; slots never used are never touched (not resident). */
    uint64_t batch_ring_in_use;             /* slots holding a batch now (filling, ready or leased) */
    uint64_t batch_ring_limit;              /* slots the ring may use now; all of them when prefetch is given */
    uint64_t batch_ring_grown;              /* times the limit grew */
    /* A remote dataset: reads the reader has queued (a block or a shard index each; not the blocks
     * the cache served or that waited for a GET already out; neighbours queued together go out as
     * one GET: remote_gets), and the most outstanding at once (remote_transfers of them transfer,
     * the rest wait in line). */
    uint64_t remote_requests;
    uint64_t remote_pending_peak;
    /* A dataset, or a mixture's source, whose manifest records its shards' largest blocks (format
     * 1.1): the shard indexes the reader has read so far, each when its shard is first needed (a
     * remote one's fetched tails). Other datasets read every index at open and count none here. */
    uint64_t shard_indexes_read;
    /* A remote dataset: the ranged GETs sent (what a store bills: each try of each, adjacent
     * reads joined into one counted once, shard indexes included), and the transfers the reader
     * keeps at once (remote_inflight, or the number it chose for 0). */
    uint64_t remote_gets;
    uint64_t remote_transfers;
} sp_loader_stats;

/* Fills *out (its struct_size set by the caller). SP_EINVAL for a NULL argument or a struct_size
 * below the first layout. From any thread, at any time before close. */
SP_API int sp_loader_stats_get(sp_loader *l, sp_loader_stats *out);

/* Limit mode: the per-block work of one of the loader's decode workers, on the calling thread, with
 * no pipeline around it: block `block` (global index, 0..sp_dataset_num_blocks - 1) is read (a
 * remote block fetched by its first call only, then kept in the idle read ring while it has room:
 * a worker starts from bytes the reader fetched), verified, decompressed and every row of it written into the loader's batch ring by the workers'
 * own code (same layout, conversions, image transform and copies), using the buffers of worker
 * `worker`. Rows are spread as a shuffled window spreads them: the n-th row of a caller, with
 * n = (*cursor)++, goes to row n mod batch_size (mod the rows a batch holds, when an epoch has fewer) of a batch picked by a hash of n among the ring's
 * slots, split into `workers` equal shares of which this call uses share `worker`.
 * `shardpack bench` times it to measure the limit the loader is held against. Calls with
 * distinct `worker` (0 <= worker < workers <= the threads parameter, and at most
 * the batch ring's slots, stats batch_ring_slots) may run at once; none may
 * run while the loader delivers batches: call it before the first sp_loader_next (afterwards it
 * may fail with SP_EBUSY, or race). Nothing it does changes what the loader delivers later.
 * Returns the samples of the block (0 for a damaged block, or one that cannot be read, under
 * on_error=skip), or SP_EINVAL, SP_ERANGE (no such block), SP_EBUSY, SP_ENOMEM, or the block's
 * error (its message, in sp_last_error() only, names the shard, block and sample). */
SP_API int64_t sp_loader_bench_block(sp_loader *l, int worker, int workers, uint64_t block, uint64_t *cursor);

/* ------------------------------------------------------------------------------------------------
 * Device batches (device=cuda:N, or auto with a CUDA device; see docs/gpu.md).
 *
 * The batch ring is page-locked; a copy thread issues each ready batch's host-to-device copy (and
 * the device_dtype conversion) on its own non-blocking stream into a ring of device slots sized
 * from device_memory, and records an event. sp_loader_next then hands out batches whose tensors
 * have device {kDLCUDA, N}. Nothing on the host waits for the GPU:
 *  - sp_batch_wait(b, stream) makes the consumer's stream wait for the batch's copy;
 *  - sp_loader_release_on(l, b, stream) records an event on the consumer's stream, and the copy
 *    stream waits for that event before it writes the slot again.
 * `stream` is a cudaStream_t passed as void *, on the batch's device: NULL is the legacy default
 * stream, (void *)1 is cudaStreamLegacy and (void *)2 cudaStreamPerThread, the values DLPack's
 * __dlpack__(stream=) uses. As in DLPack, those three name a default stream of the batch's
 * device, whatever device the calling thread has current (the call then runs on a thread of the
 * batch's device, where 2 becomes the legacy stream); 2 names the calling thread's own stream,
 * so release on 2 from the thread that queued the work.
 * sp_loader_release(l, b) on a device batch is sp_loader_release_on(l, b, NULL): it orders the
 * reuse after work on the legacy default stream and on every blocking stream, but NOT after work
 * on non-blocking streams (cudaStreamNonBlocking, as PyTorch's side streams are): release on
 * that stream instead, or synchronize first.
 * The device ring holds at most 4 batches (fewer when device_memory says so); a caller holding
 * them all gets SP_EBUSY from next(), as with the host ring.
 * For a host batch these functions behave as for host memory (wait does nothing).
 * The library never changes the calling thread's current device. sp_loader_close waits for the
 * GPU to finish with every slot before it frees device memory.
 * ---------------------------------------------------------------------------------------------- */

/* The CUDA device b's tensors are on, or -1 when they are in host memory. */
SP_API int sp_batch_device(const sp_batch *b);
/* Makes stream wait (on the GPU) until b is in device memory. 0 at once for a host batch;
 * SP_EINVAL for NULL; SP_EDEVICE when CUDA refuses (the message says why). */
SP_API int sp_batch_wait(const sp_batch *b, void *stream);
/* Blocks the calling thread until b is in device memory (for consumers that take no stream, such
 * as __cuda_array_interface__ readers). 0 at once for a host batch; SP_EDEVICE when CUDA refuses. */
SP_API int sp_batch_sync(const sp_batch *b);
/* Releases b once the work queued on stream so far is done, without waiting for it. SP_EINVAL
 * for a batch not leased from l; SP_EDEVICE when CUDA refuses (the batch is still released, after
 * the host waited for stream). */
SP_API int sp_loader_release_on(sp_loader *l, sp_batch *b, void *stream);
/* Number of CUDA devices this library can use: 0 when built without CUDA or when the driver
 * finds none (why then goes to sp_last_error). */
SP_API int sp_cuda_device_count(void);

/* Resume state: seed, epoch, the next global batch, the partitions and global batch size
 * (batch_size x world size), the shuffle window and a dataset fingerprint, in
 * SP_LOADER_STATE_BYTES bytes; the same bytes on every rank. save writes it to buf (cap >=
 * SP_LOADER_STATE_BYTES): the position after the last batch next() handed out, leased or not (with
 * a device stage, after the last batch its copy thread took). load makes the next batch the one
 * that would have followed the saved point, on this loader's world size: any world size dividing
 * the state's partitions, with the same global batch size, continues the epoch so that every
 * sample is delivered once (docs/loader.md, Elastic resume). Another dataset, seed, shuffle
 * window, shuffle or drop_last, partition count or global batch size is refused (SP_EINVAL) with a
 * message saying which (for partitions, the world sizes that work), and a position this loader
 * cannot be at (a batch past its epoch's end, a batch past the last epoch, an epoch past 2^63 - 1)
 * with SP_ERANGE; a refused state leaves the loader where it was. Batches still leased stay
 * valid, as with set_epoch. Both are consumer calls: SP_EBUSY while another thread is inside one. */
#define SP_LOADER_STATE_BYTES 64
SP_API int sp_loader_state_size(void);
SP_API int sp_loader_save_state(sp_loader *l, void *buf, size_t cap);
/* A weighted mixture: one loader over n datasets (1 to SP_MIX_MAX), source d drawn with weight
 * weights[d] (> 0; normalized to their sum). Every dataset must have the same schema. An epoch
 * ends when the first source runs out: with w the normalized weights and N the sources' sample
 * counts, it takes floor(w[d] * M) samples of source d, M = min over d of N[d] / w[d] (each source's
 * blocks permuted on their own, every epoch a new draw; the sources' blocks interleaved by share),
 * and then splits, shuffles, resumes and scales to other world sizes as one dataset does (the state
 * names the mixture: its datasets and weights). Sample ids count the sources one after another
 * (source d's from the sum of the earlier sources' samples); stats.source_samples counts what each
 * source delivered. SP_EINVAL for no source, more than SP_MIX_MAX, a weight that is not a positive
 * finite number or schemas that differ (naming the field). */
SP_API int sp_loader_open_mix(const char *const *paths, const double *weights, size_t n, const sp_params *params,
                              sp_loader **out);
SP_API int sp_loader_load_state(sp_loader *l, const void *buf, size_t len);

/* ------------------------------------------------------------------------------------------------
 * Images
 * ---------------------------------------------------------------------------------------------- */
/* Image formats the image stage decodes, found from the first bytes, never a file name. */
enum { SP_IMAGE_FORMAT_JPEG = 1, SP_IMAGE_FORMAT_PNG = 2, SP_IMAGE_FORMAT_WEBP = 3 };

typedef struct sp_image_info {
    size_t struct_size;  /* sizeof(sp_image_info), set by the caller (see the conventions at the top) */
    int width, height;
    int components;  /* JPEG: 1 gray, 3 colour, 4 CMYK/YCCK; PNG: 1 gray, 2 gray+alpha, 3 colour or
                        palette, 4 colour+alpha; WebP: 3, or 4 with alpha */
    int subsampling; /* JPEG: TurboJPEG's TJSAMP_* value; -1 for a sampling it has no name for (4x2,
                        1x4, ...), and for PNG and WebP */
    int progressive; /* 1 when progressive (JPEG SOF2) or interlaced (PNG Adam7) */
    int format;      /* SP_IMAGE_FORMAT_* */
    int bit_depth;   /* bits per sample: 8 (JPEG, WebP), or PNG's 1, 2, 4, 8 or 16 */
} sp_image_info;

/* Parses an image's headers without decoding pixels: a JPEG, PNG or WebP, found from its bytes.
 * SP_EBADINPUT when data is none of them or its header is damaged (the library the image stage
 * decodes it with cannot read it; an animated WebP), SP_ELIMIT when width*height exceeds
 * max_pixels (0: no cap) or a side is above 65535 (a PNG may declare up to 2^31 - 1). */
SP_API int sp_image_probe(const void *data, size_t size, uint64_t max_pixels, sp_image_info *out);

/* The loader's image stage on its own: decode a JPEG, PNG or WebP (the format found from its bytes)
 * and apply the train or eval transform, as the loader does for an image field. Parameters read: transform, image_size, resize, image_dtype,
 * image_layout, mean, std, max_pixels and seed. The random draws of the train transform depend
 * only on (seed, epoch, sample), so apply() with a sample's global index and epoch gives, bit for
 * bit, the row the loader delivers for it. A transform is for one thread at a time. */
typedef struct sp_image_transform sp_image_transform;

typedef struct sp_image_crop {
    size_t struct_size;  /* sizeof(sp_image_crop), set by the caller (see the conventions at the top) */
    double x0, y0, x1, y1; /* the source rectangle, in pixels of the full image */
    int flip;              /* 1 when mirrored left to right */
    int scale;             /* the image was decoded at scale/8 of its size (DCT scaling) */
    int width, height;     /* of the source image */
} sp_image_crop;

/* SP_EINVAL (message naming the parameter) when the parameters do not fit; SP_ENOMEM. */
SP_API int sp_image_transform_create(const sp_params *params, sp_image_transform **out);
SP_API void sp_image_transform_destroy(sp_image_transform *t);
SP_API const char *sp_image_transform_errmsg(const sp_image_transform *t);
/* Bytes of one output image: image_size^2 * 3 * the dtype's size. */
SP_API size_t sp_image_transform_bytes(const sp_image_transform *t);
/* Writes the transformed image to out (sp_image_transform_bytes bytes; on failure out may hold
 * partial data). crop (may be NULL) receives what was done (for a PNG or WebP, scale is the 8/k of
 * the k x k block averaging that stands in for DCT scaling). SP_EBADINPUT for data that is none of
 * the three, or whose part the crop needs its library cannot decode cleanly (a warning counts as
 * corrupt):
 * only the crop's rows are decoded, so a baseline file cut short below its crop still gives a
 * correct image. SP_ELIMIT beyond max_pixels or max_image_memory, judged from the header. */
SP_API int sp_image_transform_apply(sp_image_transform *t, const void *jpeg, size_t size, uint64_t epoch,
                                    uint64_t sample, void *out, sp_image_crop *crop);
/* The crop the transform takes of a width x height image for (epoch, sample), without decoding. */
SP_API int sp_image_transform_crop(const sp_image_transform *t, int width, int height, uint64_t epoch,
                                   uint64_t sample, sp_image_crop *crop);

/* ------------------------------------------------------------------------------------------------
 * Checksums (exposed so tools and bindings compute what the format stores)
 * ---------------------------------------------------------------------------------------------- */
SP_API uint64_t sp_checksum64(const void *data, size_t size);

#ifdef __cplusplus
}
#endif
#endif
