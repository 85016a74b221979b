/* Chat rendering in the student's template (Qwen3's chat_template, rendered exactly), with the byte
 * span of every message, of its content and of every tool call in the rendered text, so later stages
 * know where the response starts and can map character spans of a message into the sequence.
 */
#ifndef KDSTEP_CHAT_H
#define KDSTEP_CHAT_H

#include <jansson.h>
#include <stddef.h>

#include "kdstep/error.h"

typedef struct kd_span {
    size_t start, end; /* byte [start, end) */
} kd_span;

typedef struct kd_chat_message {
    const char *role;       /* "system" | "user" | "assistant" | "tool" */
    const char *content;    /* may be NULL or "" */
    const json_t *tool_calls; /* assistant only: OpenAI-style array of {"name","arguments"} or
                                 {"type":"function","function":{"name","arguments"}}; NULL if none */
} kd_chat_message;

typedef struct kd_chat_render {
    char *text;
    size_t len;
    int n_messages;
    kd_span *message_spans;   /* [n_messages]: the whole block of each message, markers included */
    kd_span *content_spans;   /* [n_messages]: the content text as rendered (may be empty) */
    int n_tool_calls;
    kd_span *tool_call_spans; /* [n_tool_calls]: the JSON object inside each <tool_call> block */
    int *tool_call_message;   /* [n_tool_calls]: index of the message each call belongs to */
    size_t generation_start;  /* with add_generation_prompt: where the assistant's answer begins */
} kd_chat_render;

/* `tools` is an OpenAI tools array or NULL. */
int kd_chat_render(const kd_chat_message *msgs, int n, const json_t *tools, int add_generation_prompt,
                   kd_chat_render *out, kd_error *err);
void kd_chat_render_free(kd_chat_render *r);

#endif
