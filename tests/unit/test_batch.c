/* CUnit suite: the trainer's length bucketing (src/train/batch.c, train.length_buckets) and the
 * model run at a micro-batch's own length (kd_model_set_seq_len): the bucketed order is still a
 * permutation of each epoch, deterministic, with steps of alike lengths; a micro-batch run at its
 * longest row gives the logits and gradients of the same rows padded to the full length. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/train/batch.h"
#include "kdstep/h5data.h"
#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "testutil.h"

enum { N = 203, G = 8, STEPS = 4 };

static void fill(kd_train_data *d, sample_meta *meta, int64_t buckets) {
    memset(d, 0, sizeof *d);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        meta[i].index = i;
        meta[i].prompt_id = 1000 + i;
        meta[i].prompt_len = 20 + (int64_t)(kd_splitmix64(&s) % 400);
        meta[i].n = meta[i].prompt_len + 5 + (int64_t)(kd_splitmix64(&s) % 200);
    }
    d->train = meta;
    d->n_train = N;
    d->T = 512; /* some windows are cut: their length is T */
    d->P = 0;
    d->seed = 3;
    d->G = G;
    d->length_buckets = buckets;
    d->perm_epoch = -1;
}

static void test_order(void) {
    static sample_meta meta[N];
    kd_train_data plain, bucketed;
    fill(&plain, meta, 0);
    fill(&bucketed, meta, STEPS);
    for (int64_t epoch = 0; epoch < 3; epoch++) {
        const int64_t *p0 = kd_train_data_perm(&plain, epoch);
        int64_t a[N];
        CU_ASSERT_PTR_NOT_NULL_FATAL(p0);
        memcpy(a, p0, sizeof a);
        const int64_t *p1 = kd_train_data_perm(&bucketed, epoch);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p1);
        /* a permutation of the epoch, and each chunk of STEPS*G holds the samples the plain shuffle
         * put there: bucketing reorders within a chunk only */
        int seen[N] = {0};
        for (int i = 0; i < N; i++) seen[p1[i]]++;
        for (int i = 0; i < N; i++) CU_ASSERT_EQUAL(seen[i], 1);
        for (int c0 = 0; c0 < N; c0 += STEPS * G) {
            int n = N - c0 < STEPS * G ? N - c0 : STEPS * G;
            int in_chunk[N] = {0};
            for (int i = 0; i < n; i++) in_chunk[a[c0 + i]] = 1;
            for (int i = 0; i < n; i++) CU_ASSERT_TRUE(in_chunk[p1[c0 + i]]);
            /* steps of alike lengths: the steps' length ranges do not interleave, and the short
             * step of the last chunk stays last */
            int ns = (n + G - 1) / G;
            int64_t lo[STEPS], hi[STEPS];
            for (int st = 0; st < ns; st++) {
                lo[st] = INT64_MAX;
                hi[st] = -1;
                for (int j = st * G; j < (st + 1) * G && j < n; j++) {
                    int64_t L = kd_train_data_window_len(&bucketed, &meta[p1[c0 + j]]);
                    if (L < lo[st]) lo[st] = L;
                    if (L > hi[st]) hi[st] = L;
                }
            }
            for (int x = 0; x < ns; x++)
                for (int y = 0; y < ns; y++)
                    if (x != y) CU_ASSERT_TRUE(hi[x] <= lo[y] || hi[y] <= lo[x]);
        }
        /* deterministic: the same (seed, epoch) gives the same order */
        int64_t b[N];
        memcpy(b, p1, sizeof b);
        bucketed.perm_epoch = -1;
        CU_ASSERT_EQUAL(memcmp(kd_train_data_perm(&bucketed, epoch), b, sizeof b), 0);
    }
    /* the window length: whole samples up to T, cut ones at T */
    sample_meta big = {0, 0, 900, 100, 0}, small = {0, 0, 300, 100, 0};
    CU_ASSERT_EQUAL(kd_train_data_window_len(&bucketed, &big), 512);
    CU_ASSERT_EQUAL(kd_train_data_window_len(&bucketed, &small), 300);
    free(plain.perm);
    free(bucketed.perm);
}

static float max_abs_diff(const float *a, const float *b, size_t n, float *scale) {
    float md = 0.0f, mb = 0.0f;
    for (size_t i = 0; i < n; i++) {
        md = fmaxf(md, fabsf(a[i] - b[i]));
        mb = fmaxf(mb, fabsf(b[i]));
    }
    *scale = mb;
    return md;
}

/* One forward/backward of rows padded to T = 32, then of the same rows at T = 24 (their longest is
 * 21): logits of real rows and every parameter gradient agree within float reassociation. */
static void test_short_micro_batch(void) {
    const char *p = kd_test_write("c.json", "{\"model_type\":\"qwen3\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"
                                            "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8}");
    kd_model_config c;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_model_config_load(p, &c, &err), KD_OK);
    c.initializer_range = 0.2f;
    enum { B = 2, T = 32, TS = 24, V = 100 };
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &c, B, T, &err), KD_OK);
    kd_model_init_random(m, 5);
    int32_t len[B] = {21, 13}, full[B * T] = {0}, shrt[B * TS] = {0};
    uint64_t s = 11;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < len[b]; t++) full[b * T + t] = shrt[b * TS + t] = (int32_t)(kd_splitmix64(&s) % V);

    /* d(loss)/d(logits): a fixed function of the real rows' logits, zero on padding */
    static float lg_full[B * T * V], g_full[1 << 16];
    CU_ASSERT_FATAL(m->n_params <= sizeof g_full / sizeof g_full[0]);
    kd_model_zero_grad(m);
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, full, len, &err), KD_OK);
    memcpy(lg_full, m->logits, sizeof lg_full);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int v = 0; v < V; v++) {
                float *x = &m->logits[((size_t)b * T + t) * V + v];
                *x = t < len[b] ? 0.01f * sinf(*x) : 0.0f;
            }
    CU_ASSERT_EQUAL_FATAL(kd_model_backward(m, &err), KD_OK);
    memcpy(g_full, m->grads, m->n_params * sizeof(float));

    CU_ASSERT_EQUAL_FATAL(kd_model_set_seq_len(m, TS, &err), KD_OK);
    CU_ASSERT_EQUAL(m->T, TS);
    kd_model_zero_grad(m);
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, shrt, len, &err), KD_OK);
    float worst = 0.0f, scale = 0.0f;
    for (int b = 0; b < B; b++) {
        float sc;
        float d = max_abs_diff(m->logits + (size_t)b * TS * V, lg_full + (size_t)b * T * V, (size_t)len[b] * V, &sc);
        worst = fmaxf(worst, d);
        scale = fmaxf(scale, sc);
    }
    CU_ASSERT_TRUE(worst <= 1e-5f * scale);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < TS; t++)
            for (int v = 0; v < V; v++) {
                float *x = &m->logits[((size_t)b * TS + t) * V + v];
                *x = t < len[b] ? 0.01f * sinf(*x) : 0.0f;
            }
    CU_ASSERT_EQUAL_FATAL(kd_model_backward(m, &err), KD_OK);
    float gd = max_abs_diff(m->grads, g_full, m->n_params, &scale);
    CU_ASSERT_TRUE(scale > 0.0f);
    CU_ASSERT_TRUE(gd <= 1e-4f * scale);

    /* bounds: 1..the length the model was allocated for */
    CU_ASSERT_EQUAL(kd_model_set_seq_len(m, 0, &err), KD_ERR_INVALID);
    CU_ASSERT_EQUAL(kd_model_set_seq_len(m, T + 1, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "sequence length 33 is outside 1..32");
    CU_ASSERT_EQUAL(kd_model_set_seq_len(m, T, &err), KD_OK);
    kd_model_free(m);
}

/* On-policy rows (/samples/policy 1): the hard targets of the CE-type terms are the teacher's argmax
 * at each token with teacher top-k (ids elsewhere, and everywhere in a teacher-written row), the row
 * is counted in n_student, and clearing the row forgets it. The context LM mask is the complement of
 * loss_mask within the window. */
static void test_student_targets(void) {
    char dir[512];
    kd_shard *sh = kd_test_new_shard("policy", 2, 4, dir, sizeof dir);
    kd_error e;
    enum { n = 6 };
    int32_t ids[n] = {5, 6, 7, 8, 9, 10};
    uint8_t loss[n] = {0, 0, 1, 1, 1, 1};
    /* top-k per token: [id, id] with log-probs; token 4 has none; token 3's best column is the second */
    int32_t tk[n * 2] = {-1, -1, -1, -1, 7, 1, 2, 8, -1, -1, 11, 10};
    float lp[n * 2] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -0.1f, -3.0f, -2.0f, -0.5f,
                       -INFINITY, -INFINITY, -0.2f, -1.0f};
    float tail[n] = {0, 0, -5, -3, 0, -4};
    for (int pol = 0; pol < 2; pol++) {
        kd_sample smp = {0};
        smp.prompt_id = pol;
        smp.prompt_len = 2;
        smp.n = n;
        smp.input_ids = ids;
        smp.loss_mask = loss;
        smp.topk_ids = tk;
        smp.topk_logprobs = lp;
        smp.tail_logprob = tail;
        smp.policy = (uint8_t)pol;
        CU_ASSERT_EQUAL_FATAL(kd_shard_append(sh, &smp, &e), KD_OK);
    }
    CU_ASSERT_EQUAL_FATAL(kd_shard_close(sh, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
    kd_dataset *ds;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_open(&ds, dir, &e), KD_OK);
    kd_train_data d;
    memset(&d, 0, sizeof d);
    d.ds = ds;
    d.T = 8;
    micro_batch mb;
    CU_ASSERT_EQUAL_FATAL(kd_mb_alloc(&mb, 2, 8, 2), 0);
    for (int r = 0; r < 2; r++) {
        sample_meta sm = {r, r, n, 2, 0};
        CU_ASSERT_EQUAL_FATAL(kd_train_data_load_row(&d, &mb, r, &sm, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(mb.n_student, 1);
    CU_ASSERT_EQUAL(mb.policy[0], 0);
    CU_ASSERT_EQUAL(mb.policy[1], 1);
    /* teacher-written row: target = ids */
    for (int t = 0; t < n; t++) CU_ASSERT_EQUAL(mb.target[t], ids[t]);
    /* student-written row: the teacher's argmax where it has top-k (7, and 8 from the second column,
     * agree with the student; 11 does not), the student's own token where it has none */
    int32_t want[n] = {5, 6, 7, 8, 9, 11};
    for (int t = 0; t < n; t++) CU_ASSERT_EQUAL(mb.target[8 + t], want[t]);
    for (int t = 0; t < n; t++) CU_ASSERT_EQUAL(mb.ids[8 + t], ids[t]); /* the input is untouched */
    /* the context LM mask (train.context_lm_weight): the window's tokens outside loss_mask, none in
     * the padding */
    uint8_t want_ctx[8] = {1, 1, 0, 0, 0, 0, 0, 0};
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 8; t++) CU_ASSERT_EQUAL(mb.ctx[r * 8 + t], want_ctx[t]);
    kd_mb_clear_row(&mb, 1);
    CU_ASSERT_EQUAL(mb.n_student, 0);
    CU_ASSERT_EQUAL(mb.policy[1], 0);
    for (int t = 0; t < 8; t++) CU_ASSERT_EQUAL(mb.ctx[8 + t], 0);
    kd_mb_free(&mb);
    kd_dataset_close(ds);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("batch", NULL, NULL);
    CU_add_test(s, "bucketed_order", test_order);
    CU_add_test(s, "short_micro_batch", test_short_micro_batch);
    CU_add_test(s, "student_targets", test_student_targets);
    return kd_test_main();
}
