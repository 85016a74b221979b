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
    CU_add_test(s, "errors", test_errors);
    return kd_test_main();
}
