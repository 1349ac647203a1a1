/* wr.h - the writer's staging directory (wr_staging.c). */
#ifndef SP_WR_H
#define SP_WR_H

#include <stdatomic.h>

#include "sp_internal.h"

typedef struct wr_staging {
    char final[4096]; /* the destination directory (shorter than 3000 bytes) */
    char parent[4096];
    char staging[4096];  /* PARENT/.NAME.shardpack-tmp, locked while writing */
    const char *final_name, *staging_name; /* the last components of final and staging */
    int parent_fd;                       /* every name is resolved relative to it */
    int dir_fd;                          /* the staging directory, locked while writing */
    int dest_kind;
    bool overwrite, active;
} wr_staging;

/* Checks the destination (missing, empty, or a dataset when overwrite) and creates and locks the
 * staging directory, clearing what a killed writer left there; a dataset that a publication without
 * RENAME_EXCHANGE set aside and did not replace is moved back to the destination first. SP_EEXIST also when either name is
 * a symbolic link or not a directory, or the staging directory is another user's; SP_EBUSY,
 * SP_EIO. */
int wr_staging_open(wr_staging *s, const char *dir, bool overwrite, sp_errbuf *eb);
/* out = staging path of a file name, for messages. */
void wr_staging_path(const wr_staging *s, const char *name, char *out, size_t outlen);
/* Creates the file name in the staging directory, through its descriptor and never through a
 * link: a descriptor open for writing, or -errno. */
int wr_staging_create(const wr_staging *s, const char *name);
/* Makes the staged dataset appear at the destination in one rename. When *cancel is set just
 * before that rename, nothing is published: SP_ECANCELED. */
int wr_staging_publish(wr_staging *s, const atomic_int *cancel, sp_errbuf *eb);
/* Unlocks; removes the staging directory unless it was published. */
void wr_staging_close(wr_staging *s);

#endif
