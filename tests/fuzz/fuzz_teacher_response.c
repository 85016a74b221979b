/* libFuzzer target: the teacher response parsers (OpenAI chat completions, vLLM prompt_logprobs) must
 * accept or reject any bytes without crashing, leaking or reading out of bounds; and where both the fast
 * scanner and the jansson reference accept a response, they must read the same thing. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/teacher.h"

static int same_float(float a, float b) { return (isinf(a) && isinf(b) && a == b) || fabsf(a - b) <= 1e-6f * (1 + fabsf(a)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_teacher_completion c, r;
    memset(&c, 0, sizeof c);
    memset(&r, 0, sizeof r);
    kd_error e, e2;
    int fast = kd_teacher_parse_chat_response((const char *)data, size, &c, &e);
    int ref = kd_teacher_parse_chat_response_ref((const char *)data, size, &r, &e2);
    if (fast == KD_OK && ref == KD_OK) {
        if (strcmp(c.text, r.text) != 0 || c.n_tool_calls != r.n_tool_calls || c.lp.n != r.lp.n || c.lp.k != r.lp.k ||
            c.prompt_tokens != r.prompt_tokens || c.completion_tokens != r.completion_tokens)
            abort();
        for (int i = 0; i < c.n_tool_calls; i++)
            if (strcmp(c.tool_calls[i].name, r.tool_calls[i].name) != 0) abort();
        for (int i = 0; i < c.lp.n; i++) {
            if (!same_float(c.lp.token_logprobs[i], r.lp.token_logprobs[i]) || strcmp(c.lp.tokens[i], r.lp.tokens[i]) != 0) abort();
            for (int j = 0; j < c.lp.k; j++)
                if (!same_float(c.lp.topk_logprobs[(size_t)i * c.lp.k + j], r.lp.topk_logprobs[(size_t)i * r.lp.k + j])) abort();
        }
    }
    kd_teacher_completion_free(&c);
    kd_teacher_completion_free(&r);
    /* prompt_logprobs: the first byte picks how many columns; where both parsers accept, the same rows */
    int k = 1 + (size ? data[0] % 8 : 0);
    kd_teacher_logprobs lp, lr;
    int pf = kd_teacher_parse_prompt_logprobs((const char *)data, size, k, &lp, &e);
    int pr = kd_teacher_parse_prompt_logprobs_ref((const char *)data, size, k, &lr, &e2);
    if (pf == KD_OK && pr == KD_OK) {
        if (lp.n != lr.n || lp.k != lr.k) abort();
        for (int i = 0; i < lp.n; i++) {
            if (lp.token_ids[i] != lr.token_ids[i] || !same_float(lp.token_logprobs[i], lr.token_logprobs[i]) ||
                !same_float(lp.tail_logprob[i], lr.tail_logprob[i]))
                abort();
            if ((lp.tokens[i] == NULL) != (lr.tokens[i] == NULL) || (lp.tokens[i] && strcmp(lp.tokens[i], lr.tokens[i]) != 0)) abort();
            for (int j = 0; j < k; j++) {
                size_t at = (size_t)i * (size_t)k + (size_t)j;
                if (lp.topk_ids[at] != lr.topk_ids[at] || !same_float(lp.topk_logprobs[at], lr.topk_logprobs[at])) abort();
                if ((lp.topk_tokens[at] == NULL) != (lr.topk_tokens[at] == NULL) ||
                    (lp.topk_tokens[at] && strcmp(lp.topk_tokens[at], lr.topk_tokens[at]) != 0))
                    abort();
            }
        }
    }
    if (pf == KD_OK) kd_teacher_logprobs_free(&lp);
    if (pr == KD_OK) kd_teacher_logprobs_free(&lr);
    return 0;
}
