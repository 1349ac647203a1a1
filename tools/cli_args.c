/* cli_args.c - option parsing and help; parameter options come from the library's table. */
#include "cli.h"

#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

void cli_getopt_init(cli_getopt *g, const cli_cmd *cmd, int argc, char **argv, sp_params *params)
{
    memset(g, 0, sizeof *g);
    g->cmd = cmd;
    g->argc = argc;
    g->argv = argv;
    g->i = 1; /* argv[0] is the subcommand */
    g->params = params;
}

int cli_usage_err(const cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    char msg[1024];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_line(stderr, "shardpack: %s", msg); /* it may quote a path from the command line */
    if (cmd)
        fprintf(stderr, "Try 'shardpack %s --help' for more information.\n", cmd->name);
    else
        fputs("Try 'shardpack help' for more information.\n", stderr);
    return CLI_EUSAGE;
}

/* The CLI spelling of a parameter name: '_' becomes '-'. */
static void dash_name(const char *name, char *out, size_t n)
{
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++)
        out[i] = name[i] == '_' ? '-' : name[i];
    out[i] = 0;
}

/* Finds the table entry of one of the scopes whose CLI spelling is name (length len). */
static bool is_bool_word(const char *s)
{
    static const char *const words[] = { "true", "false", "yes", "no", "on", "off", "1", "0", "auto" };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    return false;
}

static int find_param(int scopes, const char *name, size_t len, sp_param_info *info)
{
    int count = sp_param_count();
    for (int k = 0; k < count; k++) {
        char dn[96];
        if (sp_param_describe(k, info) != 0 || !(info->scope & scopes))
            continue;
        dash_name(info->name, dn, sizeof dn);
        if (strlen(dn) == len && memcmp(dn, name, len) == 0)
            return k;
    }
    return -1;
}

static const cli_opt *find_opt(const cli_cmd *cmd, const char *name, size_t len)
{
    for (const cli_opt *o = cmd->opts; o && o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static size_t edit_distance(const char *a, size_t n, const char *b)
{
    size_t m = strlen(b);
    if (n > 64 || m > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

/* The closest known long option to name, or NULL when nothing is close. */
static const char *suggest(const cli_cmd *cmd, const char *name, size_t len, char *buf, size_t n)
{
    size_t best = 3;
    const char *found = NULL;
    for (const cli_opt *o = cmd->opts; o && o->name; o++) {
        size_t d = edit_distance(name, len, o->name);
        if (d < best) {
            best = d;
            found = o->name;
        }
    }
    if (cmd->params) {
        int count = sp_param_count();
        for (int k = 0; k < count; k++) {
            sp_param_info info = { .struct_size = sizeof info };
            if (sp_param_describe(k, &info) != 0 || !(info.scope & cmd->params))
                continue;
            dash_name(info.name, buf, n);
            size_t d = edit_distance(name, len, buf);
            if (d < best) {
                best = d;
                found = info.name;
            }
        }
    }
    if (!found)
        return NULL;
    dash_name(found, buf, n);
    return buf;
}

static int set_param(cli_getopt *g, const sp_param_info *info, const char *opt, const char *value)
{
    if (!g->params)
        return CLI_ARG_ERR;
    int rc = sp_params_set_str(g->params, info->name, value);
    if (rc != 0) {
        const char *msg = sp_last_error();
        cli_usage_err(g->cmd, "--%s '%s': %s", opt, value, msg && *msg ? msg : sp_strerror(rc));
        return CLI_ARG_ERR;
    }
    return 0;
}

/* Handles "--NAME[=VALUE]" at g->argv[g->i]. */
static int long_option(cli_getopt *g, const char *arg)
{
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    g->i++;

    if (len == 4 && memcmp(name, "help", 4) == 0)
        return CLI_ARG_HELP;

    const cli_opt *o = find_opt(g->cmd, name, len);
    if (o) {
        if (!o->has_arg) {
            if (eq) {
                cli_usage_err(g->cmd, "option '--%s' takes no value", o->name);
                return CLI_ARG_ERR;
            }
            g->value = NULL;
            return o->id;
        }
        if (eq) {
            g->value = eq + 1;
        } else if (g->i < g->argc) {
            g->value = g->argv[g->i++];
        } else {
            cli_usage_err(g->cmd, "option '--%s' needs a value (%s)", o->name, o->arg);
            return CLI_ARG_ERR;
        }
        return o->id;
    }

    if (g->cmd->params) {
        sp_param_info info = { .struct_size = sizeof info };
        char opt[96];
        if (find_param(g->cmd->params, name, len, &info) >= 0) {
            dash_name(info.name, opt, sizeof opt);
            const char *value;
            if (eq) {
                value = eq + 1;
            } else if (info.type == SP_PTYPE_BOOL) {
                /* A following true/false word is the value ("--direct-io false"); anything else
                 * is the next argument and the flag alone means true. */
                value = "1";
                if (g->i < g->argc && is_bool_word(g->argv[g->i]))
                    value = g->argv[g->i++];
            } else if (g->i < g->argc) {
                value = g->argv[g->i++];
            } else {
                cli_usage_err(g->cmd, "option '--%s' needs a value", opt);
                return CLI_ARG_ERR;
            }
            return set_param(g, &info, opt, value) == 0 ? cli_next(g) : CLI_ARG_ERR;
        }
        /* --no-NAME for boolean parameters. */
        if (!eq && len > 3 && memcmp(name, "no-", 3) == 0 &&
            find_param(g->cmd->params, name + 3, len - 3, &info) >= 0 &&
            info.type == SP_PTYPE_BOOL) {
            dash_name(info.name, opt, sizeof opt);
            return set_param(g, &info, opt, "0") == 0 ? cli_next(g) : CLI_ARG_ERR;
        }
    }

    char buf[96];
    const char *hint = suggest(g->cmd, name, len, buf, sizeof buf);
    if (hint)
        cli_usage_err(g->cmd, "unknown option '--%.*s' (did you mean '--%s'?)", (int)len, name,
                      hint);
    else
        cli_usage_err(g->cmd, "unknown option '--%.*s'", (int)len, name);
    return CLI_ARG_ERR;
}

static int short_option(cli_getopt *g, const char *arg)
{
    char c = arg[1];
    g->i++;
    if (c == 'h' && arg[2] == 0)
        return CLI_ARG_HELP;
    for (const cli_opt *o = g->cmd->opts; o && o->name; o++) {
        if (o->shortname != c)
            continue;
        if (!o->has_arg) {
            if (arg[2]) {
                cli_usage_err(g->cmd, "unknown option '%s'", arg);
                return CLI_ARG_ERR;
            }
            g->value = NULL;
            return o->id;
        }
        if (arg[2]) {
            g->value = arg + 2;
        } else if (g->i < g->argc) {
            g->value = g->argv[g->i++];
        } else {
            cli_usage_err(g->cmd, "option '-%c' needs a value (%s)", c, o->arg);
            return CLI_ARG_ERR;
        }
        return o->id;
    }
    cli_usage_err(g->cmd, "unknown option '%s'", arg);
    return CLI_ARG_ERR;
}

int cli_next(cli_getopt *g)
{
    if (g->i >= g->argc)
        return CLI_ARG_END;
    const char *arg = g->argv[g->i];
    if (g->only_positional || arg[0] != '-' || arg[1] == 0) {
        g->value = arg;
        g->i++;
        return CLI_ARG_POS;
    }
    if (arg[1] == '-' && arg[2] == 0) {
        g->only_positional = 1;
        g->i++;
        return cli_next(g);
    }
    if (arg[1] == '-')
        return long_option(g, arg);
    return short_option(g, arg);
}

/* "256M" for sizes that are whole multiples of a power of 1024, else the byte count. */
static void fmt_size(char *buf, size_t n, int64_t v)
{
    static const char suffix[] = "KMGT";
    int s = -1;
    while (v != 0 && v % 1024 == 0 && s < 3) {
        v /= 1024;
        s++;
    }
    if (s < 0)
        snprintf(buf, n, "%lld", (long long)v);
    else
        snprintf(buf, n, "%lld%c", (long long)v, suffix[s]);
}

static void fmt_value(char *buf, size_t n, const sp_param_info *info, int64_t v)
{
    switch (info->type) {
    case SP_PTYPE_SIZE:
        fmt_size(buf, n, v);
        break;
    case SP_PTYPE_BOOL:
        snprintf(buf, n, "%s", v < 0 ? "auto" : v ? "on" : "off");
        break;
    case SP_PTYPE_FLOAT3: /* the default is written in choices; bounds are in thousandths */
        if (v == info->def)
            snprintf(buf, n, "%s", info->choices);
        else
            snprintf(buf, n, "%g", (double)v / 1000);
        break;
    case SP_PTYPE_STRING:
        snprintf(buf, n, "none");
        break;
    case SP_PTYPE_DEVICE:
        if (v < 0)
            snprintf(buf, n, "%s", v == SP_DEVICE_AUTO ? "auto" : "cpu");
        else
            snprintf(buf, n, "cuda:%lld", (long long)v);
        break;
    case SP_PTYPE_ENUM: {
        const char *c = info->choices ? info->choices : "";
        for (int64_t i = 0; i < v && c; i++) {
            c = strchr(c, '|');
            if (c)
                c++;
        }
        size_t len = c ? strcspn(c, "|") : 0;
        snprintf(buf, n, "%.*s", (int)len, c ? c : "");
        break;
    }
    default:
        snprintf(buf, n, "%lld", (long long)v);
    }
}

/* "  LEFT  HELP", the help wrapped at word boundaries to fit 79 columns. */
static void print_opt_line(FILE *f, const char *left, const char *help)
{
    enum { INDENT = 29, WIDTH = 79 };
    if (strlen(left) <= INDENT - 3)
        fprintf(f, "  %-*s ", INDENT - 3, left);
    else
        fprintf(f, "  %s\n%*s", left, INDENT, "");
    size_t col = INDENT;
    const char *p = help;
    while (*p) {
        size_t word = strcspn(p, " ");
        if (col > INDENT && col + 1 + word > WIDTH) {
            fprintf(f, "\n%*s", INDENT, "");
            col = INDENT;
        } else if (col > INDENT) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, word, f);
        col += word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

void cli_print_help(FILE *f, const cli_cmd *cmd)
{
    fprintf(f, "Usage: shardpack %s\n\n%s\n", cmd->synopsis, cmd->summary);
    if (cmd->details)
        fprintf(f, "\n%s", cmd->details);
    fputs("\nOptions:\n", f);
    for (const cli_opt *o = cmd->opts; o && o->name; o++) {
        char left[128];
        if (o->shortname)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->shortname, o->name,
                     o->has_arg ? " " : "", o->has_arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "--%s%s%s", o->name, o->has_arg ? " " : "",
                     o->has_arg ? o->arg : "");
        print_opt_line(f, left, o->help);
    }
    print_opt_line(f, "-h, --help", "show this help and exit");
    if (!cmd->params)
        return;

    fputs("\nLibrary parameters (from libshardpack's parameter table):\n", f);
    int count = sp_param_count();
    for (int k = 0; k < count; k++) {
        sp_param_info info = { .struct_size = sizeof info };
        if (sp_param_describe(k, &info) != 0 || !(info.scope & cmd->params))
            continue;
        char name[96], left[256], def[48], lo[48], hi[48];
        dash_name(info.name, name, sizeof name);
        fmt_value(def, sizeof def, &info, info.def);
        fmt_value(lo, sizeof lo, &info, info.min);
        fmt_value(hi, sizeof hi, &info, info.max);
        const char *meta = info.type == SP_PTYPE_SIZE ? "SIZE"
                           : info.type == SP_PTYPE_INT ? "N"
                           : info.type == SP_PTYPE_ENUM ? info.choices
                           : info.type == SP_PTYPE_FLOAT3 ? "R,G,B"
                           : info.type == SP_PTYPE_DEVICE ? "auto|cpu|cuda:N"
                           : info.type == SP_PTYPE_STRING ? "TEXT"
                                                        : NULL;
        if (meta)
            snprintf(left, sizeof left, "--%s %s", name, meta);
        else
            snprintf(left, sizeof left, "--%s, --no-%s", name, name);
        char *help;
        if (info.type == SP_PTYPE_INT || info.type == SP_PTYPE_SIZE || info.type == SP_PTYPE_FLOAT3)
            help = cli_xasprintf("%s (default %s; %s..%s)", info.doc, def, lo, hi);
        else
            help = cli_xasprintf("%s (default %s)", info.doc, def);
        print_opt_line(f, left, help);
        free(help);
    }
    fputs("  Sizes take K, M, G, T suffixes (powers of 1024).\n", f);
}
