/* CUnit suite: the stub teacher (src/teacher/stub*.c): tool choice against generated prompts, kdstep
 * prompts synth and BFCL, determinism, normalized logprobs, answers, and the teacher interface over it. */
#include "teacher_fixture.h"

/* ---- stub teacher ---- */

static void test_stub_tool_choice_accuracy(void) {
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    enum { N = 480 };
    static gen_prompt p[N];
    gen_prompts(p, N, 42);
    int right = 0, valid = 0;
    for (int i = 0; i < N; i++) {
        json_t *m = user_msg(p[i].text);
        kd_teacher_completion c;
        memset(&c, 0, sizeof c);
        kd_error e;
        CU_ASSERT_EQUAL(kd_stub_complete(s, m, NULL, 0, 7, &c, &e), KD_OK);
        if (c.n_tool_calls >= 1 && strcmp(c.tool_calls[0].name, p[i].tool) == 0) {
            right++;
            json_t *a = json_loads(c.tool_calls[0].arguments, 0, NULL);
            if (a && kd_registry_validate(kd_registry_find(g_reg, p[i].tool), a, &e) == KD_OK) valid++;
            else fprintf(stderr, "\n  invalid args for '%s': %s (%s)", p[i].text, c.tool_calls[0].arguments, e.msg);
            json_decref(a);
        } else {
            fprintf(stderr, "\n  miss: '%s' -> %s (want %s)", p[i].text, c.n_tool_calls ? c.tool_calls[0].name : "(text)", p[i].tool);
        }
        kd_teacher_completion_free(&c);
        json_decref(m);
    }
    fprintf(stderr, "\n  stub tool choice: %d/%d = %.1f%%, valid arguments %d/%d\n", right, N, 100.0 * right / N, valid, right);
    CU_ASSERT_TRUE(right * 100 >= 95 * N);
    CU_ASSERT_TRUE(valid * 100 >= 95 * right);
    kd_stub_close(s);
}

/* Outside truth: BFCL v3 "multiple" (each prompt offers 2-4 functions, one is right) and "irrelevance"
 * (no offered function fits: the right answer is text). The stub's keyword matching is not a model;
 * these floors record what it does on prompts nobody here wrote. */
static void bfcl_accuracy(const char *set, int expect_call, double floor_pct) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data absent: BFCL accuracy not measured");
        return;
    }
    char path[4096], apath[4096];
    snprintf(path, sizeof path, "%s/bfcl/BFCL_v3_%s.json", data, set);
    snprintf(apath, sizeof apath, "%s/bfcl/possible_answer/BFCL_v3_%s.json", data, set);
    FILE *f = fopen(path, "r"), *fa = expect_call ? fopen(apath, "r") : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    char *line = NULL, *aline = NULL;
    size_t cap = 0, acap = 0;
    int n = 0, right = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        const char *want = NULL;
        json_t *ans = NULL;
        if (fa && getline(&aline, &acap, fa) > 0) {
            ans = json_loads(aline, 0, NULL);
            const json_t *gt = json_array_get(json_object_get(ans, "ground_truth"), 0);
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)gt, k, v) want = k;
        }
        const json_t *q = json_array_get(json_array_get(json_object_get(rec, "question"), 0), 0);
        const char *prompt = json_string_value(json_object_get(q, "content"));
        const char *got = prompt ? kd_stub_choose_tool(s, prompt, json_object_get(rec, "function")) : NULL;
        n++;
        if (expect_call ? (got && want && strcmp(got, want) == 0) : got == NULL) right++;
        json_decref(rec);
        json_decref(ans);
    }
    free(line);
    free(aline);
    fclose(f);
    if (fa) fclose(fa);
    fprintf(stderr, "\n  BFCL %s: %d/%d = %.1f%% %s\n", set, right, n, 100.0 * right / (n ? n : 1),
            expect_call ? "right tool" : "answered without a tool");
    CU_ASSERT_TRUE(n > 100);
    CU_ASSERT_TRUE(100.0 * right / n >= floor_pct);
    kd_stub_close(s);
}

static void test_stub_bfcl_multiple(void) { bfcl_accuracy("multiple", 1, 90); }
static void test_stub_bfcl_irrelevance(void) { bfcl_accuracy("irrelevance", 0, 75); }

/* The acceptance measure: prompts from `kdstep prompts synth` (another module's generator, with the
 * intended calls in metadata). A prompt counts as right when the stub calls exactly the intended tools in
 * order, or answers in text when none is intended. */
static void test_stub_synth_accuracy(void) {
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    enum { N = 600 };
    int right = 0, single = 0, single_right = 0, valid = 0, calls = 0;
    for (int i = 0; i < N; i++) {
        json_t *rec = NULL;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_synth_record(g_reg, 20261127, i, &rec, &e), KD_OK);
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        const json_t *want = json_object_get(json_object_get(rec, "metadata"), "tool_calls");
        kd_teacher_completion c;
        CU_ASSERT_EQUAL(ask(s, prompt, NULL, 0, 1, &c, &e), KD_OK);
        int ok = (size_t)c.n_tool_calls == json_array_size(want);
        for (int j = 0; ok && j < c.n_tool_calls; j++)
            ok = strcmp(c.tool_calls[j].name, json_string_value(json_object_get(json_array_get(want, (size_t)j), "name"))) == 0;
        right += ok;
        if (json_array_size(want) == 1) {
            single++;
            single_right += c.n_tool_calls >= 1 &&
                            strcmp(c.tool_calls[0].name, json_string_value(json_object_get(json_array_get(want, 0), "name"))) == 0;
        }
        for (int j = 0; ok && j < c.n_tool_calls; j++) {
            json_t *a = json_loads(c.tool_calls[j].arguments, 0, NULL);
            calls++;
            valid += a && kd_registry_validate(kd_registry_find(g_reg, c.tool_calls[j].name), a, NULL) == KD_OK;
            json_decref(a);
        }
        if (!ok) {
            char *w = json_dumps(want, JSON_COMPACT);
            fprintf(stderr, "\n  miss: '%s' -> %s%s (want %s)", prompt, c.n_tool_calls ? c.tool_calls[0].name : "(text)",
                    c.n_tool_calls > 1 ? " +more" : "", w);
            free(w);
        }
        kd_teacher_completion_free(&c);
        json_decref(rec);
    }
    fprintf(stderr, "\n  prompts synth: exact tool choice %d/%d = %.1f%% (single-tool prompts %d/%d); schema-valid arguments %d/%d\n",
            right, N, 100.0 * right / N, single_right, single, valid, calls);
    CU_ASSERT_TRUE(right * 100 >= 95 * N);
    kd_stub_close(s);
}

static int lp_equal(const kd_teacher_logprobs *a, const kd_teacher_logprobs *b) {
    if (a->n != b->n || a->k != b->k) return 0;
    size_t nk = (size_t)a->n * a->k;
    return memcmp(a->token_ids, b->token_ids, (size_t)a->n * 4) == 0 && memcmp(a->topk_ids, b->topk_ids, nk * 4) == 0 &&
           memcmp(a->topk_logprobs, b->topk_logprobs, nk * 4) == 0 && memcmp(a->tail_logprob, b->tail_logprob, (size_t)a->n * 4) == 0;
}

static void test_stub_deterministic(void) {
    kd_stub_teacher *s1 = open_stub(KD_TOOL_FORMAT_HERMES, 0.3, 0, 5), *s2 = open_stub(KD_TOOL_FORMAT_HERMES, 0.3, 0, 5);
    gen_prompt p[40];
    gen_prompts(p, 40, 9);
    int lp_differs_with_seed = 0;
    for (int i = 0; i < 40; i++) {
        json_t *m = user_msg(p[i].text);
        kd_teacher_completion a, b, c;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        memset(&c, 0, sizeof c);
        CU_ASSERT_EQUAL(kd_stub_complete(s1, m, NULL, 5, 11, &a, NULL), KD_OK);
        CU_ASSERT_EQUAL(kd_stub_complete(s2, m, NULL, 5, 11, &b, NULL), KD_OK);
        CU_ASSERT_EQUAL(kd_stub_complete(s1, m, NULL, 5, 12, &c, NULL), KD_OK);
        CU_ASSERT_STRING_EQUAL(a.text, b.text);
        CU_ASSERT_STRING_EQUAL(a.finish_reason, b.finish_reason);
        CU_ASSERT_EQUAL(a.n_tool_calls, b.n_tool_calls);
        CU_ASSERT_TRUE(lp_equal(&a.lp, &b.lp));
        lp_differs_with_seed += !lp_equal(&a.lp, &c.lp);
        kd_teacher_completion_free(&a);
        kd_teacher_completion_free(&b);
        kd_teacher_completion_free(&c);
        json_decref(m);
    }
    CU_ASSERT_TRUE(lp_differs_with_seed > 30); /* the seed matters */
    kd_stub_close(s1);
    kd_stub_close(s2);
}

static void check_normalized(const kd_teacher_logprobs *lp, double *worst) {
    for (int i = 0; i < lp->n; i++) {
        double mx = lp->tail_logprob[i];
        for (int j = 0; j < lp->k; j++)
            if (lp->topk_logprobs[(size_t)i * lp->k + j] > mx) mx = lp->topk_logprobs[(size_t)i * lp->k + j];
        double s = isfinite(lp->tail_logprob[i]) ? exp(lp->tail_logprob[i] - mx) : 0;
        for (int j = 0; j < lp->k; j++) {
            float x = lp->topk_logprobs[(size_t)i * lp->k + j];
            if (isfinite(x)) s += exp(x - mx);
            if (j) CU_ASSERT_TRUE(x <= lp->topk_logprobs[(size_t)i * lp->k + j - 1]); /* sorted */
        }
        double lse = mx + log(s);
        if (fabs(lse) > *worst) *worst = fabs(lse);
    }
}

static void test_stub_logprobs_normalized(void) {
    double temps[] = {0, 0.5, 1.0, 2.0};
    int ks[] = {1, 5, 20};
    double worst = 0;
    gen_prompt p[24];
    gen_prompts(p, 24, 3);
    for (int t = 0; t < 4; t++)
        for (int q = 0; q < 3; q++) {
            kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, temps[t], 1);
            for (int i = 0; i < 24; i++) {
                kd_teacher_completion c;
                CU_ASSERT_EQUAL(ask(s, p[i].text, NULL, ks[q], 1, &c, NULL), KD_OK);
                CU_ASSERT_EQUAL(c.lp.n, (int)strlen(c.text)); /* one token per byte without a tokenizer */
                CU_ASSERT_EQUAL(c.lp.n, c.completion_tokens);
                CU_ASSERT_EQUAL(c.lp.k, ks[q]);
                check_normalized(&c.lp, &worst);
                /* the written token is the most likely one */
                for (int r = 0; r < c.lp.n; r++) CU_ASSERT_EQUAL(c.lp.topk_ids[(size_t)r * c.lp.k], c.lp.token_ids[r]);
                kd_teacher_completion_free(&c);
            }
            kd_stub_close(s);
        }
    fprintf(stderr, "\n  worst |log-sum-exp(top-k, tail)| = %.3g\n", worst);
    CU_ASSERT_TRUE(worst < 1e-5);
}

static void test_stub_position_boosting(void) {
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, 1.0, 1);
    kd_teacher_completion c;
    CU_ASSERT_EQUAL_FATAL(ask(s, "Read the file config.json", NULL, 6, 3, &c, NULL), KD_OK);
    const char *name = strstr(c.text, "read_file");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    size_t at = (size_t)(name - c.text); /* byte == token without a tokenizer */
    /* at the tool name's first token, the runner-up is the first byte of another registered tool */
    int32_t second = c.lp.topk_ids[at * c.lp.k + 1];
    int is_other_tool_start = 0;
    for (int i = 0; i < g_reg->count; i++)
        is_other_tool_start |= strcmp(g_reg->tools[i].name, "read_file") != 0 && (unsigned char)g_reg->tools[i].name[0] == second;
    CU_ASSERT_TRUE(is_other_tool_start);
    /* inside the arguments, JSON structure gets the runner-up mass */
    const char *args = strstr(c.text, "config.json");
    size_t aat = (size_t)(args - c.text) + 2;
    int32_t arg2 = c.lp.topk_ids[aat * c.lp.k + 1];
    CU_ASSERT_PTR_NOT_NULL(strchr("\":,}{] [tfn01\n", (char)arg2));
    /* alternatives at the name get more mass than at free text */
    double name_alt = c.lp.topk_logprobs[at * c.lp.k + 1], text_alt = c.lp.topk_logprobs[1 * c.lp.k + 1];
    CU_ASSERT_TRUE(name_alt > text_alt);
    kd_teacher_completion_free(&c);
    /* scoring a conversation: rows outside the assistant's turns get no boosted alternatives (runner-ups
     * are background, equal); row 0 is empty, as vLLM's first prompt_logprobs entry is null */
    const char *text = "<|im_start|>user\nRead the file config.json<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"config.json\"}}\n</tool_call><|im_end|>\n";
    size_t rs = (size_t)(strstr(text, "<tool_call>") - text);
    kd_teacher_logprobs lp;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_stub_score(s, text, strlen(text), NULL, 4, 3, &lp, &e), KD_OK);
    CU_ASSERT_EQUAL(lp.n, (int)strlen(text));
    CU_ASSERT_EQUAL(lp.topk_ids[0], -1);
    CU_ASSERT_EQUAL(lp.token_ids[0], '<');
    for (size_t i = 1; i < rs; i++) {
        CU_ASSERT_EQUAL(lp.topk_logprobs[i * 4 + 1], lp.topk_logprobs[i * 4 + 3]);
        CU_ASSERT_TRUE(lp.topk_logprobs[i * 4 + 0] > lp.topk_logprobs[i * 4 + 1]);
    }
    size_t nm = (size_t)(strstr(text, "read_file") - text);
    CU_ASSERT_TRUE(lp.topk_logprobs[nm * 4 + 1] > lp.topk_logprobs[nm * 4 + 3]); /* boosted alternatives */
    /* the last row of the text (after <|im_end|>): not the assistant's */
    size_t last = strlen(text) - 1;
    CU_ASSERT_EQUAL(lp.topk_logprobs[last * 4 + 1], lp.topk_logprobs[last * 4 + 3]);
    /* the tail is what a client computes from the top-k: 1 - their mass */
    for (int i = 1; i < lp.n; i++) {
        double mass = 0;
        for (int j = 0; j < 4; j++) mass += exp(lp.topk_logprobs[i * 4 + j]);
        CU_ASSERT_DOUBLE_EQUAL(lp.tail_logprob[i], log(1 - mass), 1e-5);
    }
    kd_teacher_logprobs_free(&lp);
    kd_stub_close(s);
}

/* Scoring another writer's turn (on-policy distillation): while the written tokens follow what the
 * stub itself would write, the written token is on top; at the first token that leaves it the stub's
 * own token is on top and the written one is still plausible below it; after that, the written
 * tokens again. The stub's own answer scores exactly as before (nothing leaves it). */
static int top_is_written(const kd_teacher_logprobs *lp, int row) { return lp->topk_ids[row * lp->k] == lp->token_ids[row]; }

static void test_stub_scores_against_own_reply(void) {
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_error e;
    json_t *m = user_msg("Read the file config.json");
    kd_teacher_completion c;
    memset(&c, 0, sizeof c);
    CU_ASSERT_EQUAL_FATAL(kd_stub_complete(s, m, NULL, 0, 3, &c, &e), KD_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(strstr(c.text, "\"read_file\""));
    const char *head = "<|im_start|>user\nRead the file config.json<|im_end|>\n<|im_start|>assistant\n";
    char own[2048], wrong[2048], chat[2048];
    snprintf(own, sizeof own, "%s%s<|im_end|>\n", head, c.text);
    /* the same turn naming another registered tool: it leaves the stub's reply at the name's first byte */
    const char *nm = strstr(own, "read_file");
    snprintf(wrong, sizeof wrong, "%.*sget_weather%s", (int)(nm - own), own, nm + strlen("read_file"));
    /* a call where the stub answers in text */
    snprintf(chat, sizeof chat, "<|im_start|>user\nHello there, how are you today?<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n",
             c.text);
    size_t rs = strlen(head), at = (size_t)(nm - own);
    kd_teacher_logprobs lo, lw, lc;
    CU_ASSERT_EQUAL_FATAL(kd_stub_score(s, own, strlen(own), NULL, 4, 3, &lo, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_stub_score(s, wrong, strlen(wrong), NULL, 4, 3, &lw, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_stub_score(s, chat, strlen(chat), NULL, 4, 3, &lc, &e), KD_OK);
    for (int t = 1; t < lo.n; t++) CU_ASSERT_TRUE(top_is_written(&lo, t)); /* its own text: nothing moves */
    int moved = 0;
    for (int t = 1; t < lw.n; t++) {
        if ((size_t)t == at) {
            CU_ASSERT_EQUAL(lw.token_ids[t], 'g');
            CU_ASSERT_EQUAL(lw.topk_ids[t * 4], 'r'); /* what the stub would have written: read_file */
            /* the written byte: well below the stub's own, still above a uniform share (1/256 bytes) */
            CU_ASSERT_TRUE(lw.token_logprobs[t] < lw.topk_logprobs[t * 4] - 2.0f);
            CU_ASSERT_TRUE(lw.token_logprobs[t] > logf(1.0f / 256));
        } else {
            moved += !top_is_written(&lw, t);
        }
        if ((size_t)t < at) CU_ASSERT_EQUAL(memcmp(&lw.topk_logprobs[t * 4], &lo.topk_logprobs[t * 4], 16), 0);
    }
    CU_ASSERT_EQUAL(moved, 0); /* only the first token that leaves the stub's reply */
    /* small talk answered with a call: the first token of the turn is corrected, the rest as written */
    size_t cs = strlen("<|im_start|>user\nHello there, how are you today?<|im_end|>\n<|im_start|>assistant\n");
    CU_ASSERT_EQUAL(lc.token_ids[cs], '<');
    CU_ASSERT_NOT_EQUAL(lc.topk_ids[cs * 4], '<');
    for (int t = 1; t < lc.n; t++)
        if ((size_t)t != cs) CU_ASSERT_TRUE(top_is_written(&lc, t));
    (void)rs;
    kd_teacher_logprobs_free(&lo);
    kd_teacher_logprobs_free(&lw);
    kd_teacher_logprobs_free(&lc);
    kd_teacher_completion_free(&c);
    json_decref(m);
    kd_stub_close(s);
}

/* With the real student tokenizer (Qwen3's tokenizer.json, fetched by tests/fetch-tokenizers.sh): the
 * logprob rows are its tokens of the response, ids in its vocabulary, normalized, and the runner-ups at
 * a tool name are tokens of other registered names as that tokenizer splits them. */
static void test_stub_real_tokenizer(void) {
    const char *path = kd_test_src("tests/.cache/tokenizers/qwen3/tokenizer.json");
    if (access(path, R_OK) != 0) {
        kd_test_skip("tests/.cache/tokenizers/qwen3 absent (run tests/fetch-tokenizers.sh): real-tokenizer logprobs not checked");
        return;
    }
    kd_tokenizer *tok = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, path, &e), KD_OK);
    kd_stub_options o = {.tool_call_format = KD_TOOL_FORMAT_HERMES, .temperature = 1.0, .seed = 1};
    kd_stub_teacher *s;
    CU_ASSERT_EQUAL_FATAL(kd_stub_open(&s, &o, g_reg, tok, &e), KD_OK);
    int32_t V = kd_tokenizer_vocab_size(tok);
    double worst = 0;
    gen_prompt p[30];
    gen_prompts(p, 30, 5);
    for (int i = 0; i < 30; i++) {
        kd_teacher_completion c;
        CU_ASSERT_EQUAL_FATAL(ask(s, p[i].text, NULL, 8, 2, &c, &e), KD_OK);
        kd_encoding enc = {0};
        CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, c.text, strlen(c.text), 0, &enc, &e), KD_OK);
        CU_ASSERT_EQUAL(c.lp.n, (int)enc.count);
        CU_ASSERT_TRUE(c.lp.n < (int)strlen(c.text)); /* real merges, not bytes */
        size_t len = 0;
        for (int r = 0; r < c.lp.n && r < (int)enc.count; r++) {
            CU_ASSERT_EQUAL(c.lp.token_ids[r], enc.ids[r]);
            len += strlen(c.lp.tokens[r]);
            for (int j = 0; j < c.lp.k; j++) CU_ASSERT_TRUE(c.lp.topk_ids[(size_t)r * c.lp.k + j] >= 0 && c.lp.topk_ids[(size_t)r * c.lp.k + j] < V);
        }
        CU_ASSERT_EQUAL(len, strlen(c.text));
        check_normalized(&c.lp, &worst);
        if (c.n_tool_calls) { /* the first token of the name: runner-up is another tool's first token */
            const char *nm = strstr(c.text, c.tool_calls[0].name);
            size_t off = (size_t)(nm - c.text);
            for (size_t r = 0; r < enc.count; r++)
                if ((size_t)enc.offsets[r][0] == off) {
                    int32_t second = c.lp.topk_ids[r * c.lp.k + 1];
                    int found = 0;
                    for (int t = 0; t < g_reg->count && !found; t++) {
                        if (strcmp(g_reg->tools[t].name, c.tool_calls[0].name) == 0) continue;
                        kd_encoding ne = {0};
                        kd_tokenizer_encode(tok, g_reg->tools[t].name, strlen(g_reg->tools[t].name), 0, &ne, NULL);
                        found = ne.count && ne.ids[0] == second;
                        kd_encoding_free(&ne);
                    }
                    CU_ASSERT_TRUE(found);
                }
        }
        kd_encoding_free(&enc);
        kd_teacher_completion_free(&c);
    }
    fprintf(stderr, "\n  qwen3 tokenizer: worst |log-sum-exp| = %.3g\n", worst);
    CU_ASSERT_TRUE(worst < 1e-5);
    kd_stub_close(s);
    kd_tokenizer_close(tok);
}

/* One prompt, one answer: the exact text and finish reason where given, the calls where given. */
typedef struct answer_case {
    const char *what;
    int format;           /* KD_TOOL_FORMAT_* */
    const char *prompt;
    const char *tools;    /* per-request tools (JSON), or NULL: the registry */
    const char *text;     /* the exact answer text, or NULL */
    const char *finish;   /* or NULL */
    int n_calls;          /* -1: not checked */
    const char *calls[2][2]; /* name, arguments */
} answer_case;

static const answer_case ANSWERS[] = {
    {"hermes call", KD_TOOL_FORMAT_HERMES, "Read the file config.json", NULL,
     "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"config.json\"}}\n</tool_call>", "tool_calls", -1, {{0}}},
    {"inline JSON call", KD_TOOL_FORMAT_INLINE_JSON, "Read the file config.json", NULL,
     "I will use {\"name\": \"read_file\", \"arguments\": {\"path\": \"config.json\"}}", NULL, -1, {{0}}},
    {"no fitting tool: plain text", KD_TOOL_FORMAT_HERMES, "Tell me a joke about penguins", NULL, NULL, "stop", 0, {{0}}},
    {"several requests: several calls", KD_TOOL_FORMAT_HERMES,
     "What's the weather in Tokyo, then translate \"good night\" into French", NULL, NULL, NULL, 2,
     {{"get_weather", "{\"city\": \"Tokyo\"}"},
      {"translate_text", "{\"text\": \"good night\", \"target_language\": \"French\"}"}}},
    {"per-request tools (BFCL style, no wrapper) override the registry", KD_TOOL_FORMAT_HERMES,
     "What dividend does the stock of 'Apple' pay?",
     "[{\"name\":\"get_stock_dividend\",\"description\":\"Get the dividend of a company stock\","
     "\"parameters\":{\"type\":\"dict\",\"properties\":{\"company\":{\"type\":\"string\"}},\"required\":[\"company\"]}}]",
     NULL, NULL, 1, {{"get_stock_dividend", "{\"company\": \"Apple\"}"}}},
};

static void test_stub_answers(void) {
    for (size_t i = 0; i < sizeof ANSWERS / sizeof ANSWERS[0]; i++) {
        const answer_case *a = &ANSWERS[i];
        fprintf(stderr, "\n  case: %s", a->what);
        kd_stub_teacher *s = open_stub(a->format, 0, 0, 1);
        json_t *tools = a->tools ? json_loads(a->tools, 0, NULL) : NULL;
        kd_teacher_completion c;
        CU_ASSERT_EQUAL(ask(s, a->prompt, tools, 0, 1, &c, NULL), KD_OK);
        if (a->text) CU_ASSERT_STRING_EQUAL(c.text, a->text);
        if (a->finish) CU_ASSERT_STRING_EQUAL(c.finish_reason, a->finish);
        if (a->n_calls == 0) CU_ASSERT_PTR_NULL(strstr(c.text, "<tool_call>"));
        if (a->n_calls >= 0) CU_ASSERT_EQUAL_FATAL(c.n_tool_calls, a->n_calls);
        for (int k = 0; k < a->n_calls; k++) {
            CU_ASSERT_STRING_EQUAL(c.tool_calls[k].name, a->calls[k][0]);
            CU_ASSERT_STRING_EQUAL(c.tool_calls[k].arguments, a->calls[k][1]);
        }
        kd_teacher_completion_free(&c);
        json_decref(tools);
        kd_stub_close(s);
    }
}

/* Two calls, their results back to the stub: the final answer uses the results' values. */
static void test_stub_final_answer(void) {
    kd_stub_teacher *h = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_teacher_completion c;
    CU_ASSERT_EQUAL(ask(h, ANSWERS[3].prompt, NULL, 0, 1, &c, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(c.n_tool_calls, 2);
    kd_toolsim *sim;
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_open(&sim, g_reg, NULL, NULL), KD_OK);
    char *r0, *r1;
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_run_text(sim, c.tool_calls[0].name, c.tool_calls[0].arguments, &r0, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_run_text(sim, c.tool_calls[1].name, c.tool_calls[1].arguments, &r1, NULL), KD_OK);
    json_t *conv = json_pack("[{s:s,s:s},{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}},{s:s,s:s,s:{s:s,s:s}}]},{s:s,s:s,s:s},{s:s,s:s,s:s}]",
                             "role", "user", "content", "weather then translate", "role", "assistant", "content", "tool_calls", "id",
                             "c0", "type", "function", "function", "name", c.tool_calls[0].name, "arguments", c.tool_calls[0].arguments,
                             "id", "c1", "type", "function", "function", "name", c.tool_calls[1].name, "arguments",
                             c.tool_calls[1].arguments, "role", "tool", "tool_call_id", "c0", "content", r0, "role", "tool",
                             "tool_call_id", "c1", "content", r1);
    kd_teacher_completion_free(&c);
    CU_ASSERT_EQUAL(kd_stub_complete(h, conv, NULL, 0, 1, &c, NULL), KD_OK);
    json_t *w = json_loads(r0, 0, NULL);
    char temp[64];
    char *tv = json_dumps(json_object_get(w, "temperature"), JSON_ENCODE_ANY);
    snprintf(temp, sizeof temp, "temperature is %s", tv);
    KD_ASSERT_CONTAINS(c.text, "According to get_weather");
    KD_ASSERT_CONTAINS(c.text, temp);
    KD_ASSERT_CONTAINS(c.text, "According to translate_text");
    CU_ASSERT_EQUAL(c.n_tool_calls, 0);
    free(tv);
    json_decref(w);
    kd_teacher_completion_free(&c);
    free(r0);
    free(r1);
    kd_toolsim_close(sim);
    json_decref(conv);
    kd_stub_close(h);
}

static void test_stub_malformed(void) {
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 1.0, 0, 1);
    gen_prompt p[60];
    gen_prompts(p, 60, 77);
    int cut = 0, wrong = 0, unreg = 0;
    for (int i = 0; i < 60; i++) {
        kd_teacher_completion c;
        CU_ASSERT_EQUAL(ask(s, p[i].text, NULL, 0, (int64_t)i, &c, NULL), KD_OK);
        if (strcmp(c.finish_reason, "length") == 0) {
            CU_ASSERT_EQUAL(c.n_tool_calls, 0);
            CU_ASSERT_PTR_NULL(strstr(c.text, "</tool_call>"));
            cut++;
        } else if (c.n_tool_calls) {
            const char *name = c.tool_calls[0].name;
            if (!kd_registry_find(g_reg, name)) unreg++;
            else if (strcmp(name, p[i].tool) != 0) wrong++;
        }
        kd_teacher_completion_free(&c);
    }
    CU_ASSERT_TRUE(cut >= 8);
    CU_ASSERT_TRUE(wrong >= 8);
    CU_ASSERT_TRUE(unreg >= 8);
    CU_ASSERT_TRUE(cut + wrong + unreg >= 57);
    kd_stub_close(s);
}

static void test_teacher_interface_stub(void) {
    kd_config cfg;
    kd_config_defaults(&cfg);
    kd_teacher *t;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
    gen_prompt p[50];
    gen_prompts(p, 50, 1);
    for (int i = 0; i < 50; i++) {
        CU_ASSERT_EQUAL(submit_prompt(t, p[i].text, 1000 + (uint64_t)i, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(kd_teacher_pending(t), 50);
    int seen[50] = {0};
    kd_teacher_completion *c;
    while (kd_teacher_next(t, 0, &c, &e) == KD_OK && c) {
        CU_ASSERT_EQUAL(c->status, KD_OK);
        CU_ASSERT_EQUAL(c->lp.k, cfg.teacher.top_logprobs);
        if (c->tag >= 1000 && c->tag < 1050) seen[c->tag - 1000]++;
        kd_teacher_completion_free(c);
        free(c);
    }
    for (int i = 0; i < 50; i++) CU_ASSERT_EQUAL(seen[i], 1);
    CU_ASSERT_EQUAL(kd_teacher_pending(t), 0);
    kd_teacher_request r;
    kd_teacher_request_init(&r);
    json_t *empty = json_array();
    r.messages = empty;
    CU_ASSERT_EQUAL(kd_teacher_submit(t, &r, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "messages must be a non-empty array");
    json_decref(empty);
    kd_teacher_close(t);
    snprintf(cfg.teacher.tool_call_format, sizeof cfg.teacher.tool_call_format, "xml");
    CU_ASSERT_EQUAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "unknown format 'xml' (use hermes or inline_json)");
    snprintf(cfg.teacher.tool_call_format, sizeof cfg.teacher.tool_call_format, "hermes");
    snprintf(cfg.teacher.url, sizeof cfg.teacher.url, "ftp://example.com");
    CU_ASSERT_EQUAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "'ftp://example.com' is neither 'stub' nor an http(s):// URL");
    kd_config_free(&cfg);
}

/* Issue 21, finding G: matching a prompt against the offered tools costs time linear in their number
 * (word frequencies were counted tool against tool: 16k tools took 2.5 s). The time for 8x the tools
 * must grow about 8x, not 64x; compared within one run, so machine load cancels out. */
static double choose_time(kd_stub_teacher *s, int n) {
    json_t *tools = json_array();
    for (int i = 0; i < n; i++) {
        char name[64], desc[128];
        snprintf(name, sizeof name, "tool_%d_%s", i, i % 3 ? "lookup" : "convert");
        snprintf(desc, sizeof desc, "Does task number %d for the user, variant %d", i, i % 97);
        json_array_append_new(tools, json_pack("{s:s, s:{s:s, s:s, s:{s:s, s:{s:{s:s}}}}}", "type", "function", "function", "name",
                                               name, "description", desc, "parameters", "type", "object", "properties",
                                               "value", "type", "string"));
    }
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = kd_teacher_now();
        kd_stub_choose_tool(s, "Please convert 5 meters to feet", tools);
        double t = kd_teacher_now() - t0;
        if (t < best) best = t;
    }
    json_decref(tools);
    return best;
}

static void test_stub_tool_matching_linear(void) {
    kd_stub_teacher *s = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    double t1 = choose_time(s, 2000), t8 = choose_time(s, 16000);
    fprintf(stderr, "\n  2000 tools %.1f ms, 16000 tools %.1f ms (x%.1f; linear 8, quadratic 64)\n", t1 * 1e3, t8 * 1e3, t8 / t1);
    CU_ASSERT_TRUE(t8 < 24 * t1);
    CU_ASSERT_TRUE(t8 < 10.0);
    kd_stub_close(s);
}

static void add_tests(CU_pSuite s) {
    CU_add_test(s, "stub tool choice >= 95% on generated prompts", test_stub_tool_choice_accuracy);
    CU_add_test(s, "stub tool choice >= 95% on kdstep prompts synth", test_stub_synth_accuracy);
    CU_add_test(s, "stub tool choice on BFCL multiple (outside truth)", test_stub_bfcl_multiple);
    CU_add_test(s, "stub on BFCL irrelevance (outside truth)", test_stub_bfcl_irrelevance);
    CU_add_test(s, "stub is deterministic for a seed", test_stub_deterministic);
    CU_add_test(s, "stub top-k + tail log-sum-exp to 0", test_stub_logprobs_normalized);
    CU_add_test(s, "stub boosts by position, not over the prompt", test_stub_position_boosting);
    CU_add_test(s, "stub scores another writer's turn against its own reply", test_stub_scores_against_own_reply);
    CU_add_test(s, "stub logprobs over the real Qwen3 tokenizer", test_stub_real_tokenizer);
    CU_add_test(s, "stub answers: formats, text, several calls, per-request tools", test_stub_answers);
    CU_add_test(s, "stub final answer uses the tool results", test_stub_final_answer);
    CU_add_test(s, "stub malformed outputs", test_stub_malformed);
    CU_add_test(s, "teacher interface over the stub", test_teacher_interface_stub);
    CU_add_test(s, "stub: tool matching is linear", test_stub_tool_matching_linear);
}

int main(void) { return teacher_suite_main("teacher_stub", add_tests); }
