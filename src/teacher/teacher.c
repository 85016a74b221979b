/* The teacher interface: backend dispatch, completions, response parsers. See include/kdstep/teacher.h. */
#include "kdstep/teacher.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* ---- small string buffer ---- */

void kd_sbuf_add(kd_sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void kd_sbuf_puts(kd_sbuf *b, const char *s) { kd_sbuf_add(b, s, strlen(s)); }

void kd_sbuf_printf(kd_sbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        kd_sbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kd_sbuf_add(b, big, (size_t)n);
    free(big);
}

char *kd_sbuf_take(kd_sbuf *b) {
    if (b->oom) {
        kd_sbuf_free(b);
        return NULL;
    }
    char *d = b->data ? b->data : kd_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void kd_sbuf_free(kd_sbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void kd_redact(char *s, const char *secret) {
    if (!s || !secret || !secret[0]) return;
    size_t n = strlen(secret);
    for (char *p = strstr(s, secret); p; p = strstr(p + n, secret)) memset(p, '*', n);
}

/* ---- requests, completions ---- */

void kd_teacher_request_init(kd_teacher_request *req) {
    memset(req, 0, sizeof *req);
    req->temperature = -1;
    req->max_tokens = -1;
    req->top_logprobs = -1;
    req->seed = -1;
}

double kd_teacher_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int kd_teacher_logprobs_reshape(kd_teacher_logprobs *lp, size_t rows, size_t ncap, size_t k) {
    size_t nk = ncap * k, ko = lp->k > 0 ? (size_t)lp->k : 0;
    if (rows > ncap || (rows && k < ko)) return -1;
    /* pointers first, then the 4-byte arrays: every array stays aligned */
    char *b = malloc((ncap + nk) * sizeof(char *) + (3 * ncap + 2 * nk) * 4 + 1);
    if (!b) return -1;
    kd_teacher_logprobs o = *lp;
    lp->tokens = (char **)b;
    lp->topk_tokens = lp->tokens + ncap;
    lp->token_ids = (int32_t *)(lp->topk_tokens + nk);
    lp->token_logprobs = (float *)(lp->token_ids + ncap);
    lp->tail_logprob = lp->token_logprobs + ncap;
    lp->topk_ids = (int32_t *)(lp->tail_logprob + ncap);
    lp->topk_logprobs = (float *)(lp->topk_ids + nk);
    lp->k = (int)k;
    if (rows) {
        memcpy(lp->tokens, o.tokens, rows * sizeof *lp->tokens);
        memcpy(lp->token_ids, o.token_ids, rows * sizeof *lp->token_ids);
        memcpy(lp->token_logprobs, o.token_logprobs, rows * sizeof *lp->token_logprobs);
        memcpy(lp->tail_logprob, o.tail_logprob, rows * sizeof *lp->tail_logprob);
        for (size_t i = 0; i < rows; i++) {
            memcpy(lp->topk_tokens + i * k, o.topk_tokens + i * ko, ko * sizeof *lp->topk_tokens);
            memcpy(lp->topk_ids + i * k, o.topk_ids + i * ko, ko * sizeof *lp->topk_ids);
            memcpy(lp->topk_logprobs + i * k, o.topk_logprobs + i * ko, ko * sizeof *lp->topk_logprobs);
            for (size_t j = ko; j < k; j++) {
                lp->topk_tokens[i * k + j] = NULL;
                lp->topk_ids[i * k + j] = -1;
                lp->topk_logprobs[i * k + j] = -INFINITY;
            }
        }
    }
    free(o.tokens); /* the old block */
    return 0;
}

int kd_teacher_logprobs_alloc(kd_teacher_logprobs *lp, int n, int k) {
    memset(lp, 0, sizeof *lp);
    size_t nn = n > 0 ? (size_t)n : 1, kk = k > 0 ? (size_t)k : 1, nk = nn * kk;
    if (kd_teacher_logprobs_reshape(lp, 0, nn, kk)) return KD_ERR_NOMEM;
    lp->n = n;
    lp->k = k;
    for (size_t i = 0; i < nk; i++) {
        lp->topk_ids[i] = -1;
        lp->topk_tokens[i] = NULL;
        lp->topk_logprobs[i] = -INFINITY;
    }
    for (size_t i = 0; i < nn; i++) {
        lp->token_ids[i] = -1;
        lp->tokens[i] = NULL;
        lp->token_logprobs[i] = 0;
        lp->tail_logprob[i] = -INFINITY;
    }
    return KD_OK;
}

void kd_teacher_logprobs_free(kd_teacher_logprobs *lp) {
    if (!lp) return;
    if (lp->arena) free(lp->arena); /* the strings live in it */
    else {
        if (lp->tokens)
            for (int i = 0; i < lp->n; i++) free(lp->tokens[i]);
        if (lp->topk_tokens)
            for (long i = 0; i < (long)lp->n * lp->k; i++) free(lp->topk_tokens[i]);
    }
    free(lp->tokens); /* the block holding all seven arrays */
    memset(lp, 0, sizeof *lp);
}

void kd_teacher_completion_free(kd_teacher_completion *c) {
    if (!c) return;
    free(c->error);
    free(c->body_excerpt);
    free(c->text);
    for (int i = 0; i < c->n_tool_calls; i++) {
        free(c->tool_calls[i].id);
        free(c->tool_calls[i].name);
        free(c->tool_calls[i].arguments);
    }
    free(c->tool_calls);
    free(c->finish_reason);
    kd_teacher_logprobs_free(&c->lp);
    memset(c, 0, sizeof *c);
}

/* ---- parsers ---- */

/* A token as text: OpenAI's `bytes` array when present (tokens may split UTF-8), else `token`. */
static char *token_text(const json_t *entry) {
    const json_t *bytes = json_object_get(entry, "bytes");
    if (json_is_array(bytes) && json_array_size(bytes) > 0 && json_array_size(bytes) < 4096) {
        size_t n = json_array_size(bytes);
        char *s = malloc(n + 1);
        if (!s) return NULL;
        for (size_t i = 0; i < n; i++) {
            json_int_t v = json_integer_value(json_array_get(bytes, i));
            s[i] = (char)(unsigned char)(v & 0xff);
        }
        s[n] = 0;
        return s;
    }
    const char *t = json_string_value(json_object_get(entry, "token"));
    return kd_strdup(t ? t : "");
}

/* vLLM's return_tokens_as_token_ids gives "token_id:123". */
static int32_t token_id_of(const json_t *entry) {
    const char *t = json_string_value(json_object_get(entry, "token"));
    if (t && strncmp(t, "token_id:", 9) == 0) {
        char *end;
        long v = strtol(t + 9, &end, 10);
        if (*end == 0 && v >= 0 && v < INT32_MAX) return (int32_t)v;
    }
    const json_t *id = json_object_get(entry, "token_id");
    if (json_is_integer(id) && json_integer_value(id) >= 0 && json_integer_value(id) < INT32_MAX)
        return (int32_t)json_integer_value(id);
    return -1;
}

static float tail_from_topk(const float *lps, int k) {
    double s = 0;
    for (int j = 0; j < k; j++)
        if (isfinite(lps[j])) s += exp((double)lps[j]);
    return s < 1.0 ? (float)log1p(-s) : -INFINITY;
}

static int parse_content_logprobs(const json_t *content, kd_teacher_logprobs *lp, kd_error *err) {
    size_t n = json_array_size(content);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *top = json_object_get(json_array_get(content, i), "top_logprobs");
        if (json_array_size(top) > (size_t)k) k = (int)json_array_size(top);
    }
    if (k > 1024) return kd_error_set(err, KD_ERR_PARSE, "teacher response: %d top_logprobs per token is too many", k);
    if (kd_teacher_logprobs_alloc(lp, (int)n, k)) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(content, i);
        if (!json_is_object(e))
            return kd_error_set(err, KD_ERR_PARSE, "teacher response: logprobs.content[%zu] is not an object", i);
        const json_t *lpv = json_object_get(e, "logprob");
        if (!json_is_number(lpv))
            return kd_error_set(err, KD_ERR_PARSE, "teacher response: logprobs.content[%zu].logprob is missing", i);
        lp->tokens[i] = token_text(e);
        lp->token_ids[i] = token_id_of(e);
        lp->token_logprobs[i] = (float)json_number_value(lpv);
        const json_t *top = json_object_get(e, "top_logprobs");
        size_t m = json_array_size(top);
        for (size_t j = 0; j < m; j++) {
            const json_t *t = json_array_get(top, j);
            const json_t *v = json_object_get(t, "logprob");
            if (!json_is_number(v))
                return kd_error_set(err, KD_ERR_PARSE,
                                    "teacher response: logprobs.content[%zu].top_logprobs[%zu].logprob is missing", i, j);
            size_t at = i * (size_t)k + j;
            lp->topk_tokens[at] = token_text(t);
            lp->topk_ids[at] = token_id_of(t);
            double x = json_number_value(v);
            lp->topk_logprobs[at] = x < -1e30 ? -INFINITY : (float)x;
        }
        lp->tail_logprob[i] = tail_from_topk(lp->topk_logprobs + i * (size_t)k, (int)m);
    }
    return KD_OK;
}

int kd_teacher_parse_chat_response_ref(const char *body, size_t len, kd_teacher_completion *c, kd_error *err) {
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "teacher response: invalid JSON at byte %d: %s", je.position, je.text);
    int rc = KD_OK;
    const json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    const json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        const char *emsg = json_string_value(json_object_get(json_object_get(root, "error"), "message"));
        rc = kd_error_set(err, KD_ERR_PARSE, "teacher response: no choices[0].message%s%.200s", emsg ? ": " : "",
                          emsg ? emsg : "");
        goto done;
    }
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_null(content) && content && !json_is_string(content)) {
        rc = kd_error_set(err, KD_ERR_PARSE, "teacher response: choices[0].message.content is neither a string nor null");
        goto done;
    }
    c->text = kd_strdup(json_is_string(content) ? json_string_value(content) : "");
    const json_t *calls = json_object_get(msg, "tool_calls");
    if (calls && !json_is_null(calls)) {
        if (!json_is_array(calls)) {
            rc = kd_error_set(err, KD_ERR_PARSE, "teacher response: message.tool_calls is not an array");
            goto done;
        }
        size_t n = json_array_size(calls);
        c->tool_calls = calloc(n ? n : 1, sizeof *c->tool_calls);
        if (!c->tool_calls) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory for tool calls");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *tc = json_array_get(calls, i);
            const json_t *fn = json_object_get(tc, "function");
            const char *name = json_string_value(json_object_get(fn, "name"));
            const json_t *args = json_object_get(fn, "arguments");
            if (!name) {
                rc = kd_error_set(err, KD_ERR_PARSE, "teacher response: tool_calls[%zu].function.name is missing", i);
                goto done;
            }
            kd_teacher_tool_call *t = &c->tool_calls[c->n_tool_calls++];
            const char *id = json_string_value(json_object_get(tc, "id"));
            t->id = kd_strdup(id ? id : "");
            t->name = kd_strdup(name);
            /* OpenAI sends arguments as a JSON string; some servers send the object itself. */
            if (json_is_string(args)) t->arguments = kd_strdup(json_string_value(args));
            else if (json_is_object(args)) t->arguments = json_dumps(args, JSON_COMPACT);
            else t->arguments = kd_strdup("{}");
        }
    }
    const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
    c->finish_reason = kd_strdup(fr ? fr : "");
    const json_t *usage = json_object_get(root, "usage");
    c->prompt_tokens = json_integer_value(json_object_get(usage, "prompt_tokens"));
    c->completion_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
    const json_t *lpc = json_object_get(json_object_get(choice, "logprobs"), "content");
    if (json_is_array(lpc)) rc = parse_content_logprobs(lpc, &c->lp, err);
done:
    json_decref(root);
    return rc;
}

/* A prompt_logprobs key or text "token_id:N" (vLLM's return_tokens_as_token_ids), or a plain id. */
static int32_t id_of_key(const char *k) {
    if (strncmp(k, "token_id:", 9) == 0 && k[9]) k += 9;
    size_t n = strlen(k);
    if (n == 0 || n > 10 || strspn(k, "0123456789") != n) return -1;
    long long v = atoll(k);
    return v <= INT32_MAX ? (int32_t)v : -1;
}

int kd_teacher_parse_prompt_logprobs_ref(const char *body, size_t len, int top_k, kd_teacher_logprobs *lp, kd_error *err) {
    json_error_t je;
    memset(lp, 0, sizeof *lp);
    if (top_k < 1) return kd_error_set(err, KD_ERR_INVALID, "prompt_logprobs: top_k must be at least 1");
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "scoring response: invalid JSON at byte %d: %s", je.position, je.text);
    int rc = KD_OK;
    const json_t *plp = json_object_get(root, "prompt_logprobs");
    if (!json_is_array(plp)) plp = json_object_get(json_array_get(json_object_get(root, "choices"), 0), "prompt_logprobs");
    if (!json_is_array(plp)) {
        rc = kd_error_set(err, KD_ERR_PARSE,
                          "scoring response: no prompt_logprobs (is the endpoint vLLM, and was prompt_logprobs sent? see docs/teachers.md)");
        goto done;
    }
    int n = (int)json_array_size(plp);
    if (kd_teacher_logprobs_alloc(lp, n, top_k)) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
        goto done;
    }
    for (int r = 0; r < n; r++) {
        const json_t *e = json_array_get(plp, (size_t)r);
        lp->tail_logprob[r] = 0.0f;
        if (json_is_null(e)) continue;
        if (!json_is_object(e)) {
            rc = kd_error_set(err, KD_ERR_PARSE, "scoring response: prompt_logprobs[%d] is neither an object nor null", r);
            goto done;
        }
        const char *key;
        const json_t *v;
        int first = 1;
        json_object_foreach((json_t *)e, key, v) {
            const char *dt = json_string_value(json_object_get(v, "decoded_token"));
            double x = json_number_value(json_object_get(v, "logprob"));
            float f = x < -1e30 ? -INFINITY : (float)x;
            if (first) { /* the prompt token itself */
                lp->token_ids[r] = id_of_key(key);
                lp->tokens[r] = dt ? kd_strdup(dt) : NULL;
                lp->token_logprobs[r] = f;
                first = 0;
            }
            long rank = (long)json_integer_value(json_object_get(v, "rank"));
            if (rank < 1 || rank > top_k) continue;
            size_t at = (size_t)r * (size_t)top_k + (size_t)(rank - 1);
            if (lp->topk_tokens[at] || lp->topk_ids[at] >= 0) continue; /* a repeated rank: keep the first */
            lp->topk_ids[at] = id_of_key(key);
            lp->topk_tokens[at] = dt ? kd_strdup(dt) : NULL;
            lp->topk_logprobs[at] = f;
        }
        lp->tail_logprob[r] = tail_from_topk(lp->topk_logprobs + (size_t)r * top_k, top_k);
    }
done:
    if (rc) kd_teacher_logprobs_free(lp);
    json_decref(root);
    return rc;
}

int kd_extra_body_thinking(const char *extra_body, int *thinking, kd_error *err) {
    *thinking = 0;
    if (!extra_body || !extra_body[0]) return KD_OK;
    json_error_t je;
    json_t *j = json_loads(extra_body, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return kd_error_set(err, KD_ERR_INVALID, "teacher.extra_body: not a JSON object (%s)", j ? "another JSON value" : je.text);
    }
    *thinking = json_is_true(json_object_get(json_object_get(j, "chat_template_kwargs"), "enable_thinking"));
    json_decref(j);
    return KD_OK;
}

int kd_scoring_from_name(const char *name, int *mode, kd_error *err) {
    if (strcmp(name, "none") == 0) *mode = KD_SCORING_NONE;
    else if (strcmp(name, "chat") == 0) *mode = KD_SCORING_CHAT;
    else if (strcmp(name, "completions") == 0) *mode = KD_SCORING_COMPLETIONS;
    else return kd_error_set(err, KD_ERR_INVALID, "teacher.scoring: unknown value '%s' (use none, chat or completions)", name);
    return KD_OK;
}

/* ---- backend dispatch ---- */

struct kd_teacher_client;
int kd_client_open(struct kd_teacher_client **out, const kd_config *cfg, kd_error *err);
void kd_client_close(struct kd_teacher_client *c);
int kd_client_submit(struct kd_teacher_client *c, const kd_teacher_request *req, kd_error *err);
int kd_client_submit_score(struct kd_teacher_client *c, const json_t *messages, const json_t *tools, uint64_t tag, kd_error *err);
int kd_client_next(struct kd_teacher_client *c, double timeout_s, kd_teacher_completion **out, kd_error *err);
void kd_client_stats(const struct kd_teacher_client *c, kd_teacher_stats *st);

struct kd_teacher {
    int is_stub;
    kd_stub_teacher *stub;
    struct kd_teacher_client *client;
    kd_config cfg;
    /* stub: finished completions, FIFO */
    kd_teacher_completion **ready;
    size_t head, count, cap;
    kd_teacher_stats st;
};

int kd_teacher_open(kd_teacher **out, const kd_config *cfg, const kd_registry *reg, const kd_tokenizer *tok,
                    kd_error *err) {
    *out = NULL;
    kd_teacher *t = calloc(1, sizeof *t);
    if (!t) return kd_error_set(err, KD_ERR_NOMEM, "out of memory opening the teacher");
    int rc = kd_config_copy(&t->cfg, cfg, err);
    if (rc) {
        free(t);
        return rc;
    }
    if (strcmp(cfg->teacher.url, "stub") == 0) {
        t->is_stub = 1;
        kd_stub_options o = {0};
        rc = kd_tool_format_from_name(cfg->teacher.tool_call_format, &o.tool_call_format, err);
        o.malformed_rate = cfg->teacher.malformed_rate;
        o.temperature = cfg->teacher.temperature;
        o.seed = cfg->teacher.seed;
        if (!rc) rc = kd_extra_body_thinking(cfg->teacher.extra_body, &o.thinking, err);
        if (!rc) rc = kd_stub_open(&t->stub, &o, reg, tok, err);
    } else {
        rc = kd_client_open(&t->client, cfg, err);
    }
    if (rc) {
        kd_teacher_close(t);
        return rc;
    }
    t->st.in_flight_limit = t->st.min_in_flight_limit = 1;
    *out = t;
    return KD_OK;
}

void kd_teacher_close(kd_teacher *t) {
    if (!t) return;
    kd_stub_close(t->stub);
    kd_client_close(t->client);
    for (size_t i = 0; i < t->count; i++) {
        kd_teacher_completion *c = t->ready[(t->head + i) % t->cap];
        kd_teacher_completion_free(c);
        free(c);
    }
    free(t->ready);
    kd_config_free(&t->cfg);
    free(t);
}

/* The stub answers at submit: the completion goes to the ready queue. */
static int stub_queue(kd_teacher *t, kd_teacher_completion *c, kd_error *err) {
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        kd_teacher_completion **r = calloc(cap, sizeof *r);
        if (!r) return kd_error_set(err, KD_ERR_NOMEM, "out of memory queueing a completion");
        for (size_t i = 0; i < t->count; i++) r[i] = t->ready[(t->head + i) % t->cap];
        free(t->ready);
        t->ready = r;
        t->cap = cap;
        t->head = 0;
    }
    t->ready[(t->head + t->count) % t->cap] = c;
    t->count++;
    return KD_OK;
}

static void stub_done(kd_teacher *t, kd_teacher_completion *c, uint64_t tag, int rc, const kd_error *e) {
    if (rc) {
        kd_teacher_completion_free(c);
        c->tag = tag;
        c->status = e->code;
        c->error = kd_strdup(e->msg);
        t->st.failed++;
    } else {
        t->st.completed++;
    }
    c->done_s = kd_teacher_now();
}

int kd_teacher_submit(kd_teacher *t, const kd_teacher_request *req, kd_error *err) {
    if (!json_is_array(req->messages) || json_array_size(req->messages) == 0)
        return kd_error_set(err, KD_ERR_INVALID, "teacher request %llu: messages must be a non-empty array",
                            (unsigned long long)req->tag);
    if (!t->is_stub) return kd_client_submit(t->client, req, err);
    kd_teacher_completion *c = calloc(1, sizeof *c);
    if (!c) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for a completion");
    c->tag = req->tag;
    c->submit_s = kd_teacher_now();
    int k = (int)(req->top_logprobs >= 0 ? req->top_logprobs : t->cfg.teacher.top_logprobs);
    int64_t seed = req->seed >= 0 ? req->seed : t->cfg.teacher.seed;
    kd_error e;
    c->attempts = 1;
    t->st.submitted++;
    t->st.attempts++;
    stub_done(t, c, req->tag, kd_stub_complete(t->stub, req->messages, req->tools, k, seed, c, &e), &e);
    int rc = stub_queue(t, c, err);
    if (rc) {
        kd_teacher_completion_free(c);
        free(c);
    }
    return rc;
}

int kd_teacher_submit_score(kd_teacher *t, const json_t *messages, const json_t *tools, uint64_t tag, kd_error *err) {
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return kd_error_set(err, KD_ERR_INVALID, "teacher scoring request %llu: messages must be a non-empty array",
                            (unsigned long long)tag);
    if (!t->is_stub) return kd_client_submit_score(t->client, messages, tools, tag, err);
    kd_teacher_completion *c = calloc(1, sizeof *c);
    if (!c) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for a completion");
    c->tag = tag;
    c->scored = 1;
    c->submit_s = kd_teacher_now();
    int k = t->cfg.teacher.top_logprobs > 0 ? (int)t->cfg.teacher.top_logprobs : 1;
    kd_error e;
    c->attempts = 1;
    t->st.submitted++;
    t->st.attempts++;
    stub_done(t, c, tag, kd_stub_score_conversation(t->stub, messages, tools, k, t->cfg.teacher.seed, &c->lp, &e), &e);
    c->scored = 1;
    int rc = stub_queue(t, c, err);
    if (rc) {
        kd_teacher_completion_free(c);
        free(c);
    }
    return rc;
}

int kd_teacher_next(kd_teacher *t, double timeout_s, kd_teacher_completion **out, kd_error *err) {
    *out = NULL;
    if (!t->is_stub) return kd_client_next(t->client, timeout_s, out, err);
    if (t->count == 0) return KD_OK;
    *out = t->ready[t->head];
    t->head = (t->head + 1) % t->cap;
    t->count--;
    return KD_OK;
}

int64_t kd_teacher_pending(const kd_teacher *t) {
    kd_teacher_stats st;
    kd_teacher_get_stats(t, &st);
    return st.submitted - st.completed - st.failed + (t->is_stub ? (int64_t)t->count : 0);
}

void kd_teacher_get_stats(const kd_teacher *t, kd_teacher_stats *st) {
    if (t->is_stub) { /* the stub answers at submit: "completed" counts queued ones, pending adds them back */
        *st = t->st;
        return;
    }
    kd_client_stats(t->client, st);
}
