/* CUnit suite: the libcurl teacher client (src/teacher/client.c) against the stub server on a real
 * loopback socket, with every fault kind. */
#include "teacher_fixture.h"

/* ---- client against the stub server on loopback ---- */

typedef struct run_result {
    int n, ok, failed, dup, lost;
    kd_teacher_stats st;
    kd_server_counts counts;
    int retry_after_checked, retry_after_violations;
    int scored_ok;
} run_result;

static void run_client(kd_server_options so, int n, void (*tweak)(kd_config *), run_result *rr, int (*check)(kd_teacher_completion *)) {
    memset(rr, 0, sizeof *rr);
    kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_config cfg;
    kd_server *srv = serve_stub(stub, &so, &cfg);
    kd_error e;
    cfg.teacher.max_in_flight = 32;
    /* Only stalls (600 s) may time out: under a sanitizer the server answers 10-50x slower. */
    cfg.teacher.timeout_s = KD_SLOW_BUILD ? 8 : 0.5;
    cfg.teacher.connect_timeout_s = 1;
    cfg.teacher.max_retries = 8;
    cfg.teacher.backoff_base_s = 0.005;
    cfg.teacher.top_logprobs = 2;
    if (tweak) tweak(&cfg);
    kd_teacher *t;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
    gen_prompt *p = calloc((size_t)n, sizeof *p);
    gen_prompts(p, n, 123);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(submit_prompt(t, p[i].text, (uint64_t)i, &e), KD_OK);
    }
    int *seen = calloc((size_t)n, sizeof *seen);
    double t0 = kd_teacher_now();
    while (kd_teacher_pending(t) > 0 && kd_teacher_now() - t0 < (KD_SLOW_BUILD ? 300 : 60)) {
        kd_teacher_completion *c;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_next(t, 1.0, &c, &e), KD_OK);
        if (!c) continue;
        rr->n++;
        if (c->tag < (uint64_t)n) seen[c->tag]++;
        if (c->status == KD_OK) {
            rr->ok++;
            CU_ASSERT_PTR_NULL(c->error);
            CU_ASSERT_TRUE(c->n_tool_calls > 0 || c->text[0]);
            if (check) rr->scored_ok += check(c);
        } else {
            rr->failed++;
            CU_ASSERT_PTR_NOT_NULL(c->error);
        }
        /* Retry-After: the attempt after a 429 starts no earlier than its end + Retry-After */
        for (int a = 0; a + 1 < c->attempts && a + 1 < KD_TEACHER_MAX_ATTEMPTS_LOGGED; a++) {
            const kd_teacher_attempt *x = &c->attempt_log[a], *y = &c->attempt_log[a + 1];
            CU_ASSERT_TRUE(y->start_s >= x->end_s);
            if (x->http_status == 429 && x->retry_after_s > 0) {
                rr->retry_after_checked++;
                if (y->start_s < x->end_s + x->retry_after_s - 1e-3) rr->retry_after_violations++;
            }
        }
        kd_teacher_completion_free(c);
        free(c);
    }
    for (int i = 0; i < n; i++) {
        if (seen[i] == 0) rr->lost++;
        if (seen[i] > 1) rr->dup++;
    }
    kd_teacher_get_stats(t, &rr->st);
    /* the time spent parsing: some for every run that parsed answers, and less than the run took */
    CU_ASSERT_TRUE(rr->ok == 0 || rr->st.parse_s > 0);
    CU_ASSERT_TRUE(rr->st.parse_s < kd_teacher_now() - t0);
    kd_teacher_close(t);
    kd_server_get_counts(srv, &rr->counts);
    kd_server_stop(srv);
    kd_stub_close(stub);
    kd_config_free(&cfg);
    free(seen);
    free(p);
    char line[512];
    kd_server_format_counts(&rr->counts, line, sizeof line);
    fprintf(stderr, "\n  n=%d ok=%d failed=%d lost=%d dup=%d retries=%lld 429=%lld 5xx=%lld conn=%lld timeouts=%lld parse=%lld "
                    "min_limit=%d | server %s\n",
            rr->n, rr->ok, rr->failed, rr->lost, rr->dup, (long long)rr->st.retries, (long long)rr->st.http_429,
            (long long)rr->st.http_5xx, (long long)rr->st.conn_errors, (long long)rr->st.timeouts,
            (long long)rr->st.parse_errors, rr->st.min_in_flight_limit, line);
}

#define NREQ 500

static void expect_all_accounted(const run_result *rr, int fault, double rate) {
    CU_ASSERT_EQUAL(rr->n, NREQ);
    CU_ASSERT_EQUAL(rr->lost, 0);
    CU_ASSERT_EQUAL(rr->dup, 0);
    CU_ASSERT_EQUAL(rr->ok + rr->failed, NREQ);
    CU_ASSERT_TRUE(rr->ok >= NREQ - 5); /* 8 retries at 20% each: failing for good is rare */
    /* the server injected roughly the asked share */
    CU_ASSERT_TRUE(rr->counts.faults[fault] >= (int64_t)(NREQ * rate * 0.6));
    CU_ASSERT_EQUAL(rr->counts.faults[fault] + rr->counts.faults[KD_FAULT_NONE], rr->counts.requests);
}

/* Each fault kind at 20%: every request accounted for, plus what the client's counters must show. */
static void fault_fail(const run_result *rr) { CU_ASSERT_EQUAL(rr->st.http_5xx, rr->counts.faults[KD_FAULT_FAIL]); }
static void fault_rate_limit(const run_result *rr) {
    CU_ASSERT_EQUAL(rr->st.http_429, rr->counts.faults[KD_FAULT_RATE_LIMIT]);
    CU_ASSERT_TRUE(rr->retry_after_checked >= 50);
    CU_ASSERT_EQUAL(rr->retry_after_violations, 0);
    CU_ASSERT_TRUE(rr->st.min_in_flight_limit <= 16); /* AIMD cut the limit of 32 */
}
static void fault_malformed(const run_result *rr) { CU_ASSERT_EQUAL(rr->st.parse_errors, rr->counts.faults[KD_FAULT_MALFORMED]); }
static void fault_truncate(const run_result *rr) {
    CU_ASSERT_TRUE(rr->st.conn_errors + rr->st.parse_errors >= rr->counts.faults[KD_FAULT_TRUNCATE]);
}
/* curl itself resends a request whose reused connection closed before any byte came back, so only
 * some drops surface as connection errors; none may be lost either way */
static void fault_drop(const run_result *rr) { CU_ASSERT_TRUE(rr->st.conn_errors > 0); }
static void fault_stall(const run_result *rr) { CU_ASSERT_EQUAL(rr->st.timeouts, rr->counts.faults[KD_FAULT_STALL]); }

typedef struct fault_case {
    const char *title;
    kd_server_options so;
    int fault; /* KD_FAULT_*, injected at 20% */
    void (*check)(const run_result *rr);
} fault_case;

static const fault_case FAULTS[] = {
    {"client: 20% 500s", {.latency_ms = 1, .fail_rate = 0.2, .seed = 1}, KD_FAULT_FAIL, fault_fail},
    {"client: 20% 429s with Retry-After", {.latency_ms = 1, .rate_limit = 0.2, .retry_after_s = 1, .seed = 2}, KD_FAULT_RATE_LIMIT,
     fault_rate_limit},
    {"client: 20% malformed bodies", {.latency_ms = 1, .malformed_rate = 0.2, .seed = 3}, KD_FAULT_MALFORMED, fault_malformed},
    {"client: 20% truncated bodies", {.latency_ms = 1, .truncate_rate = 0.2, .seed = 4}, KD_FAULT_TRUNCATE, fault_truncate},
    {"client: 20% dropped connections", {.latency_ms = 1, .drop_rate = 0.2, .seed = 5}, KD_FAULT_DROP, fault_drop},
    {"client: 20% stalls", {.latency_ms = 1, .stall_rate = 0.2, .seed = 6}, KD_FAULT_STALL, fault_stall},
};

/* Registered once per case, in order: CUnit runs a suite's tests in the order they were added. */
static size_t g_fault_next;
static void test_client_fault(void) {
    const fault_case *f = &FAULTS[g_fault_next++];
    run_result rr;
    run_client(f->so, NREQ, NULL, &rr, NULL);
    expect_all_accounted(&rr, f->fault, 0.2);
    f->check(&rr);
}

static void few_retries(kd_config *cfg) {
    cfg->teacher.max_retries = 2;
    cfg->teacher.timeout_s = KD_SLOW_BUILD ? 5 : 0.3;
}

/* A request that cannot succeed ends as one recorded failure with its status and what went wrong. */
typedef struct give_up_case {
    const char *what;
    double fail_rate;    /* the server's share of 500s; < 0: no server listens */
    const char *path;    /* appended to http://127.0.0.1:PORT */
    int status;          /* c->status; -1: not checked */
    int attempts;        /* 0: not checked */
    int http_status;
    const char *error[2]; /* in c->error (NULL: none) */
    const char *excerpt;  /* in c->body_excerpt, or NULL */
} give_up_case;

static const give_up_case GIVE_UPS[] = {
    {"every request fails", 1.0, "/v1/", KD_ERR_NET, 3, 500,
     {"teacher request 77: gave up after 3 attempts; last: HTTP 500; body: {\"error\":{\"message\":\"internal error (injected)", NULL},
     "internal error (injected)"},
    {"nobody listening: connection errors", -1, "/v1/", KD_ERR_NET, 0, 0,
     {"teacher request 78: gave up after 3 attempts; last: Failed to connect", NULL}, NULL},
    {"a 404 is not retried", 0, "/api", -1, 1, 404,
     {"HTTP 404 from http://127.0.0.1:",
      "/api/v1/chat/completions (not retried; check the URL, model and API key variable KDSTEP_API_KEY)"},
     NULL},
};

static void test_client_gives_up(void) {
    kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_error e;
    for (size_t i = 0; i < sizeof GIVE_UPS / sizeof GIVE_UPS[0]; i++) {
        const give_up_case *g = &GIVE_UPS[i];
        fprintf(stderr, "\n  case: %s", g->what);
        kd_server_options so = {.latency_ms = 0, .fail_rate = g->fail_rate > 0 ? g->fail_rate : 0, .seed = 7};
        kd_server *srv = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_server_start(&srv, &so, stub, NULL, &e), KD_OK);
        int port = kd_server_port(srv);
        if (g->fail_rate < 0) { /* a port nobody listens on any more */
            kd_server_stop(srv);
            srv = NULL;
        }
        kd_config cfg;
        kd_config_defaults(&cfg);
        few_retries(&cfg);
        cfg.teacher.backoff_base_s = 0.001;
        snprintf(cfg.teacher.url, sizeof cfg.teacher.url, "http://127.0.0.1:%d%s", port, g->path);
        kd_teacher *t;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
        uint64_t tag = 77 + i;
        CU_ASSERT_EQUAL(submit_prompt(t, "Read the file a.txt", tag, &e), KD_OK);
        kd_teacher_completion *c = await_one(t, &e);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(c->tag, tag);
        if (g->status >= 0) CU_ASSERT_EQUAL(c->status, g->status);
        if (g->attempts) CU_ASSERT_EQUAL(c->attempts, g->attempts);
        CU_ASSERT_EQUAL(c->http_status, g->http_status);
        for (int k = 0; k < 2; k++)
            if (g->error[k]) KD_ASSERT_CONTAINS(c->error, g->error[k]);
        if (g->excerpt) KD_ASSERT_CONTAINS(c->body_excerpt, g->excerpt);
        close_loopback(c, t, &cfg, srv, NULL); /* frees srv */
    }
    kd_stub_close(stub);
}

/* A planted key never shows: not in log lines (debug level, captured from fd 2), errors, excerpts. */
static void test_client_api_key_never_shown(void) {
    const char *key = "sk-PLANTED-7f3a9c2e41d86b5b0e";
    setenv("KDSTEP_TEST_PLANTED_KEY", key, 1);
    const char *logpath = kd_test_write("key.log", "");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(logpath, O_WRONLY | O_TRUNC);
    dup2(fd, 2);
    close(fd);
    int old_level = kd_log_get_level();
    kd_log_set_level(KD_LOG_DEBUG);
    kd_server_options so = {.latency_ms = 0, .fail_rate = 0.6, .echo_auth = 1, .seed = 8};
    kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_server *srv;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_server_start(&srv, &so, stub, NULL, &e), KD_OK);
    kd_config cfg;
    kd_config_defaults(&cfg);
    cfg.teacher.max_retries = 1;
    cfg.teacher.backoff_base_s = 0.001;
    snprintf(cfg.teacher.api_key_env, sizeof cfg.teacher.api_key_env, "KDSTEP_TEST_PLANTED_KEY");
    snprintf(cfg.teacher.url, sizeof cfg.teacher.url, "http://127.0.0.1:%d", kd_server_port(srv));
    kd_teacher *t;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
    char *everything = calloc(1, 1 << 20);
    size_t len = 0;
    for (int i = 0; i < 60; i++) {
        submit_prompt(t, "Search the web for planted keys", (uint64_t)i, &e);
    }
    int failed = 0, echoed = 0;
    while (kd_teacher_pending(t) > 0) {
        kd_teacher_completion *c;
        if (kd_teacher_next(t, 2, &c, &e) || !c) break;
        if (c->status) {
            failed++;
            len += (size_t)snprintf(everything + len, (1 << 20) - len, "%s\n%s\n", c->error, c->body_excerpt ? c->body_excerpt : "");
            /* the server did echo it back, so the redaction is what kept it out */
            echoed += strstr(c->error, "you sent Bearer *****") != NULL;
        } else len += (size_t)snprintf(everything + len, (1 << 20) - len, "%s\n", c->text);
        kd_teacher_completion_free(c);
        free(c);
    }
    kd_teacher_close(t);
    kd_server_stop(srv);
    kd_stub_close(stub);
    kd_config_free(&cfg);
    kd_log_set_level(old_level);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *log = NULL;
    size_t loglen = 0;
    CU_ASSERT_EQUAL_FATAL(kd_read_file(logpath, &log, &loglen, NULL), KD_OK);
    CU_ASSERT_TRUE(failed > 0);
    CU_ASSERT_TRUE(echoed > 0);
    CU_ASSERT_TRUE(loglen > 0); /* debug lines about retries were written */
    CU_ASSERT_PTR_NULL(strstr(log, key));
    CU_ASSERT_PTR_NULL(strstr(everything, key));
    CU_ASSERT_PTR_NULL(strstr(log, "PLANTED"));
    CU_ASSERT_PTR_NULL(strstr(everything, "PLANTED"));
    free(log);
    free(everything);
    unsetenv("KDSTEP_TEST_PLANTED_KEY");
}

/* Scoring a whole conversation through the HTTP client (chat and completions modes) against the stub
 * server gives, bit for bit, what the in-process stub backend gives: ids, texts, logprobs, tails. */
static void test_client_scores_conversation(void) {
    kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
    kd_server_options so = {.latency_ms = 0, .seed = 3};
    kd_server *srv;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_server_start(&srv, &so, stub, "stub-teacher", &e), KD_OK);
    json_t *m = json_pack("[{s:s,s:s},{s:s,s:s,s:[{s:s,s:s,s:{s:s,s:s}}]},{s:s,s:s,s:s,s:s},{s:s,s:s}]", "role", "user", "content",
                          "Read the file config.json", "role", "assistant", "content", "", "tool_calls", "id", "call_0", "type",
                          "function", "function", "name", "read_file", "arguments", "{\"path\": \"config.json\"}", "role", "tool",
                          "tool_call_id", "call_0", "name", "read_file", "content", "{\"text\": \"port: 80\"}", "role", "assistant",
                          "content", "Here is what I found. According to read_file, text is port: 80.");
    json_t *tools = kd_registry_to_openai(g_reg);
    kd_teacher_logprobs want;
    CU_ASSERT_EQUAL_FATAL(kd_stub_score_conversation(stub, m, tools, 3, 5, &want, &e), KD_OK);
    const char *modes[2] = {"chat", "completions"};
    for (int mode = 0; mode < 2; mode++) {
        kd_config cfg;
        config_for_server(&cfg, srv);
        snprintf(cfg.teacher.scoring, sizeof cfg.teacher.scoring, "%s", modes[mode]);
        cfg.teacher.top_logprobs = 3;
        cfg.teacher.seed = 5;
        kd_teacher *t;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_teacher_submit_score(t, m, tools, 7, &e), KD_OK);
        kd_teacher_completion *c = NULL;
        for (int w = 0; w < 100 && !c; w++) CU_ASSERT_EQUAL_FATAL(kd_teacher_next(t, 1.0, &c, &e), KD_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(c->status, KD_OK);
        CU_ASSERT_EQUAL(c->tag, 7);
        CU_ASSERT_TRUE(c->scored);
        CU_ASSERT_EQUAL_FATAL(c->lp.n, want.n);
        CU_ASSERT_EQUAL_FATAL(c->lp.k, 3);
        int same = 1;
        for (int i = 0; i < want.n; i++) {
            same &= c->lp.token_ids[i] == want.token_ids[i] || i == 0;
            same &= memcmp(&c->lp.tail_logprob[i], &want.tail_logprob[i], 4) == 0;
            same &= i == 0 || strcmp(c->lp.tokens[i], want.tokens[i]) == 0;
            for (int j = 0; j < 3; j++) {
                same &= c->lp.topk_ids[i * 3 + j] == want.topk_ids[i * 3 + j];
                same &= memcmp(&c->lp.topk_logprobs[i * 3 + j], &want.topk_logprobs[i * 3 + j], 4) == 0;
            }
        }
        CU_ASSERT_TRUE(same);
        kd_teacher_completion_free(c);
        free(c);
        kd_teacher_close(t);
        kd_config_free(&cfg);
    }
    kd_teacher_logprobs_free(&want);
    json_decref(tools);
    json_decref(m);
    kd_server_stop(srv);
    kd_stub_close(stub);
}

/* Issue 21: teacher.request_deadline_s bounds one request's attempts, backoff and Retry-After waits
 * together. Against a real loopback server that fails every request (500), rate-limits every one (429,
 * Retry-After 1 s) or never answers (each attempt would wait teacher.timeout_s = 100 s), with retries
 * to spare, the request gives up by the deadline with an error that names the key. */
static void test_client_request_deadline(void) {
    const struct {
        const char *what;
        kd_server_options so;
    } cases[] = {
        {"500", {.fail_rate = 1.0, .seed = 1}},
        {"429", {.rate_limit = 1.0, .retry_after_s = 1, .seed = 1}},
        {"stall", {.stall_rate = 1.0, .seed = 1}},
    };
    const double deadline = 1.5, slack = KD_SLOW_BUILD ? 5.0 : 1.0; /* slack: a loaded machine's scheduling */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_stub_teacher *stub = open_stub(KD_TOOL_FORMAT_HERMES, 0, 0, 1);
        kd_server *srv;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_server_start(&srv, &cases[i].so, stub, "stub-teacher", &e), KD_OK);
        kd_config cfg;
        config_for_server(&cfg, srv);
        cfg.teacher.timeout_s = 100;
        cfg.teacher.max_retries = 1000;
        cfg.teacher.backoff_base_s = 0.1;
        cfg.teacher.request_deadline_s = deadline;
        kd_teacher *t;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_open(&t, &cfg, g_reg, NULL, &e), KD_OK);
        double t0 = kd_teacher_now();
        CU_ASSERT_EQUAL_FATAL(submit_prompt(t, "What is the weather in Oslo?", 1, &e), KD_OK);
        kd_teacher_completion *c = await_one(t, &e);
        double took = kd_teacher_now() - t0;
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        fprintf(stderr, "\n  %s: gave up after %.2f s, %d attempts: %s", cases[i].what, took, c->attempts, c->error ? c->error : "");
        CU_ASSERT_NOT_EQUAL(c->status, KD_OK);
        CU_ASSERT_TRUE(took <= deadline + slack);
        CU_ASSERT_TRUE(c->done_s - c->attempt_log[0].start_s <= deadline + slack);
        KD_ASSERT_CONTAINS(c->error, "teacher.request_deadline_s (1.5 s)");
        KD_ASSERT_CONTAINS(c->error, "raise teacher.request_deadline_s");
        if (i < 2) CU_ASSERT_TRUE(c->attempts >= 2); /* it did retry until the deadline */
        close_loopback(c, t, &cfg, srv, stub);
    }
}

static void add_tests(CU_pSuite s) {
    CU_add_test(s, "client: teacher.request_deadline_s bounds a request's retries (500, 429, stall)", test_client_request_deadline);
    for (size_t i = 0; i < sizeof FAULTS / sizeof FAULTS[0]; i++) CU_add_test(s, FAULTS[i].title, test_client_fault);
    CU_add_test(s, "client: gives up with status and excerpt", test_client_gives_up);
    CU_add_test(s, "client: API key never shown", test_client_api_key_never_shown);
    CU_add_test(s, "client: scoring a conversation equals the stub's, chat and completions", test_client_scores_conversation);
}

int main(void) { return teacher_suite_main("teacher_client", add_tests); }
