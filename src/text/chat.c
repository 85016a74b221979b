/* Qwen3 chat_template rendered in C, byte for byte, with spans (see include/kdstep/chat.h).
 * The code follows the template statement by statement; comments quote the Jinja they mirror. */
#include "kdstep/chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/sbuf.h"


/* ---- json.dumps(ensure_ascii=False) ---- */

static void dump_string(kd_sbuf *b, const char *s, size_t n) {
    kd_sbuf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (esc) {
            kd_sbuf_add(b, s + i - run, run);
            run = 0;
            kd_sbuf_puts(b, esc);
        } else {
            run++;
        }
    }
    kd_sbuf_add(b, s + n - run, run);
    kd_sbuf_add(b, "\"", 1);
}

/* Python's float repr: the shortest digits that round-trip, fixed notation when the decimal
 * exponent is in (-4, 16], else d.ddde+XX. */
static void dump_real(kd_sbuf *b, double v) {
    char tmp[64];
    if (isnan(v)) {
        kd_sbuf_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        kd_sbuf_puts(b, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX */
    char digits[32];
    int nd = 0, neg = 0;
    const char *q = tmp;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
    int exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int decpt = exp10 + 1; /* value = 0.digits * 10^decpt */
    if (neg) kd_sbuf_add(b, "-", 1);
    if (v == 0) {
        kd_sbuf_puts(b, "0.0");
        return;
    }
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            kd_sbuf_puts(b, "0.");
            for (int i = 0; i < -decpt; i++) kd_sbuf_add(b, "0", 1);
            kd_sbuf_add(b, digits, (size_t)nd);
        } else if (decpt >= nd) {
            kd_sbuf_add(b, digits, (size_t)nd);
            for (int i = nd; i < decpt; i++) kd_sbuf_add(b, "0", 1);
            kd_sbuf_puts(b, ".0");
        } else {
            kd_sbuf_add(b, digits, (size_t)decpt);
            kd_sbuf_add(b, ".", 1);
            kd_sbuf_add(b, digits + decpt, (size_t)(nd - decpt));
        }
    } else {
        kd_sbuf_add(b, digits, 1);
        if (nd > 1) {
            kd_sbuf_add(b, ".", 1);
            kd_sbuf_add(b, digits + 1, (size_t)(nd - 1));
        }
        snprintf(tmp, sizeof tmp, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        kd_sbuf_puts(b, tmp);
    }
}

static void dump_json(kd_sbuf *b, const json_t *v) {
    char tmp[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        kd_sbuf_add(b, "{", 1);
        json_object_foreach((json_t *)v, k, x) {
            if (!first) kd_sbuf_add(b, ", ", 2);
            first = 0;
            dump_string(b, k, strlen(k));
            kd_sbuf_add(b, ": ", 2);
            dump_json(b, x);
        }
        kd_sbuf_add(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        kd_sbuf_add(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) kd_sbuf_add(b, ", ", 2);
            dump_json(b, json_array_get(v, i));
        }
        kd_sbuf_add(b, "]", 1);
        break;
    }
    case JSON_STRING: dump_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        kd_sbuf_puts(b, tmp);
        break;
    case JSON_REAL: dump_real(b, json_real_value(v)); break;
    case JSON_TRUE: kd_sbuf_puts(b, "true"); break;
    case JSON_FALSE: kd_sbuf_puts(b, "false"); break;
    case JSON_NULL: kd_sbuf_puts(b, "null"); break;
    }
}

char *kd_chat_tojson(const json_t *v) {
    kd_sbuf b = {0};
    dump_json(&b, v);
    kd_sbuf_add(&b, "", 0);
    if (b.oom) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

/* ---- the template ---- */

typedef struct msg_in {
    const char *role, *content, *reasoning;
    const json_t *tool_calls;
} msg_in;

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
static int ends_with(const char *s, const char *p) {
    size_t n = strlen(s), m = strlen(p);
    return n >= m && memcmp(s + n - m, p, m) == 0;
}
static const char *last_strstr(const char *s, const char *p) {
    const char *r = NULL;
    for (const char *q = strstr(s, p); q; q = strstr(q + 1, p)) r = q;
    return r;
}

/* Render one assistant string piece [s, e) after str.strip-like trimming of '\n'. */
static void trim_nl(const char **s, const char **e, int left, int right) {
    if (left)
        while (*s < *e && **s == '\n') (*s)++;
    if (right)
        while (*e > *s && (*e)[-1] == '\n') (*e)--;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* Roles and tool_calls of the messages, and the tools: an array, or null. */
static int check_messages(const msg_in *m, int n, const json_t *tools, kd_error *err) {
    for (int i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")))
            return kd_error_set(err, KD_ERR_INVALID,
                                "chat message %d: role '%s' is not one of system, user, assistant, tool", i,
                                r ? r : "(null)");
        if (m[i].tool_calls && !json_is_array(m[i].tool_calls))
            return kd_error_set(err, KD_ERR_INVALID, "chat message %d: tool_calls must be an array", i);
    }
    if (tools && !json_is_array(tools) && !json_is_null(tools))
        return kd_error_set(err, KD_ERR_INVALID, "chat tools must be an array of OpenAI tool objects");
    return KD_OK;
}

/* The span arrays of the result: one per message, one per tool call. */
static int alloc_spans(const msg_in *m, int n, kd_chat_result *out, kd_error *err) {
    int ncalls = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].role, "assistant") && m[i].tool_calls) ncalls += (int)json_array_size(m[i].tool_calls);
    out->n_messages = n;
    out->message_spans = kd_calloc((size_t)n + 1, sizeof(kd_span));
    out->content_spans = kd_calloc((size_t)n + 1, sizeof(kd_span));
    out->tool_call_spans = kd_calloc((size_t)ncalls + 1, sizeof(kd_span));
    out->tool_call_message = kd_calloc((size_t)ncalls + 1, sizeof(int));
    if (!out->message_spans || !out->content_spans || !out->tool_call_spans || !out->tool_call_message) {
        kd_chat_render_free(out);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory rendering a chat");
    }
    return KD_OK;
}

/* {%- if tools %} system block with the tools {%- else %} plain system turn {%- endif %} */
static void render_system(kd_sbuf *b, const msg_in *m, int n, const json_t *tools, kd_chat_result *out) {
    int has_tools = tools && json_is_array(tools) && json_array_size(tools) > 0;
    int first_system = n > 0 && !strcmp(m[0].role, "system");
    if (has_tools) {
        size_t s0 = b->len;
        kd_sbuf_puts(b, "<|im_start|>system\n");
        if (first_system) {
            out->content_spans[0].start = b->len;
            kd_sbuf_puts(b, or_empty(m[0].content));
            out->content_spans[0].end = b->len;
            kd_sbuf_puts(b, "\n\n");
        }
        kd_sbuf_puts(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
                   "provided with function signatures within <tools></tools> XML tags:\n<tools>");
        for (size_t t = 0; t < json_array_size(tools); t++) {
            kd_sbuf_puts(b, "\n");
            dump_json(b, json_array_get(tools, t));
        }
        kd_sbuf_puts(b, "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                   "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
                   "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
        if (first_system) out->message_spans[0] = (kd_span){s0, b->len};
    } else if (first_system) {
        out->message_spans[0].start = b->len;
        kd_sbuf_puts(b, "<|im_start|>system\n");
        out->content_spans[0].start = b->len;
        kd_sbuf_puts(b, or_empty(m[0].content));
        out->content_spans[0].end = b->len;
        kd_sbuf_puts(b, "<|im_end|>\n");
        out->message_spans[0].end = b->len;
    }
}

/* last_query_index: the last user message that is not a wrapped tool response */
static int last_query_index(const msg_in *m, int n) {
    for (int i = n - 1; i >= 0; i--) {
        const char *c = or_empty(m[i].content);
        if (!strcmp(m[i].role, "user") && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>")))
            return i;
    }
    return n - 1;
}

/* A tool call of an assistant message: {"name": ..., "arguments": ...} inside <tool_call> tags. */
static int render_tool_call(kd_sbuf *b, const json_t *tc, int i, size_t t, int content_truthy, kd_chat_result *out,
                            int *call, kd_error *err) {
    if ((t == 0 && content_truthy) || t > 0) kd_sbuf_puts(b, "\n");
    const json_t *fn = json_object_get(tc, "function");
    /* {%- if tool_call.function %}: a non-empty object (or any truthy value) */
    if (fn && !json_is_null(fn) && !json_is_false(fn) && !(json_is_object(fn) && json_object_size(fn) == 0)) tc = fn;
    const json_t *name = json_object_get(tc, "name");
    const json_t *args = json_object_get(tc, "arguments");
    if (!json_is_string(name) || !args)
        return kd_error_set(err, KD_ERR_INVALID,
                            "chat message %d: tool call %zu needs a string \"name\" and \"arguments\" "
                            "(OpenAI {\"function\": {\"name\", \"arguments\"}})",
                            i, t);
    kd_sbuf_puts(b, "<tool_call>\n");
    out->tool_call_spans[*call].start = b->len;
    kd_sbuf_puts(b, "{\"name\": \"");
    kd_sbuf_add(b, json_string_value(name), json_string_length(name));
    kd_sbuf_puts(b, "\", \"arguments\": ");
    if (json_is_string(args))
        kd_sbuf_add(b, json_string_value(args), json_string_length(args));
    else
        dump_json(b, args);
    kd_sbuf_puts(b, "}");
    out->tool_call_spans[*call].end = b->len;
    out->tool_call_message[*call] = i;
    (*call)++;
    kd_sbuf_puts(b, "\n</tool_call>");
    return KD_OK;
}

/* An assistant message: its reasoning (shown after the last query), its content, its tool calls. */
static int render_assistant(kd_sbuf *b, const msg_in *m, int i, int n, int last_query, kd_chat_result *out, int *call,
                            kd_error *err) {
    const char *content = or_empty(m[i].content);
    kd_span *ms = &out->message_spans[i], *cs = &out->content_spans[i];
    const char *cb = content, *ce = content + strlen(content); /* content */
    const char *rb = "", *re = rb;                             /* reasoning_content */
    if (m[i].reasoning) {
        rb = m[i].reasoning;
        re = rb + strlen(rb);
    } else if (strstr(content, "</think>")) {
        /* content.split('</think>')[-1].lstrip('\n') */
        cb = last_strstr(content, "</think>") + strlen("</think>");
        trim_nl(&cb, &ce, 1, 0);
        /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
        rb = content;
        re = strstr(content, "</think>");
        trim_nl(&rb, &re, 0, 1);
        for (const char *q = rb; q + 7 <= re; q++)
            if (!memcmp(q, "<think>", 7)) rb = q + 7;
        trim_nl(&rb, &re, 1, 0);
    }
    int content_truthy = ce > cb;
    ms->start = b->len;
    kd_sbuf_puts(b, "<|im_start|>assistant\n");
    if (i > last_query && (i == n - 1 || re > rb)) {
        const char *sb_ = rb, *se = re;
        trim_nl(&sb_, &se, 1, 1);
        kd_sbuf_puts(b, "<think>\n");
        kd_sbuf_add(b, sb_, (size_t)(se - sb_));
        kd_sbuf_puts(b, "\n</think>\n\n");
        const char *c2 = cb;
        trim_nl(&c2, &ce, 1, 0);
        cs->start = b->len;
        kd_sbuf_add(b, c2, (size_t)(ce - c2));
    } else {
        cs->start = b->len;
        kd_sbuf_add(b, cb, (size_t)(ce - cb));
    }
    cs->end = b->len;
    const json_t *tcs = m[i].tool_calls;
    for (size_t t = 0; tcs && t < json_array_size(tcs); t++) {
        int rc = render_tool_call(b, json_array_get(tcs, t), i, t, content_truthy, out, call, err);
        if (rc != KD_OK) return rc;
    }
    kd_sbuf_puts(b, "<|im_end|>\n");
    ms->end = b->len;
    return KD_OK;
}

/* A user or later system message, or a tool response (consecutive ones share one user turn). */
static void render_turn(kd_sbuf *b, const msg_in *m, int i, int n, kd_chat_result *out) {
    const char *role = m[i].role, *content = or_empty(m[i].content);
    kd_span *ms = &out->message_spans[i], *cs = &out->content_spans[i];
    ms->start = b->len;
    if (!strcmp(role, "tool")) {
        if (i == 0 || strcmp(m[i - 1].role, "tool")) kd_sbuf_puts(b, "<|im_start|>user");
        kd_sbuf_puts(b, "\n<tool_response>\n");
        cs->start = b->len;
        kd_sbuf_puts(b, content);
        cs->end = b->len;
        kd_sbuf_puts(b, "\n</tool_response>");
        if (i == n - 1 || strcmp(m[i + 1].role, "tool")) kd_sbuf_puts(b, "<|im_end|>\n");
    } else {
        kd_sbuf_puts(b, "<|im_start|>");
        kd_sbuf_puts(b, role);
        kd_sbuf_puts(b, "\n");
        cs->start = b->len;
        kd_sbuf_puts(b, content);
        cs->end = b->len;
        kd_sbuf_puts(b, "<|im_end|>\n");
    }
    ms->end = b->len;
}

static int render(const msg_in *m, int n, const json_t *tools, const kd_chat_options *opts, kd_chat_result *out,
                  kd_error *err) {
    memset(out, 0, sizeof *out);
    int rc = check_messages(m, n, tools, err);
    if (rc == KD_OK) rc = alloc_spans(m, n, out, err);
    if (rc != KD_OK) return rc;
    kd_sbuf b = {0};
    render_system(&b, m, n, tools, out);
    int last_query = last_query_index(m, n);
    int call = 0;
    for (int i = 0; i < n && rc == KD_OK; i++) {
        const char *role = m[i].role;
        if (!strcmp(role, "assistant")) rc = render_assistant(&b, m, i, n, last_query, out, &call, err);
        else if (!strcmp(role, "user") || !strcmp(role, "tool") || i > 0) render_turn(&b, m, i, n, out);
        /* else the leading system message, rendered above */
    }
    if (rc != KD_OK) {
        free(b.data);
        kd_chat_render_free(out);
        return rc;
    }
    out->n_tool_calls = call;
    if (opts && opts->add_generation_prompt) {
        kd_sbuf_puts(&b, "<|im_start|>assistant\n");
        if (opts->disable_thinking) kd_sbuf_puts(&b, "<think>\n\n</think>\n\n");
    }
    kd_sbuf_add(&b, "", 0);
    if (b.oom) {
        free(b.data);
        kd_chat_render_free(out);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory rendering a chat");
    }
    out->text = b.data;
    out->len = b.len;
    out->generation_start = b.len;
    return KD_OK;
}

int kd_chat_render_opts(const kd_chat_message *msgs, int n, const json_t *tools, const kd_chat_options *opts,
                        kd_chat_result *out, kd_error *err) {
    if (n < 0) return kd_error_set(err, KD_ERR_INVALID, "chat: negative message count %d", n);
    msg_in *m = kd_calloc((size_t)n + 1, sizeof *m);
    if (!m) return kd_error_set(err, KD_ERR_NOMEM, "out of memory rendering a chat");
    for (int i = 0; i < n; i++) m[i] = (msg_in){msgs[i].role, msgs[i].content, NULL, msgs[i].tool_calls};
    int rc = render(m, n, tools, opts, out, err);
    free(m);
    return rc;
}

int kd_chat_render(const kd_chat_message *msgs, int n, const json_t *tools, int add_generation_prompt,
                   kd_chat_result *out, kd_error *err) {
    kd_chat_options o = {.add_generation_prompt = add_generation_prompt};
    return kd_chat_render_opts(msgs, n, tools, &o, out, err);
}

int kd_chat_render_json(const json_t *messages, const json_t *tools, const kd_chat_options *opts,
                        kd_chat_result *out, kd_error *err) {
    if (!json_is_array(messages))
        return kd_error_set(err, KD_ERR_INVALID, "chat: \"messages\" must be an array of {role, content} objects");
    size_t n = json_array_size(messages);
    msg_in *m = kd_calloc(n + 1, sizeof *m);
    if (!m) return kd_error_set(err, KD_ERR_NOMEM, "out of memory rendering a chat");
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(messages, i);
        const json_t *role = json_object_get(x, "role"), *content = json_object_get(x, "content");
        const json_t *reasoning = json_object_get(x, "reasoning_content");
        if (!json_is_object(x) || !json_is_string(role)) {
            free(m);
            return kd_error_set(err, KD_ERR_INVALID, "chat: messages[%zu] needs a string \"role\"", i);
        }
        if (content && !json_is_string(content) && !json_is_null(content)) {
            free(m);
            return kd_error_set(err, KD_ERR_INVALID, "chat: messages[%zu].content must be a string or null", i);
        }
        if (reasoning && !json_is_string(reasoning) && !json_is_null(reasoning)) {
            free(m);
            return kd_error_set(err, KD_ERR_INVALID,
                                "chat: messages[%zu].reasoning_content must be a string or null", i);
        }
        const json_t *tc = json_object_get(x, "tool_calls");
        m[i] = (msg_in){json_string_value(role), json_string_value(content), json_string_value(reasoning),
                        json_is_null(tc) ? NULL : tc};
    }
    kd_chat_options none = {0};
    int rc = render(m, (int)n, tools, opts ? opts : &none, out, err);
    free(m);
    return rc;
}

void kd_chat_render_free(kd_chat_result *r) {
    if (!r) return;
    free(r->text);
    free(r->message_spans);
    free(r->content_spans);
    free(r->tool_call_spans);
    free(r->tool_call_message);
    memset(r, 0, sizeof *r);
}

#include "qwen3_chat_template.inc"

const char *kd_chat_template_qwen3(void) { return QWEN3_CHAT_TEMPLATE; }
