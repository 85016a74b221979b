/* On-policy generation: see include/kdstep/onpolicy.h. */
#include "kdstep/onpolicy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"
#include "kdstep/hash.h"

int kd_policy_from_name(const char *name, int *policy, kd_error *err) {
    if (strcmp(name, "teacher") == 0) *policy = KD_POLICY_TEACHER;
    else if (strcmp(name, "student") == 0) *policy = KD_POLICY_STUDENT;
    else if (strcmp(name, "mixed") == 0) *policy = KD_POLICY_MIXED;
    else
        return kd_error_set(err, KD_ERR_INVALID, "generate.policy: '%s' is not one of teacher, student, mixed", name);
    return KD_OK;
}

/* A uniform number in [0, 1) from (seed, index, salt): splitmix64 over a mix of the three. */
static double unit_hash(int64_t seed, int64_t index, uint64_t salt) {
    uint64_t st = (uint64_t)seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)index * 0xC2B2AE3D27D4EB4Full ^ salt;
    kd_splitmix64(&st);
    return (double)(kd_splitmix64(&st) >> 11) * (1.0 / 9007199254740992.0);
}

int kd_policy_student_writes(int policy, double share, int64_t seed, int64_t index) {
    if (policy == KD_POLICY_STUDENT) return 1;
    if (policy != KD_POLICY_MIXED) return 0;
    return unit_hash(seed, index, 0x6d69786564ull /* "mixed" */) < share;
}

/* <tool_call> openings with no </tool_call> before the next opening (or the end). */
static int64_t count_unclosed(const char *text, size_t len) {
    static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>";
    int64_t n = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *o = memmem(p, (size_t)(end - p), OPEN, sizeof OPEN - 1);
        if (!o) break;
        const char *after = o + sizeof OPEN - 1;
        const char *next = memmem(after, (size_t)(end - after), OPEN, sizeof OPEN - 1);
        const char *lim = next ? next : end;
        if (!memmem(after, (size_t)(lim - after), CLOSE, sizeof CLOSE - 1)) n++;
        p = after;
    }
    return n;
}

int kd_onpolicy_read_calls(const char *text, size_t len, const kd_registry *reg, kd_tool_calls *calls,
                           kd_call_census *census, int *runnable, kd_error *err) {
    if (runnable) *runnable = 0;
    int rc = kd_extract_tool_calls(text, len, reg, calls, err);
    if (rc) return rc;
    int64_t unclosed = count_unclosed(text, len);
    int ok = calls->count > 0 && unclosed == 0;
    for (size_t i = 0; i < calls->count; i++) {
        const kd_tool_call *c = &calls->v[i];
        census->calls++;
        if (!c->registered) census->unknown_tool++, ok = 0;
        else if (!c->json_valid) census->bad_json++, ok = 0;
        else if (!c->schema_valid) census->schema_invalid++, ok = 0;
    }
    census->unclosed += unclosed;
    if (runnable) *runnable = ok;
    return KD_OK;
}

/* Decode one answer of the student for `messages`; *text malloc'd. */
static int student_text(kd_student *s, const json_t *messages, const json_t *tools, int max_new, double temperature,
                        int64_t seed, int64_t index, int turn, char **text, int64_t *new_tokens, kd_error *err) {
    kd_sampler sm;
    memset(&sm, 0, sizeof sm);
    sm.temperature = (float)temperature;
    sm.top_p = 1.0f;
    sm.rng = (uint64_t)(unit_hash(seed, index, 0x73747564ull + (uint64_t)turn) * 18446744073709551615.0) | 1;
    kd_student_stats st;
    int rc = kd_student_answer(s, messages, tools, max_new, &sm, text, &st, err);
    *new_tokens = st.new_tokens;
    if (rc == KD_OK && st.truncated) {
        free(*text);
        *text = NULL;
        return kd_error_set(err, KD_ERR_INVALID,
                            "the conversation (%d tokens) no longer fits the student's max_position_embeddings",
                            st.prompt_tokens);
    }
    return rc;
}

int kd_onpolicy_apply_turn(json_t *messages, const char *text, size_t len, const kd_registry *reg, const kd_toolsim *sim,
                           kd_call_census *census, int *more, kd_error *err) {
    *more = 0;
    /* the content is the student's text as written (calls included, malformed or not): rendered
     * verbatim, so the sample, the teacher's scoring and the masks all see the student's bytes */
    json_array_append_new(messages, json_pack("{s:s, s:s%}", "role", "assistant", "content", text, len));
    kd_tool_calls calls;
    memset(&calls, 0, sizeof calls);
    int runnable = 0;
    int rc = kd_onpolicy_read_calls(text, len, reg, &calls, census, &runnable, err);
    if (rc || !runnable) {
        kd_tool_calls_free(&calls);
        return rc;
    }
    json_t *tool_msgs = json_array();
    for (size_t i = 0; i < calls.count && runnable; i++) {
        char *args = json_dumps(calls.v[i].args, JSON_COMPACT);
        char *result = NULL;
        kd_error e;
        if (!args || kd_toolsim_run_text(sim, calls.v[i].name_text, args, &result, &e) != KD_OK) runnable = 0;
        else {
            char id[32];
            snprintf(id, sizeof id, "call_%zu", i);
            json_array_append_new(tool_msgs, json_pack("{s:s, s:s, s:s, s:s}", "role", "tool", "tool_call_id", id, "name",
                                                       calls.v[i].name_text, "content", result));
        }
        free(args);
        free(result);
    }
    if (runnable) json_array_extend(messages, tool_msgs);
    json_decref(tool_msgs);
    kd_tool_calls_free(&calls);
    *more = runnable;
    return KD_OK;
}

int kd_onpolicy_student_turn(kd_student *s, json_t *messages, const json_t *tools, const kd_registry *reg,
                             const kd_toolsim *sim, int max_new, double temperature, int64_t seed, int64_t index,
                             int turn, kd_call_census *census, int *more, int64_t *new_tokens, kd_error *err) {
    *more = 0;
    *new_tokens = 0;
    char *text = NULL;
    int rc = student_text(s, messages, tools, max_new, temperature, seed, index, turn, &text, new_tokens, err);
    if (rc) return rc;
    rc = kd_onpolicy_apply_turn(messages, text, strlen(text), reg, sim, census, more, err);
    free(text);
    return rc;
}
