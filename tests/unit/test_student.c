/* CUnit suite: a student checkpoint answering prompts (src/eval/student.c).
 * Outside truth: the batched forward (kd_model_forward, checked against PyTorch in its own suite)
 * must pick every greedy token the KV-cache decode picks, and a prefix taken from the cache must give
 * the same tokens as a fresh prefill. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/evaluate.h"
#include "kdstep/student.h"
#include "student_fixture.h"
#include "testutil.h"

static json_t *user_messages(const char *text) { return json_pack("[{s:s, s:s}]", "role", "user", "content", text); }

static json_t *tools3(void) {
    json_t *t = json_load_file(fx_tools_path(), 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

static void expect_open_error(const char *dir, const char *needle) {
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_NOT_EQUAL(kd_student_open(&s, dir, &err), KD_OK);
    CU_ASSERT_PTR_NULL(s);
    KD_ASSERT_CONTAINS(err.msg, needle);
}

static void test_open_errors(void) {
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no-such-checkpoint", kd_test_tmpdir());
    expect_open_error(missing, "is not a folder (give the folder the trainer wrote");
    expect_open_error(fx_checkpoint("ck-noconfig", 0, 1, 2 | 4), "has no config.json (a student checkpoint holds");
    expect_open_error(fx_checkpoint("ck-noweights", 0, 1, 1 | 4), "has no model.safetensors");
    expect_open_error(fx_checkpoint("ck-notok", 0, 1, 1 | 2), "has no tokenizer.json");
}

static void test_vocab_mismatch(void) {
    const char *dir = fx_checkpoint("ck-small-vocab", -10, 1, 7);
    char want[256];
    snprintf(want, sizeof want, "tokenizer.json has %d ids but the model's vocab_size is %d", fx_tokenizer_ids(),
             fx_tokenizer_ids() - 10);
    expect_open_error(dir, want);
    expect_open_error(dir, "the tokenizer is not the one this model was trained with");
}

/* Errors of the files themselves come back prefixed with the checkpoint they belong to. */
static void test_bad_files(void) {
    const char *dir = fx_checkpoint("ck-truncated", 0, 1, 7);
    char p[4200], want[4300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(kd_write_file_atomic(p, "\x08\0\0\0\0\0\0\0{}", 10, NULL), KD_OK);
    snprintf(want, sizeof want, "checkpoint %s: ", dir);
    expect_open_error(dir, want);
    expect_open_error(dir, "model.safetensors");
    dir = fx_checkpoint("ck-badtok", 0, 1, 7);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CU_ASSERT_EQUAL_FATAL(kd_write_file_atomic(p, "{\"model\": ", 10, NULL), KD_OK);
    snprintf(want, sizeof want, "checkpoint %s: ", dir);
    expect_open_error(dir, want);
    expect_open_error(dir, "tokenizer.json");
}

static void test_no_stop_tokens(void) {
    const char *dir = fx_checkpoint("ck-nostop", 0, 1, 7);
    char p[4200];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_read_file(p, &text, &len, NULL), KD_OK);
    /* rename both stop tokens (same length, so nothing else moves) */
    for (char *q = text; (q = strstr(q, "<|im_end|>")); q++) memcpy(q, "<|im_eNd|>", 10);
    for (char *q = text; (q = strstr(q, "<|endoftext|>")); q++) memcpy(q, "<|endofTEXT|>", 13);
    CU_ASSERT_EQUAL(kd_write_file_atomic(p, text, len, NULL), KD_OK);
    free(text);
    expect_open_error(dir, "tokenizer.json has neither <|im_end|> nor <|endoftext|>");
}

static void test_render_prompt(void) {
    json_t *msgs = user_messages("What's the weather in Oslo?"), *tools = tools3();
    char *text = NULL;
    size_t len = 0;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_render_prompt(msgs, tools, &text, &len, &err), KD_OK);
    CU_ASSERT_EQUAL(strlen(text), len);
    KD_ASSERT_CONTAINS(text, "<tools>");
    KD_ASSERT_CONTAINS(text, "\"name\": \"read_file\"");
    const char *tail = "<|im_start|>assistant\n";
    CU_ASSERT_TRUE(len >= strlen(tail) && strcmp(text + len - strlen(tail), tail) == 0);
    free(text);
    /* no tools: no tools block (an empty array counts as none, as in the template) */
    json_t *none = json_array();
    CU_ASSERT_EQUAL_FATAL(kd_student_render_prompt(msgs, none, &text, &len, &err), KD_OK);
    CU_ASSERT_PTR_NULL(strstr(text, "<tools>"));
    CU_ASSERT_EQUAL(strncmp(text, "<|im_start|>user\n", 17), 0);
    free(text);
    json_decref(none);
    json_decref(msgs);
    json_decref(tools);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Each greedy token is the argmax of the batched forward's logits at its position. */
static void test_greedy_matches_batched_forward(void) {
    const char *dir = fx_checkpoint("ck-main", 0, 42, 7);
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&s, dir, &err), KD_OK);
    json_t *msgs = user_messages("Please read /etc/hosts for me."), *tools = tools3();
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_student_render_prompt(msgs, tools, &text, &len, &err), KD_OK);
    kd_encoding enc = {0};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(s->tok, text, len, 0, &enc, &err), KD_OK);
    int np = (int)enc.count, max_new = 24, n = 0;
    int32_t out[24];
    kd_sampler greedy = {0};
    kd_student_stats st;
    CU_ASSERT_EQUAL_FATAL(kd_student_generate(s, enc.ids, np, max_new, &greedy, out, &n, &st, &err), KD_OK);
    CU_ASSERT_TRUE(n >= 1 && n <= max_new);
    CU_ASSERT_EQUAL(st.prompt_tokens, np);
    CU_ASSERT_EQUAL(st.new_tokens, n);
    CU_ASSERT_EQUAL(st.reused_tokens, 0);

    int T = np + n - 1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    memcpy(ids, enc.ids, sizeof(int32_t) * (size_t)np);
    memcpy(ids + np, out, sizeof(int32_t) * (size_t)(n - 1));
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_open_dir(&m, dir, 1, T, 0, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, ids, NULL, &err), KD_OK);
    int V = m->cfg.vocab_size, agree = 0;
    for (int j = 0; j < n; j++) {
        const float *row = m->logits + (size_t)(np - 1 + j) * (size_t)V;
        int b = argmax(row, V);
        /* a float-rounding tie may flip the argmax; anything else is a decode bug */
        if (b == out[j] || row[b] - row[out[j]] < 1e-4f) agree++;
        else fprintf(stderr, "\n  position %d: decode picked %d, forward argmax %d (gap %g)\n", j, out[j], b, row[b] - row[out[j]]);
    }
    CU_ASSERT_EQUAL(agree, n);
    kd_model_free(m);
    free(ids);
    kd_encoding_free(&enc);
    free(text);
    json_decref(msgs);
    json_decref(tools);
    kd_student_close(s);
}

/* Answering B after A (sharing the tools block) equals answering B from a fresh cache. */
static void test_prefix_reuse_is_exact(void) {
    const char *dir = fx_checkpoint("ck-main", 0, 42, 7);
    kd_student *warm = NULL, *cold = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&warm, dir, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&cold, dir, &err), KD_OK);
    json_t *a = user_messages("List the files in /var/log please."), *b = user_messages("Read the file notes.txt"),
           *tools = tools3();
    kd_sampler g = {0};
    kd_student_stats sa, sb, sc, sd;
    char *ta = NULL, *tb = NULL, *tc = NULL, *td = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(warm, a, tools, 20, &g, &ta, &sa, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(warm, b, tools, 20, &g, &tb, &sb, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(cold, b, tools, 20, &g, &tc, &sc, &err), KD_OK);
    CU_ASSERT_EQUAL(sa.reused_tokens, 0);
    CU_ASSERT_EQUAL(sc.reused_tokens, 0);
    CU_ASSERT_TRUE(sb.reused_tokens > sb.prompt_tokens / 2); /* the system block with the tools */
    CU_ASSERT_STRING_EQUAL(tb, tc);
    CU_ASSERT_EQUAL(sb.new_tokens, sc.new_tokens);
    /* the same prompt again: all but the last prompt token come from the cache */
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(cold, b, tools, 20, &g, &td, &sd, &err), KD_OK);
    CU_ASSERT_EQUAL(sd.reused_tokens, sd.prompt_tokens - 1);
    CU_ASSERT_STRING_EQUAL(td, tc);
    /* reset forgets the prefix */
    kd_student_reset(cold);
    free(td);
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(cold, b, tools, 20, &g, &td, &sd, &err), KD_OK);
    CU_ASSERT_EQUAL(sd.reused_tokens, 0);
    CU_ASSERT_STRING_EQUAL(td, tc);
    free(ta);
    free(tb);
    free(tc);
    free(td);
    json_decref(a);
    json_decref(b);
    json_decref(tools);
    kd_student_close(warm);
    kd_student_close(cold);
}

/* max_new bounds the output; a stop token ends it and is not part of the text. */
static void test_max_new_and_stop(void) {
    const char *dir = fx_checkpoint("ck-main", 0, 42, 7);
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&s, dir, &err), KD_OK);
    json_t *msgs = user_messages("hello"), *tools = tools3();
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_student_render_prompt(msgs, tools, &text, &len, &err), KD_OK);
    kd_encoding enc = {0};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(s->tok, text, len, 0, &enc, &err), KD_OK);
    int32_t out[5];
    int n = 0;
    kd_sampler g = {0};
    kd_student_stats st;
    CU_ASSERT_EQUAL_FATAL(kd_student_generate(s, enc.ids, (int)enc.count, 5, &g, out, &n, &st, &err), KD_OK);
    CU_ASSERT_TRUE(n >= 1 && n <= 5);
    int last_is_stop = out[n - 1] == s->stop[0] || (s->n_stop > 1 && out[n - 1] == s->stop[1]);
    CU_ASSERT_EQUAL(st.stopped, last_is_stop);
    CU_ASSERT_TRUE(st.stopped || n == 5);
    /* the stop token ends the turn; it is never part of the answer text */
    char *ans = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(s, msgs, tools, 64, &g, &ans, &st, &err), KD_OK);
    CU_ASSERT_PTR_NULL(strstr(ans, "<|im_end|>"));
    free(ans);
    kd_encoding_free(&enc);
    free(text);
    json_decref(msgs);
    json_decref(tools);
    kd_student_close(s);
}

/* A model vocabulary larger than the tokenizer's: padded ids are never produced. */
static void test_padded_model_vocab(void) {
    int tv = fx_tokenizer_ids();
    const char *dir = fx_checkpoint("ck-padded", 64, 5, 7);
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&s, dir, &err), KD_OK);
    CU_ASSERT_EQUAL(s->model->cfg.vocab_size, tv + 64);
    json_t *msgs = user_messages("hi"), *tools = tools3();
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_student_render_prompt(msgs, tools, &text, &len, &err), KD_OK);
    kd_encoding enc = {0};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(s->tok, text, len, 0, &enc, &err), KD_OK);
    int32_t out[48];
    int n = 0, in_range = 1;
    kd_sampler hot = {.temperature = 5.0f, .top_p = 1.0f, .rng = 3}; /* near-uniform: padded ids would show */
    kd_student_stats st;
    CU_ASSERT_EQUAL_FATAL(kd_student_generate(s, enc.ids, (int)enc.count, 48, &hot, out, &n, &st, &err), KD_OK);
    for (int i = 0; i < n; i++) in_range &= out[i] >= 0 && out[i] < tv;
    CU_ASSERT_TRUE(in_range);
    kd_encoding_free(&enc);
    free(text);
    json_decref(msgs);
    json_decref(tools);
    kd_student_close(s);
}

/* Sampling is a function of the sampler's seed. */
static void test_sampling_seeded(void) {
    const char *dir = fx_checkpoint("ck-main", 0, 42, 7);
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&s, dir, &err), KD_OK);
    json_t *msgs = user_messages("convert 3 km to miles"), *tools = tools3();
    kd_sampler a = {.temperature = 1.0f, .top_p = 0.9f, .rng = 11}, b = a;
    kd_student_stats st;
    char *ta = NULL, *tb = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(s, msgs, tools, 32, &a, &ta, &st, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(s, msgs, tools, 32, &b, &tb, &st, &err), KD_OK);
    CU_ASSERT_STRING_EQUAL(ta, tb);
    free(ta);
    free(tb);
    json_decref(msgs);
    json_decref(tools);
    kd_student_close(s);
}

/* Guided decoding through kd_student_generate_batch: a random-weight student sampled hot, its prompt
 * ending inside a call's name, writes an offered name and the template's frame in every job (a guide
 * per job), while the same jobs unguided write none of the names. */
static void test_guided_batch_names_offered_tools(void) {
    const char *dir = fx_checkpoint("ck-main", 0, 42, 7);
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&s, dir, &err), KD_OK);
    json_t *msgs = user_messages("read the notes"), *tools = tools3();
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_student_render_prompt(msgs, tools, &text, &len, &err), KD_OK);
    static const char opening[] = "<tool_call>\n{\"name\": \"";
    char *prompt = malloc(len + sizeof opening);
    memcpy(prompt, text, len);
    memcpy(prompt + len, opening, sizeof opening);
    kd_encoding enc = {0}, op = {0};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(s->tok, prompt, strlen(prompt), 0, &enc, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(s->tok, opening, strlen(opening), 0, &op, &err), KD_OK);
    enum { N = 6, MAX_NEW = 24 };
    int named[2] = {0, 0};
    for (int guided = 0; guided < 2; guided++) {
        kd_student_job jobs[N];
        kd_sampler smp[N];
        kd_tool_guide *g[N] = {0};
        int32_t out[N][MAX_NEW];
        for (int i = 0; i < N; i++) {
            smp[i] = (kd_sampler){.temperature = 3.0f, .top_p = 1.0f, .rng = 100u + (uint64_t)i};
            if (guided) {
                CU_ASSERT_EQUAL_FATAL(kd_tool_guide_open(&g[i], s->tok, tools, KD_GUIDE_SCHEMA, &err), KD_OK);
                for (size_t k = 0; k < op.count; k++) kd_tool_guide_push(g[i], op.ids[k]); /* the prompt's part */
            }
            jobs[i] = (kd_student_job){.prompt = enc.ids, .n_prompt = (int)enc.count, .max_new = MAX_NEW,
                                       .sampler = &smp[i], .out = out[i], .guide = g[i]};
        }
        CU_ASSERT_EQUAL_FATAL(kd_student_generate_batch(s, jobs, N, &err), KD_OK);
        for (int i = 0; i < N; i++) {
            char *ans = NULL;
            CU_ASSERT_EQUAL_FATAL(kd_student_answer_text(s, out[i], jobs[i].n_out, jobs[i].st.stopped, &ans, &err), KD_OK);
            int ok = 0;
            for (size_t t = 0; t < json_array_size(tools); t++) {
                const char *name = json_string_value(json_object_get(json_object_get(json_array_get(tools, t), "function"), "name"));
                size_t nl = strlen(name);
                /* the name, its closing quote, then as much of `, "arguments": {` as was decoded */
                if (!strncmp(ans, name, nl) && ans[nl] == '"' && !strncmp(ans + nl + 1, ", \"arguments\": {", strlen(ans + nl + 1) < 16 ? strlen(ans + nl + 1) : 16))
                    ok = 1;
            }
            if (guided && !ok) fprintf(stderr, "\n  guided job %d wrote (%d tokens, stopped %d): %s\n", i, jobs[i].n_out, jobs[i].st.stopped, ans);
            named[guided] += ok;
            free(ans);
            kd_tool_guide_close(g[i]);
        }
    }
    CU_ASSERT_EQUAL(named[1], N);
    CU_ASSERT_EQUAL(named[0], 0);
    kd_encoding_free(&enc);
    kd_encoding_free(&op);
    free(prompt);
    free(text);
    json_decref(msgs);
    json_decref(tools);
    kd_student_close(s);
}

/* A prompt longer than max_position_embeddings yields nothing and says so. */
static void test_prompt_too_long(void) {
    const char *dir = fx_checkpoint("ck-main", 0, 42, 7);
    kd_student *s = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&s, dir, &err), KD_OK);
    size_t n = (size_t)s->model->cfg.max_position_embeddings * 4;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = "qzxj "[i % 5];
    big[n] = 0;
    json_t *msgs = user_messages(big), *tools = tools3();
    kd_sampler g = {0};
    kd_student_stats st;
    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_student_answer(s, msgs, tools, 8, &g, &text, &st, &err), KD_OK);
    CU_ASSERT_EQUAL(st.truncated, 1);
    CU_ASSERT_TRUE(st.prompt_tokens >= s->model->cfg.max_position_embeddings);
    CU_ASSERT_EQUAL(st.new_tokens, 0);
    CU_ASSERT_STRING_EQUAL(text, "");
    free(text);
    free(big);
    json_decref(msgs);
    json_decref(tools);
    kd_student_close(s);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("student", NULL, NULL);
    CU_add_test(s, "open errors name the missing file", test_open_errors);
    CU_add_test(s, "tokenizer with more ids than the model is refused", test_vocab_mismatch);
    CU_add_test(s, "tokenizer without stop tokens is refused", test_no_stop_tokens);
    CU_add_test(s, "unreadable weights or tokenizer name the checkpoint", test_bad_files);
    CU_add_test(s, "prompt rendering with the generation prompt", test_render_prompt);
    CU_add_test(s, "greedy decode matches the batched forward", test_greedy_matches_batched_forward);
    CU_add_test(s, "prefix reuse is exact", test_prefix_reuse_is_exact);
    CU_add_test(s, "max_new and stop tokens", test_max_new_and_stop);
    CU_add_test(s, "padded model vocab never produces unknown ids", test_padded_model_vocab);
    CU_add_test(s, "sampling is seeded", test_sampling_seeded);
    CU_add_test(s, "prompt too long", test_prompt_too_long);
    CU_add_test(s, "guided batch decoding names an offered tool in every job", test_guided_batch_names_offered_tools);
    return kd_test_main();
}
