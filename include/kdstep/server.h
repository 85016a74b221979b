/* The stub teacher as an OpenAI-compatible HTTP server (libmicrohttpd), with fault injection.
 *
 * Serves POST /v1/chat/completions (tools, tool_calls, logprobs with top_logprobs, usage), POST
 * /v1/completions with vLLM's prompt_logprobs (teacher-forced scoring), GET /v1/models and GET /stats
 * (the fault counters as JSON). Binds to 127.0.0.1 unless told otherwise. Each request draws one
 * fault from the configured rates (deterministic in seed and arrival order): 500, 429 with
 * Retry-After, a 200 with a broken JSON body, a body cut off mid-transfer, a dropped connection, or
 * a stall that never answers. One thread per connection, so latency and stalls block nobody else.
 * The stub is deterministic, so answers are cached per request body (only the id differs).
 */
#ifndef KDSTEP_SERVER_H
#define KDSTEP_SERVER_H

#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/teacher.h"

typedef struct kd_server_options {
    const char *host;    /* NULL: 127.0.0.1 */
    int port;            /* 0: any free port (see kd_server_port) */
    double latency_ms;   /* every answer goes out this long after its request came in (computing it included) */
    double fail_rate;    /* 500 */
    double rate_limit;   /* 429 + Retry-After */
    double malformed_rate;
    double truncate_rate;
    double drop_rate;
    double stall_rate;
    int retry_after_s;   /* value of Retry-After (default 1) */
    int64_t seed;
    int echo_auth;       /* tests only: echo the Authorization header in 500 bodies, to prove redaction */
    int tokenizer_set;   /* informational */
    const char *api_key; /* when set, requests must carry "Authorization: Bearer <key>" (401 otherwise) */
    int thinking;        /* default of chat_template_kwargs.enable_thinking (a request may say otherwise) */
} kd_server_options;

/* Request limits: each refused with a 4xx naming the limit (413 for the body). */
#define KD_SERVER_MAX_BODY (16 << 20)
#define KD_SERVER_MAX_TOOLS 4096
#define KD_SERVER_MAX_TOKENS 1048576
#define KD_SERVER_MAX_TOP_LOGPROBS 20
#define KD_SERVER_MAX_PROMPT_TOKENS 32768
#define KD_SERVER_MAX_NAMES 8 /* served model names */

enum { KD_FAULT_NONE, KD_FAULT_FAIL, KD_FAULT_RATE_LIMIT, KD_FAULT_MALFORMED, KD_FAULT_TRUNCATE, KD_FAULT_DROP, KD_FAULT_STALL, KD_FAULT_COUNT };

typedef struct kd_server_counts {
    int64_t requests;
    int64_t faults[KD_FAULT_COUNT]; /* [KD_FAULT_NONE] = answered normally */
    int64_t bad_requests;
} kd_server_counts;

typedef struct kd_server kd_server;

/* The stub is borrowed (used from many threads: it is read-only once open). model: the served model
 * names, comma-separated (NULL: "stub-teacher"; at most KD_SERVER_MAX_NAMES, as vLLM's
 * --served-model-name). A request whose "model" is none of them gets vLLM's 404; one without "model"
 * is served by the first. */
int kd_server_start(kd_server **out, const kd_server_options *opt, kd_stub_teacher *stub, const char *model,
                    kd_error *err);
int kd_server_port(const kd_server *srv);
void kd_server_get_counts(kd_server *srv, kd_server_counts *out);
/* One line with every counter, e.g. "requests=500 ok=400 fail=100 ...". */
void kd_server_format_counts(const kd_server_counts *c, char *buf, size_t cap);
/* Stop (stalled handlers are released) and free. */
void kd_server_stop(kd_server *srv);
const char *kd_fault_name(int fault);

#endif
