/* kdstep inspect: summarize a dataset, or show one sample with its spans highlighted. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kdstep/dsview.h"
#include "kdstep/h5data.h"
#include "kdstep/tokenizer.h"

static const char USAGE[] =
    "usage: kdstep inspect DIR [--sample I] [--tokenizer-path DIR] [--color auto|always|never]\n"
    "\n"
    "Summarizes a dataset (DIR, its dataset.h5, or one shard file): samples, tokens, and mask coverage\n"
    "per kind. With --sample I, also shows sample I decoded, with tool-name, JSON and integration tokens\n"
    "in colour on a terminal and as [[tool:...]] [[json:...]] [[integration:...]] otherwise.\n"
    "  --sample I            0-based sample index (in dataset order, not prompt id)\n"
    "  --tokenizer-path DIR  tokenizer to decode with (default models/student/tokenizer; when it is\n"
    "                        absent, token ids are shown)\n"
    "  --color WHEN          auto (default: colour on a terminal), always, never\n";

int kd_cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {{"sample", required_argument, 0, 's'},
                                         {"tokenizer-path", required_argument, 0, 't'},
                                         {"color", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long long sample = -1;
    const char *tok_path = NULL, *color_when = "auto";
    int c;
    const char *dir = NULL;
    /* flags may come before or after DIR: parse, take one positional, parse on */
    for (;;) {
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 's': {
            char *end;
            errno = 0;
            sample = strtoll(optarg, &end, 10);
            if (errno || *end || end == optarg || sample < 0)
                return kd_cli_usage_error(USAGE, "inspect: --sample needs an index >= 0, got '%s'", optarg);
            break;
        }
        case 't': tok_path = optarg; break;
        case 'c': color_when = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "inspect: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) break;
    if (dir) return kd_cli_usage_error(USAGE, "inspect: unexpected argument '%s'", argv[optind]);
    dir = argv[optind++];
    }
    if (strcmp(color_when, "auto") && strcmp(color_when, "always") && strcmp(color_when, "never"))
        return kd_cli_usage_error(USAGE, "inspect: --color is auto, always or never, got '%s'", color_when);
    if (!dir) return kd_cli_usage_error(USAGE, "inspect: needs a dataset DIR");
    int color = strcmp(color_when, "always") == 0 || (strcmp(color_when, "auto") == 0 && isatty(STDOUT_FILENO));
    kd_error err;
    kd_dataset *ds = NULL;
    if (kd_dataset_open(&ds, dir, &err)) return kd_cli_fail(&err);
    kd_dataset_summary sum;
    if (kd_dataset_summarize(ds, &sum, &err)) {
        kd_dataset_close(ds);
        return kd_cli_fail(&err);
    }
    kd_dataset_summary_print(ds, &sum, stdout);
    int rc = 0;
    if (sample >= 0) {
        if (sample >= kd_dataset_count(ds)) {
            kd_error_set(&err, KD_ERR_INVALID, "inspect: --sample %lld, but %s holds %lld samples", sample,
                         kd_dataset_path(ds), (long long)kd_dataset_count(ds));
            kd_dataset_close(ds);
            return kd_cli_fail(&err);
        }
        kd_tokenizer *tok = NULL;
        const char *path = tok_path ? tok_path : "models/student/tokenizer";
        if (kd_tokenizer_open(&tok, path, &err)) {
            if (tok_path) {
                kd_dataset_close(ds);
                return kd_cli_fail(&err);
            }
            tok = NULL;
        } else if (strcmp(kd_tokenizer_sha256(tok), kd_dataset_get_info(ds)->tokenizer_sha256) != 0) {
            fprintf(stderr, "kdstep: warning: %s is not the tokenizer this dataset was made with (sha256 %.12s, "
                            "dataset %.12s); the text below may be wrong\n",
                    kd_tokenizer_path(tok), kd_tokenizer_sha256(tok), kd_dataset_get_info(ds)->tokenizer_sha256);
        }
        kd_batch b;
        if (kd_dataset_read(ds, sample, 1, KD_READ_TEXT, &b, &err)) {
            rc = kd_cli_fail(&err);
        } else {
            kd_sample s;
            kd_batch_sample(&b, 0, &s);
            fputc('\n', stdout);
            if (kd_sample_render(&s, tok, color, stdout, &err)) rc = kd_cli_fail(&err);
            kd_batch_free(&b);
        }
        kd_tokenizer_close(tok);
    }
    kd_dataset_close(ds);
    return rc;
}
