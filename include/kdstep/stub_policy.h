/* The stub teacher's policy for requests that carry their own tools: which tools to call, if any,
 * and with which arguments, from the request's text and the tools' schemas only (never a prompt's
 * gold metadata).
 *
 * The request is split into sentences (outside quotes). For each sentence and each offered tool:
 *   - fit: the share of the tool's description gist words (kd_tool_gist; content words weigh 1,
 *     generic ones such as "retrieve", "specific", "user" 0.3) found in the sentence, plus a bonus
 *     when the sentence names the tool;
 *   - arguments: every parameter whose words (kd_param_words) appear in the sentence followed by a
 *     value of the parameter's type, after an optional connector (":", "to", "is", "="); strings are
 *     quoted, or one bare token after an explicit connector; enums match their values; arrays read
 *     `"a", "b" and "c"` or JSON; objects read JSON. Longer parameter phrases are read first, and each
 *     match is blanked so it cannot be read twice; the tool's own gist is blanked first.
 * A sentence calls the tool with the best score among those whose required parameters were all read
 * and whose fit is at least KD_POLICY_MIN_FIT (or which it names); a sentence with no such tool adds
 * no call. A request with no call is answered in text.
 */
#ifndef KDSTEP_STUB_POLICY_H
#define KDSTEP_STUB_POLICY_H

#include <jansson.h>

#include "kdstep/registry.h"

#define KD_POLICY_MIN_FIT 0.35
#define KD_POLICY_MAX_CALLS 8

typedef struct kd_policy_call {
    int tool;          /* index in the registry */
    json_t *arguments; /* object (owned) */
    double fit;        /* the tool's fit for its sentence */
} kd_policy_call;

/* Plan the calls for `prompt` over `tools` (a registry built from the request's tools). Returns the
 * number of calls written to `calls` (0: answer without a tool), at most `max`; free each call's
 * arguments with kd_policy_calls_free. */
int kd_stub_policy_plan(const kd_registry *tools, const char *prompt, kd_policy_call *calls, int max);
void kd_policy_calls_free(kd_policy_call *calls, int n);

/* The fit of one tool for a text, 0..1 (+1 when the text names the tool): exposed for tests. */
double kd_stub_policy_fit(const kd_tool *tool, const char *text);
/* Read one tool's arguments from a text (new object; only parameters that were found). *missing
 * receives the number of required parameters not found. */
json_t *kd_stub_policy_arguments(const kd_tool *tool, const char *text, int *missing);

#endif
