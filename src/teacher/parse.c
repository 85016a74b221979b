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

/* The actual token of a prompt_logprobs entry: the key equal to prompt_token_ids[i] when given, else
 * the entry whose rank is not within 1..k (vLLM adds the actual token to the top-k dict), else rank 1. */
static const json_t *actual_entry(const json_t *e, int32_t actual, int k, int32_t *id_out) {
    const char *key;
    const json_t *v, *found = NULL;
    json_object_foreach((json_t *)e, key, v) {
        long rank = (long)json_integer_value(json_object_get(v, "rank"));
        if (actual >= 0 ? atoi(key) == actual : (rank > k || rank < 1)) {
            *id_out = atoi(key);
            return v;
        }
        if (rank == 1 && !found) {
            found = v;
            *id_out = atoi(key);
        }
    }
    return actual >= 0 ? NULL : found;
}

int kd_teacher_parse_prompt_logprobs(const char *body, size_t len, size_t prompt_len, size_t response_start,
                                     int top_k, kd_teacher_logprobs *lp, kd_error *err) {
    json_error_t je;
    memset(lp, 0, sizeof *lp);
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "scoring response: invalid JSON at byte %d: %s", je.position, je.text);
    int rc = KD_OK;
    const json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    const json_t *plp = json_object_get(choice, "prompt_logprobs");
    if (!json_is_array(plp)) plp = json_object_get(root, "prompt_logprobs");
    const json_t *ids = json_object_get(choice, "prompt_token_ids");
    if (!json_is_array(ids)) ids = json_object_get(root, "prompt_token_ids");
    if (!json_is_array(plp)) {
        rc = kd_error_set(err, KD_ERR_PARSE,
                          "scoring response: no prompt_logprobs (is the endpoint vLLM, with prompt_logprobs allowed?)");
        goto done;
    }
    /* Entry 0 is null (nothing predicts the first token), so positions are found from the end:
     * token i starts at prompt_len minus the text of tokens i..n-1. */
    size_t n = json_array_size(plp), pos = prompt_len, first = n;
    for (size_t i = n; i-- > 1;) {
        const json_t *e = json_array_get(plp, i);
        if (!json_is_object(e)) {
            rc = kd_error_set(err, KD_ERR_PARSE, "scoring response: prompt_logprobs[%zu] is not an object", i);
            goto done;
        }
        int32_t actual = json_is_array(ids) ? (int32_t)json_integer_value(json_array_get(ids, i)) : -1, id = -1;
        const json_t *v = actual_entry(e, actual, top_k, &id);
        const char *dt = v ? json_string_value(json_object_get(v, "decoded_token")) : NULL;
        size_t tl = dt ? strlen(dt) : 0;
        if (tl > pos) break;
        pos -= tl;
        if (pos >= response_start) first = i;
        else break;
    }
    int rn = (int)(n - first);
    if (kd_teacher_logprobs_alloc(lp, rn, top_k)) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
        goto done;
    }
    for (int r = 0; r < rn; r++) {
        size_t i = first + (size_t)r;
        const json_t *e = json_array_get(plp, i);
        int32_t actual = json_is_array(ids) ? (int32_t)json_integer_value(json_array_get(ids, i)) : -1, id = -1;
        const json_t *av = actual_entry(e, actual, top_k, &id);
        if (av) {
            const char *dt = json_string_value(json_object_get(av, "decoded_token"));
            lp->token_ids[r] = id;
            lp->tokens[r] = kd_strdup(dt ? dt : "");
            lp->token_logprobs[r] = (float)json_number_value(json_object_get(av, "logprob"));
        }
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)e, key, v) {
            long rank = (long)json_integer_value(json_object_get(v, "rank"));
            if (rank < 1 || rank > top_k) continue;
            size_t at = (size_t)r * top_k + (size_t)(rank - 1);
            if (lp->topk_tokens[at]) continue; /* a repeated rank: keep the first */
            const char *dt = json_string_value(json_object_get(v, "decoded_token"));
            lp->topk_ids[at] = atoi(key);
            lp->topk_tokens[at] = kd_strdup(dt ? dt : "");
            double x = json_number_value(json_object_get(v, "logprob"));
            lp->topk_logprobs[at] = x < -1e30 ? -INFINITY : (float)x;
        }
        lp->tail_logprob[r] = tail_from_topk(lp->topk_logprobs + (size_t)r * top_k, top_k);
    }
done:
    json_decref(root);
    return rc;
}

