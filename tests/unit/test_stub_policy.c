/* CUnit suite: the stub teacher's policy over a request's own tools (src/teacher/stub_policy.c):
 * reading arguments of every JSON type, the call/no-call decision, and its scores on prompts over
 * the held-out tools of the pool (tools it was never tuned on), against the bar:
 * tool name >= 95%, exact arguments >= 70%, no call >= 90%. */
#include <stdlib.h>
#include <string.h>

#include "kdstep/registry.h"
#include "kdstep/stub_policy.h"
#include "kdstep/synth.h"
#include "testutil.h"

static const char *TOOLS =
    "[{\"name\": \"get_forecast\", \"description\": \"Retrieves the weather forecast for a city.\", \"parameters\": {"
    "  \"type\": \"object\", \"required\": [\"city\", \"days\"], \"properties\": {"
    "    \"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"},"
    "    \"units\": {\"type\": \"string\", \"enum\": [\"metric\", \"imperial\"]},"
    "    \"hourly\": {\"type\": \"boolean\"}, \"max_temp\": {\"type\": \"number\"},"
    "    \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
    "    \"filters\": {\"type\": \"object\", \"properties\": {\"rain\": {\"type\": \"boolean\"}}}}}},"
    " {\"name\": \"send_invoice\", \"description\": \"Sends an invoice to a customer by e-mail.\", \"parameters\": {"
    "  \"type\": \"object\", \"required\": [\"customer_email\", \"amount\"], \"properties\": {"
    "    \"customer_email\": {\"type\": \"string\"}, \"amount\": {\"type\": \"number\"}}}}]";

static kd_registry *tools(void) {
    json_t *j = json_loads(TOOLS, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    kd_registry *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&r, j, "test", &e), KD_OK);
    json_decref(j);
    return r;
}

static void test_arguments(void) {
    kd_registry *r = tools();
    int missing = 0;
    json_t *a = kd_stub_policy_arguments(&r->tools[0],
                                         "I want to retrieve the weather forecast for a city with city \"New York\", days 3, "
                                         "units imperial, hourly true, max temp 21.5, tags \"a b\", \"c\" and \"d\" and "
                                         "filters {\"rain\": false}.",
                                         &missing);
    json_t *want = json_loads("{\"city\": \"New York\", \"days\": 3, \"units\": \"imperial\", \"hourly\": true, \"max_temp\": 21.5,"
                              " \"tags\": [\"a b\", \"c\", \"d\"], \"filters\": {\"rain\": false}}",
                              0, NULL);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_TRUE(json_equal(a, want));
    json_decref(a);
    json_decref(want);
    /* explicit connectors allow one bare word; the gist's "city" is not a value */
    a = kd_stub_policy_arguments(&r->tools[0], "Please retrieve the weather forecast for a city, setting city to Lima and days to 4.",
                                 &missing);
    want = json_loads("{\"city\": \"Lima\", \"days\": 4}", 0, NULL);
    CU_ASSERT_TRUE(json_equal(a, want));
    json_decref(a);
    json_decref(want);
    /* a bare word without a connector is not read; a missing required one is counted */
    a = kd_stub_policy_arguments(&r->tools[0], "forecast with city Lima", &missing);
    CU_ASSERT_EQUAL(json_object_size(a), 0);
    CU_ASSERT_EQUAL(missing, 2);
    json_decref(a);
    /* "(customer email: x@y.org; amount: 12.25)" */
    a = kd_stub_policy_arguments(&r->tools[1], "Send an invoice (customer email: x@y.org; amount: 12.25).", &missing);
    want = json_loads("{\"customer_email\": \"x@y.org\", \"amount\": 12.25}", 0, NULL);
    CU_ASSERT_TRUE(json_equal(a, want));
    CU_ASSERT_EQUAL(missing, 0);
    json_decref(a);
    json_decref(want);
    kd_registry_close(r);
}

static void test_plan(void) {
    kd_registry *r = tools();
    kd_policy_call c[KD_POLICY_MAX_CALLS];
    int n = kd_stub_policy_plan(r, "Tell me a joke about penguins.", c, KD_POLICY_MAX_CALLS);
    CU_ASSERT_EQUAL(n, 0);
    /* a request for a tool that is not offered: no call */
    n = kd_stub_policy_plan(r, "I want to book a table at a restaurant with party size 4 and city \"Rome\".", c, KD_POLICY_MAX_CALLS);
    CU_ASSERT_EQUAL(n, 0);
    n = kd_stub_policy_plan(r,
                            "Hey, send an invoice to a customer by e-mail with customer email \"bo@acme.org\" and amount 99. "
                            "Then retrieve the weather forecast for a city where the city is Oslo and the days is 2. Thanks!",
                            c, KD_POLICY_MAX_CALLS);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(c[0].tool, 1);
    CU_ASSERT_EQUAL(c[1].tool, 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(c[1].arguments, "days")), 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c[1].arguments, "city")), "Oslo");
    kd_policy_calls_free(c, n);
    CU_ASSERT_TRUE(kd_stub_policy_fit(&r->tools[0], "use get_forecast please") >= 1.0);
    CU_ASSERT_TRUE(kd_stub_policy_fit(&r->tools[0], "nothing related") < 0.1);
    kd_registry_close(r);
}

/* Prompts over the held-out tools (the policy never saw them while it was written). */
static void test_heldout_ceiling(void) {
    kd_registry *pool = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_registry_open(&pool, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_registry_load_file(pool, kd_test_src("configs/tool_pool.heldout.json"), &e), KD_OK);
    kd_synth_options o = {3, 5, 0};
    long name_ok = 0, name_n = 0, args_ok = 0, call_n = 0, nocall_ok = 0, nocall_n = 0;
    for (int64_t i = 0; i < 600; i++) {
        json_t *rec = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_synth_record_opts(pool, &o, 77, i, &rec, &e), KD_OK);
        kd_registry *own = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&own, json_object_get(rec, "tools"), "rec", &e), KD_OK);
        json_t *gold = json_object_get(json_object_get(rec, "metadata"), "tool_calls");
        kd_policy_call c[KD_POLICY_MAX_CALLS];
        int n = kd_stub_policy_plan(own, json_string_value(json_object_get(rec, "prompt")), c, KD_POLICY_MAX_CALLS);
        size_t ng = json_array_size(gold);
        if (ng == 0) {
            nocall_n++;
            nocall_ok += n == 0;
        } else {
            name_n++;
            call_n++;
            int names = (size_t)n == ng, args = names;
            for (size_t g = 0; names && g < ng; g++) {
                json_t *gc = json_array_get(gold, g);
                names &= strcmp(own->tools[c[g].tool].name, json_string_value(json_object_get(gc, "name"))) == 0;
                args &= names && json_equal(c[g].arguments, json_object_get(gc, "arguments"));
            }
            name_ok += names;
            args_ok += args;
        }
        kd_policy_calls_free(c, n);
        kd_registry_close(own);
        json_decref(rec);
    }
    double tn = (double)name_ok / (double)name_n, ast = (double)args_ok / (double)call_n, nc = (double)nocall_ok / (double)nocall_n;
    fprintf(stderr, "\n  held-out tools: tool name %.1f%% (%ld), exact arguments %.1f%%, no call %.1f%% (%ld)\n", 100 * tn,
            name_n, 100 * ast, 100 * nc, nocall_n);
    CU_ASSERT_TRUE(tn >= 0.95);
    CU_ASSERT_TRUE(ast >= 0.70);
    CU_ASSERT_TRUE(nc >= 0.90);
    kd_registry_close(pool);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("stub_policy", NULL, NULL);
    CU_add_test(s, "reading arguments of every type", test_arguments);
    CU_add_test(s, "call, two calls, no call", test_plan);
    CU_add_test(s, "held-out tools: the issue's bar", test_heldout_ceiling);
    return kd_test_main();
}
