/* Targets: character spans -> token masks aligned with the positions of a token sequence.
 *
 * The rule: a token is in a span when its byte range intersects the span, i.e. token [a, b) and
 * span [s, e) with a < e and s < b. A token that straddles a span edge (`":{"` holding the quote
 * of a key and the brace of the arguments) is in; an empty token ([0, 0) for a BOS added by the
 * post-processor) is in no span. Masks cover the whole sequence, one byte per token.
 *
 * The generation job calls kd_targets_build with the rendered conversation, its token ids and
 * byte offsets, the assistant messages' content spans (loss), and the tool-call name/argument
 * spans and integration spans already shifted into rendered-text coordinates (see
 * kd_targets_add_calls). With process supervision off only loss_mask is produced.
 */
#ifndef KDSTEP_TARGETS_H
#define KDSTEP_TARGETS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/extract.h"

typedef struct kd_target_spans {
    kd_spans response;    /* assistant content: loss_mask */
    kd_spans tool_name;   /* tool names: tool_name_mask */
    kd_spans json;        /* arguments JSON: json_mask */
    kd_spans integration; /* uses of tool results: integration_mask */
    kd_spans decision;    /* each answer's first token (call or not): joins tool_name_mask */
} kd_target_spans;

void kd_target_spans_free(kd_target_spans *s);

/* Add the name and argument spans of `calls` (found in a text that starts at byte `shift` of the
 * rendered conversation) to s->tool_name and s->json, shifted by `shift`. */
int kd_targets_add_calls(kd_target_spans *s, const kd_tool_calls *calls, size_t shift, kd_error *err);
/* Add spans (e.g. integration spans of an answer starting at `shift`) shifted by `shift`. */
int kd_targets_add_shifted(kd_spans *dst, const kd_spans *src, size_t shift, kd_error *err);

/* The decision byte of an assistant answer text[start, end): the first byte after a leading
 * "<think>...</think>" block and whitespace, where the model chooses between a tool call and a reply.
 * Returns `end` when there is none (empty answer, unclosed think block). */
size_t kd_targets_decision_byte(const char *text, size_t start, size_t end);

/* All target spans of a rendered conversation in one call, for the generation job. `assistant` are
 * the assistant messages' byte spans in `text` (in order; each becomes a response span and its
 * decision token, kd_targets_decision_byte, a `decision` span: the tool-select term trains "call or
 * not" in every answer, no-call answers included), `results`
 * the tool results' content spans. Calls are extracted from each assistant message; its
 * integration spans are searched in the part after its last call, against the results that lie
 * between the previous assistant message and this one. Appends to `out`. */
int kd_targets_spans_for_conversation(const char *text, size_t len, const kd_text_span *assistant, size_t n_assistant,
                                      const kd_text_span *results, size_t n_results, const kd_registry *reg,
                                      kd_target_spans *out, kd_error *err);

typedef struct kd_targets {
    size_t n;                  /* tokens */
    uint8_t *loss_mask;        /* [n] */
    uint8_t *tool_name_mask;   /* [n], NULL when process supervision is off */
    uint8_t *json_mask;        /* [n], NULL when off */
    uint8_t *integration_mask; /* [n], NULL when off */
} kd_targets;

/* Masks for n tokens with byte offsets[n] (as kd_encoding gives them) into a text of text_len
 * bytes. Spans need not be sorted; a span past text_len is an error naming it. */
int kd_targets_build(const int32_t (*offsets)[2], size_t n, size_t text_len, const kd_target_spans *spans,
                     int process_supervision, kd_targets *out, kd_error *err);
void kd_targets_free(kd_targets *t);

/* One mask from one span list, by the intersection rule (mask has n bytes, set to 0/1). */
int kd_mask_from_spans(const int32_t (*offsets)[2], size_t n, const kd_spans *spans, uint8_t *mask);

/* The seed's JSONL fields, derived from the aligned masks: tool_name_ids / gold_json_text_ids /
 * tool_result_fields are the ids of the tokens under tool_name_mask / json_mask /
 * integration_mask, in order; tool_name_mask / mask_valid_json_tokens / integration_mask run
 * alongside them and hold 1 for a token that lies wholly inside its span and 0 for one that
 * straddles an edge. Without process-supervision masks the object is empty. New reference. */
json_t *kd_targets_seed_fields(const int32_t *ids, const int32_t (*offsets)[2], const kd_targets *t,
                               const kd_target_spans *spans);

#endif
