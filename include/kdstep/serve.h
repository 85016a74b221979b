/* `kdstep serve`: a student checkpoint behind an OpenAI-compatible HTTP API (libmicrohttpd).
 *
 *   GET  /v1/models            the one served model
 *   POST /v1/chat/completions  chat, tools, tool_calls, logprobs, vLLM's prompt_logprobs, stream
 *   POST /v1/completions       text completion, logprobs, prompt_logprobs (teacher-forced scoring), stream
 *   GET  /health               200 when the engine runs
 *
 * One thread per connection (up to max_connections); every request goes to the shared engine
 * (include/kdstep/engine.h), which batches them. Bounds: request bodies of at most max_body bytes
 * (413), max_tokens at most max_tokens (400), prompt + max_tokens within the model's context (400),
 * a full queue or a full KV cache budget (engine max_kv_bytes) answers 503 with Retry-After. Binds 127.0.0.1 unless told otherwise. With an API key, every request
 * must carry "Authorization: Bearer KEY" (compared in constant time; 401 otherwise). A streaming
 * client that goes away cancels its sequence at the next token it would have been sent.
 */
#ifndef KDSTEP_SERVE_H
#define KDSTEP_SERVE_H

#include <stddef.h>

#include "kdstep/engine.h"
#include "kdstep/error.h"

typedef struct kd_serve_options {
    const char *model_dir;
    const char *model_name;  /* what requests name in "model"; NULL: model_dir as given (as vLLM) */
    const char *host;        /* NULL: 127.0.0.1 */
    int port;                /* 0: any free port (kd_serve_port) */
    const char *api_key;     /* NULL or "": no key */
    size_t max_body;         /* 0: 8 MiB */
    int max_tokens;          /* 0: 4096 (never more than the model's context) */
    int max_connections;     /* 0: 64 */
    int guide;               /* kd_guide_mode for chat requests with tools (0: unguided) */
    kd_engine_options engine;
    const char *log_requests; /* NULL, or a JSON Lines file: one {"endpoint", "prompt_token_ids", "response"}
                                 per answered non-streaming request (for audits and tests; holds prompts) */
} kd_serve_options;

typedef struct kd_serve kd_serve;

int kd_serve_start(const kd_serve_options *opt, kd_serve **out, kd_error *err);
int kd_serve_port(const kd_serve *s);
kd_engine *kd_serve_engine(kd_serve *s);
void kd_serve_stop(kd_serve *s);

#endif
