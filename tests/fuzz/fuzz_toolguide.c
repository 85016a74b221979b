/* libFuzzer: guided tool calls (src/eval/toolguide.c) under hostile tools and arbitrary output.
 * Input: a level byte, then a tools JSON array up to the first NUL, then the generated text. The
 * tokenizer is a byte-level BPE trained once on tool-call text (its merges cross the frame's
 * boundaries, as a real student's do). The text is fed token by token: each step masks a logits
 * array and pushes the token.
 * Checks: a mask never leaves no token possible (it returns V and masks nothing instead), it only
 * lowers logits to -inf, the count it returns is the tokens left finite, and a text whose every token
 * was allowed is scanned without a reset (masked_steps never counts a step without a mask). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/bpe_train.h"
#include "kdstep/toolguide.h"

static kd_tokenizer *g_tok;

static void init(void) {
    static const char CORPUS[] =
        "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\", \"max_bytes\": 10}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"units\": \"metric\"}}\n</tool_call>\n"
        "The answer is 42. No tool is needed here, thank you.\n";
    kd_error err;
    kd_bpe_trainer *t = NULL;
    kd_bpe_train_options o = {.vocab_size = 400};
    char dir[] = "/tmp/kd-fuzz-guide-XXXXXX";
    if (!mkdtemp(dir) || kd_bpe_trainer_new(&t, &o, &err)) abort();
    for (int i = 0; i < 50; i++)
        if (kd_bpe_trainer_add_text(t, CORPUS, sizeof CORPUS - 1, &err)) abort();
    if (kd_bpe_trainer_train(t, &err) || kd_bpe_trainer_save(t, dir, &err) || kd_tokenizer_open(&g_tok, dir, &err)) {
        fprintf(stderr, "fuzz_toolguide: %s\n", err.msg);
        abort();
    }
    kd_bpe_trainer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) init();
    if (size < 2) return 0;
    int mode = 1 + data[0] % 3;
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    if (!nul) return 0;
    json_t *tools = json_loadb((const char *)data + 1, (size_t)(nul - data - 1), 0, NULL);
    kd_tool_guide *g = NULL;
    kd_error err;
    if (!tools || kd_tool_guide_open(&g, g_tok, tools, mode, &err)) {
        json_decref(tools);
        return 0;
    }
    const char *text = (const char *)nul + 1;
    size_t tlen = size - (size_t)(nul + 1 - data);
    kd_encoding enc = {0};
    if (kd_tokenizer_encode(g_tok, text, tlen, 0, &enc, &err)) abort();
    int V = kd_tokenizer_vocab_size(g_tok);
    float *lg = malloc((size_t)V * sizeof *lg);
    for (size_t i = 0; i < enc.count; i++) {
        for (int k = 0; k < V; k++) lg[k] = (float)((k * 7 + (int)i) % 13);
        int64_t before = g->masked_steps;
        int open = kd_tool_guide_mask(g, lg, V), finite = 0, lowered = 0;
        for (int k = 0; k < V; k++) {
            if (lg[k] != -INFINITY) {
                finite++;
                if (lg[k] != (float)((k * 7 + (int)i) % 13)) abort(); /* only ever lowered to -inf */
            } else lowered++;
        }
        if (open == V ? lowered != 0 : (open != finite || finite == 0)) abort();
        if (g->masked_steps != before + (lowered > 0)) abort();
        kd_tool_guide_push(g, enc.ids[i]);
    }
    free(lg);
    kd_encoding_free(&enc);
    kd_tool_guide_close(g);
    json_decref(tools);
    return 0;
}
