/* wr_stage.c - atomic publication of a dataset directory.
 *
 * A dataset is written into a hidden staging directory beside its destination
 * (PARENT/.NAME.shardpack-tmp) and appears at its destination in one rename: onto a missing or
 * empty directory, or exchanged with the dataset it replaces (RENAME_EXCHANGE). Whatever moment a
 * writer is killed at, the destination holds either nothing, or the old dataset, or the new one;
 * never a mix, never a half-written shard or a manifest naming one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmt.h"
#include "sp_file.h"
#include "wr.h"

enum { DIR_MISSING, DIR_EMPTY, DIR_DATASET, DIR_FOREIGN };

/* manifest.spm, or shard-DIGITS.sps with at least six digits: the names a writer produces. */
static bool is_dataset_file(const char *name)
{
    if (strcmp(name, MANIFEST_NAME) == 0)
        return true;
    if (strncmp(name, "shard-", 6) != 0)
        return false;
    size_t digits = strspn(name + 6, "0123456789");
    return digits >= 6 && strcmp(name + 6 + digits, ".sps") == 0;
}

/* What a directory holds: nothing, only dataset files, or something a writer must not touch. */
static int classify(const char *dir, const char **foreign, char *buf, size_t buflen)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? DIR_MISSING : -errno;
    int kind = DIR_EMPTY;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (is_dataset_file(de->d_name)) {
            if (kind == DIR_EMPTY)
                kind = DIR_DATASET;
            continue;
        }
        snprintf(buf, buflen, "%s", de->d_name);
        *foreign = buf;
        kind = DIR_FOREIGN;
        break;
    }
    closedir(d);
    return kind;
}

/* Removes the dataset files in dir, then dir itself when nothing else is left. */
static void remove_dataset_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (is_dataset_file(de->d_name)) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int check_destination(wr_stage *s, sp_errbuf *eb)
{
    char name[256];
    const char *foreign = NULL;
    int kind = classify(s->final, &foreign, name, sizeof name);
    if (kind < 0)
        return sp_fail(eb, SP_EIO, "%s: cannot list: %s", s->final, strerror(-kind));
    if (kind == DIR_FOREIGN)
        return sp_fail(eb, SP_EEXIST, "%s: holds '%s', which is not part of a dataset; write into a new or empty "
                       "directory", s->final, foreign);
    if (kind == DIR_DATASET && !s->overwrite)
        return sp_fail(eb, SP_EEXIST, "%s: already holds a dataset; choose another directory or overwrite it",
                       s->final);
    s->dest_kind = kind;
    return SP_OK;
}

static int split_path(wr_stage *s, const char *dir, sp_errbuf *eb)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len == 0 || len >= 3000)
        return sp_fail(eb, SP_EINVAL, "output directory name is empty or too long");
    snprintf(s->final, sizeof s->final, "%.*s", (int)len, dir);
    const char *slash = strrchr(s->final, '/');
    const char *base = slash ? slash + 1 : s->final;
    if (!strcmp(base, ".") || !strcmp(base, "..") || (slash == s->final && !base[0]))
        return sp_fail(eb, SP_EINVAL, "%s: name the output directory itself, not '.', '..' or '/'", dir);
    if (slash)
        snprintf(s->parent, sizeof s->parent, "%.*s", slash == s->final ? 1 : (int)(slash - s->final), s->final);
    else
        snprintf(s->parent, sizeof s->parent, ".");
    int n = snprintf(s->stage, sizeof s->stage, "%s/.%s.shardpack-tmp", s->parent, base);
    if (n < 0 || (size_t)n >= sizeof s->stage)
        return sp_fail(eb, SP_EINVAL, "%s: path too long", dir);
    return SP_OK;
}

int wr_stage_open(wr_stage *s, const char *dir, bool overwrite, sp_errbuf *eb)
{
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    s->overwrite = overwrite;
    int rc = split_path(s, dir, eb);
    if (rc == SP_OK)
        rc = check_destination(s, eb);
    if (rc)
        return rc;
    if (mkdir(s->stage, 0755) != 0 && errno != EEXIST)
        return sp_fail(eb, SP_EIO, "%s: cannot create: %s", s->stage, strerror(errno));
    s->lock_fd = open(s->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->lock_fd < 0)
        return sp_fail(eb, SP_EIO, "%s: cannot open: %s", s->stage, strerror(errno));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return sp_fail(eb, SP_EBUSY, "%s: another writer is writing this dataset", s->final);
    /* Unlocked leftovers are a killed writer's: never published, safe to clear. */
    char name[256];
    const char *foreign = NULL;
    if (classify(s->stage, &foreign, name, sizeof name) == DIR_FOREIGN)
        return sp_fail(eb, SP_EEXIST, "%s: holds '%s'; remove that directory", s->stage, foreign);
    DIR *d = opendir(s->stage);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (is_dataset_file(de->d_name)) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", s->stage, de->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
    s->active = true;
    return SP_OK;
}

void wr_stage_path(const wr_stage *s, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", s->stage, name);
}

int wr_stage_publish(wr_stage *s, sp_errbuf *eb)
{
    int rc = check_destination(s, eb); /* again: the destination may have changed meanwhile */
    if (rc)
        return rc;
    if ((rc = sp_fsync_dir(s->stage)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->stage, strerror(-rc));
    if (s->dest_kind != DIR_DATASET) {
        if (rename(s->stage, s->final) != 0)
            return sp_fail(eb, SP_EIO, "%s: cannot publish: %s", s->final, strerror(errno));
    } else if (renameat2(AT_FDCWD, s->stage, AT_FDCWD, s->final, RENAME_EXCHANGE) == 0) {
        remove_dataset_dir(s->stage); /* the replaced dataset, now under the staging name */
    } else {
        /* No atomic exchange on this file system: the old dataset steps aside first, so the
         * destination is briefly missing but never mixed. */
        char old[sizeof s->stage + 8];
        snprintf(old, sizeof old, "%s.old", s->stage);
        remove_dataset_dir(old);
        if (rename(s->final, old) != 0 || rename(s->stage, s->final) != 0)
            return sp_fail(eb, SP_EIO, "%s: cannot publish: %s", s->final, strerror(errno));
        remove_dataset_dir(old);
    }
    s->active = false;
    if ((rc = sp_fsync_dir(s->parent)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->parent, strerror(-rc));
    return SP_OK;
}

void wr_stage_close(wr_stage *s)
{
    if (s->active)
        remove_dataset_dir(s->stage);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
    s->active = false;
}
