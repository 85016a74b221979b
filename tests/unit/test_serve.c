/* The serving engine and the OpenAI API layer: continuous batching gives the tokens kdstep's own
 * single-sequence decoder gives (several requests at once, different lengths, joining mid-way),
 * prompt_logprobs equal the log-softmax of the batched training forward, request errors carry the
 * right status and field, and Hermes tool calls are split from the content. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/engine.h"
#include "kdstep/httpd.h"
#include "kdstep/serve_api.h"
#include "kdstep/teacher.h"
#include "student_fixture.h"
#include "testutil.h"

static kd_engine *open_engine(const char *name, int max_batch) {
    kd_engine_options o = {.max_batch = max_batch, .prefill_chunk = 7}; /* small chunks: prefill spans several steps */
    kd_engine *e = NULL;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_engine_open(fx_checkpoint(name, 0, 11, 7), &o, &e, &err), KD_OK);
    return e;
}

static int prompt_of(const kd_student *st, const char *text, int32_t *ids, int cap) {
    kd_encoding enc = {0};
    kd_error err;
    if (kd_tokenizer_encode(st->tok, text, strlen(text), 0, &enc, &err)) abort();
    int n = (int)enc.count < cap ? (int)enc.count : cap;
    memcpy(ids, enc.ids, (size_t)n * sizeof(int32_t));
    kd_encoding_free(&enc);
    return n;
}

static void test_batching_equals_single(void) {
    kd_engine *e = open_engine("ck-serve", 3);
    const kd_student *st = kd_engine_student(e);
    const char *texts[] = {"<|im_start|>user\nread /etc/hosts<|im_end|>\n<|im_start|>assistant\n", "hello", "a longer prompt about the weather in Paris and Rome",
                           "x", "<tool_call>\n{\"name\": \"read_file\"", "the end"};
    enum { N = 6, NEW = 12 };
    int32_t ids[N][128];
    int n[N];
    kd_seq *seq[N];
    kd_error err = {0};
    kd_gen_params gp = {.max_tokens = NEW, .temperature = 0, .top_p = 1, .prompt_logprobs = -1, .ignore_eos = 1};
    /* all at once through a batch of 3: three wait, then join as others finish */
    for (int i = 0; i < N; i++) {
        n[i] = prompt_of(st, texts[i], ids[i], 128);
        gp.max_tokens = NEW - i; /* different lengths: sequences leave at different steps */
        CU_ASSERT_EQUAL_FATAL(kd_engine_submit(e, ids[i], n[i], &gp, &seq[i], &err), KD_OK);
    }
    for (int i = 0; i < N; i++) {
        int state = KD_SEQ_RUNNING, got = 0;
        while (state == KD_SEQ_RUNNING) got = kd_seq_wait(seq[i], got, 10.0, &state);
        CU_ASSERT_EQUAL(state, KD_SEQ_LENGTH);
        CU_ASSERT_EQUAL(got, NEW - i);
        /* the single-sequence decoder (sgemv, one token at a time) on the same prompt */
        kd_kv_cache *kc = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_kv_cache_new(&kc, st->model, 256, &err), KD_OK);
        const float *lg = NULL;
        for (int j = 0; j < n[i]; j++) lg = kd_model_decode_step(st->model, kc, ids[i][j]);
        const kd_gen_token *t = kd_seq_tokens(seq[i]);
        int same = 1;
        float worst = 0;
        for (int j = 0; j < got; j++) {
            int V = st->model->cfg.vocab_size, best = 0;
            float mx = lg[0], sum = 0;
            for (int v = 1; v < V; v++)
                if (lg[v] > lg[best]) best = v;
            mx = lg[best];
            for (int v = 0; v < V; v++) sum += expf(lg[v] - mx);
            float lp = lg[best] - mx - logf(sum);
            same &= t[j].id == best && t[j].rank == 1;
            worst = fmaxf(worst, fabsf(lp - t[j].logprob));
            lg = kd_model_decode_step(st->model, kc, best);
        }
        if (!same || worst > 1e-4f) fprintf(stderr, "\n  request %d: same tokens %d, max |d logprob| %g\n", i, same, worst);
        CU_ASSERT_TRUE(same);
        CU_ASSERT_TRUE(worst <= 1e-4f);
        kd_kv_cache_free(kc);
        kd_seq_release(seq[i]);
    }
    kd_engine_stats s;
    kd_engine_get_stats(e, &s);
    CU_ASSERT_EQUAL(s.max_live, 3);
    CU_ASSERT_TRUE(s.steps < s.decode_rows); /* decode rows of several sequences shared steps */
    kd_engine_close(e);
}

static void test_prompt_logprobs(void) {
    kd_engine *e = open_engine("ck-serve-plp", 4);
    const kd_student *st = kd_engine_student(e);
    int32_t ids[128];
    int n = prompt_of(st, "<|im_start|>user\nwhat is in /etc/hosts?<|im_end|>\n<|im_start|>assistant\n", ids, 128);
    kd_gen_params gp = {.max_tokens = 1, .temperature = 0, .top_p = 1, .prompt_logprobs = 4};
    kd_seq *seq = NULL;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_engine_submit(e, ids, n, &gp, &seq, &err), KD_OK);
    int state = KD_SEQ_RUNNING, got = 0;
    while (state == KD_SEQ_RUNNING) got = kd_seq_wait(seq, got, 10.0, &state);
    /* the training forward (batched, all positions at once) on the same ids */
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_open_dir(&m, fx_checkpoint("ck-serve-plp", 0, 11, 7), 1, n, 1, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, ids, NULL, &err), KD_OK);
    const kd_gen_token *plp = kd_seq_prompt_logprobs(seq);
    int V = m->cfg.vocab_size;
    float worst = 0;
    for (int i = 1; i < n; i++) {
        const float *x = m->logits + (size_t)(i - 1) * V;
        float mx = x[0], sum = 0;
        for (int v = 1; v < V; v++) mx = fmaxf(mx, x[v]);
        for (int v = 0; v < V; v++) sum += expf(x[v] - mx);
        float lse = mx + logf(sum);
        CU_ASSERT_EQUAL(plp[i].id, ids[i]);
        worst = fmaxf(worst, fabsf(plp[i].logprob - (x[ids[i]] - lse)));
        CU_ASSERT_EQUAL(plp[i].n_top, 4);
        for (int j = 0; j < plp[i].n_top; j++) worst = fmaxf(worst, fabsf(plp[i].top_logprob[j] - (x[plp[i].top_id[j]] - lse)));
        for (int j = 1; j < plp[i].n_top; j++) CU_ASSERT_TRUE(plp[i].top_logprob[j] <= plp[i].top_logprob[j - 1]);
    }
    CU_ASSERT_TRUE(worst <= 1e-4f);
    kd_model_free(m);
    kd_seq_release(seq);
    kd_engine_close(e);
}

static void expect_status(kd_engine *e, int kind, const char *body, int code, const char *param, const char *needle) {
    kd_api_limits lim = {64, "m", KD_GUIDE_NONE};
    kd_api_request r;
    kd_api_status st;
    kd_error err = {0};
    CU_ASSERT_NOT_EQUAL(kd_api_parse(kd_engine_student(e), kind, body, strlen(body), &lim, &r, &st, &err), KD_OK);
    CU_ASSERT_EQUAL(st.code, code);
    if (param) CU_ASSERT_STRING_EQUAL(st.param, param);
    KD_ASSERT_CONTAINS(err.msg, needle);
}

static void test_api_errors(void) {
    kd_engine *e = open_engine("ck-serve-api", 2);
    expect_status(e, KD_API_CHAT, "{\"model\": \"m\", ", 400, NULL, "not valid JSON");
    expect_status(e, KD_API_CHAT, "{\"model\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", 404, "model", "does not exist");
    expect_status(e, KD_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", 400, "model", "'model' is required");
    expect_status(e, KD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 65}", 400, "max_tokens", "from 1 to 64");
    expect_status(e, KD_API_CHAT, "{\"model\": \"m\", \"messages\": [], \"max_tokens\": 5}", 400, "messages", "non-empty array");
    expect_status(e, KD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_logprobs\": 3}", 400, "top_logprobs", "needs \"logprobs\": true");
    expect_status(e, KD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tool_choice\": \"required\"}", 400, "tool_choice", "not supported");
    expect_status(e, KD_API_COMPLETIONS, "{\"model\": \"m\", \"prompt\": [1, 2]}", 400, "prompt", "must be a string");
    expect_status(e, KD_API_COMPLETIONS, "{\"model\": \"m\", \"prompt\": \"hi\", \"echo\": true}", 400, "echo", "not supported");
    expect_status(e, KD_API_COMPLETIONS, "{\"model\": \"m\", \"prompt\": \"hi\", \"prompt_logprobs\": 21}", 400, "prompt_logprobs", "from 0 to 20");
    /* a prompt longer than the context (2048 positions for the tiny preset) */
    size_t big = 20000;
    char *body = malloc(big + 64);
    int k = snprintf(body, big + 64, "{\"model\": \"m\", \"prompt\": \"");
    for (size_t i = 0; i < big - 100; i += 2) body[k++] = 'a', body[k++] = ' ';
    snprintf(body + k, 32, "\", \"max_tokens\": 4}");
    expect_status(e, KD_API_COMPLETIONS, body, 400, "prompt", "maximum context length is 2048 tokens");
    free(body);
    char *j = kd_http_error_json(404, "The model `x` does not exist.", "model");
    KD_ASSERT_CONTAINS(j, "{\"error\":{\"message\":\"The model `x` does not exist.\",\"type\":\"not_found_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}");
    free(j);
    kd_engine_close(e);
}

static void test_split_tool_calls(void) {
    kd_engine *e = open_engine("ck-serve-split", 2);
    const kd_student *st = kd_engine_student(e);
    const char *text = "<think>\nthe user wants a file\n</think>\n\nLet me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"/etc/hosts\"}}\n</tool_call>\n"
                       "<tool_call>\n{\"name\": \"list_dir\", \"arguments\": {}}\n</tool_call>";
    int32_t ids[512];
    int n = prompt_of(st, text, ids, 512);
    char *content = NULL;
    json_t *calls = NULL;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_api_split_output(st, ids, n, 1, 1, "c", &content, &calls, &err), KD_OK);
    CU_ASSERT_STRING_EQUAL(content, "Let me look.");
    CU_ASSERT_EQUAL(json_array_size(calls), 2);
    json_t *f = json_object_get(json_array_get(calls, 0), "function");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f, "name")), "read_file");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f, "arguments")), "{\"path\": \"/etc/hosts\"}");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(calls, 1), "id")), "c-1");
    free(content);
    json_decref(calls);
    /* without tools in the request (and completions: no reasoning parser) the same text is all content */
    CU_ASSERT_EQUAL_FATAL(kd_api_split_output(st, ids, n, 0, 0, "c", &content, &calls, &err), KD_OK);
    CU_ASSERT_STRING_EQUAL(content, text);
    CU_ASSERT_EQUAL(json_array_size(calls), 0);
    free(content);
    json_decref(calls);
    kd_engine_close(e);
}

/* Issue 19: a prompt holding characters the tokenizer splits into byte tokens (U+FFFD, written by a
 * decode of a token that split a character, and an emoji), scored through the API as a teacher would
 * be (POST /v1/completions with prompt_logprobs) and read back by the teacher client's parser: every
 * row's prompt token is the request's own token (prompt_token_ids), its logprob is the engine's, and its
 * text is the token's bytes (U+FFFD for a byte that is no character on its own). The rows where the
 * prompt token is not the model's first choice (most of them, for these random weights) are the ones
 * that were read as their rank-1 token when the entry came after the top-k. */
static void test_prompt_logprobs_split_utf8(void) {
    kd_engine *e = open_engine("ck-serve-utf8", 2);
    const kd_student *st = kd_engine_student(e);
    const char *body = "{\"model\": \"m\", \"prompt\": \"tea \xef\xbf\xbd caf\xc3\xa9 \xf0\x9f\x98\x80 done\", \"max_tokens\": 1, "
                       "\"temperature\": 0, \"prompt_logprobs\": 3}";
    kd_api_limits lim = {64, "m", KD_GUIDE_NONE};
    kd_api_request r;
    kd_api_status status;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_api_parse(st, KD_API_COMPLETIONS, body, strlen(body), &lim, &r, &status, &err), KD_OK);
    kd_seq *seq = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_engine_submit(e, r.ids, r.n_ids, &r.gp, &seq, &err), KD_OK);
    int state = KD_SEQ_RUNNING, got = 0;
    while (state == KD_SEQ_RUNNING) got = kd_seq_wait(seq, got, 10.0, &state);
    char *out = kd_api_response(st, &r, "cmpl-1", "m", 0, seq, got, state, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    kd_teacher_logprobs lp, ref;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_prompt_logprobs(out, strlen(out), 3, &lp, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_prompt_logprobs_ref(out, strlen(out), 3, &ref, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(lp.n, r.n_ids);
    const kd_gen_token *plp = kd_seq_prompt_logprobs(seq);
    int split = 0, not_first = 0, bad = 0;
    for (int i = 1; i < r.n_ids; i++) {
        const char *b;
        size_t nb;
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_token_bytes(st->tok, r.ids[i], &b, &nb), 0);
        int whole = 1; /* is the token valid UTF-8 on its own? */
        for (size_t k = 0; k < nb; k++) whole &= (unsigned char)b[k] < 0x80;
        if (!whole) {
            char *x = strndup(b, nb);
            json_t *j = json_string(x); /* jansson refuses invalid UTF-8 */
            whole = j != NULL;
            json_decref(j);
            free(x);
        }
        split += !whole;
        not_first += plp[i].rank != 1;
        bad += lp.token_ids[i] != r.ids[i] || ref.token_ids[i] != r.ids[i] || lp.token_logprobs[i] != plp[i].logprob;
        if (whole) bad += strlen(lp.tokens[i]) != nb || memcmp(lp.tokens[i], b, nb) != 0;
        else bad += strcmp(lp.tokens[i], "\xef\xbf\xbd") != 0;
        for (int j = 0; j < 3; j++) bad += lp.topk_ids[i * 3 + j] != plp[i].top_id[j];
    }
    fprintf(stderr, "\n  %d prompt tokens, %d byte tokens of split characters, %d not the model's first choice, %d wrong\n",
            r.n_ids, split, not_first, bad);
    CU_ASSERT_TRUE(split >= 3);
    CU_ASSERT_TRUE(not_first > 0);
    CU_ASSERT_EQUAL(bad, 0);
    kd_teacher_logprobs_free(&lp);
    kd_teacher_logprobs_free(&ref);
    free(out);
    kd_seq_release(seq);
    kd_api_request_free(&r);
    kd_engine_close(e);
}

/* Issue 19: the KV caches of all requests share one budget (kd_engine_options.max_kv_bytes, `kdstep
 * serve --max-kv-mb`). With room for two requests, a third that comes while both hold theirs is
 * refused as busy (KD_ERR_IO: 503 + Retry-After in HTTP) naming the flag, one that alone needs more
 * than the budget as invalid (400); once the two end, the budget is free again. */
static void test_kv_budget(void) {
    kd_engine_options o = {.max_batch = 1, .prefill_chunk = 7};
    kd_engine *e = NULL;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_engine_open(fx_checkpoint("ck-serve-kv", 0, 11, 7), &o, &e, &err), KD_OK);
    const kd_student *st = kd_engine_student(e);
    int32_t ids[64];
    int n = prompt_of(st, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", ids, 64);
    int maxpos = st->model->cfg.max_position_embeddings, max_tokens = maxpos / 3 - n; /* a third of the context */
    size_t need = kd_engine_kv_bytes(e, n + max_tokens);
    kd_engine_close(e);
    o.max_kv_bytes = 2 * need + need / 2; /* two fit, not three */
    CU_ASSERT_EQUAL_FATAL(kd_engine_open(fx_checkpoint("ck-serve-kv", 0, 11, 7), &o, &e, &err), KD_OK);
    /* long greedy generations that ignore the stop ids: they hold their budget while the third comes */
    kd_gen_params gp = {.max_tokens = max_tokens, .temperature = 0, .top_p = 1, .prompt_logprobs = -1, .ignore_eos = 1};
    kd_seq *a = NULL, *b = NULL, *c = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_engine_submit(e, ids, n, &gp, &a, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_engine_submit(e, ids, n, &gp, &b, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_engine_submit(e, ids, n, &gp, &c, &err), KD_ERR_IO);
    CU_ASSERT_PTR_NULL(c);
    KD_ASSERT_CONTAINS(err.msg, "the server is busy: its KV cache budget of");
    KD_ASSERT_CONTAINS(err.msg, "(--max-kv-mb) is held by 2 requests");
    kd_engine_stats s;
    kd_engine_get_stats(e, &s);
    CU_ASSERT_EQUAL(s.kv_bytes, (int64_t)(2 * need));
    CU_ASSERT_EQUAL(s.kv_refused, 1);
    int state = KD_SEQ_RUNNING;
    kd_seq_wait(b, 0, 0, &state);
    CU_ASSERT_EQUAL(state, KD_SEQ_RUNNING); /* b is queued behind a (max_batch 1): it could not have ended */
    /* one that alone needs more than the whole budget can never run */
    kd_gen_params big = gp;
    big.max_tokens = maxpos - n;
    CU_ASSERT_TRUE_FATAL(kd_engine_kv_bytes(e, maxpos) > o.max_kv_bytes);
    CU_ASSERT_EQUAL(kd_engine_submit(e, ids, n, &big, &c, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "more than the server's whole KV budget");
    kd_seq_cancel(a);
    kd_seq_cancel(b);
    for (int w = 0; w < 600; w++) {
        kd_engine_get_stats(e, &s);
        if (s.kv_bytes == 0) break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT_EQUAL(s.kv_bytes, 0);
    kd_seq_release(a);
    kd_seq_release(b);
    gp.max_tokens = 4;
    CU_ASSERT_EQUAL(kd_engine_submit(e, ids, n, &gp, &c, &err), KD_OK);
    state = KD_SEQ_RUNNING;
    while (state == KD_SEQ_RUNNING) kd_seq_wait(c, 4, 10.0, &state);
    CU_ASSERT_EQUAL(state, KD_SEQ_LENGTH);
    kd_seq_release(c);
    kd_engine_close(e);
}

/* kdstep serve --guide: a chat request with tools gets a guide (not without tools, nor with
 * tool_choice none, nor when the server does not guide); a tool the guide cannot take is a 400 naming
 * `tools`; and a sequence submitted with a guide, sampled hot from inside a call's name, writes an
 * offered name and the template's frame, the engine closing the guide when it ends. */
static void test_guided_serve(void) {
    kd_engine *e = open_engine("ck-serve-guide", 4);
    const kd_student *st = kd_engine_student(e);
    const char *tools = "[{\"type\": \"function\", \"function\": {\"name\": \"read_file\", \"parameters\": {\"type\": \"object\", "
                        "\"properties\": {\"path\": {\"type\": \"string\"}}, \"required\": [\"path\"]}}}, {\"type\": \"function\", "
                        "\"function\": {\"name\": \"list_directory\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}]";
    char body[2048];
    kd_api_limits lim = {64, "m", KD_GUIDE_SCHEMA}, off = {64, "m", KD_GUIDE_NONE};
    kd_api_request r;
    kd_api_status status;
    kd_error err = {0};
    snprintf(body, sizeof body, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": %s}", tools);
    CU_ASSERT_EQUAL_FATAL(kd_api_parse(st, KD_API_CHAT, body, strlen(body), &lim, &r, &status, &err), KD_OK);
    CU_ASSERT_PTR_NOT_NULL(r.gp.guide);
    CU_ASSERT_EQUAL(r.gp.guide ? r.gp.guide->n_tools : 0, 2);
    kd_api_request_free(&r);
    CU_ASSERT_EQUAL_FATAL(kd_api_parse(st, KD_API_CHAT, body, strlen(body), &off, &r, &status, &err), KD_OK);
    CU_ASSERT_PTR_NULL(r.gp.guide);
    kd_api_request_free(&r);
    snprintf(body, sizeof body, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": %s, "
             "\"tool_choice\": \"none\"}", tools);
    CU_ASSERT_EQUAL_FATAL(kd_api_parse(st, KD_API_CHAT, body, strlen(body), &lim, &r, &status, &err), KD_OK);
    CU_ASSERT_PTR_NULL(r.gp.guide);
    kd_api_request_free(&r);
    char name[400];
    snprintf(name, sizeof name, "%0300d", 7);
    snprintf(body, sizeof body, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": "
             "[{\"type\": \"function\", \"function\": {\"name\": \"%s\"}}]}", name);
    CU_ASSERT_NOT_EQUAL(kd_api_parse(st, KD_API_CHAT, body, strlen(body), &lim, &r, &status, &err), KD_OK);
    CU_ASSERT_EQUAL(status.code, 400);
    CU_ASSERT_STRING_EQUAL(status.param, "tools");
    KD_ASSERT_CONTAINS(err.msg, "tools: guided decoding: tools[0]: function.name");
    CU_ASSERT_PTR_NULL(r.gp.guide);
    /* the engine: every sequence writes an offered name after the opening */
    json_t *tj = json_loads(tools, 0, NULL);
    static const char opening[] = "<tool_call>\n{\"name\": \"";
    int32_t ids[64], op[64];
    int n = prompt_of(st, "<|im_start|>user\nlist it<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"", ids, 64);
    int nop = prompt_of(st, opening, op, 64);
    enum { N = 4 };
    kd_seq *seq[N];
    for (int i = 0; i < N; i++) {
        kd_gen_params gp = {.max_tokens = 20, .temperature = 2.0f, .top_p = 1, .seed = 50u + (uint64_t)i, .prompt_logprobs = -1};
        CU_ASSERT_EQUAL_FATAL(kd_tool_guide_open(&gp.guide, st->tok, tj, KD_GUIDE_SCHEMA, &err), KD_OK);
        for (int k = 0; k < nop; k++) kd_tool_guide_push(gp.guide, op[k]);
        CU_ASSERT_EQUAL_FATAL(kd_engine_submit(e, ids, n, &gp, &seq[i], &err), KD_OK); /* the sequence has the guide now */
    }
    int named = 0;
    for (int i = 0; i < N; i++) {
        int state = KD_SEQ_RUNNING, got = 0;
        while (state == KD_SEQ_RUNNING) got = kd_seq_wait(seq[i], got, 10.0, &state);
        const kd_gen_token *t = kd_seq_tokens(seq[i]);
        int32_t out[32];
        for (int k = 0; k < got && k < 32; k++) out[k] = t[k].id;
        char *text = NULL;
        size_t len = 0;
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_decode(st->tok, out, (size_t)(got < 32 ? got : 32), 0, &text, &len, &err), KD_OK);
        named += !strncmp(text, "read_file\"", 10) || !strncmp(text, "list_directory\"", 15);
        if (strncmp(text, "read_file\"", 10) && strncmp(text, "list_directory\"", 15)) fprintf(stderr, "\n  wrote: %s\n", text);
        free(text);
        kd_seq_release(seq[i]);
    }
    CU_ASSERT_EQUAL(named, N);
    json_decref(tj);
    kd_engine_close(e);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("serve", NULL, NULL);
    CU_add_test(s, "batching_equals_single", test_batching_equals_single);
    CU_add_test(s, "prompt_logprobs", test_prompt_logprobs);
    CU_add_test(s, "prompt_logprobs: the prompt token first, split UTF-8 read by the teacher client", test_prompt_logprobs_split_utf8);
    CU_add_test(s, "api_errors", test_api_errors);
    CU_add_test(s, "KV budget: busy 503, too big 400, freed when requests end", test_kv_budget);
    CU_add_test(s, "split_tool_calls", test_split_tool_calls);
    CU_add_test(s, "guided serving: a guide per chat request with tools; sequences name offered tools", test_guided_serve);
    return kd_test_main();
}
