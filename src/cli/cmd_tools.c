/* kdstep tools: load a registry, list it, and validate argument objects against it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/registry.h"

static const char USAGE[] =
    "usage: kdstep tools --tools FILE [--check NAME JSON] [--list]\n"
    "\n"
    "Loads a tool registry (OpenAI `tools` array or BFCL `function` list).\n"
    "  --tools FILE        the registry (default configs/tools.json)\n"
    "  --list              print each tool's name and required parameters\n"
    "  --check NAME JSON   validate an arguments object for tool NAME; exit 1 when invalid\n";

int kd_cmd_tools(int argc, char **argv) {
    static const struct option opts[] = {{"tools", required_argument, 0, 't'}, {"list", no_argument, 0, 'l'},
                                         {"check", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = "configs/tools.json", *check = NULL;
    int list = 0, c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'l': list = 1; break;
        case 'c': check = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "tools: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (check && optind != argc - 1) return kd_cli_usage_error(USAGE, "tools: --check NAME needs a JSON arguments object");
    if (!check && optind < argc) return kd_cli_usage_error(USAGE, "tools: unexpected argument '%s'", argv[optind]);
    kd_registry *reg = NULL;
    kd_error err;
    if (kd_registry_open(&reg, &err) || kd_registry_load_file(reg, path, &err)) {
        kd_registry_close(reg);
        return kd_cli_fail(&err);
    }
    int rc = 0;
    if (check) {
        const kd_tool *t = kd_registry_find(reg, check);
        json_error_t je;
        json_t *args = json_loads(argv[optind], JSON_DECODE_ANY, &je);
        if (!t) {
            kd_error_set(&err, KD_ERR_NOTFOUND, "%s: no tool named '%s' (see kdstep tools --list)", path, check);
            rc = kd_cli_fail(&err);
        } else if (!args) {
            kd_error_set(&err, KD_ERR_PARSE, "arguments: invalid JSON at column %d: %s", je.column, je.text);
            rc = kd_cli_fail(&err);
        } else if (kd_registry_validate(t, args, &err)) {
            rc = kd_cli_fail(&err);
        } else {
            printf("ok: arguments are valid for '%s'\n", check);
        }
        json_decref(args);
    } else if (list) {
        for (int i = 0; i < reg->count; i++) {
            const json_t *req = json_object_get(reg->tools[i].parameters, "required");
            char *r = req ? json_dumps(req, JSON_COMPACT) : strdup("[]");
            printf("%-24s required=%s  %s\n", reg->tools[i].name, r, reg->tools[i].description);
            free(r);
        }
    } else {
        printf("%s: %d tools, sha256 %s\n", path, reg->count, reg->sha256);
    }
    kd_registry_close(reg);
    return rc;
}
