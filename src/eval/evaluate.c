/* kd_eval_run: decode held-out prompts with a student checkpoint and score its tool calls.
 *
 * Every rank opens the checkpoint and reads the whole prompt set (one line at a time) but answers
 * only the prompts whose index is its rank modulo the world size, so each rank's decoding is the
 * same whatever the split: the sampler of prompt i is seeded from (eval.seed, i). The raw outputs
 * are gathered on rank 0 in prompt order, written as predictions.jsonl and scored from that file
 * exactly as `kdstep score` would, so report.json is what re-scoring the predictions gives.
 */
#include "kdstep/evaluate.h"
#include "kdstep/window.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/checkpoint.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/log.h"
#include "kdstep/mpiutil.h"
#include "kdstep/progress.h"
#include "kdstep/prompts.h"
#include "kdstep/registry.h"
#include "kdstep/runtime.h"
#include "kdstep/score.h"
#include "kdstep/student.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return KD_ERR_NOMEM;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return KD_OK;
}

/* This rank's share of the predictions: one JSON line each, with its prompt index. */
typedef struct shard {
    sbuf text;
    int64_t *index;
    int *len;
    int n, cap;
} shard;

static int shard_add(shard *s, int64_t index, const char *line, size_t n) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        int64_t *ix = kd_reallocarray(s->index, (size_t)cap, sizeof *ix);
        if (!ix) return KD_ERR_NOMEM;
        s->index = ix;
        int *ln = kd_reallocarray(s->len, (size_t)cap, sizeof *ln);
        if (!ln) return KD_ERR_NOMEM;
        s->len = ln;
        s->cap = cap;
    }
    if (sb_add(&s->text, line, n)) return KD_ERR_NOMEM;
    s->index[s->n] = index;
    s->len[s->n] = (int)n;
    s->n++;
    return KD_OK;
}

static void shard_free(shard *s) {
    free(s->text.p);
    free(s->index);
    free(s->len);
}

typedef struct totals {
    int64_t prompts, prompt_tokens, reused_tokens, new_tokens, stopped, too_long, cut, guided_steps;
} totals;
#define N_TOTALS 8

/* A prompt of this rank's share waiting for its batch. */
typedef struct pending {
    int64_t index, line;
    char *id;
    int32_t *ids;
    int n_ids, cut;
    kd_sampler smp;
    kd_tool_guide *guide; /* eval.guide: the prompt's own tools, or NULL */
} pending;

typedef struct decode_state {
    const kd_eval_options *opt;
    kd_student *student;
    json_t *reg_tools;   /* the --tools registry as an OpenAI tools array, or NULL */
    int any_prompt_tools; /* some prompt carries its own tools (the scorer then reads them by id) */
    int guide;            /* eval.guide as a kd_guide_mode */
    totals t;
    double seconds;
    shard out;
    pending *wait; /* [eval.batch] */
    kd_student_job *jobs;
    int32_t *outs; /* [eval.batch, max_new_tokens] */
    int n_wait;
    FILE *dump_ids; /* KDSTEP_EVAL_PROMPT_IDS (tests/bench/decode.sh) */
} decode_state;

/* Render and encode a prompt, seed its sampler, and queue it for the next batch. */
static int queue_prompt(decode_state *d, const kd_prompt *p, const char *prompts_path, kd_error *err) {
    const kd_config *cfg = d->opt->cfg;
    json_t *tools = NULL;
    int rc = KD_OK;
    if (p->tools && json_array_size(p->tools) > 0) {
        /* normalized the way the generation job does (BFCL function lists become OpenAI tools) */
        char src[1200];
        snprintf(src, sizeof src, "%s:%lld: tools", prompts_path, (long long)p->line);
        kd_registry *reg = NULL;
        if ((rc = kd_registry_from_json(&reg, p->tools, src, err))) return rc;
        tools = kd_registry_to_openai(reg);
        kd_registry_close(reg);
    } else if (d->reg_tools) {
        tools = json_incref(d->reg_tools);
    }
    pending *w = &d->wait[d->n_wait];
    memset(w, 0, sizeof *w);
    w->smp = (kd_sampler){.temperature = (float)cfg->eval.temperature, .top_p = (float)cfg->eval.top_p};
    uint64_t seed = (uint64_t)cfg->eval.seed ^ ((uint64_t)p->index * 0x9E3779B97F4A7C15ull);
    w->smp.rng = kd_splitmix64(&seed);
    w->index = p->index;
    w->line = p->line;
    rc = kd_student_prompt_ids(d->student, p->messages, tools, &w->ids, &w->n_ids, &w->cut, err);
    if (!rc && d->guide > 0 && tools && json_array_size(tools) > 0)
        rc = kd_tool_guide_open(&w->guide, d->student->tok, tools, d->guide, err);
    json_decref(tools);
    if (!rc && d->dump_ids) { /* KDSTEP_EVAL_PROMPT_IDS: the token ids decoded after, for outside benches */
        fprintf(d->dump_ids, "{\"index\": %lld, \"ids\": [", (long long)p->index);
        for (int i = 0; i < w->n_ids; i++) fprintf(d->dump_ids, i ? ",%d" : "%d", w->ids[i]);
        fprintf(d->dump_ids, "]}\n");
    }
    if (!rc && !(w->id = strdup(p->id))) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    if (rc) {
        free(w->ids);
        free(w->id);
        kd_tool_guide_close(w->guide);
        return kd_error_prefix(err, "%s:%lld (id %s): ", prompts_path, (long long)p->line, p->id);
    }
    d->n_wait++;
    return KD_OK;
}

/* One answered prompt: its totals and its prediction line. */
static int record_answer(decode_state *d, const pending *w, const kd_student_job *jb, const char *prompts_path, kd_error *err) {
    const kd_student_stats *st = &jb->st;
    char *text = NULL;
    int rc = kd_student_answer_text(d->student, jb->out, jb->n_out, st->stopped, &text, err);
    if (rc) return kd_error_prefix(err, "%s:%lld (id %s): ", prompts_path, (long long)w->line, w->id);
    if (st->truncated)
        KD_WARN("eval: %s:%lld (id %s): the prompt is %d tokens, more than the model's max_position_embeddings; "
                "its prediction is empty",
                prompts_path, (long long)w->line, w->id, st->prompt_tokens);
    d->t.prompts++;
    d->t.prompt_tokens += st->prompt_tokens;
    d->t.reused_tokens += st->reused_tokens;
    d->t.new_tokens += st->new_tokens;
    d->t.stopped += st->stopped;
    d->t.too_long += st->truncated;
    d->t.cut += w->cut > 0;
    json_t *rec = json_pack("{s:s, s:s}", "id", w->id, "text", text ? text : "");
    free(text);
    char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!line) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps leaves room: the NUL becomes the newline, never read as a string */
    rc = shard_add(&d->out, w->index, line, n + 1);
    free(line);
    return rc ? kd_error_set(err, KD_ERR_NOMEM, "out of memory") : KD_OK;
}

/* Decode the queued prompts together and record their answers in prompt order. */
static int flush_batch(decode_state *d, const char *prompts_path, kd_error *err) {
    int max_new = (int)d->opt->cfg->eval.max_new_tokens, rc = KD_OK;
    for (int i = 0; i < d->n_wait; i++)
        d->jobs[i] = (kd_student_job){.prompt = d->wait[i].ids, .n_prompt = d->wait[i].n_ids, .max_new = max_new,
                                      .sampler = &d->wait[i].smp, .out = d->outs + (size_t)i * max_new,
                                      .guide = d->wait[i].guide};
    double t0 = kd_now_s();
    if (d->n_wait > 0) rc = kd_student_generate_batch(d->student, d->jobs, d->n_wait, err);
    d->seconds += kd_now_s() - t0;
    if (rc) kd_error_prefix(err, "%s: prompts from line %lld: ", prompts_path, (long long)d->wait[0].line);
    for (int i = 0; i < d->n_wait && !rc; i++) rc = record_answer(d, &d->wait[i], &d->jobs[i], prompts_path, err);
    for (int i = 0; i < d->n_wait; i++) {
        if (d->wait[i].guide) d->t.guided_steps += d->wait[i].guide->masked_steps;
        free(d->wait[i].ids);
        free(d->wait[i].id);
        kd_tool_guide_close(d->wait[i].guide);
    }
    d->n_wait = 0;
    return rc;
}

/* Read the prompts; answer this rank's share. Every rank sees every line, so a bad line stops all. */
static int decode_share(decode_state *d, int rank, int size, kd_error *err) {
    const kd_eval_options *opt = d->opt;
    kd_prompt_reader *r = NULL;
    int rc = kd_prompts_open(&r, opt->prompts_path, err);
    if (rc) return rc;
    int64_t lines = 0;
    kd_error ignore;
    if (kd_prompts_count_lines(opt->prompts_path, &lines, &ignore)) lines = 0;
    if (opt->max_prompts > 0 && lines > opt->max_prompts) lines = opt->max_prompts;
    kd_progress prog;
    kd_progress_open(&prog, "eval", rank == 0 ? (lines + size - 1) / size : 0, "prompts");
    prog.enabled = prog.enabled && rank == 0;
    kd_prompt p;
    memset(&p, 0, sizeof p);
    int got;
    /* kd_prompts_next zeroes the record without freeing it: each one is cleared here */
    while ((got = kd_prompts_next(r, &p, err)) == 1) {
        if (opt->max_prompts > 0 && p.index >= opt->max_prompts) break;
        if (p.status != KD_OK) {
            rc = kd_error_set(err, p.status, "%s:%lld: %s (eval needs every prompt line to parse)", opt->prompts_path,
                              (long long)p.line, p.reason);
            break;
        }
        if (!p.id || !p.id[0]) {
            rc = kd_error_set(err, KD_ERR_INVALID,
                              "%s:%lld: the prompt has no \"id\" (eval matches predictions to answers by id)",
                              opt->prompts_path, (long long)p.line);
            break;
        }
        if (p.tools && json_array_size(p.tools) > 0) d->any_prompt_tools = 1;
        if (p.index % size == rank) {
            if ((rc = queue_prompt(d, &p, opt->prompts_path, err))) break;
            if (d->n_wait < (int)opt->cfg->eval.batch) {
                kd_prompt_clear(&p);
                continue;
            }
            if ((rc = flush_batch(d, opt->prompts_path, err))) break;
            char extra[96];
            snprintf(extra, sizeof extra, "%.1f tok/s", d->seconds > 0 ? (double)d->t.new_tokens / d->seconds : 0.0);
            kd_progress_update(&prog, d->t.prompts, extra);
        }
        kd_prompt_clear(&p);
    }
    if (got < 0) rc = -got;
    if (!rc && (rc = flush_batch(d, opt->prompts_path, err)) == KD_OK) {
        char extra[96];
        snprintf(extra, sizeof extra, "%.1f tok/s", d->seconds > 0 ? (double)d->t.new_tokens / d->seconds : 0.0);
        kd_progress_update(&prog, d->t.prompts, extra);
    }
    for (int i = 0; i < d->n_wait; i++) { /* queued when an error stopped the loop */
        free(d->wait[i].ids);
        free(d->wait[i].id);
    }
    d->n_wait = 0;
    kd_prompt_clear(&p);
    kd_prompts_close(r);
    char extra[96];
    snprintf(extra, sizeof extra, "%lld tokens generated", (long long)d->t.new_tokens);
    kd_progress_close(&prog, extra);
    return rc;
}

typedef struct pred_ref {
    int64_t index;
    const char *line;
    int len;
} pred_ref;

static int cmp_pred(const void *a, const void *b) {
    int64_t x = ((const pred_ref *)a)->index, y = ((const pred_ref *)b)->index;
    return x < y ? -1 : x > y;
}

/* Rank 0 receives every rank's lines and returns them joined in prompt order (malloc'd). */
static int gather_predictions(const shard *s, MPI_Comm comm, char **joined, size_t *joined_len, int64_t *count,
                              kd_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int n = s->n, bytes = (int)s->text.len;
    int *ns = NULL, *nbytes = NULL, *ndispl = NULL, *bdispl = NULL;
    if (rank == 0) {
        ns = calloc((size_t)size, sizeof(int));
        nbytes = calloc((size_t)size, sizeof(int));
        ndispl = calloc((size_t)size, sizeof(int));
        bdispl = calloc((size_t)size, sizeof(int));
    }
    MPI_Gather(&n, 1, MPI_INT, ns, 1, MPI_INT, 0, comm);
    MPI_Gather(&bytes, 1, MPI_INT, nbytes, 1, MPI_INT, 0, comm);
    int total = 0, total_bytes = 0;
    if (rank == 0)
        for (int i = 0; i < size; i++) {
            ndispl[i] = total;
            bdispl[i] = total_bytes;
            total += ns[i];
            total_bytes += nbytes[i];
        }
    int64_t *ix = rank == 0 ? calloc((size_t)total + 1, sizeof(int64_t)) : NULL;
    int *lens = rank == 0 ? calloc((size_t)total + 1, sizeof(int)) : NULL;
    char *text = rank == 0 ? malloc((size_t)total_bytes + 1) : NULL;
    MPI_Gatherv(s->index, n, MPI_INT64_T, ix, ns, ndispl, MPI_INT64_T, 0, comm);
    MPI_Gatherv(s->len, n, MPI_INT, lens, ns, ndispl, MPI_INT, 0, comm);
    MPI_Gatherv(s->text.p, bytes, MPI_CHAR, text, nbytes, bdispl, MPI_CHAR, 0, comm);
    int rc = KD_OK;
    if (rank == 0) {
        pred_ref *refs = calloc((size_t)total + 1, sizeof *refs);
        char *out = malloc((size_t)total_bytes + 1);
        if (!refs || !out || !ix || !lens || !text) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory gathering %d predictions", total);
        } else {
            size_t off = 0;
            for (int i = 0; i < total; i++) {
                refs[i] = (pred_ref){ix[i], text + off, lens[i]};
                off += (size_t)lens[i];
            }
            qsort(refs, (size_t)total, sizeof *refs, cmp_pred);
            size_t o = 0;
            for (int i = 0; i < total; i++) {
                memcpy(out + o, refs[i].line, (size_t)refs[i].len);
                o += (size_t)refs[i].len;
            }
            out[o] = 0;
            *joined = out;
            *joined_len = o;
            *count = total;
            out = NULL;
        }
        free(out);
        free(refs);
    }
    free(ns);
    free(nbytes);
    free(ndispl);
    free(bdispl);
    free(ix);
    free(lens);
    free(text);
    return rc;
}

/* With --max-prompts the answers of the prompts left out must not count as missed: keep only the
 * answer lines whose id was predicted (lines that do not parse are kept for the scorer to report). */
static int write_answer_subset(const char *answers, const char *predictions, size_t plen, const char *out,
                               kd_error *err) {
    json_t *ids = json_object();
    const char *p = predictions, *end = predictions + plen;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        json_t *rec = json_loadb(p, (size_t)(nl - p), 0, NULL);
        const char *id = json_string_value(json_object_get(rec, "id"));
        if (id) json_object_set_new(ids, id, json_true());
        json_decref(rec);
        p = nl + 1;
    }
    FILE *f = fopen(answers, "r");
    if (!f) {
        json_decref(ids);
        return kd_error_errno(err, errno, "cannot open answers %s", answers);
    }
    sbuf b = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = KD_OK;
    while (rc == KD_OK && (n = getline(&line, &cap, f)) >= 0) {
        json_t *rec = json_loadb(line, (size_t)n, 0, NULL);
        const char *id = json_string_value(json_object_get(rec, "id"));
        if (!rec || !id || json_object_get(ids, id))
            if (sb_add(&b, line, (size_t)n)) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        json_decref(rec);
    }
    free(line);
    fclose(f);
    json_decref(ids);
    if (rc == KD_OK) rc = kd_write_file_atomic(out, b.p ? b.p : "", b.len, err);
    free(b.p);
    return rc;
}

static int write_json(const char *dir, const char *name, const json_t *v, kd_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory writing %s", path);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory writing %s", path);
    }
    t[n] = '\n';
    int rc = kd_write_file_atomic(path, t, n + 1, err);
    free(t);
    return rc;
}

/* Rank 0: write the predictions, score them from the file, write the report. */
static int score_and_report(const decode_state *d, const char *preds, size_t plen, int64_t count, const totals *t,
                            double wall, int size, char **report_json, kd_error *err) {
    const kd_eval_options *opt = d->opt;
    char path[4096], answers_sub[4096];
    snprintf(path, sizeof path, "%s/predictions.jsonl", opt->out_dir);
    int rc = kd_write_file_atomic(path, preds, plen, err);
    if (rc) return rc;
    const char *answers = opt->answers_path ? opt->answers_path : opt->prompts_path;
    if (opt->max_prompts > 0) {
        snprintf(answers_sub, sizeof answers_sub, "%s/answers.jsonl", opt->out_dir);
        if ((rc = write_answer_subset(answers, preds, plen, answers_sub, err))) return rc;
        answers = answers_sub;
    }
    const char *tools = opt->tools_path ? opt->tools_path : d->any_prompt_tools ? opt->prompts_path : NULL;
    kd_scorer *s = NULL;
    if ((rc = kd_scorer_open(&s, answers, tools, err))) return kd_error_prefix(err, "eval: scoring: ");
    if ((rc = kd_scorer_add_file(s, path, err))) {
        kd_scorer_close(s);
        return kd_error_prefix(err, "eval: scoring: ");
    }
    json_t *rep = kd_scorer_report(s);
    kd_scorer_close(s);
    if (!rep) return kd_error_set(err, KD_ERR_NOMEM, "out of memory building the report");
    rc = write_json(opt->out_dir, "report.json", rep, err);
    char *md = rc ? NULL : kd_score_markdown(rep);
    if (!rc && !md) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory rendering the Markdown table");
    if (!rc) {
        snprintf(path, sizeof path, "%s/report.md", opt->out_dir);
        rc = kd_write_file_atomic(path, md, strlen(md), err);
    }
    free(md);
    const kd_config *cfg = opt->cfg;
    json_t *info = json_pack(
        "{s:s, s:s, s:s, s:o, s:I, s:I, s:f, s:f, s:I, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "model",
        opt->model_dir, "prompts", opt->prompts_path, "answers", answers, "tools", tools ? json_string(tools) : json_null(),
        "count", (json_int_t)count, "max_new_tokens", (json_int_t)cfg->eval.max_new_tokens, "temperature",
        cfg->eval.temperature, "top_p", cfg->eval.top_p, "seed", (json_int_t)cfg->eval.seed, "batch", (json_int_t)cfg->eval.batch, "ranks", size,
        "prompt_tokens", (json_int_t)t->prompt_tokens, "reused_prompt_tokens", (json_int_t)t->reused_tokens,
        "generated_tokens", (json_int_t)t->new_tokens, "stopped", (json_int_t)t->stopped, "hit_max_new_tokens",
        (json_int_t)(t->prompts - t->stopped - t->too_long), "prompts_too_long", (json_int_t)t->too_long,
        "decode_seconds", wall, "generated_tokens_per_s", wall > 0 ? (double)t->new_tokens / wall : 0.0,
        "processed_tokens_per_s",
        wall > 0 ? (double)(t->new_tokens + t->prompt_tokens - t->reused_tokens) / wall : 0.0);
    if (info) { /* eval.guide and how often it changed a step's choices */
        json_object_set_new(info, "guide", json_string(cfg->eval.guide));
        json_object_set_new(info, "guided_steps", json_integer((json_int_t)t->guided_steps));
    }
    if (!rc && info) rc = write_json(opt->out_dir, "eval.json", info, err);
    json_decref(info);
    if (!rc && report_json) {
        *report_json = json_dumps(rep, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (!*report_json) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    json_decref(rep);
    return rc;
}

/* The seq_len the checkpoint was trained with (its trainer_state.json), else the config's: eval keeps
 * as much of a prompt as training showed. */
static int64_t state_seq_len(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    json_t *st = json_load_file(path, 0, NULL);
    json_int_t T = json_integer_value(json_object_get(st, "seq_len"));
    json_decref(st);
    return T > 0 ? (int64_t)T : 0;
}

/* The length the student trained at: its folder's trainer_state.json (a checkpoint); for a run's
 * final/ folder, which holds only the Hugging Face files, the run's latest checkpoint's; else
 * train.seq_len. Rank 0 says which. */
static int64_t trained_seq_len(const kd_eval_options *opt, int rank) {
    int64_t T = state_seq_len(opt->model_dir);
    if (T > 0) return T;
    char run[4200], latest[4300];
    snprintf(run, sizeof run, "%s/..", opt->model_dir);
    kd_error e;
    if (!kd_checkpoint_latest(run, latest, sizeof latest, &e) && (T = state_seq_len(latest)) > 0) {
        if (rank == 0 && T != opt->cfg->train.seq_len)
            KD_INFO("eval: the student trained at seq_len %lld (%s/trainer_state.json, its run's latest checkpoint)",
                    (long long)T, latest);
        return T;
    }
    return opt->cfg->train.seq_len;
}

int kd_eval_run(const kd_eval_options *opt, MPI_Comm comm, char **report_json, kd_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (report_json) *report_json = NULL;
    int rc = KD_OK;
    if (!opt->model_dir || !opt->prompts_path || !opt->out_dir || !opt->cfg)
        rc = kd_error_set(err, KD_ERR_INVALID, "eval: a checkpoint folder, a prompt set, an output folder and a config are required");
    else if (!kd_path_exists(opt->prompts_path))
        rc = kd_error_set(err, KD_ERR_NOTFOUND, "eval: prompt set %s does not exist", opt->prompts_path);
    else if (opt->answers_path && !kd_path_exists(opt->answers_path))
        rc = kd_error_set(err, KD_ERR_NOTFOUND, "eval: answers file %s does not exist", opt->answers_path);
    if (!rc && rank == 0) rc = kd_mkdir_p(opt->out_dir, err);
    if ((rc = kd_mpi_agree(comm, rc, err))) return rc;

    decode_state d;
    memset(&d, 0, sizeof d);
    d.opt = opt;
    d.guide = kd_guide_mode_parse(opt->cfg->eval.guide); /* the config loader allows only the four levels */
    rc = kd_student_open(&d.student, opt->model_dir, err);
    if (!rc) {
        /* the window training used (include/kdstep/window.h): the whole prompt by default */
        d.student->max_prompt_tokens = (int)kd_eval_prompt_keep(opt->cfg->train.prompt_window, trained_seq_len(opt, rank),
                                                                opt->cfg->eval.max_new_tokens);
        /* Batch-1 decoding is matrix-vector work: below ~20M parameters the matrices are too small
         * for threads to pay (5x slower with 2 threads on the small presets); KDSTEP_THREADS or
         * OMP_NUM_THREADS still decide when set. */
        int env = getenv("KDSTEP_THREADS") || getenv("OMP_NUM_THREADS");
        int one = !env && d.student->model->n_params < 20u * 1000u * 1000u;
        kd_runtime_set_threads(kd_mpi_local_ranks(comm), one ? 1 : 0);
        size_t nb = (size_t)opt->cfg->eval.batch;
        d.wait = kd_calloc(nb, sizeof *d.wait);
        d.jobs = kd_calloc(nb, sizeof *d.jobs);
        d.outs = kd_calloc(nb * (size_t)opt->cfg->eval.max_new_tokens, sizeof(int32_t));
        const char *dump = getenv("KDSTEP_EVAL_PROMPT_IDS");
        if (dump && dump[0]) {
            char path[4200];
            if (size > 1) snprintf(path, sizeof path, "%s.%d", dump, rank);
            else snprintf(path, sizeof path, "%s", dump);
            if (!(d.dump_ids = fopen(path, "w")))
                rc = kd_error_set(err, KD_ERR_IO, "eval: cannot write %s (KDSTEP_EVAL_PROMPT_IDS): %s", path, strerror(errno));
        }
        if (!rc && (!d.wait || !d.jobs || !d.outs))
            rc = kd_error_set(err, KD_ERR_NOMEM, "eval: out of memory for eval.batch=%zu prompts of %lld new tokens", nb,
                              (long long)opt->cfg->eval.max_new_tokens);
    }
    if (!rc && opt->tools_path) {
        kd_registry *reg = NULL;
        if (!(rc = kd_registry_open(&reg, err)) && !(rc = kd_registry_load_file(reg, opt->tools_path, err)))
            d.reg_tools = kd_registry_to_openai(reg);
        kd_registry_close(reg);
    }
    if ((rc = kd_mpi_agree(comm, rc, err))) goto done;
    if (rank == 0)
        KD_INFO("eval: %s on %s (%d rank%s, batch %lld, max_new_tokens %lld, %s)", opt->model_dir, opt->prompts_path, size,
                size > 1 ? "s" : "", (long long)opt->cfg->eval.batch, (long long)opt->cfg->eval.max_new_tokens,
                opt->cfg->eval.temperature > 0 ? "sampling" : "greedy");
    static const char *const GUIDED[] = {"", "tool name (one the prompt offers) or frame", "tool name, frame or JSON arguments",
                                         "tool name, frame, JSON arguments or parameters (names, types, required)"};
    if (rank == 0 && d.guide > 0)
        KD_INFO("eval: guided tool calls (eval.guide=%s): tokens that would break a call's %s are masked",
                opt->cfg->eval.guide, GUIDED[d.guide]);
    double t0 = kd_now_s();
    rc = decode_share(&d, rank, size, err);
    if (rc && rank != 0) KD_ERROR("eval: %s", err->msg); /* rank 0 prints the agreed error */
    if ((rc = kd_mpi_agree(comm, rc, err))) goto done;
    double wall = kd_now_s() - t0, wall_max = 0;
    totals t = {0};
    MPI_Reduce(&d.t, &t, N_TOTALS, MPI_INT64_T, MPI_SUM, 0, comm);
    if (rank == 0 && t.cut > 0)
        KD_WARN("eval: %lld of %lld prompts were cut to their last %d tokens: the student did not see the head of "
                "their system turn (the tools); raise train.seq_len (kdstep inspect shows the length distribution) "
                "or leave train.prompt_window at 0",
                (long long)t.cut, (long long)t.prompts, d.student ? d.student->max_prompt_tokens : 0);
    MPI_Reduce(&wall, &wall_max, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
    char *preds = NULL;
    size_t plen = 0;
    int64_t count = 0;
    rc = gather_predictions(&d.out, comm, &preds, &plen, &count, err);
    if (!rc && rank == 0) {
        KD_INFO("eval: %lld prompts, %lld tokens generated in %.1f s (%.1f tok/s), %lld of %lld prompt tokens from the prefix cache",
                (long long)count, (long long)t.new_tokens, wall_max, wall_max > 0 ? (double)t.new_tokens / wall_max : 0.0,
                (long long)t.reused_tokens, (long long)t.prompt_tokens);
        rc = score_and_report(&d, preds ? preds : "", plen, count, &t, wall_max, size, report_json, err);
    }
    free(preds);
    rc = kd_mpi_agree(comm, rc, err);
done:
    if (rc && report_json) {
        free(*report_json);
        *report_json = NULL;
    }
    kd_student_close(d.student);
    json_decref(d.reg_tools);
    shard_free(&d.out);
    if (d.dump_ids) fclose(d.dump_ids);
    free(d.wait);
    free(d.jobs);
    free(d.outs);
    return rc;
}
