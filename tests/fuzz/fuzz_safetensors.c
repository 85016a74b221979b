/* libFuzzer target: the safetensors header parser and dtype conversion on arbitrary bytes.
 * Any input must give KD_OK or an error, never a crash, leak or out-of-bounds read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy, exactly sized, so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    kd_safetensors *st = NULL;
    kd_error err;
    if (kd_safetensors_parse(&st, buf, size, &err) == KD_OK) {
        for (int i = 0; i < st->n; i++) {
            const kd_st_tensor *t = &st->tensors[i];
            if (t->numel > (1u << 20)) continue;
            float *out = malloc((size_t)t->numel * sizeof(float) + 1);
            if (out) kd_st_tensor_to_f32(t, out, (size_t)t->numel, &err);
            free(out);
            (void)kd_safetensors_find(st, t->name);
        }
        kd_safetensors_close(st);
    }
    free(buf);
    return 0;
}
