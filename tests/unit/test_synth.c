/* CUnit suite: the prompt synthesizer (src/data/synth.c) over configs/tools.json and over BFCL's
 * function lists (schemas nobody on this project wrote). */
#include <stdlib.h>
#include <string.h>

#include "kdstep/registry.h"
#include "kdstep/synth.h"
#include "testutil.h"

static kd_registry *shipped(void) {
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_registry_open(&r, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_registry_load_file(r, kd_test_src("configs/tools.json"), &e), KD_OK);
    return r;
}

static char *write_mem(const kd_registry *r, uint64_t seed, int64_t n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kd_error e;
    CU_ASSERT_EQUAL(kd_synth_write(r, seed, n, f, &e), KD_OK);
    fclose(f);
    return buf;
}

static void test_deterministic(void) {
    kd_registry *r = shipped();
    char *a = write_mem(r, 42, 300), *b = write_mem(r, 42, 300), *c = write_mem(r, 43, 300), *d = write_mem(r, 42, 100);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_STRING_NOT_EQUAL(a, c);
    /* a smaller set with the same seed is a prefix */
    CU_ASSERT_EQUAL(strncmp(a, d, strlen(d)), 0);
    free(a);
    free(b);
    free(c);
    free(d);
    kd_registry_close(r);
}

/* 1 when the value's text appears in the prompt (strings as they are, numbers as printed). */
static int appears(const char *prompt, const json_t *v) {
    char buf[64];
    if (json_is_string(v)) return strstr(prompt, json_string_value(v)) != NULL;
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return strstr(prompt, buf) != NULL;
    }
    if (json_is_real(v)) {
        snprintf(buf, sizeof buf, "%g", json_real_value(v));
        return strstr(prompt, buf) != NULL;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (!appears(prompt, x)) return 0;
        return 1;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!appears(prompt, x)) return 0;
        return 1;
    }
    return 1; /* booleans are phrased, not quoted */
}

/* Check n records: schema-valid calls, verbatim values; returns counts of 0/1/2-call records. */
static void check_set(const kd_registry *r, uint64_t seed, int64_t n, int64_t counts[3], int64_t *distinct,
                      int *tool_used, long *not_verbatim) {
    kd_error e;
    char **prompts = calloc((size_t)n, sizeof(char *));
    *not_verbatim = 0;
    for (int64_t i = 0; i < n; i++) {
        json_t *rec;
        int rc = kd_synth_record(r, seed, i, &rec, &e);
        if (rc) fprintf(stderr, "\n  record %lld: %s\n", (long long)i, e.msg);
        CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        CU_ASSERT_PTR_NOT_NULL_FATAL(prompt);
        CU_ASSERT_TRUE(strlen(prompt) > 10);
        prompts[i] = strdup(prompt);
        char want[64];
        snprintf(want, sizeof want, "synth-%llu-%lld", (unsigned long long)seed, (long long)i);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "id")), want);
        json_t *calls = json_object_get(json_object_get(rec, "metadata"), "tool_calls");
        CU_ASSERT_TRUE_FATAL(json_is_array(calls));
        size_t nc = json_array_size(calls);
        CU_ASSERT_TRUE(nc <= 2);
        if (nc <= 2) counts[nc]++;
        size_t k;
        json_t *call;
        json_array_foreach(calls, k, call) {
            const kd_tool *t = kd_registry_find(r, json_string_value(json_object_get(call, "name")));
            CU_ASSERT_PTR_NOT_NULL_FATAL(t);
            tool_used[t - r->tools]++;
            json_t *args = json_object_get(call, "arguments");
            int vrc = kd_registry_validate(t, args, &e);
            if (vrc) fprintf(stderr, "\n  %s: %s\n", t->name, e.msg);
            CU_ASSERT_EQUAL(vrc, KD_OK);
            if (!appears(prompt, args)) {
                if ((*not_verbatim)++ < 3) {
                    char *s = json_dumps(args, JSON_COMPACT);
                    fprintf(stderr, "\n  not verbatim: %s | %s\n", prompt, s);
                    free(s);
                }
            }
        }
        if (nc == 2)
            CU_ASSERT_STRING_NOT_EQUAL(json_string_value(json_object_get(json_array_get(calls, 0), "name")),
                                       json_string_value(json_object_get(json_array_get(calls, 1), "name")));
        json_decref(rec);
    }
    *distinct = 0;
    for (int64_t i = 0; i < n; i++) {
        int dup = 0;
        for (int64_t j = 0; j < i && !dup; j++) dup = strcmp(prompts[i], prompts[j]) == 0;
        if (!dup) (*distinct)++;
    }
    for (int64_t i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
}

static void test_shipped_registry(void) {
    kd_registry *r = shipped();
    const int64_t N = 2000;
    int64_t counts[3] = {0, 0, 0}, distinct = 0;
    int used[64] = {0};
    long not_verbatim = 0;
    check_set(r, 7, N, counts, &distinct, used, &not_verbatim);
    fprintf(stderr, "\n  %lld prompts: %lld no-tool, %lld one, %lld two; %lld distinct\n", (long long)N,
            (long long)counts[0], (long long)counts[1], (long long)counts[2], (long long)distinct);
    CU_ASSERT_TRUE(counts[0] >= N * 7 / 100 && counts[0] <= N * 13 / 100);
    CU_ASSERT_TRUE(counts[2] >= N * 7 / 100 && counts[2] <= N * 13 / 100);
    CU_ASSERT_TRUE(distinct >= N * 95 / 100);
    CU_ASSERT_EQUAL(not_verbatim, 0);
    for (int t = 0; t < r->count; t++) CU_ASSERT_TRUE(used[t] >= 20);
    kd_registry_close(r);
}

/* Schemas from BFCL (nested dicts, arrays, enums, floats, BFCL type names) through the generic
 * phrasing: every call validates and its values are in the prompt. */
static void test_bfcl_registry(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data absent: BFCL schemas not used");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/bfcl/BFCL_v3_multiple.json", data);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_registry_open(&r, &e), KD_OK);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        size_t i;
        json_t *fn;
        json_array_foreach(json_object_get(rec, "function"), i, fn) {
            if (kd_registry_find(r, json_string_value(json_object_get(fn, "name")))) continue;
            json_t *one = json_pack("[O]", fn);
            kd_registry_load_json(r, one, "bfcl", &e);
            json_decref(one);
        }
        json_decref(rec);
    }
    free(line);
    fclose(f);
    CU_ASSERT_TRUE(r->count > 300);
    int64_t counts[3] = {0, 0, 0}, distinct = 0;
    int *used = calloc((size_t)r->count, sizeof(int));
    long not_verbatim = 0;
    check_set(r, 3, 600, counts, &distinct, used, &not_verbatim);
    fprintf(stderr, "\n  BFCL registry of %d tools: 600 prompts, %lld distinct, %ld with a value not verbatim\n",
            r->count, (long long)distinct, not_verbatim);
    CU_ASSERT_EQUAL(not_verbatim, 0);
    free(used);
    kd_registry_close(r);
}

static kd_registry *pool(const char *rel) {
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_registry_open(&r, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_registry_load_file(r, kd_test_src(rel), &e), KD_OK);
    return r;
}

/* Every tool of the shipped pool: the generator's arguments are valid by the registry's checker,
 * for many draws each (types, enums, required, nested objects, arrays, bounds). */
static void test_pool_every_tool_valid(void) {
    kd_registry *r = pool("configs/tool_pool.json");
    CU_ASSERT_TRUE(r->count >= 300);
    long bad = 0, calls = 0, nested = 0;
    for (int t = 0; t < r->count; t++) {
        uint64_t rng = 0x1234u + (uint64_t)t;
        for (int k = 0; k < 25; k++) {
            json_t *args = kd_synth_gen_args(&r->tools[t], &rng);
            kd_error e;
            calls++;
            if (kd_registry_validate(&r->tools[t], args, &e) != KD_OK) {
                if (bad++ < 5) fprintf(stderr, "\n  %s: %s", r->tools[t].name, e.msg);
            }
            const char *key;
            json_t *v;
            json_object_foreach(args, key, v) nested += json_is_object(v) || json_is_array(v);
            json_decref(args);
        }
    }
    fprintf(stderr, "\n  %d tools, %ld calls, %ld nested values, %ld invalid\n", r->count, calls, nested, bad);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(nested > 0);
    kd_registry_close(r);
}

/* --tools-per-prompt: each record carries its own tools (MIN..MAX, the needed ones among them),
 * categories in the documented shares, every gold call valid against the record's own tools,
 * unfit prompts offer no tool of the requested one's family, same seed -> same bytes. */
static void test_pool_records(void) {
    kd_registry *r = pool("configs/tool_pool.train.json");
    kd_synth_options o = {3, 5, 0};
    const int64_t N = 1500;
    long cat[4] = {0, 0, 0, 0}, bad = 0, size_bad = 0, missing = 0, value_not_in_prompt = 0, values = 0;
    static const char *cats[] = {"call", "two_calls", "no_call_chat", "no_call_unfit"};
    for (int64_t i = 0; i < N; i++) {
        json_t *rec = NULL;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_synth_record_opts(r, &o, 9, i, &rec, &e), KD_OK);
        json_t *tools = json_object_get(rec, "tools"), *calls = json_object_get(json_object_get(rec, "metadata"), "tool_calls");
        const char *c = json_string_value(json_object_get(json_object_get(rec, "metadata"), "category"));
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        for (int k = 0; k < 4; k++) cat[k] += c && !strcmp(c, cats[k]);
        size_bad += json_array_size(tools) < 3 || json_array_size(tools) > 5;
        kd_registry *own = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&own, tools, "record", &e), KD_OK);
        size_t j;
        json_t *call;
        json_array_foreach(calls, j, call) {
            const kd_tool *t = kd_registry_find(own, json_string_value(json_object_get(call, "name")));
            if (!t) {
                missing++;
                continue;
            }
            if (kd_registry_validate(t, json_object_get(call, "arguments"), &e) != KD_OK) bad++;
            const char *key;
            json_t *v;
            json_object_foreach(json_object_get(call, "arguments"), key, v) {
                if (!json_is_string(v)) continue;
                values++;
                value_not_in_prompt += strstr(prompt, json_string_value(v)) == NULL;
            }
        }
        if (c && (!strcmp(c, "no_call_unfit") || !strcmp(c, "no_call_chat"))) CU_ASSERT_EQUAL(json_array_size(calls), 0);
        if (c && !strcmp(c, "two_calls")) CU_ASSERT_EQUAL(json_array_size(calls), 2);
        kd_registry_close(own);
        json_decref(rec);
    }
    fprintf(stderr, "\n  %lld records: %ld call, %ld two, %ld chat, %ld unfit; %ld string values, %ld not verbatim\n",
            (long long)N, cat[0], cat[1], cat[2], cat[3], values, value_not_in_prompt);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(size_bad, 0);
    CU_ASSERT_EQUAL(value_not_in_prompt, 0);
    CU_ASSERT_TRUE(cat[2] >= N * 7 / 100 && cat[2] <= N * 13 / 100);
    CU_ASSERT_TRUE(cat[3] >= N * 7 / 100 && cat[3] <= N * 13 / 100);
    CU_ASSERT_TRUE(cat[1] >= N * 7 / 100 && cat[1] <= N * 13 / 100);
    /* determinism */
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    FILE *fa = open_memstream(&a, &la), *fb = open_memstream(&b, &lb);
    kd_error e;
    CU_ASSERT_EQUAL(kd_synth_write_opts(r, &o, 5, 50, fa, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_synth_write_opts(r, &o, 5, 50, fb, &e), KD_OK);
    fclose(fa);
    fclose(fb);
    CU_ASSERT_TRUE(la == lb && la > 0 && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    kd_synth_options badopt = {4, 2, 0};
    CU_ASSERT_EQUAL(kd_synth_write_opts(r, &badopt, 5, 1, stderr, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "--tools-per-prompt 4-2");
    kd_registry_close(r);
}

/* --rename-tools: in about PCT% of the records every tool has a made-up name, unique in the record
 * and not a pool name; the calls name the record's own tools and stay valid; descriptions and
 * schemas are the pool's; every other record is byte-identical to the one made without renaming. */
static void test_pool_rename(void) {
    kd_registry *r = pool("configs/tool_pool.train.json");
    kd_synth_options plain = {2, 4, 0}, ren = {2, 4, 50};
    const int64_t N = 600;
    long renamed = 0, bad = 0;
    for (int64_t i = 0; i < N; i++) {
        json_t *a = NULL, *b = NULL;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_synth_record_opts(r, &plain, 4, i, &a, &e), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_synth_record_opts(r, &ren, 4, i, &b, &e), KD_OK);
        char *sa = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(17)), *sb = json_dumps(b, JSON_COMPACT | JSON_REAL_PRECISION(17));
        if (strcmp(sa, sb) != 0) {
            renamed++;
            json_t *ta = json_object_get(a, "tools"), *tb = json_object_get(b, "tools");
            CU_ASSERT_EQUAL(json_array_size(ta), json_array_size(tb));
            for (size_t k = 0; k < json_array_size(tb); k++) {
                json_t *fa = json_object_get(json_array_get(ta, k), "function"), *fb = json_object_get(json_array_get(tb, k), "function");
                const char *nb = json_string_value(json_object_get(fb, "name"));
                bad += kd_registry_find(r, nb) != NULL; /* a made-up name is no pool name */
                for (size_t m = 0; m < k; m++)
                    bad += !strcmp(nb, json_string_value(json_object_get(json_object_get(json_array_get(tb, m), "function"), "name")));
                bad += !json_equal(json_object_get(fa, "description"), json_object_get(fb, "description"));
                bad += !json_equal(json_object_get(fa, "parameters"), json_object_get(fb, "parameters"));
            }
            kd_registry *own = NULL;
            CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&own, tb, "record", &e), KD_OK);
            json_t *calls = json_object_get(json_object_get(b, "metadata"), "tool_calls"), *call;
            size_t j;
            json_array_foreach(calls, j, call) {
                const kd_tool *t = kd_registry_find(own, json_string_value(json_object_get(call, "name")));
                if (!t || kd_registry_validate(t, json_object_get(call, "arguments"), &e) != KD_OK) bad++;
            }
            kd_registry_close(own);
        }
        free(sa);
        free(sb);
        json_decref(a);
        json_decref(b);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(renamed >= N * 40 / 100 && renamed <= N * 60 / 100);
    kd_synth_options over = {2, 4, 101};
    kd_error e;
    CU_ASSERT_EQUAL(kd_synth_write_opts(r, &over, 5, 1, stderr, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "--rename-tools 101");
    kd_registry_close(r);
}

static void test_errors(void) {
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_registry_open(&r, &e), KD_OK);
    json_t *rec;
    CU_ASSERT_EQUAL(kd_synth_record(r, 1, 0, &rec, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "prompts synth: the registry has no tools");
    /* a schema the generator cannot satisfy is refused by name, never written */
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"odd\",\"description\":\"Odd.\","
                               "\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\","
                               "\"minimum\":5,\"maximum\":1}},\"required\":[\"n\"]}}}]",
                               0, NULL);
    CU_ASSERT_EQUAL(kd_registry_load_json(r, tools, "test", &e), KD_OK);
    json_decref(tools);
    int rc = KD_OK;
    for (int64_t i = 0; i < 20 && rc == KD_OK; i++) {
        rc = kd_synth_record(r, 1, i, &rec, &e);
        if (rc == KD_OK) json_decref(rec);
    }
    CU_ASSERT_EQUAL(rc, KD_ERR_UNSUPPORTED);
    KD_ASSERT_CONTAINS(e.msg, "prompts synth: cannot make valid arguments for tool 'odd'");
    kd_registry_close(r);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("synth", NULL, NULL);
    CU_add_test(s, "deterministic per seed, prefix-stable", test_deterministic);
    CU_add_test(s, "shipped registry: proportions, schema-valid, verbatim values, variety", test_shipped_registry);
    CU_add_test(s, "BFCL schemas through the generic phrasing", test_bfcl_registry);
    CU_add_test(s, "pool: every tool's arguments schema-valid", test_pool_every_tool_valid);
    CU_add_test(s, "pool: per-prompt tools, categories, gold valid", test_pool_records);
    CU_add_test(s, "pool: made-up names (--rename-tools), the rest unchanged", test_pool_rename);
    CU_add_test(s, "errors", test_errors);
    return kd_test_main();
}
