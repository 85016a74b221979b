/* CUnit suite: tool registry and JSON-Schema argument checks (src/tools/registry.c). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/registry.h"
#include "testutil.h"

static kd_registry *load_shipped(void) {
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_registry_open(&r, &e), KD_OK);
    int rc = kd_registry_load_file(r, kd_test_src("configs/tools.json"), &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL(rc, KD_OK);
    return r;
}

static void test_shipped_registry(void) {
    kd_registry *r = load_shipped();
    CU_ASSERT_TRUE(r->count >= 12);
    const char *must[] = {"read_file", "file.write", "web.search", "calculator", "calendar.create_event", "get_weather",
                          "shell.run", "email.send"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) CU_ASSERT_PTR_NOT_NULL(kd_registry_find(r, must[i]));
    CU_ASSERT_PTR_NULL(kd_registry_find(r, "web"));
    CU_ASSERT_PTR_NULL(kd_registry_find(r, "read_file "));
    CU_ASSERT_PTR_NOT_NULL(kd_registry_find_n(r, "web.search(", 10));
    CU_ASSERT_EQUAL(strlen(r->sha256), 64);
    /* every tool has a description and an object schema with documented properties */
    for (int i = 0; i < r->count; i++) {
        CU_ASSERT_TRUE(strlen(r->tools[i].description) > 10);
        json_t *props = json_object_get(r->tools[i].parameters, "properties");
        CU_ASSERT_TRUE(json_object_size(props) >= 1);
    }
    kd_registry_close(r);
}

static void expect_invalid(kd_registry *r, const char *tool, const char *args, const char *msg) {
    kd_error e;
    json_t *a = json_loads(args, JSON_DECODE_ANY, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    const kd_tool *t = kd_registry_find(r, tool);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(kd_registry_validate(t, a, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, msg);
    json_decref(a);
}

static void expect_valid(kd_registry *r, const char *tool, const char *args) {
    kd_error e;
    json_t *a = json_loads(args, JSON_DECODE_ANY, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    int rc = kd_registry_validate(kd_registry_find(r, tool), a, &e);
    if (rc) fprintf(stderr, "\n  unexpected: %s\n", e.msg);
    CU_ASSERT_EQUAL(rc, KD_OK);
    json_decref(a);
}

static void test_validation(void) {
    kd_registry *r = load_shipped();
    expect_valid(r, "read_file", "{\"path\": \"config.json\"}");
    expect_valid(r, "get_weather", "{\"city\": \"Paris\", \"units\": \"celsius\"}");
    expect_valid(r, "calendar.create_event", "{\"title\": \"Sync\", \"date\": \"2026-12-01\", \"start_time\": \"09:30\", \"attendees\": [\"a@b.c\"]}");
    expect_valid(r, "convert_units", "{\"value\": 3, \"from_unit\": \"km\", \"to_unit\": \"mi\"}");
    expect_valid(r, "web.search", "{\"query\": \"x\", \"num_results\": 5.0}");
    expect_invalid(r, "read_file", "{}", "tool 'read_file' arguments: $: missing required property 'path'");
    expect_invalid(r, "read_file", "{\"path\": 3}", "$.path: expected string, got integer");
    expect_invalid(r, "read_file", "{\"path\": \"a\", \"mode\": \"r\"}", "$.mode: property 'mode' is not allowed (additionalProperties is false)");
    expect_invalid(r, "get_weather", "{\"city\": \"Paris\", \"units\": \"kelvin\"}", "$.units: value \"kelvin\" is not one of [\"celsius\",\"fahrenheit\"]");
    expect_invalid(r, "email.send", "{\"to\": [\"a@b.c\", 7], \"subject\": \"s\", \"body\": \"b\"}", "$.to[1]: expected string, got integer");
    expect_invalid(r, "email.send", "{\"to\": [], \"subject\": \"s\", \"body\": \"b\"}", "$.to: has 0 items, fewer than minItems 1");
    expect_invalid(r, "web.search", "{\"query\": \"x\", \"num_results\": 500}", "$.num_results: 500 is above the maximum 50");
    expect_invalid(r, "web.search", "{\"query\": \"x\", \"num_results\": 2.5}", "$.num_results: expected integer, got number");
    expect_invalid(r, "read_file", "[\"config.json\"]", "$: expected object, got array");
    kd_registry_close(r);
}

static void test_nested_and_bfcl_types(void) {
    const char *fns =
        "[{\"name\": \"hotel.book\", \"description\": \"Book\", \"parameters\": {\"type\": \"dict\", \"required\": [\"guest\", \"nights\"],"
        " \"properties\": {\"guest\": {\"type\": \"dict\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\"}},"
        " \"required\": [\"name\"], \"additionalProperties\": false},"
        " \"nights\": {\"type\": \"integer\"}, \"budget\": {\"type\": \"float\"}, \"dates\": {\"type\": \"tuple\", \"items\": {\"type\": \"string\"}},"
        " \"extra\": {\"type\": \"any\"}, \"rooms\": {\"type\": \"array\", \"items\": {\"type\": \"dict\", \"properties\": {\"beds\": {\"type\": \"integer\"}}}}}}}]";
    json_t *j = json_loads(fns, 0, NULL);
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&r, j, "inline", &e), KD_OK);
    const kd_tool *t = kd_registry_find(r, "hotel.book");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(t->parameters, "type")), "object");
    expect_valid(r, "hotel.book", "{\"guest\": {\"name\": \"Ann\"}, \"nights\": 2, \"budget\": 120, \"dates\": [\"a\", \"b\"], \"extra\": [1, {}]}");
    expect_invalid(r, "hotel.book", "{\"guest\": {\"name\": \"Ann\", \"age\": \"x\"}, \"nights\": 2}", "$.guest.age: expected integer, got string");
    expect_invalid(r, "hotel.book", "{\"guest\": {\"nam\": \"Ann\"}, \"nights\": 2}", "$.guest: missing required property 'name'");
    expect_invalid(r, "hotel.book", "{\"guest\": {\"name\": \"A\"}, \"nights\": 2, \"rooms\": [{\"beds\": 1}, {\"beds\": \"two\"}]}", "$.rooms[1].beds: expected integer, got string");
    expect_invalid(r, "hotel.book", "{\"guest\": {\"name\": \"A\"}, \"nights\": 2, \"budget\": \"cheap\"}", "$.budget: expected number, got string");
    kd_registry_close(r);
    json_decref(j);
}

static void test_load_errors(void) {
    kd_registry *r = NULL;
    kd_error e;
    kd_registry_open(&r, &e);
    const char *p = kd_test_write("dup.json", "[{\"name\": \"a\", \"parameters\": {\"type\": \"object\"}}, {\"name\": \"a\"}]");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "dup.json: tool [1]: duplicate tool name 'a'");
    kd_registry_close(r);

    kd_registry_open(&r, &e);
    p = kd_test_write("broken.json", "[{\"name\": \"a\",\n \"parameters\": {\"type\": }}]");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "broken.json:2:");
    KD_ASSERT_CONTAINS(e.msg, "invalid JSON");
    p = kd_test_write("noname.json", "[{\"type\": \"function\", \"function\": {\"description\": \"x\"}}]");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "noname.json: tool [0]: missing string \"name\"");
    p = kd_test_write("badparams.json", "[{\"name\": \"x\", \"parameters\": {\"type\": \"string\"}}]");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "badparams.json: tool [0]: tool 'x': parameters must have type \"object\"");
    p = kd_test_write("badreq.json", "[{\"name\": \"x\", \"parameters\": {\"type\": \"object\", \"required\": \"a\"}}]");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "\"required\" must be an array of names");
    p = kd_test_write("notarray.json", "{\"name\": \"x\"}");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "notarray.json: expected a JSON array of tools");
    p = kd_test_write("retrieval.json", "[{\"type\": \"retrieval\", \"function\": {\"name\": \"x\"}}]");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, p, &e), KD_ERR_UNSUPPORTED);
    KD_ASSERT_CONTAINS(e.msg, "only tools of type \"function\" are supported");
    CU_ASSERT_EQUAL(kd_registry_load_file(r, "/nonexistent/tools.json", &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "/nonexistent/tools.json");
    kd_registry_close(r);
}

/* Every BFCL question file: each line's `function` list loads as a per-prompt registry, and each
 * ground-truth call in possible_answer names a tool of that registry. */
static void test_bfcl_files(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data is absent; BFCL registry loading not checked");
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bfcl", data);
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    int files = 0;
    long lines = 0, tools = 0;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "BFCL_v3_", 8) != 0) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        char *line = NULL;
        size_t cap = 0;
        long ln = 0;
        while (getline(&line, &cap, f) > 0) {
            ln++;
            json_error_t je;
            json_t *rec = json_loads(line, 0, &je);
            CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
            kd_registry *r = NULL;
            kd_error e;
            char src[9000];
            snprintf(src, sizeof src, "%s:%ld: function", path, ln);
            int rc = kd_registry_from_json(&r, json_object_get(rec, "function"), src, &e);
            if (rc) fprintf(stderr, "\n  %s\n", e.msg);
            CU_ASSERT_EQUAL(rc, KD_OK);
            if (r) {
                tools += r->count;
                for (int i = 0; i < r->count; i++) {
                    /* normalized: no BFCL type names remain at the top */
                    const char *ty = json_string_value(json_object_get(r->tools[i].parameters, "type"));
                    CU_ASSERT_TRUE(ty == NULL || strcmp(ty, "object") == 0);
                }
            }
            kd_registry_close(r);
            json_decref(rec);
            lines++;
        }
        free(line);
        fclose(f);
        files++;
    }
    closedir(d);
    fprintf(stderr, "\n  BFCL: %d files, %ld prompts, %ld tools loaded\n", files, lines, tools);
    CU_ASSERT_EQUAL(files, 10);
    CU_ASSERT_TRUE(lines >= 3400);
}

/* Gold BFCL answers validate against their prompt's own schema (types mapped from BFCL's names). */
static void test_bfcl_gold_args_validate(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data is absent; BFCL gold validation not checked");
        return;
    }
    const char *sets[] = {"simple", "multiple", "parallel", "parallel_multiple", "live_simple"};
    long checked = 0, valid = 0, missing = 0;
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        char qp[4096], ap[4096];
        snprintf(qp, sizeof qp, "%s/bfcl/BFCL_v3_%s.json", data, sets[s]);
        snprintf(ap, sizeof ap, "%s/bfcl/possible_answer/BFCL_v3_%s.json", data, sets[s]);
        FILE *fq = fopen(qp, "r"), *fa = fopen(ap, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(fq);
        CU_ASSERT_PTR_NOT_NULL_FATAL(fa);
        char *lq = NULL, *la = NULL;
        size_t cq = 0, ca = 0;
        while (getline(&lq, &cq, fq) > 0 && getline(&la, &ca, fa) > 0) {
            json_t *q = json_loads(lq, 0, NULL), *a = json_loads(la, 0, NULL);
            kd_registry *r = NULL;
            kd_error e;
            CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&r, json_object_get(q, "function"), qp, &e), KD_OK);
            size_t i;
            json_t *call;
            json_array_foreach(json_object_get(a, "ground_truth"), i, call) {
                const char *fn;
                json_t *params;
                json_object_foreach(call, fn, params) {
                    const kd_tool *t = kd_registry_find(r, fn);
                    if (!t) { /* BFCL's own data has one such slip: simple_363 answers find_closest */
                        missing++;
                        continue;
                    }
                    /* build one concrete call: the first acceptable value of each parameter,
                     * skipping those that may be omitted ("" first) */
                    json_t *args = json_object();
                    const char *pn;
                    json_t *vals;
                    json_object_foreach(params, pn, vals) {
                        json_t *v0 = json_array_get(vals, 0);
                        if (json_is_string(v0) && json_string_length(v0) == 0) continue;
                        json_object_set(args, pn, v0);
                    }
                    checked++;
                    if (kd_registry_validate(t, args, &e) == KD_OK) valid++;
                    json_decref(args);
                }
            }
            kd_registry_close(r);
            json_decref(q);
            json_decref(a);
        }
        free(lq);
        free(la);
        fclose(fq);
        fclose(fa);
    }
    fprintf(stderr, "\n  BFCL gold calls: %ld checked, %ld valid against their schema\n", checked, valid);
    CU_ASSERT_TRUE(checked > 1000);
    CU_ASSERT_TRUE(missing <= 1);
    /* BFCL's own gold is not perfectly schema-clean (int for float is allowed, "any" etc.); demand 97% */
    CU_ASSERT_TRUE(valid * 100 >= checked * 97);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("registry", NULL, NULL);
    CU_add_test(s, "configs/tools.json loads, names with dots", test_shipped_registry);
    CU_add_test(s, "schema validation with JSON paths", test_validation);
    CU_add_test(s, "nested objects, arrays and BFCL type names", test_nested_and_bfcl_types);
    CU_add_test(s, "load errors name file and entry", test_load_errors);
    CU_add_test(s, "every BFCL question file loads", test_bfcl_files);
    CU_add_test(s, "BFCL gold arguments validate", test_bfcl_gold_args_validate);
    return kd_test_main();
}
