/* kdstep: the git-style dispatcher. It only parses the subcommand name and hands over. */
#include <curl/curl.h>
#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kdstep/runtime.h"
#include "kdstep/version.h"

extern char *openblas_get_config(void);

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command COMMANDS[] = {
#define KD_COMMAND(name, fn, summary) {name, fn, summary},
#include "commands.h"
#undef KD_COMMAND
};
#define NCOMMANDS ((int)(sizeof COMMANDS / sizeof COMMANDS[0]))

static void print_usage(FILE *f) {
    fprintf(f, "usage: kdstep <command> [flags]    (kdstep <command> --help for its flags)\n\n"
               "Distill tool-calling skill (tool names, JSON arguments, integration of results)\n"
               "from a teacher LLM into a small student model.\n\ncommands:\n");
    for (int i = 0; i < NCOMMANDS; i++)
        if (COMMANDS[i].fn) fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nglobal flags:\n  --help       this text\n  --version    kdstep and library versions\n");
}

static void print_version(void) {
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    char *nl = strchr(mpi, '\n');
    if (nl) *nl = 0;
    char *comma = strchr(mpi, ',');
    if (comma) *comma = 0;
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    printf("kdstep %s\n", KD_VERSION);
    printf("  MPI:     %s\n", mpi);
    printf("  HDF5:    %u.%u.%u (parallel)\n", maj, min, rel);
    printf("  jansson: %s\n", jansson_version_str());
    printf("  curl:    %s\n", curl_version());
    printf("  BLAS:    %s (kernels: %s)\n", openblas_get_config(), kd_runtime_blas_core());
}

int main(int argc, char **argv) {
    kd_runtime_select_blas(argc, argv);
    if (argc < 2) {
        print_usage(stderr);
        return KD_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        print_version();
        return 0;
    }
    for (int i = 0; i < NCOMMANDS; i++)
        if (COMMANDS[i].fn && strcmp(cmd, COMMANDS[i].name) == 0) {
            kd_cli_reset_getopt();
            return COMMANDS[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "kdstep: unknown command '%s'\n\n", cmd);
    print_usage(stderr);
    return KD_EXIT_USAGE;
}
