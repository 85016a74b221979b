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

/* A segment cache for texts that repeat long stretches (a chat's system turn with the tool schemas).
 * The text between two added tokens that are matched in raw text (`<|im_start|>`, `<|im_end|>`,
 * `<tool_call>` ...) is encoded on its own by the pipeline, so its ids depend only on its bytes and
 * its offsets only shift with its position. kd_tokenizer_encode_cached looks every such span of at
 * least `min_bytes` up by content (64-bit hash, length, then a full byte compare) and appends the
 * cached ids with shifted offsets; the result is identical to kd_tokenizer_encode's, ids and offsets.
 * Spans of text with invalid UTF-8 are never cached. At most `max_entries` spans are kept (least
 * recently used goes first). The cache belongs to one caller (not thread-safe); it may be used with
 * any tokenizer (it empties itself when the tokenizer changes). See docs/tokenizer.md. */
typedef struct kd_tokcache kd_tokcache;
typedef struct kd_tokcache_stats {
    uint64_t calls, bytes;        /* encode calls and their text bytes */
    uint64_t lookups, hits;       /* spans of >= min_bytes looked up, and found */
    uint64_t hit_bytes, miss_bytes; /* bytes of those spans served from the cache / encoded */
    uint64_t evictions;
} kd_tokcache_stats;
int kd_tokcache_open(kd_tokcache **out, size_t max_entries, size_t min_bytes, kd_error *err);
void kd_tokcache_close(kd_tokcache *cache);
void kd_tokcache_get_stats(const kd_tokcache *cache, kd_tokcache_stats *out);
/* kd_tokenizer_encode through `cache` (NULL: no cache). */
int kd_tokenizer_encode_cached(const kd_tokenizer *tok, kd_tokcache *cache, const char *text, size_t len,
                               int add_special_tokens, kd_encoding *out, kd_error *err);

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
