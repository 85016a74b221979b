/* UTF-8 encoding and JSON \u escapes: the one encoder and the one \u decoder that the JSON readers
 * (src/text/tjson.c, src/teacher/jscan.h), the streaming JSON prefix check (src/train/jsonprefix.c) and
 * the tokenizer's NFC (src/text/tokenizer_normalize.c) share.
 *   UTF-8: RFC 3629 section 3, https://www.rfc-editor.org/rfc/rfc3629#section-3
 *   \u escapes and surrogate pairs: RFC 8259 section 7, https://www.rfc-editor.org/rfc/rfc8259#section-7 */
#ifndef KDSTEP_UTF8_H
#define KDSTEP_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Write code point cp (at most 0x10FFFF) as UTF-8 into out, which has room for 4 bytes; returns the
 * length, 1..4. A surrogate (0xD800..0xDFFF) is written like any other code point of its size: a
 * caller that must produce valid UTF-8 refuses surrogates first. */
int kd_utf8_encode(uint32_t cp, char *out);

/* The value of hex digit c (0-9, a-f, A-F), or -1. */
int kd_hex_digit(int c);

/* Decode the JSON escape at p[0 .. end): a backslash, 'u' and four hex digits and, when that is a high
 * surrogate (0xD800..0xDBFF) followed by the escape of a low one (0xDC00..0xDFFF), the pair. Returns
 * the bytes used (6, or 12 for a pair), or 0 when p does not start with a complete \uXXXX. *cp gets
 * the code point; an unpaired surrogate comes back as itself: JSON text may hold one, UTF-8 may not,
 * so the caller decides (kd_utf16_is_surrogate). */
size_t kd_json_unescape_u(const char *p, const char *end, uint32_t *cp);

static inline int kd_utf16_is_surrogate(uint32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }
static inline int kd_utf16_is_high(uint32_t cp) { return cp >= 0xD800 && cp <= 0xDBFF; }
static inline int kd_utf16_is_low(uint32_t cp) { return cp >= 0xDC00 && cp <= 0xDFFF; }

#endif
