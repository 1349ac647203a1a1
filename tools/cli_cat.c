/* cli_cat.c - `shardpack cat`: the stored bytes of one field of one sample, to stdout. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t le_u(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1F;
    int m = h & 0x3FF;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* One element of a numeric field as text. */
static void print_element(int dtype, const unsigned char *p)
{
    size_t n = sp_dtype_size(dtype);
    uint64_t u = le_u(p, n);
    switch (dtype) {
    case SP_DTYPE_U8:
    case SP_DTYPE_U16:
    case SP_DTYPE_U32:
    case SP_DTYPE_U64:
    case SP_DTYPE_BOOL:
        printf("%" PRIu64, u);
        break;
    case SP_DTYPE_I8: printf("%d", (int)(int8_t)u); break;
    case SP_DTYPE_I16: printf("%d", (int)(int16_t)u); break;
    case SP_DTYPE_I32: printf("%" PRId32, (int32_t)u); break;
    case SP_DTYPE_I64: printf("%" PRId64, (int64_t)u); break;
    case SP_DTYPE_F16: printf("%.9g", (double)half_to_float((uint16_t)u)); break;
    case SP_DTYPE_BF16: {
        uint32_t bits = (uint32_t)u << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        printf("%.9g", (double)f);
        break;
    }
    case SP_DTYPE_F32: {
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, sizeof f);
        printf("%.9g", (double)f);
        break;
    }
    case SP_DTYPE_F64: {
        double d;
        memcpy(&d, &u, sizeof d);
        printf("%.17g", d);
        break;
    }
    default: printf("?");
    }
}

static int write_all(const void *data, size_t size)
{
    if (size && fwrite(data, 1, size, stdout) != size) {
        cli_err("writing to stdout: %s", strerror(errno));
        return CLI_EDATA;
    }
    if (fflush(stdout) != 0) {
        cli_err("writing to stdout: %s", strerror(errno));
        return CLI_EDATA;
    }
    return CLI_OK;
}

enum { OPT_INDEX = 1, OPT_FIELD, OPT_TEXT, OPT_FORCE };

static const cli_opt cat_opts[] = {
    {"index", 'i', 1, OPT_INDEX, "I", "global index of the sample (required)"},
    {"field", 0, 1, OPT_FIELD, "F", "field name or number (default: the first field)"},
    {"text", 0, 0, OPT_TEXT, NULL, "numeric fields as decimal text, one value per line"},
    {"force", 'f', 0, OPT_FORCE, NULL, "write binary data even when stdout is a terminal"},
    {NULL, 0, 0, 0, NULL, NULL},
};

const cli_cmd cli_cmd_cat = {
    "cat",
    "cat PATH --index I [--field F] [--text] [parameters]",
    "Writes the stored bytes of field F of sample I to stdout, exactly as packed.",
    "A packed JPEG comes out byte-identical to its source file. A label is 8 bytes, a\n"
    "little-endian int64, unless --text prints it in decimal. Tokens and tensors print one\n"
    "element per line with --text. There is no --json: the output is the field itself;\n"
    "'shardpack inspect PATH --json' describes the dataset.\n",
    cat_opts,
    SP_SCOPE_READ,
};

int cli_cat_main(int argc, char **argv)
{
    const char *path = NULL, *arg = NULL, *field_arg = NULL; /* path printed; arg as typed, opened */
    char shown[4096];
    uint64_t index = 0;
    int have_index = 0, text = 0, force = 0, rc = CLI_OK;
    sp_dataset *d = NULL;
    sp_block *b = NULL;
    sp_params *params = sp_params_create();
    if (!params) {
        cli_err("out of memory");
        return CLI_EDATA;
    }
    cli_getopt g;
    cli_getopt_init(&g, &cli_cmd_cat, argc, argv, params);
    for (int id; (id = cli_next(&g)) != CLI_ARG_END;) {
        switch (id) {
        case CLI_ARG_ERR:
            rc = CLI_EUSAGE;
            goto out;
        case CLI_ARG_HELP:
            cli_print_help(stdout, &cli_cmd_cat);
            goto out;
        case CLI_ARG_POS:
            if (path) {
                rc = cli_usage_err(&cli_cmd_cat, "one PATH only (got '%s' and '%s')", path,
                                   g.value);
                goto out;
            }
            arg = g.value;
            path = cli_shown(arg, shown, sizeof shown);
            break;
        case OPT_INDEX:
            if (cli_parse_u64(g.value, &index) != 0) {
                rc = cli_usage_err(&cli_cmd_cat, "--index '%s': expected a sample number",
                                   g.value);
                goto out;
            }
            have_index = 1;
            break;
        case OPT_FIELD: field_arg = g.value; break;
        case OPT_TEXT: text = 1; break;
        case OPT_FORCE: force = 1; break;
        default: break;
        }
    }
    if (!path) {
        rc = cli_usage_err(&cli_cmd_cat, "no dataset PATH given");
        goto out;
    }
    if (!have_index) {
        rc = cli_usage_err(&cli_cmd_cat, "--index I is required");
        goto out;
    }

    cli_oom_context("reading %s", path);
    int r = sp_dataset_open(arg, params, &d);
    if (r != 0) {
        d = NULL;
        rc = cli_lib_err(path, r, sp_last_error());
        goto out;
    }
    const sp_schema *schema = sp_dataset_schema(d);
    size_t nfields = sp_schema_num_fields(schema);
    size_t field = 0;
    if (field_arg) {
        int k = sp_schema_find(schema, field_arg);
        uint64_t num;
        if (k >= 0)
            field = (size_t)k;
        else if (cli_parse_u64(field_arg, &num) == 0 && num < nfields)
            field = (size_t)num;
        else {
            cli_buf names = {0};
            for (size_t i = 0; i < nfields; i++) {
                sp_field_info fi = { .struct_size = sizeof fi };
                if (sp_schema_field(schema, i, &fi) == 0) {
                    if (names.len)
                        cli_buf_append(&names, ", ", 2);
                    cli_buf_append(&names, fi.name, strlen(fi.name));
                }
            }
            cli_buf_append(&names, "", 1);
            rc = cli_usage_err(&cli_cmd_cat, "%s: no field '%s' (fields: %s)", path, field_arg,
                               (char *)names.data);
            cli_buf_free(&names);
            goto out;
        }
    }
    sp_field_info fi = { .struct_size = sizeof fi };
    if (sp_schema_field(schema, field, &fi) != 0) {
        rc = cli_usage_err(&cli_cmd_cat, "%s: the dataset has no fields", path);
        goto out;
    }
    uint64_t nsamples = sp_dataset_num_samples(d);
    if (index >= nsamples) {
        rc = cli_usage_err(&cli_cmd_cat, "%s: --index %llu is out of range (%llu samples)", path,
                           (unsigned long long)index, (unsigned long long)nsamples);
        goto out;
    }
    int numeric = fi.kind == SP_FIELD_LABEL || fi.kind == SP_FIELD_TOKENS ||
                  fi.kind == SP_FIELD_TENSOR;
    if (text && !numeric) {
        rc = cli_usage_err(&cli_cmd_cat, "--text applies to label, tokens and tensor fields; "
                                         "'%s' is %s",
                           fi.name, sp_field_kind_name(fi.kind));
        goto out;
    }
    if (!text && !force && isatty(STDOUT_FILENO)) {
        rc = cli_usage_err(&cli_cmd_cat, "refusing to write binary data to a terminal; "
                                         "redirect stdout, or use --text or --force");
        goto out;
    }

    uint64_t block;
    uint32_t row;
    if ((r = sp_dataset_locate(d, index, &block, &row)) != 0 ||
        (r = sp_dataset_read_block(d, block, &b)) != 0) {
        b = NULL;
        rc = cli_lib_err(path, r, sp_dataset_errmsg(d));
        goto out;
    }
    const void *data;
    size_t size;
    if ((r = sp_block_get(b, row, field, &data, &size)) != 0) {
        rc = cli_lib_err(path, r, sp_last_error());
        goto out;
    }
    if (!text) {
        rc = write_all(data, size);
        goto out;
    }
    size_t esize = sp_dtype_size(fi.dtype);
    if (esize == 0 || size % esize != 0) {
        cli_err("%s: sample %llu field '%s': %zu bytes is not a whole number of %s elements",
                path, (unsigned long long)index, fi.name, size, sp_dtype_name(fi.dtype));
        rc = CLI_EDATA;
        goto out;
    }
    for (size_t i = 0; i < size; i += esize) {
        print_element(fi.dtype, (const unsigned char *)data + i);
        putchar('\n');
    }
    rc = write_all(NULL, 0);
out:
    sp_block_free(b);
    sp_dataset_close(d);
    sp_params_destroy(params);
    return rc;
}
