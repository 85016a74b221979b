/* Hugging Face `tokenizer.json` tokenizers in C: byte-level BPE (GPT-2, Llama 3, Qwen2/Qwen3).
 *
 * A loaded tokenizer is immutable and may be shared read-only by many threads; every encode call
 * writes only into the caller's kd_encoding. Offsets are byte ranges [start, end) into the caller's
 * input bytes (also for invalid UTF-8, which is read as U+FFFD per bad sequence, like a lossy
 * decoder). Components we do not support (WordPiece, Unigram, byte-fallback SentencePiece, unknown
 * pre-tokenizers ...) are refused with an error that names the component and the file.
 */
#ifndef KDSTEP_TOKENIZER_H
#define KDSTEP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"

typedef struct kd_tokenizer kd_tokenizer;

typedef struct kd_encoding {
    int32_t *ids;
    int32_t (*offsets)[2]; /* byte [start, end) of each token in the input; a special token added by
                              the post-processor (BOS) gets [0, 0) */
    size_t count;
    size_t cap;
    void *work; /* the caller's scratch space (BPE cache, buffers); freed by kd_encoding_free.
                   Zero-initialise a kd_encoding ({0}) before its first use. */
} kd_encoding;

/* `path` is a tokenizer.json file or a folder holding one. */
int kd_tokenizer_open(kd_tokenizer **out, const char *path, kd_error *err);
/* The same from tokenizer.json bytes in memory; `name` stands for the file in messages. */
int kd_tokenizer_open_memory(kd_tokenizer **out, const char *json, size_t len, const char *name, kd_error *err);
void kd_tokenizer_close(kd_tokenizer *tok);

/* Encode `len` bytes of `text` (need not be NUL-terminated). `out` is reset, then filled; its
 * buffers are reused across calls. Free with kd_encoding_free. */
int kd_tokenizer_encode(const kd_tokenizer *tok, const char *text, size_t len, int add_special_tokens,
                        kd_encoding *out, kd_error *err);
void kd_encoding_free(kd_encoding *enc);

/* Decode ids to UTF-8 text (malloc'd, NUL-terminated; *len excludes the NUL). */
int kd_tokenizer_decode(const kd_tokenizer *tok, const int32_t *ids, size_t n, int skip_special_tokens,
                        char **text, size_t *len, kd_error *err);

/* Number of ids (max id + 1, added tokens included). */
int32_t kd_tokenizer_vocab_size(const kd_tokenizer *tok);
/* The bytes one token decodes to (byte-level decoded; special tokens give their content).
 * Returns 0 and sets *bytes and *len, or -1 for an unused id. Pointers stay valid until close. */
int kd_tokenizer_token_bytes(const kd_tokenizer *tok, int32_t id, const char **bytes, size_t *len);
/* Id of an exact token string as it appears in the vocabulary or added tokens ("<|im_end|>"), or -1. */
int32_t kd_tokenizer_token_to_id(const kd_tokenizer *tok, const char *token);
int kd_tokenizer_is_special(const kd_tokenizer *tok, int32_t id);
/* SHA-256 of the tokenizer.json bytes, recorded in datasets and checked on resume and in training. */
const char *kd_tokenizer_sha256(const kd_tokenizer *tok);
/* Path of the tokenizer.json that was loaded. */
const char *kd_tokenizer_path(const kd_tokenizer *tok);

#endif
