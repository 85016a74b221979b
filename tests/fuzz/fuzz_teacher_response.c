/* libFuzzer target: the teacher response parsers (OpenAI chat completions, vLLM prompt_logprobs) must
 * accept or reject any bytes without crashing, leaking or reading out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kdstep/teacher.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_teacher_completion c;
    memset(&c, 0, sizeof c);
    kd_error e;
    kd_teacher_parse_chat_response((const char *)data, size, &c, &e);
    kd_teacher_completion_free(&c);
    kd_teacher_logprobs lp;
    /* the first byte picks where the response starts and how many columns, so both vary */
    size_t start = size ? data[0] : 0;
    kd_teacher_parse_prompt_logprobs((const char *)data, size, size, start, 1 + (size ? data[0] % 8 : 0), &lp, &e);
    kd_teacher_logprobs_free(&lp);
    return 0;
}
