/* Test helper for the teacher suites (test_teacher_stub.c, test_teacher_response.c, test_teacher_client.c,
 * test_teacher_server.c): the tool registry of configs/tools.json, the stub teacher, and one-prompt
 * requests. */
#ifndef KD_TEACHER_FIXTURE_H
#define KD_TEACHER_FIXTURE_H
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KD_SLOW_BUILD 1
#endif
#endif
#if !defined(KD_SLOW_BUILD) && defined(__SANITIZE_ADDRESS__)
#define KD_SLOW_BUILD 1
#endif
#ifndef KD_SLOW_BUILD
#define KD_SLOW_BUILD 0
#endif
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/log.h"
#include "kdstep/registry.h"
#include "kdstep/server.h"
#include "kdstep/synth.h"
#include "kdstep/teacher.h"
#include "kdstep/toolsim.h"
#include "testutil.h"

static kd_registry *g_reg;

/* The config's defaults, with teacher.url at a kd_server running on loopback. */
static inline void config_for_server(kd_config *cfg, kd_server *srv) {
    kd_config_defaults(cfg);
    snprintf(cfg->teacher.url, sizeof cfg->teacher.url, "http://127.0.0.1:%d", kd_server_port(srv));
}

static inline kd_stub_teacher *open_stub(int fmt, double malformed, double temperature, int64_t seed) {
    kd_stub_options o = {.tool_call_format = fmt, .malformed_rate = malformed, .temperature = temperature, .seed = seed};
    kd_stub_teacher *s = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_stub_open(&s, &o, g_reg, NULL, &e), KD_OK);
    return s;
}

/* `stub` behind a kd_server on loopback serving "stub-teacher", and cfg's defaults with teacher.url at it. */
static inline kd_server *serve_stub(kd_stub_teacher *stub, const kd_server_options *so, kd_config *cfg) {
    kd_server *srv = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_server_start(&srv, so, stub, "stub-teacher", &e), KD_OK);
    config_for_server(cfg, srv);
    return srv;
}

/* The end of a loopback round: the answer (heap-allocated), the client, its config, then the server
 * and the stub; NULL ones are skipped. */
static inline void close_loopback(kd_teacher_completion *c, kd_teacher *t, kd_config *cfg, kd_server *srv, kd_stub_teacher *stub) {
    if (c) {
        kd_teacher_completion_free(c);
        free(c);
    }
    kd_teacher_close(t);
    kd_config_free(cfg);
    if (srv) kd_server_stop(srv);
    if (stub) kd_stub_close(stub);
}

static inline json_t *user_msg(const char *text) { return json_pack("[{s:s,s:s}]", "role", "user", "content", text); }

/* The stub's answer to one user prompt (tools: per-request tools, or NULL for the registry). */
static inline int ask(kd_stub_teacher *s, const char *prompt, const json_t *tools, int k, int64_t seed, kd_teacher_completion *c,
                      kd_error *e) {
    memset(c, 0, sizeof *c);
    json_t *m = user_msg(prompt);
    int rc = kd_stub_complete(s, m, tools, k, seed, c, e);
    json_decref(m);
    return rc;
}

/* Submit one user prompt to a teacher under `tag`. */
static inline int submit_prompt(kd_teacher *t, const char *prompt, uint64_t tag, kd_error *e) {
    kd_teacher_request r;
    kd_teacher_request_init(&r);
    json_t *m = user_msg(prompt);
    r.messages = m;
    r.tag = tag;
    int rc = kd_teacher_submit(t, &r, e);
    json_decref(m);
    return rc;
}

/* The next finished completion (waiting up to 5 s at a time while any is pending), or NULL. */
static inline kd_teacher_completion *await_one(kd_teacher *t, kd_error *e) {
    kd_teacher_completion *c = NULL;
    while (!c && kd_teacher_next(t, 5, &c, e) == KD_OK && kd_teacher_pending(t)) {
    }
    return c;
}

/* ---- a small deterministic prompt generator with intended tools ---- */

typedef struct gen_prompt {
    char text[512];
    const char *tool;
} gen_prompt;

static inline const char *pick(const char **list, uint64_t *rng) {
    int n = 0;
    while (list[n]) n++;
    return list[kd_splitmix64(rng) % (uint64_t)n];
}

static inline void gen_prompts(gen_prompt *out, int n, uint64_t seed) {
    static const char *files[] = {"config.json", "src/main.c", "notes/todo.txt", "data/report.csv", "README.md", "setup.py", NULL};
    static const char *dirs[] = {"src", "docs/", "data/raw", "tests", "/var/log", NULL};
    static const char *topics[] = {"rust async runtimes", "the history of Rome", "best hiking boots", "quantum error correction",
                                   "vegan lasagna recipe", "HDF5 chunking", NULL};
    static const char *urls[] = {"https://example.com/post/1", "https://news.ycombinator.com", "http://docs.python.org/3/", NULL};
    static const char *cities[] = {"Paris", "Tokyo", "Berlin", "New York", "Sydney", "Toronto", NULL};
    static const char *langs[] = {"Spanish", "French", "German", "Japanese", NULL};
    static const char *tickers[] = {"AAPL", "MSFT", "NVDA", "TSLA", "GOOG", NULL};
    static const char *people[] = {"ana@example.com", "bob@corp.io", "li@uni.edu", NULL};
    static const char *cmds[] = {"ls -la", "make test", "git status", "df -h", NULL};
    static const char *exprs[] = {"12 * 7 + 3", "(4 + 5) / 3", "2^10 - 1", "15 % 4", NULL};
    uint64_t rng = seed;
    for (int i = 0; i < n; i++) {
        char *t = out[i].text;
        size_t cap = sizeof out[i].text;
        int kind = (int)(kd_splitmix64(&rng) % 16), v = (int)(kd_splitmix64(&rng) % 3);
        switch (kind) {
        case 0:
            out[i].tool = "read_file";
            snprintf(t, cap, v == 0 ? "Read the file %s" : v == 1 ? "Show me what is in %s, read it please" : "Open %s and tell me its contents",
                     pick(files, &rng));
            break;
        case 1:
            out[i].tool = "file.write";
            snprintf(t, cap, v == 0 ? "Write \"hello world\" to the file %s" : v == 1 ? "Save the text 'done' into %s" : "Create a file %s containing \"x = 1\"",
                     pick(files, &rng));
            break;
        case 2:
            out[i].tool = "list_directory";
            snprintf(t, cap, v == 0 ? "List the directory %s" : v == 1 ? "What files are in the folder %s?" : "List everything in %s recursively",
                     pick(dirs, &rng));
            break;
        case 3:
            out[i].tool = "web.search";
            snprintf(t, cap, v == 0 ? "Search the web for %s" : v == 1 ? "Look up %s online and give me the top results" : "Find web results about %s",
                     pick(topics, &rng));
            break;
        case 4:
            out[i].tool = "web.fetch";
            snprintf(t, cap, v == 0 ? "Fetch %s" : v == 1 ? "Download the page at %s and give me its text" : "Get the readable text of %s",
                     pick(urls, &rng));
            break;
        case 5:
            out[i].tool = "calculator";
            snprintf(t, cap, v == 0 ? "Calculate %s" : v == 1 ? "What is %s?" : "Evaluate the expression %s", pick(exprs, &rng));
            break;
        case 6:
            out[i].tool = "convert_units";
            snprintf(t, cap, v == 0 ? "Convert %d kilometers to miles" : v == 1 ? "How many feet is %d meters? Convert it" : "Convert %d pounds into kilograms",
                     (int)(kd_splitmix64(&rng) % 500) + 1);
            break;
        case 7:
            out[i].tool = "calendar.create_event";
            snprintf(t, cap, v == 0 ? "Create a calendar event called \"Standup\" on 2026-03-%02d at 09:30" : v == 1 ? "Schedule a meeting titled 'Review' on 2026-04-%02d at 14:00" : "Add an event \"Dentist\" to my calendar on 2026-05-%02d at 08:15",
                     (int)(kd_splitmix64(&rng) % 28) + 1);
            break;
        case 8:
            out[i].tool = "calendar.list_events";
            snprintf(t, cap, v == 0 ? "List my calendar events between 2026-01-%02d and 2026-02-01" : v == 1 ? "What events do I have from 2026-06-%02d to 2026-06-30?" : "Show the calendar events between 2026-09-%02d and 2026-10-01",
                     (int)(kd_splitmix64(&rng) % 28) + 1);
            break;
        case 9:
            out[i].tool = "get_weather";
            snprintf(t, cap, v == 0 ? "What's the weather in %s right now?" : v == 1 ? "Get the current weather for %s in celsius" : "Is it sunny in %s today? Check the weather",
                     pick(cities, &rng));
            break;
        case 10:
            out[i].tool = "get_forecast";
            snprintf(t, cap, v == 0 ? "Give me the %d day forecast for %s" : v == 1 ? "What is the weather forecast for the next %d days in %s?" : "Daily forecast, %d days, %s please",
                     (int)(kd_splitmix64(&rng) % 7) + 2, pick(cities, &rng));
            break;
        case 11:
            out[i].tool = "shell.run";
            snprintf(t, cap, v == 0 ? "Run the shell command `%s`" : v == 1 ? "Execute '%s' in the sandbox" : "Run `%s` and show me the output and exit code",
                     pick(cmds, &rng));
            break;
        case 12:
            out[i].tool = "email.send";
            snprintf(t, cap, v == 0 ? "Send an email to %s with subject \"Status\" saying \"all green\"" : v == 1 ? "Email %s: subject 'Lunch', body 'noon?'" : "Send %s an email titled \"Invoice\" with body \"attached\"",
                     pick(people, &rng));
            break;
        case 13:
            out[i].tool = "email.search";
            snprintf(t, cap, v == 0 ? "Search my mailbox for \"invoice\"" : v == 1 ? "Find emails from %s in my inbox" : "Search the mailbox for messages about \"travel\"",
                     pick(people, &rng));
            break;
        case 14:
            out[i].tool = "translate_text";
            snprintf(t, cap, v == 0 ? "Translate \"good morning\" into %s" : v == 1 ? "How do you say 'thank you' in %s? Translate it" : "Translate the text \"where is the station\" to %s",
                     pick(langs, &rng));
            break;
        default:
            out[i].tool = "stock.get_price";
            snprintf(t, cap, v == 0 ? "What's the latest stock price of %s?" : v == 1 ? "Get the price of %s shares in EUR" : "Stock quote for ticker %s",
                     pick(tickers, &rng));
            break;
        }
    }
}

/* main() of a teacher suite: open the registry, run the tests `add` registers, close it. */
static inline int teacher_suite_main(const char *name, void (*add)(CU_pSuite)) {
    CU_initialize_registry();
    kd_error e;
    if (kd_registry_open(&g_reg, &e) || kd_registry_load_file(g_reg, kd_test_src("configs/tools.json"), &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    add(CU_add_suite(name, NULL, NULL));
    int rc = kd_test_main();
    kd_registry_close(g_reg);
    return rc;
}

#endif
