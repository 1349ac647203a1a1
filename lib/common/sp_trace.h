/* sp_trace.h - a timeline of a loader's threads, written as Chrome trace-event JSON (Perfetto,
 * chrome://tracing) when the loader closes, and mirrored as NVTX ranges in a CUDA build.
 *
 * Each thread writes spans into a track of its own (a ring of SP_TRACE_EVENTS_MAX / tracks events,
 * the oldest overwritten and counted as dropped), with no lock: a track has one writer at a time.
 * Counters (ring occupancy, memory in use) go to one shared ring under the trace's own mutex, a
 * leaf lock taken after any other. Every call accepts a NULL trace and then only marks the NVTX
 * range, so code calls them unconditionally. */
#ifndef SP_TRACE_H
#define SP_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_internal.h"

/* Events kept at most by default, all tracks together (32 bytes each): 8 MiB of trace for any
 * thread count, split evenly among the tracks. */
#define SP_TRACE_EVENTS_MAX (1u << 18)
#define SP_TRACE_TRACK_MIN 64u /* a track keeps at least this many events */

/* What a span or counter is; the names the file shows are in sp_trace.c. */
typedef enum sp_trace_name {
    SPT_READ,          /* a block's read, from submission to completion (async: reads overlap) */
    SPT_READ_WAIT,     /* the reader waiting for a read to complete */
    SPT_SLOT_WAIT,     /* the reader waiting for the consumer to free a batch slot */
    SPT_SPACE_WAIT,    /* the reader waiting for read-ring space (workers behind) */
    SPT_PLAN,          /* the reader planning an epoch */
    SPT_BLOCK,         /* a worker's job: a block, or part of one */
    SPT_DECODE,        /* checksum, decompression and parsing of a block */
    SPT_IMAGE,         /* one image decoded and transformed into its row */
    SPT_BATCH_DONE,    /* completing a batch: filling skipped rows, publishing it */
    SPT_NEXT,          /* the consumer inside next() */
    SPT_CONSUMER_WAIT, /* the consumer waiting for its batch */
    SPT_COPY,          /* the device stage issuing a batch's copy */
    SPT_COPY_WAIT,     /* the device stage's copy thread waiting for a device slot */
    SPT_IDLE,          /* a worker with no job */
    SPT_CACHE_WRITE,   /* a worker writing a fetched block's entry into the remote cache */
    SPT_NAMES_
} sp_trace_name;

typedef enum sp_trace_counter {
    SPC_SLOTS,        /* batch slots not free */
    SPC_READY,        /* batches ready for the consumer */
    SPC_HOST_BYTES,   /* host bytes holding data: read ring in use, slots in use, worker buffers */
    SPC_DEVICE_BYTES, /* device slots holding a batch */
    SPC_INFLIGHT,     /* decode jobs being worked on */
    SPC_COUNTERS_
} sp_trace_counter;

typedef struct sp_trace sp_trace;

/* Opens a trace of `tracks` tracks keeping at most max_events events (0: SP_TRACE_EVENTS_MAX), to
 * be written to `path` (where "%p" becomes the process id) at sp_trace_close. The file is created now, holding an empty but valid trace, so that a path
 * that cannot be written is refused at once: SP_EIO (or SP_ENOMEM) with eb's message. `what`
 * names the traced object in the file. */
int sp_trace_open(sp_trace **out, const char *path, unsigned tracks, uint64_t max_events, const char *what,
                  sp_errbuf *eb);
/* Runs NVTX's one-time setup (a CUDA build's ranges), at most once per process, so that threads
 * started afterwards find it done: its own lazy setup, run by whichever thread pushes the first
 * range, races with the others' reads. Call it before starting threads that trace. */
void sp_trace_ready(void);
/* Names track i (a thread): "reader", "worker 3". Before any event on it; a track never named is
 * left out of the file. */
void sp_trace_track(sp_trace *t, unsigned track, const char *name);
/* Starts a span on the calling thread: the NVTX range is pushed; returns the start time (0 when
 * t is NULL), to be given to sp_trace_end. */
uint64_t sp_trace_begin(const sp_trace *t, sp_trace_name name);
/* Ends the innermost span begun on this thread: pops the NVTX range, records [t0, now) on track
 * with an optional argument (a block number; UINT64_MAX for none). */
void sp_trace_end(sp_trace *t, unsigned track, sp_trace_name name, uint64_t t0, uint64_t arg);
/* An asynchronous span (may overlap others on its track): id tells them apart. */
void sp_trace_async(sp_trace *t, unsigned track, sp_trace_name name, uint64_t t0, uint64_t id);
/* A counter's new value, if it changed. */
void sp_trace_count(sp_trace *t, sp_trace_counter c, int64_t value);
/* Events recorded and dropped (overwritten) so far; from any thread. */
void sp_trace_totals(const sp_trace *t, uint64_t *events, uint64_t *dropped);
/* Writes the file and frees t. SP_OK, or SP_EIO with why. NULL is accepted. */
int sp_trace_close(sp_trace *t, char *why, size_t whylen);
/* Nanoseconds on the trace's clock. */
uint64_t sp_trace_clock(void);

#endif
