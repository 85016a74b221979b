/* Benchmark: the teacher client against a running server. Keeps --in-flight requests going until --n
 * have finished; prints requests/s, the ideal (in-flight / latency) and the client's CPU time per
 * request (getrusage: user + system, request building and response parsing included).
 *   bench_teacher --url URL --n N --in-flight K --latency-ms L [--top-logprobs T] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kdstep/config.h"
#include "kdstep/teacher.h"

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char **argv) {
    const char *url = NULL;
    long n = 2000, inflight = 64, topk = 0;
    double latency_ms = 100;
    static const struct option opts[] = {{"url", 1, 0, 'u'}, {"n", 1, 0, 'n'}, {"in-flight", 1, 0, 'k'},
                                         {"latency-ms", 1, 0, 'l'}, {"top-logprobs", 1, 0, 't'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'k': inflight = atol(optarg); break;
        case 'l': latency_ms = atof(optarg); break;
        case 't': topk = atol(optarg); break;
        default: fprintf(stderr, "usage: bench_teacher --url URL [--n N] [--in-flight K] [--latency-ms L] [--top-logprobs T]\n"); return 2;
        }
    }
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
        kd_teacher_submit(t, &r, &e);
    }
    while (kd_teacher_pending(t) > 0) {
        kd_teacher_completion *cp;
        if (kd_teacher_next(t, 5, &cp, &e) || !cp) continue;
        kd_teacher_completion_free(cp);
        free(cp);
    }
    double t0 = kd_teacher_now(), c0 = cpu_s();
    while (done + failed < n) {
        while (submitted < n && kd_teacher_pending(t) < inflight) {
            kd_teacher_request r;
            kd_teacher_request_init(&r);
            r.messages = msgs[submitted % 8];
            r.tag = (uint64_t)submitted++;
            kd_teacher_submit(t, &r, &e);
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
    double wall = kd_teacher_now() - t0, cpu = cpu_s() - c0;
    kd_teacher_stats st;
    kd_teacher_get_stats(t, &st);
    kd_teacher_close(t);
    for (int i = 0; i < 8; i++) json_decref(msgs[i]);
    kd_config_free(&cfg);
    double rps = (double)(done + failed) / wall, ideal = (double)inflight / (latency_ms / 1000.0);
    double us = cpu / (double)(done + failed) * 1e6;
    printf("requests %ld (failed %ld), in flight %ld, server latency %.0f ms, top_logprobs %ld (%.1f logprob rows/request)\n",
           done + failed, failed, inflight, latency_ms, topk, done ? (double)tokens / done : 0.0);
    printf("throughput %.1f req/s, ideal %.1f req/s: %.1f%% of ideal\n", rps, ideal, 100 * rps / ideal);
    printf("client CPU %.1f us/request (user+sys, %.3f s over %.2f s wall)\n", us, cpu, wall);
    printf("{\"requests\": %ld, \"failed\": %ld, \"in_flight\": %ld, \"top_logprobs\": %ld, \"req_per_s\": %.1f, \"ideal_req_per_s\": %.1f, "
           "\"pct_of_ideal\": %.1f, \"client_cpu_us_per_req\": %.1f}\n",
           done + failed, failed, inflight, topk, rps, ideal, 100 * rps / ideal, us);
    return failed ? 1 : 0;
}
