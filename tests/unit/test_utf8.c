/* CUnit suite: the shared UTF-8 encoder and JSON \u decoder (src/core/utf8.c) against outside truth:
 * utf8proc's encoder for every code point, jansson's string parser for \u escapes (single and
 * surrogate pairs), and the examples of RFC 3629 section 3 and RFC 8259 section 7. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#include "kdstep/utf8.h"
#include "testutil.h"

static void test_encode_every_code_point(void) {
    int bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (kd_utf16_is_surrogate(cp)) continue;
        char got[4];
        utf8proc_uint8_t want[4];
        int n = kd_utf8_encode(cp, got);
        utf8proc_ssize_t m = utf8proc_encode_char((utf8proc_int32_t)cp, want);
        if (n != (int)m || memcmp(got, want, (size_t)n) != 0) {
            if (bad++ < 5) fprintf(stderr, "\n  U+%04X: kd_utf8_encode %d bytes, utf8proc %d\n", cp, n, (int)m);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* RFC 3629 section 7's examples */
    struct {
        uint32_t cp;
        const char *utf8;
    } ex[] = {{0x41, "A"}, {0x391, "\xCE\x91"}, {0xD55C, "\xED\x95\x9C"}, {0x65E5, "\xE6\x97\xA5"},
              {0x233B4, "\xF0\xA3\x8E\xB4"}, {0x10FFFF, "\xF4\x8F\xBF\xBF"}};
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        char got[5] = {0};
        int n = kd_utf8_encode(ex[i].cp, got);
        CU_ASSERT_EQUAL(n, (int)strlen(ex[i].utf8));
        CU_ASSERT_STRING_EQUAL(got, ex[i].utf8);
    }
    /* a surrogate is written as its 3 bytes (the callers decide whether to allow it) */
    char s[4];
    CU_ASSERT_EQUAL(kd_utf8_encode(0xD800, s), 3);
    CU_ASSERT(memcmp(s, "\xED\xA0\x80", 3) == 0);
}

static void test_hex_digit(void) {
    for (int c = 0; c < 256; c++) {
        int want = -1;
        if (isxdigit(c)) {
            char b[2] = {(char)c, 0};
            want = (int)strtol(b, NULL, 16);
        }
        CU_ASSERT_EQUAL(kd_hex_digit(c), want);
    }
    CU_ASSERT_EQUAL(kd_hex_digit(-1), -1);
}

/* Decode text (one JSON string body of \u escapes) with ours and with jansson; 1 when they agree. */
static int same_as_jansson(const char *esc) {
    char json[64];
    snprintf(json, sizeof json, "\"%s\"", esc);
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    const char *end = esc + strlen(esc);
    char got[16];
    size_t n = 0;
    for (const char *p = esc; p < end;) {
        uint32_t cp;
        size_t used = kd_json_unescape_u(p, end, &cp);
        if (!used || kd_utf16_is_surrogate(cp)) { /* jansson refuses what the JSON readers refuse */
            json_decref(v);
            return v == NULL;
        }
        n += (size_t)kd_utf8_encode(cp, got + n);
        p += used;
    }
    int ok = v && json_string_length(v) == n && memcmp(json_string_value(v), got, n) == 0;
    if (!ok) fprintf(stderr, "\n  %s: jansson %s\n", esc, v ? "differs" : "refuses");
    json_decref(v);
    return ok;
}

static void test_unescape_against_jansson(void) {
    int bad = 0;
    char esc[32];
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        if (kd_utf16_is_surrogate(cp)) continue;
        snprintf(esc, sizeof esc, cp & 1 ? "\\u%04X" : "\\u%04x", cp);
        bad += !same_as_jansson(esc);
    }
    for (uint32_t cp = 0x10000; cp <= 0x10FFFF; cp += 7) {
        uint32_t v = cp - 0x10000;
        snprintf(esc, sizeof esc, "\\u%04X\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
        bad += !same_as_jansson(esc);
    }
    /* unpaired surrogates: both refuse */
    const char *lone[] = {"\\uD800", "\\uDBFF\\u0041", "\\uDC00", "\\uDFFF\\uD800", "\\uD800\\uD800"};
    for (size_t i = 0; i < sizeof lone / sizeof lone[0]; i++) bad += !same_as_jansson(lone[i]);
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_unescape_edges(void) {
    uint32_t cp = 0;
    /* RFC 8259 section 7: the G clef, U+1D11E, is "\ud834\udd1e" */
    const char *g = "\\ud834\\udd1e";
    CU_ASSERT_EQUAL(kd_json_unescape_u(g, g + strlen(g), &cp), 12);
    CU_ASSERT_EQUAL(cp, 0x1D11E);
    /* the bound is end, not the NUL */
    CU_ASSERT_EQUAL(kd_json_unescape_u(g, g + 6, &cp), 6);
    CU_ASSERT_EQUAL(cp, 0xD834);
    CU_ASSERT_EQUAL(kd_json_unescape_u(g, g + 5, &cp), 0);
    CU_ASSERT_EQUAL(kd_json_unescape_u(g, g + 11, &cp), 6); /* the low half cut: the high one alone */
    const char *bad[] = {"\\u12G4", "\\x1234", "u1234", "\\U1234", "\\u", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(kd_json_unescape_u(bad[i], bad[i] + strlen(bad[i]), &cp), 0);
    const char *hi_then_bad = "\\uD800\\u12G4";
    CU_ASSERT_EQUAL(kd_json_unescape_u(hi_then_bad, hi_then_bad + strlen(hi_then_bad), &cp), 6);
    CU_ASSERT_EQUAL(cp, 0xD800);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("utf8", NULL, NULL);
    CU_add_test(s, "encode: every code point equals utf8proc's, RFC 3629 examples", test_encode_every_code_point);
    CU_add_test(s, "hex digits", test_hex_digit);
    CU_add_test(s, "\\u escapes and pairs equal jansson's", test_unescape_against_jansson);
    CU_add_test(s, "\\u escapes: RFC 8259 example, bounds, malformed", test_unescape_edges);
    return kd_test_main();
}
