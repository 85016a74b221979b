/* Benchmark: the teacher client against a running server. Keeps --in-flight requests going until --n
 * have finished; prints requests/s, the ideal (in-flight / latency) and the client's CPU time per
 * request (getrusage: user + system, request building and response parsing included).
 *   bench_teacher --url URL --n N --in-flight K --latency-ms L [--top-logprobs T]
 * or, the parser alone on a saved response body (no network):
 *   bench_teacher --parse FILE [--n N] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kdstep/config.h"
#include "kdstep/registry.h"
#include "kdstep/teacher.h"

static long minflt(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static double user_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* Parse one saved body n times: CPU per parse with the fast scanner and with the jansson reference. */
static int parse_only(const char *path, long n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_teacher: cannot open %s\n", path);
        return 1;
    }
    static char body[1 << 22];
    size_t len = fread(body, 1, sizeof body, f);
    fclose(f);
    typedef int (*parser)(const char *, size_t, kd_teacher_completion *, kd_error *);
    parser ps[2] = {kd_teacher_parse_chat_response, kd_teacher_parse_chat_response_ref};
    double us[2];
    int rows = 0;
    for (int pi = 0; pi < 2; pi++) {
        long reps = pi ? n / 10 + 1 : n;
        double c0 = cpu_s();
        for (long r = 0; r < reps; r++) {
            kd_teacher_completion c;
            memset(&c, 0, sizeof c);
            kd_error e;
            if (ps[pi](body, len, &c, &e)) {
                fprintf(stderr, "bench_teacher: %s: %s\n", path, e.msg);
                return 1;
            }
            rows = c.lp.n;
            kd_teacher_completion_free(&c);
        }
        us[pi] = (cpu_s() - c0) / (double)reps * 1e6;
    }
    printf("parse %zu bytes (%d logprob rows): fast %.1f us (%.0f MB/s), jansson reference %.1f us\n", len, rows, us[0],
           (double)len / us[0], us[1]);
    printf("{\"parse_bytes\": %zu, \"parse_us\": %.1f, \"parse_mb_s\": %.0f, \"ref_parse_us\": %.1f}\n", len, us[0],
           (double)len / us[0], us[1]);
    return 0;
}

/* Parse one saved scoring answer (a whole conversation's prompt_logprobs) n times: the fast parser and
 * the jansson reference, CPU per parse and bytes per second. */
static int parse_prompt_only(const char *path, long n, int k) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_teacher: cannot open %s\n", path);
        return 1;
    }
    static char body[1 << 25];
    size_t len = fread(body, 1, sizeof body, f);
    fclose(f);
    typedef int (*parser)(const char *, size_t, int, kd_teacher_logprobs *, kd_error *);
    parser ps[2] = {kd_teacher_parse_prompt_logprobs, kd_teacher_parse_prompt_logprobs_ref};
    double us[2];
    int rows = 0;
    for (int pi = 0; pi < 2; pi++) {
        long reps = pi ? n / 10 + 1 : n;
        double c0 = cpu_s();
        for (long r = 0; r < reps; r++) {
            kd_teacher_logprobs lp;
            kd_error e;
            if (ps[pi](body, len, k, &lp, &e)) {
                fprintf(stderr, "bench_teacher: %s: %s\n", path, e.msg);
                return 1;
            }
            rows = lp.n;
            kd_teacher_logprobs_free(&lp);
        }
        us[pi] = (cpu_s() - c0) / (double)reps * 1e6;
    }
    printf("parse prompt_logprobs %zu bytes (%d rows, k %d): fast %.1f us (%.0f MB/s), jansson reference %.1f us (%.0f MB/s)\n",
           len, rows, k, us[0], (double)len / us[0], us[1], (double)len / us[1]);
    printf("{\"prompt_parse_bytes\": %zu, \"prompt_rows\": %d, \"prompt_parse_us\": %.1f, \"prompt_parse_mb_s\": %.0f, "
           "\"prompt_ref_parse_us\": %.1f}\n", len, rows, us[0], (double)len / us[0], us[1]);
    return 0;
}

/* A finished conversation as the worker scores it: a system turn, the registry's tools, a tool call,
 * its result and the answer. */
static json_t *scored_conversation(int i) {
    static const char *cities[] = {"Paris", "Oslo", "Tokyo", "Lima"};
    char args[64], result[96], answer[128];
    snprintf(args, sizeof args, "{\"city\": \"%s\"}", cities[i % 4]);
    snprintf(result, sizeof result, "{\"city\": \"%s\", \"temperature\": %d, \"unit\": \"celsius\"}", cities[i % 4], 10 + i % 17);
    snprintf(answer, sizeof answer, "Here is what I found. According to get_weather, temperature is %d in %s.", 10 + i % 17,
             cities[i % 4]);
    return json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s,s:[{s:s,s:s,s:{s:s,s:s}}]},{s:s,s:s,s:s,s:s},{s:s,s:s}]", "role", "system",
                     "content", "You are a helpful assistant with tools.", "role", "user", "content", "What's the weather like?",
                     "role", "assistant", "content", "", "tool_calls", "id", "call_0", "type", "function", "function", "name",
                     "get_weather", "arguments", args, "role", "tool", "tool_call_id", "call_0", "name", "get_weather", "content",
                     result, "role", "assistant", "content", answer);
}

int main(int argc, char **argv) {
    const char *url = NULL, *parse_file = NULL, *prompt_file = NULL, *tools_path = NULL;
    long n = 2000, inflight = 64, topk = 0, score = 0;
    double latency_ms = 100;
    static const struct option opts[] = {{"url", 1, 0, 'u'}, {"n", 1, 0, 'n'}, {"in-flight", 1, 0, 'k'},
                                         {"latency-ms", 1, 0, 'l'}, {"top-logprobs", 1, 0, 't'},
                                         {"parse", 1, 0, 'p'}, {"parse-prompt", 1, 0, 'P'}, {"score", 0, 0, 's'},
                                         {"tools", 1, 0, 'T'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'k': inflight = atol(optarg); break;
        case 'l': latency_ms = atof(optarg); break;
        case 't': topk = atol(optarg); break;
        case 'p': parse_file = optarg; break;
        case 'P': prompt_file = optarg; break;
        case 's': score = 1; break;
        case 'T': tools_path = optarg; break;
        default: fprintf(stderr, "usage: bench_teacher --url URL [--n N] [--in-flight K] [--latency-ms L] [--top-logprobs T] | --parse FILE [--n N]\n"); return 2;
        }
    }
    if (parse_file) return parse_only(parse_file, n);
    if (prompt_file) return parse_prompt_only(prompt_file, n, topk > 0 ? (int)topk : 8);
    if (!url) {
        fprintf(stderr, "bench_teacher: --url is required\n");
        return 2;
    }
    kd_config cfg;
    kd_config_defaults(&cfg);
    snprintf(cfg.teacher.url, sizeof cfg.teacher.url, "%s", url);
    cfg.teacher.max_in_flight = inflight;
    cfg.teacher.top_logprobs = topk;
    cfg.teacher.timeout_s = 30;
    kd_teacher *t;
    kd_error e;
    kd_registry *reg = NULL;
    json_t *tools = NULL;
    if (tools_path) {
        if (kd_registry_open(&reg, &e) || kd_registry_load_file(reg, tools_path, &e)) {
            fprintf(stderr, "bench_teacher: %s\n", e.msg);
            return 1;
        }
        tools = kd_registry_to_openai(reg);
    }
    json_t *convs[8];
    for (int i = 0; i < 8; i++) convs[i] = scored_conversation(i);
    if (kd_teacher_open(&t, &cfg, NULL, NULL, &e)) {
        fprintf(stderr, "bench_teacher: %s\n", e.msg);
        return 1;
    }
    static const char *prompts[] = {"Read the file config.json", "What's the weather in Paris?", "Search the web for \"HDF5 chunking\"",
                                    "Convert 12 km to miles", "Run the shell command `ls -la`", "Translate \"good morning\" into French",
                                    "Get the latest stock price of NVDA", "Tell me a joke about penguins"};
    json_t *msgs[8];
    for (int i = 0; i < 8; i++) msgs[i] = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content",
                                                     "You are a helpful assistant with tools.", "role", "user", "content", prompts[i]);
    /* warm up the connections, outside the measurement */
    long submitted = 0, done = 0, failed = 0, tokens = 0;
    for (int i = 0; i < inflight; i++) {
        kd_teacher_request r;
        kd_teacher_request_init(&r);
        r.messages = msgs[i % 8];
        r.tag = (uint64_t)i;
        if (score) kd_teacher_submit_score(t, convs[i % 8], tools, (uint64_t)i, &e);
        else kd_teacher_submit(t, &r, &e);
    }
    while (kd_teacher_pending(t) > 0) {
        kd_teacher_completion *cp;
        if (kd_teacher_next(t, 5, &cp, &e) || !cp) continue;
        kd_teacher_completion_free(cp);
        free(cp);
    }
    kd_teacher_stats st0;
    kd_teacher_get_stats(t, &st0);
    double t0 = kd_teacher_now(), c0 = cpu_s(), u0 = user_s();
    long f0 = minflt();
    while (done + failed < n) {
        while (submitted < n && kd_teacher_pending(t) < inflight) {
            kd_teacher_request r;
            kd_teacher_request_init(&r);
            r.messages = msgs[submitted % 8];
            r.tag = (uint64_t)submitted;
            if (score) kd_teacher_submit_score(t, convs[submitted % 8], tools, (uint64_t)submitted, &e);
            else kd_teacher_submit(t, &r, &e);
            submitted++;
        }
        kd_teacher_completion *cp;
        if (kd_teacher_next(t, 5, &cp, &e)) break;
        if (!cp) continue;
        if (cp->status == KD_OK) {
            done++;
            tokens += cp->lp.n;
        } else {
            failed++;
            fprintf(stderr, "bench_teacher: %s\n", cp->error);
        }
        kd_teacher_completion_free(cp);
        free(cp);
    }
    double wall = kd_teacher_now() - t0, cpu = cpu_s() - c0, user = user_s() - u0;
    long faults = minflt() - f0;
    kd_teacher_stats st;
    kd_teacher_get_stats(t, &st);
    kd_teacher_close(t);
    for (int i = 0; i < 8; i++) json_decref(msgs[i]);
    for (int i = 0; i < 8; i++) json_decref(convs[i]);
    json_decref(tools);
    kd_registry_close(reg);
    kd_config_free(&cfg);
    double rps = (double)(done + failed) / wall, ideal = (double)inflight / (latency_ms / 1000.0);
    double us = cpu / (double)(done + failed) * 1e6;
    printf("requests %ld (failed %ld), in flight %ld, server latency %.0f ms, top_logprobs %ld (%.1f logprob rows/request)\n",
           done + failed, failed, inflight, latency_ms, topk, done ? (double)tokens / done : 0.0);
    printf("throughput %.1f req/s, ideal %.1f req/s: %.1f%% of ideal\n", rps, ideal, 100 * rps / ideal);
    double parse_us = (st.parse_s - st0.parse_s) / (double)(done + failed) * 1e6;
    double user_us = user / (double)(done + failed) * 1e6;
    printf("client CPU %.1f us/request (user %.1f + system %.1f; %.3f s over %.2f s wall), of which parsing %.1f us; %.2f page faults/request\n",
           us, user_us, us - user_us, cpu, wall, parse_us, (double)faults / (double)(done + failed));
    printf("{\"requests\": %ld, \"failed\": %ld, \"in_flight\": %ld, \"top_logprobs\": %ld, \"score\": %ld, \"req_per_s\": %.1f, "
           "\"ideal_req_per_s\": %.1f, \"pct_of_ideal\": %.1f, \"client_cpu_us_per_req\": %.1f, \"user_us_per_req\": %.1f, "
           "\"parse_us_per_req\": %.1f, \"rows_per_req\": %.1f}\n",
           done + failed, failed, inflight, topk, score, rps, ideal, 100 * rps / ideal, us, user_us, parse_us,
           done ? (double)tokens / done : 0.0);
    return failed ? 1 : 0;
}
