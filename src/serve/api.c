/* The OpenAI API of `kdstep serve`: see include/kdstep/serve_api.h. */
#include "kdstep/serve_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/chat.h"
#include "kdstep/extract.h"
#include "kdstep/fsutil.h"
#include "kdstep/sbuf.h"

static const char TOOL_OPEN[] = "<tool_call>";

void kd_api_request_free(kd_api_request *r) {
    free(r->ids);
    kd_tool_guide_close(r->gp.guide);
    memset(r, 0, sizeof *r);
}

static int bad(kd_api_status *status, int code, kd_error *err, const char *param, const char *fmt, const char *a) {
    status->code = code;
    kd_error_set(err, KD_ERR_INVALID, fmt, a ? a : "");
    snprintf(status->param, sizeof status->param, "%s", param ? param : "");
    return KD_ERR_INVALID;
}

/* An optional integer field in [lo, hi]; *v keeps its default when absent or null. */
static int get_int(const json_t *o, const char *key, long long lo, long long hi, long long *v, kd_api_status *status, kd_error *err) {
    const json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return KD_OK;
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi) {
        status->code = 400;
        kd_error_set(err, KD_ERR_INVALID, "'%s' must be an integer from %lld to %lld", key, lo, hi);
        snprintf(status->param, sizeof status->param, "%s", key);
        return KD_ERR_INVALID;
    }
    *v = json_integer_value(x);
    return KD_OK;
}

static int get_num(const json_t *o, const char *key, double lo, double hi, double *v, kd_api_status *status, kd_error *err) {
    const json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return KD_OK;
    if (!json_is_number(x) || json_number_value(x) < lo || json_number_value(x) > hi) {
        status->code = 400;
        kd_error_set(err, KD_ERR_INVALID, "'%s' must be a number from %g to %g", key, lo, hi);
        snprintf(status->param, sizeof status->param, "%s", key);
        return KD_ERR_INVALID;
    }
    *v = json_number_value(x);
    return KD_OK;
}

static uint64_t fresh_seed(void) {
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) << 32;
}

/* The prompt text of a request: the chat rendered with the generation prompt, or the prompt string. */
static int prompt_text(const json_t *req, int kind, kd_api_request *out, char **text, size_t *len, kd_api_status *status, kd_error *err) {
    if (kind == KD_API_COMPLETIONS) {
        const json_t *p = json_object_get(req, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
        if (!json_is_string(p))
            return bad(status, 400, err, "prompt", "'prompt' must be a string (one prompt per request)%s", NULL);
        *len = json_string_length(p);
        *text = kd_calloc(*len + 1, 1);
        if (!*text) return bad(status, 500, err, NULL, "out of memory%s", NULL);
        memcpy(*text, json_string_value(p), *len);
        return KD_OK;
    }
    const json_t *msgs = json_object_get(req, "messages"), *tools = json_object_get(req, "tools");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(status, 400, err, "messages", "'messages' must be a non-empty array of {\"role\", \"content\"}%s", NULL);
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return bad(status, 400, err, "tools", "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}%s", NULL);
    const json_t *tc = json_object_get(req, "tool_choice");
    const char *tcs = json_string_value(tc);
    if (tc && !json_is_null(tc) && !(tcs && (strcmp(tcs, "auto") == 0 || strcmp(tcs, "none") == 0)))
        return bad(status, 400, err, "tool_choice", "'tool_choice' may be \"auto\" or \"none\" here (forcing a call is not supported)%s", NULL);
    int none = tcs && strcmp(tcs, "none") == 0;
    out->has_tools = json_is_array(tools) && json_array_size(tools) > 0 && !none;
    /* vLLM's chat extras: add_generation_prompt (default true) and continue_final_message (false);
     * scoring a finished conversation sends false and false (the prompt ends after its last turn) */
    const json_t *agp = json_object_get(req, "add_generation_prompt"), *cfm = json_object_get(req, "continue_final_message");
    if ((agp && !json_is_null(agp) && !json_is_boolean(agp)) || (cfm && !json_is_null(cfm) && !json_is_boolean(cfm)))
        return bad(status, 400, err, "add_generation_prompt", "'add_generation_prompt' and 'continue_final_message' must be true or false%s", NULL);
    if (json_is_true(cfm))
        return bad(status, 400, err, "continue_final_message", "'continue_final_message': true is not supported%s", NULL);
    kd_chat_options o = {.add_generation_prompt = !json_is_false(agp)};
    kd_chat_result r;
    kd_error rerr = {0};
    if (kd_chat_render_json(msgs, out->has_tools ? tools : NULL, &o, &r, &rerr)) {
        status->code = 400;
        kd_error_set(err, KD_ERR_INVALID, "messages: %s", rerr.msg);
        snprintf(status->param, sizeof status->param, "messages");
        return KD_ERR_INVALID;
    }
    *text = r.text;
    *len = r.len;
    r.text = NULL;
    kd_chat_render_free(&r);
    return KD_OK;
}

/* Sampling and logprob fields. */
static int parse_params(const json_t *req, int kind, const kd_api_limits *lim, kd_api_request *out, long long *max_tokens,
                        kd_api_status *status, kd_error *err) {
    double temp = 1.0, top_p = 1.0;
    long long seed = -1, top_lp = 0, plp = -1, n = 1;
    int rc;
    if ((rc = get_int(req, "max_tokens", 1, lim->max_tokens, max_tokens, status, err)) ||
        (rc = get_int(req, "max_completion_tokens", 1, lim->max_tokens, max_tokens, status, err)) ||
        (rc = get_num(req, "temperature", 0.0, 2.0, &temp, status, err)) || (rc = get_num(req, "top_p", 1e-6, 1.0, &top_p, status, err)) ||
        (rc = get_int(req, "seed", -(1LL << 62), 1LL << 62, &seed, status, err)) ||
        (rc = get_int(req, "prompt_logprobs", 0, KD_ENGINE_MAX_TOP, &plp, status, err)) || (rc = get_int(req, "n", 1, 1, &n, status, err)))
        return rc;
    if (kind == KD_API_CHAT) {
        const json_t *lp = json_object_get(req, "logprobs");
        if (lp && !json_is_null(lp) && !json_is_boolean(lp)) return bad(status, 400, err, "logprobs", "'logprobs' must be true or false in chat completions%s", NULL);
        out->logprobs = json_is_true(lp);
        if ((rc = get_int(req, "top_logprobs", 0, KD_ENGINE_MAX_TOP, &top_lp, status, err))) return rc;
        if (top_lp > 0 && !out->logprobs) return bad(status, 400, err, "top_logprobs", "'top_logprobs' needs \"logprobs\": true%s", NULL);
    } else {
        const json_t *lp = json_object_get(req, "logprobs");
        if (lp && !json_is_null(lp)) {
            if ((rc = get_int(req, "logprobs", 0, KD_ENGINE_MAX_TOP, &top_lp, status, err))) return rc;
            out->logprobs = 1;
        }
        if (json_is_true(json_object_get(req, "echo"))) return bad(status, 400, err, "echo", "'echo' is not supported; use prompt_logprobs for the prompt's logprobs%s", NULL);
    }
    const json_t *ie = json_object_get(req, "ignore_eos");
    if (ie && !json_is_null(ie) && !json_is_boolean(ie)) return bad(status, 400, err, "ignore_eos", "'ignore_eos' must be true or false%s", NULL);
    out->gp.ignore_eos = json_is_true(ie);
    const json_t *st = json_object_get(req, "stream");
    if (st && !json_is_null(st) && !json_is_boolean(st)) return bad(status, 400, err, "stream", "'stream' must be true or false%s", NULL);
    out->stream = json_is_true(st);
    out->include_usage = json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage"));
    out->gp.temperature = (float)temp;
    out->gp.top_p = (float)top_p;
    out->gp.seed = seed >= 0 ? (uint64_t)seed : fresh_seed();
    out->gp.top_logprobs = (int)top_lp;
    out->gp.prompt_logprobs = (int)plp;
    return KD_OK;
}

int kd_api_parse(const kd_student *st, int kind, const char *body, size_t len, const kd_api_limits *lim,
                 kd_api_request *out, kd_api_status *status, kd_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    status->code = 400;
    status->param[0] = 0;
    json_error_t je;
    json_t *req = json_loadb(body, len, 0, &je);
    if (!req) {
        kd_error_set(err, KD_ERR_PARSE, "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return KD_ERR_PARSE;
    }
    char *text = NULL;
    size_t tlen = 0;
    long long max_tokens = -1;
    int rc = KD_OK;
    const char *model = json_string_value(json_object_get(req, "model"));
    if (!json_is_object(req)) rc = bad(status, 400, err, NULL, "the request body must be a JSON object%s", NULL);
    else if (!model) rc = bad(status, 400, err, "model", "'model' is required: name the served model (GET /v1/models lists it)%s", NULL);
    else if (strcmp(model, lim->model) != 0) {
        status->code = 404;
        rc = kd_error_set(err, KD_ERR_NOTFOUND, "The model `%.200s` does not exist. This server serves `%.200s`.", model, lim->model);
        snprintf(status->param, sizeof status->param, "model");
    }
    if (!rc) rc = parse_params(req, kind, lim, out, &max_tokens, status, err);
    if (!rc) rc = prompt_text(req, kind, out, &text, &tlen, status, err);
    if (!rc && kind == KD_API_CHAT && out->has_tools && lim->guide > 0) { /* kdstep serve --guide */
        kd_error gerr = {0};
        if (kd_tool_guide_open(&out->gp.guide, st->tok, json_object_get(req, "tools"), lim->guide, &gerr)) {
            status->code = 400;
            rc = kd_error_set(err, KD_ERR_INVALID, "tools: %s", gerr.msg);
            snprintf(status->param, sizeof status->param, "tools");
        }
    }
    json_decref(req);
    if (rc) {
        free(text);
        kd_api_request_free(out);
        return rc;
    }
    kd_encoding enc = {0};
    rc = kd_tokenizer_encode(st->tok, text, tlen, 0, &enc, err);
    free(text);
    if (rc) {
        status->code = 400;
        kd_encoding_free(&enc);
        return rc;
    }
    int maxpos = st->model->cfg.max_position_embeddings, n = (int)enc.count;
    if (max_tokens < 0) max_tokens = maxpos - n < lim->max_tokens ? maxpos - n : lim->max_tokens;
    if (n == 0) rc = bad(status, 400, err, kind == KD_API_CHAT ? "messages" : "prompt", "the prompt is empty%s", NULL);
    else if ((long long)n + (max_tokens > 0 ? max_tokens : 1) > maxpos) {
        status->code = 400;
        rc = kd_error_set(err, KD_ERR_INVALID,
                          "This model's maximum context length is %d tokens. However, you requested %lld tokens (%d in the "
                          "prompt, %lld for the completion). Please reduce the length of the prompt or max_tokens.",
                          maxpos, (long long)n + (max_tokens > 0 ? max_tokens : 1), n, max_tokens > 0 ? max_tokens : 1);
        snprintf(status->param, sizeof status->param, "%s", kind == KD_API_CHAT ? "messages" : "prompt");
    }
    if (!rc) {
        out->ids = kd_calloc((size_t)n, sizeof(int32_t));
        if (!out->ids) rc = bad(status, 500, err, NULL, "out of memory%s", NULL);
        else {
            memcpy(out->ids, enc.ids, (size_t)n * sizeof(int32_t));
            out->n_ids = n;
            out->gp.max_tokens = (int)max_tokens;
        }
    }
    kd_encoding_free(&enc);
    if (rc) kd_api_request_free(out);
    return rc;
}

/* ---- responses ---- */

/* A token's text as a JSON string; bytes that are not valid UTF-8 (a token may split a character)
 * become U+FFFD, the exact bytes go in "bytes" as OpenAI does. */
static json_t *utf8_string(const char *p, size_t n) {
    char *buf = kd_calloc(n * 3 + 1, 1);
    if (!buf) return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = (unsigned char)p[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = k > 0 && i + k <= n && !(k == 1 && c == 0);
        for (size_t j = 1; ok && j < k; j++) ok = ((unsigned char)p[i + j] & 0xC0) == 0x80;
        if (!ok) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(buf + o, p + i, k);
        o += k;
        i += k;
    }
    json_t *s = json_stringn(buf, o);
    free(buf);
    return s ? s : json_string("");
}

static json_t *token_text(const kd_student *st, int32_t id) {
    const char *b;
    size_t n;
    if (kd_tokenizer_token_bytes(st->tok, id, &b, &n)) return json_string("");
    return utf8_string(b, n);
}

static json_t *token_bytes(const kd_student *st, int32_t id) {
    const char *b;
    size_t n;
    json_t *a = json_array();
    if (kd_tokenizer_token_bytes(st->tok, id, &b, &n) == 0)
        for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)b[i]));
    return a;
}

static double lp_value(float x) { return isfinite(x) ? (double)x : -9999.0; }

/* Is `id` one of the checkpoint's stop ids? */
static int is_stop(const kd_student *st, int32_t id) {
    for (int j = 0; j < st->n_stop; j++)
        if (id == st->stop[j]) return 1;
    return 0;
}

/* Tokens [0, n) without a final stop token, as ids. */
static int visible_count(const kd_student *st, const kd_gen_token *t, int n) {
    return n > 0 && is_stop(st, t[n - 1].id) ? n - 1 : n;
}

static int decode_tokens(const kd_student *st, const kd_gen_token *t, int n, char **text, size_t *len, kd_error *err) {
    int32_t *ids = kd_calloc((size_t)(n > 0 ? n : 1), sizeof(int32_t));
    if (!ids) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) ids[i] = t[i].id;
    int rc = kd_tokenizer_decode(st->tok, ids, (size_t)n, 0, text, len, err);
    free(ids);
    return rc;
}

/* Where the answer starts after a leading <think>...</think> block (and the newlines after it), as
 * vLLM's qwen3 reasoning parser splits it; 0 without one. *hold: more text is needed to know. */
static size_t think_end(const char *text, size_t len, int final, int *hold) {
    static const char OPEN[] = "<think>", CLOSE[] = "</think>";
    *hold = 0;
    if (len < sizeof OPEN - 1) {
        *hold = !final && memcmp(text, OPEN, len) == 0;
        return 0;
    }
    if (memcmp(text, OPEN, sizeof OPEN - 1) != 0) return 0;
    const char *c = strstr(text, CLOSE);
    if (!c) {
        *hold = !final;
        return len; /* all reasoning so far */
    }
    size_t e = (size_t)(c - text) + sizeof CLOSE - 1;
    while (e < len && text[e] == '\n') e++;
    if (e == len && !final) *hold = 1; /* more newlines may follow */
    return e;
}

int kd_api_split_output(const kd_student *st, const int32_t *ids, int n, int has_tools, int parse_think, const char *id_prefix,
                        char **content, json_t **calls, kd_error *err) {
    *content = NULL;
    *calls = json_array();
    char *full = NULL, *text;
    size_t len = 0;
    int rc = kd_tokenizer_decode(st->tok, ids, (size_t)n, 0, &full, &len, err);
    if (rc) return rc;
    int hold;
    size_t skip = parse_think ? think_end(full, len, 1, &hold) : 0;
    text = full + skip;
    len -= skip;
    const char *open = has_tools ? strstr(text, TOOL_OPEN) : NULL;
    kd_tool_calls tc = {0};
    if (open && kd_extract_tool_calls(open, len - (size_t)(open - text), NULL, &tc, NULL) == KD_OK) {
        for (size_t i = 0; i < tc.count; i++) {
            kd_tool_call *c = &tc.v[i];
            if (c->format != KD_CALL_HERMES || !c->json_valid || !c->name_text) continue;
            /* as vLLM's Hermes parser writes them: Python's json.dumps (", " and ": "), which is also how
             * the chat template renders the call back into the conversation */
            char *args = kd_chat_tojson(c->args);
            char cid[96];
            snprintf(cid, sizeof cid, "%s-%zu", id_prefix ? id_prefix : "call", json_array_size(*calls));
            json_array_append_new(*calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", cid, "type", "function", "function", "name",
                                                    c->name_text, "arguments", args ? args : "{}"));
            free(args);
        }
    }
    kd_tool_calls_free(&tc);
    size_t keep = len;
    if (json_array_size(*calls) > 0) {
        keep = (size_t)(open - text);
        while (keep > 0 && (text[keep - 1] == '\n' || text[keep - 1] == ' ')) keep--;
    }
    if (keep > 0) {
        text[keep] = 0;
        memmove(full, text, keep + 1);
        *content = full;
    } else free(full);
    return KD_OK;
}

/* The logprobs of tokens [0, n): chat's {"content": [...]} or completions' {tokens, token_logprobs,
 * top_logprobs, text_offset}. */
static json_t *gen_logprobs(const kd_student *st, const kd_api_request *r, const kd_gen_token *t, int n) {
    if (r->kind == KD_API_CHAT) {
        json_t *content = json_array();
        for (int i = 0; i < n; i++) {
            json_t *top = json_array();
            for (int j = 0; j < t[i].n_top && j < r->gp.top_logprobs; j++)
                json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", token_text(st, t[i].top_id[j]), "logprob",
                                                     lp_value(t[i].top_logprob[j]), "bytes", token_bytes(st, t[i].top_id[j])));
            json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", token_text(st, t[i].id), "logprob",
                                                     lp_value(t[i].logprob), "bytes", token_bytes(st, t[i].id), "top_logprobs", top));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *b;
        size_t nb = 0;
        if (kd_tokenizer_token_bytes(st->tok, t[i].id, &b, &nb)) nb = 0;
        json_array_append_new(toks, token_text(st, t[i].id));
        json_array_append_new(lps, json_real(lp_value(t[i].logprob)));
        json_t *top = json_object();
        for (int j = 0; j < t[i].n_top && j < r->gp.top_logprobs; j++) {
            json_t *k = token_text(st, t[i].top_id[j]);
            json_object_set_new(top, json_string_value(k), json_real(lp_value(t[i].top_logprob[j])));
            json_decref(k);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += nb;
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

/* vLLM's prompt_logprobs: [null, {"<id>": {"logprob", "rank", "decoded_token"}, ...}, ...], the prompt
 * token's own entry FIRST (with its rank in the whole vocabulary), then the top-k with ranks 1..k, a token
 * in both written once, in the first place: vLLM's append_logprobs_for_next_position (vllm/logprobs.py)
 * builds each position's dict from [prompt token, *top-k] ("inserting duplicated data into a dictionary
 * twice is the same as doing it once"). Clients (kdstep's own, src/teacher/prompt_lp.c) read the first
 * entry as the prompt token: written after the top-k, a prompt token that was not the model's first choice
 * (a U+FFFD re-tokenized into byte tokens, say) was read as its rank-1 token (issue 19). */
static json_t *prompt_logprobs_json(const kd_student *st, const kd_api_request *r, const kd_gen_token *plp) {
    json_t *a = json_array();
    json_array_append_new(a, json_null());
    for (int i = 1; i < r->n_ids; i++) {
        const kd_gen_token *e = &plp[i];
        json_t *o = json_object();
        char key[16];
        int rank = e->rank;
        for (int j = 0; j < e->n_top; j++)
            if (e->top_id[j] == r->ids[i]) rank = j + 1;
        snprintf(key, sizeof key, "%d", r->ids[i]);
        json_object_set_new(o, key, json_pack("{s:f, s:i, s:o}", "logprob", lp_value(e->logprob), "rank", rank,
                                              "decoded_token", token_text(st, r->ids[i])));
        for (int j = 0; j < e->n_top; j++) {
            if (e->top_id[j] == r->ids[i]) continue;
            snprintf(key, sizeof key, "%d", e->top_id[j]);
            json_object_set_new(o, key, json_pack("{s:f, s:i, s:o}", "logprob", lp_value(e->top_logprob[j]), "rank", j + 1,
                                                  "decoded_token", token_text(st, e->top_id[j])));
        }
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *id_array(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static const char *finish_reason(int state, int has_calls) {
    return state == KD_SEQ_LENGTH ? "length" : has_calls ? "tool_calls" : "stop";
}

char *kd_api_response(const kd_student *st, const kd_api_request *r, const char *id, const char *model, long created,
                      const kd_seq *seq, int n, int state, kd_error *err) {
    const kd_gen_token *t = kd_seq_tokens(seq);
    int nv = visible_count(st, t, n);
    int32_t *ids = kd_calloc((size_t)(nv > 0 ? nv : 1), sizeof(int32_t));
    if (!ids) return kd_error_set(err, KD_ERR_NOMEM, "out of memory"), NULL;
    for (int i = 0; i < nv; i++) ids[i] = t[i].id;
    char *content = NULL;
    json_t *calls = NULL;
    int rc = kd_api_split_output(st, ids, nv, r->kind == KD_API_CHAT && r->has_tools, r->kind == KD_API_CHAT, id, &content, &calls, err);
    free(ids);
    if (rc) return NULL;
    int has_calls = json_array_size(calls) > 0;
    json_t *choice;
    if (r->kind == KD_API_CHAT) {
        json_t *msg = json_pack("{s:s, s:o}", "role", "assistant", "content", content ? json_string(content) : json_null());
        if (has_calls) json_object_set(msg, "tool_calls", calls);
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "message", msg, "logprobs",
                           r->logprobs ? gen_logprobs(st, r, t, nv) : json_null(), "finish_reason", finish_reason(state, has_calls));
    } else {
        choice = json_pack("{s:i, s:s, s:o, s:s}", "index", 0, "text", content ? content : "", "logprobs",
                           r->logprobs ? gen_logprobs(st, r, t, nv) : json_null(), "finish_reason", finish_reason(state, 0));
    }
    free(content);
    json_decref(calls);
    json_t *root = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:i, s:i, s:i}}", "id", id, "object",
                             r->kind == KD_API_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model",
                             model, "choices", choice, "usage", "prompt_tokens", r->n_ids, "completion_tokens", n, "total_tokens",
                             r->n_ids + n);
    if (root && r->gp.prompt_logprobs >= 0 && kd_seq_prompt_logprobs(seq)) {
        json_t *where = r->kind == KD_API_CHAT ? root : choice;
        json_object_set_new(where, "prompt_token_ids", id_array(r->ids, r->n_ids));
        json_object_set_new(where, "prompt_logprobs", prompt_logprobs_json(st, r, kd_seq_prompt_logprobs(seq)));
    }
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!s) kd_error_set(err, KD_ERR_NOMEM, "out of memory building the response");
    return s;
}

/* ---- streaming (server-sent events, as OpenAI: "data: {chunk}\n\n" ..., "data: [DONE]\n\n") ---- */

static void sse_chunk(kd_sbuf *b, json_t *chunk) {
    char *s = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
    json_decref(chunk);
    if (!s) {
        b->oom = 1;
        return;
    }
    kd_sbuf_puts(b, "data: ");
    kd_sbuf_puts(b, s);
    kd_sbuf_puts(b, "\n\n");
    free(s);
}

static json_t *chunk_of(const kd_api_request *r, const char *id, const char *model, long created, json_t *choice) {
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object", r->kind == KD_API_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)created, "model", model, "choices", choice);
}

/* How much of text[0, len) may go out now: not a possible start of a tool call (with tools), not
 * trailing blanks before one, not an incomplete UTF-8 character at the end. */
static size_t sendable(const char *text, size_t len, int has_tools, int final) {
    size_t cut = len;
    if (has_tools) {
        const char *open = strstr(text, TOOL_OPEN);
        if (open) cut = (size_t)(open - text);
        else if (!final) /* a suffix that could grow into "<tool_call>" waits */
            for (size_t k = sizeof TOOL_OPEN - 2; k > 0; k--)
                if (len >= k && memcmp(text + len - k, TOOL_OPEN, k) == 0) {
                    cut = len - k;
                    break;
                }
        if (open || !final)
            while (cut > 0 && (text[cut - 1] == '\n' || text[cut - 1] == ' ')) cut--;
    }
    if (!final) { /* never split a UTF-8 character */
        size_t i = cut, back = 0;
        while (i > 0 && back < 4 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) i--, back++;
        if (i > 0) {
            unsigned c = (unsigned char)text[i - 1];
            size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
            if (back + 1 < need) cut = i - 1;
        }
    }
    return cut;
}

char *kd_api_stream_events(const kd_student *st, const kd_api_request *r, const char *id, const char *model,
                           long created, const kd_seq *seq, int n, int state, kd_api_stream *ss) {
    kd_sbuf b = {0};
    if (ss->finished) return kd_sbuf_take(&b); /* "" */
    int chat = r->kind == KD_API_CHAT, final = state != KD_SEQ_RUNNING;
    if (chat && !ss->started)
        sse_chunk(&b, chunk_of(r, id, model, created, json_pack("{s:i, s:{s:s, s:s}, s:n, s:n}", "index", 0, "delta", "role", "assistant",
                                                                 "content", "", "logprobs", "finish_reason")));
    ss->started = 1;
    const kd_gen_token *t = kd_seq_tokens(seq);
    int nv = visible_count(st, t, n);
    char *text = NULL;
    size_t len = 0;
    kd_error err = {0};
    if (decode_tokens(st, t, nv, &text, &len, &err)) {
        kd_sbuf_free(&b);
        return NULL;
    }
    int tools = chat && r->has_tools, hold = 0;
    json_t *calls = json_array();
    size_t start = chat ? think_end(text, len, final, &hold) : 0; /* a reasoning block is not content */
    if (ss->sent < start) ss->sent = start;
    size_t cut = hold ? ss->sent : start + sendable(text + start, len - start, tools, final);
    if (final && tools) { /* the calls, parsed as the non-streaming answer does */
        char *content = NULL;
        json_decref(calls);
        int32_t *ids = kd_calloc((size_t)(nv > 0 ? nv : 1), sizeof(int32_t));
        for (int i = 0; ids && i < nv; i++) ids[i] = t[i].id;
        if (!ids || kd_api_split_output(st, ids, nv, 1, 1, id, &content, &calls, &err)) calls = json_array();
        free(ids);
        free(content);
        if (json_array_size(calls) == 0) cut = len > start ? len : start;
    }
    if (cut > ss->sent) {
        json_t *piece = utf8_string(text + ss->sent, cut - ss->sent);
        json_t *choice = chat ? json_pack("{s:i, s:{s:o}, s:n, s:n}", "index", 0, "delta", "content", piece, "logprobs", "finish_reason")
                              : json_pack("{s:i, s:o, s:n, s:n}", "index", 0, "text", piece, "logprobs", "finish_reason");
        sse_chunk(&b, chunk_of(r, id, model, created, choice));
        ss->sent = cut;
    }
    free(text);
    if (final) {
        size_t nc = json_array_size(calls);
        if (nc > 0) {
            json_t *deltas = json_array();
            for (size_t i = 0; i < nc; i++) {
                json_t *c = json_deep_copy(json_array_get(calls, i));
                json_object_set_new(c, "index", json_integer((json_int_t)i));
                json_array_append_new(deltas, c);
            }
            sse_chunk(&b, chunk_of(r, id, model, created, json_pack("{s:i, s:{s:o}, s:n, s:n}", "index", 0, "delta", "tool_calls", deltas,
                                                                     "logprobs", "finish_reason")));
        }
        const char *fr = finish_reason(state, nc > 0);
        json_t *choice = chat ? json_pack("{s:i, s:{}, s:n, s:s}", "index", 0, "delta", "logprobs", "finish_reason", fr)
                              : json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", "", "logprobs", "finish_reason", fr);
        sse_chunk(&b, chunk_of(r, id, model, created, choice));
        if (r->include_usage) {
            json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:[], s:{s:i, s:i, s:i}}", "id", id, "object",
                                  chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created, "model", model,
                                  "choices", "usage", "prompt_tokens", r->n_ids, "completion_tokens", n, "total_tokens", r->n_ids + n);
            sse_chunk(&b, u);
        }
        kd_sbuf_puts(&b, "data: [DONE]\n\n");
        ss->finished = 1;
    }
    json_decref(calls);
    return kd_sbuf_take(&b); /* NULL when out of memory */
}
