/* Benchmark for tests/bench/jsonw.sh: kd_json_dumps_compact against jansson's json_dumps(JSON_COMPACT)
 * in the same run, on (a) the teacher's request body with configs/tools.json as tools (built as
 * src/teacher/client.c builds it) and (b) every BFCL function list in one array. Both outputs are
 * compared byte for byte first; a difference exits 1. Each workload runs in alternating rounds (kdstep,
 * jansson, kdstep, ...) and the median round is reported, since the machine is shared.
 *   bench_jsonw --tools configs/tools.json [--bfcl DIR] [--rounds 7] [--ms 200] */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/jsonw.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { KDSTEP, JANSSON, KDSTEP_REUSE };

/* Seconds per serialization of v by one writer, timed over about ms milliseconds. */
static double time_one(const json_t *v, int which, double ms, kd_jsonw *keep) {
    long n = 0, batch = 1;
    double t0 = now(), t = t0;
    while (t - t0 < ms * 1e-3) {
        for (long i = 0; i < batch; i++) {
            if (which == KDSTEP_REUSE) {
                keep->len = 0; /* the buffer kept from the last body, as a client holding one writer does */
                if (kd_jsonw_value(keep, v)) exit(1);
                continue;
            }
            char *s = which == KDSTEP ? kd_json_dumps_compact(v) : json_dumps(v, JSON_COMPACT);
            if (!s) exit(1);
            free(s);
        }
        n += batch;
        if (batch < (1 << 20)) batch *= 2;
        t = now();
    }
    return (t - t0) / (double)n;
}

/* Median seconds per serialization for the three writers, in alternating rounds. */
static void bench(const json_t *v, int rounds, double ms, double sec[3]) {
    double r[3][64];
    kd_jsonw keep = {0};
    for (int k = 0; k < rounds; k++)
        for (int which = 0; which < 3; which++) r[which][k] = time_one(v, which, ms, &keep);
    kd_jsonw_free(&keep);
    for (int which = 0; which < 3; which++) {
        qsort(r[which], (size_t)rounds, sizeof r[which][0], cmp_double);
        sec[which] = r[which][rounds / 2];
    }
}

static size_t same_or_exit(const json_t *v, const char *what) {
    char *a = kd_json_dumps_compact(v), *b = json_dumps(v, JSON_COMPACT);
    if (!a || !b || strcmp(a, b)) {
        fprintf(stderr, "bench_jsonw: %s: kd_json_dumps_compact differs from json_dumps\n", what);
        exit(1);
    }
    size_t n = strlen(a);
    free(a);
    free(b);
    return n;
}

int main(int argc, char **argv) {
    const char *tools_path = NULL, *bfcl = NULL;
    int rounds = 7;
    double ms = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tools")) tools_path = argv[i + 1];
        else if (!strcmp(argv[i], "--bfcl")) bfcl = argv[i + 1];
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ms")) ms = atof(argv[i + 1]);
    }
    if (!tools_path || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: bench_jsonw --tools configs/tools.json [--bfcl DIR] [--rounds 1-64] [--ms MS]\n");
        return 2;
    }
    json_error_t je;
    json_t *tools = json_load_file(tools_path, 0, &je);
    if (!tools) {
        fprintf(stderr, "bench_jsonw: %s: %s\n", tools_path, je.text);
        return 1;
    }
    /* (a) the request body, as build_chat_body makes it */
    json_t *body = json_object();
    json_object_set_new(body, "model", json_string("Qwen/Qwen3-32B"));
    json_object_set_new(body, "messages",
                        json_pack("[{ss,ss},{ss,ss}]", "role", "system", "content",
                                  "You are a helpful assistant. Use the tools when they help; answer directly otherwise.",
                                  "role", "user", "content",
                                  "Find the three largest files under ./data, then email the list to ops@example.com "
                                  "with the subject \"Disk usage\" and a short note."));
    json_object_set_new(body, "tools", tools);
    json_object_set_new(body, "tool_choice", json_string("auto"));
    json_object_set_new(body, "temperature", json_real(0.7));
    json_object_set_new(body, "max_tokens", json_integer(1024));
    json_object_set_new(body, "seed", json_integer(1234));
    json_object_set_new(body, "logprobs", json_true());
    json_object_set_new(body, "top_logprobs", json_integer(8));
    size_t body_bytes = same_or_exit(body, "request body");
    double a[3];
    bench(body, rounds, ms, a);
    printf("request body (%zu bytes, %zu tools): kdstep %.2f us (%.1f MB/s; %.2f us with a kept buffer), "
           "jansson %.2f us (%.1f MB/s), ratio %.1f\n",
           body_bytes, json_array_size(tools), a[0] * 1e6, body_bytes / a[0] / 1e6, a[2] * 1e6, a[1] * 1e6,
           body_bytes / a[1] / 1e6, a[1] / a[0]);
    char json_line[1024];
    int jl = snprintf(json_line, sizeof json_line,
                      "{\"request_body_bytes\": %zu, \"kdstep_mb_s\": %.1f, \"jansson_mb_s\": %.1f, \"ratio\": %.2f, "
                      "\"request_body_us\": %.2f, \"request_body_reuse_us\": %.2f, \"request_body_jansson_us\": %.2f",
                      body_bytes, body_bytes / a[0] / 1e6, body_bytes / a[1] / 1e6, a[1] / a[0], a[0] * 1e6, a[2] * 1e6,
                      a[1] * 1e6);
    /* (b) every BFCL function list, concatenated into one array */
    if (bfcl) {
        DIR *d = opendir(bfcl);
        if (!d) {
            fprintf(stderr, "bench_jsonw: cannot open %s\n", bfcl);
            return 1;
        }
        json_t *all = json_array();
        struct dirent *e;
        size_t records = 0;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".json")) continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", bfcl, e->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) continue;
            char *line = NULL;
            size_t cap = 0;
            ssize_t n;
            while ((n = getline(&line, &cap, f)) > 0) {
                json_t *rec = json_loadb(line, (size_t)n, 0, NULL);
                json_t *fns = json_object_get(rec, "function");
                if (json_is_array(fns)) {
                    json_array_extend(all, fns);
                    records++;
                }
                json_decref(rec);
            }
            free(line);
            fclose(f);
        }
        closedir(d);
        size_t bytes = same_or_exit(all, "BFCL function lists");
        double b[3];
        bench(all, rounds, ms * 2, b);
        snprintf(json_line + jl, sizeof json_line - (size_t)jl,
                 ", \"bfcl_bytes\": %zu, \"bfcl_kdstep_mb_s\": %.1f, \"bfcl_jansson_mb_s\": %.1f, \"bfcl_ratio\": %.2f",
                 bytes, bytes / b[0] / 1e6, bytes / b[1] / 1e6, b[1] / b[0]);
        printf("BFCL function lists (%zu records, %zu functions, %zu bytes): kdstep %.1f MB/s, jansson %.1f MB/s, ratio %.1f\n",
                records, json_array_size(all), bytes, bytes / b[0] / 1e6, bytes / b[1] / 1e6, b[1] / b[0]);
        json_decref(all);
    }
    printf("%s}\n", json_line);
    json_decref(body);
    return 0;
}
