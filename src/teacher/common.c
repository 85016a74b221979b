/* What every teacher backend shares: redaction of secrets, requests, the logprobs block and
 * completions (the string buffer is core's, kdstep/sbuf.h). Declared in common.h (redaction, the reshape) and in
 * include/kdstep/teacher.h (the rest). It calls no other teacher file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "kdstep/teacher.h"

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
