/* Tokenizer: small tokenizer.json files written here (BPE semantics by hand), the real Qwen3 /
 * Llama 3 files when tests/.cache has them (expected ids from Hugging Face tokenizers 0.23),
 * error messages, invalid UTF-8, NFC against utf8proc, decode round trips and threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/tokenizer.h"
#include "testutil.h"

/* ------------------------------------------------------------ a small tokenizer.json builder */

static int byte_char(int b) {
    static int map[256], done;
    if (!done) {
        int n = 0;
        for (int x = 0; x < 256; x++) {
            int keep = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            map[x] = keep ? x : 256 + n++;
        }
        done = 1;
    }
    return map[b];
}

/* JSON string body of a byte-level token for raw bytes s */
static void bl_json(char *o, const char *s) {
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int cp = byte_char(*p);
        if (cp == '"' || cp == '\\') o[w++] = '\\', o[w++] = (char)cp;
        else if (cp < 0x80) o[w++] = (char)cp;
        else o[w++] = (char)(0xC0 | (cp >> 6)), o[w++] = (char)(0x80 | (cp & 0x3F));
    }
    o[w] = 0;
}

/* merges given as raw-byte pairs; token ids: bytes 0..255, then 256 + merge index */
static const char *MERGES[][2] = {{"h", "e"},  {"l", "l"},  {"he", "ll"}, {"hell", "o"}, {" ", "w"},
                                  {"o", "r"},  {" w", "or"}, {" wor", "l"}, {" worl", "d"}, {"a", "a"},
                                  {"aa", "aa"}, {"\xc3", "\xa9"}};
#define NMERGES (sizeof MERGES / sizeof MERGES[0])

static const char *write_tok(const char *name, const char *normalizer, const char *pretok, const char *post,
                             const char *added) {
    size_t cap = 1 << 16;
    char *j = malloc(cap), tmp[64], a[64], b[64];
    size_t w = 0;
    w += (size_t)snprintf(j + w, cap - w,
                          "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [%s],\n"
                          "\"normalizer\": %s, \"pre_tokenizer\": %s, \"post_processor\": %s,\n"
                          "\"decoder\": {\"type\": \"ByteLevel\"},\n"
                          "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"vocab\": {",
                          added, normalizer, pretok, post);
    for (int x = 0; x < 256; x++) {
        char raw[2] = {(char)x, 0};
        if (x == 0) {
            w += (size_t)snprintf(j + w, cap - w, "\"\\u0100\": 0");
            continue;
        }
        bl_json(tmp, raw);
        w += (size_t)snprintf(j + w, cap - w, ", \"%s\": %d", tmp, x);
    }
    for (size_t k = 0; k < NMERGES; k++) {
        char both[64];
        snprintf(both, sizeof both, "%s%s", MERGES[k][0], MERGES[k][1]);
        bl_json(tmp, both);
        w += (size_t)snprintf(j + w, cap - w, ", \"%s\": %zu", tmp, 256 + k);
    }
    w += (size_t)snprintf(j + w, cap - w, "}, \"merges\": [");
    for (size_t k = 0; k < NMERGES; k++) {
        bl_json(a, MERGES[k][0]);
        bl_json(b, MERGES[k][1]);
        /* both spellings of a merge: "a b" and ["a", "b"] */
        if (k % 2) w += (size_t)snprintf(j + w, cap - w, "%s\"%s %s\"", k ? ", " : "", a, b);
        else w += (size_t)snprintf(j + w, cap - w, "%s[\"%s\", \"%s\"]", k ? ", " : "", a, b);
    }
    snprintf(j + w, cap - w, "]}}\n");
    const char *p = kd_test_write(name, j);
    free(j);
    return p;
}

static int32_t merged_id(const char *a, const char *b) {
    for (size_t k = 0; k < NMERGES; k++)
        if (!strcmp(MERGES[k][0], a) && !strcmp(MERGES[k][1], b)) return (int32_t)(256 + k);
    return -1;
}

#define GPT2_PRE "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"
#define BL_POST "{\"type\": \"ByteLevel\", \"trim_offsets\": false}"

static kd_tokenizer *open_ok(const char *path) {
    kd_tokenizer *t = NULL;
    kd_error err;
    if (kd_tokenizer_open(&t, path, &err)) fprintf(stderr, "\n  open %s: %s\n", path, err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

static void test_hand_bpe(void) {
    kd_tokenizer *t = open_ok(write_tok("hand.json", "null", GPT2_PRE, BL_POST, ""));
    kd_encoding e = {0};
    kd_error err;
    const char *s = "hello world";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, s, strlen(s), 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 2);
    CU_ASSERT_EQUAL(e.ids[0], merged_id("hell", "o"));
    CU_ASSERT_EQUAL(e.ids[1], merged_id(" worl", "d"));
    CU_ASSERT_EQUAL(e.offsets[0][0], 0);
    CU_ASSERT_EQUAL(e.offsets[0][1], 5);
    CU_ASSERT_EQUAL(e.offsets[1][0], 5);
    CU_ASSERT_EQUAL(e.offsets[1][1], 11);
    /* "aaaaa": rank of (a,a) first, leftmost first, then (aa,aa): aaaa + a */
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, "aaaaa", 5, 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 2);
    CU_ASSERT_EQUAL(e.ids[0], merged_id("aa", "aa"));
    CU_ASSERT_EQUAL(e.ids[1], 'a');
    /* a long word goes through the heap path: 201 a's -> 50 x aaaa + a */
    char longw[202];
    memset(longw, 'a', 201);
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, longw, 201, 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 51);
    CU_ASSERT_EQUAL(e.ids[49], merged_id("aa", "aa"));
    CU_ASSERT_EQUAL(e.ids[50], 'a');
    CU_ASSERT_EQUAL(e.offsets[50][0], 200);
    /* token_bytes, token_to_id, vocab size, the byte-level alphabet ("Ġ" is a space) */
    const char *tb;
    size_t tl;
    CU_ASSERT_EQUAL(kd_tokenizer_token_bytes(t, merged_id(" worl", "d"), &tb, &tl), 0);
    CU_ASSERT_EQUAL(tl, 6);
    CU_ASSERT_NSTRING_EQUAL(tb, " world", 6);
    CU_ASSERT_EQUAL(kd_tokenizer_token_to_id(t, "\xc4\xa0world"), merged_id(" worl", "d"));
    CU_ASSERT_EQUAL(kd_tokenizer_token_to_id(t, " world"), -1);
    CU_ASSERT_EQUAL(kd_tokenizer_token_bytes(t, 0, &tb, &tl), 0);
    CU_ASSERT_EQUAL(tl, 1);
    CU_ASSERT_EQUAL(tb[0], 0);
    CU_ASSERT_EQUAL(kd_tokenizer_vocab_size(t), (int32_t)(256 + NMERGES));
    CU_ASSERT_EQUAL(kd_tokenizer_token_bytes(t, 9999, &tb, &tl), -1);
    /* the SHA-256 is the file's */
    char *data;
    size_t n;
    char hex[65];
    CU_ASSERT_EQUAL(kd_read_file(kd_tokenizer_path(t), &data, &n, NULL), 0);
    kd_sha256_hex(data, n, hex);
    CU_ASSERT_STRING_EQUAL(hex, kd_tokenizer_sha256(t));
    free(data);
    kd_encoding_free(&e);
    kd_tokenizer_close(t);
}

static void test_added_tokens(void) {
    const char *added = "{\"id\": 300, \"content\": \"<ls>\", \"lstrip\": true, \"rstrip\": false, \"single_word\": false, "
                        "\"normalized\": false, \"special\": true},"
                        "{\"id\": 301, \"content\": \"<rs>\", \"lstrip\": false, \"rstrip\": true, \"single_word\": false, "
                        "\"normalized\": false, \"special\": false},"
                        "{\"id\": 302, \"content\": \"tok\", \"lstrip\": false, \"rstrip\": false, \"single_word\": true, "
                        "\"normalized\": true, \"special\": false},"
                        "{\"id\": 303, \"content\": \"<ls><rs>\", \"lstrip\": false, \"rstrip\": false, "
                        "\"single_word\": false, \"normalized\": false, \"special\": true}";
    kd_tokenizer *t = open_ok(write_tok("added.json", "null", GPT2_PRE, BL_POST, added));
    kd_encoding e = {0};
    kd_error err;
    /* HF numbers added tokens itself, after the vocabulary, in file order (the file's ids only warn) */
    int32_t ls = kd_tokenizer_token_to_id(t, "<ls>"), rs = kd_tokenizer_token_to_id(t, "<rs>");
    int32_t tk = kd_tokenizer_token_to_id(t, "tok"), both = kd_tokenizer_token_to_id(t, "<ls><rs>");
    CU_ASSERT_EQUAL(ls, (int32_t)(256 + NMERGES));
    CU_ASSERT_EQUAL(both, (int32_t)(256 + NMERGES + 3));
    /* lstrip takes the spaces before it into the token's span */
    const char *s = "a  <ls>b";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, s, strlen(s), 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 3);
    CU_ASSERT_EQUAL(e.ids[0], 'a');
    CU_ASSERT_EQUAL(e.ids[1], ls);
    CU_ASSERT_EQUAL(e.offsets[1][0], 1);
    CU_ASSERT_EQUAL(e.offsets[1][1], 7);
    CU_ASSERT_EQUAL(e.ids[2], 'b');
    /* rstrip takes the spaces after it */
    s = "<rs>  b";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, s, strlen(s), 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 2);
    CU_ASSERT_EQUAL(e.ids[0], rs);
    CU_ASSERT_EQUAL(e.offsets[0][1], 6);
    /* longest match first */
    s = "x<ls><rs>y";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, s, strlen(s), 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 3);
    CU_ASSERT_EQUAL(e.ids[1], both);
    /* single_word: not inside a word */
    s = "atok tok";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, s, strlen(s), 0, &e, &err), 0);
    int found = 0;
    for (size_t k = 0; k < e.count; k++) found += e.ids[k] == tk;
    CU_ASSERT_EQUAL(found, 1);
    CU_ASSERT_EQUAL(e.ids[e.count - 1], tk);
    CU_ASSERT_EQUAL(e.offsets[e.count - 1][0], 5);
    /* special flags and decode */
    CU_ASSERT_TRUE(kd_tokenizer_is_special(t, ls));
    CU_ASSERT_FALSE(kd_tokenizer_is_special(t, rs));
    int32_t ids[] = {'a', ls, 'b', rs};
    char *txt;
    size_t n;
    CU_ASSERT_EQUAL(kd_tokenizer_decode(t, ids, 4, 0, &txt, &n, &err), 0);
    CU_ASSERT_STRING_EQUAL(txt, "a<ls>b<rs>");
    free(txt);
    CU_ASSERT_EQUAL(kd_tokenizer_decode(t, ids, 4, 1, &txt, &n, &err), 0);
    CU_ASSERT_STRING_EQUAL(txt, "ab<rs>");
    free(txt);
    kd_encoding_free(&e);
    kd_tokenizer_close(t);
}

static void test_template_bos(void) {
    const char *post = "{\"type\": \"Sequence\", \"processors\": [" BL_POST ", {\"type\": \"TemplateProcessing\", "
                       "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", "
                       "\"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [268], "
                       "\"tokens\": [\"<s>\"]}}}]}";
    const char *added = "{\"id\": 300, \"content\": \"<s>\", \"special\": true, \"normalized\": false}";
    kd_tokenizer *t = open_ok(write_tok("bos.json", "null", GPT2_PRE, post, added));
    kd_encoding e = {0};
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, "he", 2, 1, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 2);
    CU_ASSERT_EQUAL(e.ids[0], kd_tokenizer_token_to_id(t, "<s>"));
    CU_ASSERT_EQUAL(e.offsets[0][0], 0);
    CU_ASSERT_EQUAL(e.offsets[0][1], 0);
    CU_ASSERT_EQUAL(e.ids[1], merged_id("h", "e"));
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, "he", 2, 0, &e, &err), 0);
    CU_ASSERT_EQUAL(e.count, 1);
    kd_encoding_free(&e);
    kd_tokenizer_close(t);
}

static void expect_open_error(const char *name, const char *json, int code, const char *needle) {
    const char *p = kd_test_write(name, json);
    kd_tokenizer *t = NULL;
    kd_error err;
    int rc = kd_tokenizer_open(&t, p, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_PTR_NULL(t);
    if (rc) {
        KD_ASSERT_CONTAINS(err.msg, needle);
        KD_ASSERT_CONTAINS(err.msg, name);
    }
    kd_tokenizer_close(t);
}

static void test_errors(void) {
    expect_open_error("wordpiece.json",
                      "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"},"
                      " \"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
                      KD_ERR_UNSUPPORTED, "unsupported model type 'WordPiece'");
    expect_open_error("unigram.json",
                      "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"},"
                      " \"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
                      KD_ERR_UNSUPPORTED, "unsupported model type 'Unigram'");
    expect_open_error("whitespace.json", "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {}}", KD_ERR_UNSUPPORTED,
                      "unsupported pre_tokenizer 'Whitespace'");
    expect_open_error("nfkc.json", "{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {}}", KD_ERR_UNSUPPORTED,
                      "unsupported normalizer 'NFKC'");
    expect_open_error("fallback.json",
                      "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"byte_fallback\": true,"
                      " \"vocab\": {}, \"merges\": []}}",
                      KD_ERR_UNSUPPORTED, "byte_fallback");
    expect_open_error("metaspace.json",
                      "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Metaspace\"}]}, \"model\": {}}",
                      KD_ERR_UNSUPPORTED, "unsupported pre_tokenizer 'Metaspace'");
    expect_open_error("oov.json",
                      "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": "
                      "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                      KD_ERR_INVALID, "merge #0 (\"a\" + \"b\") uses a token that is not in the vocabulary");
    /* truncated and malformed JSON: file and position */
    expect_open_error("truncated.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,", KD_ERR_PARSE,
                      "malformed JSON at line 1 column 44 (byte 43): unexpected end of input (the file is truncated?)");
    expect_open_error("badjson.json", "{\"model\":\n  {\"type\" \"BPE\"}}", KD_ERR_PARSE,
                      "malformed JSON at line 2 column 11 (byte 20): expected ':'");
    kd_tokenizer *t = NULL;
    kd_error err;
    CU_ASSERT_NOT_EQUAL(kd_tokenizer_open(&t, "/nonexistent/tok.json", &err), 0);
    KD_ASSERT_CONTAINS(err.msg, "/nonexistent/tok.json");
    /* decode of an id outside the vocabulary */
    t = open_ok(write_tok("dec.json", "null", GPT2_PRE, BL_POST, ""));
    int32_t ids[] = {1, 70000};
    char *txt = NULL;
    size_t n;
    CU_ASSERT_EQUAL(kd_tokenizer_decode(t, ids, 2, 0, &txt, &n, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "token id 70000 at position 1 is not in the vocabulary");
    kd_tokenizer_close(t);
}

static void test_invalid_utf8(void) {
    kd_tokenizer *t = open_ok(write_tok("lossy.json", "null", GPT2_PRE, BL_POST, ""));
    kd_encoding e = {0};
    kd_error err;
    /* 0xFF alone; then a truncated 3-byte sequence: each becomes one U+FFFD spanning its bytes */
    const char s[] = "a\xff" "b\xe2\x82";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(t, s, 5, 0, &e, &err), 0);
    char *txt;
    size_t n;
    CU_ASSERT_EQUAL(kd_tokenizer_decode(t, e.ids, e.count, 0, &txt, &n, &err), 0);
    CU_ASSERT_STRING_EQUAL(txt, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    free(txt);
    for (size_t k = 0; k < e.count; k++) {
        const char *tb;
        size_t tl;
        kd_tokenizer_token_bytes(t, e.ids[k], &tb, &tl);
        if (tl == 1 && tb[0] == 'a') CU_ASSERT(e.offsets[k][0] == 0 && e.offsets[k][1] == 1);
        if (tl == 1 && tb[0] == 'b') CU_ASSERT(e.offsets[k][0] == 2 && e.offsets[k][1] == 3);
        if ((unsigned char)tb[0] >= 0x80) {
            /* a piece of U+FFFD: it points at the bad bytes it stands for */
            int first = e.offsets[k][0] == 1 && e.offsets[k][1] == 2;
            int second = e.offsets[k][0] == 3 && e.offsets[k][1] == 5;
            CU_ASSERT_TRUE(first || second);
        }
    }
    kd_encoding_free(&e);
    kd_tokenizer_close(t);
}

static uint64_t g_rng = 7;

static size_t random_text(char *o, size_t cap) {
    static const char *pieces[] = {"hello", " world", "aaaa", "\xc3\xa9", "e\xcc\x81", "\xe4\xb8\xad", "\xf0\x9f\x98\x80",
                                   "  ", "\n", "\r\n", "'s", "123", "\xd0\xb8\xcc\x86", "\xe1\x84\x80\xe1\x85\xa1",
                                   "a\xcc\x81\xcc\xa8", "\xe2\x84\xab", "\t", "?!", "\xc2\xa0", "x"};
    size_t w = 0;
    int n = (int)(kd_splitmix64(&g_rng) % 40);
    for (int k = 0; k < n; k++) {
        const char *p = pieces[kd_splitmix64(&g_rng) % (sizeof pieces / sizeof *pieces)];
        size_t l = strlen(p);
        if (w + l + 1 >= cap) break;
        memcpy(o + w, p, l);
        w += l;
    }
    o[w] = 0;
    return w;
}

static void test_roundtrip_and_nfc(void) {
    kd_tokenizer *raw = open_ok(write_tok("rt.json", "null", GPT2_PRE, BL_POST, ""));
    kd_tokenizer *nfc = open_ok(write_tok("nfc.json", "{\"type\": \"NFC\"}", GPT2_PRE, BL_POST, ""));
    kd_encoding e = {0};
    kd_error err;
    char buf[512];
    for (int it = 0; it < 2000; it++) {
        size_t n = random_text(buf, sizeof buf);
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(raw, buf, n, 0, &e, &err), 0);
        char *txt;
        size_t tn;
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_decode(raw, e.ids, e.count, 0, &txt, &tn, &err), 0);
        CU_ASSERT_EQUAL(tn, n);
        CU_ASSERT_TRUE(tn == n && memcmp(txt, buf, n) == 0);
        /* without a normalizer every token's range holds exactly its bytes, and ranges tile the text */
        size_t pos = 0;
        for (size_t k = 0; k < e.count; k++) {
            const char *tb;
            size_t tl;
            kd_tokenizer_token_bytes(raw, e.ids[k], &tb, &tl);
            CU_ASSERT_EQUAL(e.offsets[k][0], (int32_t)pos);
            CU_ASSERT_TRUE(tl == (size_t)(e.offsets[k][1] - e.offsets[k][0]) && !memcmp(tb, buf + e.offsets[k][0], tl));
            pos = (size_t)e.offsets[k][1];
        }
        free(txt);
        /* NFC: the decoded tokens are utf8proc's NFC of the text; offsets stay inside the text */
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(nfc, buf, n, 0, &e, &err), 0);
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_decode(nfc, e.ids, e.count, 0, &txt, &tn, &err), 0);
        utf8proc_uint8_t *ref = utf8proc_NFC((const utf8proc_uint8_t *)buf);
        CU_ASSERT_STRING_EQUAL(txt, (char *)ref);
        for (size_t k = 0; k < e.count; k++)
            CU_ASSERT(e.offsets[k][0] >= 0 && e.offsets[k][0] <= e.offsets[k][1] && e.offsets[k][1] <= (int32_t)n);
        free(ref);
        free(txt);
    }
    /* a composed character keeps the span of its first source character (as HF) */
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(nfc, "e\xcc\x81x", 4, 0, &e, &err), 0);
    CU_ASSERT_EQUAL_FATAL(e.count, 2);
    CU_ASSERT_EQUAL(e.ids[0], merged_id("\xc3", "\xa9"));
    CU_ASSERT_EQUAL(e.offsets[0][0], 0);
    CU_ASSERT_EQUAL(e.offsets[0][1], 1);
    CU_ASSERT_EQUAL(e.offsets[1][0], 3);
    kd_encoding_free(&e);
    kd_tokenizer_close(raw);
    kd_tokenizer_close(nfc);
}

/* The PCRE2 fallback (any regex) splits as the hand-written scanner does on GPT-2's pattern. */
static void test_pcre2_fallback(void) {
    const char *path = write_tok("scan.json", "null", GPT2_PRE, BL_POST, "");
    kd_tokenizer *a = open_ok(path);
    setenv("KD_TOKENIZER_REGEX", "pcre2", 1);
    kd_tokenizer *b = open_ok(path);
    unsetenv("KD_TOKENIZER_REGEX");
    /* an unknown pattern and the Split behaviours go through PCRE2 too */
    kd_tokenizer *c = open_ok(write_tok("removed.json", "null",
                                        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                                        "{\"Regex\": \"\\\\s+\"}, \"behavior\": \"Removed\", \"invert\": false}, "
                                        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
                                        BL_POST, ""));
    kd_encoding ea = {0}, eb = {0};
    kd_error err;
    char buf[512];
    for (int it = 0; it < 2000; it++) {
        size_t n = random_text(buf, sizeof buf);
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(a, buf, n, 0, &ea, &err), 0);
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(b, buf, n, 0, &eb, &err), 0);
        CU_ASSERT_EQUAL_FATAL(ea.count, eb.count);
        CU_ASSERT_EQUAL(memcmp(ea.ids, eb.ids, ea.count * sizeof(int32_t)), 0);
        CU_ASSERT_EQUAL(memcmp(ea.offsets, eb.offsets, ea.count * sizeof(int32_t[2])), 0);
    }
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(c, "he  he\the", 9, 0, &ea, &err), 0);
    CU_ASSERT_EQUAL_FATAL(ea.count, 3);
    for (int k = 0; k < 3; k++) CU_ASSERT_EQUAL(ea.ids[k], merged_id("h", "e"));
    CU_ASSERT_EQUAL(ea.offsets[2][0], 7);
    kd_encoding_free(&ea);
    kd_encoding_free(&eb);
    kd_tokenizer_close(a);
    kd_tokenizer_close(b);
    kd_tokenizer_close(c);
}

typedef struct thr_arg {
    const kd_tokenizer *t;
    char (*texts)[512];
    size_t *lens;
    int ntexts;
    int32_t *ids; /* concatenated results */
    size_t nids;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    kd_encoding e = {0};
    a->nids = 0;
    a->ids = NULL;
    size_t cap = 0;
    for (int k = 0; k < a->ntexts; k++) {
        if (kd_tokenizer_encode(a->t, a->texts[k], a->lens[k], 0, &e, NULL)) break;
        if (a->nids + 2 * e.count + 2 > cap) {
            cap = (a->nids + 2 * e.count + 2) * 2;
            a->ids = realloc(a->ids, cap * sizeof(int32_t));
        }
        for (size_t q = 0; q < e.count; q++) {
            a->ids[a->nids++] = e.ids[q];
            a->ids[a->nids++] = e.offsets[q][0];
        }
    }
    kd_encoding_free(&e);
    return NULL;
}

static void test_threads(void) {
    char qpath[4096];
    snprintf(qpath, sizeof qpath, "%s", kd_test_src("tests/.cache/tokenizers/qwen3/tokenizer.json"));
    const char *path = kd_path_exists(qpath) ? qpath : write_tok("thr.json", "{\"type\": \"NFC\"}", GPT2_PRE, BL_POST, "");
    kd_tokenizer *t = open_ok(path);
    enum { NT = 300, NTHR = 4 };
    static char texts[NT][512];
    static size_t lens[NT];
    for (int k = 0; k < NT; k++) lens[k] = random_text(texts[k], 512);
    thr_arg ref = {t, texts, lens, NT, NULL, 0};
    thr_main(&ref);
    thr_arg args[NTHR];
    pthread_t th[NTHR];
    for (int k = 0; k < NTHR; k++) {
        args[k] = ref;
        pthread_create(&th[k], NULL, thr_main, &args[k]);
    }
    for (int k = 0; k < NTHR; k++) {
        pthread_join(th[k], NULL);
        CU_ASSERT_EQUAL(args[k].nids, ref.nids);
        CU_ASSERT_TRUE(args[k].nids == ref.nids && !memcmp(args[k].ids, ref.ids, ref.nids * sizeof(int32_t)));
        free(args[k].ids);
    }
    free(ref.ids);
    kd_tokenizer_close(t);
}

/* The real files, with ids that Hugging Face tokenizers 0.23 gives (node binding). */
static void test_real_tokenizers(void) {
    const char *q = kd_test_src("tests/.cache/tokenizers/qwen3");
    const char *l = kd_test_src("tests/.cache/tokenizers/llama3");
    if (!kd_is_dir(q) || !kd_is_dir(l)) {
        kd_test_skip("tests/.cache/tokenizers missing (run tests/fetch-tokenizers.sh): real-tokenizer cases skipped");
        return;
    }
    kd_tokenizer *tq = open_ok(q), *tl = open_ok(l);
    kd_encoding e = {0};
    kd_error err;
    static const char s1[] = "h\xc3\xa9llo \xf0\x9f\x98\x80 w\xc3\xb6rld";
    static const int32_t q1[] = {71, 18503, 385, 90316, 289, 9416, 507};
    static const int32_t l1[] = {71, 19010, 385, 91416, 289, 9603, 509};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tq, s1, strlen(s1), 0, &e, &err), 0);
    CU_ASSERT_TRUE(e.count == 7 && !memcmp(e.ids, q1, sizeof q1));
    /* byte offsets: the emoji's token starts at the space before it */
    CU_ASSERT_EQUAL(e.offsets[3][0], 6);
    CU_ASSERT_EQUAL(e.offsets[3][1], 11);
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tl, s1, strlen(s1), 0, &e, &err), 0);
    CU_ASSERT_TRUE(e.count == 7 && !memcmp(e.ids, l1, sizeof l1));
    /* NFC in Qwen3: e + U+0301 is é, with the span of the e */
    static const char s2[] = "e\xcc\x81x a\xcc\x81\xcc\xa8" "b";
    static const int32_t q2[] = {963, 87, 220, 5861, 53839, 65};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tq, s2, strlen(s2), 0, &e, &err), 0);
    CU_ASSERT_TRUE(e.count == 6 && !memcmp(e.ids, q2, sizeof q2));
    CU_ASSERT_EQUAL(e.offsets[0][0], 0);
    CU_ASSERT_EQUAL(e.offsets[0][1], 1);
    /* chat markup: special and non-special added tokens in raw text */
    static const char s3[] = "<|im_start|>user\n<tool_call>x</tool_call><|im_end|>";
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tq, s3, strlen(s3), 0, &e, &err), 0);
    CU_ASSERT_EQUAL(e.ids[0], kd_tokenizer_token_to_id(tq, "<|im_start|>"));
    CU_ASSERT_EQUAL(e.ids[e.count - 1], kd_tokenizer_token_to_id(tq, "<|im_end|>"));
    CU_ASSERT_EQUAL(e.offsets[e.count - 1][0], (int32_t)strlen(s3) - 10);
    CU_ASSERT_TRUE(kd_tokenizer_is_special(tq, kd_tokenizer_token_to_id(tq, "<|im_end|>")));
    CU_ASSERT_FALSE(kd_tokenizer_is_special(tq, kd_tokenizer_token_to_id(tq, "<tool_call>")));
    CU_ASSERT_EQUAL(kd_tokenizer_vocab_size(tq), 151669);
    CU_ASSERT_EQUAL(kd_tokenizer_vocab_size(tl), 128256);
    kd_encoding_free(&e);
    kd_tokenizer_close(tq);
    kd_tokenizer_close(tl);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("tokenizer", NULL, NULL);
    CU_add_test(s, "hand-made BPE: merges, offsets, token bytes, sha256", test_hand_bpe);
    CU_add_test(s, "added tokens: lstrip, rstrip, single_word, longest first, special", test_added_tokens);
    CU_add_test(s, "TemplateProcessing BOS only with add_special_tokens", test_template_bos);
    CU_add_test(s, "errors: unsupported components, malformed JSON with position", test_errors);
    CU_add_test(s, "invalid UTF-8: U+FFFD per bad sequence, offsets into the input", test_invalid_utf8);
    CU_add_test(s, "decode round trip; NFC equals utf8proc", test_roundtrip_and_nfc);
    CU_add_test(s, "PCRE2 fallback equals the scanner; Split Removed", test_pcre2_fallback);
    CU_add_test(s, "threads share one tokenizer", test_threads);
    CU_add_test(s, "real Qwen3 / Llama 3 files vs HF ids", test_real_tokenizers);
    return kd_test_main();
}
