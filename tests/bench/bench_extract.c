/* Benchmark: extraction (calls + integration spans) and alignment (spans -> masks) per MB of
 * teacher text, next to the tokenizer's encode time for the same text.
 *   bench_extract GLAIVE_JSON [TOKENIZER_DIR] [PASSES]
 * Teacher texts are the 300 glaive conversations written as a teacher emits them (assistant turns,
 * <functioncall> calls, tool results in between). Ends with one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/extract.h"
#include "kdstep/targets.h"
#include "kdstep/tokenizer.h"


typedef struct sample {
    char *text;
    size_t len;
    char **results;
    size_t *result_lens;
    size_t n_results;
} sample;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void append(char **s, size_t *n, size_t *cap, const char *t) {
    size_t l = strlen(t);
    if (*n + l + 1 > *cap) {
        *cap = (*n + l + 1) * 2;
        *s = realloc(*s, *cap);
    }
    memcpy(*s + *n, t, l + 1);
    *n += l;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_extract GLAIVE_JSON [TOKENIZER_DIR] [PASSES]\n");
        return 2;
    }
    int passes = argc > 3 ? atoi(argv[3]) : 20;
    json_error_t je;
    json_t *all = json_load_file(argv[1], 0, &je);
    if (!all) {
        fprintf(stderr, "%s: %s\n", argv[1], je.text);
        return 1;
    }
    size_t ns = json_array_size(all), total = 0;
    sample *S = calloc(ns, sizeof *S);
    for (size_t i = 0; i < ns; i++) {
        json_t *conv = json_object_get(json_array_get(all, i), "conversations");
        size_t cap = 0, k;
        json_t *t;
        S[i].results = calloc(json_array_size(conv) + 1, sizeof(char *));
        S[i].result_lens = calloc(json_array_size(conv) + 1, sizeof(size_t));
        append(&S[i].text, &S[i].len, &cap, "");
        json_array_foreach(conv, k, t) {
            const char *from = json_string_value(json_object_get(t, "from"));
            const char *v = json_string_value(json_object_get(t, "value"));
            if (strcmp(from, "gpt") == 0) {
                append(&S[i].text, &S[i].len, &cap, v);
                append(&S[i].text, &S[i].len, &cap, "\n\n");
            } else if (strcmp(from, "function_call") == 0) {
                append(&S[i].text, &S[i].len, &cap, "<functioncall> ");
                append(&S[i].text, &S[i].len, &cap, v);
                append(&S[i].text, &S[i].len, &cap, "\n\n");
            } else if (strcmp(from, "observation") == 0) {
                S[i].results[S[i].n_results] = strdup(v);
                S[i].result_lens[S[i].n_results++] = strlen(v);
            }
        }
        total += S[i].len;
    }
    json_decref(all);
    kd_tokenizer *tok = NULL;
    kd_error e;
    if (argc > 2 && kd_tokenizer_open(&tok, argv[2], &e) != KD_OK) {
        fprintf(stderr, "tokenizer: %s\n", e.msg);
        tok = NULL;
    }
    /* offsets for alignment: the tokenizer's when present, else one token per 4 bytes (the
     * alignment cost depends on the token count, which is about that for English text) */
    kd_encoding *encs = calloc(ns, sizeof *encs);
    double t_tok = 0;
    for (size_t i = 0; i < ns; i++) {
        if (tok) {
            kd_tokenizer_encode(tok, S[i].text, S[i].len, 0, &encs[i], &e);
        } else {
            size_t n = (S[i].len + 3) / 4;
            encs[i].offsets = malloc(sizeof(int32_t[2]) * (n + 1));
            for (size_t q = 0; q < n; q++) {
                encs[i].offsets[q][0] = (int32_t)(4 * q);
                encs[i].offsets[q][1] = (int32_t)(4 * q + 4 > S[i].len ? S[i].len : 4 * q + 4);
            }
            encs[i].count = n;
        }
    }
    if (tok) /* encode over the same passes as extraction */
        for (int p = 0; p < passes; p++)
            for (size_t i = 0; i < ns; i++) {
                double t0 = now();
                kd_tokenizer_encode(tok, S[i].text, S[i].len, 0, &encs[i], &e);
                t_tok += now() - t0;
            }
    double t_ext = 0, t_align = 0;
    size_t calls = 0, spans = 0;
    for (int p = 0; p < passes; p++)
        for (size_t i = 0; i < ns; i++) {
            double t0 = now();
            kd_tool_calls c = {0};
            kd_spans integ = {0};
            kd_extract_tool_calls(S[i].text, S[i].len, NULL, &c, &e);
            size_t from = c.count ? c.v[c.count - 1].call.end : 0;
            kd_identify_integration_spans(S[i].text + from, S[i].len - from, (const char *const *)S[i].results, S[i].result_lens,
                                          S[i].n_results, NULL, &integ, &e);
            double t1 = now();
            kd_target_spans sp = {0};
            kd_targets t;
            kd_spans_push(&sp.response, 0, S[i].len);
            kd_targets_add_calls(&sp, &c, 0, &e);
            kd_targets_add_shifted(&sp.integration, &integ, from, &e);
            kd_targets_build((const int32_t(*)[2])encs[i].offsets, encs[i].count, S[i].len, &sp, 1, &t, &e);
            double t2 = now();
            t_ext += t1 - t0;
            t_align += t2 - t1;
            if (p == 0) calls += c.count, spans += integ.count;
            kd_targets_free(&t);
            kd_target_spans_free(&sp);
            kd_spans_free(&integ);
            kd_tool_calls_free(&c);
        }
    double mb = (double)total * passes / 1e6;
    printf("teacher text: %zu conversations, %.3f MB per pass, %d passes; %zu calls, %zu integration spans per pass\n", ns,
           (double)total / 1e6, passes, calls, spans);
    printf("extraction (calls + integration): %.4f s/MB  (%.1f MB/s)\n", t_ext / mb, mb / t_ext);
    printf("alignment (spans -> 4 masks):     %.4f s/MB  (%.1f MB/s)%s\n", t_align / mb, mb / t_align,
           tok ? "" : "  [synthetic 4-byte tokens]");
    if (tok) {
        printf("tokenizer encode (same text):     %.4f s/MB  (%.1f MB/s)\n", t_tok / mb, mb / t_tok);
        printf("{\"extract_s_per_mb\": %.5f, \"align_s_per_mb\": %.5f, \"tokenize_s_per_mb\": %.5f, "
               "\"ratio_tokenize_over_extract_align\": %.2f}\n",
               t_ext / mb, t_align / mb, t_tok / mb, t_tok / (t_ext + t_align));
    } else {
        printf("tokenizer: %s could not be opened; extraction only\n", argc > 2 ? argv[2] : "(none given)");
        printf("{\"extract_s_per_mb\": %.5f, \"align_s_per_mb\": %.5f, \"tokenize_s_per_mb\": null, "
               "\"ratio_tokenize_over_extract_align\": null}\n",
               t_ext / mb, t_align / mb);
    }
    for (size_t i = 0; i < ns; i++) {
        if (tok) kd_encoding_free(&encs[i]);
        else free(encs[i].offsets);
        for (size_t r = 0; r < S[i].n_results; r++) free(S[i].results[r]);
        free(S[i].results);
        free(S[i].result_lens);
        free(S[i].text);
    }
    free(encs);
    free(S);
    if (tok) kd_tokenizer_close(tok);
    return 0;
}
