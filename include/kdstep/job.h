/* Job files: one YAML file describes a whole run (prompts or synthesizer settings, registry,
 * tokenizer, teacher, output folders and the training config), so that `kdstep run JOB.yaml`,
 * `jobs/quickstart.sh` and the Slurm scripts all read the same description.
 *
 *   job:        name, workdir (outputs go under it), and the launch shape slurm/submit.sh asks for:
 *               ranks (default 2), nodes, tasks_per_node, cpus_per_task (0 = not asked)
 *   prompts:    file (a prompt set; empty = synthesize), synth_count, synth_seed,
 *               heldout_file, heldout_count, heldout_seed, total,
 *               tools_per_prompt ("MIN-MAX": each synthesized prompt carries its own tools drawn
 *               from `tools`, the train pool; empty = the registry for every prompt),
 *               rename_tools (0..100: the share of training prompts whose tools get made-up
 *               names, kd_synth_options.rename_pct; held-out sets keep the real names),
 *               heldout_tools (a pool of tools kept out of training: eval split (b), its
 *               heldout_tools_count prompts synthesized with seed heldout_seed + 1),
 *               bfcl_dir (BFCL v3 folder: eval split (c) on simple, multiple, irrelevance and
 *               live_simple, skipped with a note when the folder is absent), bfcl_max (prompts per
 *               BFCL file, 0 = all)
 *   tools, tokenizer, config: paths (relative paths are taken from the current directory)
 *   overrides:  a list of "section.key=value" applied over `config`
 *   tokenizer_train: vocab_size (default 8192): `kdstep run` makes the tokenizer with it when the
 *               folder `tokenizer` names has no tokenizer.json (kd_tokenizer_make_student)
 *   onpolicy:   rounds (default 0), steps: after training, each round r regenerates the prompt set with
 *               generate.policy mixed (generate.student_share of it written by the latest checkpoint:
 *               train/final, then onpolicy-(r-1)/train/final) into onpolicy-r/dataset and trains `steps`
 *               steps from those weights on it into onpolicy-r/train; eval takes the last round's
 *               final/ (docs/onpolicy.md)
 *
 * Loading is strict like the config: unknown keys name file:line:column and the nearest key.
 */
#ifndef KDSTEP_JOB_H
#define KDSTEP_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/config.h"
#include "kdstep/error.h"

typedef struct kd_job {
    char path[KD_CFG_PATH];
    char name[KD_CFG_STR];
    char workdir[KD_CFG_PATH];
    int64_t ranks;
    int64_t nodes;          /* 0: not asked */
    int64_t tasks_per_node; /* 0: not asked; with nodes, replaces ranks */
    int64_t cpus_per_task;  /* 0: not asked */
    char prompts_file[KD_CFG_PATH];
    int64_t synth_count;
    int64_t synth_seed;
    char heldout_file[KD_CFG_PATH];
    int64_t heldout_count;
    int64_t heldout_seed;
    int64_t total;          /* cap on prompts used for generation; 0 = all */
    char tools_per_prompt[KD_CFG_STR]; /* "MIN-MAX" or "" */
    int64_t rename_tools;              /* 0..100: share of training prompts with made-up tool names */
    char heldout_tools[KD_CFG_PATH];
    int64_t heldout_tools_count;
    char bfcl_dir[KD_CFG_PATH];
    int64_t bfcl_max;
    char tools[KD_CFG_PATH];
    char tokenizer[KD_CFG_PATH];
    char config[KD_CFG_PATH];
    int64_t tokenizer_vocab_size;
    int64_t onpolicy_rounds; /* onpolicy.rounds: 0 = off */
    int64_t onpolicy_steps;  /* onpolicy.steps: train steps per round (0 = train.steps) */
    kd_string_list overrides;
} kd_job;

void kd_job_defaults(kd_job *job);
int kd_job_load_file(kd_job *job, const char *path, kd_error *err);
int kd_job_load_string(kd_job *job, const char *yaml, const char *name, kd_error *err);
void kd_job_free(kd_job *job);
/* The training/generation config the job describes: defaults, then `config`, then overrides. */
int kd_job_config(const kd_job *job, kd_config *cfg, kd_error *err);

/* The job's launch shape as sbatch options, one per line ("--nodes=2\n--ntasks-per-node=1\n" when
 * nodes and tasks_per_node are set, else "--ntasks=R\n" with "--nodes=N" when set; then
 * "--cpus-per-task=C" when set). Returns the length snprintf would write. */
int kd_job_sbatch_shape(const kd_job *job, char *out, size_t cap);

/* Paths of the stage outputs under workdir (buffers of KD_CFG_PATH bytes). */
void kd_job_path(const kd_job *job, const char *rel, char *out);

#endif
