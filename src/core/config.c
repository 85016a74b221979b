/* Strict YAML configuration: see include/kdstep/config.h. */
#include "kdstep/config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kdstep/yamlsafe.h"

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"

enum key_type { T_FLOAT, T_INT, T_BOOL, T_STR, T_LIST };

typedef struct key_spec {
    const char *section;
    const char *key;
    enum key_type type;
    size_t offset;
    double min, max;     /* range for numbers */
    const char *dflt;    /* default as YAML scalar text */
    const char *choices; /* "a|b|c" for strings with a closed set of values, or NULL */
    const char *doc;
} key_spec;

#define F(sec, k) offsetof(kd_config, sec.k)
#define BIG 1e18

static const key_spec KEYS[] = {
    {"process_supervision", "enabled", T_BOOL, F(process_supervision, enabled), 0, 1, "true", NULL,
     "Extract tool-name, JSON and integration spans and train on them (false == --no-process-supervision)."},
    {"process_supervision", "loss_json_validity_weight", T_FLOAT, F(process_supervision, loss_json_validity_weight), 0, 1000, "0.3", NULL,
     "Weight of the JSON-validity loss (CE on JSON-argument tokens plus the grammar term)."},
    {"process_supervision", "loss_tool_select_weight", T_FLOAT, F(process_supervision, loss_tool_select_weight), 0, 1000, "0.7", NULL,
     "Weight of the tool-selection loss (CE on tool-name tokens)."},
    {"process_supervision", "loss_integration_weight", T_FLOAT, F(process_supervision, loss_integration_weight), 0, 1000, "0.0", NULL,
     "Weight of the integration loss (CE on answer tokens that use tool results)."},
    {"process_supervision", "json_ce", T_BOOL, F(process_supervision, json_ce), 0, 1, "true", NULL,
     "JSON-validity part 1: cross-entropy on JSON-argument tokens."},
    {"process_supervision", "json_grammar", T_BOOL, F(process_supervision, json_grammar), 0, 1, "true", NULL,
     "JSON-validity part 2: -log(1 - p(tokens that make the JSON prefix invalid))."},
    {"process_supervision", "tool_names", T_LIST, F(process_supervision, tool_names), 0, 0, "[]", NULL,
     "Optional list of tool names; empty means every tool in the registry."},

    {"model", "preset", T_STR, F(model, preset), 0, 0, "small", NULL,
     "Student preset: a name under configs/models/ (tiny, small, qwen3-0.6b)."},
    {"model", "path", T_STR, F(model, path), 0, 0, "", NULL,
     "A Hugging Face model folder (config.json, model.safetensors); overrides preset."},
    {"model", "init", T_STR, F(model, init), 0, 0, "random", "random|pretrained",
     "random: seeded initialization; pretrained: load weights from model.path."},

    {"train", "micro_batch", T_INT, F(train, micro_batch), 1, 65536, "8", NULL, "Sequences per rank per forward/backward."},
    {"train", "grad_accum", T_INT, F(train, grad_accum), 1, 65536, "1", NULL, "Micro-batches accumulated per optimizer step."},
    {"train", "seq_len", T_INT, F(train, seq_len), 0, 1048576, "256", NULL,
     "Tokens per sequence; longer samples lose their head (reported). 0 = pick it from the dataset (kdstep run only): the p99 sample length, rounded up to 32."},
    {"train", "steps", T_INT, F(train, steps), 0, BIG, "0", NULL, "Optimizer steps; 0 means use epochs."},
    {"train", "epochs", T_INT, F(train, epochs), 0, 1000000, "1", NULL, "Passes over the training split when steps is 0."},
    {"train", "lr", T_FLOAT, F(train, lr), 0, 10, "0.001", NULL, "Peak learning rate (AdamW)."},
    {"train", "min_lr_ratio", T_FLOAT, F(train, min_lr_ratio), 0, 1, "0.1", NULL, "Cosine schedule floor as a fraction of lr."},
    {"train", "warmup_steps", T_INT, F(train, warmup_steps), 0, BIG, "20", NULL, "Linear warmup steps."},
    {"train", "weight_decay", T_FLOAT, F(train, weight_decay), 0, 10, "0.1", NULL, "AdamW decoupled weight decay (not applied to norms)."},
    {"train", "adam_beta1", T_FLOAT, F(train, adam_beta1), 0, 0.999999, "0.9", NULL, "AdamW decay rate of the gradient's running mean."},
    {"train", "adam_beta2", T_FLOAT, F(train, adam_beta2), 0, 0.999999, "0.95", NULL, "AdamW decay rate of the squared gradient's running mean."},
    {"train", "adam_eps", T_FLOAT, F(train, adam_eps), 1e-30, 1, "1e-08", NULL, "AdamW epsilon added to the update's denominator."},
    {"train", "bucket_floats", T_INT, F(train, bucket_floats), 1, 1073741824, "1048576", NULL,
     "Gradient floats per allreduce bucket: layers are sent (MPI_Iallreduce) once this many are ready, overlapping backward."},
    {"train", "grad_clip", T_FLOAT, F(train, grad_clip), 0, 1e9, "1.0", NULL, "Global gradient-norm clip; 0 disables."},
    {"train", "seed", T_INT, F(train, seed), 0, BIG, "1234", NULL, "Seed for initialization, shuffling and dropout-free sampling."},
    {"train", "checkpoint_every", T_INT, F(train, checkpoint_every), 0, BIG, "100", NULL, "Write a checkpoint every N steps; 0 only at the end."},
    {"train", "eval_every", T_INT, F(train, eval_every), 0, BIG, "50", NULL, "Held-out loss and tool-name accuracy every N steps; 0 disables."},
    {"train", "eval_fraction", T_FLOAT, F(train, eval_fraction), 0, 0.9, "0.05", NULL, "Share of samples held out (by prompt-id hash)."},
    {"train", "max_bad_steps", T_INT, F(train, max_bad_steps), 1, 1000, "3", NULL, "Consecutive NaN/Inf steps skipped before the run aborts."},
    {"train", "threads", T_INT, F(train, threads), 0, 4096, "0", NULL, "Threads per rank; 0 = KDSTEP_THREADS, OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else the CPUs of the rank's affinity mask / the ranks sharing them."},
    {"train", "context_lm_weight", T_FLOAT, F(train, context_lm_weight), 0, 1000, "0.0", NULL,
     "Weight of a language-model term on the prompt's own tokens (system turn and tools, user turn, tool results): CE on every window token outside loss_mask. 0 = off. It gives a student trained from scratch the copying a tool call needs: a request quotes its tool's description."},
    {"train", "length_buckets", T_INT, F(train, length_buckets), 0, 1048576, "0", NULL,
     "Length bucketing: 0 = off (every row padded to seq_len); N > 0 = the samples of each N optimizer steps are sorted by length into steps of alike lengths (in a seeded order), and each micro-batch runs at its longest row, rounded up to 16."},
    {"train", "prompt_window", T_INT, F(train, prompt_window), 0, 1048576, "0", NULL,
     "Prompt tokens the student sees before an answer (the prompt's last ones), in training and eval alike; 0 = the whole prompt (full context, tools included)."},
    {"train", "save_dtype", T_STR, F(train, save_dtype), 0, 0, "float32", "float32|bfloat16|float16",
     "dtype of the weights in final/ (bfloat16 rounds to nearest even); checkpoints/ stay float32."},
    {"train", "max_shard_size", T_STR, F(train, max_shard_size), 0, 0, "5GB", NULL,
     "final/ weights above this size are split into shards + model.safetensors.index.json (HF's default 5GB; 0 = never)."},

    {"kd", "weight", T_FLOAT, F(kd, weight), 0, 1000, "1.0", NULL, "Weight of the distillation term."},
    {"kd", "temperature", T_FLOAT, F(kd, temperature), 0.01, 100, "1.0", NULL, "Softmax temperature T; the term is scaled by T^2."},
    {"kd", "divergence", T_STR, F(kd, divergence), 0, 0, "forward_kl", "forward_kl|reverse_kl|jsd", "Divergence from the teacher's top-k (+ tail bucket)."},
    {"kd", "jsd_beta", T_FLOAT, F(kd, jsd_beta), 0, 1, "0.5", NULL, "Beta of the generalized JSD."},
    {"kd", "onpolicy_divergence", T_STR, F(kd, onpolicy_divergence), 0, 0, "reverse_kl", "reverse_kl|jsd|forward_kl",
     "Divergence on student-written samples (/samples/policy 1, generate.policy student | mixed); kd.divergence stays on teacher-written ones. See docs/losses.md."},

    {"teacher", "url", T_STR, F(teacher, url), 0, 0, "stub", NULL, "'stub' (built-in) or the base URL of an OpenAI-compatible server."},
    {"teacher", "model", T_STR, F(teacher, model), 0, 0, "stub-teacher", NULL, "Model name sent to the endpoint."},
    {"teacher", "api_key_env", T_STR, F(teacher, api_key_env), 0, 0, "KDSTEP_API_KEY", NULL, "Name of the environment variable holding the API key."},
    {"teacher", "max_in_flight", T_INT, F(teacher, max_in_flight), 1, 4096, "32", NULL, "Concurrent requests per rank (lowered under 429s)."},
    {"teacher", "connect_timeout_s", T_FLOAT, F(teacher, connect_timeout_s), 0.1, 3600, "10", NULL, "TCP/TLS connect timeout."},
    {"teacher", "timeout_s", T_FLOAT, F(teacher, timeout_s), 0.1, 86400, "120", NULL, "Total timeout per request."},
    {"teacher", "max_retries", T_INT, F(teacher, max_retries), 0, 1000, "5", NULL, "Retries for 5xx, 429, timeouts and connection errors."},
    {"teacher", "max_retry_after_s", T_FLOAT, F(teacher, max_retry_after_s), 0, 86400, "60", NULL,
     "Longest Retry-After honoured; a server asking for a longer wait fails that request at once."},
    {"teacher", "request_deadline_s", T_FLOAT, F(teacher, request_deadline_s), 1, 604800, "600", NULL,
     "Bound on one request from its first attempt to its last: attempts, backoff and Retry-After waits together."},
    {"teacher", "max_response_bytes", T_INT, F(teacher, max_response_bytes), 1024, 1LL << 34, "8388608", NULL,
     "Largest answer accepted, counted after decompression while it arrives; a larger one is a failure."},
    {"teacher", "backoff_base_s", T_FLOAT, F(teacher, backoff_base_s), 0, 3600, "0.5", NULL, "First retry delay; doubles each retry, with jitter."},
    {"teacher", "top_logprobs", T_INT, F(teacher, top_logprobs), 0, 20, "8", NULL, "K: teacher log-probabilities kept per position."},
    {"teacher", "temperature", T_FLOAT, F(teacher, temperature), 0, 10, "0.0", NULL, "Sampling temperature sent to the teacher."},
    {"teacher", "max_tokens", T_INT, F(teacher, max_tokens), 1, 1048576, "512", NULL, "Maximum tokens per teacher completion."},
    {"teacher", "seed", T_INT, F(teacher, seed), 0, BIG, "0", NULL, "Seed sent to the teacher (and used by the stub)."},
    {"teacher", "tool_call_format", T_STR, F(teacher, tool_call_format), 0, 0, "hermes", "hermes|inline_json", "How the stub teacher writes calls."},
    {"teacher", "malformed_rate", T_FLOAT, F(teacher, malformed_rate), 0, 1, "0.0", NULL, "Stub teacher: share of malformed outputs."},
    {"teacher", "insecure_tls", T_BOOL, F(teacher, insecure_tls), 0, 1, "false", NULL, "Disable TLS certificate verification (explicit opt-out)."},
    {"teacher", "scoring", T_STR, F(teacher, scoring), 0, 0, "chat", "none|chat|completions",
     "How each finished conversation gets teacher top-k at every token: one /v1/chat/completions request with vLLM's prompt_logprobs (chat), /v1/completions over kdstep's rendering (completions), or only the final answer's own logprobs (none). See docs/teachers.md."},
    {"teacher", "extra_body", T_STR, F(teacher, extra_body), 0, 0, "", NULL,
     "JSON object merged into every chat request, e.g. '{\"chat_template_kwargs\": {\"enable_thinking\": false}}'."},
    {"teacher", "tool_fixtures", T_STR, F(teacher, tool_fixtures), 0, 0, "", NULL, "JSON file mapping tool name + arguments to results."},

    {"generate", "chunk_size", T_INT, F(generate, chunk_size), 1, 1000000, "8", NULL, "Prompt ids per work request from a worker."},
    {"generate", "seal_every", T_INT, F(generate, seal_every), 1, 1000000, "64", NULL, "Samples per sealed HDF5 segment (a crash loses at most this many, twice that with background sealing)."},
    {"generate", "max_turns", T_INT, F(generate, max_turns), 1, 64, "4", NULL, "Teacher/tool rounds per conversation."},
    {"generate", "max_seq_len", T_INT, F(generate, max_seq_len), 16, 1048576, "4096", NULL, "Longer samples are recorded in failures.jsonl."},
    {"generate", "strict", T_BOOL, F(generate, strict), 0, 1, "false", NULL, "A bad prompt line is fatal instead of recorded."},
    {"generate", "thinking", T_STR, F(generate, thinking), 0, 0, "drop", "drop|keep",
     "drop: a <think>...</think> block stays in /text but gets no loss of any kind; keep: it is trained on like the answer."},
    {"generate", "filter", T_STR, F(generate, filter), 0, 0, "schema_valid", "none|json_valid|schema_valid",
     "Which finished conversations become samples: every one, those whose tool calls are valid JSON, or those whose calls name an offered tool with schema-valid arguments. Rejected ones go to failures.jsonl (kind filtered)."},
    {"generate", "policy", T_STR, F(generate, policy), 0, 0, "teacher", "teacher|student|mixed",
     "Who writes the assistant turns: the teacher; the student checkpoint generate.student (the teacher then scores the finished conversation: teacher.scoring must not be none for an HTTP teacher); or mixed: each prompt by the student with probability generate.student_share (a hash of teacher.seed and the prompt index, so reruns agree). See docs/onpolicy.md."},
    {"generate", "student", T_STR, F(generate, student), 0, 0, "", NULL,
     "Student checkpoint folder (config.json, model.safetensors, tokenizer.json: train/final or a checkpoints/step-N) for policy student or mixed."},
    {"generate", "student_share", T_FLOAT, F(generate, student_share), 0, 1, "0.5", NULL, "policy mixed: share of prompts the student writes."},
    {"generate", "student_temperature", T_FLOAT, F(generate, student_temperature), 0, 10, "1.0", NULL,
     "Sampling temperature of the student's turns (0 = greedy); seeded per prompt and turn from teacher.seed."},
    {"generate", "student_max_tokens", T_INT, F(generate, student_max_tokens), 1, 1048576, "256", NULL, "Tokens per student turn."},

    {"eval", "max_new_tokens", T_INT, F(eval, max_new_tokens), 1, 1048576, "128", NULL, "Tokens decoded per held-out prompt."},
    {"eval", "temperature", T_FLOAT, F(eval, temperature), 0, 10, "0.0", NULL, "0 = greedy."},
    {"eval", "top_p", T_FLOAT, F(eval, top_p), 0, 1, "1.0", NULL, "Nucleus sampling threshold."},
    {"eval", "seed", T_INT, F(eval, seed), 0, BIG, "0", NULL, "Sampling seed."},
    {"eval", "batch", T_INT, F(eval, batch), 1, 1024, "8", NULL, "Held-out prompts decoded together per rank (one forward pass feeds a token of each; a KV cache per prompt). The predictions are byte-identical for every value."},
    {"eval", "guide", T_STR, F(eval, guide), 0, 0, "none", "none|names|json|schema",
     "Guided tool calls, each level with the ones before: names: the student can only name a tool its prompt offers, in the template's frame; json: the arguments are one well-formed JSON object; schema: its top-level keys are that tool's parameters, each once, the required ones all present, each value of the declared type. Whether to call, which offered tool, the values and the stop stay the student's own (docs/eval.md, section Guided tool calls)."},
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

int kd_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128) return 1000;
    int d[129][129];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            int m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m) m = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < m) m = d[i - 1][j - 1] + c;
            d[i][j] = m;
        }
    return d[la][lb];
}

static void list_free(kd_string_list *l) {
    for (int i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int list_push(kd_string_list *l, const char *s) {
    char **n = realloc(l->items, sizeof(char *) * (size_t)(l->count + 1));
    if (!n) return -1;
    l->items = n;
    l->items[l->count] = strdup(s);
    if (!l->items[l->count]) return -1;
    l->count++;
    return 0;
}

/* Set one scalar value; `where` is "file:line:col" for messages. */
static int set_scalar(kd_config *cfg, const key_spec *k, const char *v, const char *where, kd_error *err) {
    char *base = (char *)cfg + k->offset;
    char *end = NULL;
    switch (k->type) {
    case T_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: expected a number, got '%s'", where, k->section, k->key, v);
        if (x < k->min || x > k->max)
            return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: value %g is out of range [%g, %g]", where, k->section, k->key, x, k->min, k->max);
        *(double *)base = x;
        return KD_OK;
    }
    case T_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: expected an integer, got '%s'", where, k->section, k->key, v);
        if ((double)x < k->min || (double)x > k->max)
            return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: value %lld is out of range [%.0f, %.0f]", where, k->section, k->key, x, k->min, k->max);
        *(int64_t *)base = (int64_t)x;
        return KD_OK;
    }
    case T_BOOL: {
        static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(v, yes[i]) == 0) { *(int *)base = 1; return KD_OK; }
            if (strcasecmp(v, no[i]) == 0) { *(int *)base = 0; return KD_OK; }
        }
        return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: expected true or false, got '%s'", where, k->section, k->key, v);
    }
    case T_STR: {
        size_t cap = (k->offset == F(model, path) || k->offset == F(teacher, url) || k->offset == F(teacher, tool_fixtures) || k->offset == F(teacher, extra_body) || k->offset == F(generate, student)) ? KD_CFG_PATH : KD_CFG_STR;
        if (strlen(v) >= cap)
            return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: value is longer than %zu bytes", where, k->section, k->key, cap - 1);
        if (k->choices) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", k->choices);
            int ok = 0;
            for (char *save, *t = strtok_r(buf, "|", &save); t; t = strtok_r(NULL, "|", &save))
                if (strcmp(t, v) == 0) ok = 1;
            if (!ok)
                return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: unknown value '%s' (expected one of: %s)", where, k->section, k->key, v, k->choices);
        }
        if (k->offset == F(teacher, extra_body) && v[0]) {
            json_error_t je;
            json_t *j = json_loads(v, 0, &je);
            int is_obj = json_is_object(j);
            json_decref(j);
            if (!is_obj)
                return kd_error_set(err, KD_ERR_INVALID,
                                    "%s: teacher.extra_body: not a JSON object (%s); write it as one quoted string, e.g. "
                                    "extra_body: '{\"chat_template_kwargs\": {\"enable_thinking\": false}}'",
                                    where, j ? "another JSON value" : je.text);
        }
        snprintf(base, cap, "%s", v);
        return KD_OK;
    }
    case T_LIST:
        return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: expected a list like [a, b], got '%s'", where, k->section, k->key, v);
    }
    return KD_ERR_INVALID;
}

static const key_spec *find_key(const char *section, const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

static int section_exists(const char *section) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0) return 1;
    return 0;
}

/* The nearest known name: among keys of this section (section != NULL) or among sections. */
static const char *nearest(const char *section, const char *name) {
    const char *best = NULL;
    int bestd = 1 << 30;
    for (int i = 0; i < NKEYS; i++) {
        const char *cand = section ? KEYS[i].key : KEYS[i].section;
        if (section && strcmp(KEYS[i].section, section) != 0) continue;
        int d = kd_edit_distance(name, cand);
        /* a candidate that contains the name (or vice versa) is a strong hint */
        if (strstr(cand, name) || strstr(name, cand)) d = d / 2;
        if (d < bestd) { bestd = d; best = cand; }
    }
    size_t len = strlen(name);
    return (best && bestd <= (int)(len / 2 + 2)) ? best : NULL;
}

static const char *node_scalar(yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* A YAML node as JSON (teacher.extra_body written as a mapping): quoted scalars are strings; plain ones
 * true/false/null, numbers, or strings. NULL when nested deeper than 32. */
static json_t *yaml_to_json(yaml_document_t *doc, yaml_node_t *n, int depth) {
    if (!n || depth > 32) return NULL;
    if (n->type == YAML_MAPPING_NODE) {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            json_t *v = yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
            if (!k || k->type != YAML_SCALAR_NODE || !v) {
                json_decref(v);
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, node_scalar(k), v);
        }
        return o;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            json_t *v = yaml_to_json(doc, yaml_document_get_node(doc, *it), depth + 1);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    const char *v = node_scalar(n);
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_string(v);
    if (strcmp(v, "true") == 0) return json_true();
    if (strcmp(v, "false") == 0) return json_false();
    if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0 || !v[0]) return json_null();
    char *end;
    long long i = strtoll(v, &end, 10);
    if (*end == 0) return json_integer(i);
    double d = strtod(v, &end);
    if (*end == 0 && isfinite(d)) return json_real(d);
    return json_string(v);
}

static int apply_document(kd_config *cfg, yaml_document_t *doc, const char *name, kd_error *err) {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    char where[1200];
    if (!root) return KD_OK; /* empty file: all defaults */
    if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0) return KD_OK;
    if (root->type != YAML_MAPPING_NODE) {
        snprintf(where, sizeof where, "%s:%zu:%zu", name, root->start_mark.line + 1, root->start_mark.column + 1);
        return kd_error_set(err, KD_ERR_PARSE, "%s: the top level must be a mapping of sections (process_supervision:, train:, ...)", where);
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        snprintf(where, sizeof where, "%s:%zu:%zu", name, kn->start_mark.line + 1, kn->start_mark.column + 1);
        int drc = kd_yaml_check_key(doc, root, p, name, err);
        if (drc) return drc;
        if (kn->type != YAML_SCALAR_NODE)
            return kd_error_set(err, KD_ERR_PARSE, "%s: section names must be plain words", where);
        const char *sec = node_scalar(kn);
        if (!section_exists(sec)) {
            const char *near = nearest(NULL, sec);
            if (near) return kd_error_set(err, KD_ERR_INVALID, "%s: unknown section '%s' (did you mean '%s'?)", where, sec, near);
            return kd_error_set(err, KD_ERR_INVALID, "%s: unknown section '%s' (known: process_supervision, model, train, kd, teacher, generate, eval)", where, sec);
        }
        if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0) continue; /* "section:" with nothing */
        if (vn->type != YAML_MAPPING_NODE) {
            snprintf(where, sizeof where, "%s:%zu:%zu", name, vn->start_mark.line + 1, vn->start_mark.column + 1);
            return kd_error_set(err, KD_ERR_PARSE, "%s: section '%s' must be a mapping of key: value", where, sec);
        }
        for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
            yaml_node_t *k2 = yaml_document_get_node(doc, q->key), *v2 = yaml_document_get_node(doc, q->value);
            snprintf(where, sizeof where, "%s:%zu:%zu", name, k2->start_mark.line + 1, k2->start_mark.column + 1);
            if (k2->type != YAML_SCALAR_NODE) return kd_error_set(err, KD_ERR_PARSE, "%s: keys must be plain words", where);
            if ((drc = kd_yaml_check_key(doc, vn, q, name, err))) return drc;
            const char *key = node_scalar(k2);
            const key_spec *spec = find_key(sec, key);
            if (!spec) {
                const char *near = nearest(sec, key);
                /* the key may belong to another section */
                char other[256] = "";
                for (int i = 0; i < NKEYS; i++)
                    if (strcmp(KEYS[i].key, key) == 0 && strlen(other) + strlen(KEYS[i].section) + 8 < sizeof other)
                        snprintf(other + strlen(other), sizeof other - strlen(other), "%s'%s'", other[0] ? " or " : "", KEYS[i].section);
                if (near) return kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' in section '%s' (did you mean '%s'?)", where, key, sec, near);
                if (other[0]) return kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' in section '%s' (it belongs in section %s)", where, key, sec, other);
                return kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' in section '%s' (see docs/configuration.md for the keys)", where, key, sec);
            }
            snprintf(where, sizeof where, "%s:%zu:%zu", name, v2->start_mark.line + 1, v2->start_mark.column + 1);
            if (spec->type == T_LIST) {
                kd_string_list *l = (kd_string_list *)((char *)cfg + spec->offset);
                if (v2->type == YAML_SCALAR_NODE && v2->data.scalar.length == 0) { list_free(l); continue; }
                if (v2->type != YAML_SEQUENCE_NODE)
                    return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: expected a list like [a, b]", where, sec, key);
                list_free(l);
                for (yaml_node_item_t *it = v2->data.sequence.items.start; it < v2->data.sequence.items.top; it++) {
                    yaml_node_t *e = yaml_document_get_node(doc, *it);
                    if (e->type != YAML_SCALAR_NODE) {
                        snprintf(where, sizeof where, "%s:%zu:%zu", name, e->start_mark.line + 1, e->start_mark.column + 1);
                        return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: list items must be strings", where, sec, key);
                    }
                    if (list_push(l, node_scalar(e)) != 0) return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", where);
                }
                continue;
            }
            if (spec->offset == F(teacher, extra_body) && v2->type == YAML_MAPPING_NODE) { /* a mapping, as JSON */
                json_t *j = yaml_to_json(doc, v2, 0);
                char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
                json_decref(j);
                if (!txt) return kd_error_set(err, KD_ERR_INVALID, "%s: teacher.extra_body: cannot read it as JSON (nested too deep?)", where);
                int rc = set_scalar(cfg, spec, txt, where, err);
                free(txt);
                if (rc) return rc;
                continue;
            }
            if (v2->type != YAML_SCALAR_NODE)
                return kd_error_set(err, KD_ERR_INVALID, "%s: %s.%s: expected a single value, got a %s", where, sec, key,
                                    v2->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
            int rc = set_scalar(cfg, spec, node_scalar(v2), where, err);
            if (rc) return rc;
        }
    }
    return KD_OK;
}

int kd_config_load_string(kd_config *cfg, const char *yaml, const char *name, kd_error *err) {
    yaml_document_t doc;
    int rc = kd_yaml_load(yaml, name, &doc, err);
    if (rc) return rc;
    rc = apply_document(cfg, &doc, name, err);
    yaml_document_delete(&doc);
    return rc;
}

int kd_config_load_file(kd_config *cfg, const char *path, kd_error *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = kd_read_file(path, &text, &len, err);
    if (rc) return rc;
    if (strlen(text) != len) {
        free(text);
        return kd_error_set(err, KD_ERR_PARSE, "%s: contains a NUL byte; a config must be UTF-8 text", path);
    }
    rc = kd_config_load_string(cfg, text, path, err);
    free(text);
    return rc;
}

void kd_config_defaults(kd_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < NKEYS; i++) {
        if (KEYS[i].type == T_LIST) continue;
        kd_error e;
        set_scalar(cfg, &KEYS[i], KEYS[i].dflt, "defaults", &e);
    }
}

int kd_config_set(kd_config *cfg, const char *assignment, kd_error *err) {
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq)
        return kd_error_set(err, KD_ERR_INVALID, "--set '%s': expected section.key=value (for example --set train.lr=0.0005)", assignment);
    char sec[128], key[128];
    size_t ls = (size_t)(dot - assignment), lk = (size_t)(eq - dot - 1);
    if (ls >= sizeof sec || lk >= sizeof key) return kd_error_set(err, KD_ERR_INVALID, "--set '%s': name too long", assignment);
    memcpy(sec, assignment, ls); sec[ls] = 0;
    memcpy(key, dot + 1, lk); key[lk] = 0;
    const char *val = eq + 1;
    size_t cap = strlen(assignment) + 64;
    char *doc = malloc(cap);
    if (!doc) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    snprintf(doc, cap, "%s:\n  %s: %s\n", sec, key, val);
    char name[300];
    snprintf(name, sizeof name, "--set %.*s", 280, assignment);
    int rc = kd_config_load_string(cfg, doc, name, err);
    free(doc);
    return rc;
}

/* A YAML double-quoted scalar: backslash, quote and control bytes escaped, so that any string
 * (newlines included, which plain YAML line folding would turn into spaces) reads back unchanged. */
static void yaml_quote(char *out, size_t cap, const char *s) {
    size_t n = 0;
    if (n + 1 < cap) out[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        const unsigned char *u = (const unsigned char *)s;
        /* YAML reads these as line breaks (and folds them) or as a BOM: escape them too */
        if (c == 0xE2 && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9)) {
            out[n++] = '\\';
            out[n++] = u[2] == 0xA8 ? 'L' : 'P';
            s += 2;
            continue;
        }
        if (c == 0xC2 && u[1] == 0x85) {
            out[n++] = '\\';
            out[n++] = 'N';
            s += 1;
            continue;
        }
        if (c == 0xEF && u[1] == 0xBB && u[2] == 0xBF) {
            n += (size_t)snprintf(out + n, cap - n, "\\uFEFF");
            s += 2;
            continue;
        }
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (c == '\t') {
            out[n++] = '\\';
            out[n++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    if (n + 1 < cap) out[n++] = '"';
    out[n] = 0;
}

/* A growable output buffer for the dump; `ok` turns 0 on allocation failure. */
typedef struct dump_buf {
    char *p;
    size_t n, cap;
    int ok;
} dump_buf;

static void db_put(dump_buf *b, const char *s) {
    size_t len = strlen(s);
    if (!b->ok) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->cap + len + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->ok = 0;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len + 1);
    b->n += len;
}

static void db_put_quoted(dump_buf *b, const char *s) {
    size_t cap = strlen(s) * 4 + 12; /* every byte may become \xHH, plus the quotes and room */
    char *q = malloc(cap);
    if (!q) {
        b->ok = 0;
        return;
    }
    yaml_quote(q, cap, s);
    db_put(b, q);
    free(q);
}

char *kd_config_dump(const kd_config *cfg) {
    dump_buf b = {NULL, 0, 0, 1};
    const char *cur = "";
    for (int i = 0; i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        const char *base = (const char *)cfg + k->offset;
        if (strcmp(cur, k->section) != 0) {
            db_put(&b, k->section);
            db_put(&b, ":\n");
            cur = k->section;
        }
        db_put(&b, "  ");
        db_put(&b, k->key);
        db_put(&b, ": ");
        char num[64];
        switch (k->type) {
        case T_FLOAT: snprintf(num, sizeof num, "%.17g", *(const double *)base); db_put(&b, num); break;
        case T_INT: snprintf(num, sizeof num, "%lld", (long long)*(const int64_t *)base); db_put(&b, num); break;
        case T_BOOL: db_put(&b, *(const int *)base ? "true" : "false"); break;
        case T_STR:
            if (strcmp(k->key, "url") == 0) { /* never record a password given in the URL */
                char shown[KD_CFG_PATH];
                db_put_quoted(&b, kd_url_redact(shown, sizeof shown, base));
            } else db_put_quoted(&b, base);
            break;
        case T_LIST: {
            const kd_string_list *l = (const kd_string_list *)base;
            db_put(&b, "[");
            for (int j = 0; j < l->count; j++) {
                if (j) db_put(&b, ", ");
                db_put_quoted(&b, l->items[j]);
            }
            db_put(&b, "]");
            break;
        }
        }
        db_put(&b, "\n");
    }
    if (!b.ok) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void kd_config_hash(const kd_config *cfg, char hex[65]) {
    char *d = kd_config_dump(cfg);
    kd_sha256_hex(d ? d : "", d ? strlen(d) : 0, hex);
    free(d);
}

void kd_config_free(kd_config *cfg) { list_free(&cfg->process_supervision.tool_names); }

int kd_config_copy(kd_config *dst, const kd_config *src, kd_error *err) {
    *dst = *src;
    dst->process_supervision.tool_names.items = NULL;
    dst->process_supervision.tool_names.count = 0;
    for (int i = 0; i < src->process_supervision.tool_names.count; i++)
        if (list_push(&dst->process_supervision.tool_names, src->process_supervision.tool_names.items[i]) != 0)
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory copying config");
    return KD_OK;
}

void kd_config_print_reference(void *file) {
    FILE *f = file;
    fprintf(f, "| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    static const char *tn[] = {"number", "integer", "bool", "string", "list"};
    for (int i = 0; i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        fprintf(f, "| `%s.%s` | %s | `%s` | %s%s%s%s |\n", k->section, k->key, tn[k->type], k->dflt, k->doc,
                k->choices ? " One of: `" : "", k->choices ? k->choices : "", k->choices ? "`." : "");
    }
}
