/* The stub teacher's HTTP server: see include/kdstep/server.h. */
#include "kdstep/server.h"

#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "kdstep/chat.h"
#include "kdstep/hash.h"
#include "kdstep/httpd.h"
#include "kdstep/log.h"

/* The stub is deterministic in the request (messages, tools, options, seed), so an answer, serialized
 * without its id, is kept per request body and served again to the same request: on a 2-core machine
 * the stub's log-softmax and ~60 KB of printed numbers per logprobs answer would otherwise compete with
 * the client it serves (and add queueing delay to --latency-ms). Direct-mapped, collisions overwrite. */
#define ANSWER_CACHE_SLOTS 256
#define ANSWER_CACHE_MAX_BYTES (1u << 20)

typedef struct cached_answer {
    uint64_t h;
    char *key; /* url, NUL, body */
    size_t klen;
    char *tail; /* the JSON after the id */
    size_t tlen;
} cached_answer;

struct kd_server {
    struct MHD_Daemon *d;
    pthread_mutex_t cache_mu;
    cached_answer cache[ANSWER_CACHE_SLOTS];
    kd_server_options opt;
    kd_stub_teacher *stub;
    int thinking; /* the stub's default for chat_template_kwargs.enable_thinking */
    char model[256];          /* the served names, comma-separated, as given (the first answers as "model") */
    const char *names[KD_SERVER_MAX_NAMES]; /* into names_buf */
    char names_buf[256];
    int n_names;
    char host[64];
    atomic_int_fast64_t requests;
    atomic_int_fast64_t faults[KD_FAULT_COUNT];
    atomic_int_fast64_t bad_requests;
    atomic_int stopping;
    int port;
};

static const char *FAULT_NAMES[KD_FAULT_COUNT] = {"ok", "fail", "rate_limited", "malformed", "truncated", "dropped", "stalled"};
const char *kd_fault_name(int f) { return f >= 0 && f < KD_FAULT_COUNT ? FAULT_NAMES[f] : "?"; }

static void sleep_ms(double ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000.0) * 1e6)};
    nanosleep(&ts, NULL);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static char *cache_key(const char *url, const char *body, size_t blen, size_t *klen) {
    size_t ul = strlen(url);
    char *k = malloc(ul + 1 + blen);
    if (!k) return NULL;
    memcpy(k, url, ul + 1);
    memcpy(k + ul + 1, body, blen);
    *klen = ul + 1 + blen;
    return k;
}

/* A copy of the cached answer's tail for this key, or NULL. */
static char *cache_get(kd_server *s, const char *key, size_t klen, uint64_t h, size_t *tlen) {
    char *out = NULL;
    pthread_mutex_lock(&s->cache_mu);
    cached_answer *a = &s->cache[h % ANSWER_CACHE_SLOTS];
    if (a->tail && a->h == h && a->klen == klen && memcmp(a->key, key, klen) == 0 && (out = malloc(a->tlen + 1))) {
        memcpy(out, a->tail, a->tlen + 1);
        *tlen = a->tlen;
    }
    pthread_mutex_unlock(&s->cache_mu);
    return out;
}

/* Keep a copy of tail for this key; takes ownership of key. */
static void cache_put(kd_server *s, char *key, size_t klen, uint64_t h, const char *tail, size_t tlen) {
    char *t = tlen <= ANSWER_CACHE_MAX_BYTES ? malloc(tlen + 1) : NULL;
    if (!t) {
        free(key);
        return;
    }
    memcpy(t, tail, tlen + 1);
    pthread_mutex_lock(&s->cache_mu);
    cached_answer *a = &s->cache[h % ANSWER_CACHE_SLOTS];
    free(a->key);
    free(a->tail);
    *a = (cached_answer){h, key, klen, t, tlen};
    pthread_mutex_unlock(&s->cache_mu);
}

static int draw_fault(kd_server *s, int64_t n) {
    uint64_t h = (uint64_t)s->opt.seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ULL);
    double u = kd_rand_uniform(&h);
    double rates[KD_FAULT_COUNT] = {0, s->opt.fail_rate, s->opt.rate_limit, s->opt.malformed_rate, s->opt.truncate_rate,
                                    s->opt.drop_rate, s->opt.stall_rate};
    double acc = 0;
    for (int f = 1; f < KD_FAULT_COUNT; f++) {
        acc += rates[f];
        if (u < acc) return f;
    }
    return KD_FAULT_NONE;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned code, const char *body, size_t len,
                                 const char *retry_after) {
    return kd_http_send(conn, code, body, len, NULL, retry_after);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned code, const char *msg) {
    return kd_http_send_error(conn, code, msg, NULL);
}

/* A request's "model" must be one of the served names. The answer for another is vLLM's
 * (OpenAIServing._check_model, vllm/entrypoints/openai/serving_engine.py: HTTP 404 NOT_FOUND, message
 * "The model `X` does not exist.") in OpenAI's error shape (https://platform.openai.com/docs/guides/error-codes:
 * 404 with code "model_not_found", param "model"); the message also lists the served names. A request
 * without "model" (or null) is served by the first name, as vLLM does since "model" became optional. */
static int model_served(const kd_server *s, const json_t *req) {
    const json_t *m = json_object_get(req, "model");
    if (!m || json_is_null(m)) return 1;
    const char *name = json_string_value(m);
    for (int i = 0; name && i < s->n_names; i++)
        if (strcmp(name, s->names[i]) == 0) return 1;
    return 0;
}

static enum MHD_Result send_unknown_model(const kd_server *s, struct MHD_Connection *conn, const json_t *req) {
    const json_t *m = json_object_get(req, "model");
    kd_sbuf b = {0};
    if (json_is_string(m)) kd_sbuf_printf(&b, "The model `%.200s` does not exist.", json_string_value(m));
    else kd_sbuf_puts(&b, "\"model\" must be a string naming a served model.");
    kd_sbuf_puts(&b, " This server serves:");
    for (int i = 0; i < s->n_names; i++) kd_sbuf_printf(&b, "%s `%s`", i ? "," : "", s->names[i]);
    kd_sbuf_puts(&b, " (GET /v1/models lists them): set teacher.model to one of them, or start the server with "
                     "--served-model-name NAME");
    char *msg = kd_sbuf_take(&b);
    enum MHD_Result r = kd_http_send_error(conn, 404, msg ? msg : "unknown model", "model");
    free(msg);
    return r;
}

/* Token text as a JSON string: invalid UTF-8 (a token may split a character) becomes U+FFFD; the exact
 * bytes go in "bytes", as OpenAI does. */
static void json_token(kd_sbuf *b, const char *t) {
    kd_sbuf_puts(b, "\"");
    const unsigned char *p = (const unsigned char *)(t ? t : "");
    while (*p) {
        unsigned c = *p;
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xC0) == 0x80;
        if (!ok) {
            kd_sbuf_puts(b, "\xEF\xBF\xBD");
            p++;
            continue;
        }
        if (n == 1) {
            if (c == '"') kd_sbuf_puts(b, "\\\"");
            else if (c == '\\') kd_sbuf_puts(b, "\\\\");
            else if (c == '\n') kd_sbuf_puts(b, "\\n");
            else if (c == '\t') kd_sbuf_puts(b, "\\t");
            else if (c == '\r') kd_sbuf_puts(b, "\\r");
            else if (c < 0x20) kd_sbuf_printf(b, "\\u%04x", c);
            else kd_sbuf_add(b, (const char *)p, 1);
        } else kd_sbuf_add(b, (const char *)p, (size_t)n);
        p += n;
    }
    kd_sbuf_puts(b, "\"");
}

static void json_bytes(kd_sbuf *b, const char *t) {
    char buf[4];
    kd_sbuf_puts(b, "[");
    for (const unsigned char *p = (const unsigned char *)(t ? t : ""); *p; p++) {
        int n = 0;
        if (p != (const unsigned char *)t) buf[n++] = ',';
        if (*p >= 100) buf[n++] = (char)('0' + *p / 100);
        if (*p >= 10) buf[n++] = (char)('0' + *p / 10 % 10);
        buf[n++] = (char)('0' + *p % 10);
        kd_sbuf_add(b, buf, (size_t)n);
    }
    kd_sbuf_puts(b, "]");
}

static void json_logprob(kd_sbuf *b, float x) {
    if (isfinite(x)) kd_sbuf_printf(b, "%.9g", (double)x);
    else kd_sbuf_puts(b, "-9999.0");
}

/* The answer's JSON after its id (the id is the only part that differs between equal requests). */
/* A token as vLLM's return_tokens_as_token_ids writes it: "token_id:N". */
static void json_token_or_id(kd_sbuf *b, const char *t, int32_t id, int as_ids) {
    if (as_ids) kd_sbuf_printf(b, "\"token_id:%d\"", id);
    else json_token(b, t);
}

static char *chat_response(kd_server *s, const kd_teacher_completion *c, int want_lp, int as_ids) {
    kd_sbuf b = {0};
    kd_sbuf_puts(&b, ",\"object\":\"chat.completion\",\"created\":0,\"model\":");
    json_token(&b, s->model);
    kd_sbuf_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    /* with tool calls, the text before the first <tool_call> block (a think block, prose), or null when
     * there is none: what vLLM's hermes tool parser leaves as content */
    const char *cut = c->n_tool_calls && c->text ? strstr(c->text, "<tool_call>") : NULL;
    size_t keep = cut ? (size_t)(cut - c->text) : c->text ? strlen(c->text) : 0;
    if (c->n_tool_calls && keep == 0) kd_sbuf_puts(&b, "null");
    else if (c->n_tool_calls) {
        char *pre = kd_strndup(c->text, keep);
        json_token(&b, pre);
        free(pre);
    } else json_token(&b, c->text);
    if (c->n_tool_calls) {
        kd_sbuf_puts(&b, ",\"tool_calls\":[");
        for (int i = 0; i < c->n_tool_calls; i++) {
            kd_sbuf_printf(&b, "%s{\"id\":", i ? "," : "");
            json_token(&b, c->tool_calls[i].id);
            kd_sbuf_puts(&b, ",\"type\":\"function\",\"function\":{\"name\":");
            json_token(&b, c->tool_calls[i].name);
            kd_sbuf_puts(&b, ",\"arguments\":");
            json_token(&b, c->tool_calls[i].arguments);
            kd_sbuf_puts(&b, "}}");
        }
        kd_sbuf_puts(&b, "]");
    }
    kd_sbuf_puts(&b, "},\"logprobs\":");
    if (want_lp && c->lp.n) {
        kd_sbuf_puts(&b, "{\"content\":[");
        const kd_teacher_logprobs *lp = &c->lp;
        for (int i = 0; i < lp->n; i++) {
            kd_sbuf_puts(&b, i ? ",{\"token\":" : "{\"token\":");
            json_token_or_id(&b, lp->tokens[i], lp->token_ids[i], as_ids);
            kd_sbuf_puts(&b, ",\"logprob\":");
            json_logprob(&b, lp->token_logprobs[i]);
            kd_sbuf_puts(&b, ",\"bytes\":");
            json_bytes(&b, lp->tokens[i]);
            kd_sbuf_puts(&b, ",\"top_logprobs\":[");
            for (int j = 0; j < lp->k; j++) {
                size_t at = (size_t)i * lp->k + j;
                if (!lp->topk_tokens[at]) break;
                kd_sbuf_puts(&b, j ? ",{\"token\":" : "{\"token\":");
                json_token_or_id(&b, lp->topk_tokens[at], lp->topk_ids[at], as_ids);
                kd_sbuf_puts(&b, ",\"logprob\":");
                json_logprob(&b, lp->topk_logprobs[at]);
                kd_sbuf_puts(&b, ",\"bytes\":");
                json_bytes(&b, lp->topk_tokens[at]);
                kd_sbuf_puts(&b, "}");
            }
            kd_sbuf_puts(&b, "]}");
        }
        kd_sbuf_puts(&b, "]}");
    } else kd_sbuf_puts(&b, "null");
    kd_sbuf_puts(&b, ",\"finish_reason\":");
    json_token(&b, c->finish_reason);
    kd_sbuf_printf(&b, "}],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}",
                   (long long)c->prompt_tokens, (long long)c->completion_tokens,
                   (long long)(c->prompt_tokens + c->completion_tokens));
    return kd_sbuf_take(&b);
}

/* vLLM's prompt_logprobs: null for the first token, then per token an object keyed by token id, the
 * token's own entry first and then the top-k (a token in both written once, where it comes first), each
 * {"logprob", "rank", "decoded_token"} (https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html,
 * "Extra Parameters": prompt_logprobs). The stub's own token is always a candidate; when it falls
 * outside the top-k its rank is written as k + 1. */
static void write_prompt_token_ids(kd_sbuf *b, const kd_teacher_logprobs *lp) {
    kd_sbuf_puts(b, "\"prompt_token_ids\":[");
    for (int i = 0; i < lp->n; i++) kd_sbuf_printf(b, "%s%d", i ? "," : "", lp->token_ids[i]);
    kd_sbuf_puts(b, "],");
}

static void write_prompt_logprobs(kd_sbuf *b, const kd_teacher_logprobs *lp) {
    kd_sbuf_puts(b, "\"prompt_logprobs\":[");
    for (int i = 0; i < lp->n; i++) {
        if (i == 0) { /* nothing predicts the first token */
            kd_sbuf_puts(b, "null");
            continue;
        }
        int actual_rank = lp->k + 1;
        for (int j = 0; j < lp->k; j++)
            if (lp->topk_tokens[(size_t)i * lp->k + j] && lp->topk_ids[(size_t)i * lp->k + j] == lp->token_ids[i]) actual_rank = j + 1;
        kd_sbuf_printf(b, ",{\"%d\":{\"logprob\":", lp->token_ids[i]);
        json_logprob(b, lp->token_logprobs[i]);
        kd_sbuf_printf(b, ",\"rank\":%d,\"decoded_token\":", actual_rank);
        json_token(b, lp->tokens[i]);
        kd_sbuf_puts(b, "}");
        for (int j = 0; j < lp->k; j++) {
            size_t at = (size_t)i * lp->k + j;
            if (!lp->topk_tokens[at]) break;
            if (lp->topk_ids[at] == lp->token_ids[i]) continue;
            kd_sbuf_printf(b, ",\"%d\":{\"logprob\":", lp->topk_ids[at]);
            json_logprob(b, lp->topk_logprobs[at]);
            kd_sbuf_printf(b, ",\"rank\":%d,\"decoded_token\":", j + 1);
            json_token(b, lp->topk_tokens[at]);
            kd_sbuf_puts(b, "}");
        }
        kd_sbuf_puts(b, "}");
    }
    kd_sbuf_puts(b, "]");
}

/* /v1/completions with prompt_logprobs: choices[0] carries them, as vLLM writes a completion. */
static char *score_response(kd_server *s, const kd_teacher_logprobs *lp) {
    kd_sbuf b = {0};
    kd_sbuf_puts(&b, ",\"object\":\"text_completion\",\"created\":0,\"model\":");
    json_token(&b, s->model);
    kd_sbuf_puts(&b, ",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"length\",");
    write_prompt_token_ids(&b, lp);
    write_prompt_logprobs(&b, lp);
    kd_sbuf_printf(&b, "}],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":1,\"total_tokens\":%d}}", lp->n, lp->n + 1);
    return kd_sbuf_take(&b);
}

/* /v1/chat/completions with prompt_logprobs: a one-token answer (max_tokens 1: empty here) and the
 * prompt's logprobs at the top level of the response, where vLLM puts them for chat; with vLLM's
 * return_token_ids, the prompt's token ids too (a JavaScript object orders integer keys by value,
 * so a client there cannot see which key came first). */
static char *score_chat_response(kd_server *s, const kd_teacher_logprobs *lp, int with_ids) {
    kd_sbuf b = {0};
    kd_sbuf_puts(&b, ",\"object\":\"chat.completion\",\"created\":0,\"model\":");
    json_token(&b, s->model);
    kd_sbuf_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                     "\"finish_reason\":\"length\"}],");
    kd_sbuf_printf(&b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":1,\"total_tokens\":%d},", lp->n, lp->n + 1);
    if (with_ids) write_prompt_token_ids(&b, lp);
    write_prompt_logprobs(&b, lp);
    kd_sbuf_puts(&b, "}");
    return kd_sbuf_take(&b);
}

/* Render a chat request's messages as vLLM would before scoring them: add_generation_prompt (default
 * true), continue_final_message (the last message left open: no <|im_end|>\n), and
 * chat_template_kwargs.enable_thinking false (the empty think block after the generation prompt). */
static int score_chat(kd_server *s, const json_t *req, const json_t *messages, const json_t *tools, int k, int64_t seed,
                      kd_teacher_logprobs *lp, kd_error *e) {
    const json_t *agp = json_object_get(req, "add_generation_prompt");
    int cont = json_is_true(json_object_get(req, "continue_final_message"));
    const json_t *think = json_object_get(json_object_get(req, "chat_template_kwargs"), "enable_thinking");
    kd_chat_options o = {agp ? json_is_true(agp) : !cont, json_is_false(think)};
    if (cont && o.add_generation_prompt)
        return kd_error_set(e, KD_ERR_INVALID, "continue_final_message cannot be used together with add_generation_prompt (as in vLLM)");
    kd_chat_result r;
    int rc = kd_chat_render_json(messages, tools, &o, &r, e);
    if (rc) return rc;
    size_t len = r.len;
    if (cont && len >= 11 && memcmp(r.text + len - 11, "<|im_end|>\n", 11) == 0) len -= 11;
    rc = kd_stub_score(s->stub, r.text, len, tools, k, seed, lp, e);
    kd_chat_render_free(&r);
    return rc;
}

typedef struct trunc_body {
    char *data;
    size_t len, sent;
} trunc_body;

/* Sends half the body, then reports an error: MHD closes the connection mid-body. */
static ssize_t trunc_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    trunc_body *t = cls;
    size_t half = t->len / 2;
    if (pos >= half) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = half - (size_t)pos < max ? half - (size_t)pos : max;
    memcpy(buf, t->data + pos, n);
    return (ssize_t)n;
}

static void trunc_free(void *cls) {
    trunc_body *t = cls;
    free(t->data);
    free(t);
}

/* An error answer, also due latency_ms after the request came in. */
static enum MHD_Result late_error(kd_server *s, struct MHD_Connection *conn, double t0, unsigned code, const char *msg) {
    sleep_ms(s->opt.latency_ms - (now_ms() - t0));
    return send_error(conn, code, msg);
}

/* Send an answer (its id, then tail, which this takes) at t0 + latency, with the drawn fault. */
static enum MHD_Result send_answer(kd_server *s, struct MHD_Connection *conn, int fault, int64_t n, int is_chat, char *tail,
                                   size_t tlen, double t0) {
    char id[64];
    int il = snprintf(id, sizeof id, "{\"id\":\"%s-%lld\"", is_chat ? "chatcmpl" : "cmpl", (long long)n);
    size_t len = (size_t)il + tlen;
    char *out = malloc(len + 1);
    if (!out) {
        free(tail);
        return send_error(conn, 500, "out of memory");
    }
    memcpy(out, id, (size_t)il);
    memcpy(out + il, tail, tlen + 1);
    free(tail);
    sleep_ms(s->opt.latency_ms - (now_ms() - t0));
    enum MHD_Result ret;
    if (fault == KD_FAULT_MALFORMED) {
        ret = send_text(conn, 200, out, len / 2, NULL);
    } else if (fault == KD_FAULT_TRUNCATE) {
        trunc_body *t = malloc(sizeof *t);
        if (!t) {
            free(out);
            return MHD_NO;
        }
        t->data = out;
        t->len = len;
        t->sent = 0;
        out = NULL;
        struct MHD_Response *r = MHD_create_response_from_callback(len, 4096, trunc_reader, t, trunc_free);
        MHD_add_response_header(r, "Content-Type", "application/json");
        ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
    } else {
        struct MHD_Response *r = MHD_create_response_from_buffer(len, out, MHD_RESPMEM_MUST_FREE);
        out = NULL;
        MHD_add_response_header(r, "Content-Type", "application/json");
        ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
    }
    free(out);
    return ret;
}

/* The limits a request must keep, as an error that names the limit, or NULL. (OpenAI's own: top_logprobs
 * 0..20, at most 128 tools; this stub allows more tools, since registries can be large.) */
static const char *request_limits(const json_t *req) {
    static __thread char m[256];
    const json_t *v;
    if ((v = json_object_get(req, "max_tokens")) && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                                                     json_integer_value(v) > KD_SERVER_MAX_TOKENS)) {
        snprintf(m, sizeof m, "max_tokens must be an integer from 1 to %d (this server's limit)", KD_SERVER_MAX_TOKENS);
        return m;
    }
    if ((v = json_object_get(req, "n")) && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) != 1)) {
        snprintf(m, sizeof m, "n must be 1: this server answers one choice per request");
        return m;
    }
    const char *kk[] = {"top_logprobs", "prompt_logprobs"};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(req, kk[i])) && !json_is_null(v) &&
            (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > KD_SERVER_MAX_TOP_LOGPROBS)) {
            snprintf(m, sizeof m, "%s must be an integer from 0 to %d (this server's limit, as OpenAI's)", kk[i], KD_SERVER_MAX_TOP_LOGPROBS);
            return m;
        }
    if ((v = json_object_get(req, "tools")) && json_array_size(v) > KD_SERVER_MAX_TOOLS) {
        snprintf(m, sizeof m, "tools: %zu tools is more than this server's limit of %d per request", json_array_size(v),
                 KD_SERVER_MAX_TOOLS);
        return m;
    }
    return NULL;
}

static enum MHD_Result answer(kd_server *s, struct MHD_Connection *conn, const char *url, const char *body, size_t blen) {
    double t0 = now_ms();
    int64_t n = atomic_fetch_add(&s->requests, 1);
    int fault = draw_fault(s, n);
    atomic_fetch_add(&s->faults[fault], 1);
    if (fault != KD_FAULT_NONE && fault != KD_FAULT_MALFORMED && fault != KD_FAULT_TRUNCATE) sleep_ms(s->opt.latency_ms);
    switch (fault) {
    case KD_FAULT_DROP: return MHD_NO;
    case KD_FAULT_STALL:
        /* never answers: wait until the server stops (the client's timeout fires first) */
        for (int i = 0; i < 60000 && !atomic_load(&s->stopping); i++) sleep_ms(10);
        return MHD_NO;
    case KD_FAULT_RATE_LIMIT: {
        char ra[32];
        snprintf(ra, sizeof ra, "%d", s->opt.retry_after_s > 0 ? s->opt.retry_after_s : 1);
        const char *m = "{\"error\":{\"message\":\"rate limited (injected)\",\"type\":\"rate_limit_error\"}}";
        return send_text(conn, 429, m, strlen(m), ra);
    }
    case KD_FAULT_FAIL: {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        char m[1024];
        snprintf(m, sizeof m, "{\"error\":{\"message\":\"internal error (injected)%s%.600s\",\"type\":\"server_error\"}}",
                 s->opt.echo_auth && auth ? "; you sent " : "", s->opt.echo_auth && auth ? auth : "");
        return send_text(conn, 500, m, strlen(m), NULL);
    }
    default: break;
    }
    /* The answer is due latency_ms after the request came in; computing it is part of that time. */
    int is_chat = strcmp(url, "/v1/chat/completions") == 0;
    size_t klen = 0, tlen = 0;
    char *key = cache_key(url, body, blen, &klen);
    uint64_t h = key ? kd_hash64(key, klen) : 0;
    char *tail = key ? cache_get(s, key, klen, h, &tlen) : NULL;
    if (tail) {
        free(key);
        return send_answer(s, conn, fault, n, is_chat, tail, tlen, t0);
    }
    json_error_t je;
    json_t *req = json_loadb(body, blen, 0, &je);
    if (!req) {
        free(key);
        atomic_fetch_add(&s->bad_requests, 1);
        char m[300];
        snprintf(m, sizeof m, "request body is not valid JSON: %s", je.text);
        return late_error(s, conn, t0, 400, m);
    }
    if (!model_served(s, req)) {
        free(key);
        atomic_fetch_add(&s->bad_requests, 1);
        enum MHD_Result r = send_unknown_model(s, conn, req);
        json_decref(req);
        return r;
    }
    const char *lim = request_limits(req);
    if (lim) {
        json_decref(req);
        free(key);
        atomic_fetch_add(&s->bad_requests, 1);
        return late_error(s, conn, t0, 400, lim);
    }
    char *out = NULL;
    kd_error e;
    int rc = KD_OK;
    int64_t seed = json_is_integer(json_object_get(req, "seed")) ? json_integer_value(json_object_get(req, "seed")) : s->opt.seed;
    if (is_chat) {
        const json_t *messages = json_object_get(req, "messages");
        const json_t *tools = json_object_get(req, "tools");
        int want_lp = json_is_true(json_object_get(req, "logprobs"));
        int prompt_k = (int)json_integer_value(json_object_get(req, "prompt_logprobs"));
        int as_ids = json_is_true(json_object_get(req, "return_tokens_as_token_ids"));
        const json_t *think = json_object_get(json_object_get(req, "chat_template_kwargs"), "enable_thinking");
        int k = want_lp ? (int)json_integer_value(json_object_get(req, "top_logprobs")) : 0;
        if (want_lp && k <= 0) k = 1;
        if (!json_is_array(messages) || json_array_size(messages) == 0) {
            json_decref(req);
            free(key);
            atomic_fetch_add(&s->bad_requests, 1);
            return late_error(s, conn, t0, 400, "messages must be a non-empty array");
        }
        if (prompt_k > 0) { /* scoring: the prompt's logprobs are the answer */
            kd_teacher_logprobs lp;
            memset(&lp, 0, sizeof lp);
            rc = score_chat(s, req, messages, json_is_array(tools) ? tools : NULL, prompt_k, seed, &lp, &e);
            if (!rc) out = score_chat_response(s, &lp, json_is_true(json_object_get(req, "return_token_ids")));
            kd_teacher_logprobs_free(&lp);
        } else {
            kd_teacher_completion c;
            memset(&c, 0, sizeof c);
            int thinking = think ? json_is_true(think) : s->thinking;
            rc = kd_stub_complete_thinking(s->stub, messages, json_is_array(tools) ? tools : NULL, k, seed, thinking, &c, &e);
            if (!rc) out = chat_response(s, &c, want_lp, as_ids);
            kd_teacher_completion_free(&c);
        }
    } else {
        const char *prompt = json_string_value(json_object_get(req, "prompt"));
        int k = (int)json_integer_value(json_object_get(req, "prompt_logprobs"));
        if (!prompt || k <= 0) {
            json_decref(req);
            free(key);
            atomic_fetch_add(&s->bad_requests, 1);
            return late_error(s, conn, t0, 400, "this stub serves /v1/completions only for scoring: give \"prompt\" and \"prompt_logprobs\" > 0");
        }
        kd_teacher_logprobs lp;
        memset(&lp, 0, sizeof lp);
        rc = kd_stub_score(s->stub, prompt, strlen(prompt), NULL, k, seed, &lp, &e);
        if (!rc && lp.n > KD_SERVER_MAX_PROMPT_TOKENS) {
            kd_teacher_logprobs_free(&lp);
            json_decref(req);
            free(key);
            atomic_fetch_add(&s->bad_requests, 1);
            char m[200];
            snprintf(m, sizeof m, "prompt: %d tokens is more than this server's limit of %d prompt tokens for prompt_logprobs "
                     "(its max_model_len)", lp.n, KD_SERVER_MAX_PROMPT_TOKENS);
            return late_error(s, conn, t0, 400, m);
        }
        if (!rc) out = score_response(s, &lp);
        kd_teacher_logprobs_free(&lp);
    }
    json_decref(req);
    if (rc || !out) {
        free(key);
        free(out);
        return rc ? late_error(s, conn, t0, 400, e.msg) : late_error(s, conn, t0, 500, "out of memory");
    }
    tlen = strlen(out);
    if (key) cache_put(s, key, klen, h, out, tlen);
    return send_answer(s, conn, fault, n, is_chat, out, tlen, t0);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    kd_server *s = cls;
    (void)version;
    kd_http_body *c;
    int got = kd_http_collect(con_cls, upload_data, upload_data_size, KD_SERVER_MAX_BODY, &c);
    if (got != KD_HTTP_READY) return got == KD_HTTP_MORE ? MHD_YES : MHD_NO;
    if (c->too_big) {
        char m[160];
        snprintf(m, sizeof m, "request body of %zu bytes is larger than this server's limit of %d bytes", c->seen, KD_SERVER_MAX_BODY);
        return send_error(conn, 413, m);
    }
    if (!kd_http_bearer_ok(conn, s->opt.api_key))
        return kd_http_send_error(conn, 401, "missing or wrong API key: send \"Authorization: Bearer <key>\" with the key given to --api-key", NULL);
    if (strcmp(method, "GET") == 0) {
        if (strcmp(url, "/stats") == 0) {
            kd_server_counts k;
            kd_server_get_counts(s, &k);
            kd_sbuf b = {0};
            kd_sbuf_printf(&b, "{\"requests\":%lld,\"bad_requests\":%lld", (long long)k.requests, (long long)k.bad_requests);
            for (int f = 0; f < KD_FAULT_COUNT; f++) kd_sbuf_printf(&b, ",\"%s\":%lld", FAULT_NAMES[f], (long long)k.faults[f]);
            kd_sbuf_puts(&b, "}");
            char *t = kd_sbuf_take(&b);
            enum MHD_Result r = send_text(conn, 200, t ? t : "{}", t ? strlen(t) : 2, NULL);
            free(t);
            return r;
        }
        if (strcmp(url, "/v1/models") == 0) {
            kd_sbuf b = {0};
            kd_sbuf_puts(&b, "{\"object\":\"list\",\"data\":[");
            for (int i = 0; i < s->n_names; i++) {
                kd_sbuf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
                json_token(&b, s->names[i]);
                kd_sbuf_puts(&b, ",\"object\":\"model\",\"owned_by\":\"kdstep\"}");
            }
            kd_sbuf_puts(&b, "]}");
            char *t = kd_sbuf_take(&b);
            enum MHD_Result r = send_text(conn, 200, t ? t : "{}", t ? strlen(t) : 2, NULL);
            free(t);
            return r;
        }
        return send_error(conn, 404, "not found: this server has /v1/chat/completions, /v1/completions, /v1/models, /stats");
    }
    if (strcmp(method, "POST") != 0) return send_error(conn, 405, "method not allowed");
    if (strcmp(url, "/v1/chat/completions") != 0 && strcmp(url, "/v1/completions") != 0)
        return send_error(conn, 404, "not found: POST /v1/chat/completions or /v1/completions");
    return answer(s, conn, url, c->data ? c->data : "", c->len);
}

int kd_server_start(kd_server **out, const kd_server_options *opt, kd_stub_teacher *stub, const char *model,
                    kd_error *err) {
    *out = NULL;
    kd_server *s = calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory starting the server");
    s->opt = *opt;
    s->stub = stub;
    s->thinking = opt->thinking;
    snprintf(s->model, sizeof s->model, "%s", model && *model ? model : "stub-teacher");
    snprintf(s->names_buf, sizeof s->names_buf, "%s", s->model);
    for (char *p = s->names_buf, *save = NULL, *t; (t = strtok_r(p, ",", &save)); p = NULL) {
        if (s->n_names == KD_SERVER_MAX_NAMES) {
            free(s);
            return kd_error_set(err, KD_ERR_INVALID, "--served-model-name '%s': more than %d names", model, KD_SERVER_MAX_NAMES);
        }
        s->names[s->n_names++] = t;
    }
    if (!s->n_names) {
        free(s);
        return kd_error_set(err, KD_ERR_INVALID, "--served-model-name '%s' names no model", model);
    }
    snprintf(s->model, sizeof s->model, "%s", s->names[0]);
    snprintf(s->host, sizeof s->host, "%s", opt->host ? opt->host : "127.0.0.1");
    double total = opt->fail_rate + opt->rate_limit + opt->malformed_rate + opt->truncate_rate + opt->drop_rate + opt->stall_rate;
    if (total > 1.0 + 1e-9) {
        free(s);
        return kd_error_set(err, KD_ERR_INVALID, "fault rates add up to %.3f; their sum must be at most 1", total);
    }
    pthread_mutex_init(&s->cache_mu, NULL);
    int rc = kd_http_listen(s->host, opt->port, 4096, 120, handler, s, &s->d, &s->port, err);
    if (rc) {
        pthread_mutex_destroy(&s->cache_mu);
        free(s);
        return rc;
    }
    *out = s;
    return KD_OK;
}

int kd_server_port(const kd_server *srv) { return srv->port; }

void kd_server_get_counts(kd_server *srv, kd_server_counts *out) {
    memset(out, 0, sizeof *out);
    out->requests = atomic_load(&srv->requests);
    out->bad_requests = atomic_load(&srv->bad_requests);
    for (int f = 0; f < KD_FAULT_COUNT; f++) out->faults[f] = atomic_load(&srv->faults[f]);
}

void kd_server_format_counts(const kd_server_counts *c, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "requests=%lld bad_requests=%lld", (long long)c->requests, (long long)c->bad_requests);
    for (int f = 0; f < KD_FAULT_COUNT && n > 0 && (size_t)n < cap; f++)
        n += snprintf(buf + n, cap - (size_t)n, " %s=%lld", FAULT_NAMES[f], (long long)c->faults[f]);
}

void kd_server_stop(kd_server *srv) {
    if (!srv) return;
    atomic_store(&srv->stopping, 1);
    if (srv->d) MHD_stop_daemon(srv->d);
    for (int i = 0; i < ANSWER_CACHE_SLOTS; i++) {
        free(srv->cache[i].key);
        free(srv->cache[i].tail);
    }
    pthread_mutex_destroy(&srv->cache_mu);
    free(srv);
}
