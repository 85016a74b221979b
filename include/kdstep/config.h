/* Configuration: strict YAML (libyaml) into typed structs with defaults.
 *
 * Keys are declared once, in a table in src/core/config.c (section, key, type, field, range,
 * default, doc). Loading is strict: an unknown section or key, a wrong type or an out-of-range
 * value is an error naming file:line:column and, for unknown names, the nearest known one.
 * `--set section.key=value` goes through the same parser, so overrides are checked the same way.
 * Every key, its default and meaning is listed by `kdstep config --list` (docs/configuration.md).
 */
#ifndef KDSTEP_CONFIG_H
#define KDSTEP_CONFIG_H

#include <stdint.h>
#include "kdstep/error.h"

#define KD_CFG_STR 256
#define KD_CFG_PATH 1024

typedef struct kd_string_list {
    char **items;
    int count;
} kd_string_list;

typedef struct kd_config {
    struct {
        int enabled;                      /* false == --no-process-supervision */
        double loss_json_validity_weight; /* seed default 0.3 */
        double loss_tool_select_weight;   /* seed default 0.7 */
        double loss_integration_weight;   /* default 0 */
        int json_ce;                      /* JSON-validity part 1: CE on json_mask */
        int json_grammar;                 /* JSON-validity part 2: grammar term */
        kd_string_list tool_names;        /* optional: restrict extraction to these */
    } process_supervision;
    struct {
        char preset[KD_CFG_STR]; /* tiny | small | qwen3-0.6b | any configs/models/<name>.json */
        char path[KD_CFG_PATH];  /* HF folder; overrides preset */
        char init[KD_CFG_STR];   /* random | pretrained */
    } model;
    struct {
        int64_t micro_batch;
        int64_t grad_accum;
        int64_t seq_len;
        int64_t steps;   /* 0: use epochs */
        int64_t epochs;
        double lr;
        double min_lr_ratio;
        int64_t warmup_steps;
        double weight_decay;
        double adam_beta1, adam_beta2, adam_eps; /* AdamW moments and denominator epsilon */
        int64_t bucket_floats;  /* gradient floats per MPI_Iallreduce bucket */
        double grad_clip;
        int64_t seed;
        int64_t checkpoint_every;
        int64_t eval_every;
        double eval_fraction;  /* share of samples held out for eval */
        int64_t max_bad_steps; /* consecutive NaN/Inf steps before abort */
        int64_t threads;       /* 0: cores / ranks per node */
        double context_lm_weight; /* 0: off; > 0: CE on the window's non-answer tokens (docs/losses.md) */
        int64_t length_buckets; /* 0: off; N: sort N steps' samples by length, micro-batches run at their longest row */
        int64_t prompt_window; /* prompt tokens kept before the answer; 0: the whole prompt (window.h) */
        char save_dtype[KD_CFG_STR];     /* final/ weights: float32 | bfloat16 | float16 */
        char max_shard_size[KD_CFG_STR]; /* final/ shards above this ("5GB"; "0" never) */
    } train;
    struct {
        double weight;
        double temperature;
        char divergence[KD_CFG_STR]; /* forward_kl | reverse_kl | jsd */
        double jsd_beta;
        char onpolicy_divergence[KD_CFG_STR]; /* the divergence on student-written samples */
    } kd;
    struct {
        char url[KD_CFG_PATH];         /* "stub" or http(s)://host:port (OpenAI-compatible) */
        char model[KD_CFG_STR];
        char api_key_env[KD_CFG_STR];  /* name of the env var holding the key; never the key */
        int64_t max_in_flight;
        double connect_timeout_s;
        double timeout_s;
        int64_t max_retries;
        double max_retry_after_s;   /* cap on a server's Retry-After */
        double request_deadline_s;  /* all attempts of one request, retry waits included, end by this */
        int64_t max_response_bytes; /* cap on an answer's decoded size */
        double backoff_base_s;
        int64_t top_logprobs;          /* K */
        double temperature;
        int64_t max_tokens;
        int64_t seed;
        char tool_call_format[KD_CFG_STR]; /* hermes | inline_json */
        double malformed_rate;         /* stub: share of deliberately malformed outputs */
        int insecure_tls;              /* turning TLS verification off takes this explicit flag */
        char scoring[KD_CFG_STR];      /* none | chat | completions: how the finished conversation is scored */
        char extra_body[KD_CFG_PATH];  /* JSON object merged into every chat request, or "" */
        char tool_fixtures[KD_CFG_PATH]; /* optional tool-simulator fixtures file */
    } teacher;
    struct {
        int64_t chunk_size;   /* prompt ids handed to a worker per request */
        int64_t seal_every;   /* samples per sealed HDF5 chunk */
        int64_t max_turns;    /* teacher/tool rounds per conversation */
        int64_t max_seq_len;  /* samples longer than this are recorded as failures */
        int strict;           /* a bad prompt line is fatal */
        char thinking[KD_CFG_STR]; /* drop | keep: a <think> block in the loss or not */
        char filter[KD_CFG_STR];   /* none | json_valid | schema_valid: which conversations become samples */
        char policy[KD_CFG_STR];   /* teacher | student | mixed: who writes the assistant turns */
        char student[KD_CFG_PATH]; /* student checkpoint folder (policy student | mixed) */
        double student_share;      /* mixed: share of prompts the student writes */
        double student_temperature; /* 0 = greedy */
        int64_t student_max_tokens; /* tokens per student turn */
    } generate;
    struct {
        int64_t max_new_tokens;
        double temperature;
        double top_p;
        int64_t seed;
        int64_t batch; /* prompts decoded together per rank */
        char guide[KD_CFG_STR]; /* none | names | json | schema: guided tool calls (include/kdstep/toolguide.h) */
    } eval;
} kd_config;

void kd_config_defaults(kd_config *cfg);
/* Load a YAML file over the current values (call kd_config_defaults first). */
int kd_config_load_file(kd_config *cfg, const char *path, kd_error *err);
int kd_config_load_string(kd_config *cfg, const char *yaml, const char *name, kd_error *err);
/* Apply "section.key=value". */
int kd_config_set(kd_config *cfg, const char *assignment, kd_error *err);
/* Canonical YAML of every key (stable order), for hashing and for recording with outputs.
 * Returns a malloc'd string. */
char *kd_config_dump(const kd_config *cfg);
void kd_config_hash(const kd_config *cfg, char hex[65]);
void kd_config_free(kd_config *cfg);
/* Copy (deep). */
int kd_config_copy(kd_config *dst, const kd_config *src, kd_error *err);

/* Print every key with default and doc, as Markdown table rows (docs/configuration.md). */
void kd_config_print_reference(void *file /* FILE* */);

/* Edit distance, exposed for "did you mean" in other modules. */
int kd_edit_distance(const char *a, const char *b);

#endif
