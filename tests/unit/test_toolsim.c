/* CUnit suite: the tool simulator (src/teacher/toolsim.c). */
#include <stdlib.h>
#include <string.h>

#include "kdstep/registry.h"
#include "kdstep/toolsim.h"
#include "testutil.h"

static kd_registry *g_reg;

static json_t *run(const kd_toolsim *s, const char *name, const char *args) {
    json_t *r = NULL;
    kd_error e;
    int rc = kd_toolsim_run(s, name, args, &r, &e);
    if (rc) fprintf(stderr, "\n  %s\n", e.msg);
    CU_ASSERT_EQUAL(rc, KD_OK);
    return r;
}

static void test_kinds(void) {
    kd_toolsim *s;
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_open(&s, g_reg, NULL, NULL), KD_OK);
    json_t *r = run(s, "read_file", "{\"path\": \"config.json\"}");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "path")), "config.json");
    const char *content = json_string_value(json_object_get(r, "content"));
    json_t *inner = json_loads(content, 0, NULL); /* a .json file reads as JSON */
    CU_ASSERT_PTR_NOT_NULL(inner);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "bytes")), (json_int_t)strlen(content));
    json_decref(inner);
    json_decref(r);
    r = run(s, "read_file", "{\"path\": \"notes/todo.txt\"}");
    KD_ASSERT_CONTAINS(json_string_value(json_object_get(r, "content")), "notes/todo.txt");
    json_decref(r);
    r = run(s, "web.search", "{\"query\": \"hdf5 chunking\", \"num_results\": 4}");
    json_t *res = json_object_get(r, "results");
    CU_ASSERT_EQUAL(json_array_size(res), 4);
    KD_ASSERT_CONTAINS(json_string_value(json_object_get(json_array_get(res, 0), "title")), "hdf5 chunking");
    KD_ASSERT_CONTAINS(json_string_value(json_object_get(json_array_get(res, 2), "url")), "https://");
    json_decref(r);
    r = run(s, "get_weather", "{\"city\": \"Oslo\"}");
    CU_ASSERT_TRUE(json_is_number(json_object_get(r, "temperature")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "units")), "celsius");
    double c = json_number_value(json_object_get(r, "temperature"));
    json_decref(r);
    r = run(s, "get_weather", "{\"city\": \"Oslo\", \"units\": \"fahrenheit\"}");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "units")), "fahrenheit");
    CU_ASSERT_TRUE(json_number_value(json_object_get(r, "temperature")) > -60 && json_number_value(json_object_get(r, "temperature")) < 160);
    (void)c;
    json_decref(r);
    r = run(s, "get_forecast", "{\"city\": \"Lima\", \"days\": 5}");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r, "days")), 5);
    json_t *d0 = json_array_get(json_object_get(r, "days"), 0);
    CU_ASSERT_TRUE(json_number_value(json_object_get(d0, "high")) >= json_number_value(json_object_get(d0, "low")));
    json_decref(r);
    /* generic: built from the schema and the arguments */
    r = run(s, "calculator", "{\"expression\": \"2+2\"}");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "tool")), "calculator");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "expression")), "2+2");
    CU_ASSERT_TRUE(json_is_number(json_object_get(r, "result")));
    json_decref(r);
    kd_toolsim_close(s);
}

static void test_deterministic(void) {
    kd_toolsim *a, *b;
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_open(&a, g_reg, NULL, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_open(&b, g_reg, "", NULL), KD_OK);
    const char *calls[][2] = {{"get_weather", "{\"city\": \"Paris\"}"}, {"web.search", "{\"query\": \"x\"}"},
                              {"stock.get_price", "{\"symbol\": \"NVDA\"}"}, {"shell.run", "{\"command\": \"ls\"}"}};
    for (int i = 0; i < 4; i++) {
        char *x, *y, *z;
        CU_ASSERT_EQUAL(kd_toolsim_run_text(a, calls[i][0], calls[i][1], &x, NULL), KD_OK);
        CU_ASSERT_EQUAL(kd_toolsim_run_text(b, calls[i][0], calls[i][1], &y, NULL), KD_OK);
        CU_ASSERT_STRING_EQUAL(x, y);
        /* key order in the arguments does not matter; their values do */
        CU_ASSERT_EQUAL(kd_toolsim_run_text(a, "get_weather", "{\"city\": \"Rome\"}", &z, NULL), KD_OK);
        if (i == 0) CU_ASSERT_STRING_NOT_EQUAL(x, z);
        free(x);
        free(y);
        free(z);
    }
    kd_toolsim_close(a);
    kd_toolsim_close(b);
}

static void test_fixtures(void) {
    const char *path = kd_test_write("fixtures.json",
                                     "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}, \"result\": {\"temperature\": -3, \"units\": \"celsius\"}},\n"
                                     " {\"name\": \"get_weather\", \"result\": {\"temperature\": 20}},\n"
                                     " {\"name\": \"shell.run\", \"arguments\": {\"command\": \"ls\"}, \"result\": \"a.txt\\nb.txt\"}]");
    kd_toolsim *s;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_open(&s, g_reg, path, &e), KD_OK);
    char *t;
    CU_ASSERT_EQUAL(kd_toolsim_run_text(s, "get_weather", "{\"city\":\"Oslo\"}", &t, NULL), KD_OK);
    CU_ASSERT_STRING_EQUAL(t, "{\"temperature\":-3,\"units\":\"celsius\"}");
    free(t);
    CU_ASSERT_EQUAL(kd_toolsim_run_text(s, "get_weather", "{\"city\":\"Bergen\"}", &t, NULL), KD_OK);
    CU_ASSERT_STRING_EQUAL(t, "{\"temperature\":20}");
    free(t);
    CU_ASSERT_EQUAL(kd_toolsim_run_text(s, "shell.run", "{\"command\":\"ls\"}", &t, NULL), KD_OK);
    CU_ASSERT_STRING_EQUAL(t, "\"a.txt\\nb.txt\"");
    free(t);
    /* no fixture for this one: the simulator answers */
    CU_ASSERT_EQUAL(kd_toolsim_run_text(s, "shell.run", "{\"command\":\"pwd\"}", &t, NULL), KD_OK);
    KD_ASSERT_CONTAINS(t, "\"command\":\"pwd\"");
    free(t);
    json_t *r;
    CU_ASSERT_EQUAL(kd_toolsim_run(s, "get_weather", "{\"city\": ", &r, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "tool get_weather: arguments are not valid JSON");
    CU_ASSERT_EQUAL(kd_toolsim_run(s, "get_weather", "[1]", &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "tool get_weather: arguments must be a JSON object");
    CU_ASSERT_EQUAL(kd_toolsim_run(s, "no_such_tool", "{}", &r, &e), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(e.msg, "tool simulator: no tool named 'no_such_tool' in the registry");
    kd_toolsim_close(s);
    CU_ASSERT_EQUAL(kd_toolsim_open(&s, g_reg, kd_test_write("bad.json", "[{\"name\": 1,"), &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "bad.json:1:");
    KD_ASSERT_CONTAINS(e.msg, "tool fixtures:");
    CU_ASSERT_EQUAL(kd_toolsim_open(&s, g_reg, kd_test_write("obj.json", "{}"), &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "tool fixtures must be a JSON array of {\"name\", \"arguments\", \"result\"}");
    CU_ASSERT_EQUAL(kd_toolsim_open(&s, g_reg, kd_test_write("noname.json", "[{\"result\": 1}]"), &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "fixture [0] needs a string \"name\" and a \"result\"");
}

int main(void) {
    CU_initialize_registry();
    kd_error e;
    if (kd_registry_open(&g_reg, &e) || kd_registry_load_file(g_reg, kd_test_src("configs/tools.json"), &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    CU_pSuite s = CU_add_suite("toolsim", NULL, NULL);
    CU_add_test(s, "schema-driven results by kind", test_kinds);
    CU_add_test(s, "deterministic in name and arguments", test_deterministic);
    CU_add_test(s, "fixtures override, errors", test_fixtures);
    int rc = kd_test_main();
    kd_registry_close(g_reg);
    return rc;
}
