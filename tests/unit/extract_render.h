/* Test helper: render (name, arguments) calls into each teacher format, the way the models that
 * use each format write them, so extraction can be checked against known calls. Shared by
 * test_extract.c and test_targets.c. */
#ifndef KD_EXTRACT_RENDER_H
#define KD_EXTRACT_RENDER_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"

typedef struct kd_rbuf {
    char *s;
    size_t n, cap;
} kd_rbuf;

static void kd_rbuf_add(kd_rbuf *b, const char *t, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, t, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void kd_rbuf_puts(kd_rbuf *b, const char *t) { kd_rbuf_add(b, t, strlen(t)); }

/* The text each format writes for the arguments (what arguments_span must cover). Malloc'd. */
static char *kd_render_args_text(kd_call_format f, const char *args_json) {
    if (f == KD_CALL_OPENAI) {
        json_t *s = json_string(args_json);
        char *d = json_dumps(s, JSON_ENCODE_ANY);
        json_decref(s);
        size_t n = strlen(d);
        memmove(d, d + 1, n - 2);
        d[n - 2] = 0;
        return d;
    }
    if (f == KD_CALL_GLAIVE) {
        kd_rbuf b = {0};
        kd_rbuf_puts(&b, "");
        for (const char *p = args_json; *p; p++) {
            if (*p == '\'') kd_rbuf_puts(&b, "\\'");
            else kd_rbuf_add(&b, p, 1);
        }
        return b.s;
    }
    return strdup(args_json);
}

/* The name as written inside its quotes. Malloc'd. */
static char *kd_render_name_text(const char *name) {
    json_t *s = json_string(name);
    char *d = json_dumps(s, JSON_ENCODE_ANY);
    json_decref(s);
    size_t n = strlen(d);
    memmove(d, d + 1, n - 2);
    d[n - 2] = 0;
    return d;
}

/* Render n calls in format f, with prose around them. Malloc'd, NUL-terminated. */
static char *kd_render_calls(kd_call_format f, const char *const *names, const char *const *args, int n) {
    kd_rbuf b = {0};
    kd_rbuf_puts(&b, "");
    if (f == KD_CALL_INLINE_JSON) kd_rbuf_puts(&b, "I will use the \"name\" of the right tool {as you asked}. ");
    if (f == KD_CALL_HERMES) kd_rbuf_puts(&b, "<think>\nThe user wants {\"name\": \"x\", \"arguments\": {}}? No, think first.\n</think>\n\n");
    if (f == KD_CALL_OPENAI) kd_rbuf_puts(&b, "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [");
    if (f == KD_CALL_LLAMA) kd_rbuf_puts(&b, "<|python_tag|>");
    for (int i = 0; i < n; i++) {
        char *nm = kd_render_name_text(names[i]);
        char *at = kd_render_args_text(f, args[i]);
        switch (f) {
        case KD_CALL_INLINE_JSON:
            if (i) kd_rbuf_puts(&b, " and then ");
            kd_rbuf_puts(&b, "{\"name\": \"");
            kd_rbuf_puts(&b, nm);
            kd_rbuf_puts(&b, "\", \"arguments\": ");
            kd_rbuf_puts(&b, at);
            kd_rbuf_puts(&b, "}");
            break;
        case KD_CALL_HERMES:
            kd_rbuf_puts(&b, "<tool_call>\n{\"name\": \"");
            kd_rbuf_puts(&b, nm);
            kd_rbuf_puts(&b, "\", \"arguments\": ");
            kd_rbuf_puts(&b, at);
            kd_rbuf_puts(&b, "}\n</tool_call>\n");
            break;
        case KD_CALL_OPENAI:
            if (i) kd_rbuf_puts(&b, ", ");
            kd_rbuf_puts(&b, "{\"id\": \"call_");
            char num[16];
            snprintf(num, sizeof num, "%d", i);
            kd_rbuf_puts(&b, num);
            kd_rbuf_puts(&b, "\", \"type\": \"function\", \"function\": {\"name\": \"");
            kd_rbuf_puts(&b, nm);
            kd_rbuf_puts(&b, "\", \"arguments\": \"");
            kd_rbuf_puts(&b, at);
            kd_rbuf_puts(&b, "\"}}");
            break;
        case KD_CALL_LLAMA:
            if (i) kd_rbuf_puts(&b, "; ");
            kd_rbuf_puts(&b, "{\"name\": \"");
            kd_rbuf_puts(&b, nm);
            kd_rbuf_puts(&b, "\", \"parameters\": ");
            kd_rbuf_puts(&b, at);
            kd_rbuf_puts(&b, "}");
            break;
        case KD_CALL_GLAIVE:
            if (i) kd_rbuf_puts(&b, "\n\nFUNCTION RESPONSE: {\"ok\": 1}\n\n");
            kd_rbuf_puts(&b, "<functioncall> {\"name\": \"");
            kd_rbuf_puts(&b, nm);
            kd_rbuf_puts(&b, "\", \"arguments\": '");
            kd_rbuf_puts(&b, at);
            kd_rbuf_puts(&b, "'}");
            break;
        }
        free(nm);
        free(at);
    }
    if (f == KD_CALL_INLINE_JSON) kd_rbuf_puts(&b, " That should do it.");
    if (f == KD_CALL_OPENAI) kd_rbuf_puts(&b, "]}");
    return b.s;
}

#endif
