/* The stub teacher: writing the answer, and kd_stub_complete (see stub_internal.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kdstep/hash.h"
#include "kdstep/stub_policy.h"
#include "kdstep/teacher.h"
#include "stub_internal.h"

int kd_tool_format_from_name(const char *name, int *fmt, kd_error *err) {
    if (strcmp(name, "hermes") == 0) *fmt = KD_TOOL_FORMAT_HERMES;
    else if (strcmp(name, "inline_json") == 0) *fmt = KD_TOOL_FORMAT_INLINE_JSON;
    else
        return kd_error_set(err, KD_ERR_INVALID, "teacher.tool_call_format: unknown format '%s' (use hermes or inline_json)",
                            name);
    return KD_OK;
}

/* ---- writing the answer ---- */

typedef struct answer {
    kd_sbuf text;
    kspan spans[64];
    int nspans;
} answer;

static void add_span(answer *a, size_t b, size_t e, int kind, int tool) {
    if (a->nspans < 64) a->spans[a->nspans++] = (kspan){b, e, kind, tool};
}

static void write_call(answer *a, int fmt, const char *name, int tool, const char *args_json, int first) {
    if (fmt == KD_TOOL_FORMAT_HERMES) kd_sbuf_puts(&a->text, first ? "<tool_call>\n{\"name\": \"" : "\n<tool_call>\n{\"name\": \"");
    else kd_sbuf_puts(&a->text, first ? "I will use {\"name\": \"" : " and then {\"name\": \"");
    size_t b = a->text.len;
    kd_sbuf_puts(&a->text, name);
    add_span(a, b, a->text.len, SPAN_NAME, tool);
    kd_sbuf_puts(&a->text, "\", \"arguments\": ");
    b = a->text.len;
    kd_sbuf_puts(&a->text, args_json);
    add_span(a, b, a->text.len, SPAN_ARGS, tool);
    kd_sbuf_puts(&a->text, fmt == KD_TOOL_FORMAT_HERMES ? "}\n</tool_call>" : "}");
}

static const char *message_text(const json_t *m) {
    const json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) return json_string_value(c);
    /* content parts: the first text part */
    size_t i;
    const json_t *p;
    json_array_foreach(c, i, p) {
        const char *t = json_string_value(json_object_get(p, "text"));
        if (t) return t;
    }
    return "";
}

/* Scalar leaves of a tool result, "key is value", for the final answer. */
static void collect_leaves(const json_t *v, const char *key, kd_sbuf *out, int *n, int max) {
    if (*n >= max) return;
    if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) collect_leaves(x, k, out, n, max);
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (i >= 2) break;
            collect_leaves(x, key, out, n, max);
        }
    } else if (key) {
        char *s = json_is_string(v) ? kd_strndup(json_string_value(v), strnlen(json_string_value(v), 120)) : json_dumps(v, JSON_ENCODE_ANY);
        if (!s) return;
        kd_sbuf_printf(out, "%s%s is %s", *n ? ", " : "", key, s);
        free(s);
        (*n)++;
    }
}

static void write_final_answer(answer *a, const json_t *messages) {
    kd_sbuf_puts(&a->text, "Here is what I found.");
    size_t i;
    const json_t *m;
    /* tool_call_id -> name from the assistant turn */
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || strcmp(role, "tool") != 0) continue;
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *id = json_string_value(json_object_get(m, "tool_call_id"));
        for (size_t j = 0; !name && id && j < i; j++) {
            const json_t *calls = json_object_get(json_array_get(messages, j), "tool_calls");
            size_t q;
            const json_t *tc;
            json_array_foreach(calls, q, tc) {
                const char *tid = json_string_value(json_object_get(tc, "id"));
                if (tid && strcmp(tid, id) == 0) name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
            }
        }
        const char *content = message_text(m);
        json_t *r = json_loads(content, JSON_DECODE_ANY, NULL);
        kd_sbuf_printf(&a->text, " According to %s, ", name ? name : "the tool");
        if (r && (json_is_object(r) || json_is_array(r))) {
            int n = 0;
            collect_leaves(r, NULL, &a->text, &n, 4);
            if (!n) kd_sbuf_puts(&a->text, "there was nothing to report");
        } else {
            kd_sbuf_printf(&a->text, "the result is \"%.*s\"", 160, content);
        }
        kd_sbuf_puts(&a->text, ".");
        json_decref(r);
    }
}

static uint64_t messages_hash(const json_t *messages, int64_t seed) {
    char *d = json_dumps(messages, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t h = d ? kd_hash64(d, strlen(d)) : 0;
    free(d);
    return h ^ ((uint64_t)seed * 0x9E3779B97F4A7C15ULL);
}

/* 1 when a request offers exactly the stub's registry (same names, same order). */
static int offers_registry(const kd_stub_teacher *s, const tool_view *tv, int ntools) {
    if (tv == s->reg_tools) return 1;
    if (ntools != s->n_reg_tools) return 0;
    for (int i = 0; i < ntools; i++)
        if (strcmp(tv[i].name, s->reg_tools[i].name) != 0) return 0;
    return 1;
}

/* A request with its own tools: the policy of stub_policy.c picks the calls and their arguments
 * (tv indices in picks, new references in args). -1 when the tools do not load (then the
 * registry-driven chooser answers). */
static int policy_requests(const tool_view *tv, int ntools, const json_t *tools, const char *prompt, int *picks, json_t **args,
                           int maxp) {
    kd_registry *reg = NULL;
    if (kd_registry_from_json(&reg, tools, "request tools", NULL) != KD_OK) {
        kd_registry_close(reg);
        return -1;
    }
    kd_policy_call calls[KD_POLICY_MAX_CALLS];
    int n = kd_stub_policy_plan(reg, prompt, calls, maxp < KD_POLICY_MAX_CALLS ? maxp : KD_POLICY_MAX_CALLS), np = 0;
    for (int i = 0; i < n; i++) {
        int pick = -1;
        for (int t = 0; t < ntools && pick < 0; t++)
            if (strcmp(tv[t].name, reg->tools[calls[i].tool].name) == 0) pick = t;
        if (pick < 0) {
            json_decref(calls[i].arguments);
            continue;
        }
        picks[np] = pick;
        args[np++] = calls[i].arguments;
    }
    kd_registry_close(reg);
    return np;
}

/* Required arguments the policy could not read: the heuristics' guess (fill_args) for those only. */
static void guess_missing_required(json_t *args, const char *prompt, const json_t *params) {
    json_t *guess = fill_args(prompt, params), *r;
    size_t ri;
    json_array_foreach(json_object_get(params, "required"), ri, r) {
        const char *rk = json_string_value(r);
        if (rk && !json_object_get(args, rk) && json_object_get(guess, rk)) json_object_set(args, rk, json_object_get(guess, rk));
    }
    json_decref(guess);
}

int kd_stub_complete(kd_stub_teacher *s, const json_t *messages, const json_t *tools, int top_k, int64_t seed,
                     kd_teacher_completion *c, kd_error *err) {
    return kd_stub_complete_thinking(s, messages, tools, top_k, seed, s->opt.thinking, c, err);
}

/* A reasoning block as a thinking model writes it before its answer (Qwen3: "<think>\n...\n</think>\n\n"). */
static void write_thinking(answer *a, const char *role, const json_t *last) {
    if (strcmp(role, "tool") == 0) {
        kd_sbuf_puts(&a->text, "<think>\nThe tool has answered. I will read its result and sum it up for the user.\n</think>\n\n");
        return;
    }
    kd_sbuf_printf(&a->text, "<think>\nThe user wrote: \"%.80s\". Which of the offered tools fits, and with which arguments?\n</think>\n\n",
                   message_text(last));
}

int kd_stub_complete_thinking(kd_stub_teacher *s, const json_t *messages, const json_t *tools, int top_k, int64_t seed,
                              int thinking, kd_teacher_completion *c, kd_error *err) {
    tool_view *tv = NULL;
    int ntools = request_tools(s, tools, &tv);
    if (ntools < 0) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    size_t nm = json_array_size(messages);
    const json_t *last = json_array_get(messages, nm - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    if (!role) {
        release_tools(s, tv, ntools);
        return kd_error_set(err, KD_ERR_INVALID, "stub teacher: messages[%zu] has no role", nm - 1);
    }
    uint64_t rng = messages_hash(messages, seed);
    answer a;
    memset(&a, 0, sizeof a);
    json_t *calls = json_array();
    int malformed = -1;
    if (thinking) write_thinking(&a, role, last);
    if (strcmp(role, "tool") == 0) {
        write_final_answer(&a, messages);
    } else {
        const char *prompt = message_text(last);
        char parts[8][1024];
        int picks[8];
        json_t *planned[8] = {0};
        /* The schema-reading policy answers requests with their own tools (issue #17's per-prompt
         * tools); a request that offers exactly the registry keeps the registry-driven chooser, whose
         * answers the demo and its tests were built on. */
        int np = tools && !offers_registry(s, tv, ntools) ? policy_requests(tv, ntools, tools, prompt, picks, planned, 8) : -1;
        if (np < 0) np = split_requests(tv, ntools, prompt, parts, picks, 8);
        int ncalls = np;
        if (!ncalls) {
            kd_sbuf_printf(&a.text, "I can answer this without a tool. You asked: \"%.200s\". ", prompt);
            kd_sbuf_puts(&a.text, "No tool is needed for that, so here is my answer directly.");
        } else {
            double u = kd_rand_uniform(&rng);
            if (u < s->opt.malformed_rate) malformed = (int)(kd_splitmix64(&rng) % 3);
            int first = 1;
            for (int i = 0; i < np; i++) {
                if (picks[i] < 0) continue;
                const tool_view *t = &tv[picks[i]];
                json_t *args = planned[i] ? planned[i] : fill_args(parts[i], t->parameters);
                if (planned[i]) guess_missing_required(args, prompt, t->parameters);
                planned[i] = NULL;
                char *aj = json_dumps(args, 0);
                const char *name = t->name;
                char bad[300];
                if (first && malformed == 1 && ntools > 1) { /* wrong tool: a different registered name */
                    name = tv[(picks[i] + 1 + (int)(kd_splitmix64(&rng) % (uint64_t)(ntools - 1))) % ntools].name;
                } else if (first && malformed == 2) { /* a name nobody registered */
                    snprintf(bad, sizeof bad, "%s_unregistered", t->name);
                    name = bad;
                }
                write_call(&a, s->opt.tool_call_format, name, picks[i], aj ? aj : "{}", first);
                json_t *call = json_object();
                char id[32];
                snprintf(id, sizeof id, "call_%016llx_%d", (unsigned long long)(rng & 0xffffffffffffULL), i);
                json_object_set_new(call, "id", json_string(id));
                json_object_set_new(call, "name", json_string(name));
                json_object_set_new(call, "arguments", json_string(aj ? aj : "{}"));
                json_array_append_new(calls, call);
                free(aj);
                json_decref(args);
                first = 0;
            }
            if (malformed == 0) { /* cut off inside the first call's arguments */
                size_t cut = a.text.len;
                for (int i = 0; i < a.nspans; i++)
                    if (a.spans[i].kind == SPAN_ARGS) {
                        cut = a.spans[i].b + (a.spans[i].e - a.spans[i].b) / 2;
                        if (cut == a.spans[i].b) cut++;
                        break;
                    }
                if (cut < a.text.len) {
                    a.text.len = cut;
                    a.text.data[cut] = 0;
                }
                json_array_clear(calls);
            }
        }
    }
    if (a.text.oom) {
        kd_sbuf_free(&a.text);
        json_decref(calls);
        release_tools(s, tv, ntools);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory writing the stub answer");
    }
    c->text = kd_sbuf_take(&a.text);
    size_t ncall = json_array_size(calls);
    if (ncall) {
        c->tool_calls = calloc(ncall, sizeof *c->tool_calls);
        for (size_t i = 0; c->tool_calls && i < ncall; i++) {
            const json_t *x = json_array_get(calls, i);
            c->tool_calls[i].id = kd_strdup(json_string_value(json_object_get(x, "id")));
            c->tool_calls[i].name = kd_strdup(json_string_value(json_object_get(x, "name")));
            c->tool_calls[i].arguments = kd_strdup(json_string_value(json_object_get(x, "arguments")));
            c->n_tool_calls++;
        }
    }
    json_decref(calls);
    c->finish_reason = kd_strdup(malformed == 0 ? "length" : c->n_tool_calls ? "tool_calls" : "stop");
    /* prompt tokens: message contents plus a few per message for the template */
    int64_t pt = 0;
    kd_encoding enc = {0};
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        const char *t = message_text(m);
        if (stub_encode(s, t, strlen(t), &enc, NULL) == KD_OK) pt += (int64_t)enc.count + 4;
    }
    stub_encoding_free(s, &enc);
    c->prompt_tokens = pt;
    int rc = stub_build_logprobs(s, c->text, strlen(c->text), 0, a.spans, a.nspans, tv, ntools, top_k,
                            (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 1, 0, &c->lp, &c->completion_tokens, err);
    release_tools(s, tv, ntools);
    return rc;
}
