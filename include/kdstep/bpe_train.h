/* Byte-level BPE training (the `kdstep tokenizer train` engine), writing a Hugging Face
 * tokenizer.json shaped like Qwen2/Qwen3's: NFC normalizer, Split on Qwen2's regex (Isolated) +
 * ByteLevel(add_prefix_space=false, use_regex=false) pre-tokenizer, BPE model with "a b" merges,
 * ByteLevel post-processor and decoder; plus a tokenizer_config.json carrying Qwen3's chat_template.
 *
 * Text is split on the added tokens first (they never take part in merges), NFC-normalized,
 * pre-tokenized with Qwen2's regex (PCRE2-JIT, \s rewritten to HF's class), and the distinct words
 * are counted. Training then repeats: take the most frequent adjacent pair, ties broken by the
 * smaller (left id, right id), add the merged token (reusing the id if those bytes already are a
 * token) and update pair counts only in the words that held the pair (an index pair -> words, a
 * lazy max-heap). Ids: 0..255 are the single bytes in byte order, merged tokens follow in merge
 * order, the added tokens come last. Everything is deterministic: no decision depends on hash order.
 */
#ifndef KDSTEP_BPE_TRAIN_H
#define KDSTEP_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"

typedef struct kd_bpe_trainer kd_bpe_trainer;

typedef struct kd_bpe_train_options {
    int vocab_size;                    /* total ids, added tokens included */
    int min_frequency;                 /* stop when the best pair is rarer; <= 0 means 2 */
    const char *const *special_tokens; /* extra special tokens, after the defaults; may be NULL */
    int n_special_tokens;
    int progress;                      /* show a progress bar/lines on stderr */
} kd_bpe_train_options;

/* The added tokens every trained tokenizer gets, in id order after the merges. The first three are
 * special (skipped by decode(skip_special_tokens)); the tool and think markers are added but not
 * special, as in Qwen3, so decoded text keeps <tool_call> blocks and the template's <think>. */
extern const char *const KD_BPE_DEFAULT_ADDED[];
extern const int KD_BPE_DEFAULT_ADDED_SPECIAL[];
extern const int KD_BPE_N_DEFAULT_ADDED;

typedef struct kd_bpe_train_stats {
    size_t bytes;          /* text bytes fed */
    size_t words;          /* pre-tokenized pieces */
    size_t unique_words;
    int merges;
    int vocab_size;        /* ids written, added tokens included (smaller than asked if pairs ran out) */
    double pretokenize_s, merge_s;
} kd_bpe_train_stats;

int kd_bpe_trainer_new(kd_bpe_trainer **out, const kd_bpe_train_options *opts, kd_error *err);
void kd_bpe_trainer_free(kd_bpe_trainer *t);
/* Feed text (any bytes; invalid UTF-8 is read as U+FFFD). May be called many times. */
int kd_bpe_trainer_add_text(kd_bpe_trainer *t, const char *text, size_t len, kd_error *err);
int kd_bpe_trainer_add_file(kd_bpe_trainer *t, const char *path, kd_error *err);
/* Learn the merges. */
int kd_bpe_trainer_train(kd_bpe_trainer *t, kd_error *err);
/* Write DIR/tokenizer.json and DIR/tokenizer_config.json (DIR is created). */
int kd_bpe_trainer_save(const kd_bpe_trainer *t, const char *dir, kd_error *err);
/* The tokenizer.json text (malloc'd) as save writes it. */
char *kd_bpe_trainer_tokenizer_json(const kd_bpe_trainer *t);
void kd_bpe_trainer_stats(const kd_bpe_trainer *t, kd_bpe_train_stats *out);

/* Qwen2's pre-tokenizer regex as written in tokenizer.json. */
extern const char KD_QWEN2_PRETOKENIZE_REGEX[];

#endif
