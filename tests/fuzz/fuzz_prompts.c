/* libFuzzer target: one prompt-set line through kd_prompt_parse, and a good record through the MPI
 * wire format and back. Seed corpus: tests/fuzz/corpus/prompts/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/prompts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_prompt p;
    kd_prompt_parse((const char *)data, size, 1 + (size % 3), &p);
    if (p.status == KD_OK) {
        char *s = kd_prompt_to_json(&p);
        if (s) {
            kd_prompt q;
            kd_error e;
            if (kd_prompt_from_json(&q, s, strlen(s), &e) != KD_OK || !json_equal(q.messages, p.messages)) abort();
            kd_prompt_clear(&q);
            free(s);
        }
    } else {
        char *s = kd_prompt_failure_json(&p, "fuzz");
        if (!s || p.reason[0] == 0) abort();
        free(s);
    }
    kd_prompt_clear(&p);
    return 0;
}
