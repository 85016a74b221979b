/* libFuzzer target: integration spans. The input is "answer \x00 result \x00 result ...". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *parts[8];
    size_t lens[8];
    size_t np = 0, start = 0;
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    for (size_t i = 0; i <= size && np < 8; i++) {
        if (i == size || buf[i] == 0) {
            parts[np] = buf + start;
            lens[np++] = i - start;
            start = i + 1;
        }
    }
    kd_spans out = {0};
    if (kd_identify_integration_spans(parts[0], lens[0], parts + 1, lens + 1, np - 1, NULL, &out, NULL) != KD_OK) abort();
    for (size_t i = 0; i < out.count; i++) {
        if (out.v[i].start >= out.v[i].end || out.v[i].end > lens[0]) abort();
        if (i && out.v[i - 1].end >= out.v[i].start) abort(); /* merged: sorted, disjoint, not touching */
    }
    kd_spans_free(&out);
    free(buf);
    return 0;
}
