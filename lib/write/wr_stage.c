/* wr_stage.c - atomic publication of a dataset directory.
 *
 * A dataset is written into a hidden staging directory beside its destination
 * (PARENT/.NAME.shardpack-tmp) and appears at its destination in one rename: onto a missing or
 * empty directory, or exchanged with the dataset it replaces (RENAME_EXCHANGE). Whatever moment a
 * writer is killed at, the destination holds either nothing, or the old dataset, or the new one;
 * never a mix, never a half-written shard or a manifest naming one.
 *
 * The parent may be shared with other users, who can leave anything under the names a writer uses.
 * So every name is resolved once, relative to a descriptor of the parent, and never through a
 * symbolic link: the destination and the staging name must be real directories, the staging
 * directory ours, and every file inside it is created, listed and deleted through the staging
 * directory's own descriptor. A link planted at either name is refused before any work is done;
 * it can never make a writer write or delete files elsewhere. */
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

/* name under dirfd as a directory, or -1 with errno; never through a symbolic link (ELOOP or
 * ENOTDIR then). */
static int open_dir_at(int dirfd, const char *name)
{
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* A stream over the directory fd with a position of its own; fd stays open. */
static DIR *list_dir(int fd)
{
    int lfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d && lfd >= 0) {
        int e = errno;
        close(lfd);
        errno = e;
    }
    return d;
}

/* What the directory fd holds: nothing, only dataset files, or something a writer must not touch
 * (its name copied to buf); -errno when it cannot be listed. */
static int classify(int fd, char *buf, size_t buflen)
{
    DIR *d = list_dir(fd);
    if (!d)
        return -errno;
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
        kind = DIR_FOREIGN;
        break;
    }
    closedir(d);
    return kind;
}

/* Deletes the dataset files in the directory fd (links among them are removed, not followed). */
static void remove_dataset_files(int fd)
{
    DIR *d = list_dir(fd);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (is_dataset_file(de->d_name))
            unlinkat(fd, de->d_name, 0);
    if (d)
        closedir(d);
}

/* Removes the dataset files in the directory name under parent_fd, then the directory itself when
 * nothing else is left; nothing when name is a symbolic link or not a directory. */
static void remove_dataset_dir(int parent_fd, const char *name)
{
    int fd = open_dir_at(parent_fd, name);
    if (fd < 0)
        return;
    remove_dataset_files(fd);
    close(fd);
    unlinkat(parent_fd, name, AT_REMOVEDIR);
}

/* The refusal for something at path that is not a real directory (st from lstat). */
static int refuse_non_dir(sp_errbuf *eb, const char *path, const struct stat *st, const char *advice)
{
    if (S_ISLNK(st->st_mode))
        return sp_fail(eb, SP_EEXIST, "%s: is a symbolic link; %s", path, advice);
    return sp_fail(eb, SP_EEXIST, "%s: exists and is not a directory", path);
}

static const char dest_link_advice[] = "a writer does not write through links: name the real directory";

/* Whether name under parent_fd (st, its lstat) is the root of a mount, which no rename can move or
 * replace (EBUSY). The kernel says so where it can (statx's STATX_ATTR_MOUNT_ROOT, which also
 * catches a bind mount within one file system); elsewhere a device other than the parent's does. */
static bool is_mount_root(int parent_fd, const char *name, const struct stat *st)
{
    struct statx sx;
    if (statx(parent_fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) == 0 &&
        (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
        return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    struct stat parent;
    return fstat(parent_fd, &parent) == 0 && parent.st_dev != st->st_dev;
}

static int check_destination(wr_stage *s, sp_errbuf *eb)
{
    struct stat st;
    if (fstatat(s->parent_fd, s->final_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            return sp_fail(eb, SP_EIO, "%s: cannot examine: %s", s->final, strerror(errno));
        s->dest_kind = DIR_MISSING;
        return SP_OK;
    }
    if (!S_ISDIR(st.st_mode))
        return refuse_non_dir(eb, s->final, &st, dest_link_advice);
    if (is_mount_root(s->parent_fd, s->final_name, &st))
        return sp_fail(eb, SP_EEXIST, "%s: is a mount point: the writer stages beside the destination and renames "
                       "it into place, which cannot be done to a mount point; name a new directory inside it (%s/NAME)",
                       s->final, s->final);
    int fd = open_dir_at(s->parent_fd, s->final_name);
    if (fd < 0)
        return sp_fail(eb, SP_EIO, "%s: cannot open: %s", s->final, strerror(errno));
    char foreign[256];
    int kind = classify(fd, foreign, sizeof foreign);
    close(fd);
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
    s->final_name = base;
    int n = snprintf(s->stage, sizeof s->stage, "%s/.%s.shardpack-tmp", s->parent, base);
    if (n < 0 || (size_t)n >= sizeof s->stage)
        return sp_fail(eb, SP_EINVAL, "%s: path too long", dir);
    s->stage_name = s->stage + strlen(s->parent) + 1;
    return SP_OK;
}

/* Creates the staging directory, or takes the one a killed writer left: it must be a real
 * directory that belongs to this user. */
static int make_stage(wr_stage *s, sp_errbuf *eb)
{
    static const char advice[] = "a writer stages its files under this name; remove it";
    if (mkdirat(s->parent_fd, s->stage_name, 0755) != 0 && errno != EEXIST)
        return sp_fail(eb, SP_EIO, "%s: cannot create: %s", s->stage, strerror(errno));
    struct stat st;
    if (fstatat(s->parent_fd, s->stage_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return sp_fail(eb, SP_EIO, "%s: cannot examine: %s", s->stage, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return refuse_non_dir(eb, s->stage, &st, advice);
    s->dir_fd = open_dir_at(s->parent_fd, s->stage_name);
    if (s->dir_fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) /* replaced since the fstatat */
            return sp_fail(eb, SP_EEXIST, "%s: is not a directory any more; %s", s->stage, advice);
        return sp_fail(eb, SP_EIO, "%s: cannot open: %s", s->stage, strerror(errno));
    }
    if (fstat(s->dir_fd, &st) != 0)
        return sp_fail(eb, SP_EIO, "%s: cannot examine: %s", s->stage, strerror(errno));
    if (st.st_uid != geteuid())
        return sp_fail(eb, SP_EEXIST, "%s: belongs to another user (uid %u); %s", s->stage, (unsigned)st.st_uid,
                       advice);
    return SP_OK;
}

int wr_stage_open(wr_stage *s, const char *dir, bool overwrite, sp_errbuf *eb)
{
    memset(s, 0, sizeof *s);
    s->parent_fd = s->dir_fd = -1;
    s->overwrite = overwrite;
    int rc = split_path(s, dir, eb);
    if (rc)
        return rc;
    s->parent_fd = open(s->parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->parent_fd < 0)
        return sp_fail(eb, SP_EIO, "%s: cannot open its directory %s: %s", s->final, s->parent, strerror(errno));
    if ((rc = check_destination(s, eb)) || (rc = make_stage(s, eb)))
        return rc;
    if (flock(s->dir_fd, LOCK_EX | LOCK_NB) != 0)
        return sp_fail(eb, SP_EBUSY, "%s: another writer is writing this dataset", s->final);
    /* Unlocked leftovers are a killed writer's: never published, safe to clear. */
    char name[256];
    int kind = classify(s->dir_fd, name, sizeof name);
    if (kind < 0)
        return sp_fail(eb, SP_EIO, "%s: cannot list: %s", s->stage, strerror(-kind));
    if (kind == DIR_FOREIGN)
        return sp_fail(eb, SP_EEXIST, "%s: holds '%s'; remove that directory", s->stage, name);
    remove_dataset_files(s->dir_fd);
    s->active = true;
    return SP_OK;
}

void wr_stage_path(const wr_stage *s, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", s->stage, name);
}

int wr_stage_create(const wr_stage *s, const char *name)
{
    /* O_EXCL: the directory was emptied at open, and a name that exists now is never reused. */
    int fd = openat(s->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

/* Whether the staging name still names the directory this writer locked and filled. */
static bool stage_is_ours(const wr_stage *s)
{
    struct stat a, b;
    return fstat(s->dir_fd, &a) == 0 && fstatat(s->parent_fd, s->stage_name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int wr_stage_publish(wr_stage *s, const atomic_int *cancel, sp_errbuf *eb)
{
    int rc = check_destination(s, eb); /* again: the destination may have changed meanwhile */
    if (rc)
        return rc;
    if (!stage_is_ours(s))
        return sp_fail(eb, SP_EIO, "%s: was replaced while the dataset was written; nothing published", s->stage);
    if ((rc = sp_fsync_dirfd(s->dir_fd)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->stage, strerror(-rc));
    /* The last moment a cancellation can keep the dataset from appearing. */
    if (atomic_load(cancel))
        return sp_fail(eb, SP_ECANCELED, "%s: stopped by sp_writer_abort; nothing was published", s->final);
    const int pfd = s->parent_fd;
    if (s->dest_kind != DIR_DATASET) {
        if (renameat(pfd, s->stage_name, pfd, s->final_name) != 0)
            return sp_fail(eb, SP_EIO, "%s: cannot publish: %s", s->final, strerror(errno));
    } else if (renameat2(pfd, s->stage_name, pfd, s->final_name, RENAME_EXCHANGE) == 0) {
        remove_dataset_dir(pfd, s->stage_name); /* the replaced dataset, now under the staging name */
    } else {
        /* No atomic exchange on this file system: the old dataset steps aside first, so the
         * destination is briefly missing but never mixed. */
        char old[sizeof s->stage + 8];
        snprintf(old, sizeof old, "%s.old", s->stage_name);
        remove_dataset_dir(pfd, old);
        if (renameat(pfd, s->final_name, pfd, old) != 0 || renameat(pfd, s->stage_name, pfd, s->final_name) != 0)
            return sp_fail(eb, SP_EIO, "%s: cannot publish: %s", s->final, strerror(errno));
        remove_dataset_dir(pfd, old);
    }
    s->active = false;
    if ((rc = sp_fsync_dirfd(pfd)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->parent, strerror(-rc));
    return SP_OK;
}

void wr_stage_close(wr_stage *s)
{
    if (s->active) {
        remove_dataset_files(s->dir_fd);
        if (stage_is_ours(s))
            unlinkat(s->parent_fd, s->stage_name, AT_REMOVEDIR);
    }
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    if (s->parent_fd >= 0)
        close(s->parent_fd);
    s->dir_fd = s->parent_fd = -1;
    s->active = false;
}
