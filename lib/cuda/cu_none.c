/* cu_none.c - the device stage of a library built without CUDA: device=auto stays on the host and
 * says why, device=cuda:N is refused with the way to get it. */
#include <stdio.h>

#include "ld_device.h"

int sp_cuda_device_count(void)
{
    sp_clear_error();
    sp_fail(NULL, SP_ENOTSUP, "this libshardpack was built without CUDA");
    return 0;
}

int cu_resolve(int64_t param, int *device, char *note, size_t notelen, sp_errbuf *eb)
{
    *device = -1;
    if (param == SP_DEVICE_AUTO)
        snprintf(note, notelen, "device=auto: this libshardpack was built without CUDA; batches stay in host memory");
    if (param >= 0)
        return sp_fail(eb, SP_ENOTSUP,
                       "device=cuda:%lld: this libshardpack was built without CUDA (rebuild it where the CUDA "
                       "toolkit is installed, with meson -Dcuda=enabled)", (long long)param);
    return SP_OK;
}

/* Never reached: the device stays -1, so the loader makes no device stage. */
int cu_open(sp_loader *host, const cu_config *cfg, cu_stage **out)
{
    (void)cfg;
    ld_host_geom g;
    ld_host_geometry(host, &g);
    *out = NULL;
    return sp_fail(g.eb, SP_ENOTSUP, "built without CUDA");
}

void cu_close(cu_stage *c) { (void)c; }
uint64_t cu_leases(cu_stage *c) { (void)c; return 0; }
void cu_halt(cu_stage *c) { (void)c; }
void cu_seek(cu_stage *c, uint64_t epoch, uint64_t next_k) { (void)c, (void)epoch, (void)next_k; }
void cu_stats(cu_stage *c, sp_loader_stats *st) { (void)c, (void)st; }

void cu_position(cu_stage *c, uint64_t *epoch, uint64_t *next_k)
{
    (void)c;
    *epoch = *next_k = 0;
}

int cu_next(cu_stage *c, sp_batch **out, int timeout_ms)
{
    (void)c, (void)timeout_ms;
    *out = NULL;
    return sp_fail(NULL, SP_ENOTSUP, "built without CUDA");
}

int cu_release(cu_stage *c, sp_batch *b, void *stream)
{
    (void)c, (void)b, (void)stream;
    return sp_fail(NULL, SP_ENOTSUP, "built without CUDA");
}

int cu_batch_sync(cu_stage *c, const sp_batch *b)
{
    (void)c, (void)b;
    return sp_fail(NULL, SP_ENOTSUP, "built without CUDA");
}

int cu_batch_wait(cu_stage *c, const sp_batch *b, void *stream)
{
    (void)c, (void)b, (void)stream;
    return sp_fail(NULL, SP_ENOTSUP, "built without CUDA");
}
