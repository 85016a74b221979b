/* CUnit suite: losses (alignment, normalization contract, KD >= 0, fallbacks, gradients by finite
 * differences, thread independence), the grammar term's run handling, and the optimizer helpers.
 * Agreement with PyTorch is tests/reference/loss.sh. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/jsonprefix.h"
#include "kdstep/loss.h"
#include "kdstep/optim.h"
#include "testutil.h"

static uint64_t rng = 7;
static double unif(void) { return (double)(kd_splitmix64(&rng) >> 11) * (1.0 / 9007199254740992.0); }
static float randn(void) {
    double u = unif(), v = unif();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(2 * M_PI * v));
}

static void test_alignment_and_count(void) {
    /* one sequence of 4 tokens; row t-1 predicts ids[t] */
    enum { T = 4, V = 5 };
    int32_t ids[T] = {1, 2, 3, 4};
    uint8_t mask[T] = {1, 1, 0, 1}; /* the bit at t = 0 has no row: ignored */
    float logits[T * V];
    for (int i = 0; i < T * V; i++) logits[i] = 0.0f;
    logits[0 * V + 2] = 30.0f; /* row 0 predicts ids[1] = 2 */
    logits[2 * V + 4] = 30.0f; /* row 2 predicts ids[3] = 4 */
    logits[3 * V + 0] = 99.0f; /* row 3 (last) predicts nothing */
    CU_ASSERT_EQUAL(kd_loss_count(mask, 1, T), 2);
    double loss;
    float d[T * V];
    memset(d, 0, sizeof d);
    CU_ASSERT_EQUAL(kd_loss_ce(logits, ids, mask, 1, T, V, 1.0f, d, &loss), 2);
    CU_ASSERT_TRUE(loss < 1e-11);
    for (int i = V; i < 2 * V; i++) CU_ASSERT_EQUAL(d[i], 0.0f); /* row 1 untouched */
    for (int i = 3 * V; i < 4 * V; i++) CU_ASSERT_EQUAL(d[i], 0.0f);
    /* the wrong alignment would cost ~30 nats */
    uint8_t mask2[T] = {0, 0, 1, 0};
    CU_ASSERT_EQUAL(kd_loss_ce(logits, ids, mask2, 1, T, V, 1.0f, NULL, &loss), 1);
    CU_ASSERT_DOUBLE_EQUAL(loss, log(5.0), 1e-6); /* row 1 is uniform */
    /* sequences do not leak into each other: B=2, T=2 */
    uint8_t m3[4] = {1, 0, 1, 1};
    CU_ASSERT_EQUAL(kd_loss_count(m3, 2, 2), 1);
}

static void test_ce_accumulates_and_scales(void) {
    enum { B = 2, T = 6, V = 9 };
    float z[B * T * V], d1[B * T * V] = {0}, d2[B * T * V] = {0};
    int32_t ids[B * T];
    uint8_t mask[B * T];
    for (int i = 0; i < B * T * V; i++) z[i] = 2 * randn();
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_splitmix64(&rng) % V), mask[i] = (uint8_t)(i % 3 != 0);
    ids[4] = -1; /* bad id at a masked target: skipped, not counted */
    double l1, l2;
    int64_t n = kd_loss_ce(z, ids, mask, B, T, V, 0.5f, d1, &l1);
    CU_ASSERT_EQUAL(n, kd_loss_count(mask, B, T) - 1);
    kd_loss_ce(z, ids, mask, B, T, V, 0.25f, d2, &l2);
    kd_loss_ce(z, ids, mask, B, T, V, 0.25f, d2, &l2); /* added, not overwritten */
    CU_ASSERT_DOUBLE_EQUAL(l1, l2, 1e-12);
    double maxdiff = 0, rowsum = 0;
    for (int i = 0; i < B * T * V; i++) maxdiff = fmax(maxdiff, fabs(d1[i] - d2[i]));
    CU_ASSERT_TRUE(maxdiff < 1e-6);
    for (int i = 0; i < V; i++) rowsum += d1[i]; /* softmax - onehot sums to 0 per row */
    CU_ASSERT_DOUBLE_EQUAL(rowsum, 0.0, 1e-6);
}

/* Random teacher top-k (from a random distribution, with its true tail) for N positions. */
static void random_teacher(int N, int V, int K, int32_t *tid, float *tlp, float *tail) {
    double *p = malloc((size_t)V * sizeof *p);
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int i = 0; i < V; i++) s += (p[i] = exp(3 * randn()));
        uint8_t used[256] = {0};
        double top = 0;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (!used[i] && (best < 0 || p[i] > p[best])) best = i;
            used[best] = 1;
            tid[j * K + k] = best;
            tlp[j * K + k] = (float)log(p[best] / s);
            top += p[best] / s;
        }
        tail[j] = (float)log1p(-top);
    }
    free(p);
}

static double kd_value(const float *z, const int32_t *ids, const uint8_t *mask, int B, int T, int V,
                       const kd_teacher_topk *t, kd_divergence div, float temp, float beta) {
    kd_kd_opts o = {div, temp, beta};
    double l;
    kd_loss_kd(z, ids, mask, B, T, V, t, &o, 1.0f, NULL, &l, NULL);
    return l;
}

static void test_kd_nonnegative_random(void) {
    enum { B = 3, T = 20, V = 60, K = 8 };
    static float z[B * T * V], tlp[B * T * K], tail[B * T];
    static int32_t ids[B * T], tid[B * T * K];
    int negatives = 0, evaluated = 0;
    double minpos = 1e300;
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < B * T * V; i++) z[i] = (float)(trial % 4 + 1) * randn();
        for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_splitmix64(&rng) % V);
        random_teacher(B * T, V, K, tid, tlp, tail);
        kd_teacher_topk t = {K, tid, tlp, tail, NULL};
        const kd_divergence divs[3] = {KD_DIV_FORWARD_KL, KD_DIV_REVERSE_KL, KD_DIV_JSD};
        for (int dv = 0; dv < 3; dv++) {
            float temp = (float)(0.5 + unif() * 3.0), beta = (float)unif();
            /* every single position, not only the sum */
            for (int j = 1; j < B * T; j += 7) {
                uint8_t one[B * T] = {0};
                one[j] = 1;
                double l = kd_value(z, ids, one, B, T, V, &t, divs[dv], temp, beta);
                negatives += !(l >= 0.0);
                if (l > 0) minpos = fmin(minpos, l);
                evaluated++;
            }
        }
    }
    CU_ASSERT_EQUAL(negatives, 0);
    CU_ASSERT_TRUE(evaluated > 400);
    CU_ASSERT_TRUE(minpos > 0.0);
}

/* When the student is the teacher, every divergence is 0 and so is its gradient. */
static void test_kd_zero_at_teacher(void) {
    enum { T = 5, V = 30, K = 6 };
    float z[T * V], tlp[T * K], tail[T], d[T * V];
    int32_t ids[T] = {0}, tid[T * K];
    uint8_t mask[T] = {0, 1, 1, 1, 1};
    for (int i = 0; i < T * V; i++) z[i] = 2 * randn();
    for (int j = 1; j < T; j++) { /* teacher at j = the student's row j-1 at temperature 1 */
        const float *r = z + (j - 1) * V;
        double s = 0;
        for (int i = 0; i < V; i++) s += exp(r[i]);
        uint8_t used[V];
        memset(used, 0, sizeof used);
        double top = 0;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (!used[i] && (best < 0 || r[i] > r[best])) best = i;
            used[best] = 1;
            tid[j * K + k] = best;
            tlp[j * K + k] = (float)(r[best] - log(s));
            top += exp(r[best]) / s;
        }
        tail[j] = (float)log1p(-top);
    }
    kd_teacher_topk t = {K, tid, tlp, tail, NULL};
    const kd_divergence divs[3] = {KD_DIV_FORWARD_KL, KD_DIV_REVERSE_KL, KD_DIV_JSD};
    for (int dv = 0; dv < 3; dv++) {
        kd_kd_opts o = {divs[dv], 1.0f, 0.5f};
        memset(d, 0, sizeof d);
        double l;
        int64_t fb = -1;
        CU_ASSERT_EQUAL(kd_loss_kd(z, ids, mask, 1, T, V, &t, &o, 1.0f, d, &l, &fb), 4);
        CU_ASSERT_EQUAL(fb, 0);
        CU_ASSERT_TRUE(l < 1e-6);
        double g = 0;
        for (int i = 0; i < T * V; i++) g = fmax(g, fabs(d[i]));
        CU_ASSERT_TRUE(g < 1e-5);
    }
}

/* A teacher token the student lacks (-1) counts in the tail; a repeated id adds to its bucket. */
static void test_kd_unknown_and_repeated_ids(void) {
    enum { T = 2, V = 12 };
    float z[T * V];
    for (int i = 0; i < T * V; i++) z[i] = randn();
    int32_t ids[T] = {0, 4};
    uint8_t mask[T] = {0, 1};
    float tail0 = logf(0.2f);
    int32_t tid_a[2 * 3] = {0, 0, 0, 3, -1, 5};
    float tlp_a[2 * 3] = {0, 0, 0, logf(0.5f), logf(0.1f), logf(0.2f)};
    float tail_a[T] = {0, tail0};
    int32_t tid_b[2 * 3] = {0, 0, 0, 3, 5, -1};
    float tlp_b[2 * 3] = {0, 0, 0, logf(0.5f), logf(0.2f), -INFINITY}; /* padding */
    float tail_b[T] = {0, logf(0.3f)};
    int32_t tid_c[2 * 3] = {0, 0, 0, 3, 5, 3};
    float tlp_c[2 * 3] = {0, 0, 0, logf(0.3f), logf(0.2f), logf(0.2f)};
    float tail_c[T] = {0, logf(0.3f)};
    kd_teacher_topk a = {3, tid_a, tlp_a, tail_a, NULL}, b = {3, tid_b, tlp_b, tail_b, NULL},
                    c = {3, tid_c, tlp_c, tail_c, NULL};
    const kd_divergence divs[3] = {KD_DIV_FORWARD_KL, KD_DIV_REVERSE_KL, KD_DIV_JSD};
    for (int dv = 0; dv < 3; dv++) {
        double la = kd_value(z, ids, mask, 1, T, V, &a, divs[dv], 1.5f, 0.4f);
        double lb = kd_value(z, ids, mask, 1, T, V, &b, divs[dv], 1.5f, 0.4f);
        double lc = kd_value(z, ids, mask, 1, T, V, &c, divs[dv], 1.5f, 0.4f);
        CU_ASSERT_DOUBLE_EQUAL(la, lb, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(lb, lc, 1e-6);
    }
}

static void test_kd_fallback_and_gradcheck(void) {
    enum { B = 2, T = 7, V = 25, K = 4 };
    float z[B * T * V], tlp[B * T * K], tail[B * T], d[B * T * V], dce[B * T * V];
    int32_t ids[B * T], tid[B * T * K];
    uint8_t mask[B * T], has[B * T];
    for (int i = 0; i < B * T * V; i++) z[i] = 1.5f * randn();
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_splitmix64(&rng) % V), mask[i] = 1, has[i] = 1;
    random_teacher(B * T, V, K, tid, tlp, tail);
    /* K = 0 everywhere: exactly CE */
    kd_teacher_topk none = {0, NULL, NULL, NULL, NULL};
    kd_kd_opts o = {KD_DIV_FORWARD_KL, 2.0f, 0.5f};
    double lk, lc;
    int64_t fb;
    memset(d, 0, sizeof d);
    memset(dce, 0, sizeof dce);
    CU_ASSERT_EQUAL(kd_loss_kd(z, ids, mask, B, T, V, &none, &o, 1.0f, d, &lk, &fb), kd_loss_count(mask, B, T));
    CU_ASSERT_EQUAL(fb, kd_loss_count(mask, B, T));
    kd_loss_ce(z, ids, mask, B, T, V, 1.0f, dce, &lc);
    CU_ASSERT_DOUBLE_EQUAL(lk, lc, 1e-9);
    CU_ASSERT_EQUAL(memcmp(d, dce, sizeof d), 0);
    /* a has_teacher flag, an all-padding row and a NaN tail also fall back */
    has[3] = 0;
    for (int k = 0; k < K; k++) tid[5 * K + k] = -1;
    tail[8] = NAN;
    kd_teacher_topk t = {K, tid, tlp, tail, has};
    kd_loss_kd(z, ids, mask, B, T, V, &t, &o, 1.0f, NULL, &lk, &fb);
    CU_ASSERT_EQUAL(fb, 3);
    /* gradient by central differences, every divergence, on a few coordinates */
    const kd_divergence divs[3] = {KD_DIV_FORWARD_KL, KD_DIV_REVERSE_KL, KD_DIV_JSD};
    for (int dv = 0; dv < 3; dv++) {
        kd_kd_opts od = {divs[dv], 1.7f, 0.35f};
        memset(d, 0, sizeof d);
        kd_loss_kd(z, ids, mask, B, T, V, &t, &od, 1.0f, d, &lk, NULL);
        for (int trial = 0; trial < 12; trial++) {
            int i = (int)(kd_splitmix64(&rng) % (uint64_t)((B * T - 1) * V));
            float keep = z[i];
            const float h = 1e-2f;
            z[i] = keep + h;
            double lp = kd_value(z, ids, mask, B, T, V, &t, divs[dv], 1.7f, 0.35f);
            z[i] = keep - h;
            double lm = kd_value(z, ids, mask, B, T, V, &t, divs[dv], 1.7f, 0.35f);
            z[i] = keep;
            double fd = (lp - lm) / (2 * (double)h);
            if (fabs(fd - d[i]) > 2e-3 + 1e-3 * fabs(fd))
                fprintf(stderr, "\n  %s coord %d: analytic %g numeric %g\n", kd_divergence_name(divs[dv]), i, d[i], fd);
            CU_ASSERT_TRUE(fabs(fd - d[i]) <= 2e-3 + 1e-3 * fabs(fd));
        }
    }
}

static void test_threads_do_not_change_results(void) {
    enum { B = 4, T = 33, V = 70, K = 5 };
    static float z[B * T * V], tlp[B * T * K], tail[B * T], d1[B * T * V], d4[B * T * V];
    static int32_t ids[B * T], tid[B * T * K];
    static uint8_t mask[B * T];
    for (int i = 0; i < B * T * V; i++) z[i] = 2 * randn();
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_splitmix64(&rng) % V), mask[i] = unif() < 0.7;
    random_teacher(B * T, V, K, tid, tlp, tail);
    kd_teacher_topk t = {K, tid, tlp, tail, NULL};
    kd_kd_opts o = {KD_DIV_JSD, 2.0f, 0.5f};
    double l1, l4, c1, c4;
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    kd_loss_kd(z, ids, mask, B, T, V, &t, &o, 0.01f, d1, &l1, NULL);
    kd_loss_ce(z, ids, mask, B, T, V, 0.01f, d1, &c1);
    omp_set_num_threads(4);
    kd_loss_kd(z, ids, mask, B, T, V, &t, &o, 0.01f, d4, &l4, NULL);
    kd_loss_ce(z, ids, mask, B, T, V, 0.01f, d4, &c4);
    omp_set_num_threads(saved);
    CU_ASSERT_EQUAL(memcmp(&l1, &l4, sizeof l1), 0);
    CU_ASSERT_EQUAL(memcmp(&c1, &c4, sizeof c1), 0);
    CU_ASSERT_EQUAL(memcmp(d1, d4, sizeof d1), 0);
}

/* A non-finite logit poisons the row's loss and gradient, so the trainer's NaN/Inf check sees the step. */
static void test_nonfinite_logits_poison(void) {
    enum { T = 3, V = 16 };
    float z[T * V], d[T * V];
    int32_t ids[T] = {0, 3, 5};
    uint8_t mask[T] = {0, 1, 1};
    for (int i = 0; i < T * V; i++) z[i] = randn();
    z[1 * V + 7] = NAN; /* row 1 scores target 2 */
    memset(d, 0, sizeof d);
    double l;
    kd_loss_ce(z, ids, mask, 1, T, V, 1.0f, d, &l);
    CU_ASSERT_TRUE(isnan(l));
    CU_ASSERT_TRUE(isnan(d[1 * V]));
    CU_ASSERT_FALSE(isnan(d[0]));
    z[1 * V + 7] = INFINITY;
    int32_t tid[T * 2] = {1, 2, 1, 2, 1, 2};
    float tlp[T * 2] = {-1, -2, -1, -2, -1, -2}, tail[T] = {-0.5f, -0.5f, -0.5f};
    kd_teacher_topk t = {2, tid, tlp, tail, NULL};
    kd_kd_opts o = {KD_DIV_FORWARD_KL, 1.0f, 0.5f};
    memset(d, 0, sizeof d);
    int64_t fb;
    kd_loss_kd(z, ids, mask, 1, T, V, &t, &o, 1.0f, d, &l, &fb);
    CU_ASSERT_FALSE(isfinite(l));
    CU_ASSERT_EQUAL(fb, 0);
    CU_ASSERT_TRUE(isnan(d[1 * V + 3]));
    CU_ASSERT_TRUE(kd_has_nonfinite(d, T * V));
}

static void test_divergence_names_and_opts(void) {
    kd_divergence dv;
    kd_error err;
    CU_ASSERT_EQUAL(kd_divergence_parse("forward_kl", &dv, &err), KD_OK);
    CU_ASSERT_EQUAL(dv, KD_DIV_FORWARD_KL);
    CU_ASSERT_EQUAL(kd_divergence_parse("reverse_kl", &dv, &err), KD_OK);
    CU_ASSERT_EQUAL(dv, KD_DIV_REVERSE_KL);
    CU_ASSERT_EQUAL(kd_divergence_parse("jsd", &dv, &err), KD_OK);
    CU_ASSERT_EQUAL(dv, KD_DIV_JSD);
    CU_ASSERT_STRING_EQUAL(kd_divergence_name(KD_DIV_REVERSE_KL), "reverse_kl");
    CU_ASSERT_EQUAL(kd_divergence_parse("kl", &dv, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "unknown kd.divergence 'kl' (expected forward_kl, reverse_kl or jsd)");
    kd_kd_opts o = {KD_DIV_JSD, 0.0f, 0.5f};
    CU_ASSERT_EQUAL(kd_kd_opts_check(&o, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "kd.temperature must be a positive number, got 0");
    o.temperature = 2.0f;
    o.jsd_beta = 1.5f;
    CU_ASSERT_EQUAL(kd_kd_opts_check(&o, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "kd.jsd_beta must be in [0, 1], got 1.5");
    o.jsd_beta = 0.5f;
    CU_ASSERT_EQUAL(kd_kd_opts_check(&o, &err), KD_OK);
    /* from the config: defaults are valid; a bad name is caught before any step */
    kd_config cfg;
    kd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(kd_kd_opts_from_config(&cfg, &o, &err), KD_OK);
    CU_ASSERT_EQUAL(o.divergence, KD_DIV_FORWARD_KL);
    CU_ASSERT_EQUAL(kd_config_set(&cfg, "kd.divergence=jsd", &err), KD_OK);
    CU_ASSERT_EQUAL(kd_config_set(&cfg, "kd.jsd_beta=0.25", &err), KD_OK);
    CU_ASSERT_EQUAL(kd_kd_opts_from_config(&cfg, &o, &err), KD_OK);
    CU_ASSERT_EQUAL(o.divergence, KD_DIV_JSD);
    CU_ASSERT_EQUAL(o.jsd_beta, 0.25f);
    snprintf(cfg.kd.divergence, sizeof cfg.kd.divergence, "%s", "tvd");
    CU_ASSERT_EQUAL(kd_kd_opts_from_config(&cfg, &o, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "unknown kd.divergence 'tvd'");
    kd_config_free(&cfg);
}

/* Toy vocabulary for the grammar term. */
static const char *TOY[] = {"{\"", "a", "\":", "1", "}", "x", ">{\"", "}<", "<|im_end|>", " ", "\"", "]"};
enum { NT = 12 };

static void test_grammar_runs(void) {
    size_t lens[NT];
    for (int v = 0; v < NT; v++) lens[v] = strlen(TOY[v]);
    kd_jsongrammar *g;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_jsongrammar_new(&g, TOY, lens, NT, 0, &err), KD_OK);
    /* seq 0: x {" a ": 1 } <|im_end|>   seq 1: x >{" a ": 1 }< <|im_end|> (boundary tokens) */
    enum { B = 2, T = 8 };
    int32_t ids[B * T] = {5, 0, 1, 2, 3, 4, 8, 8, 5, 6, 1, 2, 3, 7, 8, 8};
    uint8_t mask[B * T] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0};
    float z[B * T * NT], d[B * T * NT];
    for (int i = 0; i < T * NT; i++) z[i] = z[T * NT + i] = randn(); /* both sequences see the same logits */
    memset(d, 0, sizeof d);
    double loss;
    int64_t skipped;
    int64_t n = kd_loss_json_grammar(g, z, ids, mask, B, T, NT, 1.0f, d, &loss, &skipped);
    CU_ASSERT_EQUAL(n, kd_loss_count(mask, B, T));
    CU_ASSERT_EQUAL(skipped, 2); /* >{" (leading '>') and }< (trailing '<') */
    CU_ASSERT_TRUE(loss > 0);
    /* after the leading '>' is dropped, seq 1 is scored like seq 0 (same states, same gradients) */
    for (int t = 2; t <= 4; t++)
        for (int i = 0; i < NT; i++) {
            float a = d[(size_t)(t - 1) * NT + i], b = d[(size_t)(T + t - 1) * NT + i];
            CU_ASSERT_EQUAL(a, b);
        }
    /* a student that puts no mass on invalid tokens pays nothing */
    for (int i = 0; i < B * T * NT; i++) z[i] = 0.0f;
    const int bad_after_key_colon[] = {1, 2, 4, 5, 6, 7, 8, 11}; /* after `{"a":` only {" 1 ' ' " fit */
    for (size_t k = 0; k < sizeof bad_after_key_colon / sizeof *bad_after_key_colon; k++)
        z[3 * NT + bad_after_key_colon[k]] = -1e4f; /* row 3 predicts ids[4] = 1 */
    uint8_t only[B * T] = {0, 1, 1, 1, 1, 0, 0, 0};
    uint8_t score4[B * T] = {0};
    memcpy(score4, only, sizeof only);
    double l_all;
    kd_loss_json_grammar(g, z, ids, score4, B, T, NT, 1.0f, NULL, &l_all, NULL);
    /* rows 0..2 are uniform: their loss is -log(share of valid tokens) > 0; row 3 adds ~0 */
    uint8_t first3[B * T] = {0, 1, 1, 1, 0, 0, 0, 0};
    double l3;
    kd_loss_json_grammar(g, z, ids, first3, B, T, NT, 1.0f, NULL, &l3, NULL);
    CU_ASSERT_TRUE(l3 > 0);
    CU_ASSERT_DOUBLE_EQUAL(l_all, l3, 1e-9);
    /* wrong vocabulary size: counted, nothing computed */
    CU_ASSERT_EQUAL(kd_loss_json_grammar(g, z, ids, mask, B, T, NT - 1, 1.0f, NULL, &loss, &skipped),
                    kd_loss_count(mask, B, T));
    CU_ASSERT_EQUAL(loss, 0.0);
    kd_jsongrammar_free(g);
}

static void test_grammar_gradcheck(void) {
    size_t lens[NT];
    for (int v = 0; v < NT; v++) lens[v] = strlen(TOY[v]);
    kd_jsongrammar *g;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_jsongrammar_new(&g, TOY, lens, NT, 0, &err), KD_OK);
    enum { T = 7 };
    int32_t ids[T] = {5, 0, 1, 2, 3, 4, 8};
    uint8_t mask[T] = {0, 1, 1, 1, 1, 1, 0};
    float z[T * NT], d[T * NT] = {0};
    for (int i = 0; i < T * NT; i++) z[i] = 2 * randn();
    double l0, lp, lm;
    kd_loss_json_grammar(g, z, ids, mask, 1, T, NT, 1.0f, d, &l0, NULL);
    for (int i = 0; i < (T - 1) * NT; i++) {
        float keep = z[i];
        z[i] = keep + 1e-2f;
        kd_loss_json_grammar(g, z, ids, mask, 1, T, NT, 1.0f, NULL, &lp, NULL);
        z[i] = keep - 1e-2f;
        kd_loss_json_grammar(g, z, ids, mask, 1, T, NT, 1.0f, NULL, &lm, NULL);
        z[i] = keep;
        CU_ASSERT_DOUBLE_EQUAL((lp - lm) / 2e-2, d[i], 2e-3);
    }
    kd_jsongrammar_free(g);
}

static void test_optim_helpers(void) {
    /* schedule: warmup 10 of 110, lr 1e-3, min ratio 0.1 */
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(0, 110, 10, 1e-3, 0.1), 1e-4, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(9, 110, 10, 1e-3, 0.1), 1e-3, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(10, 110, 10, 1e-3, 0.1), 1e-3, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(60, 110, 10, 1e-3, 0.1), 1e-3 * (0.1 + 0.9 * 0.5), 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(110, 110, 10, 1e-3, 0.1), 1e-4, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(500, 110, 10, 1e-3, 0.1), 1e-4, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(kd_lr_schedule(0, 100, 0, 1e-3, 0.0), 1e-3, 1e-15);
    double prev = 1;
    for (int s = 10; s <= 110; s++) { /* monotone after warmup */
        double lr = kd_lr_schedule(s, 110, 10, 1e-3, 0.1);
        CU_ASSERT_TRUE(lr <= prev);
        prev = lr;
    }
    float g[7] = {3, 4, 0, 0, 0, 0, 12};
    CU_ASSERT_DOUBLE_EQUAL(kd_grad_sumsq(g, 7), 169.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(kd_grad_norm(g, 7), 13.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(kd_clip_scale(13.0, 1.0), 1.0 / 13.0, 1e-7);
    CU_ASSERT_EQUAL(kd_clip_scale(0.5, 1.0), 1.0f);
    CU_ASSERT_EQUAL(kd_clip_scale(13.0, 0.0), 1.0f);
    CU_ASSERT_EQUAL(kd_clip_scale(NAN, 1.0), 0.0f);
    kd_scale_floats(g, 7, kd_clip_scale(13.0, 1.0));
    CU_ASSERT_DOUBLE_EQUAL(kd_grad_norm(g, 7), 1.0, 1e-6);
    CU_ASSERT_FALSE(kd_has_nonfinite(g, 7));
    g[5] = INFINITY;
    CU_ASSERT_TRUE(kd_has_nonfinite(g, 7));
    CU_ASSERT_FALSE(isfinite(kd_grad_sumsq(g, 7)));
    g[5] = NAN;
    CU_ASSERT_TRUE(kd_has_nonfinite(g, 7));
    CU_ASSERT_TRUE(isnan(kd_grad_norm(g, 7)));
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("loss", NULL, NULL);
    CU_add_test(s, "alignment: mask at t selects row t-1", test_alignment_and_count);
    CU_add_test(s, "CE adds scaled gradients", test_ce_accumulates_and_scales);
    CU_add_test(s, "KD >= 0 on random inputs", test_kd_nonnegative_random);
    CU_add_test(s, "KD is 0 when the student is the teacher", test_kd_zero_at_teacher);
    CU_add_test(s, "KD: unknown ids join the tail, repeats their bucket", test_kd_unknown_and_repeated_ids);
    CU_add_test(s, "KD fallback to CE and finite-difference gradients", test_kd_fallback_and_gradcheck);
    CU_add_test(s, "thread count does not change results", test_threads_do_not_change_results);
    CU_add_test(s, "non-finite logits poison loss and gradient", test_nonfinite_logits_poison);
    CU_add_test(s, "divergence names and option errors", test_divergence_names_and_opts);
    CU_add_test(s, "grammar term: runs, boundaries, skips", test_grammar_runs);
    CU_add_test(s, "grammar term: finite-difference gradient", test_grammar_gradcheck);
    CU_add_test(s, "schedule, norm, clip, NaN/Inf", test_optim_helpers);
    return kd_test_main();
}
