/* The teacher interface: only the dispatch to the backend, the in-process stub (stub.c) or an
 * OpenAI-compatible server (client.c). The shared helpers are in common.c, the jansson parsers in
 * parse.c. See include/kdstep/teacher.h. */
#include "kdstep/teacher.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "common.h"

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
