/* clit_util.c - helpers of the CLI tests: running the tool, temp files, JPEGs, tars, JSON. */
#include "clit_util.h"

#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "clit: %s: %s\n", what, strerror(errno));
    exit(99); /* a hard error of the test harness itself */
}

char *clit_path(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        die("vasprintf");
    va_end(ap);
    return s;
}

char *clit_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t = clit_path("%s/shardpack-cli-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t))
        die("mkdtemp");
    return t;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void clit_rmrf(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void clit_mkdir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
}

void clit_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        die(path);
}

unsigned char *clit_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap + 1);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    if (!buf)
        die("malloc");
    buf[n] = 0;
    *len = n;
    return buf;
}

int clit_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char *slurp_fd(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        die("malloc");
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            if (!buf)
                die("realloc");
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static double g_timeout_s;

void clit_set_timeout(double seconds) { g_timeout_s = seconds; }

/* Waits for pid; past the deadline set by clit_set_timeout, kills it (status 128 + SIGKILL). */
static int wait_child(pid_t pid)
{
    struct timespec t0, now, nap = { 0, 5 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status;
    int killed = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, g_timeout_s > 0 && !killed ? WNOHANG : 0);
        if (got == pid)
            return status;
        if (got < 0 && errno != EINTR)
            die("waitpid");
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (got == 0 && (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 > g_timeout_s) {
            fprintf(stderr, "clit: killing pid %d after %.0f s\n", (int)pid, g_timeout_s);
            kill(pid, SIGKILL);
            killed = 1;
        } else if (got == 0) {
            nanosleep(&nap, NULL);
        }
    }
}

clit_result clit_run_prog(const char *bin, const char *const *env, const char *const *argv)
{
    FILE *out = tmpfile(), *err = tmpfile();
    if (!out || !err)
        die("tmpfile");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(fileno(out), 1);
        dup2(fileno(err), 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = wait_child(pid);
    clit_result r;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp_fd(fileno(out), &r.outlen);
    r.err = slurp_fd(fileno(err), NULL);
    fclose(out);
    fclose(err);
    return r;
}

clit_result clit_run(const char *arg, ...)
{
    const char *bin = getenv("SHARDPACK_CLI");
    if (!bin || !*bin) {
        fprintf(stderr, "clit: SHARDPACK_CLI is not set\n");
        exit(99);
    }
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return clit_run_prog(bin, NULL, argv);
}

void clit_result_free(clit_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

unsigned char *clit_jpeg(int w, int h, unsigned seed, size_t *size)
{
    unsigned char *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb)
        die("malloc");
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            p[0] = (unsigned char)(x * 7 + seed * 31);
            p[1] = (unsigned char)(y * 5 + seed * 17);
            p[2] = (unsigned char)((x ^ y) + seed);
        }
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jsize = 0;
    if (!tj || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &jsize, TJSAMP_420, 85, 0) != 0) {
        fprintf(stderr, "clit: tjCompress2: %s\n", tjGetErrorStr2(tj));
        exit(99);
    }
    tjDestroy(tj);
    free(rgb);
    /* Copy out of TurboJPEG's allocator so callers can free() it. */
    unsigned char *copy = malloc(jsize);
    if (!copy)
        die("malloc");
    memcpy(copy, jpeg, jsize);
    tjFree(jpeg);
    *size = jsize;
    return copy;
}

void clit_write_images(const char *dir, int n, int w, int h)
{
    char *cls = clit_path("%s/c", dir);
    clit_mkdir(dir);
    clit_mkdir(cls);
    for (int i = 0; i < n; i++) {
        size_t size;
        unsigned char *j = clit_jpeg(w, h, (unsigned)i, &size);
        char *p = clit_path("%s/%03d.jpg", cls, i);
        clit_write(p, j, size);
        free(p);
        free(j);
    }
    free(cls);
}

/* ---- tar ----------------------------------------------------------------------------------- */

static void tar_header(FILE *f, const char *name, size_t size, char type)
{
    unsigned char h[512];
    memset(h, 0, sizeof h);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0001750", 7);
    memcpy(h + 116, "0001750", 7);
    snprintf((char *)h + 124, 12, "%011zo", size);
    memcpy(h + 136, "14707054542", 11);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6); /* "ustar\0" */
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    fwrite(h, 1, sizeof h, f);
}

static void tar_data(FILE *f, const void *data, size_t len)
{
    static const unsigned char zero[512];
    fwrite(data, 1, len, f);
    if (len % 512)
        fwrite(zero, 1, 512 - len % 512, f);
}

void clit_tar_add(FILE *f, const char *name, const void *data, size_t len, int pax)
{
    size_t nlen = strlen(name);
    if (nlen >= 100 && !pax) {
        tar_header(f, "././@LongLink", nlen + 1, 'L');
        tar_data(f, name, nlen + 1);
    } else if (nlen >= 100) {
        /* "LEN path=NAME\n" where LEN counts the whole record, itself included. */
        char rec[1024];
        size_t body = strlen(" path=") + nlen + 1, len_digits = 1, total;
        for (;;) {
            total = body + len_digits;
            size_t d = (size_t)snprintf(NULL, 0, "%zu", total);
            if (d == len_digits)
                break;
            len_digits = d;
        }
        int n = snprintf(rec, sizeof rec, "%zu path=%s\n", total, name);
        tar_header(f, "PaxHeaders/x", (size_t)n, 'x');
        tar_data(f, rec, (size_t)n);
    }
    tar_header(f, name, len, '0');
    tar_data(f, data, len);
}

void clit_tar_end(FILE *f)
{
    static const unsigned char zero[1024];
    fwrite(zero, 1, sizeof zero, f);
}

/* ---- JSON ---------------------------------------------------------------------------------- */

typedef struct jp {
    const char *s;
    int depth;
} jp;

static void jws(jp *p)
{
    while (*p->s == ' ' || *p->s == '\n' || *p->s == '\t' || *p->s == '\r')
        p->s++;
}

static int jvalue(jp *p);

static int jstring(jp *p)
{
    if (*p->s != '"')
        return 0;
    p->s++;
    while (*p->s != '"') {
        unsigned char c = (unsigned char)*p->s;
        if (c == 0 || c < 0x20)
            return 0;
        if (c == '\\') {
            p->s++;
            if (*p->s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p->s[i]))
                        return 0;
                p->s += 5;
                continue;
            }
            if (!strchr("\"\\/bfnrt", *p->s) || !*p->s)
                return 0;
        }
        p->s++;
    }
    p->s++;
    return 1;
}

static int jnumber(jp *p)
{
    const char *start = p->s;
    if (*p->s == '-')
        p->s++;
    if (!isdigit((unsigned char)*p->s))
        return 0;
    if (*p->s == '0' && isdigit((unsigned char)p->s[1]))
        return 0;
    while (isdigit((unsigned char)*p->s))
        p->s++;
    if (*p->s == '.') {
        p->s++;
        if (!isdigit((unsigned char)*p->s))
            return 0;
        while (isdigit((unsigned char)*p->s))
            p->s++;
    }
    if (*p->s == 'e' || *p->s == 'E') {
        p->s++;
        if (*p->s == '+' || *p->s == '-')
            p->s++;
        if (!isdigit((unsigned char)*p->s))
            return 0;
        while (isdigit((unsigned char)*p->s))
            p->s++;
    }
    return p->s > start;
}

static int jcontainer(jp *p, char open, char close, int object)
{
    if (*p->s != open || ++p->depth > 64)
        return 0;
    p->s++;
    jws(p);
    if (*p->s == close) {
        p->s++;
        p->depth--;
        return 1;
    }
    for (;;) {
        jws(p);
        if (object) {
            if (!jstring(p))
                return 0;
            jws(p);
            if (*p->s++ != ':')
                return 0;
        }
        if (!jvalue(p))
            return 0;
        jws(p);
        if (*p->s == ',') {
            p->s++;
            continue;
        }
        if (*p->s++ != close)
            return 0;
        p->depth--;
        return 1;
    }
}

static int jvalue(jp *p)
{
    jws(p);
    switch (*p->s) {
    case '{': return jcontainer(p, '{', '}', 1);
    case '[': return jcontainer(p, '[', ']', 0);
    case '"': return jstring(p);
    case 't': return strncmp(p->s, "true", 4) == 0 ? (p->s += 4, 1) : 0;
    case 'f': return strncmp(p->s, "false", 5) == 0 ? (p->s += 5, 1) : 0;
    case 'n': return strncmp(p->s, "null", 4) == 0 ? (p->s += 4, 1) : 0;
    default: return jnumber(p);
    }
}

int clit_json_valid(const char *s)
{
    jp p = {s, 0};
    if (!jvalue(&p))
        return 0;
    jws(&p);
    return *p.s == 0;
}

int clit_json_has_key(const char *s, const char *key)
{
    char *pat = clit_path("\"%s\":", key);
    int found = strstr(s, pat) != NULL;
    free(pat);
    return found;
}

uint64_t clit_json_u64(const char *s, const char *key)
{
    char *pat = clit_path("\"%s\":", key);
    const char *at = strstr(s, pat);
    size_t plen = strlen(pat);
    free(pat);
    if (!at || !isdigit((unsigned char)at[plen]))
        return UINT64_MAX;
    return strtoull(at + plen, NULL, 10);
}

static void put_le(unsigned char *p, uint32_t v, unsigned width)
{
    for (unsigned b = 0; b < width; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}

void clit_write_llmc(const char *path, unsigned width, uint32_t count, uint32_t (*token)(uint32_t k, uint32_t arg),
                     uint32_t arg, long size_delta)
{
    size_t size = 1024 + (size_t)count * width;
    unsigned char *buf = calloc(1, size + (size_delta > 0 ? (size_t)size_delta : 0));
    if (!buf)
        die("calloc");
    put_le(buf, width == 2 ? 20240520 : 20240801, 4);
    put_le(buf + 4, width == 2 ? 1 : 7, 4);
    put_le(buf + 8, count, 4);
    for (uint32_t k = 0; k < count; k++)
        put_le(buf + 1024 + (size_t)k * width, token(k, arg), width);
    clit_write(path, buf, (size_t)((long)size + size_delta));
    free(buf);
}

char *clit_pack_llmc(const char *dir, unsigned width, uint32_t count, uint32_t (*token)(uint32_t k, uint32_t arg),
                     const char *seq_len)
{
    char *bin = clit_path("%s/tok.bin", dir);
    clit_write_llmc(bin, width, count, token, 0, 0);
    char *ds = clit_path("%s/ds", dir);
    clit_result r = clit_run("pack", bin, "-o", ds, "--seq-len", seq_len, "--block-size", "4K", "-q", "--order", "source",
                             NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    free(bin);
    return ds;
}
