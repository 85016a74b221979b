/* CUnit suite: guided tool calls (src/eval/toolguide.c). Texts are fed token by token, as a decoder
 * would, through a real BPE tokenizer (the fixture trained on the tool-use corpus, so tokens cross
 * the frame's boundaries: `"name": "` and the name can share a token). For each text the test knows
 * the first byte that breaks the rule at a given level (marked with '|'), and checks that the first
 * token the guide masks is the one holding that byte, and that a text without a mark passes whole. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KD_FIXTURE_NO_MODEL
#include "kdstep/toolguide.h"
#include "student_fixture.h"

static kd_tokenizer *tok;
static json_t *tools;

static int setup(void) {
    tools = json_load_file(fx_tools_path(), 0, NULL);
    return tools && kd_tokenizer_open(&tok, fx_tokenizer_dir(), NULL) == KD_OK ? 0 : 1;
}

static int teardown(void) {
    kd_tokenizer_close(tok);
    json_decref(tools);
    return 0;
}

/* Feed text (with at most one '|' marking the first bad byte, removed first) token by token at
 * `mode`: 1 when no token is masked if unmarked, or the first masked token holds the marked byte. */
static int check_text(int mode, const char *marked) {
    char text[1024];
    long bad = -1;
    size_t n = 0;
    for (const char *p = marked; *p && n + 1 < sizeof text; p++) {
        if (*p == '|') bad = (long)n;
        else text[n++] = *p;
    }
    text[n] = 0;
    kd_tool_guide *g = NULL;
    kd_error err;
    if (kd_tool_guide_open(&g, tok, tools, mode, &err)) return 0;
    kd_encoding enc = {0};
    if (kd_tokenizer_encode(tok, text, n, 0, &enc, &err)) return 0;
    int V = kd_tokenizer_vocab_size(tok);
    float *lg = malloc((size_t)V * sizeof *lg);
    long off = 0, masked_at = -1, masked_end = -1;
    for (size_t i = 0; i < enc.count && masked_at < 0; i++) {
        for (int k = 0; k < V; k++) lg[k] = 0.0f;
        kd_tool_guide_mask(g, lg, V);
        const char *b;
        size_t len;
        kd_tokenizer_token_bytes(tok, enc.ids[i], &b, &len);
        if (lg[enc.ids[i]] == -INFINITY) {
            masked_at = off;
            masked_end = off + (long)len;
        }
        kd_tool_guide_push(g, enc.ids[i]);
        off += (long)len;
    }
    int ok = bad < 0 ? masked_at < 0 : (masked_at >= 0 && masked_at <= bad && bad < masked_end);
    if (!ok)
        fprintf(stderr, "\n  mode %d: %s: first masked token at byte %ld..%ld, want %ld\n", mode, marked, masked_at,
                masked_end, bad);
    free(lg);
    kd_encoding_free(&enc);
    kd_tool_guide_close(g);
    return ok;
}

#define OPEN "<tool_call>\n{\"name\": \""
#define CLOSE "}\n</tool_call>"

/* Good calls and plain answers pass at every level. */
static void test_good_texts_pass(void) {
    const char *good[] = {
        "The file says hello.",
        OPEN "read_file\", \"arguments\": {\"path\": \"a.txt\", \"encoding\": \"utf-8\", \"max_bytes\": 10}" CLOSE,
        OPEN "file.write\", \"arguments\": {\"path\": \"a\\\"b\\\\c\\u00e9\", \"content\": \"x y\", \"append\": true}" CLOSE,
        OPEN "list_directory\", \"arguments\": {\"path\": \".\"}" CLOSE "\n" OPEN
             "read_file\", \"arguments\": {\"path\": \"b\", \"max_bytes\": -0}" CLOSE,
        "<think>\n\n</think>\n\nNo tool fits; here is the answer.",
    };
    for (int m = KD_GUIDE_NAMES; m <= KD_GUIDE_SCHEMA; m++)
        for (size_t i = 0; i < sizeof good / sizeof *good; i++) CU_ASSERT_TRUE(check_text(m, good[i]));
}

/* Each marked text at `mode`: the first masked token holds the mark. */
static void check_all(int mode, const char *const *texts, size_t n) {
    for (size_t i = 0; i < n; i++) CU_ASSERT_TRUE(check_text(mode, texts[i]));
}

/* Names: only offered ones, in the template's frame. */
static void test_names(void) {
    static const char *const texts[] = {
        OPEN "|delete_file\", \"arguments\": {}" CLOSE,
        OPEN "read_file|s\", \"arguments\": {}" CLOSE,
        OPEN "read_|dir\", \"arguments\": {}" CLOSE,
        OPEN "read_file\"|: \"a\"}" CLOSE,
        OPEN "read_file\"|}" CLOSE,
        /* the second call of an answer is guided too */
        OPEN "read_file\", \"arguments\": {\"path\": \"a\"}" CLOSE "\n" OPEN "|nope\"",
        /* names alone leave the arguments free */
        OPEN "read_file\", \"arguments\": {\"path\": \"a\",}, oops" CLOSE,
    };
    check_all(KD_GUIDE_NAMES, texts, sizeof texts / sizeof *texts);
}

/* JSON: one well-formed object, then the closing frame. */
static void test_json(void) {
    static const char *const texts[] = {
        OPEN "read_file\", \"arguments\": {\"path\": \"a\",|}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"path\" |\"a\"}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"path\": \"a\\|x\"}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"path\": |'a'}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"max_bytes\": 0|1}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"max_bytes\": tru|s}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"a\": [1, 2|}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"path\": \"a\"}|\n</tool_call>",
        /* a number ends within KD_GUIDE_MAX_NUMBER bytes, a run of whitespace within KD_GUIDE_MAX_SPACE */
        OPEN "read_file\", \"arguments\": {\"max_bytes\": 123456789012345678901234|5}" CLOSE,
        OPEN "read_file\", \"arguments\": {\"max_bytes\":\n\n\n\n\n\n\n\n        |\n1}" CLOSE,
        /* json alone leaves keys and types free */
        OPEN "read_file\", \"arguments\": {\"file\": {\"x\": [1, {\"y\": null}]}}" CLOSE,
    };
    check_all(KD_GUIDE_JSON, texts, sizeof texts / sizeof *texts);
}

/* Schema: the named tool's parameters, each once, required ones present, values of their type. */
static void test_schema(void) {
    const char *bad[] = {
        OPEN "read_file\", \"arguments\": {\"|file\": \"a.txt\"}" CLOSE,                    /* not a parameter */
        OPEN "read_file\", \"arguments\": {\"path\": \"a\", \"|path\": \"b\"}" CLOSE,       /* twice */
        OPEN "read_file\", \"arguments\": {\"encoding\": \"ascii\"|}" CLOSE,                /* path is required */
        OPEN "read_file\", \"arguments\": {|}" CLOSE,                                        /* path is required */
        OPEN "read_file\", \"arguments\": {\"path\": \"a\", \"max_bytes\": |\"10\"}" CLOSE, /* integer */
        OPEN "read_file\", \"arguments\": {\"path\": \"a\", \"max_bytes\": 10|.5}" CLOSE,   /* integer */
        OPEN "read_file\", \"arguments\": {\"path\": \"a\", \"encoding\": \"utf-|16\"}" CLOSE, /* enum */
        OPEN "read_file\", \"arguments\": {\"path\": |7}" CLOSE,                            /* string */
        OPEN "file.write\", \"arguments\": {\"path\": \"a\", \"content\": \"b\", \"append\": |1}" CLOSE, /* boolean */
        OPEN "list_directory\", \"arguments\": {\"path\": \".\", \"pattern\": |{\"x\": 1}}" CLOSE,   /* string */
        OPEN "list_directory\", \"arguments\": {\"path\": \".\", \"recursive\": |null}" CLOSE, /* boolean */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CU_ASSERT_TRUE(check_text(KD_GUIDE_SCHEMA, bad[i]));
        /* the same text is well-formed JSON: the json level lets it through */
        char plain[1024];
        size_t n = 0;
        for (const char *p = bad[i]; *p; p++)
            if (*p != '|') plain[n++] = *p;
        plain[n] = 0;
        CU_ASSERT_TRUE(check_text(KD_GUIDE_JSON, plain));
    }
}

/* A step where every possible token would break the rule is left as it was. */
static void test_nothing_possible_masks_nothing(void) {
    kd_tool_guide *g = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_tool_guide_open(&g, tok, tools, KD_GUIDE_NAMES, &err), KD_OK);
    kd_encoding enc = {0};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, OPEN, strlen(OPEN), 0, &enc, &err), KD_OK);
    for (size_t i = 0; i < enc.count; i++) kd_tool_guide_push(g, enc.ids[i]);
    int V = kd_tokenizer_vocab_size(tok);
    float *lg = malloc((size_t)V * sizeof *lg);
    int32_t lt = -1;
    for (int k = 0; k < V && lt < 0; k++) {
        const char *b;
        size_t len;
        if (!kd_tokenizer_token_bytes(tok, k, &b, &len) && len == 1 && b[0] == '<') lt = k;
    }
    CU_ASSERT_FATAL(lt >= 0);
    for (int k = 0; k < V; k++) lg[k] = k == lt ? 1.0f : -INFINITY; /* only '<', which no name starts with */
    CU_ASSERT_EQUAL(kd_tool_guide_mask(g, lg, V), V);
    CU_ASSERT_EQUAL(lg[lt], 1.0f);
    for (int k = 0; k < V; k++) lg[k] = 0.0f;
    int open = kd_tool_guide_mask(g, lg, V);
    CU_ASSERT_TRUE(open > 0 && open < V);
    CU_ASSERT_EQUAL(lg[lt], -INFINITY);
    CU_ASSERT_TRUE(g->masked_steps == 1);
    free(lg);
    kd_encoding_free(&enc);
    kd_tool_guide_close(g);
}

static void expect_open_error(const char *json, int mode, const char *want) {
    json_t *t = json_loads(json, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    kd_tool_guide *g = NULL;
    kd_error err = {0};
    CU_ASSERT_NOT_EQUAL(kd_tool_guide_open(&g, tok, t, mode, &err), KD_OK);
    CU_ASSERT_PTR_NULL(g);
    KD_ASSERT_CONTAINS(err.msg, want);
    json_decref(t);
}

static void test_open_errors(void) {
    expect_open_error("{}", KD_GUIDE_NAMES, "tools is not an array");
    expect_open_error("[{\"function\": {\"name\": \"a\"}}, {\"function\": {\"name\": 3}}]", KD_GUIDE_NAMES,
                      "tools[1]: function.name is not a string");
    char big[600];
    snprintf(big, sizeof big, "[{\"name\": \"%0300d\"}]", 0);
    expect_open_error(big, KD_GUIDE_NAMES, "tools[0]: function.name \"0000");
    expect_open_error(big, KD_GUIDE_NAMES, "is 300 bytes; guided names are 1 to 256 bytes");
    expect_open_error("[{\"name\": \"a\"}]", 7, "mode 7 is not names (1), json (2) or schema (3)");
    json_t *many = json_pack("[{s:s, s:{s:{}}}]", "name", "wide", "parameters", "properties");
    json_t *props = json_object_get(json_object_get(json_array_get(many, 0), "parameters"), "properties");
    for (int i = 0; i < KD_GUIDE_MAX_KEYS + 1; i++) {
        char k[16];
        snprintf(k, sizeof k, "p%d", i);
        json_object_set_new(props, k, json_pack("{s:s}", "type", "string"));
    }
    char *s = json_dumps(many, 0);
    expect_open_error(s, KD_GUIDE_SCHEMA, "tools[0] (wide): 65 parameters; schema guidance takes up to 64");
    /* below schema level the parameters are not read */
    kd_tool_guide *g = NULL;
    kd_error err;
    CU_ASSERT_EQUAL(kd_tool_guide_open(&g, tok, many, KD_GUIDE_JSON, &err), KD_OK);
    kd_tool_guide_close(g);
    free(s);
    json_decref(many);
    CU_ASSERT_EQUAL(kd_guide_mode_parse("none"), KD_GUIDE_NONE);
    CU_ASSERT_EQUAL(kd_guide_mode_parse("names"), KD_GUIDE_NAMES);
    CU_ASSERT_EQUAL(kd_guide_mode_parse("json"), KD_GUIDE_JSON);
    CU_ASSERT_EQUAL(kd_guide_mode_parse("schema"), KD_GUIDE_SCHEMA);
    CU_ASSERT_EQUAL(kd_guide_mode_parse("keys"), -1);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("toolguide", setup, teardown);
    CU_add_test(s, "good calls and plain answers pass at every level", test_good_texts_pass);
    CU_add_test(s, "names: only offered ones, in the template's frame", test_names);
    CU_add_test(s, "json: one well-formed object, then the closing frame", test_json);
    CU_add_test(s, "schema: parameters once, required present, values typed", test_schema);
    CU_add_test(s, "a step where nothing is possible is left unmasked", test_nothing_possible_masks_nothing);
    CU_add_test(s, "open errors name the tool and the field", test_open_errors);
    return kd_test_main();
}
