/* CUnit suite: strict YAML configuration (src/core/config.c). */
#include <stdlib.h>
#include <string.h>

#include "kdstep/config.h"
#include "testutil.h"

static void test_defaults(void) {
    kd_config c;
    kd_config_defaults(&c);
    CU_ASSERT_DOUBLE_EQUAL(c.process_supervision.loss_json_validity_weight, 0.3, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.process_supervision.loss_tool_select_weight, 0.7, 1e-12);
    CU_ASSERT_EQUAL(c.process_supervision.tool_names.count, 0);
    CU_ASSERT_STRING_EQUAL(c.kd.divergence, "forward_kl");
    CU_ASSERT_STRING_EQUAL(c.teacher.url, "stub");
    CU_ASSERT_EQUAL(c.train.micro_batch, 8);
    kd_config_free(&c);
}

static void test_shipped_config(void) {
    kd_config c, d;
    kd_error e;
    kd_config_defaults(&c);
    kd_config_defaults(&d);
    int rc = kd_config_load_file(&c, kd_test_src("configs/process_supervision.yaml"), &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    /* the shipped file documents the defaults: loading it changes nothing */
    char h1[65], h2[65];
    kd_config_hash(&c, h1);
    kd_config_hash(&d, h2);
    CU_ASSERT_STRING_EQUAL(h1, h2);
    kd_config_free(&c);
    kd_config_free(&d);
}

static void test_tool_names_and_values(void) {
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    const char *y = "process_supervision:\n  loss_json_validity_weight: 0.5\n  tool_names: [\"read_file\", web.search, file.write]\n"
                    "train:\n  lr: 3e-4\n  steps: 200\nkd:\n  divergence: jsd\n";
    CU_ASSERT_EQUAL_FATAL(kd_config_load_string(&c, y, "x.yaml", &e), KD_OK);
    CU_ASSERT_DOUBLE_EQUAL(c.process_supervision.loss_json_validity_weight, 0.5, 1e-12);
    CU_ASSERT_EQUAL_FATAL(c.process_supervision.tool_names.count, 3);
    CU_ASSERT_STRING_EQUAL(c.process_supervision.tool_names.items[1], "web.search");
    CU_ASSERT_DOUBLE_EQUAL(c.train.lr, 3e-4, 1e-15);
    CU_ASSERT_EQUAL(c.train.steps, 200);
    CU_ASSERT_STRING_EQUAL(c.kd.divergence, "jsd");
    kd_config_free(&c);
}

/* Each error names file:line:column; unknown names get the nearest known one. */
static void expect_error(const char *yaml, const char *msg_part1, const char *msg_part2) {
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    const char *p = kd_test_write("bad.yaml", yaml);
    int rc = kd_config_load_file(&c, p, &e);
    CU_ASSERT_NOT_EQUAL(rc, KD_OK);
    KD_ASSERT_CONTAINS(e.msg, msg_part1);
    if (msg_part2) KD_ASSERT_CONTAINS(e.msg, msg_part2);
    KD_ASSERT_CONTAINS(e.msg, p);
    kd_config_free(&c);
}

static void test_errors(void) {
    expect_error("process_supervision:\n  loss_json_validty_weight: 0.3\n",
                 "bad.yaml:2:3: unknown key 'loss_json_validty_weight' in section 'process_supervision'",
                 "did you mean 'loss_json_validity_weight'?");
    expect_error("proces_supervision:\n  enabled: true\n", "bad.yaml:1:1: unknown section 'proces_supervision'",
                 "did you mean 'process_supervision'?");
    expect_error("train:\n  lr: fast\n", "bad.yaml:2:7: train.lr: expected a number, got 'fast'", NULL);
    expect_error("train:\n  micro_batch: 2.5\n", "bad.yaml:2:16: train.micro_batch: expected an integer, got '2.5'", NULL);
    expect_error("train:\n  micro_batch: 0\n", "bad.yaml:2:16: train.micro_batch: value 0 is out of range [1, 65536]", NULL);
    expect_error("process_supervision:\n  loss_tool_select_weight: -1\n",
                 "bad.yaml:2:28: process_supervision.loss_tool_select_weight: value -1 is out of range [0, 1000]", NULL);
    expect_error("process_supervision:\n  enabled: maybe\n", "bad.yaml:2:12: process_supervision.enabled: expected true or false, got 'maybe'", NULL);
    expect_error("kd:\n  divergence: kl\n", "bad.yaml:2:15: kd.divergence: unknown value 'kl' (expected one of: forward_kl|reverse_kl|jsd)", NULL);
    expect_error("process_supervision:\n  tool_names: read_file\n", "bad.yaml:2:15: process_supervision.tool_names: expected a list like [a, b]", NULL);
    expect_error("train:\n  lr: [1, 2]\n", "bad.yaml:2:7: train.lr: expected a single value, got a list", NULL);
    expect_error("train:\n  lr: 0.1\n   bad: [\n", "bad.yaml:", "YAML syntax error");
    expect_error("- just\n- a list\n", "bad.yaml:1:1: the top level must be a mapping of sections", NULL);
    expect_error("train:\n  temperature: 2\n", "bad.yaml:2:3: unknown key 'temperature' in section 'train'", "it belongs in section 'kd' or 'teacher' or 'eval'");
    expect_error("train: 5\n", "bad.yaml:1:8: section 'train' must be a mapping of key: value", NULL);
}

static void test_set_overrides(void) {
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    CU_ASSERT_EQUAL(kd_config_set(&c, "train.lr=0.0005", &e), KD_OK);
    CU_ASSERT_DOUBLE_EQUAL(c.train.lr, 0.0005, 1e-15);
    CU_ASSERT_EQUAL(kd_config_set(&c, "process_supervision.tool_names=[a.b, c]", &e), KD_OK);
    CU_ASSERT_EQUAL(c.process_supervision.tool_names.count, 2);
    CU_ASSERT_NOT_EQUAL(kd_config_set(&c, "train.lrr=1", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "--set train.lrr=1:2:3: unknown key 'lrr' in section 'train' (did you mean 'lr'?)");
    CU_ASSERT_NOT_EQUAL(kd_config_set(&c, "trainlr", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "expected section.key=value");
    CU_ASSERT_NOT_EQUAL(kd_config_set(&c, "train.seed=x", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "train.seed: expected an integer, got 'x'");
    kd_config_free(&c);
}

/* teacher.extra_body: a YAML mapping (or a quoted JSON string) kept as compact JSON; anything that is
 * not a JSON object is refused with the key and an example; the choice keys refuse unknown values. */
static void test_teacher_keys(void) {
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    CU_ASSERT_STRING_EQUAL(c.teacher.scoring, "chat");
    CU_ASSERT_STRING_EQUAL(c.generate.thinking, "drop");
    CU_ASSERT_STRING_EQUAL(c.generate.filter, "schema_valid");
    CU_ASSERT_STRING_EQUAL(c.teacher.extra_body, "");
    CU_ASSERT_EQUAL(kd_config_set(&c, "teacher.extra_body={chat_template_kwargs: {enable_thinking: false}, top_k: 20, x: 'a b'}", &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(c.teacher.extra_body, "{\"chat_template_kwargs\":{\"enable_thinking\":false},\"top_k\":20,\"x\":\"a b\"}");
    CU_ASSERT_EQUAL(kd_config_set(&c, "teacher.extra_body='{\"repetition_penalty\": 1.1}'", &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(c.teacher.extra_body, "{\"repetition_penalty\": 1.1}");
    CU_ASSERT_NOT_EQUAL(kd_config_set(&c, "teacher.extra_body='[1, 2]'", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "teacher.extra_body: not a JSON object");
    CU_ASSERT_NOT_EQUAL(kd_config_set(&c, "teacher.scoring=prompt", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "expected one of: none|chat|completions");
    CU_ASSERT_NOT_EQUAL(kd_config_set(&c, "generate.filter=strict", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "none|json_valid|schema_valid");
    kd_config_free(&c);
}

static void test_dump_roundtrip(void) {
    kd_config c, d;
    kd_error e;
    kd_config_defaults(&c);
    kd_config_set(&c, "model.path=/some path/with \"quotes\"", &e);
    kd_config_set(&c, "process_supervision.tool_names=[x, y.z]", &e);
    char *dump = kd_config_dump(&c);
    kd_config_defaults(&d);
    CU_ASSERT_EQUAL(kd_config_load_string(&d, dump, "dump", &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(d.model.path, "/some path/with \"quotes\"");
    char h1[65], h2[65];
    kd_config_hash(&c, h1);
    kd_config_hash(&d, h2);
    CU_ASSERT_STRING_EQUAL(h1, h2);
    free(dump);
    kd_config_free(&c);
    kd_config_free(&d);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    CU_add_test(s, "defaults are the seed's", test_defaults);
    CU_add_test(s, "shipped config loads and equals the defaults", test_shipped_config);
    CU_add_test(s, "lists and values", test_tool_names_and_values);
    CU_add_test(s, "errors name file:line:column and the nearest key", test_errors);
    CU_add_test(s, "--set overrides", test_set_overrides);
    CU_add_test(s, "dump round-trips", test_dump_roundtrip);
    CU_add_test(s, "teacher.extra_body, scoring, thinking, filter", test_teacher_keys);
    return kd_test_main();
}
