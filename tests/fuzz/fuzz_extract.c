/* libFuzzer target: tool-call extraction and span -> mask alignment on arbitrary bytes.
 * Build: cmake -DKD_FUZZ=ON -DKD_SANITIZE=ON -DCMAKE_C_COMPILER=clang; run tests/fuzz/run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"
#include "kdstep/targets.h"

static kd_registry *g_reg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_reg) {
        json_t *tools = json_loads("[{\"name\": \"get_weather\", \"parameters\": {\"type\": \"dict\", \"properties\": {\"city\": "
                                   "{\"type\": \"string\"}, \"days\": {\"type\": \"integer\", \"minimum\": 1}}, \"required\": [\"city\"]}},"
                                   " {\"name\": \"web.search\", \"parameters\": {\"type\": \"object\", \"properties\": {\"q\": "
                                   "{\"type\": \"array\", \"items\": {\"type\": \"string\"}}}}}]",
                                   0, NULL);
        if (kd_registry_from_json(&g_reg, tools, "fuzz", NULL)) abort();
        json_decref(tools);
    }
    /* the text is not NUL-terminated on purpose: extraction must honour len */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    kd_tool_calls calls = {0};
    if (kd_extract_tool_calls(text, size, g_reg, &calls, NULL) != KD_OK) abort();
    for (size_t i = 0; i < calls.count; i++) {
        const kd_tool_call *c = &calls.v[i];
        if (c->name.end > size || c->arguments.end > size || c->call.end > size || c->name.start > c->name.end ||
            c->arguments.start > c->arguments.end || !c->name_text || (c->json_valid && !c->args) ||
            (!c->schema_valid && !c->schema_error) || (i && calls.v[i - 1].call.start > c->call.start))
            abort();
    }
    /* align the spans with a made-up tokenization: one token per 1..4 bytes, from the input itself */
    size_t n = 0;
    int32_t(*off)[2] = malloc(sizeof(*off) * (size + 2));
    for (size_t p = 0; p < size && off;) {
        size_t w = 1 + (data[p] & 3);
        if (p + w > size) w = size - p;
        off[n][0] = (int32_t)p;
        off[n][1] = (int32_t)(p + w);
        n++;
        p += w;
    }
    if (off) {
        kd_target_spans sp = {0};
        kd_targets t;
        kd_targets_add_calls(&sp, &calls, 0, NULL);
        kd_spans_push(&sp.response, 0, size);
        if (kd_targets_build((const int32_t(*)[2])off, n, size, &sp, 1, &t, NULL) != KD_OK) abort();
        for (size_t i = 0; i < n; i++)
            if (t.tool_name_mask[i] && !t.loss_mask[i]) abort();
        kd_targets_free(&t);
        kd_target_spans_free(&sp);
    }
    free(off);
    kd_tool_calls_free(&calls);
    free(text);
    return 0;
}
