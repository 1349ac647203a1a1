/* pack_c.c - a dataset built by a C program through shardpack.h alone (sp_import_*), for the test
 * that shardpack pack, Python's shardpack.pack() and the C API build the same files.
 *
 * Usage: pack-c OUTDIR KIND|- [--NAME=VALUE]... [+KEY=VALUE]... SRC...
 *   KIND        a source kind, or - to detect it
 *   --NAME=V    a parameter of the library's table (sp_params_set_str)
 *   +KEY=V      a metadata entry, set before the library's own (sp_import_set_meta)
 * Prints each skipped item ("skipped WHAT: REASON") on stdout; exit 0, or 1 with the library's
 * message on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardpack.h"

static void on_skip(void *user, const char *what, const char *reason, uint64_t bytes)
{
    (void)user;
    (void)bytes;
    printf("skipped %s: %s\n", what, reason);
}

static int fail(const char *what, const char *msg)
{
    fprintf(stderr, "pack-c: %s: %s\n", what, msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return fail("usage", "pack-c OUTDIR KIND|- [--NAME=VALUE]... [+KEY=VALUE]... SRC...");
    const char *out = argv[1], *kind = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    sp_params *params = sp_params_create();
    const char **srcs = calloc((size_t)argc, sizeof *srcs);
    const char **meta = calloc((size_t)argc, sizeof *meta);
    size_t nsrcs = 0, nmeta = 0;
    if (!params || !srcs || !meta)
        return fail(out, "out of memory");
    for (int i = 3; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (strncmp(argv[i], "--", 2) == 0 && eq) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(eq - argv[i] - 2), argv[i] + 2);
            if (sp_params_set_str(params, name, eq + 1) != 0)
                return fail(argv[i], sp_last_error());
        } else if (argv[i][0] == '+' && eq) {
            meta[nmeta++] = argv[i] + 1;
        } else {
            srcs[nsrcs++] = argv[i];
        }
    }
    sp_import *imp;
    int rc = sp_import_open(kind, srcs, nsrcs, out, params, &imp);
    if (rc)
        return fail(out, sp_last_error());
    for (size_t i = 0; i < nmeta && rc == 0; i++) {
        const char *eq = strchr(meta[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - meta[i]), meta[i]);
        rc = sp_import_set_meta(imp, key, eq + 1, strlen(eq + 1));
    }
    if (rc == 0)
        rc = sp_import_set_callbacks(imp, on_skip, NULL, NULL);
    if (rc == 0)
        rc = sp_import_run(imp);
    if (rc)
        fail(out, sp_import_errmsg(imp));
    sp_import_destroy(imp);
    sp_params_destroy(params);
    free(srcs);
    free(meta);
    return rc ? 1 : 0;
}
