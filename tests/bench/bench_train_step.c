/* Training-step throughput of the C student, and the machine's sgemm rate in the same process.
 *
 *   bench_train_step PRESET B T STEPS    tokens/s of forward + CE + backward + AdamW, MFU vs sgemm
 *   bench_train_step sgemm [M N K]       sgemm GFLOP/s only (best of several runs)
 *
 * Goes through kd_runtime_select_blas like the kdstep binary, so it measures the kernels the project
 * picks by itself. Prints figures, then one JSON line.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "kdstep/runtime.h"

/* Wall time, or with KD_BENCH_CPUTIME=1 this process's CPU time: on a machine shared by many jobs
 * (the 2-core box here runs at load 8-13), a one-thread run's CPU time is the stable measure of its
 * own work; both sides of a comparison must use the same clock. */
static double now(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("KD_BENCH_CPUTIME") && atoi(getenv("KD_BENCH_CPUTIME")) == 1;
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double sgemm_gflops(int M, int N, int K) {
    float *a = malloc((size_t)M * K * 4), *b = malloc((size_t)N * K * 4), *c = malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 7) * 0.01f;
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt; /* first run warms up */
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / best / 1e9;
}

int main(int argc, char **argv) {
    kd_runtime_select_blas(argc, argv);
    int threads = kd_runtime_set_threads(1, 0);
    if (argc >= 2 && strcmp(argv[1], "sgemm") == 0) {
        int M = argc > 2 ? atoi(argv[2]) : 1024, N = argc > 3 ? atoi(argv[3]) : 1024, K = argc > 4 ? atoi(argv[4]) : 1024;
        double g = sgemm_gflops(M, N, K);
        printf("sgemm %dx%dx%d on %s, %d thread(s): %.1f GFLOP/s\n", M, N, K, kd_runtime_blas_core(), threads, g);
        printf("{\"blas_core\": \"%s\", \"sgemm_gflops\": %.2f}\n", kd_runtime_blas_core(), g);
        return 0;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: bench_train_step PRESET B T STEPS | sgemm [M N K]\n");
        return 2;
    }
    kd_error err = {0};
    kd_model_config cfg;
    kd_model *m = NULL;
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[4]);
    if (kd_model_config_preset(argv[1], &cfg, &err) || kd_model_new(&m, &cfg, B, T, &err)) {
        fprintf(stderr, "bench_train_step: %s\n", err.msg);
        return 1;
    }
    kd_model_init_random(m, 1);
    int BT = B * T;
    int32_t *ids = malloc((size_t)BT * 4), *tg = malloc((size_t)BT * 4);
    uint64_t s = 3;
    for (int i = 0; i < BT; i++) ids[i] = (int32_t)(kd_splitmix64(&s) % (uint64_t)cfg.vocab_size);
    for (int i = 0; i < BT; i++) tg[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
    kd_adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    /* KD_BENCH_PROFILE=1: time every kernel (m->profile), summed over the measured steps */
    double prof[KD_PROF_N] = {0}, prof_step[KD_PROF_N] = {0};
    int profiling = getenv("KD_BENCH_PROFILE") && atoi(getenv("KD_BENCH_PROFILE")) == 1;
    if (profiling) m->profile = prof_step;
    double best = 1e30, total = 0.0, phase[5] = {0}, best_phase[5] = {0}, peak = 0.0;
    float loss = 0.0f;
    for (int st = 0; st <= steps; st++) {
        double t0 = now();
        kd_model_zero_grad(m);
        phase[0] = now();
        if (kd_model_forward(m, ids, NULL, &err)) {
            fprintf(stderr, "bench_train_step: %s\n", err.msg);
            return 1;
        }
        phase[1] = now();
        loss = kd_model_ce_loss(m, tg, 1.0f);
        phase[2] = now();
        kd_model_backward(m, &err);
        phase[3] = now();
        kd_model_adamw_step(m, &hp, 1e-3f, st + 1);
        phase[4] = now();
        double dt = phase[4] - t0;
        if (st > 0) { /* step 0 warms up */
            total += dt;
            for (int k = 0; k < KD_PROF_N; k++) prof[k] += prof_step[k];
            if (dt < best) {
                best = dt;
                for (int i = 0; i < 5; i++) best_phase[i] = phase[i] - (i ? phase[i - 1] : t0);
            }
        }
        memset(prof_step, 0, sizeof prof_step);
        /* the machine may be shared: sample the sgemm rate between steps and keep the best, as for the steps */
        double g = sgemm_gflops(1024, 1024, 1024);
        if (g > peak) peak = g;
    }
    /* Model FLOPs (PaLM appendix B): 6 x matmul parameters per token + 12 x L x Hq x D x T per token
     * for attention. The embedding lookup is free; a tied embedding counts once, as lm_head. */
    double nmat = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 2 && !(strcmp(m->tensors[i].name, "model.embed_tokens.weight") == 0 && !cfg.tie_word_embeddings))
            nmat += (double)m->tensors[i].numel;
    double flops_tok = 6.0 * nmat + 12.0 * cfg.num_layers * cfg.num_heads * cfg.head_dim * (double)T;
    double tok_s = BT / best, achieved = flops_tok * tok_s / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0;
    printf("kdstep %s B=%d T=%d: %zu params, BLAS %s, %d thread(s)\n", argv[1], B, T, m->n_params, kd_runtime_blas_core(), threads);
    printf("  step %.3f s best, %.3f s mean over %d steps; %.0f tokens/s; loss %.4f\n", best, total / steps, steps, tok_s, loss);
    printf("  best step: zero_grad %.3f  forward %.3f  ce_loss %.3f  backward %.3f  adamw %.3f s\n", best_phase[0], best_phase[1],
           best_phase[2], best_phase[3], best_phase[4]);
    printf("  %.1f model GFLOP/s vs sgemm 1024^3 %.1f GFLOP/s -> MFU %.0f%%; peak RSS %.0f MB\n", achieved, peak,
           100.0 * achieved / peak, rss);
    if (profiling) {
        static const char *const NAMES[KD_PROF_N] = {"sgemm", "attention", "attn_softmax", "rmsnorm", "qk_norm_rope",
                                                     "swiglu", "embedding", "residual", "loss", "adamw"};
        printf("  kernels, mean seconds per step over %d steps (mean step %.4f s):", steps, total / steps);
        printf("\n  {\"step_mean_s\": %.5f", total / steps);
        for (int k = 0; k < KD_PROF_N; k++) printf(", \"%s\": %.5f", NAMES[k], prof[k] / steps);
        printf("}\n");
    }
    printf("{\"kdstep_tok_s\": %.1f, \"kdstep_step_s\": %.4f, \"kdstep_gflops\": %.2f, \"sgemm_gflops\": %.2f, \"mfu\": %.3f, "
           "\"kdstep_peak_rss_mb\": %.1f, \"blas_core\": \"%s\", \"threads\": %d, \"clock\": \"%s\"}\n",
           tok_s, best, achieved, peak, achieved / peak, rss, kd_runtime_blas_core(), threads,
           getenv("KD_BENCH_CPUTIME") && atoi(getenv("KD_BENCH_CPUTIME")) == 1 ? "cpu" : "wall");
    free(ids);
    free(tg);
    kd_model_free(m);
    return 0;
}
