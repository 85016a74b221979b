/* libFuzzer target: arbitrary bytes (invalid UTF-8, added-token fragments, combining marks) fed to
 * the BPE trainer, trained to a small vocabulary and serialized. */
#include <stdint.h>
#include <stdlib.h>

#include "kdstep/bpe_train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_bpe_train_options o = {.vocab_size = 256 + KD_BPE_N_DEFAULT_ADDED + 64, .min_frequency = 1};
    kd_bpe_trainer *t;
    if (kd_bpe_trainer_new(&t, &o, NULL)) abort();
    if (kd_bpe_trainer_add_text(t, (const char *)data, size, NULL) == KD_OK && kd_bpe_trainer_train(t, NULL) == KD_OK) {
        char *s = kd_bpe_trainer_tokenizer_json(t);
        if (!s) abort();
        free(s);
    }
    kd_bpe_trainer_free(t);
    return 0;
}
