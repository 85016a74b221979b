/* Process-step extraction: every tool call in a teacher's text, and the spans of an answer that
 * use a tool's result.
 *
 * kd_extract_tool_calls finds calls in the formats teachers emit (inline JSON in prose, Hermes/Qwen
 * <tool_call> blocks, OpenAI `tool_calls` message objects with string arguments, Llama 3.1
 * "parameters" objects with <|python_tag|> and `;` separators or <function=NAME>{...}</function>,
 * glaive's <functioncall>), in text
 * order, with byte spans of the name and of the arguments, and checks each against the registry.
 * Text inside <think>...</think> is reasoning, not a call, and is skipped. An unregistered name is
 * reported (registered = 0), never dropped; a cut-off call is reported with json_valid = 0.
 *
 * kd_identify_integration_spans finds where an answer uses values of tool results (JSON leaves or
 * plain text): exact, case-insensitive, numerically equal and multi-word phrase matches, merged.
 * The rules are in docs/extraction.md. All spans are byte [start, end) into the caller's text.
 */
#ifndef KDSTEP_EXTRACT_H
#define KDSTEP_EXTRACT_H

#include <jansson.h>
#include <stddef.h>

#include "kdstep/error.h"
#include "kdstep/registry.h"

/* A byte range [start, end) of a text. Same layout as chat.h's kd_span (which this header does not
 * include, so extraction builds without the chat renderer). */
typedef struct kd_text_span {
    size_t start, end;
} kd_text_span;

typedef enum kd_call_format {
    KD_CALL_INLINE_JSON = 0, /* {"name": ..., "arguments": {...}} anywhere in prose */
    KD_CALL_HERMES,          /* <tool_call>\n{...}\n</tool_call> (Hermes, Qwen) */
    KD_CALL_OPENAI,          /* {"tool_calls": [{"function": {"name", "arguments": "<JSON string>"}}]} */
    KD_CALL_LLAMA,           /* {"name", "parameters"}, optional <|python_tag|>, `;`-separated;
                                or <function=NAME>{...}</function> (name span: NAME, unquoted) */
    KD_CALL_GLAIVE           /* <functioncall> {"name", "arguments": '<JSON>'} */
} kd_call_format;

#define KD_CALL_FORMAT_COUNT 5

/* "inline_json", "hermes", "openai", "llama", "glaive" */
const char *kd_call_format_name(kd_call_format f);

typedef struct kd_tool_call {
    kd_call_format format;
    kd_text_span call;      /* the whole call object (markers excluded) */
    kd_text_span name;      /* the name's bytes inside its quotes, as written (escapes undecoded) */
    kd_text_span arguments; /* the arguments as written: the {...} object; for arguments given as a JSON
                          string (OpenAI, glaive '...'), the bytes inside the quotes. A cut-off
                          value runs to where the text stops parsing (trailing space trimmed). */
    int args_is_string; /* arguments were a quoted string holding JSON */
    char *name_text;   /* decoded name (owned) */
    json_t *args;      /* parsed arguments (owned), NULL unless json_valid */
    int registered;    /* the name is in the registry */
    int json_valid;    /* the arguments parse as JSON (jansson) and are an object */
    int schema_valid;  /* registered, json_valid and the tool's schema accepts them */
    char *schema_error; /* why not schema_valid ("$.city: expected string, got integer",
                           "tool 'x' is not registered", ...); NULL when schema_valid (owned) */
} kd_tool_call;

typedef struct kd_tool_calls {
    kd_tool_call *v;
    size_t count, cap;
} kd_tool_calls;

/* Find every call in `len` bytes of `text`, in text order, appending to `out` (which the caller
 * zero-initialises and frees with kd_tool_calls_free). `reg` may be NULL (no name is registered). */
int kd_extract_tool_calls(const char *text, size_t len, const kd_registry *reg, kd_tool_calls *out, kd_error *err);
void kd_tool_calls_free(kd_tool_calls *calls);

/* ---- integration spans ---- */

typedef struct kd_spans {
    kd_text_span *v;
    size_t count, cap;
} kd_spans;

void kd_spans_free(kd_spans *s);
/* Append [start, end); returns KD_OK or KD_ERR_NOMEM. */
int kd_spans_push(kd_spans *s, size_t start, size_t end);
/* Sort by start and merge spans that overlap or touch, in place. */
void kd_spans_merge(kd_spans *s);

typedef struct kd_integration_opts {
    size_t min_chars;           /* shortest text value matched (default 2); numbers are exempt */
    size_t min_phrase_words;    /* shortest run of words taken from inside a longer value (default 3) */
    const char *const *ignore;  /* values never matched, compared case-insensitively; NULL: defaults */
    size_t n_ignore;
} kd_integration_opts;

/* The defaults: min_chars 2, min_phrase_words 3, ignore = true false null none yes no ok n/a success
 * error 0 1 a an the. */
void kd_integration_opts_default(kd_integration_opts *o);

/* Spans of `answer` that use values of the tool results (each `results[i]` of `result_lens[i]`
 * bytes: JSON whose string and number leaves are used, or plain text). `opts` may be NULL. The
 * spans are appended to `out`, sorted and merged. */
int kd_identify_integration_spans(const char *answer, size_t len, const char *const *results, const size_t *result_lens,
                                  size_t n_results, const kd_integration_opts *opts, kd_spans *out, kd_error *err);

#endif
