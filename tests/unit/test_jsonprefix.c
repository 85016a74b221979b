/* CUnit suite: the JSON prefix automaton against jansson, and vocabulary validity sets.
 * A prefix is valid iff some completion parses. We check both directions against jansson
 * (JSON_DECODE_ANY): every accepted prefix parses once the automaton's own completion is appended,
 * and every rejected prefix fails to parse with its original continuation and with a battery of
 * generic completions. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/jsonprefix.h"
#include "testutil.h"

static int jansson_parses(const char *s, size_t n) {
    json_error_t e;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &e);
    if (!j) return 0;
    json_decref(j);
    return 1;
}

static const char *VALID_DOCS[] = {
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}",
    "{\"a\":[1,2.5,-3e+2,0,-0.0,1E-7,{\"b\":null}],\"c\":true,\"d\":false,\"e\":\"\"}",
    "[ ]",
    "{ }",
    "  [[[[[]]]], {\"k\": [\"x\", {\"y\": [true, false, null]}]}]  \n",
    "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00 end\"",
    "\"utf8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\"",
    "-12.5e-3",
    "0",
    "123",
    "true",
    "null",
    "{\"query\":\"SELECT * FROM t WHERE x > 3\",\"limit\":10,\"tags\":[\"a\",\"b\"],\"opts\":{\"deep\":{\"er\":[[1],[2]]}}}",
    "\t{\r\n\"k\"\t:\n1\r}",
};

static const char *INVALID_DOCS[] = {
    "01", "[1,]", "{\"a\" 1}", "tru e", "\"\\x\"", "\"\\u0000\"", "\"\\udc00\"", "\"\\ud800x\"",
    "\"\\ud800\\u0041\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe0\x80\x80\"",
    "[}", "{]", "1 2", "\"a\x01\"", "{,}", "[,1]", "{\"a\":1,}", "-", "-a", "1.", "1.e5", "1e", "nul",
    "{\"a\":1}}", "]", "+1", ".5", "{1:2}", "[1 2]", "\"\xff\"", "NaN", "{\"a\"::1}",
};

static const char *SUFFIXES[] = {"", "\"", "}", "]", "0", "\"}", "]}", "}}", "\":0}", "\"]", "0}", "0]",
                                 "e", "l", "ue", "1\"}", " ", "\"\"", ":0}", "null}"};

/* Check one text prefix by prefix; returns the number of prefixes checked. */
static int check_text(const char *s, size_t n) {
    kd_jsonprefix st;
    kd_jsonprefix_init(&st);
    char comp[1024], buf[4096];
    int checked = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i > 0 && !kd_jsonprefix_feed(&st, s + i - 1, 1)) {
            /* s[0..i) is rejected: nothing it can be completed with parses */
            CU_ASSERT_FALSE(jansson_parses(s, n));
            for (size_t k = 0; k < sizeof SUFFIXES / sizeof *SUFFIXES; k++) {
                size_t sl = strlen(SUFFIXES[k]);
                memcpy(buf, s, i);
                memcpy(buf + i, SUFFIXES[k], sl);
                int ok = jansson_parses(buf, i + sl);
                if (ok) fprintf(stderr, "\n  rejected prefix %.*s parses with %s\n", (int)i, s, SUFFIXES[k]);
                CU_ASSERT_FALSE(ok);
            }
            return checked + 1;
        }
        long cl = kd_jsonprefix_completion(&st, comp, sizeof comp);
        CU_ASSERT_TRUE_FATAL(cl >= 0);
        memcpy(buf, s, i);
        memcpy(buf + i, comp, (size_t)cl);
        int ok = jansson_parses(buf, i + (size_t)cl);
        if (!ok) fprintf(stderr, "\n  accepted prefix '%.*s' + completion '%s' does not parse\n", (int)i, s, comp);
        CU_ASSERT_TRUE(ok);
        CU_ASSERT_EQUAL(kd_jsonprefix_complete(&st), i > 0 && jansson_parses(s, i));
        checked++;
    }
    /* the whole text was accepted: it parses iff the automaton calls it complete */
    CU_ASSERT_EQUAL(jansson_parses(s, n), kd_jsonprefix_complete(&st));
    return checked;
}

static void test_valid_docs_every_prefix(void) {
    for (size_t d = 0; d < sizeof VALID_DOCS / sizeof *VALID_DOCS; d++) {
        const char *s = VALID_DOCS[d];
        CU_ASSERT_TRUE(jansson_parses(s, strlen(s)));
        kd_jsonprefix st;
        kd_jsonprefix_init(&st);
        CU_ASSERT_TRUE(kd_jsonprefix_feed(&st, s, strlen(s)));
        CU_ASSERT_TRUE(kd_jsonprefix_complete(&st));
        CU_ASSERT_EQUAL(check_text(s, strlen(s)), (int)strlen(s) + 1);
    }
}

static void test_invalid_docs_rejected(void) {
    for (size_t d = 0; d < sizeof INVALID_DOCS / sizeof *INVALID_DOCS; d++) {
        const char *s = INVALID_DOCS[d];
        CU_ASSERT_FALSE(jansson_parses(s, strlen(s)));
        kd_jsonprefix st;
        kd_jsonprefix_init(&st);
        int ok = kd_jsonprefix_feed(&st, s, strlen(s)) && kd_jsonprefix_complete(&st);
        if (ok) fprintf(stderr, "\n  accepted invalid doc %s\n", s);
        CU_ASSERT_FALSE(ok);
        check_text(s, strlen(s));
    }
    /* incomplete but valid prefixes are not documents */
    const char *partial[] = {"{", "[1,", "\"ab", "tr", "-", "1e+", "\"\\u12", "\"\\ud800", "\"\xe2\x82"};
    for (size_t d = 0; d < sizeof partial / sizeof *partial; d++) {
        kd_jsonprefix st;
        kd_jsonprefix_init(&st);
        CU_ASSERT_TRUE(kd_jsonprefix_feed(&st, partial[d], strlen(partial[d])));
        CU_ASSERT_FALSE(kd_jsonprefix_complete(&st));
        check_text(partial[d], strlen(partial[d]));
    }
}

/* Random edits of valid documents: thousands of valid and invalid prefixes. */
static void test_mutations_against_jansson(void) {
    static const char ALPHA[] = "{}[]:,\" \\0123456789-+.eEtrufalsnu\x01\xc3\xa9\xe2\x82\xac\xff";
    uint64_t rng = 12345;
    int checked = 0, rejected_docs = 0, accepted_docs = 0;
    for (int iter = 0; iter < 3000; iter++) {
        const char *src = VALID_DOCS[kd_splitmix64(&rng) % (sizeof VALID_DOCS / sizeof *VALID_DOCS)];
        char m[512];
        size_t n = strlen(src);
        memcpy(m, src, n);
        int edits = 1 + (int)(kd_splitmix64(&rng) % 3);
        for (int e = 0; e < edits; e++) {
            int op = (int)(kd_splitmix64(&rng) % 3);
            size_t at = n ? (size_t)(kd_splitmix64(&rng) % n) : 0;
            char c = ALPHA[kd_splitmix64(&rng) % (sizeof ALPHA - 1)];
            if (op == 0 && n + 1 < sizeof m) {
                memmove(m + at + 1, m + at, n - at);
                m[at] = c;
                n++;
            } else if (op == 1 && n > 1) {
                memmove(m + at, m + at + 1, n - at - 1);
                n--;
            } else if (n > 0) {
                m[at] = c;
            }
        }
        checked += check_text(m, n);
        if (jansson_parses(m, n))
            accepted_docs++;
        else
            rejected_docs++;
    }
    fprintf(stderr, "\n  %d prefixes checked, %d edited texts parse, %d do not\n", checked, accepted_docs, rejected_docs);
    CU_ASSERT_TRUE(checked > 50000);
    CU_ASSERT_TRUE(rejected_docs > 1000);
    CU_ASSERT_TRUE(accepted_docs > 100);
}

static void test_depth_limit(void) {
    char s[KD_JSONPREFIX_MAX_DEPTH + 2];
    memset(s, '[', sizeof s);
    kd_jsonprefix st;
    kd_jsonprefix_init(&st);
    CU_ASSERT_TRUE(kd_jsonprefix_feed(&st, s, KD_JSONPREFIX_MAX_DEPTH));
    char comp[1024];
    long cl = kd_jsonprefix_completion(&st, comp, sizeof comp);
    CU_ASSERT_EQUAL(cl, KD_JSONPREFIX_MAX_DEPTH);
    CU_ASSERT_EQUAL(kd_jsonprefix_completion(&st, comp, 40), -1);
    CU_ASSERT_FALSE(kd_jsonprefix_feed(&st, "[", 1));
    CU_ASSERT_FALSE(kd_jsonprefix_valid(&st));
    CU_ASSERT_FALSE(kd_jsonprefix_feed(&st, "]", 1)); /* dead stays dead */
    CU_ASSERT_EQUAL(kd_jsonprefix_completion(&st, comp, sizeof comp), -1);
}

/* A toy vocabulary with structural, multi-byte (split UTF-8) and mixed tokens. */
static const char *TOY[] = {"{", "}", "[", "]", ":", ",", "\"", " ", "\n", "{\"", "\":", "\",", "\"}",
                            "}}", "]}", "\":\"", "name", "city", "Paris", "caf", "\xc3", "\xa9", "\xc3\xa9",
                            "\xe2\x82", "\xac", "0", "12", "-", ".", "e", "true", "tr", "ue", "null", "\\",
                            "n", "u", "00e9", "\\u", "<|im_end|>", "", " {\"", "\"}\n", "}<", "x", "1,"};

static void test_grammar_sets(void) {
    int32_t V = (int32_t)(sizeof TOY / sizeof *TOY);
    size_t lens[64];
    for (int32_t v = 0; v < V; v++) lens[v] = strlen(TOY[v]);
    kd_jsongrammar *g;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_jsongrammar_new(&g, TOY, lens, V, 0, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_jsongrammar_vocab_size(g), V);
    const char *prefixes[] = {"", "{", "{\"", "{\"city", "{\"city\"", "{\"city\":", "{\"city\": \"caf\xc3",
                              "{\"city\": \"caf\\", "{\"city\": \"\\u", "[1", "[1.", "[tr", "{\"a\":[{}]",
                              "{\"a\":1}", "-", "\"\xe2\x82"};
    int sets = 0, distinct = 0;
    kd_jsonprefix seen[32];
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        kd_jsonprefix st;
        kd_jsonprefix_init(&st);
        CU_ASSERT_TRUE_FATAL(kd_jsonprefix_feed(&st, prefixes[p], strlen(prefixes[p])));
        int is_new = 1;
        for (int k = 0; k < distinct; k++) is_new &= memcmp(&seen[k], &st, sizeof st) != 0;
        if (is_new) seen[distinct++] = st;
        for (int rep = 0; rep < 2; rep++) {
            const uint64_t *set = kd_jsongrammar_valid_set(g, &st);
            CU_ASSERT_PTR_NOT_NULL_FATAL(set);
            for (int32_t v = 0; v < V; v++) {
                int want = kd_jsonprefix_accepts(&st, TOY[v], lens[v]);
                CU_ASSERT_EQUAL((int)((set[v / 64] >> (v % 64)) & 1u), want);
            }
        }
        sets++;
    }
    /* spot checks with meaning */
    kd_jsonprefix st;
    kd_jsonprefix_init(&st);
    kd_jsonprefix_feed(&st, "{\"city\": \"caf\xc3", 14);
    const uint64_t *set = kd_jsongrammar_valid_set(g, &st);
    CU_ASSERT_TRUE((set[0] >> 21) & 1u);  /* "\xa9" completes the character */
    CU_ASSERT_FALSE((set[0] >> 19) & 1u); /* "caf" would break the UTF-8 sequence */
    kd_jsonprefix_init(&st);
    kd_jsonprefix_feed(&st, "{\"a\":1}", 7);
    set = kd_jsongrammar_valid_set(g, &st);
    CU_ASSERT_TRUE((set[0] >> 8) & 1u);   /* trailing newline */
    CU_ASSERT_FALSE((set[0] >> 39) & 1u); /* <|im_end|> inside JSON is invalid, after it too */
    CU_ASSERT_TRUE((set[0] >> 40) & 1u);  /* the empty token changes nothing */
    kd_jsongrammar_stats stats;
    kd_jsongrammar_get_stats(g, &stats);
    CU_ASSERT_EQUAL(stats.lookups, 2 * sets + 2);
    CU_ASSERT_EQUAL(stats.misses, distinct); /* repeats and equal states hit the cache */
    CU_ASSERT_TRUE(distinct < sets);         /* {" and {"city are the same state */
    /* a tiny cache is cleared when full and still answers correctly */
    kd_jsongrammar *g2;
    CU_ASSERT_EQUAL_FATAL(kd_jsongrammar_new(&g2, TOY, lens, V, 2, &err), KD_OK);
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        kd_jsonprefix_init(&st);
        kd_jsonprefix_feed(&st, prefixes[p], strlen(prefixes[p]));
        set = kd_jsongrammar_valid_set(g2, &st);
        for (int32_t v = 0; v < V; v++)
            CU_ASSERT_EQUAL((int)((set[v / 64] >> (v % 64)) & 1u), kd_jsonprefix_accepts(&st, TOY[v], lens[v]));
    }
    kd_jsongrammar_get_stats(g2, &stats);
    CU_ASSERT_TRUE(stats.cached <= 2);
    kd_jsongrammar_free(g2);
    /* tokens advance the state */
    kd_jsonprefix_init(&st);
    CU_ASSERT_TRUE(kd_jsongrammar_feed_token(g, &st, 9));  /* {" */
    CU_ASSERT_TRUE(kd_jsongrammar_feed_token(g, &st, 17)); /* city */
    CU_ASSERT_TRUE(kd_jsongrammar_feed_token(g, &st, 15)); /* ":" */
    CU_ASSERT_TRUE(kd_jsongrammar_feed_token(g, &st, 18)); /* Paris */
    CU_ASSERT_TRUE(kd_jsongrammar_feed_token(g, &st, 12)); /* "} */
    CU_ASSERT_TRUE(kd_jsonprefix_complete(&st));
    CU_ASSERT_FALSE(kd_jsongrammar_feed_token(g, &st, V)); /* out of range kills */
    kd_jsongrammar_free(g);
    kd_jsongrammar_free(NULL);
    /* errors */
    CU_ASSERT_EQUAL(kd_jsongrammar_new(&g, TOY, lens, 0, 0, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "json grammar: vocabulary size 0 must be positive");
    const char *bad[2] = {"a", NULL};
    size_t badlen[2] = {1, 3};
    CU_ASSERT_EQUAL(kd_jsongrammar_new(&g, bad, badlen, 2, 0, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "json grammar: token 1 has no bytes but length 3");
    CU_ASSERT_PTR_NULL(g);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("jsonprefix", NULL, NULL);
    CU_add_test(s, "valid documents: every prefix accepted, completions parse", test_valid_docs_every_prefix);
    CU_add_test(s, "invalid documents rejected like jansson", test_invalid_docs_rejected);
    CU_add_test(s, "random edits: automaton agrees with jansson", test_mutations_against_jansson);
    CU_add_test(s, "depth limit", test_depth_limit);
    CU_add_test(s, "vocabulary validity sets", test_grammar_sets);
    return kd_test_main();
}
