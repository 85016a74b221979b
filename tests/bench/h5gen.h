/* A deterministic synthetic sample per prompt id, shared by the h5data unit test, the h5py e2e driver
 * and the HDF5 benchmark, so a reader can recompute what was written. The h5py test recomputes it in
 * Python (tests/e2e/h5py_reads.sh) from the same rules:
 *   n = 5 + id % 13 tokens; prompt_len = n / 3; input_ids[t] = id * 100 + t;
 *   loss_mask = t >= prompt_len; tool_name_mask at t == prompt_len; json_mask at prompt_len+1, +2;
 *   integration_mask at n-1 when n-1 > prompt_len+2 and id % 4 != 0;
 *   topk_ids[t][j] = (id + t + j) % 1000; topk_logprobs[t][j] = -0.5 * (j + 1) - 0.01 * t;
 *   tail_logprob[t] = -4 - 0.001 * id; texts "key-<id>", "prompt <id> \u00fc", "teacher <id>", {"i": id}. */
#ifndef KD_H5GEN_H
#define KD_H5GEN_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/h5data.h"

typedef struct h5gen {
    int32_t ids[64], topk_ids[64 * 8];
    uint8_t loss[64], tool[64], json[64], integ[64];
    float lp[64 * 8], tail[64];
    char key[32], prompt[64], teacher[64], meta[64];
    kd_sample s;
} h5gen;

static inline void h5gen_fill(h5gen *g, int64_t id, int k) {
    memset(g, 0, sizeof *g);
    int64_t n = 5 + id % 13, pl = n / 3;
    for (int64_t t = 0; t < n; t++) {
        g->ids[t] = (int32_t)(id * 100 + t);
        g->loss[t] = t >= pl;
        g->tool[t] = t == pl;
        g->json[t] = t == pl + 1 || t == pl + 2;
        g->integ[t] = t == n - 1 && n - 1 > pl + 2 && id % 4 != 0;
        for (int j = 0; j < k; j++) {
            g->topk_ids[t * k + j] = (int32_t)((id + t + j) % 1000);
            g->lp[t * k + j] = -0.5f * (float)(j + 1) - 0.01f * (float)t;
        }
        g->tail[t] = -4.0f - 0.001f * (float)id;
    }
    snprintf(g->key, sizeof g->key, "key-%lld", (long long)id);
    snprintf(g->prompt, sizeof g->prompt, "prompt %lld \xc3\xbc", (long long)id);
    snprintf(g->teacher, sizeof g->teacher, "teacher %lld", (long long)id);
    snprintf(g->meta, sizeof g->meta, "{\"i\": %lld}", (long long)id);
    g->s = (kd_sample){.prompt_id = id, .prompt_len = pl, .n = n, .input_ids = g->ids, .loss_mask = g->loss,
                       .tool_name_mask = g->tool, .json_mask = g->json, .integration_mask = g->integ,
                       .topk_ids = g->topk_ids, .topk_logprobs = g->lp, .tail_logprob = g->tail,
                       .prompt_key = g->key, .prompt_text = g->prompt, .teacher_text = g->teacher,
                       .metadata = g->meta};
}

/* 1 when the view equals what h5gen_fill(id) writes. */
static inline int h5gen_equal(const kd_sample *v, int k, int with_text) {
    h5gen g;
    h5gen_fill(&g, v->prompt_id, k);
    const kd_sample *s = &g.s;
    if (v->n != s->n || v->prompt_len != s->prompt_len) return 0;
    size_t n = (size_t)s->n;
    if (memcmp(v->input_ids, s->input_ids, n * 4) || memcmp(v->loss_mask, s->loss_mask, n) ||
        memcmp(v->tool_name_mask, s->tool_name_mask, n) || memcmp(v->json_mask, s->json_mask, n) ||
        memcmp(v->integration_mask, s->integration_mask, n) || memcmp(v->topk_ids, s->topk_ids, n * k * 4) ||
        memcmp(v->topk_logprobs, s->topk_logprobs, n * k * 4) || memcmp(v->tail_logprob, s->tail_logprob, n * 4))
        return 0;
    if (with_text && (strcmp(v->prompt_key, s->prompt_key) || strcmp(v->prompt_text, s->prompt_text) ||
                      strcmp(v->teacher_text, s->teacher_text) || strcmp(v->metadata, s->metadata)))
        return 0;
    return 1;
}
#endif
