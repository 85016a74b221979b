/* kdstep export: a dataset as the seed's JSONL records. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kdstep/dsview.h"
#include "kdstep/h5data.h"

static const char USAGE[] =
    "usage: kdstep export DIR --format jsonl -o FILE\n"
    "\n"
    "Writes one JSON line per sample in the seed's format: prompt, teacher_text, metadata, and, only\n"
    "where the span was found, tool_name_ids + tool_name_mask, gold_json_text_ids +\n"
    "mask_valid_json_tokens, tool_result_fields + integration_mask (ids under each mask, in order);\n"
    "also id and prompt_id.\n"
    "  --format jsonl   the only format (default)\n"
    "  -o FILE          output file, '-' for standard output (written atomically)\n";

int kd_cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"format", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *format = "jsonl", *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "export: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    /* DIR may come before or after the flags */
    const char *dir = NULL;
    if (optind < argc) dir = argv[optind++];
    while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "export: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "export: unexpected argument '%s'", argv[optind]);
    if (!dir) return kd_cli_usage_error(USAGE, "export: needs a dataset DIR");
    if (strcmp(format, "jsonl") != 0)
        return kd_cli_usage_error(USAGE, "export: --format '%s' is not supported (only jsonl)", format);
    if (!out) return kd_cli_usage_error(USAGE, "export: -o FILE is required");
    kd_error err;
    kd_dataset *ds = NULL;
    if (kd_dataset_open(&ds, dir, &err)) return kd_cli_fail(&err);
    FILE *f = stdout;
    char tmp[4200];
    if (strcmp(out, "-") != 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
        f = fopen(tmp, "w");
        if (!f) {
            kd_error_errno(&err, errno, "%s: cannot create", out);
            kd_dataset_close(ds);
            return kd_cli_fail(&err);
        }
    }
    int64_t n = 0;
    int rc = kd_dataset_export_jsonl(ds, f, &n, &err);
    kd_dataset_close(ds);
    if (f != stdout) {
        if (fclose(f) != 0 && !rc) rc = kd_error_errno(&err, errno, "%s: write failed", out);
        if (!rc && rename(tmp, out) != 0) rc = kd_error_errno(&err, errno, "cannot rename %s to %s", tmp, out);
        if (rc) unlink(tmp);
    }
    if (rc) return kd_cli_fail(&err);
    if (f != stdout) fprintf(stderr, "exported %lld samples to %s\n", (long long)n, out);
    return 0;
}
