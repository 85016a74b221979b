/* JSON prefix automaton and per-vocabulary validity sets.
 *
 * kd_jsonprefix is an incremental recognizer of JSON *prefixes*: after feeding bytes it says whether
 * some completion of the text so far parses as one JSON value (RFC 8259 grammar, with jansson's
 * extra rules: UTF-8 must be valid, "\u0000" is rejected, surrogate escapes must pair). Any value is
 * allowed at top level (jansson's JSON_DECODE_ANY); whitespace may follow a complete value. It is a
 * plain struct (a stack of open containers as bits plus a lexer mode), so it can be copied, compared
 * byte-wise and used as a cache key. Not modelled: jansson's numeric range errors (integers beyond
 * int64, reals overflowing double) and nesting deeper than KD_JSONPREFIX_MAX_DEPTH (rejected here).
 *
 * kd_jsongrammar runs every vocabulary token's byte string through the automaton to get, for a
 * state, the set of tokens that keep the text a valid JSON prefix. Sets are cached by state, so a
 * training step only pays for states it has not met before (tool arguments visit a few hundred).
 * The grammar loss term built on it lives in loss.h (kd_loss_json_grammar).
 */
#ifndef KDSTEP_JSONPREFIX_H
#define KDSTEP_JSONPREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"

#define KD_JSONPREFIX_MAX_DEPTH 256

typedef struct kd_jsonprefix {
    uint8_t mode;      /* lexer/parser mode (private enum in jsonprefix.c); 0 == dead */
    uint8_t aux;       /* number sub-state, literal kind, or \u digits seen */
    uint8_t aux2;      /* literal position, or "this \u is the low half of a pair" */
    uint8_t is_key;    /* the open string is an object key */
    uint8_t utf8_need; /* UTF-8 continuation bytes still due inside a string */
    uint8_t utf8_lo;   /* allowed range of the next continuation byte */
    uint8_t utf8_hi;
    uint8_t pad;
    uint16_t depth;    /* open containers */
    uint16_t uval;     /* \u escape value so far */
    uint32_t pad2;
    uint64_t stack[KD_JSONPREFIX_MAX_DEPTH / 64]; /* bit d set: container d is an object */
} kd_jsonprefix;

/* The empty text: a valid prefix expecting a value. */
void kd_jsonprefix_init(kd_jsonprefix *s);
/* Append bytes; returns 1 while the text is still a valid JSON prefix, 0 once it is not (the state
 * is then dead and stays dead). */
int kd_jsonprefix_feed(kd_jsonprefix *s, const char *bytes, size_t n);
/* Would appending these bytes keep the prefix valid? (s is not changed.) */
int kd_jsonprefix_accepts(const kd_jsonprefix *s, const char *bytes, size_t n);
int kd_jsonprefix_valid(const kd_jsonprefix *s);
/* The text is a complete JSON document (possibly followed by whitespace). */
int kd_jsonprefix_complete(const kd_jsonprefix *s);
/* Write a short completion (NUL-terminated) that makes the text a complete document; returns its
 * length, or -1 if the state is dead or cap is too small (cap >= 2*depth + 32 always suffices). */
long kd_jsonprefix_completion(const kd_jsonprefix *s, char *buf, size_t cap);

/* Vocabulary validity sets. */
typedef struct kd_jsongrammar kd_jsongrammar;

typedef struct kd_jsongrammar_stats {
    int64_t lookups;     /* kd_jsongrammar_valid_set calls */
    int64_t misses;      /* of which computed a new set */
    int64_t cached;      /* sets currently cached */
    double build_s;      /* time spent computing sets */
} kd_jsongrammar_stats;

/* bytes[v], lens[v]: token v's byte string (from kd_tokenizer_token_bytes), v in [0, V). The strings
 * are copied. max_cached bounds the cache (sets of V bits each; 0 = 4096); when full it is cleared. */
int kd_jsongrammar_new(kd_jsongrammar **out, const char **bytes, const size_t *lens, int32_t V, int max_cached,
                       kd_error *err);
void kd_jsongrammar_free(kd_jsongrammar *g);
int32_t kd_jsongrammar_vocab_size(const kd_jsongrammar *g);
/* Bitset of ceil(V/64) words: bit v set iff appending token v to a text in state s keeps it a valid
 * JSON prefix. Owned by g, valid until the next call. NULL if s is dead or memory ran out. */
const uint64_t *kd_jsongrammar_valid_set(kd_jsongrammar *g, const kd_jsonprefix *s);
/* Advance state s by token v's bytes (same as kd_jsonprefix_feed with the token's string). */
int kd_jsongrammar_feed_token(const kd_jsongrammar *g, kd_jsonprefix *s, int32_t v);
/* Token v's bytes as given to kd_jsongrammar_new. */
void kd_jsongrammar_token_bytes(const kd_jsongrammar *g, int32_t v, const char **bytes, size_t *len);
void kd_jsongrammar_get_stats(const kd_jsongrammar *g, kd_jsongrammar_stats *st);

#endif
