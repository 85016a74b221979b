/* Teachers: one asynchronous interface over the built-in stub teacher and OpenAI-compatible servers.
 *
 * A caller submits requests (OpenAI `messages`, optional `tools`, sampling and logprob options, a
 * tag of its own), or asks for a finished conversation to be scored (the teacher's top-k at every
 * token: kd_teacher_submit_score), and collects completions as they finish, in any order, each
 * carrying its tag.
 * Every submitted request comes back exactly once: as a completion, or as a recorded failure
 * (status != KD_OK, with the last HTTP status and an excerpt of the last body). Backends:
 *   - "stub": the in-process deterministic teacher (src/teacher/stub.c); answers at submit time.
 *   - http(s)://host:port: the libcurl multi client (src/teacher/client.c): N requests in flight,
 *     connection reuse, timeouts, retries with exponential backoff + jitter, 429 Retry-After and an
 *     AIMD in-flight limit; scoring requests (vLLM prompt_logprobs) go through the same machinery.
 * The API key is read from the environment variable named by teacher.api_key_env and appears in no
 * log line, output or error message (bodies that echo it are redacted).
 */
#ifndef KDSTEP_TEACHER_H
#define KDSTEP_TEACHER_H

#include <jansson.h>
#include <stdint.h>

#include "kdstep/config.h"
#include "kdstep/error.h"
#include "kdstep/registry.h"
/* tokenizer.h (another branch) trips -Wcomment in this version; harmless, silenced here only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcomment"
#include "kdstep/tokenizer.h"
#pragma GCC diagnostic pop

typedef struct kd_teacher kd_teacher;

typedef struct kd_teacher_request {
    const json_t *messages; /* OpenAI chat messages (borrowed; copied at submit) */
    const json_t *tools;    /* OpenAI tools array, or NULL: the stub then uses its registry */
    uint64_t tag;           /* the caller's id, returned with the completion */
    /* Per-request overrides; a negative value means "use the config's". */
    double temperature;
    int64_t max_tokens;
    int64_t top_logprobs; /* 0 asks for no logprobs */
    int64_t seed;
} kd_teacher_request;

/* Set every override to "use the config". */
void kd_teacher_request_init(kd_teacher_request *req);

typedef struct kd_teacher_tool_call {
    char *id;
    char *name;
    char *arguments; /* JSON text, as the teacher wrote it (may be invalid: it is the teacher's) */
} kd_teacher_tool_call;

/* Per-token top-k log-probabilities of the response, flat arrays. The seven arrays are one allocation
 * that starts at `tokens` (made by kd_teacher_logprobs_alloc, freed by kd_teacher_logprobs_free). */
typedef struct kd_teacher_logprobs {
    int n;                  /* response tokens */
    int k;                  /* columns per token */
    int32_t *token_ids;     /* [n] sampled token id; -1 when the endpoint gave strings only */
    char **tokens;          /* [n] sampled token text */
    float *token_logprobs;  /* [n] */
    int32_t *topk_ids;      /* [n*k] -1 for unknown ids and padding */
    char **topk_tokens;     /* [n*k] NULL for padding */
    float *topk_logprobs;   /* [n*k] -INFINITY for padding, sorted descending */
    float *tail_logprob;    /* [n] log of the mass outside the top-k (-INFINITY if none) */
    char *arena;            /* when set, the token strings point into it (one allocation) */
} kd_teacher_logprobs;

#define KD_TEACHER_MAX_ATTEMPTS_LOGGED 32

typedef struct kd_teacher_attempt {
    double start_s, end_s; /* kd_teacher_now() clock */
    int http_status;       /* 0: no HTTP answer (connection error, timeout) */
    int curl_code;
    double retry_after_s;  /* Retry-After from a 429/503, or 0 */
} kd_teacher_attempt;

typedef struct kd_teacher_completion {
    uint64_t tag;
    int status;           /* KD_OK, or why it failed for good */
    char *error;          /* NULL when status == KD_OK; never contains the API key */
    int http_status;      /* last HTTP status (0: none) */
    char *body_excerpt;   /* first bytes of the last failed body (redacted), or NULL */
    int attempts;
    kd_teacher_attempt attempt_log[KD_TEACHER_MAX_ATTEMPTS_LOGGED];

    char *text;           /* assistant text; for the stub, the raw text with tool-call markup */
    kd_teacher_tool_call *tool_calls;
    int n_tool_calls;
    char *finish_reason;  /* "stop", "tool_calls", "length" */
    int64_t prompt_tokens, completion_tokens;
    kd_teacher_logprobs lp; /* lp.n == 0 when the endpoint gave none */
    int scored;            /* 1: an answer to kd_teacher_submit_score (lp: every token of the conversation) */
    double submit_s, done_s;
} kd_teacher_completion;

void kd_teacher_completion_free(kd_teacher_completion *c);

typedef struct kd_teacher_stats {
    int64_t submitted, completed, failed;
    int64_t attempts, retries;
    int64_t http_429, http_5xx, conn_errors, timeouts, parse_errors;
    int in_flight;         /* transfers running now */
    int in_flight_limit;   /* current AIMD limit */
    int min_in_flight_limit;
    int max_in_flight_seen;
    double parse_s;        /* seconds spent parsing answers (HTTP client; wall clock around each parse) */
} kd_teacher_stats;

/* Open the backend named by cfg->teacher.url. `reg` (the registry the stub picks from when a request
 * carries no tools) and `tok` (the student tokenizer the stub's logprobs use; NULL: one token per
 * byte) are borrowed and must outlive the teacher. */
int kd_teacher_open(kd_teacher **out, const kd_config *cfg, const kd_registry *reg, const kd_tokenizer *tok,
                    kd_error *err);
void kd_teacher_close(kd_teacher *t);

/* Queue a request. Never blocks on the network. */
int kd_teacher_submit(kd_teacher *t, const kd_teacher_request *req, kd_error *err);
/* Score a finished conversation (teacher.scoring): one request for the whole of it. The completion
 * comes back through kd_teacher_next with `scored` set and lp holding one row per token of the
 * teacher's own rendering (see kd_stub_score): the stub scores in process; an HTTP teacher is asked
 * POST /v1/chat/completions with the messages and tools, prompt_logprobs K, max_tokens 1,
 * add_generation_prompt false (scoring: chat), or POST /v1/completions over the text kdstep renders
 * (scoring: completions). lp.tokens hold each token's text, lp.token_ids its id. */
int kd_teacher_submit_score(kd_teacher *t, const json_t *messages, const json_t *tools, uint64_t tag, kd_error *err);

enum { KD_SCORING_NONE = 0, KD_SCORING_CHAT = 1, KD_SCORING_COMPLETIONS = 2 };
/* Parse teacher.scoring: "none" | "chat" | "completions". */
int kd_scoring_from_name(const char *name, int *mode, kd_error *err);

/* Wait up to timeout_s (0: just look) for a finished request. Returns KD_OK with *out set (free it with
 * kd_teacher_completion_free + free) or *out NULL when none finished in time. */
int kd_teacher_next(kd_teacher *t, double timeout_s, kd_teacher_completion **out, kd_error *err);
/* Submitted and not yet collected. */
int64_t kd_teacher_pending(const kd_teacher *t);
void kd_teacher_get_stats(const kd_teacher *t, kd_teacher_stats *st);

/* Monotonic seconds. */
double kd_teacher_now(void);

/* Parse an OpenAI /v1/chat/completions response body into c (content, tool_calls, finish_reason,
 * usage, logprobs.content[].top_logprobs). The tail is log(1 - sum of the top-k). */
int kd_teacher_parse_chat_response(const char *body, size_t len, kd_teacher_completion *c, kd_error *err);
/* The same with jansson: slower (a tree of objects), kept as the reference the fast scanner is tested
 * and fuzzed against. */
int kd_teacher_parse_chat_response_ref(const char *body, size_t len, kd_teacher_completion *c, kd_error *err);
/* Parse vLLM's prompt_logprobs (top level of a chat completion, or choices[0] of a completion) with
 * top_k columns into lp: one row per prompt token; row i from entry i, whose first key is the prompt
 * token itself (vLLM writes the token, then the top-k; "token_id:N" keys/texts are understood) and
 * whose entries of rank 1..top_k are the columns. Entry 0 (null) gives an empty row. One pass, no tree. */
int kd_teacher_parse_prompt_logprobs(const char *body, size_t len, int top_k, kd_teacher_logprobs *lp, kd_error *err);
/* The same with jansson: the reference the fast one is tested against. Both read "prompt_token_ids"
 * beside the list, when the response has them (vLLM's return_token_ids; kdstep serve always): they
 * name each row's prompt token whatever the order of its entries (kd_teacher_logprobs_use_prompt_ids). */
int kd_teacher_parse_prompt_logprobs_ref(const char *body, size_t len, int top_k, kd_teacher_logprobs *lp, kd_error *err);
/* Rows whose first entry is not the prompt token of ids[n] (n == lp->n) get that id, and its text and
 * logprob from the row's top-k (none when it is not there). dup_texts: lp owns each text (the jansson
 * reference) rather than an arena. */
void kd_teacher_logprobs_use_prompt_ids(kd_teacher_logprobs *lp, const int32_t *ids, size_t n, int dup_texts);
void kd_teacher_logprobs_free(kd_teacher_logprobs *lp);
int kd_teacher_logprobs_alloc(kd_teacher_logprobs *lp, int n, int k);

/* ---- the stub teacher, usable directly (the server and tests use it) ---- */

typedef struct kd_stub_teacher kd_stub_teacher;

typedef struct kd_stub_options {
    int tool_call_format;  /* KD_TOOL_FORMAT_HERMES or KD_TOOL_FORMAT_INLINE_JSON */
    double malformed_rate; /* share of outputs made malformed on purpose */
    double temperature;    /* softmax temperature of the logprobs (<= 0: 1) */
    int thinking;          /* write a <think> block before each answer (chat_template_kwargs.enable_thinking) */
    int64_t seed;
} kd_stub_options;

enum { KD_TOOL_FORMAT_HERMES = 0, KD_TOOL_FORMAT_INLINE_JSON = 1 };

int kd_stub_open(kd_stub_teacher **out, const kd_stub_options *opt, const kd_registry *reg, const kd_tokenizer *tok,
                 kd_error *err);
void kd_stub_close(kd_stub_teacher *s);
/* Answer one request (deterministic in seed, messages, tools). top_k 0: no logprobs. */
int kd_stub_complete(kd_stub_teacher *s, const json_t *messages, const json_t *tools, int top_k, int64_t seed,
                     kd_teacher_completion *c, kd_error *err);
/* Which tool the stub would call for a user prompt (NULL: it answers in text). For measuring. */
const char *kd_stub_choose_tool(kd_stub_teacher *s, const char *prompt, const json_t *tools);
/* Score a rendered conversation as vLLM's prompt_logprobs does: one row per token of `text` (the stub's
 * tokenizer), row t the distribution of token t given the tokens before it; row 0 is empty (ids -1),
 * as vLLM's first entry is null. Inside assistant turns (after "<|im_start|>assistant\n" through
 * "<|im_end|>") the written token has most mass and alternatives are boosted (the offered tools' names
 * at tool-name positions, JSON structure in arguments); elsewhere the token is likely, with no boosted
 * alternatives. A turn that answers a user turn is also held against what the stub itself would write
 * there (kd_stub_complete on that user text, without a think block): at the first token that leaves
 * it, the stub's own token has most mass and the written one is a plausible alternative (the teacher's
 * view of another writer's prefix, for on-policy samples); the stub's own text scores unchanged. `tools` (an OpenAI tools array, or NULL: the registry) gives the name alternatives.
 * Tails are computed from the top-k as a client computes them, so every backend gives the same bits. */
int kd_stub_score(kd_stub_teacher *s, const char *text, size_t len, const json_t *tools, int top_k, int64_t seed,
                  kd_teacher_logprobs *lp, kd_error *err);
/* The same over OpenAI messages rendered with kd_chat_render_json (no generation prompt). */
int kd_stub_score_conversation(kd_stub_teacher *s, const json_t *messages, const json_t *tools, int top_k, int64_t seed,
                               kd_teacher_logprobs *lp, kd_error *err);
/* kd_stub_complete with chat_template_kwargs.enable_thinking: 1 writes a <think> block first. */
int kd_stub_complete_thinking(kd_stub_teacher *s, const json_t *messages, const json_t *tools, int top_k, int64_t seed,
                              int thinking, kd_teacher_completion *c, kd_error *err);
/* Parse "hermes" | "inline_json". */
int kd_tool_format_from_name(const char *name, int *fmt, kd_error *err);

#endif
