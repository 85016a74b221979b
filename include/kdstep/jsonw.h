/* Compact JSON writer: a jansson json_t written byte for byte as json_dumps(v, JSON_COMPACT) writes it
 * (jansson 2.14: keys in iteration order, "," and ":" without blanks, jansson's string escapes and
 * UTF-8 checks, integers as JSON_INTEGER_FORMAT, reals as %.17g with ".0" added and the exponent's
 * '+' and leading zeros dropped), several times faster: escape-free runs are found eight bytes at a
 * time and copied with memcpy, integers are formatted by hand, the buffer grows by doubling.
 * The teacher client serializes every request body with it (tests/unit/test_jsonw.c proves equality on
 * the BFCL and glaive data and on edge cases; tests/fuzz/fuzz_jsonw.c on anything jansson loads).
 *
 * A kd_jsonw is a growing NUL-terminated buffer; start it zeroed ({0}). Hand-written envelopes mix
 * kd_jsonw_raw with the typed writers. After an allocation failure oom is set, further writes do
 * nothing, and kd_jsonw_take returns NULL. */
#ifndef KDSTEP_JSONW_H
#define KDSTEP_JSONW_H

#include <jansson.h>
#include <stddef.h>

typedef struct kd_jsonw {
    char *data; /* NUL-terminated once anything is written; NULL before */
    size_t len, cap;
    int oom;
} kd_jsonw;

/* Bytes as they are. */
void kd_jsonw_raw(kd_jsonw *w, const char *s, size_t n);
/* A JSON string literal with jansson's escapes (\" \\ \b \f \n \r \t, other bytes below 0x20 as
 * \u00XX in upper-case hex, '/' and UTF-8 as they are). Bytes that are not valid UTF-8 are written as
 * they are here; kd_jsonw_value refuses them, as json_dumps does. */
void kd_jsonw_string(kd_jsonw *w, const char *s, size_t n);
void kd_jsonw_int(kd_jsonw *w, long long v);
/* As jansson writes a json_real. JSON has no NaN or infinity (json_real refuses them): written as null. */
void kd_jsonw_real(kd_jsonw *w, double v);
/* Any json_t (scalars too), compact. 0, or -1 when v is NULL, holds a string value that is not valid
 * UTF-8, contains itself (a cycle), or memory ran out. On -1 the buffer is left as it was before the
 * call, except after an allocation failure: then the buffer is dropped and oom set. An object key that
 * is not valid UTF-8 (only json_object_set*_nocheck makes one) is cut where json_dumps cuts it, without
 * failing, as json_dumps does. Nesting depth is not limited: jansson's json_dumps recurses without a
 * limit (and overflows the stack near 100000 levels); this writer keeps its stack on the heap. */
int kd_jsonw_value(kd_jsonw *w, const json_t *v);
/* The text (caller frees; "" when nothing was written), the writer reset to empty. After oom: NULL,
 * and the writer reset (oom cleared) for reuse. */
char *kd_jsonw_take(kd_jsonw *w);
void kd_jsonw_free(kd_jsonw *w);

/* = json_dumps(v, JSON_COMPACT): malloc'd text, or NULL where json_dumps gives NULL (v is not an array
 * or object, or kd_jsonw_value fails). */
char *kd_json_dumps_compact(const json_t *v);

/* Length of the longest prefix of s[0..n) that is valid UTF-8 (jansson's rules: no overlongs, no
 * surrogates, nothing above U+10FFFF); n when all of it is. NUL bytes count as valid here. */
size_t kd_utf8_valid_prefix(const char *s, size_t n);
/* s[0..n) as a NUL-terminated string that is valid UTF-8: each byte that is not part of a valid
 * sequence, and each NUL, becomes the four characters \xNN (upper-case hex). Caller frees; NULL when
 * memory ran out. Used where text that must not be lost (a failure's reason) goes into JSON. */
char *kd_utf8_escape(const char *s, size_t n);

#endif
