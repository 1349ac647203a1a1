/* cli_main.c - entry point of the shardpack tool: dispatch, --version, help. */
#include "cli.h"

#include <string.h>

typedef struct command {
    const cli_cmd *cmd;
    int (*main)(int argc, char **argv);
} command;

static const command commands[] = {
    {&cli_cmd_pack, cli_pack_main},
    {&cli_cmd_inspect, cli_inspect_main},
    {&cli_cmd_verify, cli_verify_main},
    {&cli_cmd_cat, cli_cat_main},
    {&cli_cmd_bench, cli_bench_main},
    {&cli_cmd_preview, cli_preview_main},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].cmd->name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage(FILE *f)
{
    fputs("Usage: shardpack COMMAND [ARGS...]\n"
          "       shardpack help [COMMAND]\n"
          "       shardpack --version\n\n"
          "Builds, checks and reads shardpack datasets (compressed shards of training samples).\n\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].cmd->name, commands[i].cmd->summary);
    fputs("\nExit status: 0 success, 1 data error, 2 usage error.\n"
          "Run 'shardpack help COMMAND' or 'shardpack COMMAND --help' for a command's options.\n",
          f);
}

static void print_version(void)
{
    printf("shardpack %d.%d.%d (libshardpack %s, ABI %d)\n", SP_VERSION_MAJOR, SP_VERSION_MINOR,
           SP_VERSION_PATCH, sp_version(), sp_abi_version());
}

static int help(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return CLI_OK;
    }
    const command *c = find_command(argv[1]);
    if (!c)
        return cli_usage_err(NULL, "help: no command '%s'", argv[1]);
    cli_print_help(stdout, c->cmd);
    return CLI_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EUSAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
        print_version();
        return CLI_OK;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_usage(stdout);
        return CLI_OK;
    }
    /* The tool passes structs by layout; a library of another ABI cannot be trusted with them. */
    if (sp_abi_version() != SP_ABI_VERSION) {
        cli_err("libshardpack ABI %d is loaded, this tool was built for ABI %d; reinstall one "
                "of them",
                sp_abi_version(), SP_ABI_VERSION);
        return CLI_EDATA;
    }
    if (strcmp(cmd, "help") == 0)
        return help(argc - 1, argv + 1);
    const command *c = find_command(cmd);
    if (!c) {
        if (cmd[0] == '-')
            return cli_usage_err(NULL, "unknown option '%s' (a command comes first)", cmd);
        return cli_usage_err(NULL,
                             "unknown command '%s' (commands: pack, inspect, verify, cat, bench, "
                             "preview)",
                             cmd);
    }
    int rc = c->main(argc - 1, argv + 1);
    if (fflush(stdout) != 0 && rc == CLI_OK) {
        cli_err("writing to stdout failed");
        rc = CLI_EDATA;
    }
    return rc;
}
