/* CUnit suite: chat rendering in Qwen3's template with spans (src/text/chat.c). The full parity
 * check against Jinja2 is tests/reference/chat_template.sh; these are hand cases whose expected
 * text was written from the template by reading it. */
#include <stdlib.h>
#include <string.h>

#include "kdstep/chat.h"
#include "testutil.h"

static char *span_text(const kd_chat_result *r, kd_span s) { return kd_strndup(r->text + s.start, s.end - s.start); }

#define ASSERT_SPAN(r, s, want)                                                                                        \
    do {                                                                                                               \
        char *t_ = span_text((r), (s));                                                                                \
        if (strcmp(t_, (want))) fprintf(stderr, "\n  span holds \"%s\", want \"%s\"\n", t_, (want));                   \
        CU_ASSERT_STRING_EQUAL(t_, (want));                                                                            \
        free(t_);                                                                                                      \
    } while (0)

static void test_plain(void) {
    kd_chat_message m[] = {{.role = "system", .content = "Be brief."}, {.role = "user", .content = "Hi ü"}};
    kd_chat_result r;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_chat_render(m, 2, NULL, 1, &r, &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(r.text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi ü<|im_end|>\n"
                                   "<|im_start|>assistant\n");
    CU_ASSERT_EQUAL(r.len, strlen(r.text));
    CU_ASSERT_EQUAL(r.generation_start, r.len);
    ASSERT_SPAN(&r, r.content_spans[0], "Be brief.");
    ASSERT_SPAN(&r, r.content_spans[1], "Hi ü");
    ASSERT_SPAN(&r, r.message_spans[1], "<|im_start|>user\nHi ü<|im_end|>\n");
    CU_ASSERT_EQUAL(r.message_spans[0].start, 0);
    CU_ASSERT_EQUAL(r.n_tool_calls, 0);
    kd_chat_render_free(&r);
}

static void test_tools_calls_and_think(void) {
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
                               "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]",
                               0, NULL);
    json_t *calls = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
                               "{\"city\":\"Zürich\",\"days\":2,\"t\":1e-5,\"x\":1.0}}},"
                               "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Bern\\\"}\"}]",
                               0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tools);
    CU_ASSERT_PTR_NOT_NULL_FATAL(calls);
    kd_chat_message m[] = {{.role = "user", .content = "Weather?"},
                           {.role = "assistant", .content = "", .tool_calls = calls},
                           {.role = "tool", .content = "{\"temp\": 3}"},
                           {.role = "tool", .content = "sunny"},
                           {.role = "assistant", .content = "Cold in Zürich."}};
    kd_chat_result r;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_chat_render(m, 5, tools, 0, &r, &e), KD_OK);
    const char *want =
        "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"city\": {\"type\": \"string\"}}}}}\n</tools>\n\nFor each function call, return a json "
        "object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", "
        "\"days\": 2, \"t\": 1e-05, \"x\": 1.0}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", "
        "\"arguments\": {\"city\":\"Bern\"}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n{\"temp\": 3}\n</tool_response>\n<tool_response>\nsunny\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nCold in Zürich.<|im_end|>\n";
    CU_ASSERT_STRING_EQUAL(r.text, want);
    CU_ASSERT_EQUAL(r.n_tool_calls, 2);
    ASSERT_SPAN(&r, r.tool_call_spans[0],
                "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 2, \"t\": 1e-05, \"x\": 1.0}}");
    ASSERT_SPAN(&r, r.tool_call_spans[1], "{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Bern\"}}");
    CU_ASSERT_EQUAL(r.tool_call_message[0], 1);
    CU_ASSERT_EQUAL(r.tool_call_message[1], 1);
    ASSERT_SPAN(&r, r.content_spans[1], "");
    ASSERT_SPAN(&r, r.content_spans[2], "{\"temp\": 3}");
    ASSERT_SPAN(&r, r.message_spans[2], "<|im_start|>user\n<tool_response>\n{\"temp\": 3}\n</tool_response>");
    ASSERT_SPAN(&r, r.message_spans[3], "\n<tool_response>\nsunny\n</tool_response><|im_end|>\n");
    ASSERT_SPAN(&r, r.content_spans[4], "Cold in Zürich.");
    /* the message spans tile everything after the tools system block */
    for (int i = 1; i < 5; i++) CU_ASSERT_EQUAL(r.message_spans[i].start, r.message_spans[i - 1].end);
    CU_ASSERT_EQUAL(r.message_spans[4].end, r.len);
    kd_chat_render_free(&r);
    json_decref(tools);
    json_decref(calls);
}

static void test_json_api_reasoning(void) {
    json_t *msgs = json_loads(
        "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"q\"},"
        "{\"role\":\"assistant\",\"content\":\"<think>\\nhmm\\n</think>\\n\\nA1\"},"
        "{\"role\":\"user\",\"content\":\"q2\"},{\"role\":\"assistant\",\"content\":null,"
        "\"reasoning_content\":\"plan\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]",
        0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msgs);
    kd_chat_options o = {.add_generation_prompt = 0};
    kd_chat_result r;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_chat_render_json(msgs, NULL, &o, &r, &e), KD_OK);
    /* the earlier turn loses its reasoning (before the last query); the last keeps it */
    CU_ASSERT_STRING_EQUAL(r.text, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
                                   "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n"
                                   "<|im_start|>assistant\n<think>\nplan\n</think>\n\n<tool_call>\n"
                                   "{\"name\": \"f\", \"arguments\": {}}\n</tool_call><|im_end|>\n");
    ASSERT_SPAN(&r, r.content_spans[2], "A1");
    kd_chat_render_free(&r);
    o.add_generation_prompt = 1;
    o.disable_thinking = 1;
    json_array_remove(msgs, 4);
    CU_ASSERT_EQUAL_FATAL(kd_chat_render_json(msgs, NULL, &o, &r, &e), KD_OK);
    KD_ASSERT_CONTAINS(r.text, "q2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    CU_ASSERT_EQUAL(r.generation_start, r.len);
    kd_chat_render_free(&r);
    json_decref(msgs);
}

static void test_tojson(void) {
    const char *cases[][2] = {
        {"{\"a\":[1,2.5,true,null],\"b\":\"\\u00e9\\n\\u0001\\\"\"}", "{\"a\": [1, 2.5, true, null], \"b\": \"é\\n\\u0001\\\"\"}"},
        {"[1e16, 1234567890123456.0, 0.0001, 0.00001, 1e-7, -0.0, 0.1, 1e300, 123.456]",
         "[1e+16, 1234567890123456.0, 0.0001, 1e-05, 1e-07, -0.0, 0.1, 1e+300, 123.456]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = json_loads(cases[i][0], 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        char *s = kd_chat_tojson(v);
        if (strcmp(s, cases[i][1])) fprintf(stderr, "\n  got %s\n", s);
        CU_ASSERT_STRING_EQUAL(s, cases[i][1]);
        free(s);
        json_decref(v);
    }
}

static void test_errors(void) {
    kd_chat_result r;
    kd_error e;
    kd_chat_message bad[] = {{.role = "robot", .content = "x"}};
    CU_ASSERT_EQUAL(kd_chat_render(bad, 1, NULL, 0, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "chat message 0: role 'robot' is not one of system, user, assistant, tool");
    json_t *calls = json_loads("[{\"function\":{\"arguments\":{}}}]", 0, NULL);
    kd_chat_message noname[] = {{.role = "assistant", .content = "", .tool_calls = calls}};
    CU_ASSERT_EQUAL(kd_chat_render(noname, 1, NULL, 0, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "chat message 0: tool call 0 needs a string \"name\" and \"arguments\"");
    json_t *obj = json_object();
    kd_chat_message notarray[] = {{.role = "assistant", .content = "", .tool_calls = obj}};
    CU_ASSERT_EQUAL(kd_chat_render(notarray, 1, NULL, 0, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "chat message 0: tool_calls must be an array");
    kd_chat_message ok[] = {{.role = "user", .content = "x"}};
    CU_ASSERT_EQUAL(kd_chat_render(ok, 1, obj, 0, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "chat tools must be an array of OpenAI tool objects");
    CU_ASSERT_EQUAL(kd_chat_render_json(obj, NULL, NULL, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "\"messages\" must be an array");
    json_t *m = json_loads("[{\"content\":\"x\"}]", 0, NULL);
    CU_ASSERT_EQUAL(kd_chat_render_json(m, NULL, NULL, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "messages[0] needs a string \"role\"");
    json_decref(m);
    m = json_loads("[{\"role\":\"user\",\"content\":[1]}]", 0, NULL);
    CU_ASSERT_EQUAL(kd_chat_render_json(m, NULL, NULL, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "messages[0].content must be a string or null");
    json_decref(m);
    m = json_loads("[{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":3}]", 0, NULL);
    CU_ASSERT_EQUAL(kd_chat_render_json(m, NULL, NULL, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "messages[0].reasoning_content must be a string or null");
    json_decref(m);
    CU_ASSERT_EQUAL(kd_chat_render(ok, -1, NULL, 0, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "chat: negative message count -1");
    json_decref(obj);
    json_decref(calls);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("chat", NULL, NULL);
    CU_add_test(s, "plain turns and spans", test_plain);
    CU_add_test(s, "tools, grouped tool responses, empty think", test_tools_calls_and_think);
    CU_add_test(s, "messages JSON, reasoning_content, enable_thinking=false", test_json_api_reasoning);
    CU_add_test(s, "tojson = json.dumps(ensure_ascii=False)", test_tojson);
    CU_add_test(s, "errors", test_errors);
    return kd_test_main();
}
