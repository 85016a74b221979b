/* The stub teacher: its tokens (the student tokenizer's, or one per byte without one), shared by
 * the answer (stub.c) and the scores (stub_score.c); see stub_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "kdstep/teacher.h"
#include "stub_internal.h"

int stub_encode(const kd_stub_teacher *s, const char *text, size_t len, kd_encoding *enc, kd_error *err) {
    if (s->tok) return kd_tokenizer_encode(s->tok, text, len, 0, enc, err);
    if (enc->cap < len + 1) {
        size_t cap = len + 16;
        int32_t *ids = realloc(enc->ids, cap * sizeof *ids);
        if (!ids) return kd_error_set(err, KD_ERR_NOMEM, "out of memory encoding");
        enc->ids = ids;
        int32_t(*off)[2] = realloc(enc->offsets, cap * sizeof *off);
        if (!off) return kd_error_set(err, KD_ERR_NOMEM, "out of memory encoding");
        enc->offsets = off;
        enc->cap = cap;
    }
    for (size_t i = 0; i < len; i++) {
        enc->ids[i] = (unsigned char)text[i];
        enc->offsets[i][0] = (int32_t)i;
        enc->offsets[i][1] = (int32_t)i + 1;
    }
    enc->count = len;
    return KD_OK;
}

void stub_encoding_free(const kd_stub_teacher *s, kd_encoding *enc) {
    if (s->tok) kd_encoding_free(enc);
    else {
        free(enc->ids);
        free(enc->offsets);
        memset(enc, 0, sizeof *enc);
    }
}

char *stub_token_text(const kd_stub_teacher *s, int32_t id) {
    if (!s->tok) {
        char b[2] = {(char)id, 0};
        return kd_strndup(b, 1);
    }
    const char *bytes;
    size_t len;
    if (kd_tokenizer_token_bytes(s->tok, id, &bytes, &len)) return kd_strdup("");
    return kd_strndup(bytes, len);
}

int32_t first_token(const kd_stub_teacher *s, const char *text) {
    kd_encoding enc = {0};
    int32_t id = -1;
    if (stub_encode(s, text, strlen(text), &enc, NULL) == KD_OK && enc.count > 0) id = enc.ids[0];
    stub_encoding_free(s, &enc);
    return id;
}

int add_unique(int32_t *arr, int n, int cap, int32_t id) {
    if (id < 0 || n >= cap) return n;
    for (int i = 0; i < n; i++)
        if (arr[i] == id) return n;
    arr[n] = id;
    return n + 1;
}
