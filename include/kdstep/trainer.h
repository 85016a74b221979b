/* The MPI data-parallel trainer: every rank reads its slice of each global batch from the HDF5
 * dataset, runs the student forward/backward with the combined loss (KD + CE + tool-selection +
 * JSON-validity + integration), averages gradients with bucketed MPI_Iallreduce overlapped with
 * backward, and steps AdamW. Checkpoints every N steps and on SIGTERM/SIGUSR1; --resume continues
 * from the latest one bit-exactly.
 */
#ifndef KDSTEP_TRAINER_H
#define KDSTEP_TRAINER_H

#include <mpi.h>
#include <stdint.h>

#include "kdstep/config.h"
#include "kdstep/error.h"

typedef struct kd_train_options {
    const char *data_dir;       /* dataset folder (or dataset.h5) */
    const char *out_dir;        /* RUN_DIR: checkpoints, metrics.jsonl, curves.png */
    const char *tokenizer_path; /* student tokenizer; its hash must match the dataset's */
    int resume;                 /* continue from the latest checkpoint in out_dir */
    const kd_config *cfg;       /* model.*, train.*, kd.*, process_supervision.* */
} kd_train_options;

typedef struct kd_train_result {
    int64_t steps_done;
    double final_loss;
    double heldout_loss;
    double heldout_tool_acc;
    int interrupted; /* stopped by SIGTERM/SIGUSR1 after writing a checkpoint */
    int64_t samples_truncated; /* samples longer than seq_len (their tail was cut) */
    int64_t samples_dropped;   /* samples whose prompt fills seq_len (no response token left) */
} kd_train_result;

/* Collective over comm. Returns KD_ERR_INTERRUPTED (after checkpointing) when signalled. */
int kd_train_run(const kd_train_options *opt, MPI_Comm comm, kd_train_result *res, kd_error *err);

/* What the SIGTERM/SIGUSR1 handler does: ask the running kd_train_run to checkpoint and stop at
 * the next step boundary (for embedding programs and tests). */
void kd_train_request_stop(int sig);

#endif
