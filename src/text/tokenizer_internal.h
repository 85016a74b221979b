/* Internals shared by the stages of the tokenizer (include/kdstep/tokenizer.h is the public side).
 * Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3, Qwen2/Qwen3); docs/tokenizer.md.
 *
 * The pipeline mirrors HF's: lossy UTF-8 -> added tokens (raw text, leftmost-longest) -> NFC ->
 * added tokens marked `normalized` -> pre-tokenizer (Split / ByteLevel) -> BPE -> post-processor.
 * Every byte of the text handed to a stage carries the original byte range it came from ("segment"
 * below); when nothing was rewritten the mapping is the identity and costs nothing.
 *
 * One file per stage, as HF's normalizers / pre_tokenizers / models / processors / decoders:
 *   tokenizer_load.c       tokenizer.json -> kd_tokenizer (every stage's settings), the byte-level alphabet
 *   tokenizer_normalize.c  Unicode classes, lossy UTF-8, NFC with alignments
 *   tokenizer_pretok.c     added tokens (trie, split), the Split / ByteLevel pre-tokenizer and its scanners
 *   tokenizer_bpe.c        BPE of one pre-token, with the per-caller word cache
 *   tokenizer_encode.c     encode (work space, segment cache, post-processor), decode, lookups
 * Not a public header: only src/text/tokenizer_*.c include it. */
#ifndef KDSTEP_TOKENIZER_INTERNAL_H
#define KDSTEP_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "kdstep/error.h"
#include "kdstep/tokenizer.h"

/* ---------------------------------------------------------------- Unicode (tokenizer_normalize.c) */

enum { K_L = 1, K_N = 2, K_WS = 4, K_NFCU = 8, K_WORD = 16 };
extern uint8_t *g_cls; /* one byte per code point, 0..0x10FFFF; built by classes_init */
/* Build the Unicode class table once; 0 when out of memory. */
int classes_init(void);

static inline uint8_t cls_of(uint32_t cp) { return cp < 0x110000 ? g_cls[cp] : 0; }

/* Decode one code point of valid UTF-8 at s[i] (i < n). */
static inline uint32_t dec_utf8(const uint8_t *s, size_t i, int *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) | ((uint32_t)(s[i + 2] & 0x3F) << 6) |
           (s[i + 3] & 0x3F);
}

/* Length of the valid UTF-8 sequence at s[i], or 0 when invalid; *bad gets the length of the
 * maximal invalid subpart (what one U+FFFD replaces, as in WHATWG / Rust's from_utf8_lossy). */
size_t utf8_seq(const uint8_t *s, size_t n, size_t i, size_t *bad);

/* Byte-level decode of a vocabulary string (tokenizer_load.c): returns the raw length, or -1 if some
 * character is outside the alphabet. out must hold len bytes. */
long bl_decode(const char *s, size_t len, uint8_t *out);

/* ---------------------------------------------------------------- the tokenizer */

enum { SCAN_NONE, SCAN_GPT2, SCAN_QWEN2, SCAN_LLAMA3 };
enum { BEH_ISOLATED, BEH_REMOVED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { STEP_SPLIT, STEP_BYTELEVEL };

typedef struct pretok_step {
    int kind;
    /* Split */
    int scanner;      /* SCAN_* for the known patterns, else PCRE2 */
    pcre2_code *re;
    char *literal;    /* Split with a String pattern */
    size_t literal_len;
    int behavior, invert;
    /* ByteLevel */
    int add_prefix_space, use_regex;
} pretok_step;

typedef struct added_token {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} added_token;

typedef struct trie_node {
    int32_t term; /* index into added[], or -1 */
    uint32_t child, sibling;
    uint8_t byte;
} trie_node;

typedef struct added_trie {
    trie_node *nodes;
    size_t n, cap;
    uint8_t first[256];
} added_trie;

typedef struct merge_slot {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    uint32_t rank;
    int32_t id;
} merge_slot;

struct kd_tokenizer {
    char *path;
    char sha256[65];
    uint64_t generation;
    int32_t n_ids;
    /* per id: bytes (raw for byte-level tokens, content for added ones) */
    uint8_t *pool;
    size_t pool_len;
    uint32_t *tok_off, *tok_len; /* tok_len == UINT32_MAX: unused id */
    char **tok_str;               /* the vocabulary string as written (for token_to_id), or NULL */
    uint8_t *special;
    uint8_t *tok_dup; /* ids whose bytes another id also has (non-byte-level strings), or NULL */
    /* raw bytes -> id for byte-level vocabulary tokens */
    int32_t *vhash;
    size_t vmask;
    merge_slot *merges;
    size_t mmask;
    int32_t byte_id[256];
    int32_t unk_id;
    int ignore_merges;
    int nfc;
    pretok_step *steps;
    int nsteps;
    added_token *added;
    size_t nadded;
    added_trie trie_raw, trie_norm;
    /* post-processor */
    int post_trim_offsets, post_trim_prefix;
    int32_t *tmpl_pre, *tmpl_post;
    size_t ntmpl_pre, ntmpl_post;
    int has_template;
};

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static inline int32_t vocab_find(const kd_tokenizer *t, const uint8_t *b, size_t n) {
    size_t m = t->vmask, i = hash_bytes(b, n) & m;
    for (;;) {
        int32_t id = t->vhash[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->pool + t->tok_off[id], b, n) == 0) return id;
        i = (i + 1) & m;
    }
}

/* Is id the vocabulary's entry for its own bytes (not a duplicate string shadowed by another)? */
static inline int vocab_find_is(const kd_tokenizer *t, int32_t id) { return !t->tok_dup || !t->tok_dup[id]; }

static inline uint64_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static inline int merge_get(const kd_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t m = t->mmask, i = mix64(key) & m;
    for (;;) {
        const merge_slot *s = &t->merges[i];
        if (s->key == key) {
            *rank = s->rank;
            *id = s->id;
            return 1;
        }
        if (!s->key) return 0;
        i = (i + 1) & m;
    }
}

/* Added-token trie (tokenizer_pretok.c). */
int trie_add(added_trie *tr, const uint8_t *s, size_t n, int32_t term);
/* Longest added token starting at s[i]; returns its length (0 if none) and *term. */
size_t trie_longest(const added_trie *tr, const uint8_t *s, size_t n, size_t i, int32_t *term);

/* ---------------------------------------------------------------- per-caller work space */

typedef struct cache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t boff, roff;
    uint16_t blen, nres;
} cache_slot;

typedef struct bpe_tok {
    int32_t id;
    uint32_t start, len; /* relative to the piece */
} bpe_tok;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_PIECE 128

typedef struct work {
    uint64_t generation;
    /* lossy-UTF-8 copy with alignment */
    uint8_t *lb;
    uint32_t *la0, *la1;
    size_t lcap;
    /* NFC output with alignment */
    uint8_t *nb;
    uint32_t *na0, *na1;
    size_t ncap;
    /* BPE */
    int32_t *sid;
    uint32_t *sst, *sln, *rank;
    int32_t *prev, *next;
    uint64_t *heap; /* rank << 32 | pos; pos < 2^32 */
    size_t bcap;
    bpe_tok *res;
    size_t rcap;
    /* cache */
    cache_slot *slots;
    size_t centries;
    uint8_t *cbytes;
    size_t cbn, cbcap;
    bpe_tok *cres;
    size_t crn, crcap;
    pcre2_match_data *md;
} work;

/* Room for `extra` more ids and offsets in o (tokenizer_encode.c); -1 when out of memory. */
int out_reserve(kd_encoding *o, size_t extra);

typedef struct seg {
    const uint8_t *s;
    size_t n;
    const uint32_t *a0, *a1; /* per byte: original [start, end); NULL = identity from base */
    size_t base;
} seg;

static inline seg sub_seg(const seg *g, size_t i, size_t j) {
    seg r = {g->s + i, j - i, g->a0 ? g->a0 + i : NULL, g->a1 ? g->a1 + i : NULL, g->base + i};
    return r;
}

static inline void seg_span(const seg *g, size_t i, size_t j, int32_t *o0, int32_t *o1) {
    if (g->a0) {
        *o0 = (int32_t)g->a0[i];
        *o1 = (int32_t)g->a1[j - 1];
    } else {
        *o0 = (int32_t)(g->base + i);
        *o1 = (int32_t)(g->base + j);
    }
}

typedef struct enc_ctx {
    const kd_tokenizer *t;
    work *w;
    kd_encoding *out;
    kd_error *err;
    kd_tokcache *cache; /* NULL: encode every span */
} enc_ctx;

static inline int nomem(enc_ctx *c) { return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory while encoding"); }

static inline int emit(enc_ctx *c, int32_t id, int32_t o0, int32_t o1) {
    kd_encoding *o = c->out;
    if (o->count == o->cap && out_reserve(o, 1)) return nomem(c);
    o->ids[o->count] = id;
    o->offsets[o->count][0] = o0;
    o->offsets[o->count][1] = o1;
    o->count++;
    return 0;
}

/* ---------------------------------------------------------------- the stages */

/* BPE of g[i, j) into the output (tokenizer_bpe.c). */
int bpe_emit(enc_ctx *c, const seg *g, size_t i, size_t j);
void cache_clear(work *w);

typedef int (*span_fn)(enc_ctx *c, const seg *g);
/* Split g by the added tokens of `tr`; emit the tokens, hand the text between them to fn
 * (tokenizer_pretok.c). */
int split_added(enc_ctx *c, const seg *g, const added_trie *tr, span_fn fn);
/* The pre-tokenizer steps, then BPE (tokenizer_pretok.c). */
int stage_pretok(enc_ctx *c, const seg *g);
/* NFC (when the tokenizer has it), the `normalized` added tokens, then stage_pretok
 * (tokenizer_normalize.c). */
int stage_normalize(enc_ctx *c, const seg *g);

#endif
