/* Tokenizer segment cache (kd_tokcache, kd_tokenizer_encode_cached): on many real texts (BFCL and
 * glaive conversations rendered in the chat template, the raw BFCL lines, which hold no added token)
 * and on edge cases (a span repeated at other positions, invalid UTF-8, NFC across a boundary,
 * lstrip/rstrip/single_word/normalized added tokens, prefix space, trimmed offsets, BOS), the cached
 * encoding equals the plain one in ids and offsets, for Qwen3, Llama 3, GPT-2, a student tokenizer
 * and a variant of it that turns on every neighbour-dependent option; with hits, misses and
 * evictions shown by the cache's own counters. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KD_FIXTURE_NO_MODEL
#include "kdstep/chat.h"
#include "kdstep/fsutil.h"
#include "kdstep/registry.h"
#include "kdstep/tokenizer.h"
#include "student_fixture.h"
#include "testutil.h"

/* ------------------------------------------------------------ the texts */

typedef struct texts {
    char **s;
    size_t *len;
    size_t n, cap;
} texts;

static void texts_add(texts *t, const char *s, size_t len) {
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->s = realloc(t->s, t->cap * sizeof *t->s);
        t->len = realloc(t->len, t->cap * sizeof *t->len);
    }
    t->s[t->n] = malloc(len + 1);
    memcpy(t->s[t->n], s, len);
    t->s[t->n][len] = 0;
    t->len[t->n++] = len;
}

static void texts_free(texts *t) {
    for (size_t i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s);
    free(t->len);
}

static void add_rendered(texts *t, json_t *messages, json_t *tools) {
    kd_chat_result r;
    kd_error e;
    if (kd_chat_render_json(messages, tools, NULL, &r, &e) == KD_OK) {
        texts_add(t, r.text, r.len);
        kd_chat_render_free(&r);
    }
}

/* BFCL: every `stride`-th record of a set, rendered with its functions as the tools (and with an
 * assistant answer), plus the raw line. */
static void add_bfcl(texts *t, const char *data, const char *set, int stride) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bfcl/BFCL_v3_%s.json", data, set);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int k = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (k++ % stride) continue;
        texts_add(t, line, (size_t)n);
        json_t *rec = json_loads(line, 0, NULL);
        json_t *q = json_array_get(json_object_get(rec, "question"), 0);
        kd_registry *reg = NULL;
        kd_error e;
        json_t *tools = NULL;
        if (kd_registry_from_json(&reg, json_object_get(rec, "function"), set, &e) == KD_OK) tools = kd_registry_to_openai(reg);
        json_t *msgs = json_deep_copy(q);
        add_rendered(t, msgs, tools);
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "assistant", "content", "Done: \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80."));
        add_rendered(t, msgs, tools);
        json_decref(msgs);
        json_decref(tools);
        kd_registry_close(reg);
        json_decref(rec);
    }
    free(line);
    fclose(f);
}

static void add_glaive(texts *t, const char *data) {
    char path[4096];
    snprintf(path, sizeof path, "%s/glaive/glaive_toolcall_en_demo.json", data);
    json_t *all = json_load_file(path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    size_t i;
    json_t *rec;
    json_array_foreach(all, i, rec) {
        json_t *fns = json_loads(json_string_value(json_object_get(rec, "tools")), 0, NULL);
        json_t *tools = json_array();
        size_t j;
        json_t *fn;
        json_array_foreach(fns, j, fn) json_array_append_new(tools, json_pack("{s:s, s:O}", "type", "function", "function", fn));
        json_t *msgs = json_array();
        json_t *turn;
        json_array_foreach(json_object_get(rec, "conversations"), j, turn) {
            const char *from = json_string_value(json_object_get(turn, "from"));
            const char *v = json_string_value(json_object_get(turn, "value"));
            if (!from || !v) continue;
            if (!strcmp(from, "human")) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", v));
            else if (!strcmp(from, "gpt")) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "assistant", "content", v));
            else if (!strcmp(from, "observation")) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "tool", "content", v));
            else if (!strcmp(from, "function_call")) {
                json_t *call = json_loads(v, 0, NULL);
                if (call)
                    json_array_append_new(msgs, json_pack("{s:s, s:n, s:[{s:s, s:O}]}", "role", "assistant", "content", "tool_calls",
                                                          "type", "function", "function", call));
                json_decref(call);
            }
        }
        add_rendered(t, msgs, json_array_size(tools) ? tools : NULL);
        json_decref(msgs);
        json_decref(tools);
        json_decref(fns);
    }
    json_decref(all);
}

/* Cases the real data may not hold: one long span at many positions (text start, after other
 * spans, at the end, without a closing token), invalid UTF-8 inside and outside it, combining
 * marks and spaces next to the added tokens, and texts without any added token. */
static void add_edge_cases(texts *t) {
    static const char span[] =
        "system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather for a "
        "city, caf\xc3\xa9 or r\xc3\xa9sum\xc3\xa9\", \"parameters\": {\"type\": \"object\"}}}\n</tools>\n";
    static const char *pre[] = {"", "<|im_start|>", "x<|im_start|>", "  <|im_start|>", "<|im_end|>\n<|im_start|>",
                                "e\xcc\x81<|im_start|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>", "<think> ",
                                "\xff<|im_start|>", "<tool_call>  "};
    static const char *post[] = {"<|im_end|>\n", "", "  <|im_end|>", "\xcc\x81<|im_end|>", "<|im_end|>\n<|im_start|>user\nhi",
                                 "</think>x", " </think> ", "<tool_call>\n{\"a\": 1}\n</tool_call>", "<|im_end|>\xc3"};
    char buf[4096];
    for (size_t a = 0; a < sizeof pre / sizeof pre[0]; a++)
        for (size_t b = 0; b < sizeof post / sizeof post[0]; b++) {
            int n = snprintf(buf, sizeof buf, "%s%s%s", pre[a], span, post[b]);
            texts_add(t, buf, (size_t)n);
            /* the same span twice in one text, and with a byte changed (same length, another hash) */
            n = snprintf(buf, sizeof buf, "%s%s%s%s<|im_start|>%s%s", pre[a], span, post[b], pre[b % 3], span, post[a % 9]);
            texts_add(t, buf, (size_t)n);
            buf[strlen(pre[a]) + 40] ^= 1;
            texts_add(t, buf, (size_t)n);
        }
    texts_add(t, span, strlen(span));
    texts_add(t, "", 0);
    texts_add(t, "<|im_start|><|im_end|>", 22);
}

/* ------------------------------------------------------------ the comparison */

static int same(const kd_encoding *a, const kd_encoding *b) {
    return a->count == b->count && !memcmp(a->ids, b->ids, a->count * sizeof(int32_t)) &&
           !memcmp(a->offsets, b->offsets, a->count * sizeof(*a->offsets));
}

typedef struct cfg {
    size_t max_entries, min_bytes;
} cfg;

/* Every text through the plain encoder and through caches of several shapes (the first pass fills,
 * the second hits); returns the number of differing encodings and the caches' counters summed. */
static long compare_all(const kd_tokenizer *tok, const texts *tx, int add_special, kd_tokcache_stats *sum) {
    static const cfg cfgs[] = {{32, 256}, {2, 16}, {8, 1}, {4096, 64}};
    enum { NC = sizeof cfgs / sizeof cfgs[0] };
    kd_tokcache *c[NC];
    kd_error e;
    for (int k = 0; k < NC; k++) CU_ASSERT_EQUAL_FATAL(kd_tokcache_open(&c[k], cfgs[k].max_entries, cfgs[k].min_bytes, &e), KD_OK);
    kd_encoding plain = {0}, cached = {0};
    long bad = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < tx->n; i++) {
            if (kd_tokenizer_encode(tok, tx->s[i], tx->len[i], add_special, &plain, &e) != KD_OK) {
                bad++;
                continue;
            }
            for (int k = 0; k < NC; k++) {
                int rc = kd_tokenizer_encode_cached(tok, c[k], tx->s[i], tx->len[i], add_special, &cached, &e);
                if (rc != KD_OK || !same(&plain, &cached)) {
                    if (bad < 3) fprintf(stderr, "\n  cache %d differs on text %zu (pass %d): %.80s\n", k, i, pass, tx->s[i]);
                    bad++;
                }
            }
        }
    memset(sum, 0, sizeof *sum);
    for (int k = 0; k < NC; k++) {
        kd_tokcache_stats st;
        kd_tokcache_get_stats(c[k], &st);
        sum->calls += st.calls;
        sum->lookups += st.lookups;
        sum->hits += st.hits;
        sum->hit_bytes += st.hit_bytes;
        sum->miss_bytes += st.miss_bytes;
        sum->evictions += st.evictions;
        kd_tokcache_close(c[k]);
    }
    kd_encoding_free(&plain);
    kd_encoding_free(&cached);
    return bad;
}

/* The student tokenizer with every option that looks past a span's edge or rewrites it turned on:
 * lstrip / rstrip / single_word / normalized added tokens, ByteLevel's prefix space, and the
 * post-processor's offset trimming (which looks at absolute offsets). */
static const char *student_variant(void) {
    char src[4096];
    snprintf(src, sizeof src, "%s/tokenizer.json", fx_tokenizer_dir());
    json_t *j = json_load_file(src, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(j, "added_tokens"), i, a) {
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!strcmp(c, "<|im_end|>")) json_object_set_new(a, "lstrip", json_true());
        if (!strcmp(c, "<tool_call>")) json_object_set_new(a, "rstrip", json_true());
        if (!strcmp(c, "</think>")) json_object_set_new(a, "single_word", json_true());
        if (!strcmp(c, "<think>")) json_object_set_new(a, "normalized", json_true());
    }
    json_t *steps = json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers");
    json_array_foreach(steps, i, a) if (!strcmp(json_string_value(json_object_get(a, "type")), "ByteLevel"))
        json_object_set_new(a, "add_prefix_space", json_true());
    json_object_set_new(j, "post_processor", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                                       "trim_offsets", 1, "use_regex", 1));
    static char dst[4096];
    snprintf(dst, sizeof dst, "%s/variant.json", kd_test_tmpdir());
    CU_ASSERT_EQUAL_FATAL(json_dump_file(j, dst, 0), 0);
    json_decref(j);
    return dst;
}

static void test_equal_to_plain(void) {
    const char *data = kd_test_shared_data();
    texts tx = {0};
    add_edge_cases(&tx);
    size_t n_edge = tx.n;
    if (data) {
        static const char *sets[] = {"simple", "multiple", "parallel_multiple", "live_multiple", "live_irrelevance"};
        for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) add_bfcl(&tx, data, sets[k], 8);
        add_glaive(&tx, data);
    } else {
        kd_test_skip("../shared/data is absent: the cache is checked on the edge cases only, not on BFCL/glaive");
    }
    CU_ASSERT_TRUE(tx.n > n_edge || !data);
    struct {
        const char *name, *path;
        int add_special;
    } toks[] = {{"student", fx_tokenizer_dir(), 0},
                {"student variant", student_variant(), 0},
                {"qwen3", kd_test_src("tests/.cache/tokenizers/qwen3"), 0},
                {"llama3 (BOS)", kd_test_src("tests/.cache/tokenizers/llama3"), 1},
                {"gpt2", kd_test_src("tests/.cache/tokenizers/gpt2"), 0}};
    int real = 0;
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
        if (!kd_path_exists(toks[k].path)) {
            kd_test_skip("tests/.cache/tokenizers missing (run tests/fetch-tokenizers.sh): the cache is not checked on Qwen3 / Llama 3 / GPT-2");
            continue;
        }
        real += k >= 2;
        kd_tokenizer *tok = NULL;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, toks[k].path, &e), KD_OK);
        kd_tokcache_stats st;
        long bad = compare_all(tok, &tx, toks[k].add_special, &st);
        if (bad) fprintf(stderr, "\n  %s: %ld of %zu encodings differ\n", toks[k].name, bad, 2 * 4 * tx.n);
        CU_ASSERT_EQUAL(bad, 0);
        /* the counters show hits, misses and evictions happened */
        CU_ASSERT_TRUE(st.calls == 2 * 4 * tx.n);
        CU_ASSERT_TRUE(st.hits > 0 && st.hits < st.lookups);
        CU_ASSERT_TRUE(st.hit_bytes > 0 && st.miss_bytes > 0);
        CU_ASSERT_TRUE(st.evictions > 0);
        kd_tokenizer_close(tok);
    }
    (void)real;
    texts_free(&tx);
}

/* One span at three positions: the first encode fills, the others hit, with offsets moved. */
static void test_hit_at_other_positions(void) {
    kd_tokenizer *tok = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, fx_tokenizer_dir(), &e), KD_OK);
    kd_tokcache *c = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_tokcache_open(&c, 4, 32, &e), KD_OK);
    const char *span = "system\nYou are a helpful assistant that calls tools when it must.";
    const char *fmt[] = {"<|im_start|>%s<|im_end|>", "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>%s<|im_end|>",
                         "%s<|im_end|>"};
    kd_encoding plain = {0}, cached = {0}, first = {0};
    char buf[512];
    for (int k = 0; k < 3; k++) {
        int n = snprintf(buf, sizeof buf, fmt[k], span);
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, buf, (size_t)n, 0, &plain, &e), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode_cached(tok, c, buf, (size_t)n, 0, &cached, &e), KD_OK);
        CU_ASSERT_TRUE(same(&plain, &cached));
        kd_tokcache_stats st;
        kd_tokcache_get_stats(c, &st);
        CU_ASSERT_EQUAL(st.hits, (uint64_t)k);
        CU_ASSERT_EQUAL(st.hit_bytes, (uint64_t)k * strlen(span));
        if (k == 0) {
            CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, buf, (size_t)n, 0, &first, &e), KD_OK);
        } else {
            /* the span's tokens are the same ids at a shifted place */
            size_t at = (size_t)(strstr(buf, span) - buf), i = 0;
            while (i < cached.count && cached.offsets[i][0] < (int32_t)at) i++;
            CU_ASSERT_TRUE(i + first.count - 2 <= cached.count);
            for (size_t q = 1; q + 1 < first.count; q++) {
                CU_ASSERT_EQUAL(cached.ids[i + q - 1], first.ids[q]);
                CU_ASSERT_EQUAL(cached.offsets[i + q - 1][0], first.offsets[q][0] - 12 + (int32_t)at);
            }
        }
    }
    /* NULL cache is the plain encoder */
    CU_ASSERT_EQUAL(kd_tokenizer_encode_cached(tok, NULL, buf, strlen(buf), 0, &cached, &e), KD_OK);
    CU_ASSERT_TRUE(same(&plain, &cached));
    kd_encoding_free(&plain);
    kd_encoding_free(&cached);
    kd_encoding_free(&first);
    kd_tokcache_close(c);
    kd_tokenizer_close(tok);
}

/* A cache used with another tokenizer empties itself instead of handing out the first one's ids. */
static void test_other_tokenizer(void) {
    kd_tokenizer *a = NULL, *b = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&a, fx_tokenizer_dir(), &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&b, student_variant(), &e), KD_OK);
    kd_tokcache *c = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_tokcache_open(&c, 4, 1, &e), KD_OK);
    const char *s = "<|im_start|>system\nhello world, hello tools<|im_end|>";
    kd_encoding pa = {0}, pb = {0}, x = {0};
    CU_ASSERT_EQUAL(kd_tokenizer_encode(a, s, strlen(s), 0, &pa, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_tokenizer_encode(b, s, strlen(s), 0, &pb, &e), KD_OK);
    CU_ASSERT_FALSE(same(&pa, &pb)); /* prefix space and trimming make them differ */
    for (int k = 0; k < 2; k++) {
        CU_ASSERT_EQUAL(kd_tokenizer_encode_cached(a, c, s, strlen(s), 0, &x, &e), KD_OK);
        CU_ASSERT_TRUE(same(&pa, &x));
        CU_ASSERT_EQUAL(kd_tokenizer_encode_cached(b, c, s, strlen(s), 0, &x, &e), KD_OK);
        CU_ASSERT_TRUE(same(&pb, &x));
    }
    kd_encoding_free(&pa);
    kd_encoding_free(&pb);
    kd_encoding_free(&x);
    kd_tokcache_close(c);
    kd_tokenizer_close(a);
    kd_tokenizer_close(b);
}

static void test_open_errors(void) {
    kd_tokcache *c = (kd_tokcache *)1;
    kd_error e;
    CU_ASSERT_EQUAL(kd_tokcache_open(&c, 0, 64, &e), KD_ERR_INVALID);
    CU_ASSERT_PTR_NULL(c);
    KD_ASSERT_CONTAINS(e.msg, "tokenizer cache: max_entries 0 is out of range (1..4096)");
    CU_ASSERT_EQUAL(kd_tokcache_open(&c, 5000, 64, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "max_entries 5000 is out of range");
    kd_tokcache_close(NULL);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("tokcache", NULL, NULL);
    CU_add_test(s, "cached = plain (ids, offsets) on BFCL/glaive/edge texts, 5 tokenizers", test_equal_to_plain);
    CU_add_test(s, "a span hit at other positions: same ids, shifted offsets", test_hit_at_other_positions);
    CU_add_test(s, "a cache moved to another tokenizer empties itself", test_other_tokenizer);
    CU_add_test(s, "open errors", test_open_errors);
    return kd_test_main();
}
