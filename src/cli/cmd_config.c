/* kdstep config: print the resolved configuration, or the reference of every key. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char USAGE[] =
    "usage: kdstep config [--config FILE] [--set section.key=value]... [--reference]\n"
    "\n"
    "Prints the configuration after defaults, FILE and --set overrides, as YAML.\n"
    "  --config FILE   YAML config (strict: unknown keys are errors)\n"
    "  --set K=V       override one key, e.g. --set train.lr=0.0005 (repeatable)\n"
    "  --reference     print every key with its default and meaning (Markdown)\n"
    "  --hash          print the config's SHA-256 (what datasets and checkpoints record)\n";

int kd_cmd_config(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
                                         {"reference", no_argument, 0, 'r'},    {"hash", no_argument, 0, 'H'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *path = NULL;
    char *sets[256];
    int nsets = 0, reference = 0, hash = 0, c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 's':
            if (nsets == 256) return kd_cli_usage_error(USAGE, "too many --set flags");
            sets[nsets++] = optarg;
            break;
        case 'r': reference = 1; break;
        case 'H': hash = 1; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "config: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "config: unexpected argument '%s'", argv[optind]);
    if (reference) {
        kd_config_print_reference(stdout);
        return 0;
    }
    kd_config cfg;
    kd_error err;
    if (kd_cli_load_config(&cfg, path, sets, nsets, &err)) {
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    if (hash) {
        char hex[65];
        kd_config_hash(&cfg, hex);
        printf("%s\n", hex);
    } else {
        char *d = kd_config_dump(&cfg);
        fputs(d ? d : "", stdout);
        free(d);
    }
    kd_config_free(&cfg);
    return 0;
}
