/* The OpenAI API of `kdstep serve`: requests to engine parameters, engine output to response JSON.
 * No I/O here (src/serve/http.c is the HTTP side), so every rule is unit-tested.
 *
 * Formats (https://platform.openai.com/docs/api-reference/chat, .../completions):
 *   chat:        messages (+ tools: rendered by the model's chat template), max_tokens or
 *                max_completion_tokens, temperature, top_p, seed, logprobs + top_logprobs, stream
 *                (+ stream_options.include_usage); answers carry message.content, message.tool_calls
 *                (Hermes <tool_call> blocks parsed, finish_reason "tool_calls") and logprobs.content.
 *   completions: prompt (a string), max_tokens, temperature, top_p, seed, logprobs (an int: top-k),
 *                echo is refused, stream.
 *   vLLM's prompt_logprobs (https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html,
 *   extra parameters): an int k; the answer has "prompt_logprobs": [null, {"<id>": {"logprob",
 *   "rank", "decoded_token"}, ...}, ...] with the top k and the actual token, and "prompt_token_ids".
 *   In completions they sit in choices[0], in chat at the top level, as vLLM puts them.
 * Errors are {"error": {"message", "type", "param", "code"}} with the HTTP status in *status.
 */
#ifndef KDSTEP_SERVE_API_H
#define KDSTEP_SERVE_API_H

#include <jansson.h>
#include <stddef.h>

#include "kdstep/engine.h"
#include "kdstep/error.h"

enum { KD_API_CHAT = 0, KD_API_COMPLETIONS = 1 };

typedef struct kd_api_limits {
    int max_tokens;       /* the most a request may ask for (and the default when it asks nothing) */
    const char *model;    /* the served model's name: requests must name it */
    int guide;            /* kd_guide_mode: chat requests with tools decode guided (kdstep serve --guide) */
} kd_api_limits;

typedef struct kd_api_request {
    int kind;
    int stream, include_usage;
    int logprobs;      /* chat: logprobs true; completions: logprobs given */
    int has_tools;
    kd_gen_params gp;
    int32_t *ids;      /* the prompt's tokens (malloc'd) */
    int n_ids;
} kd_api_request;

/* Parse and render/tokenize. On error returns nonzero, sets status (HTTP code 400, 404 ..., and the
 * request field at fault) and err. */
typedef struct kd_api_status {
    int code;
    char param[48];
} kd_api_status;
int kd_api_parse(const kd_student *st, int kind, const char *body, size_t len, const kd_api_limits *lim,
                 kd_api_request *out, kd_api_status *status, kd_error *err);
void kd_api_request_free(kd_api_request *r);

/* The generated text (stop token excluded) split as vLLM's parsers do: with parse_think, a leading
 * <think>...</think> block is reasoning, not content (its qwen3 reasoning parser; chat only); then
 * content before the first <tool_call>, and the calls (its Hermes tool parser; arguments written as
 * Python's json.dumps). With has_tools 0 the rest is all content. *content may be NULL (no text);
 * *calls is a JSON array of OpenAI tool_calls (never NULL). */
int kd_api_split_output(const kd_student *st, const int32_t *ids, int n, int has_tools, int parse_think, const char *id_prefix,
                        char **content, json_t **calls, kd_error *err);

/* The full (non-streaming) response body. tokens[n] are what the engine produced; state KD_SEQ_*. */
char *kd_api_response(const kd_student *st, const kd_api_request *r, const char *id, const char *model, long created,
                      const kd_seq *seq, int n, int state, kd_error *err);

/* Streaming: the SSE events for tokens [from, n) (and the closing ones when state is final).
 * `sent` tracks the text already sent (bytes of the decoded output). Returns malloc'd text, maybe "". */
typedef struct kd_api_stream {
    size_t sent;   /* bytes of content sent */
    int started;   /* the role chunk went out */
    int finished;  /* [DONE] went out */
} kd_api_stream;
char *kd_api_stream_events(const kd_student *st, const kd_api_request *r, const char *id, const char *model,
                           long created, const kd_seq *seq, int n, int state, kd_api_stream *ss);

#endif
