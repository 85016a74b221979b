/* kdstep eval: decode held-out prompts with a student checkpoint and score its tool calls (MPI). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/evaluate.h"

static const char USAGE[] =
    "usage: kdstep eval --model CKPT --prompts FILE [--tools FILE] [--answers FILE] [--max-new-tokens N]\n"
    "                   [--temperature T] [--max-prompts N] [--out DIR] [--config FILE] [--set k=v]...\n"
    "\n"
    "Renders each prompt with the student's chat template and its tools, decodes with the KV cache\n"
    "(greedy unless --temperature > 0), stops at <|im_end|>/<|endoftext|> or N new tokens, and scores\n"
    "the raw outputs with BFCL's AST rules (as `kdstep score`). Writes DIR/predictions.jsonl\n"
    "({\"id\", \"text\"}), DIR/report.json, DIR/report.md and DIR/eval.json (decoding figures), and\n"
    "prints the report JSON. Run under mpirun to split the prompts over ranks; the outputs do not\n"
    "depend on the number of ranks.\n"
    "  --model CKPT        checkpoint folder: config.json, model.safetensors, tokenizer.json\n"
    "  --prompts FILE      prompt set (JSON Lines with ids; synthesized sets carry their answers in\n"
    "                      metadata.tool_calls; BFCL question files load as they are)\n"
    "  --tools FILE        tool registry for prompts without their own tools (also used for schema checks)\n"
    "  --answers FILE      answers (BFCL possible_answer or synthesizer records); default: the prompts\n"
    "  --max-new-tokens N  tokens decoded per prompt (eval.max_new_tokens, default 128)\n"
    "  --temperature T     0 = greedy (eval.temperature); sampling is seeded by eval.seed and the prompt index\n"
    "  --max-prompts N     only the first N prompt lines\n"
    "  --out DIR           output folder (default eval)\n"
    "  --config FILE       YAML config (eval.* keys)\n"
    "  --set K=V           override one key (repeatable)\n";

int kd_cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"prompts", required_argument, 0, 'p'},
                                         {"tools", required_argument, 0, 't'},
                                         {"answers", required_argument, 0, 'a'},
                                         {"max-new-tokens", required_argument, 0, 'n'},
                                         {"temperature", required_argument, 0, 'T'},
                                         {"max-prompts", required_argument, 0, 'P'},
                                         {"out", required_argument, 0, 'o'},
                                         {"config", required_argument, 0, 'c'},
                                         {"set", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kd_eval_options o = {0};
    const char *config = NULL;
    char *sets[260];
    int nsets = 0, c;
    o.out_dir = "eval";
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model_dir = optarg; break;
        case 'p': o.prompts_path = optarg; break;
        case 't': o.tools_path = optarg; break;
        case 'a': o.answers_path = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 'c': config = optarg; break;
        case 'n':
        case 'T': {
            /* through the config parser, so the ranges and messages are the config's */
            if (nsets == 256) return kd_cli_usage_error(USAGE, "eval: too many flags");
            size_t n = strlen(optarg) + 32;
            if (!(sets[nsets] = malloc(n))) return 1;
            snprintf(sets[nsets++], n, "eval.%s=%s", c == 'n' ? "max_new_tokens" : "temperature", optarg);
            break;
        }
        case 'P': {
            char *end;
            o.max_prompts = strtoll(optarg, &end, 10);
            if (*end || o.max_prompts <= 0)
                return kd_cli_usage_error(USAGE, "eval: --max-prompts wants a positive integer, not '%s'", optarg);
            break;
        }
        case 's':
            if (nsets == 256) return kd_cli_usage_error(USAGE, "eval: too many --set flags");
            sets[nsets++] = strdup(optarg);
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "eval: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "eval: unexpected argument '%s'", argv[optind]);
    if (!o.model_dir || !o.prompts_path) return kd_cli_usage_error(USAGE, "eval: --model and --prompts are required");
    kd_config cfg;
    kd_error err;
    int rc = kd_cli_load_config(&cfg, config, sets, nsets, &err);
    for (int i = 0; i < nsets; i++) free(sets[i]);
    if (rc) {
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    o.cfg = &cfg;
    int rank = 0, size = 1;
    if (kd_cli_mpi_init(&argc, &argv, &rank, &size) != 0) {
        kd_config_free(&cfg);
        kd_error_set(&err, KD_ERR_MPI, "MPI_Init failed");
        return kd_cli_fail(&err);
    }
    char *report = NULL;
    rc = kd_eval_run(&o, MPI_COMM_WORLD, &report, &err);
    int exit_code = 0;
    if (rc) exit_code = rank == 0 ? kd_cli_fail(&err) : 1;
    else if (rank == 0 && report) puts(report);
    free(report);
    kd_config_free(&cfg);
    kd_cli_mpi_finalize();
    return exit_code;
}
