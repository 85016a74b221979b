/* CUnit suite: byte-level BPE trainer (src/text/bpe_train.c). HF loading and encoding of trained
 * tokenizers is tests/reference/bpe_train.sh; here: merges on a corpus small enough to work out by
 * hand (tie-breaking included), determinism, added tokens, and every error message. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/bpe_train.h"
#include "testutil.h"

static json_t *train(const char *text, int vocab, const char *const *specials, int nspecial, kd_bpe_train_stats *st) {
    kd_bpe_train_options o = {.vocab_size = vocab, .special_tokens = specials, .n_special_tokens = nspecial};
    kd_bpe_trainer *t;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_bpe_trainer_new(&t, &o, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_bpe_trainer_add_text(t, text, strlen(text), &e), KD_OK);
    CU_ASSERT_EQUAL(kd_bpe_trainer_train(t, &e), KD_OK);
    char *s = kd_bpe_trainer_tokenizer_json(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    if (st) kd_bpe_trainer_stats(t, st);
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    kd_bpe_trainer_free(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

/* "ab ab ab cd cd" pre-tokenizes to "ab" x1, " ab" x2, " cd" x2. Counts: a b 3; then Ġ c, Ġ ab and
 * c d all 2 -> the smaller (left id, right id) first: (32,'c'=99) < (32, 256) < (99, 100); after
 * "Ġ c" the pair c d is gone and "Ġc d" (257, 100) comes last. */
static void test_merges_by_hand(void) {
    kd_bpe_train_stats st;
    json_t *j = train("ab ab ab cd cd", 1000, NULL, 0, &st);
    json_t *merges = json_object_get(json_object_get(j, "model"), "merges");
    const char *want[] = {"a b", "Ġ c", "Ġ ab", "Ġc d"};
    CU_ASSERT_EQUAL_FATAL(json_array_size(merges), 4);
    for (int i = 0; i < 4; i++) CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(merges, i)), want[i]);
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(vocab, "Ġ")), 32);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(vocab, "a")), 'a');
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(vocab, "ab")), 256);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(vocab, "Ġcd")), 259);
    CU_ASSERT_EQUAL(json_object_size(vocab), 260);
    CU_ASSERT_EQUAL(st.merges, 4);
    CU_ASSERT_EQUAL(st.unique_words, 3);
    CU_ASSERT_EQUAL(st.words, 5);
    /* pairs ran out: the written vocabulary is smaller than asked, added tokens right after it */
    CU_ASSERT_EQUAL(st.vocab_size, 260 + KD_BPE_N_DEFAULT_ADDED);
    json_t *added = json_object_get(j, "added_tokens");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(added, 0), "id")), 260);
    json_decref(j);
}

static void test_added_tokens_and_determinism(void) {
    /* added tokens are cut out before counting: no merge may learn "im_end" or "tool_call" */
    const char *text = "<|im_start|>user\nhello there<|im_end|>\n<tool_call>\n{\"name\": \"x\"}\n</tool_call>"
                       "<|im_start|>user\nhello there<|im_end|>\n<tool_call>\n{\"name\": \"y\"}\n</tool_call>"
                       "<|im_start|>assistant\n<think>\n\n</think>\n\nhello again, there<|im_end|>\n<|fim|>";
    const char *specials[] = {"<|fim|>", "<|im_end|>"};
    kd_bpe_train_stats st;
    json_t *a = train(text, 300, specials, 2, &st), *b = train(text, 300, specials, 2, NULL);
    char *sa = json_dumps(a, 0), *sb = json_dumps(b, 0);
    CU_ASSERT_STRING_EQUAL(sa, sb);
    CU_ASSERT_PTR_NULL(strstr(sa, "im_end\""));
    CU_ASSERT_PTR_NULL(strstr(sa, "tool_call\""));
    CU_ASSERT_PTR_NULL(strstr(sa, "think\""));
    json_t *added = json_object_get(a, "added_tokens");
    /* the defaults then the extra one; a repeated default is not added twice */
    CU_ASSERT_EQUAL_FATAL(json_array_size(added), (size_t)KD_BPE_N_DEFAULT_ADDED + 1);
    json_t *vocab = json_object_get(json_object_get(a, "model"), "vocab");
    int base = (int)json_object_size(vocab);
    for (int i = 0; i <= KD_BPE_N_DEFAULT_ADDED; i++) {
        json_t *t = json_array_get(added, (size_t)i);
        const char *content = json_string_value(json_object_get(t, "content"));
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(t, "id")), base + i);
        if (i < KD_BPE_N_DEFAULT_ADDED) {
            CU_ASSERT_STRING_EQUAL(content, KD_BPE_DEFAULT_ADDED[i]);
            CU_ASSERT_EQUAL(json_is_true(json_object_get(t, "special")), KD_BPE_DEFAULT_ADDED_SPECIAL[i]);
        } else {
            CU_ASSERT_STRING_EQUAL(content, "<|fim|>");
            CU_ASSERT_TRUE(json_is_true(json_object_get(t, "special")));
        }
    }
    CU_ASSERT_EQUAL(base + (int)json_array_size(added), st.vocab_size);
    CU_ASSERT_TRUE(st.vocab_size <= 300);
    /* Qwen2's pre-tokenizer */
    json_t *pre = json_object_get(a, "pre_tokenizer");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
                               json_object_get(json_array_get(json_object_get(pre, "pretokenizers"), 0), "pattern"), "Regex")),
                           KD_QWEN2_PRETOKENIZE_REGEX);
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);
}

static void test_save_and_invalid_utf8(void) {
    kd_bpe_train_options o = {.vocab_size = 400};
    kd_bpe_trainer *t;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_bpe_trainer_new(&t, &o, &e), KD_OK);
    const char *path = kd_test_write("train.txt", "caf\xc3\xa9 caf\xc3\xa9 \xff\xfe bad bytes caf\xc3\xa9 bad");
    CU_ASSERT_EQUAL(kd_bpe_trainer_add_file(t, path, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_bpe_trainer_save(t, kd_test_tmpdir(), &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "BPE trainer: save before train");
    CU_ASSERT_EQUAL(kd_bpe_trainer_train(t, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_bpe_trainer_train(t, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "BPE trainer: already trained");
    CU_ASSERT_EQUAL(kd_bpe_trainer_add_text(t, "x", 1, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "BPE trainer: text added after training");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tok/nested", kd_test_tmpdir());
    CU_ASSERT_EQUAL(kd_bpe_trainer_save(t, dir, &e), KD_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(j);
    /* the bad bytes were read as U+FFFD (EF BF BD -> "ï¿½" in byte-level characters) */
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab");
    CU_ASSERT_PTR_NOT_NULL(json_object_get(vocab, "Ġcaf\xc3\x83\xc2\xa9")); /* " café" */
    CU_ASSERT_PTR_NOT_NULL(json_object_get(vocab, "\xc3\xaf\xc2\xbf\xc2\xbd"));
    json_decref(j);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    j = json_load_file(p, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    KD_ASSERT_CONTAINS(json_string_value(json_object_get(j, "chat_template")), "<tool_response>");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "eos_token")), "<|im_end|>");
    json_decref(j);
    kd_bpe_trainer_free(t);
}

static void test_errors(void) {
    kd_bpe_trainer *t;
    kd_error e;
    kd_bpe_train_options o = {.vocab_size = 200};
    CU_ASSERT_EQUAL(kd_bpe_trainer_new(&t, &o, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "vocab size 200 is too small: the 256 bytes and 9 added tokens need at least 265");
    const char *sp[] = {""};
    o = (kd_bpe_train_options){.vocab_size = 1000, .special_tokens = sp, .n_special_tokens = 1};
    CU_ASSERT_EQUAL(kd_bpe_trainer_new(&t, &o, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "special token 1 is empty");
    o = (kd_bpe_train_options){.vocab_size = 1000};
    CU_ASSERT_EQUAL_FATAL(kd_bpe_trainer_new(&t, &o, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_bpe_trainer_add_file(t, "/nonexistent/corpus.txt", &e), KD_ERR_IO);
    KD_ASSERT_CONTAINS(e.msg, "/nonexistent/corpus.txt");
    kd_bpe_trainer_free(t);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bpe_train", NULL, NULL);
    CU_add_test(s, "merges and tie-breaking on a hand-checked corpus", test_merges_by_hand);
    CU_add_test(s, "added tokens never merged; deterministic", test_added_tokens_and_determinism);
    CU_add_test(s, "save, invalid UTF-8 read as U+FFFD", test_save_and_invalid_utf8);
    CU_add_test(s, "errors", test_errors);
    return kd_test_main();
}
