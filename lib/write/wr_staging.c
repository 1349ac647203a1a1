/* wr_staging.c - atomic publication of a dataset directory.
 *
 * A dataset is written into a hidden staging directory beside its destination
 * (PARENT/.NAME.shardpack-tmp) and appears at its destination in one rename: onto a missing or
 * empty directory, or exchanged with the dataset it replaces (RENAME_EXCHANGE). Whatever moment a
 * writer is killed at, the destination holds either nothing, or the old dataset, or the new one;
 * never a mix, never a half-written shard or a manifest naming one.
 *
 * A file system without RENAME_EXCHANGE (NFS, some FUSE and overlay ones) gets two renames instead:
 * the old dataset steps aside to PARENT/.NAME.shardpack-tmp.old, then the new one takes its name.
 * Killed between them, the destination is missing and the old dataset sits under the aside name;
 * the next writer on the destination moves it back before anything else. The aside directory is
 * deleted only once a new dataset has taken the destination's name.
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

static int check_destination(wr_staging *s, sp_errbuf *eb)
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

static int split_path(wr_staging *s, const char *dir, sp_errbuf *eb)
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
    int n = snprintf(s->staging, sizeof s->staging, "%s/.%s.shardpack-tmp", s->parent, base);
    if (n < 0 || (size_t)n >= sizeof s->staging)
        return sp_fail(eb, SP_EINVAL, "%s: path too long", dir);
    s->staging_name = s->staging + strlen(s->parent) + 1;
    return SP_OK;
}

/* Creates the staging directory, or takes the one a killed writer left: it must be a real
 * directory that belongs to this user. */
static int make_staging_dir(wr_staging *s, sp_errbuf *eb)
{
    static const char advice[] = "a writer stages its files under this name; remove it";
    if (mkdirat(s->parent_fd, s->staging_name, 0755) != 0 && errno != EEXIST)
        return sp_fail(eb, SP_EIO, "%s: cannot create: %s", s->staging, strerror(errno));
    struct stat st;
    if (fstatat(s->parent_fd, s->staging_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return sp_fail(eb, SP_EIO, "%s: cannot examine: %s", s->staging, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return refuse_non_dir(eb, s->staging, &st, advice);
    s->dir_fd = open_dir_at(s->parent_fd, s->staging_name);
    if (s->dir_fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) /* replaced since the fstatat */
            return sp_fail(eb, SP_EEXIST, "%s: is not a directory any more; %s", s->staging, advice);
        return sp_fail(eb, SP_EIO, "%s: cannot open: %s", s->staging, strerror(errno));
    }
    if (fstat(s->dir_fd, &st) != 0)
        return sp_fail(eb, SP_EIO, "%s: cannot examine: %s", s->staging, strerror(errno));
    if (st.st_uid != geteuid())
        return sp_fail(eb, SP_EEXIST, "%s: belongs to another user (uid %u); %s", s->staging, (unsigned)st.st_uid,
                       advice);
    return SP_OK;
}

/* The name a publication without RENAME_EXCHANGE moves the replaced dataset to, under the parent. */
static void aside_name(const wr_staging *s, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s.old", s->staging_name);
}

/* Whether the directory name under parent_fd holds a whole dataset: its manifest decodes and every
 * shard it names is there, a regular file of the size the manifest records. The blocks are not
 * read: this tells a dataset set aside whole from the remains of one being deleted. */
static bool holds_whole_dataset(const wr_staging *s, const char *name)
{
    int fd = open_dir_at(s->parent_fd, name);
    if (fd < 0)
        return false;
    char mpath[sizeof s->parent + 300];
    snprintf(mpath, sizeof mpath, "%s/%s/%s", s->parent, name, MANIFEST_NAME);
    uint8_t *buf = NULL;
    size_t n = 0;
    int err;
    fmt_manifest m;
    fmt_err e;
    fmt_limits lim;
    fmt_limits_from_params(&lim, NULL);
    bool whole = false;
    struct stat st;
    if (fstatat(fd, MANIFEST_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        sp_read_file(mpath, (size_t)st.st_size, &buf, &n, &err, NULL) == SP_OK &&
        fmt_manifest_decode(buf, n, &lim, &m, &e) == SP_OK) {
        whole = true;
        for (uint64_t i = 0; whole && i < m.nshards; i++)
            whole = fstatat(fd, m.shards[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
                    (uint64_t)st.st_size == m.shards[i].file_size;
        fmt_manifest_free(&m);
    }
    sp_free(buf);
    close(fd);
    return whole;
}

/* A publication without RENAME_EXCHANGE killed between its two renames left the destination
 * missing and the old dataset under the aside name: moves it back, and says so in *restored.
 * Called with the staging directory locked, so no live writer is between those renames. When the
 * destination holds a dataset the aside directory is a finished publication's and stays for
 * publish; when it holds no whole dataset it is left alone (it is the remains of one). */
static int restore_aside(wr_staging *s, bool *restored, sp_errbuf *eb)
{
    *restored = false;
    char old[sizeof s->staging];
    aside_name(s, old, sizeof old);
    struct stat st;
    if (fstatat(s->parent_fd, old, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
        return SP_OK;
    int rc = check_destination(s, eb);
    if (rc || s->dest_kind == DIR_DATASET || !holds_whole_dataset(s, old))
        return rc;
    /* renameat replaces the destination only when it is missing or an empty directory */
    if (renameat(s->parent_fd, old, s->parent_fd, s->final_name) != 0)
        return sp_fail(eb, SP_EIO, "%s: is missing, and the dataset an interrupted publication set aside in %s/%s "
                       "cannot be moved back: %s; move it back by hand", s->final, s->parent, old, strerror(errno));
    if ((rc = sp_fsync_dirfd(s->parent_fd)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->parent, strerror(-rc));
    *restored = true;
    return check_destination(s, eb);
}

int wr_staging_open(wr_staging *s, const char *dir, bool overwrite, sp_errbuf *eb)
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
    if ((rc = check_destination(s, eb)) || (rc = make_staging_dir(s, eb)))
        return rc;
    if (flock(s->dir_fd, LOCK_EX | LOCK_NB) != 0)
        return sp_fail(eb, SP_EBUSY, "%s: another writer is writing this dataset", s->final);
    bool restored;
    if ((rc = restore_aside(s, &restored, eb))) {
        s->active = true; /* the staging directory is ours and locked: close removes it */
        if (restored && rc == SP_EEXIST)
            sp_fail(eb, rc, "%s: already holds a dataset (moved back from %s.old, where a publication interrupted "
                    "without RENAME_EXCHANGE had set it aside); choose another directory or overwrite it",
                    s->final, s->staging);
        return rc;
    }
    /* Unlocked leftovers are a killed writer's: never published, safe to clear. */
    char name[256];
    int kind = classify(s->dir_fd, name, sizeof name);
    if (kind < 0)
        return sp_fail(eb, SP_EIO, "%s: cannot list: %s", s->staging, strerror(-kind));
    if (kind == DIR_FOREIGN)
        return sp_fail(eb, SP_EEXIST, "%s: holds '%s'; remove that directory", s->staging, name);
    remove_dataset_files(s->dir_fd);
    s->active = true;
    return SP_OK;
}

void wr_staging_path(const wr_staging *s, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", s->staging, name);
}

int wr_staging_create(const wr_staging *s, const char *name)
{
    /* O_EXCL: the directory was emptied at open, and a name that exists now is never reused. */
    int fd = openat(s->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

/* Whether the staging name still names the directory this writer locked and filled. */
static bool staging_is_ours(const wr_staging *s)
{
    struct stat a, b;
    return fstat(s->dir_fd, &a) == 0 && fstatat(s->parent_fd, s->staging_name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Publication where the file system has no RENAME_EXCHANGE: the old dataset steps aside, then the
 * new one takes the destination's name; the destination is briefly missing but never mixed. A
 * failure of the second rename moves the old dataset back. */
static int publish_aside(wr_staging *s, sp_errbuf *eb)
{
    const int pfd = s->parent_fd;
    char old[sizeof s->staging];
    aside_name(s, old, sizeof old);
    struct stat st;
    if (fstatat(pfd, old, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        /* Left by an earlier publication: the remains of a replaced dataset being deleted are
         * debris, but a whole one may be the only copy of something, and is not deleted. */
        if (!S_ISDIR(st.st_mode) || holds_whole_dataset(s, old))
            return sp_fail(eb, SP_EEXIST, "%s: cannot publish: %s/%s holds %s left by an interrupted publication; "
                           "nothing was published. Move it away or remove it", s->final, s->parent, old,
                           S_ISDIR(st.st_mode) ? "a dataset" : "something");
        remove_dataset_dir(pfd, old);
    }
    if (renameat(pfd, s->final_name, pfd, old) != 0)
        return sp_fail(eb, SP_EIO, "%s: cannot publish (moving the old dataset aside to %s/%s): %s", s->final,
                       s->parent, old, strerror(errno));
    if (renameat(pfd, s->staging_name, pfd, s->final_name) != 0) {
        int e = errno;
        if (renameat(pfd, old, pfd, s->final_name) != 0)
            return sp_fail(eb, SP_EIO, "%s: cannot publish: %s; the old dataset is in %s/%s and could not be moved "
                           "back: %s", s->final, strerror(e), s->parent, old, strerror(errno));
        return sp_fail(eb, SP_EIO, "%s: cannot publish: %s; the old dataset is in place", s->final, strerror(e));
    }
    remove_dataset_dir(pfd, old); /* the new dataset has the name now */
    return SP_OK;
}

int wr_staging_publish(wr_staging *s, const atomic_int *cancel, sp_errbuf *eb)
{
    int rc = check_destination(s, eb); /* again: the destination may have changed meanwhile */
    if (rc)
        return rc;
    if (!staging_is_ours(s))
        return sp_fail(eb, SP_EIO, "%s: was replaced while the dataset was written; nothing published", s->staging);
    if ((rc = sp_fsync_dirfd(s->dir_fd)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->staging, strerror(-rc));
    /* The last moment a cancellation can keep the dataset from appearing. */
    if (atomic_load(cancel))
        return sp_fail(eb, SP_ECANCELED, "%s: stopped by sp_writer_abort; nothing was published", s->final);
    const int pfd = s->parent_fd;
    if (s->dest_kind != DIR_DATASET) {
        if (renameat(pfd, s->staging_name, pfd, s->final_name) != 0)
            return sp_fail(eb, SP_EIO, "%s: cannot publish: %s", s->final, strerror(errno));
    } else if (renameat2(pfd, s->staging_name, pfd, s->final_name, RENAME_EXCHANGE) == 0) {
        remove_dataset_dir(pfd, s->staging_name); /* the replaced dataset, now under the staging name */
    } else if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) { /* ENOTSUP == EOPNOTSUPP here */
        return sp_fail(eb, SP_EIO, "%s: cannot publish (exchanging it with the dataset it replaces): %s", s->final,
                       strerror(errno));
    } else if ((rc = publish_aside(s, eb))) {
        return rc;
    }
    s->active = false;
    if ((rc = sp_fsync_dirfd(pfd)))
        return sp_fail(eb, SP_EIO, "%s: cannot sync: %s", s->parent, strerror(-rc));
    return SP_OK;
}

void wr_staging_close(wr_staging *s)
{
    if (s->active) {
        remove_dataset_files(s->dir_fd);
        if (staging_is_ours(s))
            unlinkat(s->parent_fd, s->staging_name, AT_REMOVEDIR);
    }
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    if (s->parent_fd >= 0)
        close(s->parent_fd);
    s->dir_fd = s->parent_fd = -1;
    s->active = false;
}
