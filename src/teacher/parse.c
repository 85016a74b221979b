/* The jansson parsers of teacher answers: the reference chat-completion parser (the fast one in
 * response.c is tested and fuzzed against it) and vLLM's prompt_logprobs for scoring. Declared in
 * include/kdstep/teacher.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/teacher.h"


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
    /* duplicate keys are refused: which of two values a reader keeps is not defined by JSON */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "scoring response: invalid JSON at byte %d: %s", je.position, je.text);
    int rc = KD_OK;
    /* the list: top-level "prompt_logprobs" (a chat completion's) or that of the first choice that has
     * one (a completion's), whichever comes first in the document, as the fast reader takes it */
    const json_t *plp = NULL, *holder = root;
    const char *rkey;
    json_t *rv;
    json_object_foreach(root, rkey, rv) {
        if (strcmp(rkey, "prompt_logprobs") == 0 && json_is_array(rv)) plp = rv;
        else if (strcmp(rkey, "choices") == 0 && json_is_array(rv)) {
            size_t ci;
            json_t *ch;
            json_array_foreach(rv, ci, ch) {
                if (json_is_object(ch) && json_is_array(json_object_get(ch, "prompt_logprobs"))) {
                    plp = json_object_get(ch, "prompt_logprobs");
                    holder = ch;
                    break;
                }
            }
        }
        if (plp) break;
    }
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
            /* no logprob (absent or null): -inf, no probability; one that is not a number is refused */
            const json_t *xv = json_object_get(v, "logprob");
            if (xv && !json_is_null(xv) && !json_is_number(xv)) {
                rc = kd_error_set(err, KD_ERR_PARSE, "scoring response: prompt_logprobs[%d][\"%s\"].logprob is not a number", r, key);
                goto done;
            }
            double x = xv && !json_is_null(xv) ? json_number_value(xv) : -INFINITY;
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
    /* prompt_token_ids beside the list: each row's prompt token, whatever the order of its entries */
    const json_t *pids = json_object_get(holder, "prompt_token_ids");
    if (json_is_array(pids)) {
        size_t np = json_array_size(pids);
        int32_t *ids = malloc((np ? np : 1) * sizeof *ids);
        if (!ids) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory for prompt_token_ids");
            goto done;
        }
        for (size_t i = 0; i < np; i++) {
            const json_t *x = json_array_get(pids, i);
            if (!json_is_number(x)) {
                free(ids);
                rc = kd_error_set(err, KD_ERR_PARSE, "scoring response: prompt_token_ids holds something other than a number");
                goto done;
            }
            json_int_t v = json_integer_value(x); /* a real reads as 0, as the fast reader's num_int */
            ids[i] = v >= 0 && v <= INT32_MAX ? (int32_t)v : -1;
        }
        kd_teacher_logprobs_use_prompt_ids(lp, ids, np, 1);
        free(ids);
    }
done:
    if (rc) kd_teacher_logprobs_free(lp);
    json_decref(root);
    return rc;
}
