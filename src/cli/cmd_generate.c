/* kdstep generate: parse flags, start MPI, hand over to kd_gen_run (src/gen/gen.c). */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/gen.h"
#include "kdstep/log.h"

static const char USAGE[] =
    "usage: kdstep generate --prompts FILE --out DIR [--tools FILE] [--teacher stub|URL] [--model NAME]\n"
    "                       [--total N] [--tokenizer-path DIR] [--no-process-supervision] [--config FILE]\n"
    "                       [--set section.key=value]... [--strict] [--force] [--slice I/N]\n"
    "                       [--policy teacher|student|mixed] [--student CKPT]\n"
    "       kdstep generate --merge --out DIR SLICE_DIR...\n"
    "\n"
    "Ask the teacher about every prompt, extract process-step targets, and write an HDF5 dataset.\n"
    "Runs under mpirun/srun at any rank count (rank 0 coordinates; alone it does the work itself).\n"
    "Running it again on the same --out continues where it stopped.\n"
    "\n"
    "  --prompts FILE             JSON Lines prompt set (`prompt` or chat `messages`; BFCL files as they are)\n"
    "  --out DIR                  the dataset folder\n"
    "  --tools FILE               tool registry (default configs/tools.json); per-prompt tools take precedence\n"
    "  --teacher stub|URL         'stub' (built-in) or an OpenAI-compatible base URL (sets teacher.url)\n"
    "  --model NAME               model name sent to the endpoint (sets teacher.model)\n"
    "  --total N                  use at most the first N prompts\n"
    "  --tokenizer-path DIR       student tokenizer (default models/student/tokenizer)\n"
    "  --no-process-supervision   write only ids, loss_mask and teacher top-k (no span masks)\n"
    "  --config FILE              YAML config (configs/process_supervision.yaml)\n"
    "  --set K=V                  override a config key (repeatable)\n"
    "  --strict                   a bad prompt line is fatal instead of recorded in failures.jsonl\n"
    "  --force                    delete DIR first and start over\n"
    "  --slice I/N                take prompts whose index % N == I (Slurm job arrays)\n"
    "  --policy P                 who writes the assistant turns: teacher, student or mixed (sets generate.policy)\n"
    "  --student CKPT             the student checkpoint folder that writes them (sets generate.student)\n"
    "  --merge                    join finished slice folders into one dataset in --out\n";

int kd_cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"prompts", required_argument, 0, 'p'},       {"out", required_argument, 0, 'o'},
        {"tools", required_argument, 0, 't'},         {"teacher", required_argument, 0, 'T'},
        {"model", required_argument, 0, 'm'},         {"total", required_argument, 0, 'n'},
        {"tokenizer-path", required_argument, 0, 'k'}, {"no-process-supervision", no_argument, 0, 'N'},
        {"config", required_argument, 0, 'c'},        {"set", required_argument, 0, 's'},
        {"strict", no_argument, 0, 'S'},              {"force", no_argument, 0, 'f'},
        {"slice", required_argument, 0, 'l'},         {"help", no_argument, 0, 'h'},
        {"merge", no_argument, 0, 'M'},               {"policy", required_argument, 0, 'P'},
        {"student", required_argument, 0, 'U'},
        {0, 0, 0, 0}};
    kd_gen_options o = {0};
    o.tools_path = "configs/tools.json";
    o.tokenizer_path = "models/student/tokenizer";
    const char *config = NULL, *teacher = NULL, *model = NULL, *policy = NULL, *student = NULL;
    char *sets[256];
    int nsets = 0, nops = 0, strict = 0, merge = 0, c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'p': o.prompts_path = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 't': o.tools_path = optarg; break;
        case 'T': teacher = optarg; break;
        case 'm': model = optarg; break;
        case 'n': {
            char *end;
            o.total = strtoll(optarg, &end, 10);
            if (*end || o.total < 0) return kd_cli_usage_error(USAGE, "generate: --total expects a count, got '%s'", optarg);
            break;
        }
        case 'k': o.tokenizer_path = optarg; break;
        case 'N': nops = 1; break;
        case 'c': config = optarg; break;
        case 's':
            if (nsets == 256) return kd_cli_usage_error(USAGE, "generate: too many --set flags");
            sets[nsets++] = optarg;
            break;
        case 'S': strict = 1; break;
        case 'f': o.force = 1; break;
        case 'l':
            if (sscanf(optarg, "%d/%d", &o.slice_index, &o.slice_count) != 2 || o.slice_count < 1 || o.slice_index < 0 ||
                o.slice_index >= o.slice_count)
                return kd_cli_usage_error(USAGE, "generate: --slice expects I/N with 0 <= I < N, got '%s'", optarg);
            break;
        case 'M': merge = 1; break;
        case 'P': policy = optarg; break;
        case 'U': student = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "generate: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (merge) {
        if (!o.out_dir || optind >= argc) return kd_cli_usage_error(USAGE, "generate: --merge needs --out DIR and slice folders");
        kd_error err;
        if (kd_gen_merge(o.out_dir, (const char *const *)argv + optind, argc - optind, &err)) return kd_cli_fail(&err);
        return 0;
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "generate: unexpected argument '%s'", argv[optind]);
    if (!o.prompts_path || !o.out_dir) return kd_cli_usage_error(USAGE, "generate: --prompts and --out are required");

    kd_config cfg;
    kd_error err;
    int rc = kd_cli_load_config(&cfg, config, sets, nsets, &err);
    if (rc) {
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    if (teacher) snprintf(cfg.teacher.url, sizeof cfg.teacher.url, "%s", teacher);
    if (model) snprintf(cfg.teacher.model, sizeof cfg.teacher.model, "%s", model);
    if (nops) cfg.process_supervision.enabled = 0;
    if (policy) {
        if (strcmp(policy, "teacher") && strcmp(policy, "student") && strcmp(policy, "mixed")) {
            kd_config_free(&cfg);
            return kd_cli_usage_error(USAGE, "generate: --policy expects teacher, student or mixed, got '%s'", policy);
        }
        snprintf(cfg.generate.policy, sizeof cfg.generate.policy, "%s", policy);
    }
    if (student) {
        if (strlen(student) >= sizeof cfg.generate.student) {
            kd_config_free(&cfg);
            return kd_cli_usage_error(USAGE, "generate: --student path is longer than %zu bytes", sizeof cfg.generate.student - 1);
        }
        snprintf(cfg.generate.student, sizeof cfg.generate.student, "%s", student);
    }
    if (strict) cfg.generate.strict = 1;
    o.cfg = &cfg;

    int rank, size;
    if (kd_cli_mpi_init(&argc, &argv, &rank, &size) != 0) {
        kd_config_free(&cfg);
        kd_error_set(&err, KD_ERR_MPI, "MPI_Init failed");
        return kd_cli_fail(&err);
    }
    kd_gen_stats st;
    rc = kd_gen_run(&o, MPI_COMM_WORLD, &st, &err);
    if (rc == KD_OK && rank == 0)
        KD_INFO("generate: %lld samples and %lld failures in %.1f s (%lld prompts were already done); see %s/stats.json",
                (long long)st.samples, (long long)st.failures, st.wall_s, (long long)st.already_done, o.out_dir);
    if (rc && rank == 0) kd_cli_fail(&err);
    kd_config_free(&cfg);
    kd_cli_mpi_finalize();
    return rc ? 1 : 0;
}
