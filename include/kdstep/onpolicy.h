/* On-policy generation: the student writes the assistant turns of some conversations (generate.policy
 * student | mixed), the tool simulator answers its calls, and the teacher scores the finished
 * conversation like any other (src/gen/worker.c). This module holds the parts that do not need the
 * worker: which prompts the student writes, one student turn (render, decode, read its calls, run
 * them), and the census of what went wrong in the calls it wrote. docs/onpolicy.md describes it.
 */
#ifndef KDSTEP_ONPOLICY_H
#define KDSTEP_ONPOLICY_H

#include <jansson.h>
#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/registry.h"
#include "kdstep/student.h"
#include "kdstep/toolsim.h"

enum { KD_POLICY_TEACHER = 0, KD_POLICY_STUDENT = 1, KD_POLICY_MIXED = 2 };

/* Parse generate.policy: "teacher" | "student" | "mixed". */
int kd_policy_from_name(const char *name, int *policy, kd_error *err);

/* 1 when the student writes prompt `index`: always under student, never under teacher; under mixed
 * when a hash of (seed, index) falls under `share` (deterministic: reruns and resumes agree, and the
 * answer does not depend on which rank takes the prompt). */
int kd_policy_student_writes(int policy, double share, int64_t seed, int64_t index);

/* What the student's calls in one text got wrong. Each call found by the extractor counts once, under
 * the first of: unknown tool name, arguments not a JSON object, arguments the schema refuses; a
 * <tool_call> opened and never closed counts as unclosed (beside its call's own count). */
typedef struct kd_call_census {
    int64_t calls, unknown_tool, bad_json, schema_invalid, unclosed;
} kd_call_census;

/* Read the calls in `text` (hermes <tool_call> markup and the other formats kd_extract_tool_calls
 * knows) against `reg`; adds to *census. *runnable (may be NULL) is set to 1 when there is at least
 * one call and every call is registered, valid JSON, schema-valid and closed. The parsed calls go to
 * `calls` (the caller zero-initialises and frees with kd_tool_calls_free). */
struct kd_tool_calls;
int kd_onpolicy_read_calls(const char *text, size_t len, const kd_registry *reg, struct kd_tool_calls *calls,
                           kd_call_census *census, int *runnable, kd_error *err);

/* The student's answer `text` becomes the next assistant message of `messages` (its content exactly
 * the text as written); when all its calls can run (kd_onpolicy_read_calls' runnable), the tool
 * messages with the simulator's results follow and *more is 1, otherwise *more is 0 (the
 * conversation is over). Adds the calls' failure kinds to *census. */
int kd_onpolicy_apply_turn(json_t *messages, const char *text, size_t len, const kd_registry *reg, const kd_toolsim *sim,
                           kd_call_census *census, int *more, kd_error *err);

/* One student turn of a conversation: render `messages` (+ `tools`) as the student's prompt, sample
 * up to max_new tokens (temperature 0 greedy; the seed derives from `seed`, the prompt index and the
 * turn, so a rerun writes the same turn), then kd_onpolicy_apply_turn. *new_tokens gets the tokens
 * decoded. */
int kd_onpolicy_student_turn(kd_student *s, json_t *messages, const json_t *tools, const kd_registry *reg,
                             const kd_toolsim *sim, int max_new, double temperature, int64_t seed, int64_t index,
                             int turn, kd_call_census *census, int *more, int64_t *new_tokens, kd_error *err);

#endif
