/* kdstep train: the MPI data-parallel trainer (logic in src/train/trainer.c). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/log.h"
#include "kdstep/trainer.h"

static const char USAGE[] =
    "usage: kdstep train --config FILE --train-data DIR [--out RUN_DIR] [--resume] [--set section.key=value]...\n"
    "                    [--tokenizer-path DIR]\n"
    "\n"
    "Trains the student on a generated dataset with the combined distillation loss, data-parallel over\n"
    "MPI (run it under mpirun -np N or srun). Writes RUN_DIR/metrics.jsonl, RUN_DIR/checkpoints/step-N/,\n"
    "RUN_DIR/final/ (a Hugging Face folder) and RUN_DIR/curves.png.\n"
    "  --config FILE          YAML config (sections model, train, kd, process_supervision)\n"
    "  --train-data DIR       dataset folder written by kdstep generate (or its dataset.h5)\n"
    "  --out RUN_DIR          run folder (default: runs/train)\n"
    "  --resume               continue from RUN_DIR/checkpoints/latest (bit-exact with the same ranks)\n"
    "  --set K=V              override one config key, e.g. --set train.steps=200 (repeatable)\n"
    "  --tokenizer-path DIR   the student tokenizer (tokenizer.json or its folder); default: model.path's,\n"
    "                         then the dataset folder's, then models/student/tokenizer. Its SHA-256\n"
    "                         must match the dataset's.\n"
    "\n"
    "SIGTERM or SIGUSR1 (Slurm: --signal=USR1@120) writes a checkpoint at the next step boundary and\n"
    "exits with status 75; rerun with --resume to continue.\n";

#define KD_EXIT_INTERRUPTED 75

int kd_cmd_train(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},   {"train-data", required_argument, 0, 'd'},
                                         {"out", required_argument, 0, 'o'},      {"resume", no_argument, 0, 'r'},
                                         {"set", required_argument, 0, 's'},      {"tokenizer-path", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    const char *config = NULL, *data = NULL, *out = "runs/train", *tok = NULL;
    char *sets[256];
    int nsets = 0, resume = 0, c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'r': resume = 1; break;
        case 't': tok = optarg; break;
        case 's':
            if (nsets == 256) return kd_cli_usage_error(USAGE, "too many --set flags");
            sets[nsets++] = optarg;
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "train: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "train: unexpected argument '%s'", argv[optind]);
    if (!data) return kd_cli_usage_error(USAGE, "train: --train-data DIR is required");
    kd_config cfg;
    kd_error err = {0};
    if (kd_cli_load_config(&cfg, config, sets, nsets, &err)) {
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    int rank = 0, size = 1;
    if (kd_cli_mpi_init(&argc, &argv, &rank, &size)) {
        kd_config_free(&cfg);
        kd_error_set(&err, KD_ERR_MPI, "train: MPI initialization failed");
        return kd_cli_fail(&err);
    }
    kd_train_options opt = {data, out, tok, resume, &cfg};
    kd_train_result res;
    int rc = kd_train_run(&opt, MPI_COMM_WORLD, &res, &err);
    int code = 0;
    if (rc == KD_ERR_INTERRUPTED) {
        if (rank == 0) KD_WARN("%s", err.msg);
        code = KD_EXIT_INTERRUPTED;
    } else if (rc) {
        /* every rank holds the agreed error (the failing rank named in it): rank 0 prints it */
        if (rank == 0) kd_cli_fail(&err);
        code = 1;
    } else if (rank == 0) {
        KD_INFO("train: done: %lld steps, loss %.4f, held-out loss %.4f, held-out tool-name accuracy %.3f; %s/final",
                (long long)res.steps_done, res.final_loss, res.heldout_loss, res.heldout_tool_acc, out);
    }
    kd_config_free(&cfg);
    kd_cli_mpi_finalize();
    return code;
}
