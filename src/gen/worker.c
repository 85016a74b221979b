/* A generation worker: see include/kdstep/worker.h.
 *
 * Each prompt becomes a conversation slot: the prompt goes to the teacher; tool calls go to the tool
 * simulator and their results back to the teacher, up to generate.max_turns rounds; the finished
 * conversation is rendered in the student's chat template, tokenized with offsets, its process-step
 * spans are extracted from the rendering (so every span is in sequence coordinates), and the aligned
 * masks plus the teacher's top-k go into the shard. Anything that goes wrong with one prompt becomes
 * a failure record naming the prompt and the reason; only errors that threaten the dataset (disk
 * full, HDF5) stop the worker.
 */
#include "kdstep/worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/chat.h"
#include "kdstep/extract.h"
#include "kdstep/h5data.h"
#include "kdstep/hash.h"
#include "kdstep/jsonw.h"
#include "kdstep/log.h"
#include "kdstep/onpolicy.h"
#include "kdstep/progress.h"
#include "kdstep/prompts.h"
#include "kdstep/synth.h"
#include "kdstep/registry.h"
#include "kdstep/student.h"
#include "kdstep/targets.h"
#include "kdstep/teacher.h"
#include "kdstep/tokenizer.h"
#include "kdstep/toolsim.h"

#define ASSISTANT_HEADER "<|im_start|>assistant\n"

enum { FILTER_NONE, FILTER_JSON_VALID, FILTER_SCHEMA_VALID };

typedef struct conv {
    int used;
    int64_t index;
    char *key;
    char *prompt_text;
    char *metadata;
    json_t *messages;   /* the conversation so far (OpenAI format) */
    int n_prompt_messages;
    json_t *tools;      /* OpenAI tools array for this prompt (owned reference) */
    kd_registry *reg;   /* per-prompt registry, or NULL: the worker's */
    int turns;
    int64_t attempts;
    int scoring;        /* the conversation is done and its scoring request is out */
    int scored;         /* last_lp holds the scoring of the whole conversation */
    char *reject;       /* why generate.filter rejects it (the first reason), or NULL */
    int student;        /* the student writes its assistant turns (generate.policy) */
    int student_due;    /* a student turn is waiting (run by kd_gen_worker_poll) */
    kd_teacher_logprobs last_lp; /* the final completion's logprobs, or the scoring's; owned */
} conv;

struct kd_gen_worker {
    const kd_gen_options *opt;
    const kd_config *cfg;
    kd_tokenizer *tok;
    kd_registry *reg;
    json_t *reg_tools; /* the registry as an OpenAI tools array */
    kd_teacher *teacher;
    int scoring;           /* KD_SCORING_*: how a finished conversation gets its top-k */
    int filter;            /* FILTER_* */
    int keep_thinking;     /* generate.thinking: keep */
    kd_toolsim *sim;
    int policy;            /* KD_POLICY_* (generate.policy) */
    kd_student *student;   /* generate.student, for policy student | mixed */
    int student_due;       /* slots with a student turn waiting */
    kd_shard *shard;
    int K;
    conv *slots;
    int capacity, in_flight;
    char **failures;
    int n_failures, cap_failures;
    int64_t counters[KD_GEN_NCOUNTERS];
    int64_t teacher_retries_seen;
    size_t max_token_bytes; /* the longest token's bytes: text over max_seq_len times this is too long untokenized
                             * (SIZE_MAX when some byte has no token: no early bound then) */
    kd_encoding enc;
    kd_tokcache *tokcache; /* the system turn (tool schemas) repeats across prompts */
    int peer;              /* KDSTEP_BENCH_TOKENIZER_PEER: also time the uncached tokenizer */
    kd_encoding peer_enc;
    /* token bytes -> student id, to read an endpoint's top-k given as token strings */
    uint64_t *byte_keys;
    int32_t *byte_ids;
    size_t byte_slots;
};

static int32_t id_of_bytes(const kd_gen_worker *w, const char *b, size_t n) {
    if (!w->byte_slots || !b) return -1;
    uint64_t h = kd_hash64(b, n) | 1;
    for (size_t j = h % w->byte_slots;; j = (j + 1) % w->byte_slots) {
        if (w->byte_keys[j] == 0) return -1;
        if (w->byte_keys[j] == h) {
            const char *tb;
            size_t tl;
            if (kd_tokenizer_token_bytes(w->tok, w->byte_ids[j], &tb, &tl) == 0 && tl == n && memcmp(tb, b, n) == 0)
                return w->byte_ids[j];
        }
    }
}

static int build_byte_index(kd_gen_worker *w) {
    int32_t V = kd_tokenizer_vocab_size(w->tok);
    w->byte_slots = (size_t)V * 2 + 1;
    w->byte_keys = calloc(w->byte_slots, sizeof(uint64_t));
    w->byte_ids = calloc(w->byte_slots, sizeof(int32_t));
    if (!w->byte_keys || !w->byte_ids) return -1;
    for (int32_t id = 0; id < V; id++) {
        const char *b;
        size_t n;
        if (kd_tokenizer_token_bytes(w->tok, id, &b, &n) != 0 || n == 0 || kd_tokenizer_is_special(w->tok, id)) continue;
        if (id_of_bytes(w, b, n) >= 0) continue; /* first id wins for duplicate byte strings */
        uint64_t h = kd_hash64(b, n) | 1;
        size_t j = h % w->byte_slots;
        while (w->byte_keys[j]) j = (j + 1) % w->byte_slots;
        w->byte_keys[j] = h;
        w->byte_ids[j] = id;
    }
    return 0;
}

static void add_time(kd_gen_worker *w, int counter, double t0) {
    w->counters[counter] += (int64_t)((kd_now_s() - t0) * 1e6);
}

static void conv_clear(conv *c) {
    free(c->key);
    free(c->prompt_text);
    free(c->metadata);
    json_decref(c->messages);
    json_decref(c->tools);
    kd_registry_close(c->reg);
    free(c->reject);
    kd_teacher_logprobs_free(&c->last_lp);
    memset(c, 0, sizeof *c);
}

static int push_failure(kd_gen_worker *w, int64_t index, const char *key, const char *kind, const char *reason) {
    /* tests only: lose the record, as a failing json_pack once did, to prove the count check catches it */
    static int lose = -1;
    if (lose < 0) lose = getenv("KDSTEP_TEST_LOSE_FAILURES") != NULL;
    if (lose) return -1;
    /* a reason may quote the teacher's bytes (invalid UTF-8, NUL): escaped, so the record is never lost */
    char *k = kd_utf8_escape(key ? key : "", key ? strlen(key) : 0);
    char *why = kd_utf8_escape(reason ? reason : "", reason ? strlen(reason) : 0);
    json_t *j = k && why ? json_pack("{s:I, s:I, s:s, s:s, s:s}", "prompt_index", (json_int_t)index, "line",
                                     (json_int_t)(index + 1), "id", k, "kind", kind, "reason", why)
                         : NULL;
    free(k);
    free(why);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return -1;
    if (w->n_failures == w->cap_failures) {
        int nc = w->cap_failures ? w->cap_failures * 2 : 16;
        char **nf = realloc(w->failures, sizeof(char *) * (size_t)nc);
        if (!nf) {
            free(s);
            return -1;
        }
        w->failures = nf;
        w->cap_failures = nc;
    }
    w->failures[w->n_failures++] = s;
    w->counters[KD_GEN_C_FAILURES]++;
    return 0;
}

static void fail_conv(kd_gen_worker *w, conv *c, const char *kind, const char *reason) {
    push_failure(w, c->index, c->key, kind, reason);
    conv_clear(c);
    w->in_flight--;
}

/* The dataset's identity (hashes) from the inputs, as every rank sees them. */
int kd_gen_dataset_info(const kd_gen_options *opt, kd_dataset_info *info, char **config_yaml, kd_error *err) {
    kd_dataset_info_init(info);
    info->topk = opt->cfg->teacher.top_logprobs > 0 ? (int)opt->cfg->teacher.top_logprobs : 1;
    info->process_supervision = opt->cfg->process_supervision.enabled;
    kd_tokenizer *tok = NULL;
    int rc = kd_tokenizer_open(&tok, opt->tokenizer_path, err);
    if (rc) return kd_error_prefix(err, "student tokenizer (--tokenizer-path %s): ", opt->tokenizer_path);
    snprintf(info->tokenizer_sha256, sizeof info->tokenizer_sha256, "%s", kd_tokenizer_sha256(tok));
    kd_tokenizer_close(tok);
    kd_registry *reg = NULL;
    if ((rc = kd_registry_open(&reg, err))) return rc;
    if (opt->tools_path && (rc = kd_registry_load_file(reg, opt->tools_path, err))) {
        kd_registry_close(reg);
        return rc;
    }
    snprintf(info->registry_sha256, sizeof info->registry_sha256, "%s", reg->sha256);
    kd_registry_close(reg);
    /* The config hash covers what shapes the samples: teacher and generation settings and process
     * supervision; training settings may change between runs on the same dataset. */
    kd_config c;
    kd_config_defaults(&c);
    c.teacher = opt->cfg->teacher;
    c.generate = opt->cfg->generate;
    c.process_supervision.enabled = opt->cfg->process_supervision.enabled;
    c.generate.strict = 0;
    /* neither do concurrency, timeouts, retries, credentials or the endpoint's address (a restarted
     * server on another port, or another node serving the same model): only stub vs remote counts */
    c.teacher.max_in_flight = 0;
    c.teacher.connect_timeout_s = c.teacher.timeout_s = c.teacher.backoff_base_s = 0;
    c.teacher.max_retries = 0;
    c.teacher.max_retry_after_s = 0;
    c.teacher.request_deadline_s = 0;
    c.teacher.max_response_bytes = 0;
    c.teacher.api_key_env[0] = 0;
    if (strcmp(c.teacher.url, "stub") != 0) snprintf(c.teacher.url, sizeof c.teacher.url, "remote");
    char *dump = kd_config_dump(&c);
    kd_sha256_hex(dump ? dump : "", dump ? strlen(dump) : 0, info->config_sha256);
    free(dump);
    *config_yaml = kd_config_dump(opt->cfg);
    info->config_yaml = *config_yaml;
    return KD_OK;
}

/* generate.policy student | mixed: the checkpoint that writes, and a teacher that can score what it wrote. */
static int open_student(kd_gen_worker *w, kd_error *err) {
    const kd_config *cfg = w->cfg;
    int rc = kd_policy_from_name(cfg->generate.policy, &w->policy, err);
    if (rc || w->policy == KD_POLICY_TEACHER) return rc;
    if (!cfg->generate.student[0])
        return kd_error_set(err, KD_ERR_INVALID,
                            "generate.policy %s needs generate.student: the student checkpoint folder (config.json, "
                            "model.safetensors, tokenizer.json; e.g. --student runs/demo/train/final)",
                            cfg->generate.policy);
    if (strcmp(cfg->teacher.url, "stub") != 0 && w->scoring == KD_SCORING_NONE)
        return kd_error_set(err, KD_ERR_INVALID,
                            "generate.policy %s: the teacher must score what the student wrote, but teacher.scoring is "
                            "none; set teacher.scoring: chat (vLLM prompt_logprobs) or completions (docs/teachers.md)",
                            cfg->generate.policy);
    if ((rc = kd_student_open(&w->student, cfg->generate.student, err)))
        return kd_error_prefix(err, "generate.student: ");
    /* the student sees its prompts as it was trained and is evaluated: the last train.prompt_window tokens */
    w->student->max_prompt_tokens = cfg->train.prompt_window > 0 ? (int)cfg->train.prompt_window : 0;
    return KD_OK;
}

int kd_gen_worker_open(kd_gen_worker **out, const kd_gen_options *opt, int shard_rank, kd_error *err) {
    kd_gen_worker *w = calloc(1, sizeof *w);
    if (!w) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    w->opt = opt;
    w->cfg = opt->cfg;
    w->K = opt->cfg->teacher.top_logprobs > 0 ? (int)opt->cfg->teacher.top_logprobs : 1;
    w->capacity = (int)opt->cfg->teacher.max_in_flight;
    int rc;
    if ((rc = kd_tokenizer_open(&w->tok, opt->tokenizer_path, err))) goto fail;
    /* a prompt's rendering is ~90% system turn, shared by every prompt with the same tools; spans
     * under 256 bytes (the short turns) are not worth a lookup */
    if ((rc = kd_tokcache_open(&w->tokcache, 32, 256, err))) goto fail;
    const char *peer = getenv("KDSTEP_BENCH_TOKENIZER_PEER");
    w->peer = peer && strcmp(peer, "1") == 0;
    if ((rc = kd_registry_open(&w->reg, err))) goto fail;
    if (opt->tools_path && (rc = kd_registry_load_file(w->reg, opt->tools_path, err))) goto fail;
    w->reg_tools = kd_registry_to_openai(w->reg);
    if ((rc = kd_scoring_from_name(opt->cfg->teacher.scoring, &w->scoring, err))) goto fail;
    const char *f = opt->cfg->generate.filter;
    w->filter = strcmp(f, "none") == 0 ? FILTER_NONE : strcmp(f, "json_valid") == 0 ? FILTER_JSON_VALID : FILTER_SCHEMA_VALID;
    w->keep_thinking = strcmp(opt->cfg->generate.thinking, "keep") == 0;
    if ((rc = kd_teacher_open(&w->teacher, opt->cfg, w->reg, w->tok, err))) goto fail;
    if ((rc = kd_toolsim_open(&w->sim, w->reg, opt->cfg->teacher.tool_fixtures, err))) goto fail;
    if ((rc = open_student(w, err))) goto fail;
    /* the bound holds only when every byte has a token: a tokenizer without one drops that byte (as HF
     * does), and then a long text may still encode short */
    uint8_t byte_seen[256] = {0};
    int bytes_covered = 0;
    for (int32_t id = 0, V = kd_tokenizer_vocab_size(w->tok); id < V; id++) {
        const char *b;
        size_t n;
        if (kd_tokenizer_token_bytes(w->tok, id, &b, &n) != 0) continue;
        if (n > w->max_token_bytes) w->max_token_bytes = n;
        if (n == 1 && !byte_seen[(uint8_t)b[0]]) byte_seen[(uint8_t)b[0]] = 1, bytes_covered++;
    }
    if (w->max_token_bytes == 0 || bytes_covered < 256) w->max_token_bytes = (size_t)-1; /* no early refusal */
    if (build_byte_index(w) != 0) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* the shard's attributes must match meta.json, which rank 0 wrote from the same inputs */
    kd_dataset_info info;
    char *config_yaml = NULL;
    if ((rc = kd_gen_dataset_info(opt, &info, &config_yaml, err))) goto fail;
    rc = kd_shard_open(&w->shard, opt->out_dir, shard_rank, &info, (int)opt->cfg->generate.seal_every, err);
    free(config_yaml);
    if (rc) goto fail;
    /* seals (and folding them into the next base) run beside the teacher and the pipeline */
    if ((rc = kd_shard_background(w->shard, err))) goto fail;
    w->slots = calloc((size_t)w->capacity, sizeof(conv));
    if (!w->slots) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *out = w;
    return KD_OK;
fail:
    kd_gen_worker_abandon(w);
    return rc;
}

static int submit_conv(kd_gen_worker *w, int slot, kd_error *err) {
    conv *c = &w->slots[slot];
    kd_teacher_request req;
    kd_teacher_request_init(&req);
    req.messages = c->messages;
    req.tools = c->tools;
    req.tag = (uint64_t)slot;
    /* with scoring on, an answer's own logprobs are not needed: the scoring covers every token */
    if (w->scoring != KD_SCORING_NONE) req.top_logprobs = 0;
    double t0 = kd_now_s();
    int rc = kd_teacher_submit(w->teacher, &req, err);
    add_time(w, KD_GEN_C_T_TEACHER_US, t0);
    return rc;
}

int kd_gen_worker_submit(kd_gen_worker *w, int64_t index, const char *line, size_t len, kd_error *err) {
    int slot = -1;
    for (int i = 0; i < w->capacity; i++)
        if (!w->slots[i].used) {
            slot = i;
            break;
        }
    if (slot < 0) return kd_error_set(err, KD_ERR_INVALID, "generation worker: no free slot (capacity %d)", w->capacity);
    conv *c = &w->slots[slot];
    memset(c, 0, sizeof *c);
    c->used = 1;
    c->index = index;
    w->in_flight++;
    kd_prompt p;
    kd_error perr;
    memset(&p, 0, sizeof p);
    kd_prompt_parse(line, len, index + 1, &p);
    if (p.status != KD_OK) {
        char why[700];
        snprintf(why, sizeof why, "%s:%lld: %s", w->opt->prompts_path, (long long)index + 1, p.reason);
        kd_prompt_clear(&p);
        if (w->cfg->generate.strict)
            return kd_error_set(err, KD_ERR_PARSE, "%s (--strict: a bad prompt line is fatal)", why);
        fail_conv(w, c, "prompt", why);
        return KD_OK;
    }
    c->key = kd_strdup(p.id ? p.id : "");
    /* the prompt text kept for inspection: the last user message */
    for (size_t i = json_array_size(p.messages); i-- > 0;) {
        json_t *m = json_array_get(p.messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0) {
            c->prompt_text = kd_strdup(json_string_value(json_object_get(m, "content")));
            break;
        }
    }
    if (!c->prompt_text) c->prompt_text = kd_strdup("");
    c->metadata = p.metadata ? json_dumps(p.metadata, JSON_COMPACT) : kd_strdup("{}");
    c->messages = json_deep_copy(p.messages);
    c->n_prompt_messages = (int)json_array_size(p.messages);
    if (p.tools && json_array_size(p.tools) > 0) {
        char src[128];
        snprintf(src, sizeof src, "prompt line %lld: tools", (long long)index + 1);
        if (kd_registry_from_json(&c->reg, p.tools, src, &perr) != KD_OK) {
            kd_prompt_clear(&p);
            fail_conv(w, c, "prompt", perr.msg);
            return KD_OK;
        }
        c->tools = kd_registry_to_openai(c->reg);
    } else {
        c->tools = json_incref(w->reg_tools);
    }
    kd_prompt_clear(&p);
    if (kd_policy_student_writes(w->policy, w->cfg->generate.student_share, w->cfg->teacher.seed, index)) {
        c->student = c->student_due = 1;
        w->student_due++;
        return KD_OK;
    }
    return submit_conv(w, slot, err);
}

/* The assistant message the teacher's completion becomes, and the calls to run. */
static json_t *assistant_message(const kd_gen_worker *w, const kd_teacher_completion *comp, int *n_calls) {
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    *n_calls = comp->n_tool_calls;
    const char *text = comp->text ? comp->text : "";
    if (comp->n_tool_calls == 0) {
        json_object_set_new(msg, "content", json_string(text));
        return msg;
    }
    /* Structured calls render as the template's <tool_call> blocks; the prose before the first
     * block (if any) stays as the content. */
    const char *cut = strstr(text, "<tool_call>");
    size_t n = cut ? (size_t)(cut - text) : strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
    if (!cut && comp->n_tool_calls > 0 && strcmp(w->cfg->teacher.tool_call_format, "inline_json") == 0) {
        /* the seed's inline format: the call stays in the prose, where the teacher wrote it */
        json_object_set_new(msg, "content", json_string(text));
        return msg;
    }
    json_object_set_new(msg, "content", json_stringn(text, n));
    json_t *calls = json_array();
    for (int i = 0; i < comp->n_tool_calls; i++) {
        const kd_teacher_tool_call *tc = &comp->tool_calls[i];
        /* arguments as the JSON text the template writes for them (tojson), so that every teacher renders
         * this turn as the student's template does: a string is written verbatim, and vLLM turns one
         * back into an object that tojson writes the same way */
        json_t *args = json_loads(tc->arguments ? tc->arguments : "", JSON_DECODE_ANY, NULL);
        char *tj = args ? kd_chat_tojson(args) : NULL;
        json_decref(args);
        json_t *fn = json_pack("{s:s, s:s}", "name", tc->name ? tc->name : "", "arguments",
                               tj ? tj : tc->arguments ? tc->arguments : "");
        free(tj);
        char id[32];
        snprintf(id, sizeof id, "call_%d", i);
        json_array_append_new(calls, json_pack("{s:s, s:s, s:o}", "id", tc->id ? tc->id : id, "type", "function", "function", fn));
    }
    json_object_set_new(msg, "tool_calls", calls);
    return msg;
}

/* Teacher top-k at each position t = the teacher's distribution of the token AT t, given the tokens
 * before it (the target's position, as the losses index it: include/kdstep/loss.h). Positions without
 * teacher information (the prompt) get ids -1 and a tail of 0; training falls back to CE there. */
/* An endpoint's logprobs describe its own tokens of the final answer. Where one of them covers
 * exactly the bytes of a student token in the rendered final answer (and is that token), its top-k
 * is kept, each alternative mapped to the student id with the same bytes (-1, i.e. the tail bucket,
 * when the student has no such token). Everything else has no teacher entry. */
static void align_endpoint_topk(kd_gen_worker *w, const conv *c, kd_text_span answer, int32_t *ids, float *lps, float *tail) {
    const kd_teacher_logprobs *lp = &c->last_lp;
    int K = w->K;
    size_t t = 0, pos = answer.start;
    for (int i = 0; i < lp->n && pos < answer.end; i++) {
        const char *tok = lp->tokens ? lp->tokens[i] : NULL;
        size_t len = tok ? strlen(tok) : 0;
        if (!len) break; /* no text for this token: alignment is lost from here on */
        while (t < w->enc.count && (size_t)w->enc.offsets[t][0] < pos) t++;
        if (t < w->enc.count && (size_t)w->enc.offsets[t][0] == pos && (size_t)w->enc.offsets[t][1] == pos + len) {
            int32_t sid = lp->token_ids[i] >= 0 ? lp->token_ids[i] : id_of_bytes(w, tok, len);
            if (sid == w->enc.ids[t]) {
                for (int k = 0; k < K && k < lp->k; k++) {
                    size_t at = (size_t)i * (size_t)lp->k + (size_t)k;
                    const char *alt = lp->topk_tokens ? lp->topk_tokens[at] : NULL;
                    ids[t * K + k] = lp->topk_ids[at] >= 0 ? lp->topk_ids[at] : alt ? id_of_bytes(w, alt, strlen(alt)) : -1;
                    lps[t * K + k] = lp->topk_logprobs[at];
                }
                tail[t] = lp->tail_logprob[i];
            }
        }
        pos += len;
    }
}

/* One teacher row into student row t: its K columns, alternatives by id (same tokenizer) or by their
 * bytes (-1, the tail's, when the student has no such token). */
static void put_row(kd_gen_worker *w, const kd_teacher_logprobs *lp, int i, size_t t, int by_id, int32_t *ids, float *lps,
                    float *tail) {
    int K = w->K;
    for (int k = 0; k < K && k < lp->k; k++) {
        size_t at = (size_t)i * (size_t)lp->k + (size_t)k;
        const char *alt = lp->topk_tokens ? lp->topk_tokens[at] : NULL;
        ids[t * K + k] = by_id ? lp->topk_ids[at] : alt ? id_of_bytes(w, alt, strlen(alt)) : -1;
        lps[t * K + k] = lp->topk_logprobs[at];
    }
    tail[t] = lp->tail_logprob[i];
}

/* The scoring of the whole conversation (one row per teacher token, row i = the distribution of
 * teacher token i) onto the student's tokens from response_start on.
 * - Same tokenizer (the teacher's token ids are the student's, one for one): row for row, exact.
 * - Otherwise by byte span: the teacher's token texts laid end to end give each token's bytes in the
 *   teacher's rendering; each assistant span of the student's text is found in it (templates may
 *   differ elsewhere), and a student token gets the row of the teacher token with exactly its bytes. */
static void align_scored(kd_gen_worker *w, const conv *c, const kd_chat_result *r, const kd_text_span *resp, size_t nresp,
                         size_t response_start, int32_t *ids, float *lps, float *tail) {
    const kd_teacher_logprobs *lp = &c->last_lp;
    size_t n = w->enc.count;
    int same = (size_t)lp->n == n;
    for (size_t t = 1; same && t < n; t++) same = lp->token_ids[t] == w->enc.ids[t]; /* row 0 has no entry */
    if (same) {
        for (size_t t = 0; t < n; t++)
            if ((size_t)w->enc.offsets[t][0] >= response_start) put_row(w, lp, (int)t, t, 1, ids, lps, tail);
        return;
    }
    size_t *tb = malloc(((size_t)lp->n + 1) * sizeof *tb), tl = 0;
    if (!tb) return;
    for (int i = 0; i < lp->n; i++) {
        tb[i] = tl;
        tl += lp->tokens && lp->tokens[i] ? strlen(lp->tokens[i]) : 0;
    }
    tb[lp->n] = tl;
    char *tt = malloc(tl + 1);
    if (!tt) {
        free(tb);
        return;
    }
    for (int i = 0; i < lp->n; i++)
        if (lp->tokens && lp->tokens[i]) memcpy(tt + tb[i], lp->tokens[i], tb[i + 1] - tb[i]);
    size_t from = 0, t = 0;
    int i = 0;
    for (size_t q = 0; q < nresp; q++) {
        size_t a = resp[q].start, b = resp[q].end;
        const char *hit = b > a && from < tl ? memmem(tt + from, tl - from, r->text + a, b - a) : NULL;
        if (!hit) continue;
        size_t at = (size_t)(hit - tt);
        from = at + (b - a);
        for (; t < n && (size_t)w->enc.offsets[t][0] < a; t++) {}
        for (; t < n && (size_t)w->enc.offsets[t][1] <= b; t++) {
            size_t s0 = (size_t)w->enc.offsets[t][0] - a + at, s1 = (size_t)w->enc.offsets[t][1] - a + at;
            while (i < lp->n && tb[i] < s0) i++;
            if (i < lp->n && tb[i] == s0 && tb[i + 1] == s1) put_row(w, lp, i, t, 0, ids, lps, tail);
        }
    }
    free(tt);
    free(tb);
}

static int fill_topk(kd_gen_worker *w, const conv *c, const kd_chat_result *r, const kd_text_span *resp, size_t nresp,
                     kd_text_span answer, int32_t *ids, float *lps, float *tail) {
    size_t n = w->enc.count;
    int K = w->K;
    for (size_t i = 0; i < n * (size_t)K; i++) {
        ids[i] = -1;
        lps[i] = -INFINITY;
    }
    for (size_t i = 0; i < n; i++) tail[i] = 0.0f;
    if (c->scored) align_scored(w, c, r, resp, nresp, resp[0].start, ids, lps, tail);
    else if (c->last_lp.n > 0) align_endpoint_topk(w, c, answer, ids, lps, tail);
    return KD_OK;
}

/* generate.thinking drop: a <think>...</think> block with reasoning in it (the empty one the template
 * writes is scaffolding, trained as before) stays in the text and leaves every mask. */
static void drop_thinking(kd_gen_worker *w, const kd_chat_result *r, const kd_text_span *resp, size_t nresp, kd_targets *tg) {
    size_t n = w->enc.count, t = 0;
    for (size_t q = 0; q < nresp; q++) {
        size_t a = resp[q].start, b = resp[q].end;
        if (b - a < 7 || memcmp(r->text + a, "<think>", 7) != 0) continue;
        const char *close = memmem(r->text + a, b - a, "</think>", 8);
        if (!close) continue;
        size_t e = (size_t)(close - r->text) + 8, inner = 0;
        for (size_t k = a + 7; k < e - 8; k++) inner += !(r->text[k] == '\n' || r->text[k] == ' ');
        if (!inner) continue;
        while (e < b && r->text[e] == '\n') e++;
        for (; t < n && (size_t)w->enc.offsets[t][0] < a; t++) {}
        for (; t < n && (size_t)w->enc.offsets[t][0] < e; t++) {
            tg->loss_mask[t] = 0;
            if (tg->tool_name_mask) tg->tool_name_mask[t] = 0;
            if (tg->json_mask) tg->json_mask[t] = 0;
            if (tg->integration_mask) tg->integration_mask[t] = 0;
        }
    }
}

/* stats.json teacher_coverage: trained tokens by kind, and how many of them have teacher top-k. */
static void count_coverage(kd_gen_worker *w, const kd_targets *tg, const int32_t *ids) {
    for (size_t t = 0; t < w->enc.count; t++) {
        int kind = tg->tool_name_mask && tg->tool_name_mask[t] ? 0 : tg->json_mask && tg->json_mask[t] ? 1
                   : tg->integration_mask && tg->integration_mask[t] ? 2 : tg->loss_mask[t] ? 3 : -1;
        if (kind < 0) continue;
        w->counters[KD_GEN_C_COV_TOKENS + 2 * kind]++;
        w->counters[KD_GEN_C_COV_TOKENS + 2 * kind + 1] += ids[t * (size_t)w->K] >= 0;
    }
}

/* The conversation is over: render, tokenize, extract, align, append. */
static int finish_conv(kd_gen_worker *w, int slot, kd_error *err) {
    conv *c = &w->slots[slot];
    double t0 = kd_now_s();
    kd_chat_result r;
    kd_error e;
    if (kd_chat_render_json(c->messages, c->tools, NULL, &r, &e) != KD_OK) {
        fail_conv(w, c, "render", e.msg);
        return KD_OK;
    }
    /* response spans: every assistant turn after the prompt, from after its header through
     * <|im_end|>; tool results: the content of each tool message */
    int nm = r.n_messages;
    kd_text_span *resp = calloc((size_t)nm + 1, sizeof(kd_text_span));
    kd_text_span *res = calloc((size_t)nm + 1, sizeof(kd_text_span));
    size_t nresp = 0, nres = 0;
    for (int i = c->n_prompt_messages; i < nm; i++) {
        const char *role = json_string_value(json_object_get(json_array_get(c->messages, (size_t)i), "role"));
        if (role && strcmp(role, "assistant") == 0) {
            kd_text_span s = {r.message_spans[i].start + strlen(ASSISTANT_HEADER), r.message_spans[i].end};
            if (s.end > s.start && r.text[s.end - 1] == '\n') s.end--;
            resp[nresp++] = s;
        } else if (role && strcmp(role, "tool") == 0) {
            res[nres].start = r.content_spans[i].start;
            res[nres++].end = r.content_spans[i].end;
        }
    }
    add_time(w, KD_GEN_C_T_OTHER_US, t0);
    int rc;
    if (nresp == 0) {
        rc = KD_ERR_INVALID;
        snprintf(e.msg, sizeof e.msg, "the teacher gave no answer");
        goto bad_sample;
    }
    /* checked before tokenizing: every token covers at most max_token_bytes of the text, so a longer
     * text cannot fit (an answer of megabytes is not tokenized only to be refused) */
    if (r.len / w->max_token_bytes > (size_t)w->cfg->generate.max_seq_len) {
        char why[200];
        snprintf(why, sizeof why, "at least %zu tokens (%zu bytes, no token longer than %zu) is more than generate.max_seq_len %lld",
                 r.len / w->max_token_bytes, r.len, w->max_token_bytes, (long long)w->cfg->generate.max_seq_len);
        free(resp);
        free(res);
        kd_chat_render_free(&r);
        fail_conv(w, c, "too_long", why);
        return KD_OK;
    }
    t0 = kd_now_s();
    rc = kd_tokenizer_encode_cached(w->tok, w->tokcache, r.text, r.len, 0, &w->enc, &e);
    add_time(w, KD_GEN_C_T_TOKENIZE_US, t0);
    if (!rc && w->peer) {
        t0 = kd_now_s();
        rc = kd_tokenizer_encode(w->tok, r.text, r.len, 0, &w->peer_enc, &e);
        add_time(w, KD_GEN_C_T_TOKENIZE_PEER_US, t0);
        if (!rc && (w->peer_enc.count != w->enc.count || memcmp(w->peer_enc.ids, w->enc.ids, w->enc.count * sizeof(int32_t)) ||
                    memcmp(w->peer_enc.offsets, w->enc.offsets, w->enc.count * sizeof(*w->enc.offsets))))
            w->counters[KD_GEN_C_TOKCACHE_MISMATCHES]++;
    }
    if (rc) goto bad_sample;
    size_t n = w->enc.count;
    if ((int64_t)n > w->cfg->generate.max_seq_len) {
        free(resp);
        free(res);
        kd_chat_render_free(&r);
        char why[160];
        snprintf(why, sizeof why, "%zu tokens is more than generate.max_seq_len %lld", n, (long long)w->cfg->generate.max_seq_len);
        fail_conv(w, c, "too_long", why);
        return KD_OK;
    }

    /* process-step spans in rendered-text coordinates, then masks aligned with the tokens */
    t0 = kd_now_s();
    const kd_registry *reg = c->reg ? c->reg : w->reg;
    kd_target_spans ts;
    memset(&ts, 0, sizeof ts);
    if (w->cfg->process_supervision.enabled) {
        rc = kd_targets_spans_for_conversation(r.text, r.len, resp, nresp, res, nres, reg, &ts, &e);
    } else {
        rc = KD_OK;
        for (size_t i = 0; i < nresp && !rc; i++) rc = kd_spans_push(&ts.response, resp[i].start, resp[i].end);
    }
    kd_targets tg;
    memset(&tg, 0, sizeof tg);
    if (!rc) rc = kd_targets_build(w->enc.offsets, n, r.len, &ts, w->cfg->process_supervision.enabled, &tg, &e);
    if (!rc && !w->keep_thinking) drop_thinking(w, &r, resp, nresp, &tg);
    add_time(w, KD_GEN_C_T_EXTRACT_US, t0);
    kd_target_spans_free(&ts);
    if (rc) {
        kd_targets_free(&tg);
        goto bad_sample;
    }

    /* teacher top-k, then the sample */
    t0 = kd_now_s();
    /* teacher-forced scoring by the stub is the teacher's work, timed as such */
    /* written straight into the shard's buffer: no copy of the biggest arrays on append */
    int32_t *topk_ids = NULL;
    float *topk_lp = NULL, *tail = NULL;
    size_t response_start = resp[0].start;
    kd_text_span answer = {r.content_spans[nm - 1].start, r.content_spans[nm - 1].end};
    rc = kd_shard_reserve_teacher(w->shard, (int64_t)n, &topk_ids, &topk_lp, &tail, err);
    if (rc == KD_OK) rc = fill_topk(w, c, &r, resp, nresp, answer, topk_ids, topk_lp, tail);
    if (rc == KD_OK) count_coverage(w, &tg, topk_ids);
    int64_t prompt_len = 0;
    while ((size_t)prompt_len < n && w->enc.offsets[prompt_len][1] <= (int32_t)response_start) prompt_len++;
    add_time(w, KD_GEN_C_T_OTHER_US, t0);
    if (rc == KD_OK) {
        kd_sample s = {.prompt_id = c->index, .prompt_len = prompt_len, .n = (int64_t)n, .policy = (uint8_t)c->student};
        s.input_ids = w->enc.ids;
        s.loss_mask = tg.loss_mask;
        s.tool_name_mask = tg.tool_name_mask;
        s.json_mask = tg.json_mask;
        s.integration_mask = tg.integration_mask;
        s.topk_ids = topk_ids;
        s.topk_logprobs = topk_lp;
        s.tail_logprob = tail;
        s.prompt_key = c->key;
        s.prompt_text = c->prompt_text;
        s.teacher_text = r.text + response_start;
        s.metadata = c->metadata;
        t0 = kd_now_s();
        rc = kd_shard_append(w->shard, &s, err);
        add_time(w, KD_GEN_C_T_HDF5_US, t0);
        if (rc == KD_OK) {
            w->counters[KD_GEN_C_SAMPLES]++;
            w->counters[KD_GEN_C_STUDENT_SAMPLES] += c->student;
            w->counters[KD_GEN_C_TOKENS] += (int64_t)n;
        }
    } else if (rc != KD_ERR_NOMEM) {
        /* a scoring problem is this prompt's, not the dataset's */
        fail_conv(w, c, "teacher_logprobs", err->msg);
        rc = KD_OK;
        c = NULL;
    }
    kd_targets_free(&tg);
    free(resp);
    free(res);
    kd_chat_render_free(&r);
    if (c) {
        conv_clear(c);
        w->in_flight--;
    }
    return rc;
bad_sample:
    free(resp);
    free(res);
    kd_chat_render_free(&r);
    fail_conv(w, c, nresp == 0 ? "teacher" : "sample", e.msg);
    return KD_OK;
}

static void reject(conv *c, const char *fmt, const char *a, const char *b) {
    if (c->reject) return;
    char why[512];
    snprintf(why, sizeof why, fmt, a ? a : "", b ? b : "");
    c->reject = kd_strdup(why);
}

/* generate.filter on one teacher answer: json_valid wants every call's arguments a JSON object and no
 * call left unread (a <tool_call> block the server's parser could not read, or an answer cut off);
 * schema_valid also wants each call to name an offered tool with arguments its schema accepts. */
static void check_filter(kd_gen_worker *w, conv *c, const kd_teacher_completion *comp) {
    if (w->filter == FILTER_NONE || c->reject) return;
    const char *text = comp->text ? comp->text : "";
    if (comp->finish_reason && strcmp(comp->finish_reason, "length") == 0)
        return reject(c, "json_valid: the answer was cut off (finish_reason length)%s%s", NULL, NULL);
    if (comp->n_tool_calls == 0 && strstr(text, "<tool_call>"))
        return reject(c, "json_valid: a <tool_call> block that is not a valid call%s%s", NULL, NULL);
    const kd_registry *reg = c->reg ? c->reg : w->reg;
    for (int i = 0; i < comp->n_tool_calls && !c->reject; i++) {
        const kd_teacher_tool_call *tc = &comp->tool_calls[i];
        json_t *args = json_loads(tc->arguments ? tc->arguments : "", 0, NULL);
        if (!json_is_object(args)) reject(c, "json_valid: the arguments of the call to '%s' are not a JSON object%s", tc->name, NULL);
        else if (w->filter == FILTER_SCHEMA_VALID) {
            const kd_tool *tool = tc->name ? kd_registry_find(reg, tc->name) : NULL;
            kd_error e;
            if (!tool) reject(c, "schema_valid: a call to '%s', which is not an offered tool%s", tc->name, NULL);
            else if (kd_registry_validate(tool, args, &e) != KD_OK)
                reject(c, "schema_valid: the arguments of the call to '%s' do not fit its schema: %s", tc->name, e.msg);
        }
        json_decref(args);
    }
}

/* The conversation is over: filtered out, or scored (one request for all of it), or finished now. */
static int end_conv(kd_gen_worker *w, int slot, kd_error *err) {
    conv *c = &w->slots[slot];
    if (c->reject) {
        w->counters[KD_GEN_C_FILTERED]++;
        char *why = c->reject;
        c->reject = NULL;
        fail_conv(w, c, "filtered", why);
        free(why);
        return KD_OK;
    }
    if (w->scoring == KD_SCORING_NONE && !c->student) return finish_conv(w, slot, err);
    c->scoring = 1;
    double t0 = kd_now_s();
    int rc = kd_teacher_submit_score(w->teacher, c->messages, c->tools, (uint64_t)slot, err);
    add_time(w, KD_GEN_C_T_TEACHER_US, t0);
    return rc;
}

static int on_completion(kd_gen_worker *w, kd_teacher_completion *comp, kd_error *err) {
    int slot = (int)comp->tag;
    if (slot < 0 || slot >= w->capacity || !w->slots[slot].used)
        return kd_error_set(err, KD_ERR_INVALID, "teacher returned an unknown tag %llu", (unsigned long long)comp->tag);
    conv *c = &w->slots[slot];
    c->attempts += comp->attempts;
    w->counters[KD_GEN_C_RETRIES] += comp->attempts > 1 ? comp->attempts - 1 : 0;
    w->counters[KD_GEN_C_USAGE_PROMPT] += comp->prompt_tokens;
    w->counters[KD_GEN_C_USAGE_COMPLETION] += comp->completion_tokens;
    if (comp->status != KD_OK) {
        char why[1024];
        if (c->scoring) {
            snprintf(why, sizeof why, "scoring the conversation: %s (HTTP %d after %d attempts)%s%s",
                     comp->error ? comp->error : "teacher failed", comp->http_status, comp->attempts,
                     comp->body_excerpt ? ": " : "", comp->body_excerpt ? comp->body_excerpt : "");
            fail_conv(w, c, "teacher_scoring", why);
            return KD_OK;
        }
        snprintf(why, sizeof why, "%s (HTTP %d after %d attempts)%s%s", comp->error ? comp->error : "teacher failed",
                 comp->http_status, comp->attempts, comp->body_excerpt ? ": " : "", comp->body_excerpt ? comp->body_excerpt : "");
        fail_conv(w, c, "teacher", why);
        return KD_OK;
    }
    kd_teacher_logprobs_free(&c->last_lp);
    c->last_lp = comp->lp; /* taken over: the completion no longer owns it */
    memset(&comp->lp, 0, sizeof comp->lp);
    if (c->scoring) {
        c->scored = 1;
        return finish_conv(w, slot, err);
    }
    check_filter(w, c, comp);
    int n_calls = 0;
    json_t *msg = assistant_message(w, comp, &n_calls);
    json_array_append_new(c->messages, msg);
    c->turns++;
    if (n_calls == 0 || c->turns >= w->cfg->generate.max_turns) return end_conv(w, slot, err);
    /* run the tools; a call the simulator cannot run (bad JSON, unknown tool) ends the
     * conversation here: the sample keeps the teacher's malformed call for the extractor */
    const kd_registry *reg = c->reg ? c->reg : w->reg;
    json_t *tool_msgs = json_array();
    int ok = 1;
    for (int i = 0; i < comp->n_tool_calls && ok; i++) {
        const kd_teacher_tool_call *tc = &comp->tool_calls[i];
        char *text = NULL;
        kd_error e;
        if (!tc->name || !kd_registry_find(reg, tc->name) ||
            kd_toolsim_run_text(w->sim, tc->name, tc->arguments ? tc->arguments : "", &text, &e) != KD_OK) {
            ok = 0;
            break;
        }
        char id[32];
        snprintf(id, sizeof id, "call_%d", i);
        json_array_append_new(tool_msgs, json_pack("{s:s, s:s, s:s, s:s}", "role", "tool", "tool_call_id", tc->id ? tc->id : id,
                                                   "name", tc->name, "content", text));
        free(text);
    }
    if (!ok) {
        json_decref(tool_msgs);
        return end_conv(w, slot, err);
    }
    json_array_extend(c->messages, tool_msgs);
    json_decref(tool_msgs);
    return submit_conv(w, slot, err);
}

/* One waiting student turn of slot `slot`; the conversation ends (and goes to scoring) when the
 * student makes no call it can run, or at generate.max_turns. */
static int student_turn(kd_gen_worker *w, int slot, kd_error *err) {
    conv *c = &w->slots[slot];
    c->student_due = 0;
    w->student_due--;
    kd_call_census cs = {0};
    int more = 0;
    int64_t ntok = 0;
    kd_error e;
    double t0 = kd_now_s();
    int rc = kd_onpolicy_student_turn(w->student, c->messages, c->tools, c->reg ? c->reg : w->reg, w->sim,
                                      (int)w->cfg->generate.student_max_tokens, w->cfg->generate.student_temperature,
                                      w->cfg->teacher.seed, c->index, c->turns, &cs, &more, &ntok, &e);
    add_time(w, KD_GEN_C_T_STUDENT_US, t0);
    w->counters[KD_GEN_C_STUDENT_TURNS]++;
    w->counters[KD_GEN_C_STUDENT_TOKENS] += ntok;
    w->counters[KD_GEN_C_STUDENT_CALLS] += cs.calls;
    w->counters[KD_GEN_C_STUDENT_UNKNOWN_TOOL] += cs.unknown_tool;
    w->counters[KD_GEN_C_STUDENT_BAD_JSON] += cs.bad_json;
    w->counters[KD_GEN_C_STUDENT_SCHEMA_INVALID] += cs.schema_invalid;
    w->counters[KD_GEN_C_STUDENT_UNCLOSED] += cs.unclosed;
    if (rc) {
        if (rc == KD_ERR_NOMEM) return kd_error_set(err, rc, "%s", e.msg);
        fail_conv(w, c, "student", e.msg);
        return KD_OK;
    }
    c->turns++;
    if (more && c->turns < w->cfg->generate.max_turns) {
        c->student_due = 1;
        w->student_due++;
        return KD_OK;
    }
    return end_conv(w, slot, err);
}

/* Student turns waiting, round-robin over the slots, for up to `budget_s`. */
static int run_student_turns(kd_gen_worker *w, double budget_s, kd_error *err) {
    double t0 = kd_now_s();
    for (int i = 0; i < w->capacity && w->student_due > 0; i++) {
        if (!w->slots[i].used || !w->slots[i].student_due) continue;
        int rc = student_turn(w, i, err);
        if (rc) return rc;
        if (kd_now_s() - t0 > budget_s) break;
    }
    return KD_OK;
}

int kd_gen_worker_poll(kd_gen_worker *w, double timeout_s, kd_error *err) {
    double t0 = kd_now_s();
    if (w->student_due > 0) {
        int rc = run_student_turns(w, 0.5, err);
        if (rc) return rc;
        timeout_s = 0; /* the student has work: collect what the teacher has ready, no waiting */
    }
    for (;;) {
        kd_teacher_completion *comp = NULL;
        double tt = kd_now_s();
        int rc = kd_teacher_next(w->teacher, timeout_s, &comp, err);
        add_time(w, KD_GEN_C_T_TEACHER_US, tt);
        if (rc) return rc;
        if (!comp) return KD_OK;
        rc = on_completion(w, comp, err);
        kd_teacher_completion_free(comp);
        free(comp);
        if (rc) return rc;
        timeout_s = 0; /* drain what is ready, then return */
        if (kd_now_s() - t0 > 0.5) return KD_OK;
    }
}

int kd_gen_worker_in_flight(const kd_gen_worker *w) { return w->in_flight; }
int kd_gen_worker_capacity(const kd_gen_worker *w) { return w->capacity; }

int kd_gen_worker_take_failures(kd_gen_worker *w, char ***lines, int *n) {
    *lines = w->failures;
    *n = w->n_failures;
    w->failures = NULL;
    w->n_failures = w->cap_failures = 0;
    return KD_OK;
}

void kd_gen_worker_counters(const kd_gen_worker *w, int64_t out[KD_GEN_NCOUNTERS]) {
    memcpy(out, w->counters, sizeof w->counters);
    /* retries as they are scheduled (a request waiting out a Retry-After shows at once), not only
     * when its completion arrives */
    kd_teacher_stats ts;
    memset(&ts, 0, sizeof ts);
    if (w->teacher) kd_teacher_get_stats(w->teacher, &ts);
    if (ts.retries > out[KD_GEN_C_RETRIES]) out[KD_GEN_C_RETRIES] = ts.retries;
    if (w->shard) out[KD_GEN_C_T_HDF5_BG_US] = (int64_t)(kd_shard_background_seconds(w->shard) * 1e6);
    kd_tokcache_stats st;
    kd_tokcache_get_stats(w->tokcache, &st);
    out[KD_GEN_C_TOKCACHE_LOOKUPS] = (int64_t)st.lookups;
    out[KD_GEN_C_TOKCACHE_HITS] = (int64_t)st.hits;
    out[KD_GEN_C_TOKCACHE_HIT_BYTES] = (int64_t)st.hit_bytes;
    out[KD_GEN_C_TOKENIZE_BYTES] = (int64_t)st.bytes;
}

static void release(kd_gen_worker *w) {
    for (int i = 0; w->slots && i < w->capacity; i++)
        if (w->slots[i].used) conv_clear(&w->slots[i]);
    free(w->slots);
    for (int i = 0; i < w->n_failures; i++) free(w->failures[i]);
    free(w->failures);
    kd_encoding_free(&w->enc);
    kd_encoding_free(&w->peer_enc);
    kd_tokcache_close(w->tokcache);
    free(w->byte_keys);
    free(w->byte_ids);
    kd_toolsim_close(w->sim);
    kd_student_close(w->student);
    kd_teacher_close(w->teacher);
    json_decref(w->reg_tools);
    kd_registry_close(w->reg);
    kd_tokenizer_close(w->tok);
    free(w);
}

int kd_gen_worker_finish(kd_gen_worker *w, kd_error *err) {
    if (!w->shard) return KD_OK;
    double t0 = kd_now_s();
    int rc = kd_shard_seal(w->shard, err);
    w->counters[KD_GEN_C_T_HDF5_BG_US] = (int64_t)(kd_shard_background_seconds(w->shard) * 1e6);
    if (rc) {
        kd_shard_abandon(w->shard);
        w->shard = NULL;
        return rc;
    }
    rc = kd_shard_close(w->shard, err);
    add_time(w, KD_GEN_C_T_HDF5_US, t0);
    w->shard = NULL;
    return rc;
}

int kd_gen_worker_close(kd_gen_worker *w, kd_error *err) {
    int rc = kd_gen_worker_finish(w, err);
    release(w);
    return rc;
}

void kd_gen_worker_abandon(kd_gen_worker *w) {
    if (!w) return;
    if (w->shard) kd_shard_abandon(w->shard);
    w->shard = NULL;
    release(w);
}
