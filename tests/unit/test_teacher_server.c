/* CUnit suite: the stub teacher's HTTP server (src/teacher/server.c): answers, limits and errors. */
#include "teacher_fixture.h"

typedef struct http_body {
    char *data;
    size_t len;
} http_body;

#include <curl/curl.h>

/* One request to the server with libcurl: the status, and the body in *out (caller frees). */
static size_t collect(char *p, size_t sz, size_t n, void *ud) {
    http_body *b = ud;
    size_t add = sz * n;
    char *q = realloc(b->data, b->len + add + 1);
    if (!q) return 0;
    memcpy(q + b->len, p, add);
    b->data = q;
    b->len += add;
    b->data[b->len] = 0;
    return add;
}

static long http(int port, const char *path, const char *body, char **out) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    http_body b = {0};
    CURL *h = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    *out = b.data;
    return code;
}

/* Issue 21: a request for a model the server does not serve gets what vLLM answers (404, "The model `X`
 * does not exist.", from OpenAIServing._check_model) in OpenAI's error shape (code model_not_found,
 * param model), naming the served models; a served name (any of --served-model-name's) or no "model" is
 * answered; /v1/models lists every name. A client configured with the wrong teacher.model fails the
 * request at once (a 4xx is not retried) with that message. */
static void test_server_unknown_model(void) {
    kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_server_options so = {.seed = 3};
    kd_server *srv;
    kd_error e;
    CU_ASSERT_EQUAL(kd_server_start(&srv, &so, stub, "a,b,c,d,e,f,g,h,i", &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "more than 8 names");
    CU_ASSERT_EQUAL_FATAL(kd_server_start(&srv, &so, stub, "stub-teacher,Qwen/Qwen3-32B", &e), KD_OK);
    int port = kd_server_port(srv);
    char *out = NULL;
    const char *chat = "/v1/chat/completions";
    CU_ASSERT_EQUAL(http(port, chat, "{\"model\":\"gpt-nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &out), 404);
    json_t *o = json_loads(out ? out : "", 0, NULL);
    json_t *err = json_object_get(o, "error");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(err, "code")), "model_not_found");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(err, "param")), "model");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(err, "type")), "not_found_error"); /* as kdstep serve's */
    KD_ASSERT_CONTAINS(json_string_value(json_object_get(err, "message")),
                       "The model `gpt-nope` does not exist. This server serves: `stub-teacher`, `Qwen/Qwen3-32B`");
    json_decref(o);
    free(out);
    /* the scoring endpoint and /v1/completions check it too; a number is no name */
    CU_ASSERT_EQUAL(http(port, "/v1/completions", "{\"model\":\"x\",\"prompt\":\"hi\",\"prompt_logprobs\":2}", &out), 404);
    KD_ASSERT_CONTAINS(out, "The model `x` does not exist.");
    free(out);
    CU_ASSERT_EQUAL(http(port, chat, "{\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &out), 404);
    KD_ASSERT_CONTAINS(out, "must be a string naming a served model");
    free(out);
    /* each served name, and no name at all, is answered */
    const char *ok[] = {"{\"model\":\"stub-teacher\",", "{\"model\":\"Qwen/Qwen3-32B\",", "{\"model\":null,", "{"};
    for (int i = 0; i < 4; i++) {
        char body[256];
        snprintf(body, sizeof body, "%s\"messages\":[{\"role\":\"user\",\"content\":\"What is the weather in Oslo?\"}]}", ok[i]);
        CU_ASSERT_EQUAL(http(port, chat, body, &out), 200);
        KD_ASSERT_CONTAINS(out, "\"model\":\"stub-teacher\"");
        free(out);
    }
    CU_ASSERT_EQUAL(http(port, "/v1/models", NULL, &out), 200);
    KD_ASSERT_CONTAINS(out, "{\"id\":\"stub-teacher\",\"object\":\"model\"");
    KD_ASSERT_CONTAINS(out, "{\"id\":\"Qwen/Qwen3-32B\",\"object\":\"model\"");
    free(out);
    kd_server_counts k;
    kd_server_get_counts(srv, &k);
    CU_ASSERT_EQUAL(k.bad_requests, 3);
    /* the client: a wrong teacher.model fails once, with the server's reason */
    kd_config cfg;
    kd_config_defaults(&cfg);
    snprintf(cfg.teacher.url, sizeof cfg.teacher.url, "http://127.0.0.1:%d", port);
    snprintf(cfg.teacher.model, sizeof cfg.teacher.model, "gpt-nope");
    kd_teacher *t;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(submit_prompt(t, "What is the weather in Oslo?", 1, &e), KD_OK);
    kd_teacher_completion *c = await_one(t, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_NOT_EQUAL(c->status, KD_OK);
    CU_ASSERT_EQUAL(c->http_status, 404);
    CU_ASSERT_EQUAL(c->attempts, 1);
    KD_ASSERT_CONTAINS(c->body_excerpt, "does not exist");
    close_loopback(c, t, &cfg, srv, stub);
}

/* The server keeps answers per request body: asking the same thing again gives what the stub itself
 * says (token by token, logprobs exact through %.9g), and every answer still waits --latency-ms. */
static void test_server_repeats_answer_after_latency(void) {
    kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_server_options so = {.latency_ms = 30, .seed = 11};
    kd_config cfg;
    kd_server *srv = serve_stub(stub, &so, &cfg);
    kd_error e;
    cfg.teacher.top_logprobs = 3;
    cfg.teacher.timeout_s = 30;
    kd_teacher *t;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
    json_t *m = user_msg("What's the weather in Paris?");
    kd_teacher_completion want;
    memset(&want, 0, sizeof want);
    CU_ASSERT_EQUAL_FATAL(kd_stub_complete(stub, m, NULL, 3, cfg.teacher.seed, &want, &e), KD_OK);
    CU_ASSERT_TRUE_FATAL(want.lp.n > 0);
    for (int round = 0; round < 3; round++) {
        kd_teacher_request r;
        kd_teacher_request_init(&r);
        r.messages = m;
        r.tag = (uint64_t)round;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_submit(t, &r, &e), KD_OK);
        kd_teacher_completion *c = NULL;
        for (int w = 0; w < 100 && !c; w++) CU_ASSERT_EQUAL_FATAL(kd_teacher_next(t, 1.0, &c, &e), KD_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(c->status, KD_OK);
        CU_ASSERT_TRUE(c->attempt_log[0].end_s - c->attempt_log[0].start_s >= 0.030);
        CU_ASSERT_EQUAL(c->n_tool_calls, want.n_tool_calls);
        for (int i = 0; i < c->n_tool_calls && i < want.n_tool_calls; i++) {
            CU_ASSERT_STRING_EQUAL(c->tool_calls[i].name, want.tool_calls[i].name);
            CU_ASSERT_STRING_EQUAL(c->tool_calls[i].arguments, want.tool_calls[i].arguments);
        }
        CU_ASSERT_EQUAL_FATAL(c->lp.n, want.lp.n);
        CU_ASSERT_EQUAL_FATAL(c->lp.k, want.lp.k);
        for (int i = 0; i < c->lp.n; i++) {
            CU_ASSERT_STRING_EQUAL(c->lp.tokens[i], want.lp.tokens[i]);
            CU_ASSERT_EQUAL(c->lp.token_logprobs[i], want.lp.token_logprobs[i]);
            for (int j = 0; j < c->lp.k; j++) CU_ASSERT_EQUAL(c->lp.topk_logprobs[i * c->lp.k + j], want.lp.topk_logprobs[i * want.lp.k + j]);
        }
        kd_teacher_completion_free(c);
        free(c);
    }
    kd_server_counts k;
    kd_server_get_counts(srv, &k);
    CU_ASSERT_EQUAL(k.requests, 3);
    kd_teacher_completion_free(&want);
    json_decref(m);
    kd_teacher_close(t);
    kd_server_stop(srv);
    kd_stub_close(stub);
    kd_config_free(&cfg);
}

static void add_tests(CU_pSuite s) {
    CU_add_test(s, "server: an unknown model gets 404 model_not_found naming the served ones", test_server_unknown_model);
    CU_add_test(s, "server: a repeated request, same answer, after the latency", test_server_repeats_answer_after_latency);
}

int main(void) { return teacher_suite_main("teacher_server", add_tests); }
