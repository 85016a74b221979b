/* kdstep run: run a whole job file, stage by stage (generate, train, eval), skipping stages whose
 * output is complete and resuming partial ones. Runs under mpirun/srun; every stage is collective. */
#include <errno.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/dsview.h"
#include "kdstep/evaluate.h"
#include "kdstep/fsutil.h"
#include "kdstep/gen.h"
#include "kdstep/job.h"
#include "kdstep/log.h"
#include "kdstep/mpiutil.h"
#include "kdstep/progress.h"
#include "kdstep/registry.h"
#include "kdstep/synth.h"
#include "kdstep/tokenizer_corpus.h"
#include "kdstep/trainer.h"

static const char USAGE[] =
    "usage: kdstep run JOB.yaml [--stage generate|merge|train|onpolicy|eval|all] [--slice I/N]\n"
    "       kdstep run JOB.yaml --sbatch-shape\n"
    "\n"
    "Runs the job's stages in order (all = generate, train, the onpolicy rounds, eval). A stage whose output is complete is\n"
    "skipped; a partial one resumes. Run it under mpirun/srun for several ranks, e.g.\n"
    "  mpirun -np 2 kdstep run jobs/demo.yaml\n"
    "\n"
    "  --stage S     run one stage only (merge joins the slices of a job-array generation)\n"
    "  --slice I/N   generation slice for job arrays (prompt index % N == I)\n"
    "  --sbatch-shape  print the job's launch shape (job.ranks, nodes, tasks_per_node, cpus_per_task)\n"
    "                as sbatch options, one per line, and exit (slurm/submit.sh uses it)\n"
    "If the folder the job's `tokenizer` names has no tokenizer.json, rank 0 first makes it from the job's\n"
    "tokenizer_train section, as jobs/make-student-tokenizer.sh does.\n"
    "Exit status 75 means training stopped on a signal after writing a checkpoint (requeue to resume).\n";

#define EXIT_REQUEUE 75

static int done_marker(const kd_job *job, const char *rel) {
    char p[KD_CFG_PATH];
    kd_job_path(job, rel, p);
    return kd_path_exists(p);
}

static int write_marker(const kd_job *job, const char *rel, const char *text, kd_error *err) {
    char p[KD_CFG_PATH];
    kd_job_path(job, rel, p);
    return kd_write_file_atomic(p, text, strlen(text), err);
}

/* prompts.tools_per_prompt "MIN-MAX" (or "N"); "" = the registry regime. */
static int job_synth_options(const kd_job *job, kd_synth_options *o, kd_error *err) {
    o->tools_min = o->tools_max = o->rename_pct = 0;
    if (job->rename_tools && !job->tools_per_prompt[0])
        return kd_error_set(err, KD_ERR_INVALID, "%s: prompts.rename_tools needs prompts.tools_per_prompt (per-prompt tool sets)",
                            job->path);
    if (!job->tools_per_prompt[0]) return KD_OK;
    char tail = 0;
    int m = sscanf(job->tools_per_prompt, "%d-%d%c", &o->tools_min, &o->tools_max, &tail);
    if (m == 1) o->tools_max = o->tools_min;
    if ((m != 1 && m != 2) || o->tools_min < 1 || o->tools_max < o->tools_min || o->tools_max > 64)
        return kd_error_set(err, KD_ERR_INVALID, "%s: prompts.tools_per_prompt '%s': want MIN-MAX with 1 <= MIN <= MAX <= 64",
                            job->path, job->tools_per_prompt);
    return KD_OK;
}

/* Synthesize n prompts into path (temporary name, then rename: a crash leaves no half file). */
static int synth_file(const kd_registry *reg, const kd_synth_options *so, int64_t n, uint64_t seed, const char *path,
                      kd_error *err) {
    char tmp[KD_CFG_PATH + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return kd_error_errno(err, errno, "%s: cannot create", tmp);
    int rc = kd_synth_write_opts(reg, so, seed, n, f, err);
    if (fclose(f) != 0 && !rc) rc = kd_error_errno(err, errno, "%s: write failed", tmp);
    if (!rc && rename(tmp, path) != 0) rc = kd_error_errno(err, errno, "%s: cannot rename into place", path);
    return rc;
}

/* Rank 0 makes the synthesized prompt sets the job asks for. */
static int ensure_prompts(const kd_job *job, char *prompts, char *heldout, kd_error *err) {
    int rc = kd_mkdir_p(job->workdir, err);
    if (rc) return rc;
    if (job->prompts_file[0]) snprintf(prompts, KD_CFG_PATH, "%s", job->prompts_file);
    else kd_job_path(job, "prompts.jsonl", prompts);
    if (job->heldout_file[0]) snprintf(heldout, KD_CFG_PATH, "%s", job->heldout_file);
    else kd_job_path(job, "heldout.jsonl", heldout);
    kd_registry *reg = NULL;
    kd_synth_options so;
    if ((rc = job_synth_options(job, &so, err)) || (rc = kd_registry_open(&reg, err)) ||
        (rc = kd_registry_load_file(reg, job->tools, err))) {
        kd_registry_close(reg);
        return rc;
    }
    if (!job->prompts_file[0] && !kd_path_exists(prompts)) {
        KD_INFO("run: synthesizing %lld prompts (seed %lld) into %s", (long long)job->synth_count, (long long)job->synth_seed, prompts);
        kd_synth_options train_so = so; /* made-up names in the training set only: eval reads real ones */
        train_so.rename_pct = (int)job->rename_tools;
        rc = synth_file(reg, &train_so, job->synth_count, (uint64_t)job->synth_seed, prompts, err);
    }
    if (!rc && !job->heldout_file[0] && job->heldout_count > 0 && !kd_path_exists(heldout)) {
        KD_INFO("run: synthesizing %lld held-out prompts (seed %lld) into %s", (long long)job->heldout_count,
                (long long)job->heldout_seed, heldout);
        /* distinct ids from the training set: the synthesizer prefixes ids with the seed */
        rc = synth_file(reg, &so, job->heldout_count, (uint64_t)job->heldout_seed, heldout, err);
    }
    kd_registry_close(reg);
    char ht[KD_CFG_PATH];
    kd_job_path(job, "heldout_tools.jsonl", ht);
    if (!rc && job->heldout_tools[0] && job->heldout_tools_count > 0 && !kd_path_exists(ht)) {
        /* split (b): prompts over tools that no training prompt offers */
        reg = NULL;
        if (so.tools_max == 0) so.tools_min = so.tools_max = 4;
        KD_INFO("run: synthesizing %lld prompts over the held-out tools %s (seed %lld) into %s",
                (long long)job->heldout_tools_count, job->heldout_tools, (long long)job->heldout_seed + 1, ht);
        if (!(rc = kd_registry_open(&reg, err)) && !(rc = kd_registry_load_file(reg, job->heldout_tools, err)))
            rc = synth_file(reg, &so, job->heldout_tools_count, (uint64_t)job->heldout_seed + 1, ht, err);
        kd_registry_close(reg);
    }
    return rc;
}

static int bcast_rc(int rc, kd_error *err) { return kd_mpi_bcast_status(MPI_COMM_WORLD, 0, rc, err); }

/* Rank 0 makes the student tokenizer the job names when it is missing, from the job's
 * tokenizer_train section, as jobs/quickstart.sh does (jobs/make-student-tokenizer.sh). */
static int ensure_tokenizer(const kd_job *job, int rank, kd_error *err) {
    int rc = KD_OK;
    char path[KD_CFG_PATH + 32];
    snprintf(path, sizeof path, "%s/tokenizer.json", job->tokenizer);
    if (rank == 0 && !kd_path_exists(path)) {
        double t0 = kd_now_s();
        KD_INFO("run: %s is missing: making the student tokenizer (%lld ids, %d MB corpus over %s, seed %d; "
                "tokenizer_train in %s)", path, (long long)job->tokenizer_vocab_size, KD_STUDENT_CORPUS_MB, job->tools,
                KD_STUDENT_CORPUS_SEED, job->path);
        rc = kd_tokenizer_make_student(job->tokenizer, job->tools, (int)job->tokenizer_vocab_size, err);
        if (rc) kd_error_prefix(err, "run: making the tokenizer %s: ", job->tokenizer);
        else KD_INFO("run: wrote %s in %.1f s", path, kd_now_s() - t0);
    }
    return bcast_rc(rc, err);
}

static int stage_generate(const kd_job *job, const kd_config *cfg, int slice_index, int slice_count, int rank, kd_error *err) {
    char prompts[KD_CFG_PATH] = "", heldout[KD_CFG_PATH] = "", out[KD_CFG_PATH], marker[KD_CFG_PATH + 64];
    int rc = rank == 0 ? ensure_prompts(job, prompts, heldout, err) : KD_OK;
    if ((rc = bcast_rc(rc, err))) return rc;
    MPI_Bcast(prompts, KD_CFG_PATH, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (slice_count > 1) {
        char rel[128];
        snprintf(rel, sizeof rel, "dataset/slice-%d-of-%d", slice_index, slice_count);
        kd_job_path(job, rel, out);
    } else {
        kd_job_path(job, "dataset", out);
    }
    snprintf(marker, sizeof marker, "%s/COMPLETE", out);
    if (kd_path_exists(marker)) {
        if (rank == 0) KD_INFO("run: generate: %s is complete, skipping", out);
        return KD_OK;
    }
    kd_gen_options o = {0};
    o.prompts_path = prompts;
    o.out_dir = out;
    o.tools_path = job->tools;
    o.tokenizer_path = job->tokenizer;
    o.total = job->total;
    o.slice_index = slice_index;
    o.slice_count = slice_count;
    o.cfg = cfg;
    kd_gen_stats st;
    rc = kd_gen_run(&o, MPI_COMM_WORLD, &st, err);
    if (!rc && rank == 0) rc = kd_write_file_atomic(marker, "complete\n", 9, err);
    return bcast_rc(rc, err);
}

static int stage_merge(const kd_job *job, int rank, kd_error *err) {
    int rc = KD_OK;
    if (rank == 0 && !done_marker(job, "dataset/COMPLETE")) {
        char out[KD_CFG_PATH];
        kd_job_path(job, "dataset", out);
        /* every slice folder of the array */
        char **dirs = NULL;
        int n = 0;
        for (int count = 1; count <= 4096 && n == 0; count++) {
            char p[KD_CFG_PATH + 64];
            snprintf(p, sizeof p, "%s/slice-0-of-%d", out, count);
            if (!kd_is_dir(p)) continue;
            dirs = calloc((size_t)count, sizeof(char *));
            for (int i = 0; i < count; i++) {
                char q[KD_CFG_PATH + 64], m[KD_CFG_PATH + 80];
                snprintf(q, sizeof q, "%s/slice-%d-of-%d", out, i, count);
                snprintf(m, sizeof m, "%s/COMPLETE", q);
                if (!kd_path_exists(m)) rc = kd_error_set(err, KD_ERR_NOTFOUND, "merge: slice %s is missing or incomplete (rerun its array element)", q);
                dirs[n++] = strdup(q);
            }
        }
        if (!rc && n == 0) rc = kd_error_set(err, KD_ERR_NOTFOUND, "merge: no slice-*-of-N folders under %s", out);
        if (!rc) rc = kd_gen_merge(out, (const char *const *)dirs, n, err);
        if (!rc) rc = write_marker(job, "dataset/COMPLETE", "complete\n", err);
        for (int i = 0; i < n; i++) free(dirs[i]);
        free(dirs);
    }
    return bcast_rc(rc, err);
}

/* train.seq_len 0: the length that fits 99% of the dataset's samples whole (full context), the same
 * for training and eval. */
static int resolve_seq_len(const kd_job *job, const kd_config *cfg, kd_config *out, int rank, kd_error *err) {
    *out = *cfg; /* a shallow copy: owned strings stay with cfg */
    if (cfg->train.seq_len > 0) return KD_OK;
    char data[KD_CFG_PATH];
    kd_job_path(job, "dataset", data);
    int64_t T = 0;
    int rc = kd_dataset_fit_seq_len(data, &T, err);
    if (rc) return kd_error_prefix(err, "run: train.seq_len 0 (pick from the dataset)");
    out->train.seq_len = T;
    if (rank == 0) KD_INFO("run: train.seq_len 0: picked %lld, the p99 sample length of %s rounded up to 32", (long long)T, data);
    return KD_OK;
}

static int stage_train(const kd_job *job, const kd_config *cfg_in, int rank, int *interrupted, kd_error *err) {
    if (done_marker(job, "train/COMPLETE")) {
        if (rank == 0) KD_INFO("run: train: %s/train is complete, skipping", job->workdir);
        return KD_OK;
    }
    char data[KD_CFG_PATH], out[KD_CFG_PATH];
    kd_config cfg_v;
    const kd_config *cfg = &cfg_v;
    int rc0 = resolve_seq_len(job, cfg_in, &cfg_v, rank, err);
    if (rc0) return rc0;
    kd_job_path(job, "dataset", data);
    kd_job_path(job, "train", out);
    kd_train_options o = {0};
    o.data_dir = data;
    o.out_dir = out;
    o.tokenizer_path = job->tokenizer;
    o.resume = kd_is_dir(out);
    o.cfg = cfg;
    kd_train_result res;
    int rc = kd_train_run(&o, MPI_COMM_WORLD, &res, err);
    if (rc == KD_ERR_INTERRUPTED) {
        *interrupted = 1;
        return rc;
    }
    if (!rc && rank == 0) rc = write_marker(job, "train/COMPLETE", "complete\n", err);
    return bcast_rc(rc, err);
}

/* The model a stage after training uses: train/final, or the last on-policy round's final/. */
static void latest_model(const kd_job *job, int64_t rounds, char *out) {
    char rel[96];
    if (rounds > 0) snprintf(rel, sizeof rel, "onpolicy-%lld/train/final", (long long)rounds);
    else snprintf(rel, sizeof rel, "train/final");
    kd_job_path(job, rel, out);
}

/* On-policy round r (onpolicy.rounds): generate the prompt set again with generate.policy mixed, the
 * student being the latest checkpoint, into onpolicy-r/dataset, then train onpolicy.steps steps from
 * those weights on it into onpolicy-r/train. Each half is skipped when complete and resumes when
 * partial, like the stages above. */
static int stage_onpolicy_round(const kd_job *job, const kd_config *cfg_in, int64_t r, int rank, int *interrupted,
                                kd_error *err) {
    char rel[96], student[KD_CFG_PATH], data[KD_CFG_PATH], out[KD_CFG_PATH], marker[KD_CFG_PATH + 16];
    latest_model(job, r - 1, student);
    snprintf(rel, sizeof rel, "onpolicy-%lld/dataset", (long long)r);
    kd_job_path(job, rel, data);
    snprintf(rel, sizeof rel, "onpolicy-%lld/train", (long long)r);
    kd_job_path(job, rel, out);
    kd_config cfg;
    int rc = resolve_seq_len(job, cfg_in, &cfg, rank, err); /* a shallow copy: the strings stay with cfg_in */
    if (rc) return rc;
    snprintf(cfg.generate.policy, sizeof cfg.generate.policy, "mixed");
    snprintf(cfg.generate.student, sizeof cfg.generate.student, "%s", student);
    snprintf(marker, sizeof marker, "%s/COMPLETE", data);
    if (!kd_path_exists(marker)) {
        char prompts[KD_CFG_PATH] = "", heldout[KD_CFG_PATH] = "";
        rc = rank == 0 ? ensure_prompts(job, prompts, heldout, err) : KD_OK;
        if ((rc = bcast_rc(rc, err))) return rc;
        MPI_Bcast(prompts, KD_CFG_PATH, MPI_CHAR, 0, MPI_COMM_WORLD);
        if (rank == 0) KD_INFO("run: on-policy round %lld: generate with %s writing a share of %g", (long long)r, student,
                               cfg.generate.student_share);
        kd_gen_options g = {0};
        g.prompts_path = prompts;
        g.out_dir = data;
        g.tools_path = job->tools;
        g.tokenizer_path = job->tokenizer;
        g.total = job->total;
        g.cfg = &cfg;
        kd_gen_stats st;
        rc = kd_gen_run(&g, MPI_COMM_WORLD, &st, err);
        if (!rc && rank == 0) rc = kd_write_file_atomic(marker, "complete\n", 9, err);
        if ((rc = bcast_rc(rc, err))) return rc;
    }
    snprintf(marker, sizeof marker, "%s/COMPLETE", out);
    if (kd_path_exists(marker)) return KD_OK;
    snprintf(cfg.model.init, sizeof cfg.model.init, "pretrained");
    snprintf(cfg.model.path, sizeof cfg.model.path, "%s", student);
    if (job->onpolicy_steps > 0) cfg.train.steps = job->onpolicy_steps;
    kd_train_options o = {0};
    o.data_dir = data;
    o.out_dir = out;
    o.tokenizer_path = job->tokenizer;
    o.resume = kd_is_dir(out);
    o.cfg = &cfg;
    kd_train_result res;
    rc = kd_train_run(&o, MPI_COMM_WORLD, &res, err);
    if (rc == KD_ERR_INTERRUPTED) {
        *interrupted = 1;
        return rc;
    }
    if (!rc && rank == 0) rc = kd_write_file_atomic(marker, "complete\n", 9, err);
    return bcast_rc(rc, err);
}

/* The eval splits of a job: (b) held-out tools and (c) BFCL into eval/<split>/, then (a) held-out
 * prompts over the train tools into eval/ itself (its report.json is the stage's done marker). */
typedef struct eval_split {
    char name[64];
    char prompts[KD_CFG_PATH], answers[KD_CFG_PATH], out[KD_CFG_PATH];
    const char *tools;
    int64_t max;
} eval_split;

static const char *BFCL_SETS[] = {"simple", "multiple", "irrelevance", "live_simple"};

static int eval_splits(const kd_job *job, eval_split *sp, int rank) {
    int n = 0;
    if (job->heldout_tools[0] && job->heldout_tools_count > 0) {
        eval_split *e = &sp[n++];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "b_heldout_tools");
        kd_job_path(job, "heldout_tools.jsonl", e->prompts);
        kd_job_path(job, "eval/b_heldout_tools", e->out);
    }
    if (job->bfcl_dir[0] && !kd_is_dir(job->bfcl_dir)) {
        if (rank == 0) KD_WARN("run: eval split (c): %s is not here; BFCL sets skipped", job->bfcl_dir);
    } else if (job->bfcl_dir[0]) {
        for (int k = 0; k < 4; k++) {
            eval_split *e = &sp[n++];
            memset(e, 0, sizeof *e);
            snprintf(e->name, sizeof e->name, "c_bfcl_%s", BFCL_SETS[k]);
            snprintf(e->prompts, sizeof e->prompts, "%.3000s/BFCL_v3_%s.json", job->bfcl_dir, BFCL_SETS[k]);
            snprintf(e->answers, sizeof e->answers, "%.3000s/possible_answer/BFCL_v3_%s.json", job->bfcl_dir, BFCL_SETS[k]);
            if (!kd_path_exists(e->answers)) e->answers[0] = 0; /* irrelevance: no call is the answer */
            char rel[96];
            snprintf(rel, sizeof rel, "eval/c_bfcl_%s", BFCL_SETS[k]);
            kd_job_path(job, rel, e->out);
            e->max = job->bfcl_max;
        }
    }
    eval_split *a = &sp[n++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", job->tools_per_prompt[0] ? "a_train_tools" : "heldout");
    if (job->heldout_file[0]) snprintf(a->prompts, sizeof a->prompts, "%s", job->heldout_file);
    else kd_job_path(job, "heldout.jsonl", a->prompts);
    kd_job_path(job, "eval", a->out);
    a->tools = job->tools_per_prompt[0] ? NULL : job->tools; /* own tools: the scorer reads them by id */
    return n;
}

static void cell(FILE *f, const json_t *rep, const char *key) {
    const json_t *v = json_object_get(rep, key);
    if (json_is_number(v)) fprintf(f, " %.1f%% |", 100 * json_number_value(v));
    else fprintf(f, " – |");
}

/* eval/splits.md and "splits" in eval/report.json: every split side by side. */
static int combine_splits(const kd_job *job, const eval_split *sp, int n, kd_error *err) {
    char path[KD_CFG_PATH + 32], md[KD_CFG_PATH];
    kd_job_path(job, "eval/splits.md", md);
    FILE *f = fopen(md, "w");
    if (!f) return kd_error_errno(err, errno, "%s: cannot create", md);
    fprintf(f, "| split | prompts | tool name | JSON valid | schema valid | AST | no call |\n|---|---:|---:|---:|---:|---:|---:|\n");
    json_t *all = json_object();
    for (int i = n - 1; i >= 0; i--) { /* (a) first */
        snprintf(path, sizeof path, "%s/report.json", sp[i].out);
        json_t *rep = json_load_file(path, 0, NULL);
        if (!rep) continue;
        fprintf(f, "| %s | %lld |", sp[i].name, (long long)json_integer_value(json_object_get(rep, "count")));
        static const char *keys[] = {"tool_name_accuracy", "json_validity", "schema_validity", "ast_accuracy", "no_call_accuracy"};
        for (int k = 0; k < 5; k++) cell(f, rep, keys[k]);
        fprintf(f, "\n");
        json_t *brief = json_object();
        for (int k = 0; k < 5; k++) json_object_set(brief, keys[k], json_object_get(rep, keys[k]));
        json_object_set(brief, "count", json_object_get(rep, "count"));
        json_object_set_new(all, sp[i].name, brief);
        json_decref(rep);
    }
    int bad = fclose(f) != 0;
    snprintf(path, sizeof path, "%s/report.json", sp[n - 1].out);
    json_t *main_rep = json_load_file(path, 0, NULL);
    if (main_rep) {
        json_object_set(main_rep, "splits", all);
        char tmp[KD_CFG_PATH + 48];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        bad |= json_dump_file(main_rep, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || rename(tmp, path) != 0;
        json_decref(main_rep);
    }
    json_decref(all);
    if (bad) return kd_error_errno(err, errno, "%s: cannot write the split reports", md);
    return KD_OK;
}

static int stage_eval(const kd_job *job, const kd_config *cfg_in, int rank, kd_error *err) {
    if (done_marker(job, "eval/report.json")) {
        if (rank == 0) KD_INFO("run: eval: %s/eval/report.json exists, skipping", job->workdir);
        return KD_OK;
    }
    kd_config cfg_v;
    const kd_config *cfg = &cfg_v;
    int rc = resolve_seq_len(job, cfg_in, &cfg_v, rank, err);
    if (rc) return rc;
    char model[KD_CFG_PATH];
    latest_model(job, job->onpolicy_rounds, model);
    eval_split sp[8];
    int n = eval_splits(job, sp, rank);
    for (int i = 0; i < n && !rc; i++) {
        char marker[KD_CFG_PATH + 16];
        snprintf(marker, sizeof marker, "%s/report.json", sp[i].out);
        if (kd_path_exists(marker)) continue;
        if (rank == 0) KD_INFO("run: eval split %s: %s", sp[i].name, sp[i].prompts);
        kd_eval_options o = {0};
        o.model_dir = model;
        o.prompts_path = sp[i].prompts;
        o.answers_path = sp[i].answers[0] ? sp[i].answers : NULL;
        o.tools_path = sp[i].tools;
        o.out_dir = sp[i].out;
        o.max_prompts = sp[i].max;
        o.cfg = cfg;
        char *report = NULL;
        rc = kd_eval_run(&o, MPI_COMM_WORLD, &report, err);
        free(report);
    }
    if (!rc && rank == 0) rc = combine_splits(job, sp, n, err);
    return bcast_rc(rc, err);
}

int kd_cmd_run(int argc, char **argv) {
    static const struct option opts[] = {{"stage", required_argument, 0, 's'}, {"slice", required_argument, 0, 'l'},
                                         {"sbatch-shape", no_argument, 0, 'p'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *stage = "all";
    int slice_index = 0, slice_count = 0, shape = 0, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) { /* options may follow the job file */
        switch (c) {
        case 's': stage = optarg; break;
        case 'l':
            if (sscanf(optarg, "%d/%d", &slice_index, &slice_count) != 2 || slice_count < 1 || slice_index < 0 || slice_index >= slice_count)
                return kd_cli_usage_error(USAGE, "run: --slice expects I/N with 0 <= I < N, got '%s'", optarg);
            break;
        case 'p': shape = 1; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "run: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return kd_cli_usage_error(USAGE, "run: expected one job file");
    static const char *stages[] = {"generate", "merge", "train", "onpolicy", "eval", "all"};
    int known = 0;
    for (int i = 0; i < 6; i++) known |= strcmp(stage, stages[i]) == 0;
    if (!known) return kd_cli_usage_error(USAGE, "run: unknown stage '%s'", stage);

    kd_job job;
    kd_config cfg;
    kd_error err;
    kd_job_defaults(&job);
    kd_config_defaults(&cfg);
    int rc = kd_job_load_file(&job, argv[optind], &err);
    if (!rc) {
        kd_config_free(&cfg);
        rc = kd_job_config(&job, &cfg, &err);
    }
    if (rc) {
        kd_job_free(&job);
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    if (shape) { /* no MPI: submit.sh runs this on the login node */
        char text[256];
        kd_job_sbatch_shape(&job, text, sizeof text);
        fputs(text, stdout);
        kd_job_free(&job);
        kd_config_free(&cfg);
        return 0;
    }
    int rank, size;
    if (kd_cli_mpi_init(&argc, &argv, &rank, &size) != 0) {
        kd_error_set(&err, KD_ERR_MPI, "MPI_Init failed");
        return kd_cli_fail(&err);
    }
    /* A preemption signal outside training (Slurm's USR1 can land while a stage is finishing) must not
     * kill the job: the trainer installs its own handler while it runs and restores this one. */
    signal(SIGUSR1, SIG_IGN);
    int all = strcmp(stage, "all") == 0, interrupted = 0;
    if (strcmp(stage, "merge") != 0) rc = ensure_tokenizer(&job, rank, &err);
    if (!rc && (all || strcmp(stage, "generate") == 0)) rc = stage_generate(&job, &cfg, slice_index, slice_count, rank, &err);
    if (!rc && strcmp(stage, "merge") == 0) rc = stage_merge(&job, rank, &err);
    if (!rc && (all || strcmp(stage, "train") == 0)) rc = stage_train(&job, &cfg, rank, &interrupted, &err);
    for (int64_t r = 1; !rc && r <= job.onpolicy_rounds && (all || strcmp(stage, "onpolicy") == 0); r++)
        rc = stage_onpolicy_round(&job, &cfg, r, rank, &interrupted, &err);
    if (!rc && (all || strcmp(stage, "eval") == 0)) rc = stage_eval(&job, &cfg, rank, &err);
    if (rc && rank == 0 && !interrupted) kd_cli_fail(&err);
    if (interrupted && rank == 0) KD_INFO("run: training stopped on a signal after writing a checkpoint; rerun to resume");
    kd_job_free(&job);
    kd_config_free(&cfg);
    kd_cli_mpi_finalize();
    return interrupted ? EXIT_REQUEUE : rc ? 1 : 0;
}
