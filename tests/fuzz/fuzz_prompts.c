/* libFuzzer target: the JSONL prompt reader's line parser (kd_prompt_parse), the failures.jsonl record
 * of a bad line, and the serialize/deserialize round trip workers use. Any bytes must give a good
 * record or a bad one with a reason, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/prompts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Not NUL-terminated on purpose: the parser must honour len. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    kd_prompt p = {0};
    kd_prompt_parse(text, size, 7, &p);
    if (p.status == KD_OK) {
        if (!p.messages || !json_is_array(p.messages) || p.reason[0]) abort();
        char *js = kd_prompt_to_json(&p);
        if (!js) abort();
        kd_prompt q = {0};
        kd_error err;
        /* what a worker receives must be what rank 0 sent */
        if (kd_prompt_from_json(&q, js, strlen(js), &err) != KD_OK) abort();
        if (!json_equal(p.messages, q.messages) || strcmp(p.id ? p.id : "", q.id ? q.id : "") != 0) abort();
        kd_prompt_clear(&q);
        free(js);
    } else {
        if (!p.reason[0]) abort();
        char *fj = kd_prompt_failure_json(&p, "fuzz.jsonl");
        if (!fj) abort();
        json_t *rec = json_loads(fj, 0, NULL);  /* failures.jsonl lines must be valid JSON */
        if (!rec) abort();
        json_decref(rec);
        free(fj);
    }
    kd_prompt_clear(&p);
    free(text);
    return 0;
}
