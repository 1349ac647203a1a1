/* clit_util.h - helpers of the CLI tests: run the shardpack binary, make inputs in a temp dir. */
#ifndef CLIT_UTIL_H
#define CLIT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What one run of the tool produced. */
typedef struct clit_result {
    int status;  /* exit status, or 128 + signal number */
    char *out;   /* stdout, NUL-terminated (binary safe with outlen) */
    size_t outlen;
    char *err;   /* stderr, NUL-terminated */
} clit_result;

/* Runs $SHARDPACK_CLI with the NULL-terminated arguments; stdin is /dev/null. */
clit_result clit_run(const char *arg, ...);
/* Runs bin with argv (argv[0] included, NULL-terminated) and, in the child only, the
 * "NAME=VALUE" entries of env (NULL-terminated, may be NULL) added to the environment. */
clit_result clit_run_prog(const char *bin, const char *const *env, const char *const *argv);
void clit_result_free(clit_result *r);
/* From now on, a run still going after seconds is killed (status 128 + SIGKILL), so a hang fails
 * the test at once; 0 (the default) waits as long as it takes. */
void clit_set_timeout(double seconds);

/* A fresh temporary directory (removed by clit_rmrf). */
char *clit_tmpdir(void);
void clit_rmrf(const char *path);
/* Formatted path, allocated. */
char *clit_path(const char *fmt, ...);
void clit_mkdir(const char *path);
void clit_write(const char *path, const void *data, size_t len);
/* Writes an llm.c token file: width 2 (magic 20240520, version 1) or 4 (20240801, version 7), count
 * tokens named in the header, token k = token(k, arg); size_delta bytes are added to (or, negative,
 * cut from) the file's proper length, to make broken files. */
void clit_write_llmc(const char *path, unsigned width, uint32_t count, uint32_t (*token)(uint32_t k, uint32_t arg),
                     uint32_t arg, long size_delta);
/* Writes DIR/tok.bin as above (count tokens, token(k, 0)) and packs it into DIR/ds with --seq-len
 * seq_len, 4 KiB blocks and --order source (sample i is window i); returns the dataset path
 * (malloc'd). Fails the test if pack fails. */
char *clit_pack_llmc(const char *dir, unsigned width, uint32_t count, uint32_t (*token)(uint32_t k, uint32_t arg),
                     const char *seq_len);
/* Whole file, allocated; NULL when it cannot be read. */
unsigned char *clit_read(const char *path, size_t *len);
int clit_exists(const char *path);

/* A small baseline JPEG of w x h pixels whose content depends on seed (malloc'd). */
unsigned char *clit_jpeg(int w, int h, unsigned seed, size_t *size);
/* An ImageFolder of one class: DIR/c/000.jpg ... n JPEGs of w x h pixels, image i of seed i
 * (DIR and DIR/c are created). */
void clit_write_images(const char *dir, int n, int w, int h);

/* Tar writer: regular members; names over 100 bytes get a GNU 'L' record, or a pax 'path'
 * record when pax is set. */
void clit_tar_add(FILE *f, const char *name, const void *data, size_t len, int pax);
void clit_tar_end(FILE *f);

/* 1 when s is one syntactically valid JSON value (followed by optional whitespace). */
int clit_json_valid(const char *s);
/* 1 when the JSON text contains the key (as "key":). */
int clit_json_has_key(const char *s, const char *key);
/* The unsigned number after "key": (first occurrence), or UINT64_MAX. */
uint64_t clit_json_u64(const char *s, const char *key);

#endif
