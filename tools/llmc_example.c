/*
 * llmc_example.c - what llm.c's training loop needs from its data loader, on libshardpack's public
 * API and nothing else (docs/llmc.md walks through it).
 *
 * The dataset is one packed from llm.c token files (`shardpack pack train_*.bin --seq-len T -o DIR`):
 * each sample holds a field "tokens" of T+1 tokens, tokens[i*T .. i*T+T] of the token stream, so a
 * row gives T inputs and, shifted by one, their T targets. Every step hands the model B x T int32
 * inputs and B x T int32 targets in contiguous buffers, as llm.c's forward pass reads them.
 *
 * Usage: llmc-example DATASET [-B N] [-T N] [--steps N] [--epochs N] [--rank R] [--world-size W]
 *                     [--seed S] [--threads N] [-p NAME=VALUE]... [--save-state FILE]
 *                     [--resume FILE] [--ids] [--quiet]
 *
 * Prints one line per step on stdout:
 *     step S epoch E batch K inputs XXXXXXXXXXXXXXXX targets XXXXXXXXXXXXXXXX [ids I,I,...]
 * (XXH3-64 of the contiguous inputs/targets buffers), so an interrupted and resumed run can be
 * compared with an uninterrupted one. Exit status: 0 ok, 1 data error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardpack.h"

#define PROG "llmc-example"

enum { EXIT_OK = 0, EXIT_DATA = 1, EXIT_USAGE = 2 };

/* ---- the loader a trainer keeps: llm.c's DataLoader, on shardpack --------------------------- */

typedef struct llmc_loader {
    sp_loader *loader;
    size_t B, T;      /* batch size, sequence length */
    int32_t *inputs;  /* B*T, contiguous: row r is tokens[r, 0:T] */
    int32_t *targets; /* B*T, contiguous: row r is tokens[r, 1:T+1] */
    uint64_t epoch, batch; /* of the batch now in inputs/targets */
    uint64_t *ids;    /* global sample id of each row (for checking coverage) */
} llmc_loader;

static void report(const char *what, int rc, const char *msg)
{
    fprintf(stderr, PROG ": %s: %s\n", what, msg && *msg ? msg : sp_strerror(rc));
}

/* T from the dataset's schema: its "tokens" field holds T+1 tokens. */
static int dataset_seq_len(const char *path, const sp_params *params, size_t *T)
{
    sp_dataset *d;
    int rc = sp_dataset_open(path, params, &d);
    if (rc != 0) {
        report(path, rc, sp_last_error());
        return rc;
    }
    const sp_schema *s = sp_dataset_schema(d);
    int f = sp_schema_find(s, "tokens");
    sp_field_info fi = { .struct_size = sizeof fi };
    if (f < 0 || sp_schema_field(s, (size_t)f, &fi) != 0 || fi.kind != SP_FIELD_TOKENS ||
        fi.shape[0] < 2) {
        fprintf(stderr, PROG ": %s: no field 'tokens' of T+1 tokens (pack llm.c files with "
                        "'shardpack pack FILE.bin --seq-len T')\n", path);
        sp_dataset_close(d);
        return SP_ESCHEMA;
    }
    *T = (size_t)fi.shape[0] - 1;
    sp_dataset_close(d);
    return 0;
}

/* llm.c's dataloader_init. params holds everything but what is set here: int32 tokens (llm.c's
 * inputs are int), B rows per batch, and only full batches (its buffers hold exactly B*T). */
static int llmc_init(llmc_loader *dl, const char *path, sp_params *params, size_t B, size_t T)
{
    memset(dl, 0, sizeof *dl);
    sp_params_set(params, SP_PARAM_TOKEN_DTYPE, SP_TOKEN_DTYPE_INT32);
    sp_params_set(params, SP_PARAM_BATCH_SIZE, (int64_t)B);
    sp_params_set(params, SP_PARAM_DROP_LAST, 1);
    int rc = sp_loader_open(path, params, &dl->loader);
    if (rc != 0) {
        report(path, rc, sp_last_error());
        return rc;
    }
    dl->B = B;
    dl->T = T;
    dl->inputs = malloc(B * T * sizeof *dl->inputs);
    dl->targets = malloc(B * T * sizeof *dl->targets);
    dl->ids = malloc(B * sizeof *dl->ids);
    if (!dl->inputs || !dl->targets || !dl->ids) {
        report(path, SP_ENOMEM, NULL);
        return SP_ENOMEM;
    }
    if (sp_loader_batches_per_epoch(dl->loader) == 0) {
        const char *m = sp_loader_errmsg(dl->loader);
        fprintf(stderr, PROG ": %s: %s\n", path,
                *m ? m : "fewer samples than one full batch per rank");
        return SP_EINVAL;
    }
    return 0;
}

/*
 * The zero-copy way: inputs and targets as strided views of the batch's [B, T+1] tensor, no byte
 * moved. inputs = tokens[:, 0:T] starts at row 0 column 0, targets = tokens[:, 1:T+1] one element
 * later; both have shape [B, T] and row stride T+1 elements. Anything that takes strides (DLPack
 * consumers such as torch.from_dlpack, a CUDA kernel given the row pitch, cudaMemcpy2DAsync) can use
 * them in place until the batch is released. With B = 1 both are contiguous.
 */
typedef struct llmc_views {
    DLTensor inputs, targets;
    int64_t shape[2], strides[2];
} llmc_views;

static void llmc_make_views(const DLTensor *tokens, llmc_views *v)
{
    v->shape[0] = tokens->shape[0];
    v->shape[1] = tokens->shape[1] - 1;
    v->strides[0] = tokens->shape[1];
    v->strides[1] = 1;
    v->inputs = *tokens;
    v->inputs.shape = v->shape;
    v->inputs.strides = v->strides;
    v->targets = v->inputs;
    v->targets.byte_offset = tokens->byte_offset + sizeof(int32_t);
}

/* The copy llm.c wants: each view gathered into a contiguous B*T buffer (T ints per row; 8*B*T
 * bytes a step, small next to a forward pass over the same tokens). */
static void gather(const DLTensor *view, int32_t *dst)
{
    const char *base = (const char *)view->data + view->byte_offset;
    size_t rows = (size_t)view->shape[0], cols = (size_t)view->shape[1];
    for (size_t r = 0; r < rows; r++)
        memcpy(dst + r * cols, base + r * (size_t)view->strides[0] * sizeof(int32_t),
               cols * sizeof(int32_t));
}

/* llm.c's dataloader_next_batch: fills inputs and targets. An epoch's end is crossed the way a
 * trainer does (the loader reshuffles and goes on). Returns 0, SP_EDONE after the last of a finite
 * number of epochs, or an error. */
static int llmc_next_batch(llmc_loader *dl)
{
    sp_batch *b;
    int rc;
    while ((rc = sp_loader_next(dl->loader, &b, -1)) == SP_EEPOCH)
        ;
    if (rc != 0)
        return rc;
    int f = sp_batch_find(b, "tokens");
    const DLTensor *t = f >= 0 ? sp_batch_tensor(b, (size_t)f) : NULL;
    if (!t || t->ndim != 2 || t->dtype.code != kDLInt || t->dtype.bits != 32 ||
        (size_t)t->shape[0] != dl->B || (size_t)t->shape[1] != dl->T + 1) {
        fprintf(stderr, PROG ": batch %" PRIu64 " is not [%zu, %zu] int32 tokens\n",
                sp_batch_index(b), dl->B, dl->T + 1);
        sp_loader_release(dl->loader, b);
        return SP_ESCHEMA;
    }
    llmc_views v;
    llmc_make_views(t, &v);
    gather(&v.inputs, dl->inputs);
    gather(&v.targets, dl->targets);
    for (size_t r = 0; r < dl->B; r++)
        dl->ids[r] = sp_batch_sample_id(b, (uint32_t)r);
    dl->epoch = sp_batch_epoch(b);
    dl->batch = sp_batch_index(b);
    /* The copies are ours: the batch goes back to the ring at once. */
    return sp_loader_release(dl->loader, b);
}

/* llm.c's dataloader_reset: back to the start of an epoch. */
static int llmc_reset(llmc_loader *dl, uint64_t epoch)
{
    return sp_loader_set_epoch(dl->loader, epoch);
}

/* Saves the position (the batch that comes next) to path atomically: a reader of path sees the
 * old state or the new one, never a torn file. */
static int llmc_save(llmc_loader *dl, const char *path)
{
    unsigned char state[SP_LOADER_STATE_BYTES];
    int rc = sp_loader_save_state(dl->loader, state, sizeof state);
    if (rc != 0) {
        report(path, rc, sp_loader_errmsg(dl->loader));
        return rc;
    }
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return SP_ENOMEM;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = fd >= 0 && write(fd, state, sizeof state) == (ssize_t)sizeof state && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, PROG ": %s: cannot save the loader state: %s\n", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return SP_EIO;
    }
    free(tmp);
    return 0;
}

/* llm.c's dataloader_resume: the next batch is the one that followed when the state was saved. */
static int llmc_resume(llmc_loader *dl, const char *path)
{
    unsigned char state[SP_LOADER_STATE_BYTES + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, state, sizeof state) : -1;
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (n < 0) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(err));
        return SP_EIO;
    }
    int rc = sp_loader_load_state(dl->loader, state, (size_t)n);
    if (rc != 0)
        report(path, rc, sp_loader_errmsg(dl->loader));
    return rc;
}

/* llm.c's dataloader_free. */
static void llmc_free(llmc_loader *dl)
{
    sp_loader_close(dl->loader); /* no batch is ever held between calls, so this cannot be busy */
    free(dl->inputs);
    free(dl->targets);
    free(dl->ids);
    memset(dl, 0, sizeof *dl);
}

/* ---- the program ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("Usage: " PROG " DATASET [options]\n"
          "Streams B x T int32 inputs and targets from a dataset packed from llm.c token files,\n"
          "as llm.c's training loop consumes them, printing a checksum of each step.\n\n"
          "  -B, --batch-size N    rows per step (default 4)\n"
          "  -T, --seq-len N       tokens per row; must match the dataset (default: from it)\n"
          "  -n, --steps N         steps to run (default: until --epochs run out)\n"
          "  -e, --epochs N        epochs before stopping (default 0: endless, as llm.c)\n"
          "      --rank R          this process's rank (default: $RANK, else 0)\n"
          "      --world-size W    number of ranks (default: $WORLD_SIZE, else 1)\n"
          "      --seed S          shuffle seed (default 0)\n"
          "      --threads N       decode threads (default: one per core)\n"
          "  -p, --param NAME=VAL  any other loader parameter (host_memory=256M, shuffle=0, ...)\n"
          "      --save-state FILE after the last step, save the position to FILE (atomically)\n"
          "      --resume FILE     start where the state saved in FILE left off\n"
          "      --ids             also print the sample id of every row\n"
          "  -q, --quiet           no summary on stderr\n"
          "  -h, --help            this help\n\n"
          "Exit status: 0 ok, 1 data error, 2 usage error.\n",
          f);
}

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    return EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Sets a loader parameter from text; prints the library's explanation on failure. */
static int set_param(sp_params *p, const char *name, const char *value)
{
    int rc = sp_params_set_str(p, name, value);
    if (rc != 0) {
        fprintf(stderr, PROG ": --%s '%s': %s\n", name, value,
                *sp_last_error() ? sp_last_error() : sp_strerror(rc));
        return EXIT_USAGE;
    }
    return 0;
}

typedef struct options {
    const char *path, *save, *resume;
    uint64_t B, T, steps;
    int ids, quiet;
} options;

enum { OPT_RANK = 256, OPT_WORLD, OPT_SEED, OPT_THREADS, OPT_SAVE, OPT_RESUME, OPT_IDS };

static int parse_args(int argc, char **argv, options *o, sp_params *params)
{
    static const struct option longs[] = {
        {"batch-size", required_argument, NULL, 'B'},
        {"seq-len", required_argument, NULL, 'T'},
        {"steps", required_argument, NULL, 'n'},
        {"epochs", required_argument, NULL, 'e'},
        {"rank", required_argument, NULL, OPT_RANK},
        {"world-size", required_argument, NULL, OPT_WORLD},
        {"seed", required_argument, NULL, OPT_SEED},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"param", required_argument, NULL, 'p'},
        {"save-state", required_argument, NULL, OPT_SAVE},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"ids", no_argument, NULL, OPT_IDS},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->B = 4;
    opterr = 0;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":B:T:n:e:p:qh", longs, NULL)) != -1) {
        rc = 0;
        switch (c) {
        case 'B':
            if (parse_u64(optarg, &o->B) || o->B == 0 || o->B > (1u << 20))
                return usage_err("--batch-size '%s': want 1..1048576", optarg);
            break;
        case 'T':
            if (parse_u64(optarg, &o->T) || o->T == 0)
                return usage_err("--seq-len '%s': want a positive count", optarg);
            break;
        case 'n':
            if (parse_u64(optarg, &o->steps))
                return usage_err("--steps '%s': want a count", optarg);
            break;
        case 'e': rc = set_param(params, "epochs", optarg); break;
        case OPT_RANK: rc = set_param(params, "rank", optarg); break;
        case OPT_WORLD: rc = set_param(params, "world_size", optarg); break;
        case OPT_SEED: rc = set_param(params, "seed", optarg); break;
        case OPT_THREADS: rc = set_param(params, "threads", optarg); break;
        case 'p': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return usage_err("--param '%s': want NAME=VALUE", optarg);
            char name[96];
            snprintf(name, sizeof name, "%.*s", (int)(eq - optarg), optarg);
            rc = set_param(params, name, eq + 1);
            break;
        }
        case OPT_SAVE: o->save = optarg; break;
        case OPT_RESUME: o->resume = optarg; break;
        case OPT_IDS: o->ids = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return -1;
        case ':': return usage_err("option '%s' needs a value", argv[optind - 1]);
        default: return usage_err("unknown option '%s'", argv[optind - 1]);
        }
        if (rc)
            return rc;
    }
    if (optind + 1 != argc)
        return usage_err("%s", optind >= argc ? "no DATASET given" : "one DATASET only");
    o->path = argv[optind];
    if (o->steps == 0 && sp_params_get(params, SP_PARAM_EPOCHS) == 0)
        return usage_err("%s", "endless epochs need --steps N");
    return 0;
}

static void print_step(const llmc_loader *dl, uint64_t step, int ids)
{
    size_t bytes = dl->B * dl->T * sizeof(int32_t);
    printf("step %" PRIu64 " epoch %" PRIu64 " batch %" PRIu64 " inputs %016" PRIx64
           " targets %016" PRIx64,
           step, dl->epoch, dl->batch, sp_checksum64(dl->inputs, bytes),
           sp_checksum64(dl->targets, bytes));
    if (ids)
        for (size_t r = 0; r < dl->B; r++)
            printf("%s%" PRIu64, r ? "," : " ids ", dl->ids[r]);
    putchar('\n');
}

int main(int argc, char **argv)
{
    int status = EXIT_OK;
    llmc_loader dl;
    memset(&dl, 0, sizeof dl);
    sp_params *params = sp_params_create();
    if (!params) {
        fputs(PROG ": out of memory\n", stderr);
        return EXIT_DATA;
    }
    sp_params_set(params, SP_PARAM_EPOCHS, 0); /* llm.c cycles through its shards without end */
    options o;
    int rc = parse_args(argc, argv, &o, params);
    if (rc != 0) {
        sp_params_destroy(params);
        return rc < 0 ? EXIT_OK : rc;
    }
    size_t T;
    if (dataset_seq_len(o.path, params, &T) != 0) {
        status = EXIT_DATA;
        goto out;
    }
    if (o.T && o.T != T) {
        fprintf(stderr, PROG ": %s holds sequences of T = %zu tokens, not %" PRIu64 "\n", o.path,
                T, o.T);
        status = EXIT_USAGE;
        goto out;
    }
    /* As llm.c's init ends with a reset, a fresh run starts at epoch 0; a resumed one where its
     * state says. */
    if (llmc_init(&dl, o.path, params, (size_t)o.B, T) != 0 ||
        (o.resume ? llmc_resume(&dl, o.resume) : llmc_reset(&dl, 0)) != 0) {
        status = EXIT_DATA;
        goto out;
    }

    uint64_t step = 0;
    for (; o.steps == 0 || step < o.steps; step++) {
        rc = llmc_next_batch(&dl);
        if (rc == SP_EDONE)
            break;
        if (rc != 0) {
            report(o.path, rc, sp_loader_errmsg(dl.loader));
            status = EXIT_DATA;
            goto out;
        }
        /* ... here llm.c copies inputs and targets to the GPU and runs forward/backward ... */
        print_step(&dl, step, o.ids);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, PROG ": writing to stdout: %s\n", strerror(errno));
        status = EXIT_DATA;
        goto out;
    }
    if (o.save && llmc_save(&dl, o.save) != 0) {
        status = EXIT_DATA;
        goto out;
    }
    if (!o.quiet)
        fprintf(stderr, PROG ": %" PRIu64 " steps of B=%zu x T=%zu, %" PRIu64
                        " batches per epoch on this rank%s%s\n",
                step, dl.B, dl.T, sp_loader_batches_per_epoch(dl.loader),
                o.save ? ", state saved to " : "", o.save ? o.save : "");
out:
    llmc_free(&dl);
    sp_params_destroy(params);
    return status;
}
