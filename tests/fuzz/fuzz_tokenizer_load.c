/* libFuzzer: arbitrary bytes as tokenizer.json. Loading either fails with a message or gives a
 * tokenizer that encodes and decodes a fixed text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_tokenizer *t = NULL;
    kd_error err;
    if (kd_tokenizer_open_memory(&t, (const char *)data, size, "fuzz.json", &err)) {
        if (t || !err.msg[0]) abort();
        return 0;
    }
    static const char text[] = "Hello, world! <|im_end|> 123 \xc3\xa9 e\xcc\x81 \xff";
    kd_encoding enc = {0};
    if (kd_tokenizer_encode(t, text, sizeof text - 1, 1, &enc, &err)) abort();
    char *out;
    size_t n;
    if (!kd_tokenizer_decode(t, enc.ids, enc.count, 0, &out, &n, &err)) free(out);
    for (int32_t id = 0; id < kd_tokenizer_vocab_size(t) && id < 1000; id++) {
        const char *b;
        size_t l;
        kd_tokenizer_token_bytes(t, id, &b, &l);
    }
    kd_encoding_free(&enc);
    kd_tokenizer_close(t);
    return 0;
}
