/* Test driver for tests/reference/chat_template.sh (and a rendering benchmark with --repeat N):
 * reads one JSON conversation per line on stdin, {"messages": [...], "tools": [...],
 * "add_generation_prompt": bool, "enable_thinking": false?}, renders it with kd_chat_render_json
 * and prints one JSON line per input: {"text", "message_spans", "content_spans",
 * "tool_call_spans", "tool_call_message", "generation_start"} or {"error": "..."}.
 * --template prints the embedded Qwen3 chat_template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/chat.h"

static json_t *spans(const kd_span *s, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_pack("[II]", (json_int_t)s[i].start, (json_int_t)s[i].end));
    return a;
}

int main(int argc, char **argv) {
    int repeat = 1;
    if (argc == 2 && !strcmp(argv[1], "--template")) { /* the embedded Qwen3 template, for the test */
        fputs(kd_chat_template_qwen3(), stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--repeat")) repeat = atoi(argv[2]);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    double bytes = 0, secs = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_error_t je;
        json_t *conv = json_loadb(line, (size_t)n, 0, &je);
        if (!conv) {
            fprintf(stderr, "bench_chat_render: bad input line: %s\n", je.text);
            return 1;
        }
        kd_chat_options o = {0};
        o.add_generation_prompt = json_is_true(json_object_get(conv, "add_generation_prompt"));
        o.disable_thinking = json_is_false(json_object_get(conv, "enable_thinking"));
        kd_chat_result r;
        kd_error err;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = 0;
        for (int k = 0; k < repeat; k++) {
            rc = kd_chat_render_json(json_object_get(conv, "messages"), json_object_get(conv, "tools"), &o, &r, &err);
            if (rc || k == repeat - 1) break;
            bytes += (double)r.len;
            kd_chat_render_free(&r);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        json_t *o_ = NULL;
        if (rc) {
            o_ = json_pack("{ss}", "error", err.msg);
        } else {
            bytes += (double)r.len;
            o_ = json_object();
            json_object_set_new(o_, "text", json_stringn(r.text, r.len));
            json_object_set_new(o_, "message_spans", spans(r.message_spans, r.n_messages));
            json_object_set_new(o_, "content_spans", spans(r.content_spans, r.n_messages));
            json_object_set_new(o_, "tool_call_spans", spans(r.tool_call_spans, r.n_tool_calls));
            json_t *tm = json_array();
            for (int i = 0; i < r.n_tool_calls; i++) json_array_append_new(tm, json_integer(r.tool_call_message[i]));
            json_object_set_new(o_, "tool_call_message", tm);
            json_object_set_new(o_, "generation_start", json_integer((json_int_t)r.generation_start));
            kd_chat_render_free(&r);
        }
        if (repeat == 1) {
            char *s = json_dumps(o_, JSON_COMPACT);
            puts(s);
            free(s);
        }
        json_decref(o_);
        json_decref(conv);
    }
    free(line);
    if (repeat > 1) printf("{\"render_mb_s\": %.2f}\n", bytes / 1e6 / (secs > 0 ? secs : 1e-9));
    return 0;
}
