/* Tool-call extraction in every format, with tricky content, and on real BFCL and glaive data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract_render.h"
#include "kdstep/extract.h"
#include "kdstep/fsutil.h"
#include "testutil.h"

static kd_registry *g_reg;

static int suite_init(void) {
    kd_error e;
    if (kd_registry_open(&g_reg, &e) || kd_registry_load_file(g_reg, kd_test_src("configs/tools.json"), &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    return 0;
}
static int suite_clean(void) {
    kd_registry_close(g_reg);
    return 0;
}

static int span_is(const char *text, kd_text_span s, const char *want) {
    size_t n = strlen(want);
    int ok = s.end >= s.start && s.end - s.start == n && memcmp(text + s.start, want, n) == 0;
    if (!ok)
        fprintf(stderr, "\n  span [%zu,%zu) is \"%.*s\", expected \"%s\"\n", s.start, s.end, (int)(s.end - s.start),
                text + s.start, want);
    return ok;
}

static void extract(const char *text, kd_tool_calls *c) {
    kd_error e;
    memset(c, 0, sizeof *c);
    CU_ASSERT_EQUAL_FATAL(kd_extract_tool_calls(text, strlen(text), g_reg, c, &e), KD_OK);
}

/* Render calls in each format and check every call comes back with the exact name and arguments. */
static void roundtrip(const char *const *names, const char *const *args, int n) {
    for (int f = 0; f < KD_CALL_FORMAT_COUNT; f++) {
        char *text = kd_render_calls((kd_call_format)f, names, args, n);
        kd_tool_calls c;
        extract(text, &c);
        if (c.count != (size_t)n) fprintf(stderr, "\n  %s: %zu calls in: %s\n", kd_call_format_name(f), c.count, text);
        CU_ASSERT_EQUAL(c.count, (size_t)n);
        for (int i = 0; i < n && (size_t)i < c.count; i++) {
            char *nt = kd_render_name_text(names[i]), *at = kd_render_args_text((kd_call_format)f, args[i]);
            CU_ASSERT_EQUAL(c.v[i].format, (kd_call_format)f);
            CU_ASSERT_STRING_EQUAL(c.v[i].name_text, names[i]);
            CU_ASSERT_TRUE(span_is(text, c.v[i].name, nt));
            CU_ASSERT_TRUE(span_is(text, c.v[i].arguments, at));
            CU_ASSERT_TRUE(c.v[i].json_valid);
            json_t *want = json_loads(args[i], 0, NULL);
            CU_ASSERT_TRUE(c.v[i].args && json_equal(c.v[i].args, want));
            json_decref(want);
            free(nt);
            free(at);
        }
        kd_tool_calls_free(&c);
        free(text);
    }
}

static void test_braces_quotes_in_strings(void) {
    const char *names[] = {"shell.run"};
    const char *args[] = {"{\"command\": \"awk '{print $1}' f.txt | grep \\\"}\\\" && echo {ok}\", \"cwd\": \"/tmp/{x}\"}"};
    roundtrip(names, args, 1);
}

static void test_escaped_unicode(void) {
    const char *names[] = {"translate_text"};
    const char *args[] = {"{\"text\": \"caf\\u00e9 \\ud83d\\ude00 na\\u00efve \\\\u0041\", \"target_language\": \"fr\"}"};
    roundtrip(names, args, 1);
    /* raw UTF-8 too */
    const char *args2[] = {"{\"text\": \"Grüße aus Köln — 東京\", \"target_language\": \"de\"}"};
    roundtrip(names, args2, 1);
}

static void test_nested_objects(void) {
    const char *names[] = {"email.send"};
    const char *args[] = {"{\"to\": [\"a@b.c\", \"d@e.f\"], \"subject\": \"Q3 {draft}\", \"body\": \"see {\\\"name\\\": 1}\", "
                          "\"meta\": {\"deep\": {\"deeper\": [1, {\"name\": \"x\", \"arguments\": {}}]}}}"};
    roundtrip(names, args, 1);
}

static void test_two_and_more_calls(void) {
    const char *names[] = {"get_weather", "get_forecast", "web.search"};
    const char *args[] = {"{\"city\": \"Paris\"}", "{\"city\": \"Lyon\", \"days\": 3}", "{\"query\": \"weather {Paris}\"}"};
    roundtrip(names, args, 3);
}

static void test_schema_and_registry(void) {
    kd_tool_calls c;
    /* one of each: valid, schema error with path, unregistered */
    extract("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 3}}\n</tool_call>\n"
            "<tool_call>\n{\"name\": \"launch_rocket\", \"arguments\": {\"to\": \"moon\"}}\n</tool_call>",
            &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 3);
    CU_ASSERT_TRUE(c.v[0].registered && c.v[0].json_valid && c.v[0].schema_valid);
    CU_ASSERT_PTR_NULL(c.v[0].schema_error);
    CU_ASSERT_TRUE(c.v[1].registered && c.v[1].json_valid && !c.v[1].schema_valid);
    KD_ASSERT_CONTAINS(c.v[1].schema_error, "tool 'get_weather' arguments: $.city: expected string, got integer");
    CU_ASSERT_FALSE(c.v[2].registered);
    CU_ASSERT_TRUE(c.v[2].json_valid);
    CU_ASSERT_FALSE(c.v[2].schema_valid);
    CU_ASSERT_STRING_EQUAL(c.v[2].name_text, "launch_rocket");
    KD_ASSERT_CONTAINS(c.v[2].schema_error, "tool 'launch_rocket' is not registered");
    kd_tool_calls_free(&c);
    /* unregistered in every format: reported, not dropped */
    const char *names[] = {"no.such_tool"};
    const char *args[] = {"{\"x\": 1}"};
    for (int f = 0; f < KD_CALL_FORMAT_COUNT; f++) {
        char *t = kd_render_calls((kd_call_format)f, names, args, 1);
        extract(t, &c);
        CU_ASSERT_EQUAL(c.count, 1);
        if (c.count) CU_ASSERT_FALSE(c.v[0].registered);
        kd_tool_calls_free(&c);
        free(t);
    }
    /* no registry: nothing is registered */
    memset(&c, 0, sizeof c);
    const char *t = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
    CU_ASSERT_EQUAL(kd_extract_tool_calls(t, strlen(t), NULL, &c, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(c.count, 1);
    CU_ASSERT_FALSE(c.v[0].registered);
    kd_tool_calls_free(&c);
}

static void test_cut_off(void) {
    const char *cases[][3] = {
        /* text, name, arguments as far as they go */
        {"Sure. {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par", "get_weather", "{\"city\": \"Par"},
        {"<think>ok</think><tool_call>\n{\"name\": \"web.search\", \"arguments\": {\"query\": \"a {b\"\n</tool_call>", "web.search",
         "{\"query\": \"a {b\""},
        {"{\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"calculator\", \"arguments\": "
         "\"{\\\"expression\\\": \\\"2*",
         "calculator", "{\\\"expression\\\": \\\"2*"},
        {"<|python_tag|>{\"name\": \"calculator\", \"parameters\": {\"expression\": \"1+", "calculator", "{\"expression\": \"1+"},
        {"<functioncall> {\"name\": \"read_file\", \"arguments\": '{\"path\": \"a.txt\"", "read_file", "{\"path\": \"a.txt\""},
    };
    const kd_call_format fmts[] = {KD_CALL_INLINE_JSON, KD_CALL_HERMES, KD_CALL_OPENAI, KD_CALL_LLAMA, KD_CALL_GLAIVE};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_tool_calls c;
        extract(cases[i][0], &c);
        CU_ASSERT_EQUAL(c.count, 1);
        if (c.count != 1) {
            fprintf(stderr, "\n  case %zu: %zu calls\n", i, c.count);
            kd_tool_calls_free(&c);
            continue;
        }
        CU_ASSERT_EQUAL(c.v[0].format, fmts[i]);
        CU_ASSERT_STRING_EQUAL(c.v[0].name_text, cases[i][1]);
        CU_ASSERT_TRUE(span_is(cases[i][0], c.v[0].arguments, cases[i][2]));
        CU_ASSERT_FALSE(c.v[0].json_valid);
        CU_ASSERT_FALSE(c.v[0].schema_valid);
        CU_ASSERT_PTR_NULL(c.v[0].args);
        KD_ASSERT_CONTAINS(c.v[0].schema_error, "arguments are cut off");
        kd_tool_calls_free(&c);
    }
    /* a complete call, then a cut-off one */
    kd_tool_calls c2;
    extract("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"calculator\", \"parameters\": {\"ex", &c2);
    CU_ASSERT_EQUAL_FATAL(c2.count, 2);
    CU_ASSERT_TRUE(c2.v[0].schema_valid);
    CU_ASSERT_FALSE(c2.v[1].json_valid);
    CU_ASSERT_STRING_EQUAL(c2.v[1].name_text, "calculator");
    kd_tool_calls_free(&c2);
    /* invalid (not cut-off) JSON in arguments given as a string */
    kd_tool_calls c;
    extract("<functioncall> {\"name\": \"read_file\", \"arguments\": '{\"path\": a.txt}'}", &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 1);
    CU_ASSERT_FALSE(c.v[0].json_valid);
    KD_ASSERT_CONTAINS(c.v[0].schema_error, "arguments are not valid JSON: ");
    kd_tool_calls_free(&c);
    extract("{\"name\": \"read_file\", \"arguments\": [\"a.txt\"]}", &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 1);
    CU_ASSERT_FALSE(c.v[0].json_valid);
    KD_ASSERT_CONTAINS(c.v[0].schema_error, "arguments are valid JSON but not an object");
    kd_tool_calls_free(&c);
}

static void test_prose_mentions_name(void) {
    const char *texts[] = {
        "The \"name\" field of a tool call says which tool; \"arguments\" holds the rest.",
        "A person record looks like {\"name\": \"Ada\", \"age\": 36}, and {\"arguments\": {\"x\": 1}} has no name.",
        "Write {name: get_weather, arguments: {city: Paris}} without quotes and it is not JSON.",
        "Use { \"name\" } or {\"name\": 3, \"arguments\": {}} -- neither is a call.",
        "<think>I could call {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}} but I will not.</think> It is sunny.",
        "{{{{[[[\"name\"]]]}}}} \"arguments\": {\"name\":",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        kd_tool_calls c;
        extract(texts[i], &c);
        if (c.count) fprintf(stderr, "\n  false call in: %s\n", texts[i]);
        CU_ASSERT_EQUAL(c.count, 0);
        kd_tool_calls_free(&c);
    }
    /* a real call after such prose is still found, once */
    kd_tool_calls c;
    extract("Mentioning {\"name\": \"x\"} and \"arguments\" first. Then {\"name\": \"read_file\", \"arguments\": {\"path\": \"{\\\"name\\\"}\"}}.", &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 1);
    CU_ASSERT_STRING_EQUAL(c.v[0].name_text, "read_file");
    CU_ASSERT_TRUE(c.v[0].schema_valid);
    kd_tool_calls_free(&c);
}

static void test_openai_message_and_sequence(void) {
    /* OpenAI with arguments-first order and an unrelated id, and calls across turns */
    const char *t =
        "[{\"role\": \"assistant\", \"content\": \"Let me check.\", \"tool_calls\": [{\"function\": {\"arguments\": "
        "\"{\\\"city\\\": \\\"Oslo\\\"}\", \"name\": \"get_weather\"}, \"id\": \"c1\", \"type\": \"function\"}]},"
        " {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 3}\"},"
        " {\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"calculator\", \"arguments\": "
        "\"{\\\"expression\\\": \\\"3*9/5+32\\\"}\"}}]}]";
    kd_tool_calls c;
    extract(t, &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 2);
    CU_ASSERT_EQUAL(c.v[0].format, KD_CALL_OPENAI);
    CU_ASSERT_STRING_EQUAL(c.v[0].name_text, "get_weather");
    CU_ASSERT_TRUE(c.v[0].args_is_string && c.v[0].schema_valid);
    CU_ASSERT_STRING_EQUAL(c.v[1].name_text, "calculator");
    CU_ASSERT_TRUE(c.v[1].schema_valid);
    CU_ASSERT_TRUE(c.v[0].call.end <= c.v[1].call.start);
    kd_tool_calls_free(&c);
    /* Llama without the tag, and Hermes with "parameters" keep their own format */
    extract("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 1);
    CU_ASSERT_EQUAL(c.v[0].format, KD_CALL_LLAMA);
    kd_tool_calls_free(&c);
    /* Llama 3.1's custom-tool form, two calls, the second cut off */
    const char *lt = "<function=get_weather>{\"city\": \"Rome {x}\"}</function>\n<function=web.search>{\"query\": \"pizza";
    extract(lt, &c);
    CU_ASSERT_EQUAL_FATAL(c.count, 2);
    CU_ASSERT_EQUAL(c.v[0].format, KD_CALL_LLAMA);
    CU_ASSERT_TRUE(span_is(lt, c.v[0].name, "get_weather"));
    CU_ASSERT_TRUE(span_is(lt, c.v[0].arguments, "{\"city\": \"Rome {x}\"}"));
    CU_ASSERT_TRUE(c.v[0].schema_valid);
    CU_ASSERT_STRING_EQUAL(c.v[1].name_text, "web.search");
    CU_ASSERT_FALSE(c.v[1].json_valid);
    CU_ASSERT_TRUE(span_is(lt, c.v[1].arguments, "{\"query\": \"pizza"));
    kd_tool_calls_free(&c);
    /* not the form: no name, no '>', no object */
    extract("<function=>{\"a\": 1}</function> <function=x {\"b\": 2} <function=y>not json</function>", &c);
    CU_ASSERT_EQUAL(c.count, 0);
    kd_tool_calls_free(&c);
    CU_ASSERT_STRING_EQUAL(kd_call_format_name(KD_CALL_INLINE_JSON), "inline_json");
    CU_ASSERT_STRING_EQUAL(kd_call_format_name(KD_CALL_GLAIVE), "glaive");
}

/* ---- real data ---- */

/* Every BFCL ground-truth answer, rendered in each format (first acceptable value per parameter,
 * optional ""-parameters omitted), comes back with exactly its names and arguments, in order. */
static void test_bfcl_answers_all_formats(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data is absent: BFCL answers not checked");
        return;
    }
    static const char *sets[] = {"simple", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
                                 "live_parallel", "live_parallel_multiple"};
    long answers = 0, calls = 0, bad = 0;
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bfcl/possible_answer/BFCL_v3_%s.json", data, sets[si]);
        FILE *f = fopen(path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
            json_t *rec = json_loads(line, 0, NULL);
            CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
            json_t *gt = json_object_get(rec, "ground_truth");
            size_t n = json_array_size(gt);
            const char **names = calloc(n + 1, sizeof *names);
            char **args = calloc(n + 1, sizeof *args);
            json_t **want = calloc(n + 1, sizeof *want);
            for (size_t i = 0; i < n; i++) {
                json_t *call = json_array_get(gt, i);
                const char *fn = NULL;
                json_t *params = NULL;
                void *it = json_object_iter(call);
                fn = json_object_iter_key(it);
                params = json_object_iter_value(it);
                json_t *a = json_object();
                const char *pn;
                json_t *vals;
                json_object_foreach(params, pn, vals) {
                    json_t *v0 = json_array_get(vals, 0);
                    if (json_is_string(v0) && json_string_length(v0) == 0) continue;
                    json_object_set(a, pn, v0);
                }
                names[i] = fn;
                args[i] = json_dumps(a, 0); /* ", " and ": " separators, as teachers write them */
                want[i] = a;
            }
            answers++;
            for (int fmt = 0; fmt < KD_CALL_FORMAT_COUNT; fmt++) {
                char *text = kd_render_calls((kd_call_format)fmt, names, (const char *const *)args, (int)n);
                kd_tool_calls c;
                memset(&c, 0, sizeof c);
                kd_error e;
                int ok = kd_extract_tool_calls(text, strlen(text), NULL, &c, &e) == KD_OK && c.count == n;
                for (size_t i = 0; ok && i < n; i++) {
                    char *at = kd_render_args_text((kd_call_format)fmt, args[i]);
                    char *nt = kd_render_name_text(names[i]);
                    ok = strcmp(c.v[i].name_text, names[i]) == 0 && c.v[i].json_valid && json_equal(c.v[i].args, want[i]) &&
                         c.v[i].format == (kd_call_format)fmt && c.v[i].arguments.end - c.v[i].arguments.start == strlen(at) &&
                         memcmp(text + c.v[i].arguments.start, at, strlen(at)) == 0 &&
                         c.v[i].name.end - c.v[i].name.start == strlen(nt) && memcmp(text + c.v[i].name.start, nt, strlen(nt)) == 0;
                    free(at);
                    free(nt);
                }
                calls += (long)n;
                if (!ok) {
                    if (bad < 5)
                        fprintf(stderr, "\n  %s %s (%s): got %zu calls of %zu in: %.300s\n", sets[si],
                                json_string_value(json_object_get(rec, "id")), kd_call_format_name(fmt), c.count, n, text);
                    bad++;
                }
                kd_tool_calls_free(&c);
                free(text);
            }
            for (size_t i = 0; i < n; i++) {
                free(args[i]);
                json_decref(want[i]);
            }
            free(names);
            free(args);
            free(want);
            json_decref(rec);
        }
        free(line);
        fclose(f);
    }
    fprintf(stderr, "\n  BFCL: %ld answers x 5 formats, %ld calls, %ld mismatches\n", answers, calls, bad);
    CU_ASSERT_TRUE(answers >= 2000);
    CU_ASSERT_EQUAL(bad, 0);
}

/* glaive: each conversation's function_call turns, written the way glaive's assistant writes them
 * (<functioncall> with the arguments as a '...' literal) between its gpt turns, come back in
 * order; conversations without calls give none. */
static void test_glaive_conversations(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data is absent: glaive conversations not checked");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/glaive/glaive_toolcall_en_demo.json", data);
    json_error_t je;
    json_t *all = json_load_file(path, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    size_t convs = 0, expected = 0, found = 0, bad = 0, raw_bad = 0, raw_schema_valid = 0;
    size_t i;
    json_t *conv;
    json_array_foreach(all, i, conv) {
        kd_registry *reg = NULL;
        json_t *tools = json_loads(json_string_value(json_object_get(conv, "tools")), 0, NULL);
        kd_error e;
        CU_ASSERT_EQUAL(kd_registry_from_json(&reg, tools, "glaive tools", &e), KD_OK);
        kd_rbuf b = {0};
        kd_rbuf_puts(&b, "");
        json_t *want = json_array();
        size_t k;
        json_t *turn;
        json_array_foreach(json_object_get(conv, "conversations"), k, turn) {
            const char *from = json_string_value(json_object_get(turn, "from"));
            const char *val = json_string_value(json_object_get(turn, "value"));
            if (strcmp(from, "gpt") == 0) {
                kd_rbuf_puts(&b, "ASSISTANT: ");
                kd_rbuf_puts(&b, val);
                kd_rbuf_puts(&b, "\n\n");
            } else if (strcmp(from, "function_call") == 0) {
                json_t *fc = json_loads(val, 0, NULL);
                CU_ASSERT_PTR_NOT_NULL_FATAL(fc);
                /* the turn as glaive stores it is itself an inline call */
                kd_tool_calls raw = {0};
                CU_ASSERT_EQUAL(kd_extract_tool_calls(val, strlen(val), reg, &raw, &e), KD_OK);
                if (!(raw.count == 1 && raw.v[0].format == KD_CALL_INLINE_JSON && 1 &&
                      json_equal(raw.v[0].args, json_object_get(fc, "arguments")))) {
                    raw_bad++;
                    fprintf(stderr, "\n  raw function_call not extracted: %s\n", val);
                }
                raw_schema_valid += raw.count == 1 && raw.v[0].schema_valid;
                kd_tool_calls_free(&raw);
                char *a = json_dumps(json_object_get(fc, "arguments"), 0);
                char *at = kd_render_args_text(KD_CALL_GLAIVE, a);
                char *nt = kd_render_name_text(json_string_value(json_object_get(fc, "name")));
                kd_rbuf_puts(&b, "ASSISTANT: <functioncall> {\"name\": \"");
                kd_rbuf_puts(&b, nt);
                kd_rbuf_puts(&b, "\", \"arguments\": '");
                kd_rbuf_puts(&b, at);
                kd_rbuf_puts(&b, "'} <|endoftext|>\n\n");
                json_array_append(want, fc);
                json_decref(fc);
                free(a);
                free(at);
                free(nt);
            } else if (strcmp(from, "observation") == 0) {
                kd_rbuf_puts(&b, "FUNCTION RESPONSE: ");
                kd_rbuf_puts(&b, val);
                kd_rbuf_puts(&b, "\n\n");
            }
        }
        /* the observations are tool output, not the teacher's: extract from the assistant's turns only,
         * as the generation job does; here the whole transcript is checked to hold no extra call */
        kd_tool_calls c;
        memset(&c, 0, sizeof c);
        CU_ASSERT_EQUAL(kd_extract_tool_calls(b.s, b.n, reg, &c, &e), KD_OK);
        size_t nw = json_array_size(want);
        int ok = c.count == nw;
        for (size_t q = 0; ok && q < nw; q++) {
            json_t *w = json_array_get(want, q);
            ok = strcmp(c.v[q].name_text, json_string_value(json_object_get(w, "name"))) == 0 && c.v[q].json_valid &&
                 json_equal(c.v[q].args, json_object_get(w, "arguments")) && c.v[q].format == KD_CALL_GLAIVE && c.v[q].registered;
        }
        if (!ok && bad++ < 3) fprintf(stderr, "\n  glaive conversation %zu: %zu calls, want %zu\n%.600s\n", i, c.count, nw, b.s);
        convs++;
        expected += nw;
        found += c.count;
        kd_tool_calls_free(&c);
        json_decref(want);
        json_decref(tools);
        kd_registry_close(reg);
        free(b.s);
    }
    json_decref(all);
    fprintf(stderr, "\n  glaive: %zu conversations, %zu function_call turns, %zu extracted, %zu conversations wrong\n", convs,
            expected, found, bad);
    fprintf(stderr, "  glaive raw function_call values: %zu not extracted, %zu of %zu valid against their tools' schemas\n", raw_bad,
            raw_schema_valid, expected);
    CU_ASSERT_EQUAL(convs, 300);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(raw_bad, 0);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("extract", suite_init, suite_clean);
    CU_add_test(s, "braces and quotes inside strings, every format", test_braces_quotes_in_strings);
    CU_add_test(s, "escaped unicode and raw UTF-8, every format", test_escaped_unicode);
    CU_add_test(s, "nested argument objects, every format", test_nested_objects);
    CU_add_test(s, "two and more calls in order, every format", test_two_and_more_calls);
    CU_add_test(s, "registry and schema checks, unregistered names reported", test_schema_and_registry);
    CU_add_test(s, "cut-off JSON in every format", test_cut_off);
    CU_add_test(s, "prose that mentions \"name\" is not a call", test_prose_mentions_name);
    CU_add_test(s, "OpenAI message objects, calls across turns", test_openai_message_and_sequence);
    CU_add_test(s, "BFCL ground truth rendered in 5 formats", test_bfcl_answers_all_formats);
    CU_add_test(s, "glaive: 300 conversations' function_call turns", test_glaive_conversations);
    return kd_test_main();
}
