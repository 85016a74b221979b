/* Chat rendering in the student's template (Qwen3's chat_template, rendered exactly), with the byte
 * span of every message, of its content and of every tool call in the rendered text, so later stages
 * know where the response starts and can map character spans of a message into the sequence.
 *
 * The output is byte-identical to what transformers' apply_chat_template renders with Qwen3's
 * template (Jinja2, trim/lstrip blocks, tojson = json.dumps(ensure_ascii=False)); the reference
 * test tests/reference/chat_template.sh checks that on generated conversations. Details the template
 * has and we follow: a tools block in the system turn, consecutive tool results grouped in one user
 * turn, and an (empty) <think>\n\n</think>\n\n block for assistant turns after the last real user
 * query when they are the last message or carry reasoning. A NULL content renders as "" (the Jinja
 * template would fail on None).
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

/* The struct tag keeps the declared name; the typedef cannot (C has one namespace for typedefs and
 * functions, and the function is kd_chat_render), so callers write kd_chat_result. */
typedef struct kd_chat_render {
    char *text;
    size_t len;
    int n_messages;
    kd_span *message_spans;   /* [n_messages]: the whole block of each message, markers included */
    kd_span *content_spans;   /* [n_messages]: the content text as rendered (may be empty) */
    int n_tool_calls;
    kd_span *tool_call_spans; /* [n_tool_calls]: the JSON object inside each <tool_call> block */
    int *tool_call_message;   /* [n_tool_calls]: index of the message each call belongs to */
    size_t generation_start;  /* with add_generation_prompt: where the assistant's answer begins;
                                 otherwise len */
} kd_chat_result;

/* Span conventions:
 * - message span: from its "<|im_start|>" to after its "<|im_end|>\n". The leading system message
 *   of a conversation with tools spans the whole system block (tools included). A tool message
 *   spans its "\n<tool_response>\n...\n</tool_response>", plus "<|im_start|>user" when it opens
 *   the group and "<|im_end|>\n" when it closes it, so tool spans tile the user turn.
 * - content span: the content as it appears; for an assistant message that is the part after the
 *   (possibly empty) think block, i.e. content.split('</think>')[-1] with leading '\n' removed
 *   where the template removes them.
 * - tool call span: {"name": ..., "arguments": ...} without the <tool_call>\n / \n</tool_call>.
 */

typedef struct kd_chat_options {
    int add_generation_prompt;
    int disable_thinking; /* 1 = render with enable_thinking=false (adds the empty think block after
                             the generation prompt); 0 = enable_thinking undefined, the default */
} kd_chat_options;

/* `tools` is an OpenAI tools array or NULL. */
int kd_chat_render(const kd_chat_message *msgs, int n, const json_t *tools, int add_generation_prompt,
                   kd_chat_result *out, kd_error *err);
int kd_chat_render_opts(const kd_chat_message *msgs, int n, const json_t *tools, const kd_chat_options *opts,
                        kd_chat_result *out, kd_error *err);
/* Render an OpenAI-format messages array: each {"role", "content" (string or null),
 * "tool_calls" (optional, [{"function": {"name", "arguments": JSON string or object}}]),
 * "reasoning_content" (optional string)}. `opts` may be NULL (no generation prompt). */
int kd_chat_render_json(const json_t *messages, const json_t *tools, const kd_chat_options *opts,
                        kd_chat_result *out, kd_error *err);
void kd_chat_render_free(kd_chat_result *r);

/* JSON text exactly as Python's json.dumps(v, ensure_ascii=False) writes it (", " and ": "
 * separators, key order kept, floats as Python repr). malloc'd, NULL on allocation failure. */
char *kd_chat_tojson(const json_t *v);

/* The Jinja chat_template this module renders (Qwen3's, verbatim). */
const char *kd_chat_template_qwen3(void);

#endif
